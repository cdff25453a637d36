"""The stream processor end to end on the real broker: SPEC section 1's two scenarios."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest

from botstream.domain.timefmt import parse_timestamp_ms
from botstream.stream.topology import build_stages
from tests.integration.conftest import produce, read_committed
from tests.unit.schema_helpers import validator

pytestmark = pytest.mark.integration


# The live stream's event time follows the wall clock when a partition is idle
# (SPEC section 4), so each test gives the stages a clock set just after its
# scenario: with the real clock, events dated more than the idle timeout ago would
# end their conversation as each arrived.
def clock_at(at: str):
    """A fixed wall clock for the stages."""
    seconds = parse_timestamp_ms(at) / 1000
    return lambda: seconds


def event(event_id: str, type_: str, at: str, conversation: str, **data: str) -> tuple:
    """A widget event as a Kafka record keyed by conversation id."""
    value = {
        "event_id": event_id,
        "type": type_,
        "occurred_at": at,
        "account_id": "acc-17",
        "conversation_id": conversation,
        "visitor_id": "v-77",
        "data": data or None,
    }
    return conversation.encode(), orjson.dumps(value)


RESOLVED = [  # SPEC section 1: the typical chatbot conversation
    event("e1", "conversation.started", "2026-11-24T20:14:51Z", "c-1", initiator="chatbot"),
    event("e2", "chatbot.triggered", "2026-11-24T20:14:51Z", "c-1", chatbot_id="bot-1"),
    event(
        "e3",
        "chatbot.button_clicked",
        "2026-11-24T20:15:00.123Z",
        "c-1",
        chatbot_id="bot-1",
        button_id="shipping",
    ),
    event(
        "e3",
        "chatbot.button_clicked",
        "2026-11-24T20:15:00.123Z",
        "c-1",
        chatbot_id="bot-1",
        button_id="shipping",
    ),  # a duplicate
    event("e4", "chatbot.button_clicked", "2026-11-24T20:15:10Z", "c-1", chatbot_id="bot-1"),
    event("e5", "widget.closed", "2026-11-24T20:16:00Z", "c-1"),
    event("e6", "visitor.left", "2026-11-24T20:16:30Z", "c-1"),
]
TRANSFERRED = [  # SPEC section 1: the visitor ignores the buttons and writes to an agent
    event("f1", "chatbot.triggered", "2026-11-24T20:20:00Z", "c-2", chatbot_id="bot-1"),
    event("f2", "visitor.message", "2026-11-24T20:20:30Z", "c-2"),
    event("f3", "agent.joined", "2026-11-24T20:21:00Z", "c-2", agent_id="a-1"),
    event("f4", "agent.message", "2026-11-24T20:21:10Z", "c-2", agent_id="a-1"),
    event("f5", "conversation.closed", "2026-11-24T20:30:00Z", "c-2", closed_by="agent"),
]


@contextlib.asynccontextmanager
async def running(settings, clock):
    """The three stages running in this event loop."""
    stages = build_stages(settings, clock=clock)
    tasks = [asyncio.create_task(stage.run()) for stage in stages.values()]
    try:
        yield stages
    finally:
        for stage in stages.values():
            stage.stop()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def test_spec_scenarios(stream_settings) -> None:
    """Outcomes, usage and alerts of SPEC section 1, read back read_committed."""
    settings = stream_settings
    topics = settings.topics
    plan = {
        "account_id": "acc-17",
        "plan": "standard",
        "chatbot_pack": False,
        "effective_at": "2020-01-01T00:00:00Z",
    }
    await produce(settings, topics.plans, [(b"acc-17", orjson.dumps(plan))])
    async with running(settings, clock_at("2026-11-24T20:31:00Z")):
        await asyncio.sleep(3)  # the plan is read before the events
        await produce(settings, topics.events, RESOLVED + TRANSFERRED + [(b"x", b"not json")])
        outcomes = await read_committed(
            settings,
            topics.outcomes,
            lambda rs: {r["conversation_id"] for r in rs} >= {"c-1", "c-2"},
        )
        usage = await read_committed(settings, topics.usage, lambda rs: len(rs) >= 1)
        dead = await read_committed(settings, topics.dead_letters, lambda rs: len(rs) >= 1)

    latest = {r["conversation_id"]: r for r in outcomes}
    assert latest["c-1"] == {
        "conversation_id": "c-1",
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
    assert latest["c-2"]["outcome"] == "transferred_to_agent"
    assert latest["c-2"]["billable"] is False
    assert latest["c-2"]["end_reason"] == "closed"
    assert usage == [
        {
            "account_id": "acc-17",
            "month": "2026-11",
            "plan": "standard",
            "chatbot_pack": False,
            "limit": 100,
            "used": 1,
            "remaining": 99,
            "over_limit": 0,
            "updated_at": "2026-11-24T20:15:00.123Z",
        }
    ]
    assert dead[0]["error"].startswith("invalid_json: ")
    assert dead[0]["topic"] == topics.events
    for name, records in (("outcome", outcomes), ("usage", usage), ("dead-letter", dead)):
        for record in records:
            validator(name).validate(record)


def billable_conversation(number: int) -> list[tuple]:
    """A conversation the chatbot resolves: triggered, one click, visitor leaves."""
    conversation = f"c-limit-{number}"
    minute = f"{number:02d}"
    return [
        event(f"t{number}", "chatbot.triggered", f"2026-11-24T21:{minute}:00Z", conversation),
        event(f"k{number}", "chatbot.button_clicked", f"2026-11-24T21:{minute}:10Z", conversation),
        event(f"l{number}", "visitor.left", f"2026-11-24T21:{minute}:20Z", conversation),
    ]


async def test_account_crossing_its_limit_raises_each_alert_once(stream_settings) -> None:
    """Limit 2, warning at 50%: charges 1, 2, 3 raise warning, limit_reached, exceeded."""
    from dataclasses import replace

    from botstream.domain.config import DomainConfig

    settings = replace(
        stream_settings,
        domain=DomainConfig(
            plan_limits={"standard": (2, 5), "pro": (500, 10_000)}, warning_percent=50
        ),
    )
    async with running(settings, clock_at("2026-11-24T21:05:00Z")):
        records = [r for n in range(1, 4) for r in billable_conversation(n)]
        await produce(settings, settings.topics.events, records)
        alerts = await read_committed(settings, settings.topics.alerts, lambda rs: len(rs) >= 3)
        usage = await read_committed(settings, settings.topics.usage, lambda rs: len(rs) >= 3)
    assert [(a["kind"], a["used"], a["limit"]) for a in alerts] == [
        ("quota.warning", 1, 2),
        ("quota.limit_reached", 2, 2),
        ("quota.exceeded", 3, 2),
    ]
    assert [a["alert_id"] for a in alerts] == [
        "acc-17:2026-11:quota.warning:2",
        "acc-17:2026-11:quota.limit_reached:2",
        "acc-17:2026-11:quota.exceeded:2",
    ]
    assert usage[-1]["used"] == 3
    assert usage[-1]["over_limit"] == 1
    for alert in alerts:
        validator("alert").validate(alert)
