"""``botstream demo``: botstream doing its whole job on this machine, in one command.

Starts a local Kafka broker (unless ``--bootstrap`` names one), creates the
topics, starts a worker, runs simulated widget traffic through it with a live
view, and ends with a summary and where to look next. Ctrl-C stops
everything cleanly.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace
from pathlib import Path

from botstream.commands.common import add_config_flag, add_kafka_flags, setting_values
from botstream.config import load_settings

EXAMPLES = """\
examples:
  botstream demo                          # a minute of traffic: two simulated days
  botstream demo --duration 20 --no-live  # shorter, with plain progress lines (for logs, CI)
  botstream demo --stay                   # keep broker, worker and dashboard up afterwards
  botstream demo --bootstrap kafka:9092   # an existing (development!) cluster instead

The worker's dashboard (a web page of usage, limits, forecasts and alerts)
is at the address the demo prints. Everything the run leaves is in --dir
(default .botstream-data/demo): the events and plan records it sent (replay
them with botstream replay), the worker's log and summary.json.
"""


def _positive(kind=float):
    """An argparse type: a number of ``kind`` above 0."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="run botstream on the embedded default (local Kafka, worker, simulated traffic)",
        description=__doc__.splitlines()[0],
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration",
        type=_positive(),
        default=60.0,
        metavar="SECONDS",
        help="wall time of simulated traffic (default 60)",
    )
    parser.add_argument(
        "--speed",
        type=_positive(),
        default=2880.0,
        metavar="X",
        help="simulated time per wall time (default 2880: two days a minute)",
    )
    parser.add_argument(
        "--accounts",
        type=_positive(int),
        default=1000,
        metavar="N",
        help="normal accounts, besides 3 hot ones that cross their limits (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed (default 7)")
    parser.add_argument(
        "--no-live", dest="live", action="store_false", help="progress lines, no live view"
    )
    parser.add_argument(
        "--stay",
        action="store_true",
        help="keep broker, worker and its dashboard running after the summary",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".botstream-data/demo"),
        metavar="DIR",
        help="where the run's files go (default .botstream-data/demo)",
    )
    add_config_flag(parser)
    add_kafka_flags(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start (or reach) Kafka, create the topics, run the demo, stop what was started."""
    import asyncio

    from rich.console import Console

    from botstream.demo.runner import DemoOptions, prepare_folder, run_demo
    from botstream.kafka.local_broker import LocalKafka
    from botstream.kafka.topics import ensure_topics

    values = setting_values(args)
    settings = load_settings(env=values)
    console = Console(highlight=False)
    if not console.is_terminal:
        # Logs and CI: wide enough for the summary's lines, never the 80 columns default.
        console = Console(highlight=False, width=120)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    local = "BOTSTREAM_BOOTSTRAP" not in values
    options = DemoOptions(
        duration_s=args.duration,
        speed=args.speed,
        accounts=args.accounts,
        seed=args.seed,
        live=args.live and console.is_terminal,
        stay=args.stay,
        folder=args.dir,
        worker_env=values,
    )
    prepare_folder(args.dir, fresh_state=local)
    broker = None
    try:
        if local:
            console.print("[bold]1.[/] starting a local Apache Kafka broker ...")
            broker = LocalKafka()
            started = time.perf_counter()
            settings = settings.with_overrides(bootstrap_servers=broker.start())
            console.print(
                f"   broker at {settings.bootstrap_servers} ({time.perf_counter() - started:.1f} s)"
            )
            options = replace(options, broker_pid=broker.java_pid)
        else:
            console.print(f"[bold]1.[/] using Kafka at {settings.bootstrap_servers}")
        console.print("[bold]2.[/] creating botstream's topics")
        for status in asyncio.run(ensure_topics(settings)):
            console.print(
                f"   {status.spec.name:<28} {status.partitions:>2} partitions  {status.spec.policy}"
            )
        console.print("[bold]3.[/] starting a worker and the simulated traffic")
        result = asyncio.run(run_demo(options, settings, console))
    finally:
        if broker is not None:
            broker.stop()
            console.print("local broker stopped")
    if result.interrupted:
        console.print("stopped early (Ctrl-C); the summary above covers what was processed")
        return 130
    return 0
