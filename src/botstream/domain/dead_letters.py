"""Dead-letter records (SPEC section 6): a bad input, its reason and where it came from."""

from __future__ import annotations

import base64

from botstream.errors import InvalidRecord


def dead_letter(
    error: InvalidRecord,
    topic: str,
    partition: int | None,
    offset: int,
    key: bytes | None,
    value: bytes | None,
) -> dict:
    """The dead-letter record for a bad input record (key and value in base64)."""
    return {
        "error": str(error),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else base64.b64encode(key).decode("ascii"),
        "value": base64.b64encode(value or b"").decode("ascii"),
    }
