"""Hostile records through the event and plan decoders (the quick part of the fuzz run).

Every broken shape of ``reliability/hostile.py`` (each field of each wrong
type, invalid UTF-8, lone surrogates, deep nesting, huge numbers, sizes around
the limit...) must be rejected with the reason it was built with, and the
independent judge of ``reliability/oracle.py`` (the published schemas and
SPEC's rules, no botstream code) must agree. Random records, mutations and
bytes are judged by that oracle alone. Nothing but ``InvalidRecord`` may
escape a decoder. ``make fuzz`` runs the same checks on a million records.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botstream.domain.events import decode_event
from botstream.errors import InvalidRecord
from reliability.hostile import EventForge, nested
from reliability.strategies import (
    EVENT_SHAPE_NAMES,
    MAX_BYTES,
    PLAN_SHAPE_NAMES,
    any_typed_events,
    any_typed_plans,
    broken_events,
    broken_plans,
    check_event,
    check_plan,
    mutated_events,
    valid_events,
    valid_plans,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("shape", EVENT_SHAPE_NAMES)
@settings(max_examples=3, deadline=None, database=None)
@given(data=st.data())
def test_each_broken_event_shape_gets_its_reason(shape, data):
    raw, codes = data.draw(broken_events(shape))
    check_event(raw, codes)


@pytest.mark.parametrize("shape", PLAN_SHAPE_NAMES)
@settings(max_examples=3, deadline=None, database=None)
@given(data=st.data())
def test_each_broken_plan_shape_gets_its_reason(shape, data):
    raw, codes = data.draw(broken_plans(shape))
    check_plan(raw, codes)


@FUZZ
@given(valid_events())
def test_valid_events_decode_to_what_they_say(case):
    raw, _ = case
    check_event(raw)


@FUZZ
@given(valid_plans())
def test_valid_plans_decode_to_what_they_say(case):
    raw, _ = case
    check_plan(raw)


@FUZZ
@given(any_typed_events())
def test_any_value_in_any_event_field(raw):
    check_event(raw)


@FUZZ
@given(any_typed_plans())
def test_any_value_in_any_plan_field(raw):
    check_plan(raw)


@FUZZ
@given(mutated_events())
def test_mutated_events(raw):
    check_event(raw)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw):
    check_event(raw)
    check_plan(raw)


@pytest.mark.parametrize(
    ("size", "multibyte", "valid"),
    [
        (MAX_BYTES - 1, False, True),
        (MAX_BYTES, False, True),
        (MAX_BYTES, True, True),
        (MAX_BYTES + 1, False, False),
        (MAX_BYTES + 1, True, False),
        (10 * 1024 * 1024, False, False),
    ],
    ids=["limit-1", "limit", "limit-multibyte", "limit+1", "limit+1-multibyte", "10MiB"],
)
def test_sizes_around_the_limit(size, multibyte, valid):
    forge = EventForge(random.Random(size), MAX_BYTES)
    obj = forge.event("chatbot.message", 1_795_000_000_000, "acc-1", "c-1")
    raw = forge.padded(obj, size, multibyte=multibyte)
    assert len(raw) == size
    check_event(raw, None if valid else frozenset({"too_large"}))


@pytest.mark.parametrize(("depth", "valid"), [(1023, True), (1024, False), (5000, False)], ids=str)
def test_nesting_depth(depth, valid):
    # The event object itself is one level: an ignored field nested `depth` more.
    raw = b'{"event_id":"e","type":"visitor.left","occurred_at":"2026-11-24T20:15:00Z",'
    raw += b'"account_id":"a","conversation_id":"c","deep":' + _deep(depth) + b"}"
    check_event(raw, None if valid else frozenset({"invalid_json"}))


def _deep(depth: int) -> bytes:
    if depth <= 1023:
        return json.dumps(nested(depth)).encode()
    return b"[" * depth + b"]" * depth


def test_nothing_but_invalid_record_escapes_a_huge_number_in_a_required_field():
    raw = (
        b'{"event_id":1e999,"type":"visitor.left","occurred_at":"2026-11-24T20:15:00Z",'
        b'"account_id":"a","conversation_id":"c"}'
    )
    with pytest.raises(InvalidRecord) as raised:
        decode_event(raw)
    assert raised.value.code == "invalid_json"


def test_a_repeated_key_keeps_its_last_value():
    raw = (
        b'{"event_id":17,"type":null,"event_id":"e-1","type":"visitor.left",'
        b'"occurred_at":"2026-11-24T20:15:00Z","account_id":"a","conversation_id":"c"}'
    )
    check_event(raw)
    assert decode_event(raw).event_id == "e-1"


def test_a_value_a_repeated_key_replaces_must_still_be_strict_json():
    # Found by atheris: the lone surrogate sits in a value that the last one replaces.
    raw = (
        b'{"account_id":"acc-1","plan":"pro","chatbot_pack":false,'
        b'"effective_at":"a\\ud800a","effective_at":"2026-11-01T00:00:00Z"}'
    )
    check_plan(raw, frozenset({"invalid_json"}))
