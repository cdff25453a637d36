"""``botstream simulate``: realistic live-chat widget traffic, to files or to Kafka."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from botstream.commands.common import add_config_flag, add_kafka_flags, settings_from_args
from botstream.config import parse_duration_ms
from botstream.domain.config import DAY_MS, MINUTE_MS
from botstream.domain.timefmt import format_timestamp, month_of, parse_timestamp_ms
from botstream.errors import ConfigError

if TYPE_CHECKING:
    from botstream.config import Settings
    from botstream.sim.generator import SimConfig, SimStats, TrafficSimulator
    from botstream.sim.runner import Pacer, ProgressCallback, RunReport

EXAMPLES = """\
examples:
  # a 1,000,000-event benchmark log with its plan records, as fast as possible
  botstream simulate --out events.jsonl --plans-out plans.jsonl --count 1000000 --seed 7

  # straddle a month boundary: usage starts again from zero on December 1st
  botstream simulate --out events.jsonl --plans-out plans.jsonl \\
      --start 2026-11-30T22:00:00Z --count 50000

  # live traffic into Kafka, a simulated day per wall minute, for ten minutes
  botstream simulate --bootstrap 127.0.0.1:9092 --speed 1440 --duration 600

  # a steady 500 events/s load with more faults than usual
  botstream simulate --bootstrap 127.0.0.1:9092 --rate 500 --duration 60 \\
      --duplicate-rate 0.05 --out-of-order-rate 0.1 --malformed-rate 0.01

Without --out, records go to Kafka (--bootstrap, or BOTSTREAM_BOOTSTRAP, or
127.0.0.1:9092): plan records to the account-plans topic first, then events to
widget-events. The same --seed and flags give the same file, byte for byte;
without --start the run ends shortly before now (for files: starts at a UTC
midnight, so reruns on the same day match), so give --start to reproduce a
file on another day. --duration needs --speed or --rate, because it is
turned into simulated time or a record count, never measured on the clock.
"""

DEFAULT_COUNT = 10_000


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate",
        help="generate realistic widget traffic (to JSONL files or Kafka)",
        description=(
            "Generate live-chat widget events as real widgets send them: chatbot-resolved, "
            "transferred, unengaged and agent-only conversations, reopened ones and long "
            "pauses, hot accounts that cross their monthly limits, plan changes, and "
            "duplicate, out-of-order and malformed records."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="FILE", help="write events as JSONL to FILE (- for stdout)")
    out.add_argument("--plans-out", metavar="FILE", help="write plan records as JSONL to FILE")
    out.add_argument(
        "--only",
        choices=["plans", "events"],
        help="with Kafka: produce only the plan records, or only the events (load the "
        "plans first, then send events once botstream has read them)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress and no summary")

    run = parser.add_argument_group("how much and how fast")
    run.add_argument(
        "--count", metavar="N", help=f"stop after N event records (default {DEFAULT_COUNT:,})"
    )
    run.add_argument(
        "--duration",
        metavar="SECONDS",
        help="stop after this much wall time at --speed/--rate (e.g. 600, 90s, 10m)",
    )
    run.add_argument(
        "--rate", metavar="N", default="0", help="at most N events per wall second (0: no limit)"
    )
    run.add_argument(
        "--speed",
        metavar="X",
        help="simulated time per wall time, e.g. 1440 = a day per minute (default: no pacing)",
    )
    run.add_argument(
        "--start",
        metavar="TIME",
        help="event time of the first conversation, RFC 3339 (default: so the run ends before now)",
    )
    run.add_argument("--seed", metavar="N", default="1", help="random seed (default 1)")

    traffic = parser.add_argument_group("traffic")
    traffic.add_argument("--accounts", metavar="N", default="200", help="normal accounts (200)")
    traffic.add_argument(
        "--hot-accounts",
        metavar="N",
        default="3",
        help="hot accounts acc-hot-N, each with 10%% of the traffic (3)",
    )
    traffic.add_argument(
        "--duplicate-rate",
        metavar="F",
        default="0.01",
        help="fraction of events delivered twice (0.01)",
    )
    traffic.add_argument(
        "--out-of-order-rate",
        metavar="F",
        default="0.02",
        help="fraction of events delivered after later events of their conversation (0.02)",
    )
    traffic.add_argument(
        "--malformed-rate",
        metavar="F",
        default="0.002",
        help="fraction of events preceded by a malformed record (0.002)",
    )
    add_config_flag(parser)
    add_kafka_flags(parser)
    parser.set_defaults(func=run_command)


def _integer(text: str, flag: str, minimum: int) -> int:
    try:
        value = int(str(text).replace("_", ""))
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{flag}: must be at least {minimum}, not {value}")
    return value


def _number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{flag}: {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{flag}: must be a number of 0 or more, not {text}")
    return value


def _fraction(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 1:
        raise ConfigError(f"{flag}: {text!r} is not a fraction between 0 and 1")
    return value


def build_config(
    args: argparse.Namespace, now_ms: int, to_file: bool
) -> tuple[SimConfig, float | None, float]:
    """The :class:`SimConfig` the flags ask for, with the speed and rate to pace it.

    ``now_ms`` places the default start; only the caller reads the clock.
    """
    from botstream.sim.generator import SimConfig, expected_span_ms

    rate = _number(args.rate, "--rate")
    speed = _number(args.speed, "--speed") if args.speed is not None else None
    if speed == 0:
        speed = None
    count = _integer(args.count, "--count", 1) if args.count is not None else None
    duration_ms = None
    if args.duration is not None:
        try:
            duration_ms = parse_duration_ms(args.duration)
        except ConfigError as exc:
            raise ConfigError(f"--duration: {exc}") from None
        if duration_ms <= 0:
            raise ConfigError("--duration: must be more than 0")
        if speed is None and not rate:
            raise ConfigError(
                "--duration needs --speed or --rate (to turn it into simulated time "
                "or a number of events); use --count otherwise"
            )
        if rate:
            by_rate = max(1, int(rate * duration_ms / 1000))
            count = by_rate if count is None else min(count, by_rate)
    elif count is None:
        count = DEFAULT_COUNT
    span_ms = int(duration_ms * speed) if duration_ms is not None and speed else None

    config = SimConfig(
        seed=_integer(args.seed, "--seed", 0),
        count=count,
        accounts=_integer(args.accounts, "--accounts", 0),
        hot_accounts=_integer(args.hot_accounts, "--hot-accounts", 0),
        duplicate_rate=_fraction(args.duplicate_rate, "--duplicate-rate"),
        out_of_order_rate=_fraction(args.out_of_order_rate, "--out-of-order-rate"),
        malformed_rate=_fraction(args.malformed_rate, "--malformed-rate"),
    )
    if args.start is not None:
        start = parse_timestamp_ms(args.start)
        if start is None:
            raise ConfigError(
                f"--start: {args.start!r} is not an RFC 3339 time (example: 2026-11-30T22:00:00Z)"
            )
    else:
        expected = span_ms if span_ms is not None else expected_span_ms(config)
        # A margin, because the expected span is an average; for files, a UTC
        # midnight so that reruns on the same day give the same bytes.
        start = now_ms - int(expected * 1.1) - 10 * MINUTE_MS
        if to_file:
            start -= start % DAY_MS
    end = start + span_ms if span_ms is not None else None
    return replace(config, start_ms=start, end_ms=end), speed, rate


def run_command(args: argparse.Namespace) -> int:
    """Generate the traffic the flags ask for and print a summary."""
    import asyncio

    from botstream.sim.generator import TrafficSimulator
    from botstream.sim.runner import Pacer

    to_file = args.out is not None
    if to_file and getattr(args, "env:BOTSTREAM_BOOTSTRAP", None):
        raise ConfigError("--out and --bootstrap: give one of them (a file or Kafka)")
    if args.plans_out is not None and not to_file:
        raise ConfigError("--plans-out needs --out (with Kafka, plans go to their topic)")
    if args.only is not None and to_file:
        raise ConfigError("--only is for Kafka; with --out, plans go to --plans-out if given")
    settings = None if to_file else settings_from_args(args)
    config, speed, rate = build_config(args, int(time.time() * 1000), to_file)
    sim = TrafficSimulator(config)
    pacer = Pacer(config.start_ms, speed, rate)
    report_to = sys.stderr if args.out == "-" else sys.stdout
    progress = None
    if not args.quiet and sys.stderr.isatty() and (pacer.active or not to_file):
        progress = _progress_line

    if to_file:
        from botstream.sim.runner import write_files
        from botstream.sim.sinks import FileSink

        try:
            with FileSink(args.out, args.plans_out) as sink:
                report = write_files(sim, sink, pacer, progress)
        except BrokenPipeError:
            # ``--out - | head``: the reader has what it wanted. Stop quietly, like
            # other command-line tools, and keep the interpreter's last flush quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        target = "stdout" if args.out == "-" else args.out
        plans_target = args.plans_out
    else:
        report = asyncio.run(_produce(sim, settings, pacer, progress, args.only))
        target = f"{settings.topics.events} at {settings.bootstrap_servers}"
        plans_target = settings.topics.plans
    if progress is not None:
        print(file=sys.stderr)
    if not args.quiet:
        print_summary(sim, report, target, plans_target, report_to)
    return 0


async def _produce(
    sim: TrafficSimulator,
    settings: Settings,
    pacer: Pacer,
    progress: ProgressCallback | None,
    only: str | None = None,
) -> RunReport:
    from botstream.sim.runner import RunReport, produce, produce_events, produce_plans
    from botstream.sim.sinks import KafkaSink

    # aiokafka logs connection failures itself; the sink turns them into one
    # KafkaUnavailableError line, so its own log would only repeat it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    async with KafkaSink(settings) as sink:
        if only is None:
            return await produce(sim, sink, pacer, progress)
        started = time.perf_counter()
        if only == "plans":
            plans, records = await produce_plans(sim, sink), 0
        else:
            plans, records = 0, await produce_events(sim, sink, pacer, progress)
        return RunReport(records, plans, time.perf_counter() - started)


def _progress_line(stats: SimStats) -> None:
    at = format_timestamp(stats.last_ms) if stats.last_ms is not None else "-"
    print(f"\rsimulate: {stats.records:,} records, event time {at}", end="", file=sys.stderr)


def _months(first_ms: int, last_ms: int) -> list[str]:
    months = [month_of(first_ms)]
    last = month_of(last_ms)
    while months[-1] != last:
        year, month = int(months[-1][:4]), int(months[-1][5:])
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        months.append(f"{year:04d}-{month:02d}")
    return months


def print_summary(
    sim: TrafficSimulator,
    report: RunReport,
    target: str,
    plans_target: str | None,
    out: TextIO,
) -> None:
    """Records written, conversations by intended flow, faults injected, event-time span."""
    stats = sim.stats
    rate = report.records / report.elapsed_s if report.elapsed_s > 0 else 0.0
    lines = [
        f"botstream simulate: {report.records:,} event records to {target} "
        f"in {report.elapsed_s:.1f} s ({rate:,.0f} records/s)",
    ]
    if plans_target:
        lines.append(f"  plan records: {report.plan_records:,} to {plans_target}")
    else:
        lines.append(f"  plan records: {len(sim.plan_records()):,} not written (add --plans-out)")
    if stats.first_ms is not None:
        days = (stats.last_ms - stats.first_ms) / DAY_MS
        months = _months(stats.first_ms, stats.last_ms)
        lines.append(
            f"  event time: {format_timestamp(stats.first_ms)} to "
            f"{format_timestamp(stats.last_ms)} ({days:.1f} days; months {', '.join(months)})"
        )
    total = sum(stats.conversations.values())
    lines.append(f"  conversations by intended flow ({total:,}):")
    for flow, n in stats.conversations.most_common():
        lines.append(f"    {flow:<22}{n:>10,}  {100 * n / total:5.1f}%")
    malformed = {
        kind.removeprefix("malformed."): n
        for kind, n in sorted(stats.faults.items())
        if kind.startswith("malformed.")
    }
    detail = ", ".join(f"{kind} {n:,}" for kind, n in malformed.items())
    lines.append(
        f"  faults: {stats.faults['duplicate']:,} duplicates, "
        f"{stats.faults['out_of_order']:,} out of order, "
        f"{stats.malformed:,} malformed" + (f" ({detail})" if detail else "")
    )
    try:
        print("\n".join(lines), file=out, flush=True)
    except BrokenPipeError:
        # The reader (``| head``) went away; that is not an error of the run.
        # Point the stream at /dev/null so the interpreter's final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
