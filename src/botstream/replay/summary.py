"""The one-screen summary printed at the end of ``botstream replay``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from botstream.domain.metering import nearest_limit
from botstream.domain.stats import STAT_FIELDS
from botstream.replay.engine import ReplayResult


def print_summary(
    result: ReplayResult,
    counts: dict[str, int],
    out: Path,
    elapsed: float,
    console: Console | None = None,
) -> None:
    """Print totals, outcomes, the accounts nearest their limit and where the files are."""
    console = console or Console()
    rate = result.events_read / elapsed if elapsed > 0 else 0.0
    console.print(
        f"[bold]botstream replay[/]: {result.events_read:,} events in {elapsed:.1f} s "
        f"({rate:,.0f} events/s), {result.plans_read:,} plan records"
    )
    totals = Counter()
    for months in result.stats.values():
        for month_counts in months.values():
            totals.update(month_counts)
    outcomes = Table(title="conversations by outcome", show_edge=False)
    outcomes.add_column("outcome")
    outcomes.add_column("conversations", justify="right")
    for name in STAT_FIELDS:
        outcomes.add_row(name, f"{totals[name]:,}")
    console.print(outcomes)

    top = nearest_limit(result.usage.values(), 5)
    if top:
        usage = Table(title="accounts nearest their limit", show_edge=False)
        for column in ("account", "month", "plan", "used", "limit", "over"):
            usage.add_column(
                column, justify="right" if column in {"used", "limit", "over"} else "left"
            )
        for r in top:
            plan = r["plan"] + (" + pack" if r["chatbot_pack"] else "")
            usage.add_row(
                r["account_id"],
                r["month"],
                plan,
                f"{r['used']:,}",
                f"{r['limit']:,}",
                f"{r['over_limit']:,}",
            )
        console.print(usage)

    dead = ", ".join(f"{code} {n:,}" for code, n in result.dead_letter_codes.most_common())
    console.print(
        f"charges {result.charges:,} · alerts {len(result.alerts):,} · "
        f"duplicates {result.duplicates:,} · dead letters {len(result.dead_letters):,}"
        + (f" ({dead})" if dead else "")
    )
    files = ", ".join(f"{name} ({n:,})" for name, n in counts.items())
    console.print(f"written to {out}/: {files}")
