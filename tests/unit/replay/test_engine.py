"""The offline replay engine end to end: raw plan records and events in, results out.

Expected values are worked out by hand from SPEC sections 4 to 6.
"""

from __future__ import annotations

import base64
import random

import orjson
import pytest

from botstream.domain.config import DomainConfig
from botstream.replay.engine import ReplayEngine, ReplayResult
from tests.unit.domain.conftest import (
    AGENT_JOINED,
    AGENT_MSG,
    BOT_MSG,
    CLICK,
    CLOSED,
    DAY,
    LEFT,
    RETENTION,
    STARTED,
    TRIGGERED,
    VISITOR_MSG,
    WIDGET_CLOSED,
    at_ms,
    ev_raw,
    iso,
    plan_obj,
)

ORDER_DEPENDENT = ("revision", "billable_at", "billing_month")


def replay(
    events: list[bytes], plans: list[bytes] = (), config: DomainConfig | None = None
) -> ReplayResult:
    engine = ReplayEngine(config or DomainConfig())
    for offset, raw in enumerate(plans):
        engine.add_plan(raw, "plans.jsonl", offset)
    for offset, raw in enumerate(events):
        engine.add_event(raw, "events.jsonl", offset)
    return engine.finish()


def latest_outcomes(result: ReplayResult) -> dict[str, dict]:
    """conversation id -> its latest outcome record; exactly one record per conversation."""
    if hasattr(result, "outcome_records"):
        serialised = list(result.outcome_records())
    else:
        serialised = list(result.outcomes.values())
    by_id: dict[str, dict] = {}
    for raw in serialised:
        record = orjson.loads(raw)
        assert record["conversation_id"] not in by_id, f"two records for {record}"
        by_id[record["conversation_id"]] = record
    return by_id


def plan_raw(**fields: object) -> bytes:
    return orjson.dumps(plan_obj(**fields))


def counts(**nonzero: int) -> dict[str, int]:
    names = ("resolved_by_chatbot", "transferred_to_agent", "unengaged", "no_chatbot")
    return {name: nonzero.get(name, 0) for name in names}


def spec_day() -> list[bytes]:
    """SPEC section 1's conversations for acc-17: resolved, normal, no chatbot, unengaged."""
    a = {"account": "acc-17"}
    return [
        ev_raw(STARTED, 0, conv="resolved", initiator="visitor", **a),
        ev_raw(TRIGGERED, 0.1, conv="resolved", chatbot_id="bot-1", **a),
        ev_raw(STARTED, 0.2, conv="normal", **a),
        ev_raw(BOT_MSG, 0.2, conv="resolved", chatbot_id="bot-1", **a),
        ev_raw(TRIGGERED, 0.3, conv="normal", **a),
        ev_raw(CLICK, 1, conv="resolved", button_id="shipping", **a),
        ev_raw(VISITOR_MSG, 1.5, conv="normal", **a),
        ev_raw(CLICK, 2, conv="resolved", **a),
        ev_raw(VISITOR_MSG, 2, conv="direct", **a),
        ev_raw(AGENT_JOINED, 2.5, conv="normal", agent_id="ag-1", **a),
        ev_raw(WIDGET_CLOSED, 3, conv="resolved", **a),
        ev_raw(AGENT_MSG, 3, conv="normal", agent_id="ag-1", **a),
        ev_raw(AGENT_MSG, 3.5, conv="direct", **a),
        ev_raw(LEFT, 4, conv="resolved", **a),
        ev_raw(TRIGGERED, 4, conv="ignored", **a),
        ev_raw(CLOSED, 5, conv="normal", closed_by="agent", **a),
        ev_raw(LEFT, 6, conv="ignored", **a),
    ]


def test_spec_conversations_end_to_end():
    result = replay(spec_day(), [plan_raw(plan="pro", pack=True, account="acc-17")])
    outcomes = latest_outcomes(result)
    summary = {
        cid: (r["outcome"], r["chatbot_role"], r["billable"], r["end_reason"], r["ended_at"])
        for cid, r in outcomes.items()
    }
    assert summary == {
        "resolved": ("resolved_by_chatbot", "started", True, "visitor_left", iso(at_ms(4))),
        "normal": ("transferred_to_agent", "started", False, "closed", iso(at_ms(5))),
        "direct": ("no_chatbot", None, False, "inactivity", iso(at_ms(3.5))),
        "ignored": ("unengaged", "started", False, "visitor_left", iso(at_ms(6))),
    }
    resolved = outcomes["resolved"]
    assert resolved["billable_at"] == iso(at_ms(1))
    assert resolved["billing_month"] == "2026-11"
    assert resolved["counts"] == {
        "events": 7,
        "chatbot_clicks": 2,
        "visitor_messages": 0,
        "agent_messages": 0,
    }
    assert resolved["revision"] == 1
    assert result.usage == {
        ("acc-17", "2026-11"): {
            "account_id": "acc-17",
            "month": "2026-11",
            "plan": "pro",
            "chatbot_pack": True,
            "limit": 10_000,
            "used": 1,
            "remaining": 9_999,
            "over_limit": 0,
            "updated_at": iso(at_ms(1)),
        }
    }
    assert result.alerts == []
    assert result.dead_letters == []
    assert result.stats_records() == [
        {
            "account_id": "acc-17",
            "month": "2026-11",
            **counts(resolved_by_chatbot=1, transferred_to_agent=1, no_chatbot=1, unengaged=1),
        }
    ]
    assert (result.events_read, result.plans_read, result.charges) == (17, 1, 1)


def test_dead_letters_carry_source_offset_and_value():
    events = [
        ev_raw(TRIGGERED, 10, conv="c-1"),
        b"{not json",
        ev_raw("chatbot.exploded", 10),
        ev_raw(CLICK, 11, conv="c-1", account="acc-other"),
        ev_raw(CLICK, iso(at_ms(10) - RETENTION), conv="c-2"),
        b"[1, 2]",
        orjson.dumps({"pad": "x" * 70_000}),
    ]
    plans = [plan_raw(plan="gold"), b"\xff"]
    result = replay(events, plans)
    letters = result.dead_letters
    assert [(d["topic"], d["offset"]) for d in letters] == [
        ("plans.jsonl", 0),
        ("plans.jsonl", 1),
        ("events.jsonl", 1),
        ("events.jsonl", 2),
        ("events.jsonl", 3),
        ("events.jsonl", 4),
        ("events.jsonl", 5),
        ("events.jsonl", 6),
    ]
    codes = [d["error"].split(":")[0] for d in letters]
    assert codes[0] == "unknown_plan"
    assert codes[3] == "unknown_type"
    assert codes[4] == "account_mismatch"
    assert codes[5] == "late"
    assert codes[7] == "too_large"
    assert letters[4]["value"] == base64.b64encode(events[3]).decode("ascii")
    assert letters[1]["value"] == base64.b64encode(b"\xff").decode("ascii")
    assert all(d["key"] is None for d in letters)
    assert sum(result.dead_letter_codes.values()) == 8
    assert result.dead_letter_codes["late"] == 1
    assert result.plans_read == 0
    # The good event was applied, the dead letters were not.
    assert latest_outcomes(result)["c-1"]["counts"]["events"] == 1
    assert set(latest_outcomes(result)) == {"c-1"}


def test_duplicates_are_counted_and_charged_once():
    trigger = ev_raw(TRIGGERED, 1, id="e-1")
    click = ev_raw(CLICK, 2, id="e-2")
    left = ev_raw(LEFT, 3, id="e-3")
    result = replay([trigger, click, click, left, trigger, left, click])
    assert result.duplicates == 4
    assert result.charges == 1
    record = latest_outcomes(result)["c-1"]
    assert (record["revision"], record["counts"]["events"]) == (1, 3)
    assert result.usage[("acc-1", "2026-11")]["used"] == 1


def test_limits_and_alerts_end_to_end():
    config = DomainConfig(plan_limits={"standard": (2, 4), "pro": (500, 10_000)})
    events = []
    for n in range(3):
        conv = f"c-{n}"
        events += [ev_raw(TRIGGERED, n, conv=conv), ev_raw(CLICK, n + 0.5, conv=conv)]
    result = replay(events, config=config)
    assert [(a["alert_id"], a["used"], a["conversation_id"]) for a in result.alerts] == [
        ("acc-1:2026-11:quota.warning:2", 2, "c-1"),
        ("acc-1:2026-11:quota.limit_reached:2", 2, "c-1"),
        ("acc-1:2026-11:quota.exceeded:2", 3, "c-2"),
    ]
    usage = result.usage[("acc-1", "2026-11")]
    assert (usage["used"], usage["remaining"], usage["over_limit"]) == (3, 0, 1)


def test_pack_bought_mid_month_end_to_end():
    config = DomainConfig(plan_limits={"standard": (2, 4), "pro": (500, 10_000)})
    plans = [
        plan_raw(plan="standard", pack=False, effective="2026-11-01T00:00:00Z"),
        plan_raw(plan="standard", pack=True, effective=iso(at_ms(10))),
    ]
    events = []
    for n, minute in enumerate([1, 2, 11, 12, 13]):
        conv = f"c-{n}"
        events += [ev_raw(TRIGGERED, minute, conv=conv), ev_raw(CLICK, minute, conv=conv)]
    result = replay(events, plans, config)
    assert [(a["alert_id"], a["used"]) for a in result.alerts] == [
        ("acc-1:2026-11:quota.warning:2", 2),
        ("acc-1:2026-11:quota.limit_reached:2", 2),
        ("acc-1:2026-11:quota.warning:4", 4),
        ("acc-1:2026-11:quota.limit_reached:4", 4),
        ("acc-1:2026-11:quota.exceeded:4", 5),
    ]
    usage = result.usage[("acc-1", "2026-11")]
    assert (usage["chatbot_pack"], usage["limit"], usage["used"], usage["over_limit"]) == (
        True,
        4,
        5,
        1,
    )


def test_charges_across_months_go_to_their_month():
    events = [
        ev_raw(TRIGGERED, "2026-11-30T23:59:00Z", conv="nov"),
        ev_raw(CLICK, "2026-11-30T23:59:59.999Z", conv="nov"),
        ev_raw(TRIGGERED, "2026-11-30T23:59:00Z", conv="dec"),
        ev_raw(CLICK, "2026-12-01T00:30:00+01:00", conv="nov-offset"),
        ev_raw(TRIGGERED, "2026-11-30T23:00:00Z", conv="nov-offset"),
        ev_raw(CLICK, "2026-12-01T00:00:00Z", conv="dec"),
    ]
    result = replay(events)
    assert sorted(result.usage) == [("acc-1", "2026-11"), ("acc-1", "2026-12")]
    assert result.usage[("acc-1", "2026-11")]["used"] == 2
    assert result.usage[("acc-1", "2026-12")]["used"] == 1
    months = {cid: r["billing_month"] for cid, r in latest_outcomes(result).items()}
    assert months == {"nov": "2026-11", "dec": "2026-12", "nov-offset": "2026-11"}


def test_outcome_changes_across_revisions_keep_only_latest():
    events = [
        ev_raw(TRIGGERED, 1),
        ev_raw(LEFT, 5),
        ev_raw(VISITOR_MSG, 3),  # late: revision 2, now transferred
    ]
    result = replay(events)
    record = latest_outcomes(result)["c-1"]
    assert (record["revision"], record["outcome"]) == (2, "transferred_to_agent")
    assert result.revisions == 2
    assert result.stats_records() == [
        {"account_id": "acc-1", "month": "2026-11", **counts(transferred_to_agent=1)}
    ]


def test_stats_skip_months_left_empty():
    events = [
        ev_raw(TRIGGERED, "2026-12-01T00:05:00Z"),
        ev_raw(LEFT, "2026-12-01T00:10:00Z"),
        ev_raw(STARTED, "2026-11-30T23:58:00Z"),  # late: started_at moves to November
    ]
    result = replay(events)
    assert result.stats_records() == [
        {"account_id": "acc-1", "month": "2026-11", **counts(unengaged=1)}
    ]


def test_conversation_dropped_after_retention_starts_afresh():
    first = at_ms(0)
    later = first + RETENTION + DAY
    events = [
        ev_raw(TRIGGERED, iso(first)),
        ev_raw(CLICK, iso(first + 1000)),
        ev_raw(CLOSED, iso(first + 2000)),
        ev_raw(STARTED, iso(later), conv="clock"),  # moves event time past retention
        ev_raw(TRIGGERED, iso(later + 1000)),
        ev_raw(CLICK, iso(later + 2000)),
        ev_raw(LEFT, iso(later + 3000)),
    ]
    result = replay(events)
    record = latest_outcomes(result)["c-1"]
    assert record["revision"] == 1
    assert record["started_at"] == iso(later + 1000)
    assert record["ended_at"] == iso(later + 3000)
    assert record["end_reason"] == "visitor_left"
    assert record["billable_at"] == iso(later + 2000)
    assert record["counts"]["events"] == 3
    assert result.charges == 2
    assert (
        result.usage[("acc-1", "2026-11")]["used"]
        + result.usage.get(("acc-1", "2026-12"), {"used": 0})["used"]
        == 2
    )


def test_conversation_dropped_and_not_seen_again_keeps_its_outcome():
    first = at_ms(0)
    events = [
        ev_raw(TRIGGERED, iso(first)),
        ev_raw(CLICK, iso(first + 1000)),
        ev_raw(CLOSED, iso(first + 2000)),
        ev_raw(STARTED, iso(first + RETENTION + DAY), conv="clock"),
    ]
    record = latest_outcomes(replay(events))["c-1"]
    assert (record["revision"], record["outcome"], record["end_reason"]) == (
        1,
        "resolved_by_chatbot",
        "closed",
    )


def _mixed_log(seed: int) -> list[tuple[str, float, str, str, dict]]:
    """Events of several conversations and accounts, within a few minutes of each other."""
    rng = random.Random(seed)
    rows = []
    types = [TRIGGERED, BOT_MSG, CLICK, VISITOR_MSG, AGENT_JOINED, AGENT_MSG, WIDGET_CLOSED, LEFT]
    for n in range(30):
        conv, account = f"c-{n}", f"acc-{n % 3}"
        for k in range(rng.randint(1, 6)):
            rows.append((rng.choice(types), rng.randint(0, 20), conv, account, f"{conv}-e{k}"))
    return rows


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_of_a_shuffled_log_gives_the_same_latest_outcomes(seed):
    rows = _mixed_log(seed)
    shuffled = list(rows)
    random.Random(seed + 100).shuffle(shuffled)

    def raw(rows):
        return [ev_raw(t, at, conv=c, account=a, id=i) for t, at, c, a, i in rows]

    one, two = replay(raw(rows)), replay(raw(shuffled))
    out_one, out_two = latest_outcomes(one), latest_outcomes(two)

    def strip(records):
        return {
            cid: {k: v for k, v in r.items() if k not in ORDER_DEPENDENT}
            for cid, r in records.items()
        }

    assert strip(out_one) == strip(out_two)
    assert one.stats_records() == two.stats_records()
    used_one = {k: v["used"] for k, v in one.usage.items()}
    used_two = {k: v["used"] for k, v in two.usage.items()}
    assert used_one == used_two


def test_usage_record_uses_the_plans_read_by_the_last_charge():
    """A plan read after a month's last charge does not change its usage record."""
    config = DomainConfig(plan_limits={"standard": (2, 4), "pro": (500, 10_000)})
    engine = ReplayEngine(config)
    engine.add_event(ev_raw(TRIGGERED, 1), "events.jsonl", 0)
    engine.add_event(ev_raw(CLICK, 2), "events.jsonl", 1)
    pro = plan_raw(plan="pro", pack=True, effective="2026-11-01T00:00:00Z")
    engine.add_plan(pro, "plans.jsonl", 0)
    usage = engine.finish().usage[("acc-1", "2026-11")]
    assert (usage["plan"], usage["chatbot_pack"], usage["limit"]) == ("standard", False, 2)


def _replay_lines(lines: list[bytes], config: DomainConfig | None = None) -> ReplayResult:
    engine = ReplayEngine(config or DomainConfig())
    engine.add_event_lines([lines[:2], lines[2:]], "events.jsonl")
    return engine.finish()


def test_crlf_lines_are_judged_without_their_carriage_return():
    """The size limit, dead letters and counts see a CRLF line without its ``\\r``."""
    good = ev_raw(TRIGGERED, 1, id="e-1")
    limit = len(good)
    config = DomainConfig(max_event_bytes=limit)
    lines = [
        good + b"\r",  # exactly at the limit once the \r is dropped
        ev_raw(CLICK, 2, id="e-2").replace(b"}", b" }") + b"\r",  # over the limit
        b" \r",
        b"not json\r",
        b"\t" * (limit + 5),  # blank, even though over the limit
        ev_raw(LEFT, 3, id="e-3"),
    ]
    result = _replay_lines(lines, config)
    assert result.events_read == 4
    assert [(d["offset"], d["error"].split(":")[0]) for d in result.dead_letters] == [
        (1, "too_large"),
        (3, "invalid_json"),
    ]
    assert base64.b64decode(result.dead_letters[1]["value"]) == b"not json"
    assert latest_outcomes(result)["c-1"]["counts"]["events"] == 2


def test_crlf_line_rejected_by_the_processor_is_one_dead_letter():
    """A late event with a CRLF end: one dead letter, without the ``\\r``, and no effect."""
    late = ev_raw(TRIGGERED, 0, conv="c-2", id="e-late")
    lines = [
        ev_raw(TRIGGERED, 0, id="e-1"),
        ev_raw(LEFT, RETENTION / 60_000 + 1, id="e-2"),
        late + b"\r",
    ]
    result = _replay_lines(lines)
    assert result.events_read == 3
    assert [d["error"].split(":")[0] for d in result.dead_letters] == ["late"]
    assert base64.b64decode(result.dead_letters[0]["value"]) == late
    assert set(latest_outcomes(result)) == {"c-1"}


@pytest.mark.parametrize("partitions", [1, 3])
def test_compacting_ended_states_early_or_late_gives_the_same_bytes(partitions):
    """Ended states held as objects or compacted at once: the same results, in the same order."""
    from botstream.sim.generator import SimConfig, TrafficSimulator

    simulator = TrafficSimulator(SimConfig(seed=5, count=6_000))
    plans = [record.value for record in simulator.plan_records()]
    events = [record.value for record in simulator.events()]
    config = DomainConfig(idle_timeout_ms=5 * 60_000, retention_ms=3_600_000)

    def run(max_ended_objects: int) -> tuple[ReplayResult, int]:
        engine = ReplayEngine(config, partitions, max_ended_objects=max_ended_objects)
        for offset, raw in enumerate(plans):
            engine.add_plan(raw, "plans.jsonl", offset)
        compacted = 0
        for offset, raw in enumerate(events):
            engine.add_event(raw, "events.jsonl", offset)
            if offset % 500 == 0:
                compacted = max(
                    compacted, sum(type(v) is bytes for v in engine.result.store.values())
                )
        return engine.finish(), compacted

    (objects, held_compact), (compact, compacted) = run(1_000_000), run(1)
    assert held_compact == 0
    assert compacted > 50  # the small bound did compact, many times over
    assert objects.revisions > 500 and len(objects.store.dropped) > 100
    assert list(objects.outcome_records()) == list(compact.outcome_records())
    assert objects.usage == compact.usage
    assert objects.alerts == compact.alerts
    assert objects.stats_records() == compact.stats_records()
    assert objects.dead_letters == compact.dead_letters
