"""Dead-letter records (SPEC section 6): a bad input, its reason and where it came from."""

from __future__ import annotations

import base64

from botstream.errors import InvalidRecord

#: A dead letter keeps at most this many bytes of its record's key (SPEC's keys are
#: ids of at most 128 characters). The key is in the dead letter twice, as its own
#: key and in its value: a huge one would make it too large to publish, and a record
#: that cannot be published blocks its partition for good.
MAX_KEY_BYTES = 4096


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The key a dead letter carries for a record with ``key`` (cut to ``MAX_KEY_BYTES``)."""
    return key if key is None or len(key) <= MAX_KEY_BYTES else key[:MAX_KEY_BYTES]


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
    So does a key longer than ``MAX_KEY_BYTES``, of which only the start is kept.
    """
    value = value or b""
    if error.keep_bytes is not None and len(value) > error.keep_bytes:
        value = value[: error.keep_bytes]
    key = dead_letter_key(key)
    return {
        "error": str(error),
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else base64.b64encode(key).decode("ascii"),
        "value": base64.b64encode(value).decode("ascii"),
    }
