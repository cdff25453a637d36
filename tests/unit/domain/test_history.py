"""The account history window: month arithmetic, the clock, what expires, plan pruning."""

from __future__ import annotations

import random

import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.history import (
    advance_clock,
    capped_month,
    expired_months,
    first_kept_month,
    is_expired,
    month_number,
    month_text,
    prune_plan_history,
)
from botstream.domain.plans import plan_at
from botstream.domain.timefmt import parse_month, parse_timestamp_ms

CONFIG = DomainConfig()


@pytest.mark.parametrize(
    "month", ["1969-12", "1970-01", "2026-02", "2026-12", "2999-12", "3000-01"]
)
def test_month_numbers_round_trip(month: str) -> None:
    assert month_text(month_number(month)) == month
    assert month_text(month_number(month) + 1) > month


@pytest.mark.parametrize(
    ("latest", "months", "first"),
    [
        ("2026-12", 13, "2025-12"),
        ("2026-01", 13, "2025-01"),
        ("2026-03", 1, "2026-03"),
        ("2026-03", 3, "2026-01"),
        ("2026-03", 4, "2025-12"),
        ("2026-03", 0, None),  # 0 keeps every month
        (None, 13, None),  # nothing seen yet
    ],
)
def test_first_kept_month(latest, months, first) -> None:
    assert first_kept_month(latest, months) == first


def test_the_clock_only_moves_forward() -> None:
    assert advance_clock(None, "2026-05") == "2026-05"
    assert advance_clock("2026-05", "2026-04") == "2026-05"
    assert advance_clock("2026-05", "2026-06") == "2026-06"


def test_a_month_in_the_future_is_capped_at_the_wall_clock_plus_skew() -> None:
    now = parse_timestamp_ms("2026-11-30T23:58:00Z")
    skew = 5 * 60_000
    assert capped_month("2999-01", now, skew) == "2026-12"  # now + 5 min is in December
    assert capped_month("2026-11", now, skew) == "2026-11"
    assert capped_month("2999-01", now - 10 * 60_000, skew) == "2026-11"
    assert capped_month("2999-01", None, skew) == "2999-01"  # the replay has no wall clock


def test_expired_months_are_those_before_the_window() -> None:
    months = ["2025-11", "2025-12", "2026-06", "2024-01"]
    assert expired_months(months, "2025-12") == ["2024-01", "2025-11"]
    assert expired_months(months, None) == []
    assert is_expired("2025-11", "2025-12")
    assert not is_expired("2025-12", "2025-12")
    assert not is_expired("1970-01", None)


def _ms(text: str) -> int:
    return parse_timestamp_ms(text)


def test_pruning_keeps_the_plan_in_force_at_the_window_start_and_later_ones() -> None:
    history = [
        [_ms("2024-01-01T00:00:00Z"), "standard", False],
        [_ms("2025-03-01T00:00:00Z"), "pro", False],  # in force when the window opens
        [_ms("2025-06-01T00:00:00Z"), "standard", True],
        [_ms("2026-02-01T00:00:00Z"), "pro", True],
        [_ms("2025-06-01T00:00:00Z"), "pro", False],  # same effective_at, read later: wins
    ]
    pruned = prune_plan_history(history, "2025-05")
    assert pruned == [history[1], history[3], history[4]]
    assert prune_plan_history(history, None) is history


def test_pruning_keeps_a_record_effective_exactly_at_the_window_start() -> None:
    start = parse_month("2025-05")[0]
    history = [[start - 1, "standard", False], [start, "pro", True]]
    assert prune_plan_history(history, "2025-05") == [history[1]]


@pytest.mark.parametrize("seed", range(40))
def test_pruning_never_changes_a_plan_inside_the_window(seed: int) -> None:
    """For any history and any moment from the window's start on, the same plan applies."""
    rng = random.Random(seed)
    base = _ms("2024-01-01T00:00:00Z")
    month_ms = 31 * 86_400_000
    history = [
        [
            base + rng.randrange(0, 30) * month_ms // rng.choice((1, 2, 3)),
            rng.choice(("standard", "pro")),
            rng.random() < 0.5,
        ]
        for _ in range(rng.randrange(0, 12))
    ]
    first_kept = rng.choice(("2024-01", "2024-07", "2025-01", "2025-06", "2026-09"))
    pruned = prune_plan_history(history, first_kept)
    assert len(pruned) <= len(history)
    assert all(entry in history for entry in pruned)
    start = parse_month(first_kept)[0]
    moments = [start, start + 1, *(entry[0] for entry in history if entry[0] >= start)]
    moments += [start + rng.randrange(0, 40 * month_ms) for _ in range(30)]
    for at in moments:
        assert plan_at(pruned, at, CONFIG) == plan_at(history, at, CONFIG), at
