"""Dead-letter records (SPEC section 6): the original bytes, and a size that can be published."""

from __future__ import annotations

import base64

import orjson
import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.dead_letters import dead_letter
from botstream.domain.events import decode_event
from botstream.domain.plans import decode_plan
from botstream.errors import InvalidRecord

#: aiokafka's default max_request_size, and the broker's default message.max.bytes (about).
KAFKA_DEFAULT_MAX = 1024 * 1024


def _letter(decode, raw: bytes, key: bytes | None = b"c-1") -> dict:
    with pytest.raises(InvalidRecord) as raised:
        decode(raw)
    return dead_letter(raised.value, "widget-events", 2, 41, key, raw)


def test_a_bad_record_is_kept_byte_for_byte():
    raw = b'{"event_id": "e-1", \xff}'
    letter = _letter(decode_event, raw, key=b"\xfe\x00")
    assert base64.b64decode(letter["value"]) == raw
    assert base64.b64decode(letter["key"]) == b"\xfe\x00"
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("widget-events", 2, 41)


def test_a_null_key_stays_null_and_an_empty_value_is_empty():
    letter = _letter(decode_event, b"", key=None)
    assert letter["key"] is None
    assert letter["value"] == ""


@pytest.mark.parametrize("size", [65_537, 900_000, 10 * 1024 * 1024], ids=str)
def test_a_too_large_event_keeps_its_first_max_bytes(size):
    # A record of 900 kB fits the input topic's default 1 MiB, but its dead letter
    # in base64 did not fit a Kafka message: the stage's transaction failed for good.
    raw = b'{"event_id": "' + b"x" * (size - 16) + b'"}'
    letter = _letter(decode_event, raw)
    assert letter["error"].startswith("too_large: ")
    assert base64.b64decode(letter["value"]) == raw[: 64 * 1024]
    assert len(orjson.dumps(letter)) < KAFKA_DEFAULT_MAX // 8


def test_a_too_large_plan_keeps_its_first_max_bytes():
    config = DomainConfig(max_event_bytes=1000)
    raw = b"p" * 5000
    letter = _letter(lambda r: decode_plan(r, config), raw)
    assert letter["error"].startswith("too_large: 5000 bytes exceeds the limit of 1000")
    assert base64.b64decode(letter["value"]) == raw[:1000]
