"""Stage tasks without Kafka: records in, outputs and changelog entries out, restore."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from botstream.config import load_settings
from botstream.domain.config import DomainConfig
from botstream.stream.engine import Output
from botstream.stream.tasks import AccountTask, ConversationTask, PlanTask

SETTINGS = load_settings(env={})
TOPICS = SETTINGS.topics


def record(topic: str, value: bytes, key: bytes | None = None, offset: int = 0) -> ConsumerRecord:
    """A consumer record as aiokafka hands it over."""
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, len(key or b""), len(value), ())


def widget(event_id: str, type_: str, at: str, conversation: str = "c-1") -> ConsumerRecord:
    """A widget event record."""
    value = orjson.dumps(
        {
            "event_id": event_id,
            "type": type_,
            "occurred_at": at,
            "account_id": "acc-1",
            "conversation_id": conversation,
        }
    )
    return record(TOPICS.events, value, conversation.encode())


def restored(task_type, changes: dict, **kwargs):
    """A fresh task of ``task_type`` loaded from ``changes``."""
    task = task_type(0, settings=SETTINGS, **kwargs)
    for key, value in changes.items():
        task.restore(key, value)
    task.restored()
    return task


BILLABLE_CLOSED = [
    widget("e1", "chatbot.triggered", "2026-11-24T20:00:00Z"),
    widget("e2", "chatbot.button_clicked", "2026-11-24T20:00:10Z"),
    widget("e3", "visitor.left", "2026-11-24T20:00:20Z"),
]


def test_conversation_task_publishes_outcome_charge_and_stats() -> None:
    """A billable conversation that ends: outcome, charge and stats change, keyed right."""
    task = restored(ConversationTask, {})
    out: list[Output] = []
    task.process(BILLABLE_CLOSED, now_ms=0, out=out)
    by_topic = {}
    for item in out:
        by_topic.setdefault(item.topic, []).append(item)
    [outcome] = by_topic[TOPICS.outcomes]
    assert outcome.key == b"c-1"
    assert orjson.loads(outcome.value)["outcome"] == "resolved_by_chatbot"
    updates = [orjson.loads(item.value) for item in by_topic[TOPICS.account_updates]]
    assert [u["t"] for u in updates] == ["charge", "stats"]
    assert all(item.key == b"acc-1" for item in by_topic[TOPICS.account_updates])


def test_bad_record_becomes_a_dead_letter_with_its_origin() -> None:
    """Dead letters keep the original key, topic, partition and offset."""
    task = restored(ConversationTask, {})
    out: list[Output] = []
    task.process([record(TOPICS.events, b"{nope", b"k-9", offset=41)], now_ms=0, out=out)
    [letter] = out
    assert letter.topic == TOPICS.dead_letters
    assert letter.key == b"k-9"
    body = orjson.loads(letter.value)
    assert body["error"].startswith("invalid_json: ")
    assert (body["topic"], body["partition"], body["offset"]) == (TOPICS.events, 0, 41)


def test_conversation_state_survives_a_restore() -> None:
    """After restoring from the changelog, duplicates are still known and revisions go on."""
    task = restored(ConversationTask, {})
    task.process(BILLABLE_CLOSED, now_ms=0, out=[])
    changes = task.changes()
    assert b"w" in changes  # the watermark is part of the state
    again = restored(ConversationTask, changes)
    out: list[Output] = []
    # A duplicate changes nothing; a late event revises the ended conversation.
    again.process(
        [BILLABLE_CLOSED[1], widget("e4", "widget.closed", "2026-11-24T20:00:15Z")],
        now_ms=0,
        out=out,
    )
    outcomes = [orjson.loads(o.value) for o in out if o.topic == TOPICS.outcomes]
    assert [(o["revision"], o["counts"]["events"]) for o in outcomes] == [(2, 4)]
    assert not [
        o
        for o in out
        if o.topic == TOPICS.account_updates and orjson.loads(o.value)["t"] == "charge"
    ], "charged twice after a restore"


def test_idle_tick_ends_open_conversations_by_inactivity() -> None:
    """An idle partition follows the wall clock: silent conversations end."""
    task = restored(ConversationTask, {})
    task.process([widget("e1", "chatbot.triggered", "2026-11-24T20:00:00Z")], now_ms=0, out=[])
    out: list[Output] = []
    task.tick(now_ms=1_795_550_400_000 + 31 * 60_000, out=out)
    [outcome] = [orjson.loads(o.value) for o in out if o.topic == TOPICS.outcomes]
    assert outcome["end_reason"] == "inactivity"
    assert outcome["ended_at"] == "2026-11-24T20:00:00.000Z"


def test_idle_tick_before_any_event_leaves_event_time_alone() -> None:
    """A partition without events has no watermark; an older backlog is not idle on arrival."""
    task = restored(ConversationTask, {})
    out: list[Output] = []
    task.tick(now_ms=1_795_550_400_000 + 86_400_000, out=out)
    assert out == []
    assert task.processor.watermark is None
    backlog = [widget("e1", "chatbot.triggered", "2026-11-24T20:00:00Z")]
    task.process(backlog, now_ms=1_795_550_400_000 + 86_400_000, out=out)
    assert [o for o in out if o.topic == TOPICS.outcomes] == []
    assert task.processor.watermark == 1_795_550_400_000


def test_dropped_conversation_is_a_changelog_tombstone() -> None:
    """Retention drops ended state: the changelog gets a tombstone for it."""
    task = restored(ConversationTask, {})
    task.process(BILLABLE_CLOSED, now_ms=0, out=[])
    task.changes()
    task.tick(now_ms=1_795_550_400_000 + 8 * 86_400_000, out=[])
    assert task.changes()[b"c:c-1"] is None


def test_plan_task_rekeys_valid_plans_and_dead_letters_bad_ones() -> None:
    """Plans are forwarded keyed by account; an unknown plan is a dead letter."""
    task = restored(PlanTask, {})
    good = orjson.dumps(
        {
            "account_id": "acc-1",
            "plan": "pro",
            "chatbot_pack": True,
            "effective_at": "2026-11-01T00:00:00Z",
        }
    )
    bad = orjson.dumps(
        {
            "account_id": "acc-1",
            "plan": "gold",
            "chatbot_pack": True,
            "effective_at": "2026-11-01T00:00:00Z",
        }
    )
    out: list[Output] = []
    task.process([record(TOPICS.plans, good, b"x"), record(TOPICS.plans, bad, b"y")], 0, out)
    assert [(o.topic, o.key) for o in out] == [
        (TOPICS.account_updates, b"acc-1"),
        (TOPICS.dead_letters, b"y"),
    ]
    assert orjson.loads(out[1].value)["error"].startswith("unknown_plan: ")


@pytest.mark.parametrize("restart_between", [False, True])
def test_account_task_meters_with_plans_and_survives_a_restore(restart_between: bool) -> None:
    """Plan, then two charges against a limit of 1: usage, alerts; same after a restore."""
    settings = SETTINGS.with_overrides(
        domain=DomainConfig(plan_limits={"standard": (1, 5), "pro": (2, 10)})
    )
    task = AccountTask(0, settings=settings)
    task.restored()

    def update(message: dict) -> ConsumerRecord:
        return record(TOPICS.account_updates, orjson.dumps({"account_id": "acc-1", **message}))

    plan = {"t": "plan", "plan": "standard", "chatbot_pack": False, "effective_at": 0}
    charge = {"t": "charge", "billable_at": 1_795_550_400_000, "month": "2026-11"}
    out: list[Output] = []
    task.process(
        [
            update(plan),
            update({**charge, "conversation_id": "c-1"}),
            update({"t": "stats", "old": None, "new": ["2026-11", 2]}),
        ],
        0,
        out,
    )
    if restart_between:
        again = AccountTask(0, settings=settings)
        for key, value in task.changes().items():
            again.restore(key, value)
        again.restored()
        task = again
    task.process([update({**charge, "conversation_id": "c-2"})], 0, out)
    usage = [orjson.loads(o.value) for o in out if o.topic == TOPICS.usage]
    alerts = [orjson.loads(o.value)["alert_id"] for o in out if o.topic == TOPICS.alerts]
    assert [u["used"] for u in usage] == [1, 2]
    assert usage[-1]["over_limit"] == 1
    assert alerts == [
        "acc-1:2026-11:quota.warning:1",
        "acc-1:2026-11:quota.limit_reached:1",
        "acc-1:2026-11:quota.exceeded:1",
    ]
    assert task.stats["acc-1"]["2026-11"]["resolved_by_chatbot"] == 1


def test_account_view_shows_only_committed_state() -> None:
    """Reads see a batch's effects once its transaction committed, never before."""
    task = AccountTask(0, settings=SETTINGS)
    task.restored()

    def update(message: dict) -> ConsumerRecord:
        return record(TOPICS.account_updates, orjson.dumps({"account_id": "acc-1", **message}))

    charge = {"t": "charge", "billable_at": 1_795_550_400_000, "month": "2026-11"}
    task.process(
        [
            update({"t": "plan", "plan": "pro", "chatbot_pack": True, "effective_at": 0}),
            update({**charge, "conversation_id": "c-1"}),
            update({"t": "stats", "old": None, "new": ["2026-11", 2]}),
        ],
        0,
        [],
    )
    view = task.view
    assert (view.plans, view.usage, view.stats) == ({}, {}, {})  # nothing committed yet
    task.changes()  # the transaction is being written...
    assert view.usage == {}
    task.committed()  # ...and committed
    assert view.usage[("acc-1", "2026-11")].used == 1
    assert view.plans["acc-1"] == [[0, "pro", True]]
    assert view.stats["acc-1"]["2026-11"]["resolved_by_chatbot"] == 1
    # The next batch changes the task's state in place; the view keeps its own copy.
    task.process([update({**charge, "conversation_id": "c-2"})], 0, [])
    assert task.usage[("acc-1", "2026-11")].used == 2
    assert view.usage[("acc-1", "2026-11")].used == 1


def test_account_view_after_a_restore_holds_everything_restored() -> None:
    task = AccountTask(0, settings=SETTINGS)
    task.restored()
    charge = {"t": "charge", "billable_at": 1_795_550_400_000, "month": "2026-11"}
    value = orjson.dumps({"account_id": "acc-1", "conversation_id": "c-1", **charge})
    task.process([record(TOPICS.account_updates, value)], 0, [])
    again = AccountTask(0, settings=SETTINGS)
    for key, entry in task.changes().items():
        again.restore(key, entry)
    again.restored()
    assert again.view.usage[("acc-1", "2026-11")].used == 1
