"""``botstream replay``: run an event log through the domain core offline."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from botstream.commands.common import add_config_flag, add_domain_flags, settings_from_args
from botstream.errors import InputFileError
from botstream.replay.engine import ReplayEngine, ReplayResult
from botstream.stream.memory import pace_garbage_collector

EXAMPLES = """\
examples:
  botstream replay events.jsonl --out out/
  botstream replay events.jsonl --plans plans.jsonl --out out/ --idle-timeout 10m
  botstream replay events.jsonl --out out/ --plan-limits standard=100/500,pro=500/10000
  botstream replay events.jsonl --out out/ --partitions 4   # event time per partition, as live

Writes outcomes.jsonl (latest revision of every conversation), usage.jsonl,
alerts.jsonl (in the order raised), stats.jsonl and dead_letters.jsonl to --out.
"""

#: Show a progress bar for inputs at least this large, on a terminal.
PROGRESS_MIN_BYTES = 4 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``replay`` sub-command."""
    parser = subparsers.add_parser(
        "replay",
        help="replay an event log offline (billing audits, backfills)",
        description="Replay a JSONL event log through the same rules as the live stream.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("events", metavar="EVENTS.jsonl", help="widget events, one per line")
    parser.add_argument("--plans", metavar="PLANS.jsonl", help="plan records, read first")
    parser.add_argument("--out", metavar="DIR", required=True, help="directory for the results")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    parser.add_argument(
        "--partitions",
        type=_positive,
        default=1,
        metavar="N",
        help="route each conversation to one of N partitions as Kafka's default partitioner "
        "would, each with its own event time, as a live stream with N partitions does "
        "(default 1: the whole file is one partition)",
    )
    add_config_flag(parser)
    add_domain_flags(parser)
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def read_chunks(path: Path, chunk_bytes: int = 1024 * 1024) -> Iterator[list[bytes]]:
    """The file's lines (without ``\n``, blank ones included), a list per large read.

    Splitting large reads is several times cheaper per line than iterating
    over the file object.
    """
    tail = b""
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            lines = chunk.split(b"\n")
            # The previous read's unfinished line starts this one's first line
            # (joined on its own rather than copying the whole chunk).
            lines[0] = tail + lines[0]
            tail = lines.pop()
            yield lines
    if tail:
        yield [tail]


def read_lines(path: Path, chunk_bytes: int = 1024 * 1024) -> Iterator[tuple[int, bytes]]:
    """``(0-based line number, line without its end)`` for every non-blank line."""
    number = 0
    for lines in read_chunks(path, chunk_bytes):
        for line in lines:
            if line and not line.isspace():
                yield number, line.removesuffix(b"\r")
            number += 1


def _check_input(path_text: str, what: str) -> Path:
    path = Path(path_text)
    if not path.is_file():
        raise InputFileError(f"{what} file {path_text} not found")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{what} file {path_text} is not readable")
    return path


def replay_files(
    events: Path, plans: Path | None, engine: ReplayEngine, progress: bool = False
) -> ReplayResult:
    """Run ``plans`` then ``events`` through ``engine`` and finish it."""
    if plans is not None:
        for offset, raw in read_lines(plans):
            engine.add_plan(raw, plans.name, offset)
    chunks = read_chunks(events)
    if progress:
        chunks = _with_progress(chunks, events)
    engine.add_event_lines(chunks, events.name)
    return engine.finish()


def _with_progress(chunks: Iterator[list[bytes]], path: Path) -> Iterator[list[bytes]]:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total = path.stat().st_size
    columns = (TextColumn("replaying"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        for lines in chunks:
            yield lines
            bar.advance(task, sum(map(len, lines)) + len(lines))
        bar.update(task, completed=total)


def write_results(result: ReplayResult, out: Path) -> dict[str, int]:
    """Write the five JSONL result files; return how many lines each got."""
    out.mkdir(parents=True, exist_ok=True)
    newline = orjson.OPT_APPEND_NEWLINE
    counts = {}
    with (out / "outcomes.jsonl").open("wb") as handle:
        written = 0
        for record in result.outcome_records():
            handle.write(record + b"\n")
            written += 1
        counts["outcomes.jsonl"] = written
    files = {
        "usage.jsonl": [result.usage[key] for key in sorted(result.usage)],
        "alerts.jsonl": result.alerts,
        "stats.jsonl": result.stats_records(),
        "dead_letters.jsonl": result.dead_letters,
    }
    for name, records in files.items():
        with (out / name).open("wb") as handle:
            for record in records:
                handle.write(orjson.dumps(record, option=newline))
        counts[name] = len(records)
    return counts


def run(args: argparse.Namespace) -> int:
    """Replay the files named in ``args`` and print a summary."""
    settings = settings_from_args(args)
    events = _check_input(args.events, "events")
    plans = _check_input(args.plans, "plans") if args.plans else None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputFileError(f"--out {args.out} exists and is not a directory")
    progress = (
        not args.quiet and sys.stderr.isatty() and events.stat().st_size >= PROGRESS_MIN_BYTES
    )
    pace_garbage_collector()  # as the worker does, for the same reason
    started = time.perf_counter()
    engine = ReplayEngine(settings.domain, partitions=args.partitions)
    result = replay_files(events, plans, engine, progress)
    elapsed = time.perf_counter() - started
    try:
        counts = write_results(result, out)
    except OSError as exc:
        raise InputFileError(f"cannot write results to {out}: {exc.strerror}") from None
    if not args.quiet:
        from botstream.replay.summary import print_summary

        print_summary(result, counts, out, elapsed)
    return 0
