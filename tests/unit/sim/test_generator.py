"""The traffic generator: determinism, valid events, faults, hot accounts, months, speed."""

from __future__ import annotations

import itertools
import random
import re
import time

import orjson
import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.events import EVENT_TYPES, decode_event
from botstream.domain.plans import decode_plan
from botstream.domain.timefmt import month_of, parse_timestamp_ms
from botstream.errors import ConfigError, InvalidRecord
from botstream.sim import SimConfig, TrafficSimulator
from botstream.sim.faults import MALFORMED_KINDS, malform
from botstream.sim.model import FLOWS
from tests.unit.sim.helpers import billable_by_account_month, observe, run

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _bytes(sim: TrafficSimulator) -> bytes:
    plans = b"".join(r.value + b"\n" for r in sim.plan_records())
    return plans + b"".join(r.value + b"\n" for r in sim.events())


def test_same_seed_gives_identical_bytes():
    start = parse_timestamp_ms("2026-11-10T00:00:00Z")
    first = _bytes(TrafficSimulator(SimConfig(seed=42, count=5000, start_ms=start)))
    second = _bytes(TrafficSimulator(SimConfig(seed=42, count=5000, start_ms=start)))
    assert first == second


def test_events_can_be_iterated_again_from_the_start():
    sim = TrafficSimulator(SimConfig(seed=3, count=2000))
    assert [r.value for r in sim.events()] == [r.value for r in sim.events()]


def test_different_seed_gives_different_traffic():
    a = _bytes(TrafficSimulator(SimConfig(seed=1, count=2000)))
    b = _bytes(TrafficSimulator(SimConfig(seed=2, count=2000)))
    assert a != b


def test_count_is_exact_and_includes_faults():
    sim, records = run(count=7777, duplicate_rate=0.1, malformed_rate=0.05)
    assert len(records) == 7777 == sim.stats.records
    assert sim.stats.events + sim.stats.faults["duplicate"] + sim.stats.malformed == 7777


def test_every_well_formed_event_decodes_and_every_malformed_record_fails():
    sim, records = run(count=20_000, malformed_rate=0.01, duplicate_rate=0.02)
    observed = observe(records)
    # Exactly the malformed records fail; every other record is a valid widget event.
    assert observed.invalid == sim.stats.malformed > 0
    assert observed.keys_match
    assert all(r.topic_kind == "events" for r in records)
    for conversation in observed.conversations.values():
        for event in conversation.events:
            assert event["type"] in EVENT_TYPES
            assert STAMP.fullmatch(event["occurred_at"])
            assert re.fullmatch(r"e-[0-9a-f]{12}", event["event_id"])
            assert re.fullmatch(r"c-[0-9a-f]{12}", event["conversation_id"])
            assert event["visitor_id"] is None or event["visitor_id"].startswith("v-")


def test_clean_run_has_no_invalid_record_and_unique_event_ids():
    _, records = run(count=20_000, duplicate_rate=0, malformed_rate=0, out_of_order_rate=0)
    ids = [decode_event(r.value).event_id for r in records]
    assert len(set(ids)) == len(ids)
    # Without faults, delivery order is occurred_at order.
    times = [decode_event(r.value).at for r in records]
    assert times == sorted(times)


def test_events_carry_the_data_fields_of_their_type():
    _, records = run(count=10_000, malformed_rate=0)
    needs = {
        "conversation.started": "initiator",
        "chatbot.triggered": "chatbot_id",
        "chatbot.message": "chatbot_id",
        "chatbot.button_clicked": "button_id",
        "agent.joined": "agent_id",
        "agent.message": "agent_id",
        "conversation.transferred": "to",
        "conversation.closed": "closed_by",
    }
    seen = set()
    for record in records:
        event = orjson.loads(record.value)
        seen.add(event["type"])
        if event["type"] in needs:
            assert needs[event["type"]] in event["data"]
        else:
            assert "data" not in event
    assert seen == set(EVENT_TYPES)


def test_no_record_contains_a_newline():
    _, records = run(count=20_000, malformed_rate=1.0, duplicate_rate=0.1)
    assert not any(b"\n" in r.value or b"\r" in r.value for r in records)


def test_fault_fractions_are_roughly_honoured():
    rates = {"duplicate_rate": 0.05, "out_of_order_rate": 0.10, "malformed_rate": 0.02}
    sim, records = run(count=20_000, **rates)
    observed = observe(records)
    events = sim.stats.events
    print(f"\nfaults in 20k records: {dict(sim.stats.faults)}; observed {observed.out_of_order=}")
    assert observed.duplicates == sim.stats.faults["duplicate"]
    assert observed.invalid == sim.stats.malformed
    assert observed.duplicates == pytest.approx(0.05 * events, rel=0.2)
    assert observed.invalid == pytest.approx(0.02 * events, rel=0.25)
    assert sim.stats.faults["out_of_order"] == pytest.approx(0.10 * events, rel=0.2)
    # What a consumer sees as late is close to what was injected (a few
    # injected delays cancel each other out).
    assert observed.out_of_order == pytest.approx(sim.stats.faults["out_of_order"], rel=0.15)
    # Every malformed kind shows up in a realistic mix.
    kinds = {k for k in sim.stats.faults if k.startswith("malformed.")}
    assert len(kinds) >= 7


def test_zero_fault_rates_inject_nothing():
    sim, records = run(count=5000, duplicate_rate=0, out_of_order_rate=0, malformed_rate=0)
    assert not sim.stats.faults
    assert observe(records).invalid == 0


@pytest.mark.parametrize(
    ("flow", "allowed"),
    [
        ("resolved_by_chatbot", {("resolved_by_chatbot", "started", True)}),
        ("clicked_then_agent", {("transferred_to_agent", "started", True)}),
        ("ignored_chatbot", {("transferred_to_agent", "started", False)}),
        (
            "chatbot_joined",
            {("resolved_by_chatbot", "joined", True), ("transferred_to_agent", "joined", True)},
        ),
        (
            "chatbot_closed",
            {
                ("resolved_by_chatbot", "started", True),
                ("resolved_by_chatbot", "ended", True),
                ("unengaged", "ended", False),
            },
        ),
        ("unengaged", {("unengaged", "started", False)}),
        ("no_chatbot", {("no_chatbot", None, False)}),
    ],
)
def test_each_flow_is_classified_as_intended(flow, allowed):
    start = parse_timestamp_ms("2026-11-02T08:00:00Z")
    sim = TrafficSimulator(
        SimConfig(count=None, start_ms=start, end_ms=start + 6 * 3_600_000, flow_weights={flow: 1})
    )
    observed = observe(sim.events())
    # Conversations that began within the last minutes may still be incomplete.
    complete = {
        cid: c
        for cid, c in observed.conversations.items()
        if max(e["at"] for e in c.events) < start + 5 * 3_600_000
    }
    results = {
        (r["outcome"], r["chatbot_role"], r["billable"])
        for r in (c.classify() for c in complete.values())
    }
    assert results and results <= allowed
    assert sim.stats.conversations[flow] == len(observed.conversations)


def test_reopened_and_long_pause_flows_have_a_gap_beyond_the_idle_timeout():
    idle = DomainConfig().idle_timeout_ms
    start = parse_timestamp_ms("2026-11-02T08:00:00Z")
    for flow in ("reopened", "long_pause"):
        sim = TrafficSimulator(
            SimConfig(
                count=None,
                start_ms=start,
                end_ms=start + 12 * 3_600_000,
                flow_weights={flow: 1},
                out_of_order_rate=0,
            )
        )
        observed = observe(sim.events())
        early = [
            c for c in observed.conversations.values() if c.events[0]["at"] < start + 6 * 3_600_000
        ]
        assert early
        for conversation in early:
            times = sorted(e["at"] for e in conversation.events)
            assert max(b - a for a, b in itertools.pairwise(times)) > idle
            if flow == "reopened":
                types = [e["type"] for e in sorted(conversation.events, key=lambda e: e["at"])]
                left = types.index("visitor.left")
                assert types[left + 1] == "visitor.message"


def test_gaps_between_events_are_human_like():
    _, records = run(count=20_000, out_of_order_rate=0, duplicate_rate=0, malformed_rate=0)
    observed = observe(records)
    gaps = []
    for conversation in observed.conversations.values():
        times = [e["at"] for e in conversation.events]
        gaps += [b - a for a, b in itertools.pairwise(times)]
    gaps.sort()
    median = gaps[len(gaps) // 2]
    assert 1_000 <= median <= 60_000  # seconds, not milliseconds or hours
    assert gaps[-1] < 6 * 3_600_000


def test_hot_accounts_cross_a_standard_limit_within_50k_events():
    _, records = run(count=50_000)
    billable = billable_by_account_month(observe(records))
    hot = {key: n for key, n in billable.items() if key[0].startswith("acc-hot-")}
    print(f"\nbillable conversations of hot accounts in 50k events: {hot}")
    assert max(hot.values()) > 100
    assert billable[("acc-hot-1", "2026-11")] > 100


def test_plan_records_cover_plans_packs_changes_and_accounts_without_a_record():
    sim = TrafficSimulator(
        SimConfig(count=50_000, start_ms=parse_timestamp_ms("2026-11-02T00:00:00Z"))
    )
    records = sim.plan_records()
    config = DomainConfig()
    plans = [decode_plan(r.value, config) for r in records]
    assert all(
        r.key == p.account_id.encode() and r.topic_kind == "plans"
        for r, p in zip(records, plans, strict=True)
    )
    assert [p.effective_at for p in plans] == sorted(p.effective_at for p in plans)
    assert {(p.plan, p.chatbot_pack) for p in plans} == {
        ("standard", False),
        ("standard", True),
        ("pro", False),
        ("pro", True),
    }
    by_account: dict[str, list] = {}
    for p in plans:
        by_account.setdefault(p.account_id, []).append(p)
    # Changes during the run: a pack bought (acc-1, acc-hot-2) and a downgrade (acc-2).
    assert [(p.plan, p.chatbot_pack) for p in by_account["acc-1"]] == [
        ("standard", False),
        ("standard", True),
    ]
    assert [(p.plan, p.chatbot_pack) for p in by_account["acc-2"]] == [
        ("pro", True),
        ("standard", False),
    ]
    assert by_account["acc-hot-2"][-1].chatbot_pack
    start, end = sim.config.start_ms, sim.config.start_ms + sim.span_ms
    assert start < by_account["acc-1"][1].effective_at < end
    assert by_account["acc-hot-1"][0].effective_at < start
    # Some accounts have no plan record at all (the default plan applies).
    assert len(by_account) < len(sim.accounts)
    assert sim.stats.plan_records == len(records)


def test_a_run_can_straddle_a_month_boundary():
    start = parse_timestamp_ms("2026-11-30T22:00:00Z")
    sim, records = run(count=20_000, start_ms=start)
    observed = observe(records)
    months = {month_of(e["at"]) for c in observed.conversations.values() for e in c.events}
    assert months == {"2026-11", "2026-12"}
    straddling = [
        c
        for c in observed.conversations.values()
        if {month_of(e["at"]) for e in c.events} == {"2026-11", "2026-12"}
    ]
    assert straddling
    billable_months = {month for _, month in billable_by_account_month(observed)}
    assert billable_months == {"2026-11", "2026-12"}
    assert month_of(sim.stats.first_ms) == "2026-11" and month_of(sim.stats.last_ms) == "2026-12"


def test_run_stops_at_the_end_time():
    start = parse_timestamp_ms("2026-11-30T23:00:00Z")
    end = parse_timestamp_ms("2026-12-01T01:00:00Z")
    sim, records = run(count=None, start_ms=start, end_ms=end)
    assert records and all(start <= r.at_ms < end for r in records)
    assert sim.stats.last_ms < end
    assert sim.span_ms == end - start


def test_expected_span_is_close_to_the_real_one():
    sim, _ = run(count=50_000)
    real = sim.stats.last_ms - sim.stats.first_ms
    assert real == pytest.approx(sim.span_ms, rel=0.1)


def test_delivery_times_never_go_back():
    _, records = run(count=20_000, out_of_order_rate=0.2, duplicate_rate=0.1)
    times = [r.at_ms for r in records]
    assert times == sorted(times)


def test_stopping_early_leaves_consistent_counters():
    sim = TrafficSimulator(SimConfig(count=None))
    taken = 0
    for taken, _ in enumerate(sim.events(), 1):
        if taken == 1234:
            break
    assert sim.stats.records == 1234


@pytest.mark.parametrize(
    "changes",
    [
        {"duplicate_rate": 1.5},
        {"out_of_order_rate": -0.1},
        {"malformed_rate": float("nan")},
        {"count": 0},
        {"accounts": 0, "hot_accounts": 0},
        {"flow_weights": {"no_such_flow": 1}},
        {"flow_weights": {"unengaged": 0}},
    ],
)
def test_bad_config_is_a_config_error(changes):
    with pytest.raises(ConfigError):
        SimConfig(**changes)


def test_only_hot_accounts_or_only_normal_ones():
    for accounts, hot, prefix in ((0, 2, "acc-hot-"), (5, 0, "acc-")):
        sim, records = run(count=2000, accounts=accounts, hot_accounts=hot, malformed_rate=0)
        names = {decode_event(r.value).account_id for r in records}
        assert names <= {a.account_id for a in sim.accounts}
        assert all(name.startswith(prefix) for name in names)
        assert len(names) > 1


def test_generation_speed_of_100k_events():
    sim = TrafficSimulator(SimConfig(count=100_000))
    started = time.perf_counter()
    size = 0
    for record in sim.events():
        size += len(record.value) + 1
    elapsed = time.perf_counter() - started
    print(
        f"\n100,000 records in {elapsed:.2f} s ({100_000 / elapsed:,.0f} records/s, "
        f"{size / 1e6:.1f} MB)"
    )
    assert sim.stats.records == 100_000


def test_every_flow_has_a_default_weight():
    assert set(SimConfig().flow_weights) == set(FLOWS)


def test_malformed_records_fail_with_the_documented_reason():
    rng = random.Random(5)
    _, records = run(count=300, malformed_rate=0, duplicate_rate=0)
    for kind, (_, code) in MALFORMED_KINDS.items():
        for record in records:
            event = orjson.loads(record.value)
            bad = malform(rng, kind, event, record.value)
            with pytest.raises(InvalidRecord) as caught:
                decode_event(bad)
            assert caught.value.code == code, (kind, bad)
