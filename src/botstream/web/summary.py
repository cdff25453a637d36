"""What the dashboard shows, computed from account-stage views (no I/O).

A worker summarises the partitions it owns (:func:`partition_summary`), any
worker merges the summaries of every partition (:func:`merge_summaries`), and
the owner of an account describes it (:func:`account_detail`). Usage and
statistics records come from the worker's own read methods
(``Worker.usage``, ``Worker.stats``), so the page shows exactly what the read
API answers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from botstream.domain.config import DomainConfig
from botstream.domain.plans import plan_at
from botstream.domain.stats import STAT_FIELDS
from botstream.domain.timefmt import format_timestamp

#: How many accounts nearest their limit the overview lists.
NEAREST = 20
#: How many months the account page shows, the selected one included.
HISTORY_MONTHS = 12

#: ``(view, account_id, month) -> record``: ``Worker.usage`` or ``Worker.stats``.
ReadRecord = Callable[[Any, str, str], dict]


def nearest_key(record: dict) -> tuple[float, str]:
    """Sort key of the overview's list: highest share of the limit first, then account id.

    The share is the one :func:`botstream.domain.metering.nearest_limit` orders
    by; the account id makes the order the same whichever worker merges it.
    """
    return (-record["used"] / max(record["limit"], 1), record["account_id"])


def partition_summary(
    view: Any,
    month: str,
    config: DomainConfig,
    read_usage: ReadRecord,
    nearest: int = NEAREST,
) -> dict:
    """The overview's figures for one account-stage partition and month.

    ``view`` has ``plans``, ``usage`` and ``stats`` (``Worker.account_views``).
    Only the ``nearest`` accounts with the highest share of their limit get a
    full usage record (with forecast), from ``read_usage``.
    """
    plans_of = view.plans
    months: set[str] = set()
    shares: list[tuple[float, str]] = []
    charged = at_limit = over_limit = over_total = 0
    for (account, usage_month), usage in view.usage.items():
        months.add(usage_month)
        if usage_month != month:
            continue
        # The limit of the usage record: the one in force at its latest charge.
        limit = plan_at(plans_of.get(account), usage.updated_at, config).limit
        used = usage.used
        charged += used
        if used >= limit:
            at_limit += 1
            if used > limit:
                over_limit += 1
                over_total += used - limit
        shares.append((used / max(limit, 1), account))
    top = heapq.nsmallest(nearest, shares, key=lambda item: (-item[0], item[1]))
    outcomes = dict.fromkeys(STAT_FIELDS, 0)
    for per_month in view.stats.values():
        counts = per_month.get(month)
        if counts:
            for name in STAT_FIELDS:
                outcomes[name] += counts.get(name, 0)
    return {
        "month": month,
        "accounts": len(shares),
        "charged": charged,
        "at_limit": at_limit,
        "over_limit": over_limit,
        "over_limit_total": over_total,
        "nearest": [read_usage(view, account, month) for _, account in top],
        "outcomes": outcomes,
        "months": sorted(months),
    }


def merge_summaries(summaries: Iterable[dict], nearest: int = NEAREST) -> dict:
    """One overview from the summaries of several partitions (of the same month)."""
    merged = {
        "accounts": 0,
        "charged": 0,
        "at_limit": 0,
        "over_limit": 0,
        "over_limit_total": 0,
        "outcomes": dict.fromkeys(STAT_FIELDS, 0),
    }
    rows: list[dict] = []
    months: set[str] = set()
    for summary in summaries:
        for name in ("accounts", "charged", "at_limit", "over_limit", "over_limit_total"):
            merged[name] += summary[name]
        for name in STAT_FIELDS:
            merged["outcomes"][name] += summary["outcomes"].get(name, 0)
        rows.extend(summary["nearest"])
        months.update(summary["months"])
    merged["nearest"] = heapq.nsmallest(nearest, rows, key=nearest_key)
    merged["months"] = sorted(months)
    merged["conversations"] = sum(merged["outcomes"].values())
    return merged


def previous_months(month: str, count: int) -> list[str]:
    """``month`` and the ``count - 1`` months before it, newest first."""
    year, number = int(month[:4]), int(month[5:])
    months = []
    for _ in range(count):
        months.append(f"{year:04d}-{number:02d}")
        year, number = (year - 1, 12) if number == 1 else (year, number - 1)
        if year < 1970:
            break
    return months


def adjacent_month(month: str, step: int) -> str | None:
    """The month ``step`` (+1 or -1) after ``month``, or None before 1970."""
    year, number = int(month[:4]), int(month[5:]) + step
    if number == 0:
        year, number = year - 1, 12
    elif number == 13:
        year, number = year + 1, 1
    return f"{year:04d}-{number:02d}" if year >= 1970 else None


def account_detail(
    view: Any,
    account_id: str,
    month: str,
    read_usage: ReadRecord,
    read_stats: ReadRecord,
) -> dict:
    """One account as its owner sees it: the month, the months before it, its plan history."""
    history = [
        {"usage": read_usage(view, account_id, past), "stats": read_stats(view, account_id, past)}
        for past in previous_months(month, HISTORY_MONTHS)
    ]
    plans = [
        {"effective_at": format_timestamp(effective_at), "plan": plan, "chatbot_pack": pack}
        for effective_at, plan, pack in view.plans.get(account_id) or ()
    ]
    return {
        "account_id": account_id,
        "month": month,
        "usage": history[0]["usage"],
        "stats": history[0]["stats"],
        "history": history,
        "plans": plans,
        # Whether botstream has seen the account at all (a plan, a conversation, a charge).
        "known": account_id in view.plans
        or account_id in view.stats
        or any(entry["usage"]["used"] for entry in history),
    }
