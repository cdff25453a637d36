"""The event decoder's fast path agrees with its checked path on every record.

:func:`decode_event` accepts the common valid record through a few combined
tests and hands everything else to ``_decode_checked``, which applies the
rules one at a time. Both must give the same event, or the same error.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings

from botstream.domain import events
from botstream.domain.events import _decode_checked, _decode_general, decode_event
from botstream.errors import InvalidRecord
from tests.unit.domain.test_events import (
    EXAMPLE,
    INVALID_OBJECTS,
    INVALID_RAW,
    VALID,
    _schema_cases,
    encode,
    example,
)
from tests.unit.test_decoder_matches_schema import _VALID_EVENT, _mutated, _timestamps


def _outcome(decode, raw: bytes, max_bytes: int = 64 * 1024) -> object:
    """The decoded event, or ``(code, message)`` of the error raised."""
    try:
        return decode(raw, max_bytes)
    except InvalidRecord as error:
        return (error.code, str(error))


def _assert_same(raw: bytes, max_bytes: int = 64 * 1024) -> None:
    checked = _outcome(_decode_checked, raw, max_bytes)
    assert _outcome(decode_event, raw, max_bytes) == checked
    if len(raw) <= max_bytes:  # the general path is only taken within the limit
        assert _outcome(_decode_general, raw, max_bytes) == checked


def _with(fragment: bytes, field: bytes = b"data") -> bytes:
    """The example event, its ``field`` set to the raw JSON ``fragment``."""
    return encode(EXAMPLE)[:-1] + b',"' + field + b'":' + fragment + b"}"


# Where msgspec and orjson part ways: what msgspec accepts in a value it only
# skips, or counts differently. Each must be judged as _decode_checked does.
RAW_EDGES = [
    ("data-number-beyond-double", _with(b'{"x":1e400}')),
    ("data-negative-number-beyond-double", _with(b'{"x":-1e400}')),
    ("data-largest-double", _with(b'{"x":1.7976931348623157e308}')),
    ("data-integer-beyond-64-bits", _with(b'{"x":123456789012345678901234567890}')),
    ("data-invalid-utf8-value", _with(b'{"x":"\xff"}')),
    ("data-encoded-surrogate", _with(b'{"x":"\xed\xa0\x80"}')),
    ("data-invalid-utf8-key", _with(b'{"\xff":1}')),
    ("data-lone-surrogate-escape", _with(b'{"x":"\\ud800"}')),
    ("data-nesting-1000", _with(b"[" * 1000 + b"]" * 1000)),
    ("data-nesting-1023", _with(b"[" * 1023 + b"]" * 1023)),
    ("data-nesting-1025", _with(b"[" * 1025 + b"]" * 1025)),
    ("data-initiator-twice", _with(b'{"initiator":"bogus","initiator":"agent"}')),
    ("data-initiator-twice-bad-last", _with(b'{"initiator":"agent","initiator":"bogus"}')),
    ("extra-number-beyond-double", _with(b"1e400", b"extra")),
    ("extra-invalid-utf8", _with(b'"\xff"', b"extra")),
    ("extra-field", _with(b"[1, {}]", b"extra")),
    (
        "event-id-bad-then-good",
        _with(b'"e-2"', b"event_id").replace(b'"event_id":"', b'"event_id":5,"y":"', 1),
    ),
    ("event-id-good-then-bad", _with(b"5", b"event_id")),
    ("event-id-twice", _with(b'"e-2"', b"event_id")),
    ("escaped-key", encode(EXAMPLE).replace(b'"account_id"', b'"account\\u005fid"')),
    (
        "ids-128-non-ascii",
        encode(example(event_id="\u00e9" * 128, conversation_id="\U0001f600" * 128)),
    ),
    ("ids-129-non-ascii", encode(example(account_id="\u00e9" * 129))),
    ("visitor-id-129-non-ascii", encode(example(visitor_id="\U0001f600" * 129))),
    ("visitor-id-number", encode(example(visitor_id=7))),
    ("data-list", encode(example(data=[1]))),
    ("data-string", encode(example(data="x"))),
    ("type-null", encode(example(type=None))),
    ("trailing-whitespace", encode(EXAMPLE) + b" \r\n"),
    ("leading-bom", b"\xef\xbb\xbf" + encode(EXAMPLE)),
]


# Cases aimed at the fast path's shortcuts: optional fields that are present but
# null, unhashable values where a set lookup is made, and timestamps of new hours.
EDGE_OBJECTS = [
    ("data-null", example(data=None)),
    ("data-empty", example(data={})),
    ("initiator-null", example(type="conversation.started", data={"initiator": None})),
    ("initiator-list", example(type="conversation.started", data={"initiator": ["agent"]})),
    ("initiator-object", example(type="conversation.started", data={"initiator": {}})),
    ("closed-by-null", example(type="conversation.closed", data={"closed_by": None})),
    ("closed-by-list", example(type="conversation.closed", data={"closed_by": ["chatbot"]})),
    ("closed-by-chatbot", example(type="conversation.closed", data={"closed_by": "chatbot"})),
    ("closed-by-chatbot-other-type", example(type="widget.closed", data={"closed_by": "chatbot"})),
    ("closed-by-system", example(type="conversation.closed", data={"closed_by": "system"})),
    ("type-list", example(type=["chatbot.message"])),
    ("type-object", example(type={"chatbot.message": 1})),
    ("occurred-at-list", example(occurred_at=["2026-11-24T20:15:00.123Z"])),
    ("occurred-at-new-hour", example(occurred_at="2031-02-03T04:05:06.789Z")),
    ("occurred-at-offset", example(occurred_at="2031-02-03T05:05:06.789+01:00")),
    ("occurred-at-bad-day", example(occurred_at="2031-02-29T04:05:06.789Z")),
    ("occurred-at-newline", example(occurred_at="2026-11-24T20:15:00.123Z\n")),
    ("visitor-id-null", example(visitor_id=None)),
    ("visitor-id-128", example(visitor_id="v" * 128)),
    ("ids-128", example(event_id="e" * 128, account_id="a" * 128, conversation_id="c" * 128)),
    ("event-id-list", example(event_id=["e-1"])),
    ("extra-fields", example(extra=[1, 2, {"a": None}])),
]


@pytest.mark.parametrize(
    "obj",
    [c[1] for c in EDGE_OBJECTS + INVALID_OBJECTS] + [c[1] for c in VALID],
    ids=[c[0] for c in EDGE_OBJECTS + INVALID_OBJECTS + VALID],
)
def test_paths_agree_on_objects(obj):
    raw = encode(obj)
    _assert_same(raw)
    # Twice: the first decode may have filled the timestamp caches.
    _assert_same(raw)


@pytest.mark.parametrize("raw", [c[1] for c in INVALID_RAW], ids=[c[0] for c in INVALID_RAW])
def test_paths_agree_on_raw_records(raw):
    _assert_same(raw)


@pytest.mark.parametrize("raw", [c[1] for c in RAW_EDGES], ids=[c[0] for c in RAW_EDGES])
def test_paths_agree_where_msgspec_and_orjson_differ(raw):
    _assert_same(raw)


@pytest.mark.parametrize("value", _schema_cases("widget-event", "valid"))
def test_paths_agree_on_schema_valid_cases(value):
    _assert_same(orjson.dumps(value))


@pytest.mark.parametrize("value", _schema_cases("widget-event", "invalid"))
def test_paths_agree_on_schema_invalid_cases(value):
    _assert_same(orjson.dumps(value))


def test_paths_agree_at_the_size_limit():
    raw = encode(EXAMPLE)
    for limit in (len(raw) - 1, len(raw), len(raw) + 1):
        _assert_same(raw, limit)


def test_fast_path_sets_closed_by_chatbot_only_on_close():
    closed = decode_event(
        encode(example(type="conversation.closed", data={"closed_by": "chatbot"}))
    )
    left = decode_event(encode(example(type="visitor.left", data={"closed_by": "chatbot"})))
    assert closed.closed_by_chatbot is True
    assert left.closed_by_chatbot is False


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_VALID_EVENT))
def test_paths_agree_on_random_events(record: dict) -> None:
    _assert_same(json.dumps(record).encode())


@settings(max_examples=400, deadline=None)
@given(_timestamps)
def test_paths_agree_on_random_timestamps(text: str) -> None:
    _assert_same(json.dumps({**_VALID_EVENT, "occurred_at": text}).encode())


def test_the_common_event_takes_the_typed_path(monkeypatch):
    def general_path_taken(raw: bytes, max_bytes: int) -> None:
        raise AssertionError("the general path decoded a common event")

    monkeypatch.setattr(events, "_decode_general", general_path_taken)
    for obj in (EXAMPLE, example(type="conversation.closed", data={"closed_by": "chatbot"})):
        raw = encode(obj)
        assert decode_event(raw) == _decode_checked(raw, 64 * 1024)
