"""Statistics: conversations by outcome per account and month of started_at (SPEC section 5)."""

from __future__ import annotations

import pytest

from botstream.domain.conversation import Outcome
from botstream.domain.stats import StatsChange, apply_stats_change, stats_record
from tests.unit.domain.conftest import (
    AGENT_MSG,
    CLICK,
    LEFT,
    STARTED,
    TRIGGERED,
    VISITOR_MSG,
    Harness,
    ev,
)

OUTCOMES = ("resolved_by_chatbot", "transferred_to_agent", "unengaged", "no_chatbot")
CODE = {
    "resolved_by_chatbot": Outcome.RESOLVED_BY_CHATBOT,
    "transferred_to_agent": Outcome.TRANSFERRED_TO_AGENT,
    "unengaged": Outcome.UNENGAGED,
    "no_chatbot": Outcome.NO_CHATBOT,
}


def counts(**nonzero: int) -> dict[str, int]:
    """A month's counts: every outcome, zero unless given."""
    return {name: nonzero.get(name, 0) for name in OUTCOMES}


def change(old: tuple[str, str] | None, new: tuple[str, str], account: str = "acc-1"):
    return StatsChange(
        account,
        None if old is None else (old[0], int(CODE[old[1]])),
        (new[0], int(CODE[new[1]])),
    )


# (case id, changes as (old, new) pairs of (month, outcome), expected month -> counts)
CHANGES = [
    ("first-revision", [(None, ("2026-11", "unengaged"))], {"2026-11": counts(unengaged=1)}),
    (
        "outcome-moves",
        [
            (None, ("2026-11", "unengaged")),
            (("2026-11", "unengaged"), ("2026-11", "resolved_by_chatbot")),
        ],
        {"2026-11": counts(resolved_by_chatbot=1)},
    ),
    (
        "same-outcome-again",
        [(None, ("2026-11", "no_chatbot")), (("2026-11", "no_chatbot"), ("2026-11", "no_chatbot"))],
        {"2026-11": counts(no_chatbot=1)},
    ),
    (
        "month-moves",
        [(None, ("2026-12", "unengaged")), (("2026-12", "unengaged"), ("2026-11", "unengaged"))],
        {"2026-12": counts(), "2026-11": counts(unengaged=1)},
    ),
    (
        "two-conversations",
        [(None, ("2026-11", "transferred_to_agent")), (None, ("2026-11", "transferred_to_agent"))],
        {"2026-11": counts(transferred_to_agent=2)},
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_apply_stats_change(changes, expected):
    result: dict[str, dict[str, int]] = {}
    for old, new in changes:
        apply_stats_change(result, change(old, new))
    assert result == expected


def test_stats_record_has_every_outcome():
    assert stats_record("acc-1", "2026-11", None) == {
        "account_id": "acc-1",
        "month": "2026-11",
        **counts(),
    }
    assert stats_record("acc-1", "2026-11", counts(unengaged=3)) == {
        "account_id": "acc-1",
        "month": "2026-11",
        **counts(unengaged=3),
    }


# -- through the processor: the latest revision of each conversation counts -------------------


def test_outcome_change_between_revisions_moves_the_count():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1), ev(LEFT, 5))
    assert harness.stats == {"acc-1": {"2026-11": counts(unengaged=1)}}
    harness.feed(ev(VISITOR_MSG, 3))  # late, after the chatbot: transferred
    assert harness.stats == {"acc-1": {"2026-11": counts(transferred_to_agent=1)}}
    harness.feed(ev(CLICK, 2))  # billable now, still transferred
    assert harness.stats == {"acc-1": {"2026-11": counts(transferred_to_agent=1)}}


def test_late_event_moves_started_at_into_previous_month():
    harness = Harness()
    harness.feed(ev(TRIGGERED, "2026-12-01T00:05:00Z"), ev(LEFT, "2026-12-01T00:10:00Z"))
    assert harness.stats["acc-1"]["2026-12"] == counts(unengaged=1)
    harness.feed(ev(STARTED, "2026-11-30T23:58:00Z"))
    assert harness.stats["acc-1"]["2026-11"] == counts(unengaged=1)
    assert harness.stats["acc-1"]["2026-12"] == counts()


def test_month_of_started_at_not_of_billable_at():
    harness = Harness()
    harness.feed(
        ev(TRIGGERED, "2026-11-30T23:59:00Z"),
        ev(CLICK, "2026-12-01T00:00:30Z"),
        ev(LEFT, "2026-12-01T00:01:00Z"),
    )
    assert harness.charges[0].month == "2026-12"
    assert harness.stats == {"acc-1": {"2026-11": counts(resolved_by_chatbot=1)}}


def test_open_conversations_are_not_counted_until_they_end():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1))
    assert harness.stats == {}
    harness.end_all()
    assert harness.stats == {"acc-1": {"2026-11": counts(unengaged=1)}}


def test_reopened_conversation_counted_once():
    harness = Harness()
    harness.feed(ev(TRIGGERED, 1), ev(LEFT, 2), ev(VISITOR_MSG, 3), ev(LEFT, 4))
    assert harness.stats == {"acc-1": {"2026-11": counts(transferred_to_agent=1)}}


def test_many_conversations_per_account_and_month():
    harness = Harness()
    harness.feed(
        ev(TRIGGERED, "2026-10-31T23:59:59.999Z", conv="f"),
        ev(TRIGGERED, 1, conv="a"),
        ev(CLICK, 2, conv="a"),
        ev(LEFT, 3, conv="a"),
        ev(TRIGGERED, 1, conv="b"),
        ev(VISITOR_MSG, 2, conv="b"),
        ev(LEFT, 3, conv="b"),
        ev(VISITOR_MSG, 1, conv="c"),
        ev(AGENT_MSG, 2, conv="c"),
        ev(LEFT, 3, conv="c"),
        ev(TRIGGERED, 1, conv="d"),
        ev(LEFT, 3, conv="d"),
        ev(TRIGGERED, 1, conv="e", account="acc-2"),
        ev(CLICK, 2, conv="e", account="acc-2"),
    )
    harness.end_all()
    assert harness.stats == {
        "acc-1": {
            "2026-11": counts(
                resolved_by_chatbot=1, transferred_to_agent=1, no_chatbot=1, unengaged=1
            ),
            "2026-10": counts(unengaged=1),
        },
        "acc-2": {"2026-11": counts(resolved_by_chatbot=1)},
    }
