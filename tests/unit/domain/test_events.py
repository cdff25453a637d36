"""Decoding widget events (SPEC section 3, and section 6 for bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.events import EventKind, decode_event, event_from_object
from botstream.domain.plans import decode_plan
from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import ms

DROP = object()  # marks a field to remove from the example event

EXAMPLE = {
    "event_id": "e-81f2",
    "type": "chatbot.button_clicked",
    "occurred_at": "2026-11-24T20:15:00.123Z",
    "account_id": "acc-17",
    "conversation_id": "c-9a1",
    "visitor_id": "v-77",
    "data": {"chatbot_id": "bot-1", "button_id": "shipping"},
}


def example(**changes: object) -> dict:
    """SPEC's example event with some top-level fields changed (or removed with DROP)."""
    obj = dict(EXAMPLE)
    for name, value in changes.items():
        if value is DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


def encode(obj: dict) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# -- every type decodes to its kind --------------------------------------------------

TYPES = [
    ("conversation.started", EventKind.CONVERSATION_STARTED),
    ("chatbot.triggered", EventKind.CHATBOT_TRIGGERED),
    ("chatbot.message", EventKind.CHATBOT_MESSAGE),
    ("chatbot.button_clicked", EventKind.CHATBOT_BUTTON_CLICKED),
    ("visitor.message", EventKind.VISITOR_MESSAGE),
    ("agent.joined", EventKind.AGENT_JOINED),
    ("agent.message", EventKind.AGENT_MESSAGE),
    ("conversation.transferred", EventKind.CONVERSATION_TRANSFERRED),
    ("widget.closed", EventKind.WIDGET_CLOSED),
    ("visitor.left", EventKind.VISITOR_LEFT),
    ("conversation.closed", EventKind.CONVERSATION_CLOSED),
]


@pytest.mark.parametrize(("type_name", "kind"), TYPES, ids=[t[0] for t in TYPES])
def test_every_type_decodes(type_name, kind):
    event = decode_event(encode(example(type=type_name, data=DROP)))
    assert event.kind is kind
    assert event.closed_by_chatbot is False


def test_example_event_fields():
    event = decode_event(encode(EXAMPLE))
    assert event.event_id == "e-81f2"
    assert event.kind is EventKind.CHATBOT_BUTTON_CLICKED
    assert event.at == ms("2026-11-24T20:15:00.123Z")
    assert event.account_id == "acc-17"
    assert event.conversation_id == "c-9a1"
    assert event.closed_by_chatbot is False


# -- valid variants ------------------------------------------------------------------

ID128 = "x" * 128
# (case id, object, closed_by_chatbot expected)
VALID = [
    ("minimal-no-optional-fields", example(visitor_id=DROP, data=DROP), False),
    ("visitor-id-null", example(visitor_id=None), False),
    ("visitor-id-empty-string", example(visitor_id=""), False),
    ("visitor-id-128-chars", example(visitor_id=ID128), False),
    ("data-null", example(data=None), False),
    ("data-empty-object", example(data={}), False),
    ("data-other-fields-ignored", example(data={"anything": [1, {"x": None}]}), False),
    ("other-top-level-fields-ignored", example(extra={"nested": True}, schema_version=3), False),
    ("big-integer-in-ignored-field", example(extra=2**64), False),
    ("event-id-128-chars", example(event_id=ID128), False),
    ("account-id-128-chars", example(account_id=ID128), False),
    ("conversation-id-128-chars", example(conversation_id=ID128), False),
    ("id-128-non-ascii-characters", example(conversation_id="é" * 128), False),
    ("surrogate-pair-escape", example(visitor_id="\U0001f600"), False),
    ("timestamp-with-offset", example(occurred_at="2026-11-24T21:15:00.123+01:00"), False),
    *[
        (f"initiator-{who}", example(type="conversation.started", data={"initiator": who}), False)
        for who in ("visitor", "chatbot", "agent")
    ],
    ("initiator-on-another-type", example(data={"initiator": "agent"}), False),
    *[
        (
            f"closed-by-{who}",
            example(type="conversation.closed", data={"closed_by": who}),
            who == "chatbot",
        )
        for who in ("visitor", "agent", "chatbot", "system")
    ],
    ("closed-without-data", example(type="conversation.closed", data=DROP), False),
    ("closed-with-null-data", example(type="conversation.closed", data=None), False),
    (
        "closed-by-chatbot-on-non-close-event",
        example(type="chatbot.message", data={"closed_by": "chatbot"}),
        False,
    ),
    (
        "closed-by-chatbot-on-visitor-left",
        example(type="visitor.left", data={"closed_by": "chatbot"}),
        False,
    ),
]


@pytest.mark.parametrize(("obj", "by_chatbot"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_event_decodes(obj, by_chatbot):
    event = decode_event(encode(obj))
    assert event.event_id == obj["event_id"]
    assert event.account_id == obj["account_id"]
    assert event.conversation_id == obj["conversation_id"]
    assert event.at == ms(obj["occurred_at"])
    assert event.closed_by_chatbot is by_chatbot
    # The object path gives the same event.
    assert event_from_object(obj) == event


def test_whitespace_around_the_object_is_fine():
    assert decode_event(b"  \n" + encode(EXAMPLE) + b"\n").event_id == "e-81f2"


# -- invalid objects -------------------------------------------------------------------

ID129 = "x" * 129
REQUIRED = ("event_id", "type", "occurred_at", "account_id", "conversation_id")
# (case id, object, expected code)
INVALID_OBJECTS = [
    *[(f"missing-{name}", example(**{name: DROP}), "missing_field") for name in REQUIRED],
    *[(f"null-{name}", example(**{name: None}), "invalid_field") for name in REQUIRED],
    *[(f"empty-{name}", example(**{name: ""}), "invalid_field") for name in REQUIRED],
    *[(f"number-{name}", example(**{name: 17}), "invalid_field") for name in REQUIRED],
    ("event-id-129-chars", example(event_id=ID129), "invalid_field"),
    ("account-id-129-chars", example(account_id=ID129), "invalid_field"),
    ("conversation-id-129-chars", example(conversation_id=ID129), "invalid_field"),
    ("visitor-id-129-chars", example(visitor_id=ID129), "invalid_field"),
    ("visitor-id-number", example(visitor_id=77), "invalid_field"),
    ("visitor-id-object", example(visitor_id={"id": "v"}), "invalid_field"),
    ("unknown-type", example(type="chatbot.closed"), "unknown_type"),
    ("type-wrong-case", example(type="Chatbot.Triggered"), "unknown_type"),
    ("type-with-space", example(type="chatbot.triggered "), "unknown_type"),
    ("timestamp-no-offset", example(occurred_at="2026-11-24T20:15:00.123"), "invalid_timestamp"),
    ("timestamp-week-date", example(occurred_at="2026-W48-2T20:15:00Z"), "invalid_timestamp"),
    ("timestamp-compact", example(occurred_at="20261124T201500Z"), "invalid_timestamp"),
    ("timestamp-date-only", example(occurred_at="2026-11-24"), "invalid_timestamp"),
    ("timestamp-bad-day", example(occurred_at="2026-11-31T20:15:00Z"), "invalid_timestamp"),
    ("data-list", example(data=[{"chatbot_id": "bot-1"}]), "invalid_field"),
    ("data-empty-list", example(data=[]), "invalid_field"),
    ("data-string", example(data="shipping"), "invalid_field"),
    ("data-empty-string", example(data=""), "invalid_field"),
    ("data-number", example(data=1), "invalid_field"),
    ("data-zero", example(data=0), "invalid_field"),
    ("data-false", example(data=False), "invalid_field"),
    ("data-true", example(data=True), "invalid_field"),
    (
        "initiator-null",
        example(type="conversation.started", data={"initiator": None}),
        "invalid_field",
    ),
    (
        "initiator-unknown",
        example(type="conversation.started", data={"initiator": "system"}),
        "invalid_field",
    ),
    ("initiator-number", example(data={"initiator": 1}), "invalid_field"),
    ("initiator-bad-on-another-type", example(data={"initiator": "bot"}), "invalid_field"),
    (
        "closed-by-null",
        example(type="conversation.closed", data={"closed_by": None}),
        "invalid_field",
    ),
    (
        "closed-by-unknown",
        example(type="conversation.closed", data={"closed_by": "bot"}),
        "invalid_field",
    ),
    (
        "closed-by-wrong-case",
        example(type="conversation.closed", data={"closed_by": "Chatbot"}),
        "invalid_field",
    ),
    (
        "closed-by-bad-on-non-close-event",
        example(type="visitor.left", data={"closed_by": "nobody"}),
        "invalid_field",
    ),
]


@pytest.mark.parametrize(
    ("obj", "code"), [c[1:] for c in INVALID_OBJECTS], ids=[c[0] for c in INVALID_OBJECTS]
)
def test_invalid_event_is_rejected(obj, code):
    with pytest.raises(InvalidRecord) as raised:
        decode_event(encode(obj))
    assert raised.value.code == code
    with pytest.raises(InvalidRecord) as raised_from_object:
        event_from_object(obj)
    assert raised_from_object.value.code == code


# -- raw bytes that are not strict UTF-8 JSON objects -------------------------------------

GOOD = encode(EXAMPLE)
# (case id, raw, expected code)
INVALID_RAW = [
    ("invalid-utf8-byte", GOOD.replace(b"v-77", b"v-\xff7"), "invalid_json"),
    ("truncated-utf8-sequence", GOOD.replace(b"v-77", b"v-\xc3"), "invalid_json"),
    ("utf8-encoded-surrogate", GOOD.replace(b"v-77", b"v-\xed\xa0\x80"), "invalid_json"),
    ("latin1-text", GOOD.replace(b"v-77", "v-é".encode("latin-1")), "invalid_json"),
    ("lone-high-surrogate-escape", GOOD.replace(b"v-77", b"v-\\ud800"), "invalid_json"),
    ("lone-low-surrogate-escape", GOOD.replace(b"v-77", b"v-\\udc00"), "invalid_json"),
    (
        "lone-surrogate-in-ignored-field",
        GOOD[:-1] + b',"extra":"\\ud83d"}',
        "invalid_json",
    ),
    ("nan", GOOD[:-1] + b',"extra":NaN}', "invalid_json"),
    ("infinity", GOOD[:-1] + b',"extra":Infinity}', "invalid_json"),
    ("minus-infinity", GOOD[:-1] + b',"extra":-Infinity}', "invalid_json"),
    ("nan-in-data", GOOD.replace(b'"button_id"', b'"score":NaN,"button_id"'), "invalid_json"),
    ("byte-order-mark", b"\xef\xbb\xbf" + GOOD, "invalid_json"),
    ("single-quotes", GOOD.replace(b'"', b"'"), "invalid_json"),
    ("trailing-comma", GOOD[:-1] + b",}", "invalid_json"),
    ("trailing-garbage", GOOD + b"x", "invalid_json"),
    ("two-objects", GOOD + GOOD, "invalid_json"),
    ("truncated", GOOD[:-1], "invalid_json"),
    ("empty", b"", "invalid_json"),
    ("top-level-array", b"[" + GOOD + b"]", "not_object"),
    ("top-level-string", b'"chatbot.triggered"', "not_object"),
    ("top-level-number", b"17", "not_object"),
    ("top-level-null", b"null", "not_object"),
    ("top-level-true", b"true", "not_object"),
]


@pytest.mark.parametrize(
    ("raw", "code"), [c[1:] for c in INVALID_RAW], ids=[c[0] for c in INVALID_RAW]
)
def test_invalid_raw_record_is_rejected(raw, code):
    with pytest.raises(InvalidRecord) as raised:
        decode_event(raw)
    assert raised.value.code == code


def test_invalid_record_message_is_code_and_detail():
    with pytest.raises(InvalidRecord) as raised:
        decode_event(b"[]")
    assert str(raised.value).startswith("not_object: ")


# -- size limit -------------------------------------------------------------------------


def padded(size: int) -> bytes:
    """A valid event of exactly ``size`` bytes (padding in an ignored field)."""
    raw = encode(example(padding=""))
    missing = size - len(raw)
    assert missing >= 0
    result = encode(example(padding="p" * missing))
    assert len(result) == size
    return result


DEFAULT_MAX = DomainConfig().max_event_bytes
SIZES = [
    ("default-limit-is-64KiB", None, 64 * 1024, False),
    ("default-limit-plus-one", None, 64 * 1024 + 1, True),
    ("config-default-exactly-max", DEFAULT_MAX, DEFAULT_MAX, False),
    ("config-default-max-plus-one", DEFAULT_MAX, DEFAULT_MAX + 1, True),
    ("small-limit-exactly-max", 300, 300, False),
    ("small-limit-plus-one", 300, 301, True),
]


@pytest.mark.parametrize(
    ("limit", "size", "too_large"), [c[1:] for c in SIZES], ids=[c[0] for c in SIZES]
)
def test_size_limit(limit, size, too_large):
    raw = padded(size)
    decode = (lambda r: decode_event(r)) if limit is None else (lambda r: decode_event(r, limit))
    if too_large:
        with pytest.raises(InvalidRecord) as raised:
            decode(raw)
        assert raised.value.code == "too_large"
    else:
        assert decode(raw).event_id == "e-81f2"


def test_too_large_is_checked_before_json():
    with pytest.raises(InvalidRecord) as raised:
        decode_event(b"\xff" * 301, 300)
    assert raised.value.code == "too_large"


def test_default_max_event_bytes_is_64KiB():
    assert DEFAULT_MAX == 65536


# -- the published schema's cases ---------------------------------------------------------------

CASES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "schema_cases"


def _schema_cases(name: str, group: str) -> list:
    data = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return [pytest.param(case["value"], id=case["case"]) for case in data.get(group, [])]


@pytest.mark.parametrize("value", _schema_cases("widget-event", "valid"))
def test_schema_valid_event_decodes(value):
    event = decode_event(json.dumps(value).encode())
    assert event.event_id == value["event_id"]
    assert event.conversation_id == value["conversation_id"]
    assert event.account_id == value["account_id"]


@pytest.mark.parametrize(
    "value",
    _schema_cases("widget-event", "invalid") + _schema_cases("widget-event", "invalid_json_values"),
)
def test_schema_invalid_event_is_rejected(value):
    with pytest.raises(InvalidRecord):
        decode_event(json.dumps(value).encode())


@pytest.mark.parametrize("value", _schema_cases("plan-record", "valid"))
def test_schema_valid_plan_decodes(value):
    record = decode_plan(json.dumps(value).encode(), DomainConfig())
    assert record.account_id == value["account_id"]
    assert record.plan == value["plan"]
    assert record.chatbot_pack is value["chatbot_pack"]


@pytest.mark.parametrize(
    "value",
    _schema_cases("plan-record", "invalid") + _schema_cases("plan-record", "invalid_json_values"),
)
def test_schema_invalid_plan_is_rejected(value):
    with pytest.raises(InvalidRecord):
        decode_plan(json.dumps(value).encode(), DomainConfig())
