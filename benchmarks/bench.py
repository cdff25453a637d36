"""``make bench``: botstream's performance, side by side with its peers, in one command.

    .venv/bin/python -m benchmarks                      # the whole issue (about an hour)
    .venv/bin/python -m benchmarks --events 50000 --runs 1 --only throughput
    .venv/bin/python -m benchmarks --check              # are the peers right? (small, quick)

It starts its own local Kafka broker (or uses ``--bootstrap``), runs the
sections asked for, prints one table (Markdown, ready to paste into the
README), and writes ``benchmarks/results/<timestamp>.json``, ``latest.json``
and a chart, ``<timestamp>.png`` and ``latest.png``.

Sections:

* ``throughput``: botstream's worker, the plain aiokafka ceiling, Kafka
  Streams, Quix Streams and Faust on the same pre-produced events
  (``throughput.py``);
* ``latency``: produce time to ``read_committed`` visibility of outcomes and
  charges at fixed offered rates (``latency.py``);
* ``memory``: peak RSS of a worker holding a million open conversations, and
  the time a fresh worker takes to be ready after a SIGKILL (``memory.py``);
* ``replay``: ``botstream replay`` on a million events, on one core
  (``replay_throughput.py``); run first, before the broker starts, since it
  needs none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import kit, report

SECTIONS = ("throughput", "latency", "memory", "replay")
RESULTS = kit.HERE / "results"


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as botstream's own commands."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``<prog>: <message>`` and exit 2."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (a bad flag is a one-line message and exit status 2)."""
    parser = _OneLineParser(
        prog="python -m benchmarks",
        description="botstream's performance, side by side with its peers.",
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"sections to run, comma-separated (default: all of {SECTIONS})",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=500_000,
        help="events for the throughput runs (default 500000)",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per contender; the median is reported (default 3)"
    )
    parser.add_argument(
        "--contenders",
        default=",".join(("botstream", "ceiling", "kstreams", "quix", "faust")),
        help="throughput contenders, comma-separated",
    )
    parser.add_argument(
        "--commit-interval-ms",
        type=int,
        default=100,
        help="the peers' commit interval (default 100, Kafka Streams' EOS "
        "default; botstream and the ceiling commit every batch)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800,
        help="seconds one throughput run may take before it counts as failed",
    )
    parser.add_argument(
        "--latency-rates",
        default="2000,half",
        help="offered rates in events/s; 'half' is half botstream's measured steady "
        "throughput (default 2000,half)",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=30,
        help="measured seconds of traffic in each latency run (default 30)",
    )
    parser.add_argument(
        "--latency-warmup",
        type=float,
        default=10,
        help="seconds of traffic before the measured ones, reported apart (default 10)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=3,
        help="runs at each rate, each with a fresh worker; samples pooled (default 3)",
    )
    parser.add_argument(
        "--conversations",
        type=int,
        default=1_000_000,
        help="open conversations for the memory section (default 1000000)",
    )
    parser.add_argument(
        "--stores",
        default="memory,rocksdb",
        help="worker stores for the memory section (rocksdb only when the worker offers --store)",
    )
    parser.add_argument("--replay-events", type=int, default=1_000_000)
    parser.add_argument("--replay-runs", type=int, default=3)
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument(
        "--check",
        action="store_true",
        help="check every contender on a small input (5,000 events) and stop",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record a py-spy flame graph of the botstream worker in run 1",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    args = parser.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--only: unknown section {unknown[0]!r} (choose from {', '.join(SECTIONS)})")
    args.sections = sections
    from benchmarks.throughput import CONTENDERS

    args.contender_list = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in args.contender_list if c not in CONTENDERS]
    if bad:
        parser.error(f"--contenders: unknown {bad[0]!r} (choose from {', '.join(CONTENDERS)})")
    for name in ("events", "runs", "conversations", "replay_events", "replay_runs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be at least 1")
    return args


@contextlib.contextmanager
def broker(bootstrap: str | None):
    """The broker to use: the one given, or a local one started (and stopped) here."""
    if bootstrap:
        yield bootstrap
        return
    from botstream.kafka.local_broker import LocalKafka

    kafka = LocalKafka(heap=os.environ.get("BOTSTREAM_KAFKA_HEAP", "1g"))
    kit.log("starting a local Kafka broker...")
    with kafka:
        kit.log(f"broker at {kafka.bootstrap}")
        yield kafka.bootstrap


def environment() -> dict:
    """What the figures were measured on."""
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": platform.platform(),
        "load_average_at_start": os.getloadavg(),
    }


def new_results(args: argparse.Namespace) -> dict:
    """The results document, before any section has run."""
    return {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "arguments": vars_of(args),
    }


def needs_broker(args: argparse.Namespace) -> bool:
    """Whether a section asked for uses Kafka (all but the replay do)."""
    return args.check or any(section != "replay" for section in args.sections)


def replay_section(args: argparse.Namespace) -> dict | None:
    """The replay section, if asked for; run before any broker starts.

    ``botstream replay`` reads files only. Run after the other sections, it
    shared the machine with the broker compacting and deleting their topics
    (a million conversations' changelog among them): the same command measured
    231,080 events/s there and 254,019 with no broker running, minutes apart.
    """
    if args.check or "replay" not in args.sections:
        return None
    from benchmarks import replay_throughput

    return replay_throughput.measure(args.replay_events, args.replay_runs)


async def run_sections(
    args: argparse.Namespace, bootstrap: str, log_dir: Path, results: dict
) -> None:
    """Run the sections asked for that need the broker, into ``results``."""
    if args.check:
        from benchmarks import throughput

        traffic = kit.simulated_traffic(5_000)
        results["check"] = await throughput.measure(
            bootstrap,
            traffic,
            log_dir,
            contenders=args.contender_list,
            runs=1,
            commit_interval_ms=args.commit_interval_ms,
            timeout_s=300,
            verify_all=True,
        )
        return
    if "throughput" in args.sections:
        from benchmarks import throughput

        traffic = kit.simulated_traffic(args.events)
        kit.log(f"{len(traffic.events):,} simulated events, {len(traffic.plans)} plan records")
        results["throughput"] = await throughput.measure(
            bootstrap,
            traffic,
            log_dir,
            contenders=args.contender_list,
            runs=args.runs,
            commit_interval_ms=args.commit_interval_ms,
            timeout_s=args.timeout,
            verify_all=False,
            profile=args.profile,
            out=args.out,
            warm_broker=True,
        )
    if "latency" in args.sections:
        from benchmarks import latency

        rates, half = latency_rates(args, results)
        results["latency"] = await latency.measure(
            bootstrap,
            log_dir,
            rates=rates,
            seconds=args.latency_seconds,
            warmup_s=args.latency_warmup,
            runs=args.latency_runs,
            half_max=half,
            warm_broker=True,
        )
    if "memory" in args.sections:
        from benchmarks import memory

        results["memory"] = await memory.measure(
            bootstrap,
            log_dir,
            conversations=args.conversations,
            stores=[s.strip() for s in args.stores.split(",") if s.strip()],
        )


def latency_rates(args: argparse.Namespace, results: dict) -> tuple[list[int], int | None]:
    """The offered rates (numbers as given; ``half`` from this run's or the last throughput)."""
    rates, half = [], None
    for part in (p.strip() for p in args.latency_rates.split(",") if p.strip()):
        if part != "half":
            rates.append(int(part))
            continue
        measured = results.get("throughput") or report.load_latest(args.out).get("throughput")
        best = (measured or {}).get("contenders", {}).get("botstream", {})
        # The most it sustains: the steady rate, without start-up (else the wall-clock one).
        maximum = best.get("median_steady_events_per_s") or best.get("median_events_per_s")
        if maximum:
            half = int(maximum / 2)
            rates.append(half)
        else:
            kit.log("no botstream throughput measured yet: skipping the 'half' latency rate")
    return rates, half


def vars_of(args: argparse.Namespace) -> dict:
    """The arguments as JSON-friendly values."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _not_a_new_topics_leader_retry(record: logging.LogRecord) -> bool:
    """Whether a log record is anything but a produce retry on a topic just created.

    A broker lists a new partition's leader before that leader takes records;
    the bench's own producers retry such NotLeaderForPartition answers at once,
    and the warning of each retry only cluttered the table.
    """
    return "NotLeaderForPartitionError" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    args = parse_args(argv)
    logging.getLogger("aiokafka.producer.sender").addFilter(_not_a_new_topics_leader_retry)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    log_dir = kit.bench_cache() / "logs" / stamp
    log_dir.mkdir(parents=True, exist_ok=True)
    kit.log(f"logs of every process: {log_dir}")
    results = new_results(args)
    replay = replay_section(args)
    if replay is not None:
        results["replay"] = replay
    if needs_broker(args):
        with broker(args.bootstrap) as bootstrap:
            asyncio.run(run_sections(args, bootstrap, log_dir, results))
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if args.check:
        print(report.check_table(results["check"]))
        problems = [p for c in results["check"]["contenders"].values() for p in c["problems"]]
        return 1 if problems else 0
    previous = report.load_latest(args.out)
    merged = report.merge(previous, results)
    paths = report.write(merged, args.out, stamp)
    print(report.table(merged))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
