"""``botstream worker``: run a stream-processing worker (Faust) on Kafka."""

from __future__ import annotations

import argparse
import logging

from botstream.commands.common import (
    add_config_flag,
    add_domain_flags,
    add_kafka_flags,
    add_worker_flags,
    settings_from_args,
)
from botstream.config import Settings
from botstream.errors import ConfigError

EXAMPLES = """\
examples:
  botstream worker                                     # Kafka on 127.0.0.1:9092, API on :6066
  botstream worker --bootstrap kafka:9092 --web-port 6067
  BOTSTREAM_BOOTSTRAP="$(botstream kafka status)" botstream worker --idle-timeout 10m

Several workers with the same --app-id share the work; each serves the read API:
  GET /usage/ACCOUNT?month=YYYY-MM   GET /stats/ACCOUNT?month=YYYY-MM
  GET /health                        GET /metrics
The topics must exist first: botstream topics create.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``worker`` sub-command."""
    parser = subparsers.add_parser(
        "worker",
        help="run a stream-processing worker",
        description="Run a botstream worker: exactly-once stages on Kafka and the read API.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        default="warn",
        choices=["crit", "error", "warn", "info", "debug"],
        help="log level (default warn)",
    )
    add_config_flag(parser)
    add_kafka_flags(parser)
    add_worker_flags(parser)
    add_domain_flags(parser)
    parser.set_defaults(func=run)


async def preflight(settings: Settings) -> None:
    """Fail with one line if Kafka cannot be reached or a topic is missing."""
    from botstream.kafka.topics import admin_client, topic_specs

    async with admin_client(settings) as admin:
        existing = set(await admin.list_topics())
    missing = [spec.name for spec in topic_specs(settings) if spec.name not in existing]
    if missing:
        raise ConfigError(
            f"topic {missing[0]} does not exist"
            + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; create them with: botstream topics create"
        )


def run(args: argparse.Namespace) -> int:
    """Check the cluster, then run the Faust worker until stopped."""
    import asyncio

    import faust

    from botstream.stream.app import create_app
    from botstream.stream.memory import pace_garbage_collector

    settings = settings_from_args(args)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    asyncio.run(preflight(settings))
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=args.log_level, quiet=True)
    pace_garbage_collector()
    worker.execute_from_commandline()
    return 0
