"""Duplicate events (SPEC section 4): the last 256 distinct event ids of a conversation."""

from __future__ import annotations

import pytest

from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import (
    CLICK,
    CLOSED,
    LEFT,
    RETENTION,
    TRIGGERED,
    VISITOR_MSG,
    Harness,
    at_ms,
    ev,
    iso,
)

WINDOW = 256


def test_same_event_twice_changes_nothing():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, id="e-1"), ev(CLICK, 2, id="e-2"))
    assert len(harness.charges) == 1
    assert harness.feed(ev(CLICK, 2, id="e-2")) == []
    assert len(harness.charges) == 1
    harness.end_all()
    record = harness.latest()
    assert record["revision"] == 1
    assert record["counts"] == {
        "events": 2,
        "chatbot_clicks": 1,
        "visitor_messages": 0,
        "agent_messages": 0,
    }


def test_duplicate_of_ended_conversation_emits_no_revision():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, id="e-1"), ev(CLOSED, 2, id="e-2"))
    assert harness.feed(ev(TRIGGERED, 1, id="e-1")) == []
    assert harness.feed(ev(CLOSED, 2, id="e-2")) == []
    assert [r["revision"] for r in harness.revisions] == [1]


# (case id, first arrival, second arrival with the same id, expected outcome)
FIRST_WINS = [
    ("click-then-visitor-message", (CLICK, 2), (VISITOR_MSG, 3), "resolved_by_chatbot"),
    ("visitor-message-then-click", (VISITOR_MSG, 3), (CLICK, 2), "transferred_to_agent"),
    ("earlier-time-ignored", (CLICK, 5), (CLICK, 2), "resolved_by_chatbot"),
]


@pytest.mark.parametrize(
    ("first", "second", "outcome"), [c[1:] for c in FIRST_WINS], ids=[c[0] for c in FIRST_WINS]
)
def test_first_arrival_of_an_id_wins(first, second, outcome):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1))
    harness.feed(ev(first[0], first[1], id="same"))
    assert harness.feed(ev(second[0], second[1], id="same")) == []
    harness.end_all()
    record = harness.latest()
    assert record["outcome"] == outcome
    assert record["counts"]["events"] == 2
    assert record["ended_at"] == iso(at_ms(first[1]))


def _fill(harness: Harness, ids: list[str], start: float = 1.0) -> None:
    """Apply distinct chatbot messages with the given ids (times one ms apart)."""
    for n, event_id in enumerate(ids):
        harness.feed(ev("chatbot.message", iso(at_ms(start) + n), id=event_id))


# (case id, distinct ids applied after "first", re-sent "first" is applied?)
WINDOW_CASES = [
    ("255-others-still-duplicate", WINDOW - 1, False),
    ("256-others-forgotten", WINDOW, True),
    ("300-others-forgotten", 300, True),
    ("no-others-duplicate", 0, False),
]


@pytest.mark.parametrize(
    ("others", "applied"), [c[1:] for c in WINDOW_CASES], ids=[c[0] for c in WINDOW_CASES]
)
def test_window_of_256_distinct_ids(others, applied):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="first"))
    _fill(harness, [f"other-{n}" for n in range(others)])
    harness.feed(ev(TRIGGERED, 0, id="first"))
    harness.end_all()
    assert harness.latest()["counts"]["events"] == 1 + others + (1 if applied else 0)


def test_duplicates_do_not_enter_the_window():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="first"))
    _fill(harness, [f"other-{n}" for n in range(WINDOW - 1)])  # window is now full
    for _ in range(10):
        assert harness.feed(ev("chatbot.message", 1, id="other-3")) == []
    assert harness.feed(ev(TRIGGERED, 0, id="first")) == []  # still remembered
    harness.end_all()
    assert harness.latest()["counts"]["events"] == WINDOW


def test_reapplied_id_enters_the_window_again():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="first"))
    _fill(harness, [f"other-{n}" for n in range(WINDOW)])
    harness.feed(ev(TRIGGERED, 0, id="first"))  # forgotten, applied again
    assert harness.feed(ev(TRIGGERED, 0, id="first")) == []  # and remembered again
    harness.end_all()
    assert harness.latest()["counts"]["events"] == WINDOW + 2


@pytest.mark.parametrize("kind", ["account_mismatch", "late"])
def test_dead_letters_do_not_enter_the_window(kind):
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="first"))
    _fill(harness, [f"other-{n}" for n in range(WINDOW - 1)])  # window is now full
    if kind == "late":
        # Watermark 1 ms short of retention after "first": events dated before it are late.
        harness.feed(ev(TRIGGERED, iso(at_ms(0) + RETENTION - 1), conv="clock"))
    for n in range(5):
        if kind == "account_mismatch":
            bad = ev(CLICK, 2, id=f"bad-{n}", account="acc-other")
        else:
            bad = ev(CLICK, iso(at_ms(0) - 2), id=f"bad-{n}")
        with pytest.raises(InvalidRecord) as raised:
            harness.feed(bad)
        assert raised.value.code == kind
    # "first" is still in the window: a dead letter did not push it out.
    assert harness.feed(ev(TRIGGERED, 0, id="first")) == []


def test_dead_letter_id_is_not_remembered():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, id="e-1"))
    with pytest.raises(InvalidRecord):
        harness.feed(ev(CLICK, 2, id="e-2", account="acc-other"))
    harness.feed(ev(CLICK, 2, id="e-2"))  # valid this time: applied
    harness.end_all()
    assert harness.latest()["counts"]["chatbot_clicks"] == 1


def test_duplicate_with_other_account_is_a_dead_letter_first():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, id="e-1"))
    with pytest.raises(InvalidRecord) as raised:
        harness.feed(ev(TRIGGERED, 1, id="e-1", account="acc-other"))
    assert raised.value.code == "account_mismatch"


def test_same_id_in_another_conversation_is_not_a_duplicate():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, conv="c-1", id="e-1"), ev(TRIGGERED, 1, conv="c-2", id="e-1"))
    harness.end_all()
    assert harness.latest("c-1")["counts"]["events"] == 1
    assert harness.latest("c-2")["counts"]["events"] == 1


def test_duplicate_after_reopen_is_still_a_duplicate():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1, id="e-1"), ev(LEFT, 2, id="e-2"), ev(CLICK, 3, id="e-3"))
    assert harness.feed(ev(LEFT, 2, id="e-2")) == []
    harness.end_all()
    record = harness.latest()
    assert record["revision"] == 2
    assert record["end_reason"] == "inactivity"
    assert record["counts"]["events"] == 3


def test_dropped_conversation_forgets_its_ids():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="e-1"), ev(CLOSED, 1, id="e-2"))
    harness.advance(at_ms(1) + RETENTION, raw_ms=True)
    [record] = harness.feed(ev(CLOSED, iso(at_ms(1) + RETENTION), id="e-2"))
    assert record["revision"] == 1


def test_duplicate_does_not_move_the_watermark():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 0, id="e-1"), ev(TRIGGERED, 0, conv="c-2"))
    # Same id, dated 40 minutes later: a duplicate, so event time must not move.
    assert harness.feed(ev(TRIGGERED, 40, id="e-1")) == []
    assert harness.proc.watermark == at_ms(0)
    assert harness.revisions == []
