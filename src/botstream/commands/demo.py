"""``botstream demo``: botstream on the embedded default, in one command.

Starts a local Kafka broker (unless ``--bootstrap`` names one), creates
botstream's topics and lists them, then generates simulated widget traffic
and runs it through the rules with the offline replay, ending with a summary.
The live worker joins this demo once the stream processor lands.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from botstream.commands.common import add_kafka_flags, settings_from_args

EXAMPLES = """\
examples:
  botstream demo                          # local broker, topics, 200,000 simulated events
  botstream demo --events 50000 --seed 3
  botstream demo --bootstrap kafka:9092   # use an existing cluster instead of a local broker
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run botstream on the embedded default (local Kafka, simulated traffic)",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--events",
        type=int,
        default=200_000,
        metavar="N",
        help="simulated events to process (default 200000)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument("--keep", metavar="DIR", help="keep the generated log and results here")
    add_kafka_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start (or reach) Kafka, create the topics, then simulate and replay traffic."""
    from rich.console import Console

    from botstream.errors import ConfigError
    from botstream.kafka.local_broker import LocalKafka
    from botstream.kafka.topics import ensure_topics

    if args.events < 1:
        raise ConfigError("--events: must be at least 1")
    console = Console()
    settings = settings_from_args(args)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    broker = None
    try:
        if getattr(args, "env:BOTSTREAM_BOOTSTRAP") is None:
            console.print("[bold]1.[/] starting a local Apache Kafka broker ...")
            broker = LocalKafka()
            started = time.perf_counter()
            settings = settings.with_overrides(bootstrap_servers=broker.start())
            console.print(
                f"   broker at {settings.bootstrap_servers} ({time.perf_counter() - started:.1f} s)"
            )
        else:
            console.print(f"[bold]1.[/] using Kafka at {settings.bootstrap_servers}")
        console.print("[bold]2.[/] creating botstream's topics")
        for status in asyncio.run(ensure_topics(settings)):
            console.print(
                f"   {status.spec.name:<28} {status.partitions:>2} partitions  {status.spec.policy}"
            )
        console.print(
            f"[bold]3.[/] simulating {args.events:,} widget events and "
            "replaying them through the rules"
        )
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(args.keep) if args.keep else Path(scratch)
            _simulate_and_replay(folder, args.events, args.seed, settings, console)
    finally:
        if broker is not None:
            broker.stop()
            console.print("local broker stopped")
    return 0


def _simulate_and_replay(folder: Path, events: int, seed: int, settings, console) -> None:
    from botstream.commands.replay import replay_files, write_results
    from botstream.replay.engine import ReplayEngine
    from botstream.replay.summary import print_summary
    from botstream.sim.generator import SimConfig, TrafficSimulator

    folder.mkdir(parents=True, exist_ok=True)
    simulator = TrafficSimulator(SimConfig(seed=seed, count=events))
    log, plans = folder / "events.jsonl", folder / "plans.jsonl"
    plans.write_bytes(b"".join(r.value + b"\n" for r in simulator.plan_records()))
    with log.open("wb") as handle:
        for record in simulator.events():
            handle.write(record.value + b"\n")
    started = time.perf_counter()
    result = replay_files(log, plans, ReplayEngine(settings.domain))
    elapsed = time.perf_counter() - started
    counts = write_results(result, folder / "out")
    print_summary(result, counts, folder / "out", elapsed, console)
    console.print(
        f"\nnext: botstream replay {log.name} --plans {plans.name} --out out/   "
        "(same rules, your own log)"
    )
