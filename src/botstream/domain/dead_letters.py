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
    """The dead-letter record for a bad input record (key and value in base64).

    The value is kept byte for byte, except that a record rejected for its
    size keeps only the leading ``error.keep_bytes`` bytes: its dead letter,
    a third larger in base64, must still fit in a Kafka message, and a record
    that cannot be published blocks its partition for good. The whole record
    stays in its input topic, at the partition and offset the dead letter names.
    """
    value = value or b""
    if error.keep_bytes is not None and len(value) > error.keep_bytes:
        value = value[: error.keep_bytes]
    return {
        "error": str(error),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else base64.b64encode(key).decode("ascii"),
        "value": base64.b64encode(value).decode("ascii"),
    }
