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


@pytest.mark.parametrize("key_size", [4096, 4097, 500_000])
def test_a_huge_key_is_cut_so_that_the_dead_letter_can_be_published(key_size: int):
    """The key is in a dead letter twice: as its own key, and in base64 in its value."""
    from botstream.domain.dead_letters import MAX_KEY_BYTES, dead_letter_key

    key = bytes(range(256)) * (key_size // 256) + b"k" * (key_size % 256)
    letter = _letter(decode_event, b"not json", key=key)
    kept = base64.b64decode(letter["key"])
    assert kept == key[:MAX_KEY_BYTES]
    assert dead_letter_key(key) == kept
    assert len(orjson.dumps(letter)) + len(kept) < KAFKA_DEFAULT_MAX


def test_max_event_bytes_is_capped_so_that_any_dead_letter_fits():
    from botstream.domain.config import MAX_EVENT_BYTES_LIMIT
    from botstream.domain.dead_letters import MAX_KEY_BYTES

    DomainConfig(max_event_bytes=MAX_EVENT_BYTES_LIMIT)
    with pytest.raises(ValueError, match="max event bytes"):
        DomainConfig(max_event_bytes=MAX_EVENT_BYTES_LIMIT + 1)
    # The worst case: an invalid record just under the limit, with the longest key kept.
    config = DomainConfig(max_event_bytes=MAX_EVENT_BYTES_LIMIT)
    raw = b"\xff" * MAX_EVENT_BYTES_LIMIT
    with pytest.raises(InvalidRecord) as raised:
        decode_event(raw, config.max_event_bytes)
    key = b"k" * (MAX_KEY_BYTES + 100)
    letter = dead_letter(raised.value, "widget-events", 0, 0, key, raw)
    assert len(orjson.dumps(letter)) + MAX_KEY_BYTES < KAFKA_DEFAULT_MAX
