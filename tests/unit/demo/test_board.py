"""The demo's board: what the live view and the summary make of the output records."""

from __future__ import annotations

import pytest
from rich.console import Console

from botstream.config import load_settings
from botstream.demo.board import DemoBoard, live_view, summary_view, usage_bar
from botstream.demo.runner import DemoOptions, demo_sim_config, events_processed
from botstream.domain.config import MINUTE_MS
from botstream.sim.generator import TrafficSimulator


def outcome(conversation: str, kind: str, billable: bool, revision: int = 1) -> dict:
    return {
        "conversation_id": conversation,
        "account_id": "acc-1",
        "revision": revision,
        "outcome": kind,
        "billable": billable,
    }


def usage(account: str, used: int, limit: int, month: str = "2026-11") -> dict:
    return {
        "account_id": account,
        "month": month,
        "plan": "standard",
        "chatbot_pack": False,
        "limit": limit,
        "used": used,
        "remaining": max(0, limit - used),
        "over_limit": max(0, used - limit),
        "updated_at": "2026-11-24T20:15:00.123Z",
    }


def alert(kind: str, used: int, limit: int) -> dict:
    return {
        "alert_id": f"acc-1:2026-11:{kind}:{limit}",
        "kind": kind,
        "account_id": "acc-1",
        "month": "2026-11",
        "used": used,
        "limit": limit,
        "conversation_id": "c-1",
        "at": "2026-11-24T20:15:00.123Z",
    }


def test_latest_revision_of_each_conversation_counts() -> None:
    board = DemoBoard()
    board.add_outcome(outcome("c-1", "unengaged", False, 1))
    board.add_outcome(outcome("c-1", "resolved_by_chatbot", True, 2))
    board.add_outcome(outcome("c-2", "no_chatbot", False))
    assert board.revisions == 3
    assert board.outcome_counts() == {"resolved_by_chatbot": 1, "no_chatbot": 1}
    assert board.billable == 1


def test_latest_usage_per_account_and_month_sums_to_charges() -> None:
    board = DemoBoard()
    board.add_usage(usage("acc-1", 1, 100))
    board.add_usage(usage("acc-1", 2, 100))
    board.add_usage(usage("acc-1", 1, 100, month="2026-12"))
    board.add_usage(usage("acc-2", 7, 500))
    assert board.charged == 2 + 1 + 7
    assert len(board.usage) == 3


def test_closest_to_limit_orders_by_share_of_limit() -> None:
    board = DemoBoard()
    board.add_usage(usage("acc-big", 400, 500))  # 80%
    board.add_usage(usage("acc-over", 120, 100))  # 120%
    board.add_usage(usage("acc-small", 10, 100))  # 10%
    assert [r["account_id"] for r in board.closest_to_limit(2)] == ["acc-over", "acc-big"]
    assert board.over_limit == 1


def test_dead_letters_are_counted_by_reason_code() -> None:
    board = DemoBoard()
    for error in ("invalid_json: not JSON", "late: 8 days before", "invalid_json: bad utf-8"):
        board.add_dead_letter({"error": error, "topic": "widget-events"})
    assert board.dead_letters == {"invalid_json": 2, "late": 1}


@pytest.mark.parametrize(
    ("used", "limit", "filled", "empty", "over"),
    [
        (0, 100, 0, 24, 0),
        (50, 100, 12, 12, 0),
        (100, 100, 24, 0, 0),
        (200, 100, 12, 0, 12),  # the limit sits halfway; the rest is past it
    ],
)
def test_usage_bar_shows_the_part_past_the_limit(used, limit, filled, empty, over) -> None:
    bar = usage_bar(used, limit, width=24)
    plain = bar.plain
    assert len(plain) == 24
    assert plain.count("░") == empty
    red = sum(span.end - span.start for span in bar.spans if span.style == "red")
    assert red == over
    assert plain.count("█") == filled + over


def test_views_render_what_the_board_holds() -> None:
    board = DemoBoard()
    board.add_outcome(outcome("c-1", "transferred_to_agent", False))
    board.add_usage(usage("acc-hot-1", 264, 100))
    board.add_alert(alert("quota.exceeded", 101, 100))
    board.add_dead_letter({"error": "unknown_type: x"})
    for view in (live_view(board, "header line"), summary_view(board)):
        console = Console(record=True, width=120)
        console.print(view)
        text = console.export_text()
        assert "acc-hot-1" in text
        assert "264 / 100" in text
        assert "unknown_type 1" in text
        assert "transferred_to_agent" in text
    assert "quota.exceeded" in text


def test_events_processed_reads_the_worker_counter() -> None:
    text = (
        "# HELP botstream_events_in_total Input records read from widget-events.\n"
        "# TYPE botstream_events_in_total counter\n"
        "botstream_events_in_total 4242.0\n"
        "botstream_events_in_created 1.7e9\n"
        "botstream_charges_total 17.0\n"
    )
    assert events_processed(text) == 4242
    assert events_processed("") == 0


def test_demo_traffic_ends_before_now_by_more_than_the_idle_timeout() -> None:
    settings = load_settings(env={})
    now = 1_795_550_400_000
    config = demo_sim_config(DemoOptions(duration_s=5, speed=2880), settings, now)
    assert config.end_ms == now - settings.domain.idle_timeout_ms - 15 * MINUTE_MS
    assert config.end_ms - config.start_ms == 5 * 1000 * 2880
    sim = TrafficSimulator(config)
    records = list(sim.events())
    assert records, "the demo's traffic must not be empty"
    assert sim.stats.last_ms < config.end_ms
    assert sim.stats.conversations.total() > 50
