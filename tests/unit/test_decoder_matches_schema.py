"""The hand-written decoders and the published schemas accept exactly the same records.

The decoders (:func:`decode_event`, :func:`decode_plan`) are written for speed;
``schemas/`` is what producers are told. These tests keep the two in step: on
every fixture case and on many random mutations of valid records, a record
decodes if and only if the schema validates it.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botstream.domain.config import DomainConfig
from botstream.domain.events import decode_event
from botstream.domain.plans import decode_plan
from botstream.errors import InvalidRecord
from tests.unit.schema_helpers import validator

CASES_DIR = Path(__file__).parent / "fixtures" / "schema_cases"
CONFIG = DomainConfig()


def _cases(name: str) -> list[tuple[str, object, bool]]:
    data = json.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"))
    rows = [(c["case"], c["value"], True) for c in data["valid"]]
    rows += [(c["case"], c["value"], False) for c in data["invalid"]]
    rows += [(c["case"], c["value"], False) for c in data.get("invalid_json_values", [])]
    return rows


def _decodes(decode, value: object) -> bool:
    try:
        decode(orjson.dumps(value))
    except InvalidRecord:
        return False
    return True


def _decode_event(raw: bytes):
    return decode_event(raw, CONFIG.max_event_bytes)


def _decode_plan(raw: bytes):
    return decode_plan(raw, CONFIG)


DECODERS = {"widget-event": _decode_event, "plan-record": _decode_plan}


@pytest.mark.parametrize(
    ("schema", "case", "value", "valid"),
    [(name, *row) for name in DECODERS for row in _cases(name)],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_fixture_case_agrees(schema: str, case: str, value: object, valid: bool) -> None:
    """Each fixture case: schema and decoder both give the expected verdict."""
    assert validator(schema).is_valid(value) is valid, f"schema disagrees on {case!r}"
    assert _decodes(DECODERS[schema], value) is valid, f"decoder disagrees on {case!r}"


# -- random mutations of valid records ---------------------------------------------

_VALID_EVENT = {
    "event_id": "e-1",
    "type": "chatbot.button_clicked",
    "occurred_at": "2026-11-24T20:15:00.123Z",
    "account_id": "acc-17",
    "conversation_id": "c-9a1",
    "visitor_id": "v-77",
    "data": {"chatbot_id": "bot-1", "button_id": "shipping"},
}
_VALID_PLAN = {
    "account_id": "acc-17",
    "plan": "pro",
    "chatbot_pack": True,
    "effective_at": "2026-11-01T00:00:00Z",
}


@st.composite
def _timestamp_texts(draw) -> str:
    """Timestamps near the valid shape: each part usually right, sometimes just off.

    Drawn with a plain ``Random`` rather than hypothesis' own choices, which
    favour edge cases so strongly that almost no valid timestamp came out.
    """
    rnd = draw(st.randoms(use_true_random=True))

    def part(valid: list[str], invalid: list[str]) -> str:
        return rnd.choice(invalid if rnd.random() < 0.06 else valid)

    def numbers(low: int, high: int, width: int = 2) -> list[str]:
        return [f"{n:0{width}d}" for n in range(low, high + 1)]

    year = part(numbers(1970, 2999, 4), ["1969", "3000", "0000", "20266", "26"])
    month = part(numbers(1, 12), ["00", "13", "1"])
    day = part(numbers(1, 31), ["00", "32", "1"])
    sep = part(["T"], ["t", " ", ""])
    hour = part(numbers(0, 23), ["24", "7"])
    minute = part(numbers(0, 59), ["60", "5"])
    second = part(numbers(0, 59), ["60", "61"])
    fraction = part(["", ".1", ".123", ".123456789"], [".", ".12a", ",123"])
    offset = part(
        ["Z", "+00:00", "-05:30", "+23:59"], ["", "z", "+24:00", "+0530", "+05", "-00:60", "Z\n"]
    )
    return f"{year}-{month}-{day}{sep}{hour}:{minute}:{second}{fraction}{offset}"


_timestamps = st.one_of(
    _timestamp_texts(), _timestamp_texts(), _timestamp_texts(), st.text(max_size=30)
)
_ids = st.one_of(
    st.text(min_size=0, max_size=3),
    st.text(alphabet="ab", min_size=126, max_size=130),
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["visitor", "chatbot", "agent", "system", ""]),
)
_values = st.one_of(
    _scalars,
    _ids,
    _timestamps,
    st.lists(_scalars, max_size=2),
    st.dictionaries(st.text(max_size=3), _scalars, max_size=2),
    st.sampled_from(
        [
            "chatbot.triggered",
            "conversation.closed",
            "chatbot.unknown",
            "pro",
            "standard",
            "enterprise",
        ]
    ),
    st.dictionaries(st.sampled_from(["initiator", "closed_by", "to"]), _scalars, max_size=2),
)


def _mutated(base: dict):
    keys = st.sampled_from([*base, "data", "visitor_id", "extra"])
    return st.lists(
        st.tuples(keys, st.one_of(st.just(None), _values), st.booleans()), max_size=3
    ).map(lambda edits: _apply(base, edits))


def _apply(base: dict, edits: list) -> dict:
    record = json.loads(json.dumps(base))
    for key, value, delete in edits:
        if delete:
            record.pop(key, None)
        else:
            record[key] = value
    return record


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_VALID_EVENT))
def test_event_decoder_matches_schema(record: dict) -> None:
    """Random widget events: decodes if and only if the schema validates."""
    assert _decodes(_decode_event, record) is validator("widget-event").is_valid(record)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated(_VALID_PLAN))
def test_plan_decoder_matches_schema(record: dict) -> None:
    """Random plan records: decodes if and only if the schema validates."""
    assert _decodes(_decode_plan, record) is validator("plan-record").is_valid(record)


@settings(max_examples=400, deadline=None)
@given(_timestamps)
def test_timestamp_rules_match_schema(text: str) -> None:
    """Any string as ``occurred_at``: the decoder and the schema agree."""
    record = {**_VALID_EVENT, "occurred_at": text}
    assert _decodes(_decode_event, record) is validator("widget-event").is_valid(record)
