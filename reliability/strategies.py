"""Hypothesis strategies of hostile widget events and plan records.

Each strategy draws raw bytes together with what a decoder must make of
them: the shapes of :mod:`reliability.hostile` carry their reason by
construction; records whose fate is not known that way (any JSON value in
any field, random mutations, random bytes) are judged by
:mod:`reliability.oracle`. :func:`check_event` and :func:`check_plan` raise
AssertionError on a disagreement, so hypothesis shrinks it to a minimal case.
"""

from __future__ import annotations

import json
import random

from hypothesis import assume
from hypothesis import strategies as st

from botstream.domain.config import DomainConfig
from reliability.decoding import (
    decode_event_safely,
    decode_plan_safely,
    event_fields_problem,
    plan_fields_problem,
    verdict_problem,
)
from reliability.hostile import (
    EVENT_TYPES,
    WRONG_TYPES,
    EventForge,
    PlanForge,
    dumps,
    mutate,
    mutate_structure,
)
from reliability.oracle import judge_event, judge_plan

CONFIG = DomainConfig()
MAX_BYTES = CONFIG.max_event_bytes
PLANS = frozenset(CONFIG.plan_limits)
#: Event times from 1970 to 2999, the years a timestamp may have, a day from either end
#: (a time written with an offset must stay within those years too).
FIRST_MS, LAST_MS = 86_400_000, 32_503_680_000_000 - 86_400_000

_SHAPES = EventForge(random.Random(0), MAX_BYTES).broken_shapes()
_PLAN_SHAPES = PlanForge(random.Random(0), MAX_BYTES, tuple(PLANS)).broken_shapes()
#: The names of every broken shape, for tests that cover each one.
EVENT_SHAPE_NAMES = [name for name, _ in _SHAPES]
PLAN_SHAPE_NAMES = [name for name, _ in _PLAN_SHAPES]

ids = st.text(min_size=1, max_size=128)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)


def _forge(seed: int) -> EventForge:
    return EventForge(random.Random(seed), MAX_BYTES)


@st.composite
def broken_events(draw, shape: str | None = None) -> tuple[bytes, frozenset[str]]:
    """A valid event broken one known way (``shape``, or any): raw bytes and reason codes."""
    forge = _forge(draw(st.integers(0, 2**32)))
    shapes = dict(forge.broken_shapes())
    name = shape or draw(st.sampled_from(EVENT_SHAPE_NAMES))
    obj = forge.event(
        draw(st.sampled_from(EVENT_TYPES)),
        draw(st.integers(FIRST_MS, LAST_MS)),
        draw(ids),
        draw(ids),
    )
    raw, codes = shapes[name](obj)
    if codes is None:
        codes = judge_event(raw, MAX_BYTES).codes
        assume(codes)
    return raw, codes


@st.composite
def valid_events(draw) -> tuple[bytes, dict]:
    """A valid event in any of its valid forms, with the object it was made from."""
    forge = _forge(draw(st.integers(0, 2**32)))
    data = draw(
        st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "initiator": st.sampled_from(["visitor", "chatbot", "agent"]),
                    "closed_by": st.sampled_from(["visitor", "agent", "chatbot", "system"]),
                    "chatbot_id": json_values,
                    "to": json_values,
                },
            ),
        )
    )
    obj = forge.event(
        draw(st.sampled_from(EVENT_TYPES)),
        draw(st.integers(FIRST_MS, LAST_MS)),
        draw(ids),
        draw(ids),
        data,
    )
    if draw(st.booleans()):
        obj["extra"] = draw(json_values)
    raw = json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()
    return raw, obj


@st.composite
def any_typed_events(draw) -> bytes:
    """Every field of an event absent, valid, or any JSON value: wrong types everywhere."""
    valid_parts = {
        "event_id": ids,
        "type": st.sampled_from(EVENT_TYPES),
        "occurred_at": st.sampled_from(["2026-11-24T20:15:00.123Z", "2026-11-24T21:15:00+01:00"]),
        "account_id": ids,
        "conversation_id": ids,
        "visitor_id": st.none() | st.text(max_size=130),
        "data": st.none()
        | st.dictionaries(
            st.sampled_from(["initiator", "closed_by", "chatbot_id", "x"]),
            json_values | st.sampled_from(["visitor", "chatbot", "agent", "system"]),
            max_size=3,
        ),
    }
    obj = {}
    for name, valid in valid_parts.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue
        wrong = json_values | st.sampled_from(list(WRONG_TYPES.values()))
        obj[name] = draw(wrong if choice == 1 else valid)
    if draw(st.booleans()):
        obj[draw(st.text(max_size=6))] = draw(json_values)
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()


@st.composite
def mutated_events(draw) -> bytes:
    """A valid event after random byte edits, or with fields removed, renamed or retyped."""
    raw, obj = draw(valid_events())
    rng = random.Random(draw(st.integers(0, 2**32)))
    return mutate(raw, rng) if draw(st.booleans()) else dumps(mutate_structure(obj, rng))


@st.composite
def broken_plans(draw, shape: str | None = None) -> tuple[bytes, frozenset[str]]:
    """A valid plan record broken one known way: raw bytes and reason codes."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    forge = PlanForge(rng, MAX_BYTES, tuple(sorted(PLANS)))
    name = shape or draw(st.sampled_from(PLAN_SHAPE_NAMES))
    obj = forge.plan(draw(ids), draw(st.integers(FIRST_MS, LAST_MS)))
    return dict(forge.broken_shapes())[name](obj)


@st.composite
def valid_plans(draw) -> tuple[bytes, dict]:
    """A valid plan record, with the object it was made from."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    forge = PlanForge(rng, MAX_BYTES, tuple(sorted(PLANS)))
    obj = forge.plan(draw(ids), draw(st.integers(FIRST_MS, LAST_MS)))
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode(), obj


@st.composite
def any_typed_plans(draw) -> bytes:
    """Every field of a plan record absent, valid, or any JSON value."""
    valid_parts = {
        "account_id": ids,
        "plan": st.sampled_from([*sorted(PLANS), "gold"]),
        "chatbot_pack": st.booleans(),
        "effective_at": st.sampled_from(["2026-11-01T00:00:00Z", "2026-11-01T01:00:00.5+01:00"]),
    }
    obj = {}
    for name, valid in valid_parts.items():
        choice = draw(st.integers(0, 9))
        if choice == 0:
            continue
        obj[name] = draw(json_values if choice == 1 else valid)
    return json.dumps(obj, ensure_ascii=draw(st.booleans())).encode()


def check_event(raw: bytes, codes: frozenset[str] | None = None) -> None:
    """Decode ``raw``; AssertionError unless it is what ``codes`` (or the oracle) says.

    With ``codes`` (known by construction) the oracle must agree with them too,
    which checks the construction and the oracle against each other.
    """
    verdict = judge_event(raw, MAX_BYTES)
    if codes is not None:
        assert not verdict.valid, f"the oracle accepts a record broken as {sorted(codes)}"
        assert codes & verdict.codes, f"built as {sorted(codes)}, oracle {sorted(verdict.codes)}"
    expect = codes if codes is not None else (verdict.codes if not verdict.valid else "applied")
    decoded = decode_event_safely(raw, MAX_BYTES)
    problem = verdict_problem(decoded, expect)
    assert problem is None, f"{problem}: {raw[:300]!r}"
    if decoded.value is not None:
        problem = event_fields_problem(decoded.value, verdict.value)
        assert problem is None, f"{problem}: {raw[:300]!r}"


def check_plan(raw: bytes, codes: frozenset[str] | None = None) -> None:
    """As :func:`check_event`, for a plan record."""
    verdict = judge_plan(raw, PLANS, MAX_BYTES)
    if codes is not None:
        assert not verdict.valid, f"the oracle accepts a plan broken as {sorted(codes)}"
        assert codes & verdict.codes, f"built as {sorted(codes)}, oracle {sorted(verdict.codes)}"
    expect = codes if codes is not None else (verdict.codes if not verdict.valid else "applied")
    decoded = decode_plan_safely(raw, CONFIG)
    problem = verdict_problem(decoded, expect)
    assert problem is None, f"{problem}: {raw[:300]!r}"
    if decoded.value is not None:
        problem = plan_fields_problem(decoded.value, verdict.value)
        assert problem is None, f"{problem}: {raw[:300]!r}"
