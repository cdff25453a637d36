"""Property-based tests: results do not depend on arrival order or on duplicates (SPEC 4, 5).

A small reference model, written straight from SPEC section 4, gives the
expected order-free fields of each conversation; the processor must agree with
it for any arrival order with duplicates inserted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from botstream.domain.config import DomainConfig
from botstream.domain.metering import apply_charge
from tests.unit.domain.conftest import (
    AGENT_JOINED,
    AGENT_MSG,
    ALL_TYPES,
    BOT_MSG,
    CLICK,
    CLOSED,
    LEFT,
    MINUTE,
    TRANSFER,
    TRIGGERED,
    VISITOR_MSG,
    Harness,
    ev,
    iso,
    ms,
)

ORDER_DEPENDENT = ("revision", "billable_at", "billing_month")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Spec:
    """One generated event: type, epoch ms, closed_by (or None), id."""

    type: str
    at: int
    closed_by: str | None
    id: str

    def build(self, conv: str, account: str):
        data = {} if self.closed_by is None else {"closed_by": self.closed_by}
        return ev(self.type, iso(self.at), conv=conv, account=account, id=self.id, **data)


# -- the reference model (SPEC section 4) -----------------------------------------------------

_END_RANK = {CLOSED: 2, LEFT: 1}


def reference_billable_at(events: list[Spec]) -> int | None:
    bots = [e.at for e in events if e.type in (TRIGGERED, BOT_MSG)]
    closes = [e.at for e in events if e.type == CLOSED and e.closed_by == "chatbot"]
    clicks = [e.at for e in events if e.type == CLICK]
    bot_at = min(bots) if bots else (min(closes) if closes else None)
    if bot_at is None or not clicks:
        return None
    return max(bot_at, min(clicks))


def reference(events: list[Spec], conv: str, account: str) -> dict:
    """The order-free fields of the outcome record after every event has arrived."""
    bots = [e.at for e in events if e.type in (TRIGGERED, BOT_MSG)]
    closes = [e.at for e in events if e.type == CLOSED and e.closed_by == "chatbot"]
    clicks = [e.at for e in events if e.type == CLICK]
    visitor = [e.at for e in events if e.type == VISITOR_MSG]
    agent = [e.at for e in events if e.type in (AGENT_JOINED, AGENT_MSG)]
    transfers = [e.at for e in events if e.type == TRANSFER]

    bot_at = min(bots) if bots else (min(closes) if closes else None)
    if bot_at is None:
        role = None
    elif not bots:
        role = "ended"
    elif all(bot_at <= min(times) for times in (visitor, agent) if times):
        role = "started"
    else:
        role = "joined"
    contact = visitor + agent + transfers
    contacted = bot_at is not None and bool(contact) and max(contact) >= bot_at
    if role is None:
        outcome = "no_chatbot"
    elif contacted:
        outcome = "transferred_to_agent"
    elif clicks:
        outcome = "resolved_by_chatbot"
    else:
        outcome = "unengaged"
    last = max(events, key=lambda e: (e.at, _END_RANK.get(e.type, 0)))
    end_reason = {CLOSED: "closed", LEFT: "visitor_left"}.get(last.type, "inactivity")
    return {
        "conversation_id": conv,
        "account_id": account,
        "outcome": outcome,
        "chatbot_role": role,
        "billable": role is not None and bool(clicks),
        "started_at": iso(min(e.at for e in events)),
        "ended_at": iso(last.at),
        "end_reason": end_reason,
        "counts": {
            "events": len(events),
            "chatbot_clicks": len(clicks),
            "visitor_messages": len(visitor),
            "agent_messages": sum(e.type == AGENT_MSG for e in events),
        },
    }


def charge_time_billable_at(arrivals: list[Spec]) -> int | None:
    """billable_at at the first arrival after which the conversation is billable."""
    seen: list[Spec] = []
    ids: set[str] = set()
    for event in arrivals:
        if event.id in ids:
            continue
        ids.add(event.id)
        seen.append(event)
        billable_at = reference_billable_at(seen)
        if billable_at is not None:
            return billable_at
    return None


# -- strategies -------------------------------------------------------------------------------

BASE = ms("2026-11-24T20:00:00Z")
#: A few shared minutes so that equal times (ties) are common.
SHARED_MINUTES = [0, 1, 2, 30, 31, 90]


@st.composite
def conversation_events(draw, prefix: str, base: int = BASE, span_minutes: int = 240):
    n = draw(st.integers(1, 10))
    events = []
    for k in range(n):
        type_ = draw(st.sampled_from(ALL_TYPES))
        minute = draw(st.one_of(st.sampled_from(SHARED_MINUTES), st.integers(0, span_minutes)))
        offset = draw(st.sampled_from([0, 0, 0, 1, 999]))
        if type_ == CLOSED:
            closed_by = draw(
                st.sampled_from([None, "chatbot", "chatbot", "agent", "visitor", "system"])
            )
        else:
            # closed_by is allowed on any type and must not matter there.
            closed_by = draw(st.sampled_from([None, None, None, "chatbot"]))
        events.append(Spec(type_, base + minute * MINUTE + offset, closed_by, f"{prefix}-e{k}"))
    return events


@st.composite
def arrival(draw, events: list):
    """A permutation of ``events`` with duplicates of some of them inserted anywhere."""
    order = draw(st.permutations(events))
    duplicates = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    result = list(order)
    for duplicate in duplicates:
        result.insert(draw(st.integers(0, len(result))), duplicate)
    return result


def strip(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ORDER_DEPENDENT}


def run_one(arrivals: list[Spec]) -> Harness:
    harness = Harness()
    harness.feed(*(e.build("c-1", "acc-1") for e in arrivals))
    harness.end_all()
    return harness


# -- properties ---------------------------------------------------------------------------------


@SETTINGS
@given(data=st.data())
def test_one_conversation_any_order_with_duplicates(data):
    events = data.draw(conversation_events("c-1"))
    first = data.draw(arrival(events))
    second = data.draw(arrival(events))
    one, two = run_one(first), run_one(second)
    latest_one, latest_two = one.latest(), two.latest()

    # Identical across orders except the order-dependent fields.
    assert strip(latest_one) == strip(latest_two)
    # And equal to SPEC's rules applied to the distinct events.
    assert strip(latest_one) == reference(events, "c-1", "acc-1")

    for harness, arrivals, latest in ((one, first, latest_one), (two, second, latest_two)):
        # At most one charge, at the billable_at the conversation had at that moment.
        expected = charge_time_billable_at(arrivals)
        assert [c.billable_at for c in harness.charges] == ([] if expected is None else [expected])
        assert latest["billable_at"] == (None if expected is None else iso(expected))
        assert latest["billing_month"] == (None if expected is None else iso(expected)[:7])
        # Revisions count 1, 2, 3... and the last one is the latest record.
        assert [r["revision"] for r in harness.revisions] == list(
            range(1, len(harness.revisions) + 1)
        )


ACCOUNTS = ["acc-1", "acc-2", "acc-3"]
MONTH_EDGE = ms("2026-11-30T23:00:00Z")


@st.composite
def many_conversations(draw):
    count = draw(st.integers(1, 12))
    conversations = []
    for n in range(count):
        conv = f"c-{n}"
        account = draw(st.sampled_from(ACCOUNTS))
        # Starts from one hour before to one hour after the November/December edge.
        base = MONTH_EDGE + draw(st.integers(0, 120)) * MINUTE
        events = draw(conversation_events(conv, base=base, span_minutes=90))
        conversations.append((conv, account, events))
    return conversations


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_usage_counts_charged_conversations_per_account_and_month(data):
    conversations = data.draw(many_conversations())
    tagged = [(conv, account, e) for conv, account, events in conversations for e in events]
    arrivals = data.draw(arrival(tagged))

    harness = Harness()
    harness.feed(*(e.build(conv, account) for conv, account, e in arrivals))
    harness.end_all()

    config = DomainConfig()
    usage: dict[tuple[str, str], object] = {}
    records: dict[tuple[str, str], dict] = {}
    for item in harness.charges:
        key = (item.account_id, item.month)
        usage[key], records[key], _ = apply_charge(usage.get(key), item, None, config)

    per_conversation = Counter(c.conversation_id for c in harness.charges)
    assert all(n == 1 for n in per_conversation.values())

    expected_used: Counter = Counter()
    for conv, account, events in conversations:
        latest = harness.latest(conv)
        assert strip(latest) == reference(events, conv, account)
        if latest["billable"]:
            expected_used[(account, latest["billing_month"])] += 1
            [only] = harness.charges_of(conv)
            assert iso(only.billable_at) == latest["billable_at"]
        else:
            assert harness.charges_of(conv) == []
    assert {key: record["used"] for key, record in records.items()} == dict(expected_used)
    for record in records.values():
        assert record["remaining"] == max(0, 100 - record["used"])
