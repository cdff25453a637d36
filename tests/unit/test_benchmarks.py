"""The pure parts of ``make bench``: the peers' job, which event causes which output, figures.

A benchmark that measures the wrong thing is worse than none: these check the
pieces whose mistakes would not show as a crash (no Kafka here; ``make bench
BENCH_ARGS=--check`` runs every contender on a real broker).
"""

from __future__ import annotations

import math

import orjson

from benchmarks import kit, latency, report
from benchmarks.peers.job import error_record, fold, outcome, parse_event
from benchmarks.throughput import lone_surrogate
from botstream.config import load_settings


def event(number: int, type_: str, at: str, data: dict | None = None, cid: str = "c-1") -> bytes:
    """One widget event of conversation ``cid`` as raw bytes."""
    return orjson.dumps(
        {
            "event_id": f"e-{number}",
            "type": type_,
            "occurred_at": at,
            "account_id": "acc-1",
            "conversation_id": cid,
            "data": data,
        }
    )


def test_parse_event_refuses_what_is_not_an_object_with_string_ids() -> None:
    assert parse_event(event(1, "chatbot.triggered", "2026-11-24T20:00:00.000Z"))["type"] == (
        "chatbot.triggered"
    )
    for bad in (
        b"",
        b"[1]",
        b'{"conversation_id": 1, "account_id": "a"}',
        b'{"a":',
        b"NaN",
        b'{"conversation_id": "c", "account_id": "a", "x": "\\ud83d"}',
    ):
        assert parse_event(bad) is None, bad


def test_fold_counts_events_and_clicks_and_keeps_the_latest_time() -> None:
    state = None
    for number, (type_, at) in enumerate(
        [
            ("chatbot.triggered", "2026-11-24T20:00:05.000Z"),
            ("chatbot.button_clicked", "2026-11-24T20:00:09.000Z"),
            ("chatbot.button_clicked", "2026-11-24T20:00:07.000Z"),  # out of order
            ("conversation.closed", "2026-11-24T20:00:08.000Z"),
        ]
    ):
        before = state
        state = fold(state, parse_event(event(number, type_, at)))
        assert before is None or before["events"] == number  # the old state is not changed
    assert state == {
        "account_id": "acc-1",
        "events": 4,
        "clicks": 2,
        "started_at": "2026-11-24T20:00:05.000Z",
        "last_at": "2026-11-24T20:00:09.000Z",
        "last_type": "conversation.closed",
    }
    assert outcome("c-1", state)["ended"] is True
    assert error_record(17) == {"error": "invalid event", "offset": 17}


def test_lone_surrogates_are_the_records_a_lenient_parser_may_accept() -> None:
    assert lone_surrogate(b'{"conversation_id": "c", "account_id": "a", "x": "\\ud83d"}')
    assert not lone_surrogate(b'{"conversation_id": "c", "account_id": "a", "x": "\\ud83d\\ude00"}')
    assert not lone_surrogate(b'{"x": "\\ud83d", "bad": \xe9}')  # invalid UTF-8 anyway


def test_causes_names_the_closing_event_and_the_event_that_made_it_billable() -> None:
    settings = load_settings(env={})
    start = "2026-11-24T20:00:0{}.000Z"
    records = [
        (b"c-1", event(0, "conversation.started", start.format(0), {"initiator": "visitor"})),
        (b"c-2", event(1, "chatbot.triggered", start.format(1), {"chatbot_id": "b"}, "c-2")),
        (b"c-1", event(2, "chatbot.triggered", start.format(1), {"chatbot_id": "b"})),
        (b"c-1", b"not json"),
        (b"c-1", event(3, "chatbot.button_clicked", start.format(2), {"button_id": "x"})),
        (b"c-1", event(3, "chatbot.button_clicked", start.format(2), {"button_id": "x"})),
        (b"c-2", event(4, "visitor.left", start.format(3), cid="c-2")),
        (b"c-1", event(5, "conversation.closed", start.format(4), {"closed_by": "visitor"})),
    ]
    outcome_cause, charge_cause = latency.causes(records, settings)
    assert charge_cause == {"c-1": 4}  # the click after the chatbot joined; not its duplicate
    assert outcome_cause == {"c-2": 6, "c-1": 7}


def test_a_usage_record_is_matched_to_the_charge_it_counts() -> None:
    follower = latency.Follower("unused:9092", load_settings(env={}).topics)
    follower.charge_order[("acc-1", "2026-11")] = ["c-a", "c-b", "c-c"]
    follower.usage_seen[("acc-1", "2026-11", 2)] = 10.0
    follower.usage_seen[("acc-1", "2026-11", 3)] = 11.0
    follower.usage_seen[("acc-1", "2026-11", 4)] = 12.0  # its charge not read yet: no sample
    assert follower.charge_seen() == {"c-b": 10.0, "c-c": 11.0}


def test_partition_of_agrees_with_the_producer() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    for key in (b"c-1", b"c-0123456789ab", b"conversation"):
        assert latency.partition_of(key) == DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3])


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert kit.percentile(values, 0.50) == 50
    assert kit.percentile(values, 0.99) == 99
    assert kit.percentile(values, 1.0) == 100
    assert kit.percentile([7.0], 0.95) == 7.0
    assert kit.percentile([], 0.5) != kit.percentile([], 0.5)  # NaN


def test_the_table_states_the_ratios_and_the_targets() -> None:
    results = {
        "throughput": {
            "events": 1000,
            "partitions": 4,
            "runs": 3,
            "measured_at": "now",
            "contenders": {
                "botstream": {
                    "label": "botstream",
                    "median_events_per_s": 900.0,
                    "runs_events_per_s": [900.0],
                },
                "ceiling": {
                    "label": "ceiling",
                    "median_events_per_s": 1000.0,
                    "runs_events_per_s": [1000.0],
                },
                "faust": {
                    "label": "faust",
                    "median_events_per_s": 300.0,
                    "runs_events_per_s": [300.0],
                    "problems": ["2 outcome records too many"],
                },
            },
        },
        "replay": {
            "events": 10,
            "median_events_per_s": 200_000.0,
            "median_peak_rss_mb": 90.0,
            "identical_to_reference": False,
        },
    }
    text = report.table(results)
    assert "| ceiling | 1,000 | 1,000 | 0.90 ✓ |" in text
    assert "| faust (WRONG: 2 outcome records too many) | 300 | 300 | 3.00 |" in text
    assert ">= 250,000 ✗" in text
    assert "DIFFERENT from the reference" in text


async def test_the_dashboard_latency_bench_answers_every_page(capsys) -> None:
    """The bench serves the real dashboard over hand-built state (it asserts HTTP 200)."""
    from benchmarks import dashboard_latency

    await dashboard_latency.run(accounts=60, requests=2)
    timed = [line for line in capsys.readouterr().out.splitlines() if "median" in line]
    assert len(timed) == 6, timed
    assert any("(remote)" in line for line in timed)


def test_a_runs_timeline_gives_the_p99_of_each_step_of_sending() -> None:
    windows = {
        ("outcome", 0): [10.0, 30.0, 20.0],
        ("charge", 0): [40.0],
        ("outcome", 2): [5.0],
    }
    points = latency.timeline(windows)
    assert [p["from_s"] for p in points] == [0, 2 * latency.TIMELINE_STEP_S]
    assert points[0]["outcome_p99_ms"] == 30.0 and points[0]["charge_p99_ms"] == 40.0
    assert points[1]["outcome_p99_ms"] == 5.0 and math.isnan(points[1]["charge_p99_ms"])


def test_only_the_replay_needs_no_broker() -> None:
    from benchmarks.bench import needs_broker, parse_args

    assert not needs_broker(parse_args(["--only", "replay"]))
    assert needs_broker(parse_args(["--only", "replay,memory"]))
    assert needs_broker(parse_args([]))
    assert needs_broker(parse_args(["--check"]))
