"""Classification of a conversation (SPEC section 4, "Derived, in this order").

Each row lists a conversation's events (type, minutes after 20:00, data) and the
outcome fields expected by SPEC's rules, worked out by hand. Every row is run
in the listed order and in reverse: only the charge-time ``billable_at`` may
depend on arrival order, so it is checked for the listed order only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.unit.domain.conftest import (
    AGENT_JOINED,
    AGENT_MSG,
    BOT_MSG,
    CLICK,
    CLOSED,
    LEFT,
    STARTED,
    TRANSFER,
    TRIGGERED,
    VISITOR_MSG,
    WIDGET_CLOSED,
    Harness,
    at_ms,
    ev,
    iso,
)


def E(type: str, at: str | float, **data: object) -> tuple:
    return (type, at, data)


@dataclass
class Case:
    id: str
    events: list[tuple]
    outcome: str
    role: str | None
    billable: bool
    #: charge-time billable_at (minutes) when the events arrive in the listed order.
    billable_at: float | str | None = None
    end_reason: str | None = None
    ended_at: float | str | None = None
    started_at: float | str | None = None
    #: (events, chatbot_clicks, visitor_messages, agent_messages)
    counts: tuple[int, int, int, int] | None = None


CASES = [
    # -- SPEC section 1 ------------------------------------------------------------------
    Case(
        "spec-resolved-by-chatbot",
        [
            E(STARTED, 0, initiator="visitor"),
            E(TRIGGERED, 1, chatbot_id="bot-1"),
            E(BOT_MSG, 1),
            E(CLICK, 2, button_id="shipping"),
            E(CLICK, 3),
            E(WIDGET_CLOSED, 4),
            E(LEFT, 5),
        ],
        "resolved_by_chatbot",
        "started",
        True,
        billable_at=2,
        end_reason="visitor_left",
        ended_at=5,
        started_at=0,
        counts=(7, 2, 0, 0),
    ),
    Case(
        "spec-normal-transferred-to-agent",
        [
            E(STARTED, 0),
            E(TRIGGERED, 1),
            E(BOT_MSG, 1),
            E(VISITOR_MSG, 2),
            E(AGENT_JOINED, 3),
            E(AGENT_MSG, 4),
            E(VISITOR_MSG, 5),
            E(CLOSED, 6, closed_by="agent"),
        ],
        "transferred_to_agent",
        "started",
        False,
        end_reason="closed",
        ended_at=6,
        started_at=0,
        counts=(8, 0, 2, 1),
    ),
    # -- no chatbot ------------------------------------------------------------------------
    Case(
        "no-chatbot-visitor-writes-to-agents",
        [
            E(STARTED, 0),
            E(VISITOR_MSG, 1),
            E(AGENT_JOINED, 2),
            E(AGENT_MSG, 3),
            E(CLOSED, 4, closed_by="agent"),
        ],
        "no_chatbot",
        None,
        False,
        end_reason="closed",
        ended_at=4,
        counts=(5, 0, 1, 1),
    ),
    Case(
        "no-chatbot-click-without-any-chatbot-event",
        [E(VISITOR_MSG, 1), E(CLICK, 2), E(LEFT, 3)],
        "no_chatbot",
        None,
        False,
        end_reason="visitor_left",
        counts=(3, 1, 1, 0),
    ),
    Case(
        "no-chatbot-only-started-ends-by-inactivity",
        [E(STARTED, 0)],
        "no_chatbot",
        None,
        False,
        end_reason="inactivity",
        ended_at=0,
        started_at=0,
        counts=(1, 0, 0, 0),
    ),
    Case(
        "no-chatbot-initiator-chatbot-is-not-a-chatbot-event",
        [E(STARTED, 0, initiator="chatbot"), E(VISITOR_MSG, 1), E(LEFT, 2)],
        "no_chatbot",
        None,
        False,
    ),
    Case(
        "no-chatbot-closed-by-agent",
        [E(CLICK, 1), E(CLOSED, 2, closed_by="agent")],
        "no_chatbot",
        None,
        False,
        end_reason="closed",
    ),
    Case(
        "no-chatbot-closed-by-system",
        [E(VISITOR_MSG, 1), E(CLOSED, 2, closed_by="system")],
        "no_chatbot",
        None,
        False,
        end_reason="closed",
    ),
    Case(
        "no-chatbot-closed-by-visitor",
        [E(VISITOR_MSG, 1), E(CLOSED, 2, closed_by="visitor")],
        "no_chatbot",
        None,
        False,
    ),
    Case(
        "no-chatbot-closed-without-closed-by",
        [E(CLICK, 1), E(CLOSED, 2)],
        "no_chatbot",
        None,
        False,
        end_reason="closed",
    ),
    # -- unengaged ---------------------------------------------------------------------------
    Case(
        "unengaged-trigger-no-click-no-human",
        [E(TRIGGERED, 1), E(BOT_MSG, 1), E(WIDGET_CLOSED, 2), E(LEFT, 3)],
        "unengaged",
        "started",
        False,
        end_reason="visitor_left",
        ended_at=3,
    ),
    Case(
        "unengaged-by-inactivity",
        [E(TRIGGERED, 1)],
        "unengaged",
        "started",
        False,
        end_reason="inactivity",
        ended_at=1,
    ),
    # -- started / joined / ended ----------------------------------------------------------
    Case(
        "joined-visitor-wrote-first-then-clicks",
        [E(VISITOR_MSG, 1), E(TRIGGERED, 2), E(CLICK, 3), E(LEFT, 4)],
        "resolved_by_chatbot",
        "joined",
        True,
        billable_at=3,
    ),
    Case(
        "joined-after-agent-joined",
        [E(AGENT_JOINED, 1), E(BOT_MSG, 2), E(LEFT, 3)],
        "unengaged",
        "joined",
        False,
    ),
    Case(
        "joined-human-only-before-bot-is-not-contact",
        [E(VISITOR_MSG, 1), E(AGENT_MSG, 2), E(TRIGGERED, 3), E(LEFT, 4)],
        "unengaged",
        "joined",
        False,
        counts=(4, 0, 1, 1),
    ),
    Case(
        "joined-human-only-before-bot-with-click",
        [E(VISITOR_MSG, 1), E(AGENT_MSG, 2), E(TRIGGERED, 3), E(CLICK, 4), E(LEFT, 5)],
        "resolved_by_chatbot",
        "joined",
        True,
        billable_at=4,
    ),
    Case(
        "joined-human-1ms-before-bot",
        [
            E(VISITOR_MSG, "2026-11-24T20:01:00.000Z"),
            E(TRIGGERED, "2026-11-24T20:01:00.001Z"),
            E(CLICK, 2),
            E(LEFT, 3),
        ],
        "resolved_by_chatbot",
        "joined",
        True,
        billable_at=2,
    ),
    Case(
        "joined-human-before-and-after-bot",
        [E(VISITOR_MSG, 1), E(TRIGGERED, 2), E(CLICK, 3), E(VISITOR_MSG, 4), E(LEFT, 5)],
        "transferred_to_agent",
        "joined",
        True,
        billable_at=3,
    ),
    Case(
        "ended-only-chatbot-close",
        [E(CLOSED, 2, closed_by="chatbot")],
        "unengaged",
        "ended",
        False,
        end_reason="closed",
        ended_at=2,
    ),
    Case(
        "ended-chatbot-closes-after-visitor-wrote",
        [E(VISITOR_MSG, 1), E(CLOSED, 3, closed_by="chatbot")],
        "unengaged",
        "ended",
        False,
        end_reason="closed",
        ended_at=3,
    ),
    Case(
        "ended-click-then-chatbot-close-billable-at-close",
        [E(CLICK, 2), E(CLOSED, 5, closed_by="chatbot")],
        "resolved_by_chatbot",
        "ended",
        True,
        billable_at=5,
        end_reason="closed",
        ended_at=5,
    ),
    Case(
        "ended-chatbot-close-then-click-billable-at-click",
        [E(CLOSED, 3, closed_by="chatbot"), E(CLICK, 4)],
        "resolved_by_chatbot",
        "ended",
        True,
        billable_at=4,
        end_reason="inactivity",
        ended_at=4,
    ),
    Case(
        "ended-visitor-message-at-close-time-contacts",
        [E(VISITOR_MSG, 2), E(CLOSED, 2, closed_by="chatbot")],
        "transferred_to_agent",
        "ended",
        False,
        end_reason="closed",
    ),
    Case(
        "trigger-not-close-decides-role-joined",
        [E(VISITOR_MSG, 1), E(TRIGGERED, 2), E(CLOSED, 3, closed_by="chatbot")],
        "unengaged",
        "joined",
        False,
        end_reason="closed",
    ),
    Case(
        "trigger-not-close-decides-role-started",
        [E(TRIGGERED, 1), E(VISITOR_MSG, 2), E(CLOSED, 3, closed_by="chatbot")],
        "transferred_to_agent",
        "started",
        False,
        end_reason="closed",
    ),
    Case(
        "chatbot-message-alone-is-the-bot",
        [E(BOT_MSG, 1), E(CLICK, 2), E(LEFT, 3)],
        "resolved_by_chatbot",
        "started",
        True,
        billable_at=2,
    ),
    Case(
        "click-before-trigger-billable-at-trigger",
        [E(CLICK, 1), E(TRIGGERED, 2), E(LEFT, 3)],
        "resolved_by_chatbot",
        "started",
        True,
        billable_at=2,
    ),
    # -- contacted_agent -------------------------------------------------------------------------
    Case(
        "clicks-then-asks-for-agent-is-charged",
        [
            E(TRIGGERED, 1),
            E(CLICK, 2),
            E(CLICK, 3),
            E(VISITOR_MSG, 4),
            E(AGENT_JOINED, 5),
            E(AGENT_MSG, 6),
            E(CLOSED, 7, closed_by="agent"),
        ],
        "transferred_to_agent",
        "started",
        True,
        billable_at=2,
        end_reason="closed",
        ended_at=7,
        counts=(7, 2, 1, 1),
    ),
    Case(
        "visitor-message-at-bot-time-counts",
        [E(TRIGGERED, 1), E(VISITOR_MSG, 1), E(LEFT, 2)],
        "transferred_to_agent",
        "started",
        False,
    ),
    Case(
        "agent-act-at-bot-time-counts",
        [E(AGENT_JOINED, 1), E(TRIGGERED, 1), E(LEFT, 2)],
        "transferred_to_agent",
        "started",
        False,
        counts=(3, 0, 0, 0),
    ),
    Case(
        "agent-joined-after-bot-contacts",
        [E(TRIGGERED, 1), E(CLICK, 2), E(AGENT_JOINED, 3)],
        "transferred_to_agent",
        "started",
        True,
        billable_at=2,
        counts=(3, 1, 0, 0),
    ),
    Case(
        "transfer-after-bot-contacts-but-not-role",
        [E(TRIGGERED, 1), E(CLICK, 2), E(TRANSFER, 3, to="agents"), E(LEFT, 4)],
        "transferred_to_agent",
        "started",
        True,
        billable_at=2,
    ),
    Case(
        "transfer-before-bot-neither-role-nor-contact",
        [E(TRANSFER, 1), E(TRIGGERED, 2), E(LEFT, 3)],
        "unengaged",
        "started",
        False,
    ),
    Case(
        "transfer-at-bot-time-contacts",
        [E(TRIGGERED, 1), E(TRANSFER, 1), E(LEFT, 2)],
        "transferred_to_agent",
        "started",
        False,
    ),
    Case(
        "transfer-alone-is-no-chatbot",
        [E(TRANSFER, 1), E(LEFT, 2)],
        "no_chatbot",
        None,
        False,
    ),
    # -- counts ------------------------------------------------------------------------------------
    Case(
        "agent-messages-count-only-agent-message",
        [E(TRIGGERED, 1), E(AGENT_JOINED, 2), E(AGENT_JOINED, 3), E(AGENT_MSG, 4), E(LEFT, 5)],
        "transferred_to_agent",
        "started",
        False,
        counts=(5, 0, 0, 1),
    ),
    Case(
        "widget-closed-does-not-end",
        [E(TRIGGERED, 1), E(CLICK, 2), E(WIDGET_CLOSED, 3)],
        "resolved_by_chatbot",
        "started",
        True,
        billable_at=2,
        end_reason="inactivity",
        ended_at=3,
        counts=(3, 1, 0, 0),
    ),
    Case(
        "started-at-is-earliest-event-even-if-late",
        [E(TRIGGERED, 2), E(LEFT, 5), E(STARTED, 0)],
        "unengaged",
        "started",
        False,
        end_reason="visitor_left",
        ended_at=5,
        started_at=0,
    ),
]


def run(events: list[tuple]) -> tuple[Harness, dict]:
    harness = Harness()
    harness.feed(*(ev(type, at, **data) for type, at, data in events))
    harness.end_all()
    return harness, harness.latest()


def check(record: dict, case: Case) -> None:
    assert record["outcome"] == case.outcome
    assert record["chatbot_role"] == case.role
    assert record["billable"] is case.billable
    if not case.billable:
        assert record["billable_at"] is None
        assert record["billing_month"] is None
    if case.end_reason is not None:
        assert record["end_reason"] == case.end_reason
    if case.ended_at is not None:
        assert record["ended_at"] == iso(at_ms(case.ended_at))
    if case.started_at is not None:
        assert record["started_at"] == iso(at_ms(case.started_at))
    if case.counts is not None:
        events, clicks, visitor, agent = case.counts
        assert record["counts"] == {
            "events": events,
            "chatbot_clicks": clicks,
            "visitor_messages": visitor,
            "agent_messages": agent,
        }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classification_in_listed_order(case):
    harness, record = run(case.events)
    check(record, case)
    if case.billable:
        expected = iso(at_ms(case.billable_at))
        assert record["billable_at"] == expected
        assert record["billing_month"] == expected[:7]
        assert [iso(c.billable_at) for c in harness.charges] == [expected]
    else:
        assert harness.charges == []


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_classification_in_reverse_order(case):
    harness, record = run(list(reversed(case.events)))
    check(record, case)
    assert len(harness.charges) == (1 if case.billable else 0)


def test_spec_example_record_shape():
    """The whole record of SPEC's typical chatbot conversation, field by field."""
    harness = Harness()
    harness.feed(
        ev(STARTED, "2026-11-24T20:14:51Z", conv="c-9a1", account="acc-17", initiator="visitor"),
        ev(TRIGGERED, "2026-11-24T20:14:52Z", conv="c-9a1", account="acc-17"),
        ev(BOT_MSG, "2026-11-24T20:14:53Z", conv="c-9a1", account="acc-17"),
        ev(CLICK, "2026-11-24T20:15:00.123Z", conv="c-9a1", account="acc-17"),
        ev(CLICK, "2026-11-24T20:15:30Z", conv="c-9a1", account="acc-17"),
        ev(LEFT, "2026-11-24T21:16:30+01:00", conv="c-9a1", account="acc-17"),
    )
    assert harness.latest("c-9a1") == {
        "conversation_id": "c-9a1",
        "account_id": "acc-17",
        "revision": 1,
        "outcome": "resolved_by_chatbot",
        "chatbot_role": "started",
        "billable": True,
        "billable_at": "2026-11-24T20:15:00.123Z",
        "billing_month": "2026-11",
        "started_at": "2026-11-24T20:14:51.000Z",
        "ended_at": "2026-11-24T20:16:30.000Z",
        "end_reason": "visitor_left",
        "counts": {"events": 6, "chatbot_clicks": 2, "visitor_messages": 0, "agent_messages": 0},
    }
