"""What the demo shows: the committed output records, folded into a live view and a summary.

:class:`DemoBoard` is fed the values of the four output topics (read
``read_committed``, as any downstream consumer should) and the worker's
throughput; it keeps the latest outcome of each conversation (the consumer
pattern SPEC asks for), the latest usage of each account and month, the
alerts in arrival order and the dead letters by reason. :func:`live_view` and
:func:`summary_view` render it with rich; neither reads a clock.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from botstream.domain.metering import nearest_limit
from botstream.domain.stats import STAT_FIELDS

#: Colour of each outcome in the views.
OUTCOME_STYLES = {
    "resolved_by_chatbot": "green",
    "transferred_to_agent": "cyan",
    "unengaged": "yellow",
    "no_chatbot": "magenta",
}
ALERT_STYLES = {
    "quota.warning": "yellow",
    "quota.limit_reached": "bold red",
    "quota.exceeded": "bold magenta",
}


@dataclass
class Throughput:
    """The worker's input progress, as read from its metrics."""

    processed: int = 0
    per_second: float = 0.0
    peak_per_second: float = 0.0
    sent: int = 0
    #: Event time of the last record the simulator sent (RFC 3339), if any.
    event_time: str | None = None


@dataclass
class DemoBoard:
    """The state of the live view: what the worker committed so far."""

    #: How many recent alerts the live view lists.
    recent_alerts: int = 8
    outcomes: dict[str, tuple[str, bool]] = field(default_factory=dict)
    revisions: int = 0
    usage: dict[tuple[str, str], dict] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    dead_letters: Counter = field(default_factory=Counter)
    throughput: Throughput = field(default_factory=Throughput)

    def add_outcome(self, record: dict) -> None:
        """A revision from the outcomes topic: the latest one per conversation counts."""
        self.revisions += 1
        self.outcomes[record["conversation_id"]] = (record["outcome"], bool(record["billable"]))

    def add_usage(self, record: dict) -> None:
        """A usage record: the latest one per (account, month) counts."""
        self.usage[(record["account_id"], record["month"])] = record

    def add_alert(self, record: dict) -> None:
        """An alert, in the order it was committed."""
        self.alerts.append(record)

    def add_dead_letter(self, record: dict) -> None:
        """A dead letter, counted by the reason code that starts its ``error``."""
        self.dead_letters[record["error"].split(":", 1)[0]] += 1

    # -- derived figures ---------------------------------------------------------------

    def outcome_counts(self) -> Counter:
        """Conversations by their latest outcome."""
        return Counter(outcome for outcome, _ in self.outcomes.values())

    @property
    def billable(self) -> int:
        """Conversations whose latest outcome is billable."""
        return sum(1 for _, billable in self.outcomes.values() if billable)

    @property
    def charged(self) -> int:
        """Charges metered: the sum of ``used`` over every account and month."""
        return sum(record["used"] for record in self.usage.values())

    @property
    def over_limit(self) -> int:
        """(Account, month) pairs whose usage went past the limit."""
        return sum(1 for record in self.usage.values() if record["used"] > record["limit"])

    def closest_to_limit(self, count: int) -> list[dict]:
        """The ``count`` usage records with the highest used/limit, highest first."""
        return nearest_limit(self.usage.values(), count)

    def alert_counts(self) -> Counter:
        """Alerts by kind."""
        return Counter(alert["kind"] for alert in self.alerts)


def usage_bar(used: int, limit: int, width: int = 24) -> Text:
    """``used`` out of ``limit`` as a bar; the part past the limit is drawn in red."""
    if limit <= 0:
        return Text("no limit", style="dim")
    scale = max(used, limit)
    within = min(used, limit) * width // scale
    over = (used - limit) * width // scale if used > limit else 0
    limit_mark = limit * width // scale
    bar = Text()
    bar.append("█" * within, style="green" if used < limit else "yellow")
    bar.append("░" * max(0, limit_mark - within), style="dim")
    bar.append("█" * over, style="red")
    bar.append(" " * max(0, width - limit_mark - over))
    return bar


def _outcomes_table(board: DemoBoard) -> Table:
    counts = board.outcome_counts()
    total = sum(counts.values())
    table = Table(show_edge=False, box=None, pad_edge=False)
    table.add_column("outcome (latest per conversation)")
    table.add_column("conversations", justify="right")
    table.add_column("share", justify="right")
    for name in STAT_FIELDS:
        share = f"{100 * counts[name] / total:.1f}%" if total else "-"
        table.add_row(Text(name, style=OUTCOME_STYLES[name]), f"{counts[name]:,}", share)
    table.add_row(Text("total", style="bold"), f"{total:,}", "")
    table.add_row("billable", f"{board.billable:,}", "")
    table.add_row("charged", f"{board.charged:,}", "")
    return table


def _traffic_table(board: DemoBoard) -> Table:
    flow = board.throughput
    table = Table(show_header=False, show_edge=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_row("events sent", f"{flow.sent:,}")
    table.add_row("events processed", f"{flow.processed:,}")
    table.add_row("events/s now", f"{flow.per_second:,.0f}")
    table.add_row("events/s peak", f"{flow.peak_per_second:,.0f}")
    table.add_row("outcome revisions", f"{board.revisions:,}")
    table.add_row("event time", (flow.event_time or "-")[:16].replace("T", " "))
    return table


def _usage_table(board: DemoBoard, count: int) -> Table:
    table = Table(show_edge=False, box=None, pad_edge=False)
    for name, justify in (
        ("account", "left"),
        ("month", "left"),
        ("plan", "left"),
        ("used / limit", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)
    for record in board.closest_to_limit(count):
        plan = record["plan"] + (" + pack" if record["chatbot_pack"] else "")
        table.add_row(
            record["account_id"],
            record["month"],
            plan,
            f"{record['used']:,} / {record['limit']:,}",
            usage_bar(record["used"], record["limit"]),
        )
    return table


def alert_line(alert: dict) -> Text:
    """One alert as a readable line."""
    text = Text()
    text.append(f"{alert['at'][:19].replace('T', ' ')}  ", style="dim")
    text.append(f"{alert['kind']:<20}", style=ALERT_STYLES.get(alert["kind"], ""))
    text.append(
        f" {alert['account_id']} {alert['month']}  used {alert['used']:,} of {alert['limit']:,}"
    )
    return text


def _alerts_panel(board: DemoBoard) -> Panel:
    recent = board.alerts[-board.recent_alerts :]
    body: RenderableType = (
        Group(*(alert_line(alert) for alert in recent)) if recent else Text("none yet", "dim")
    )
    return Panel(body, title=f"alerts ({len(board.alerts):,})", title_align="left")


def _dead_letters_text(board: DemoBoard) -> Text:
    if not board.dead_letters:
        return Text("none yet", style="dim")
    return Text(
        "  ".join(f"{reason} {n:,}" for reason, n in board.dead_letters.most_common()),
        style="red",
    )


def live_view(board: DemoBoard, header: str, accounts: int = 6) -> RenderableType:
    """The live screen: traffic, outcomes, accounts nearest their limit, alerts, dead letters."""
    top = Table.grid(expand=True, padding=(0, 2))
    top.add_column(ratio=2)
    top.add_column(ratio=3)
    top.add_row(
        Panel(_traffic_table(board), title="traffic", title_align="left"),
        Panel(_outcomes_table(board), title="outcomes", title_align="left"),
    )
    dead_total = sum(board.dead_letters.values())
    return Group(
        Text(header, style="bold"),
        top,
        Panel(
            _usage_table(board, accounts),
            title=f"accounts closest to their limit ({board.over_limit} over it)",
            title_align="left",
        ),
        _alerts_panel(board),
        Panel(
            _dead_letters_text(board), title=f"dead letters ({dead_total:,})", title_align="left"
        ),
    )


def summary_view(board: DemoBoard, accounts: int = 8) -> RenderableType:
    """The final summary: totals, outcomes, usage, alerts and dead letters."""
    alerts = board.alert_counts()
    alert_text = ", ".join(f"{kind} {n:,}" for kind, n in sorted(alerts.items())) or "none"
    flow = board.throughput
    return Group(
        Text(
            f"{flow.processed:,} events processed (peak {flow.peak_per_second:,.0f} events/s), "
            f"{len(board.outcomes):,} conversations, {board.revisions:,} outcome revisions",
            style="bold",
        ),
        _outcomes_table(board),
        Text(""),
        Text("accounts closest to their limit", style="bold"),
        _usage_table(board, accounts),
        Text(""),
        Text(f"alerts: {alert_text}"),
        Text(f"dead letters: {sum(board.dead_letters.values()):,}  ").append_text(
            _dead_letters_text(board)
        ),
    )
