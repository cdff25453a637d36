"""``botstream topics create``: create botstream's topics on a Kafka cluster."""

from __future__ import annotations

import argparse
import logging

from botstream.commands.common import add_config_flag, add_kafka_flags, settings_from_args

EXAMPLES = """\
examples:
  botstream topics create                              # on 127.0.0.1:9092
  botstream topics create --bootstrap kafka:9092 --partitions 8
  botstream topics create --bootstrap "$(botstream kafka status)"

Creates every missing topic (inputs, outputs and the internal ones) with the
partitions and cleanup policy botstream expects; existing topics are left as
they are. A topic with a different number of partitions is an error, since
botstream's stages need co-partitioned topics.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``topics`` sub-command with ``create``."""
    parser = subparsers.add_parser(
        "topics",
        help="create botstream's Kafka topics",
        description="Administer botstream's Kafka topics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create the missing topics and list them all",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_flag(create)
    add_kafka_flags(create)
    create.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    """Create the missing topics; print one line per topic."""
    import asyncio

    from botstream.kafka.topics import ensure_topics

    settings = settings_from_args(args)
    # aiokafka logs each failed connection attempt; the one-line error says it all.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    statuses = asyncio.run(ensure_topics(settings))
    width = max(len(st.spec.name) for st in statuses)
    for st in statuses:
        state = "created" if st.created else "exists "
        print(f"{state}  {st.spec.name:<{width}}  {st.partitions:>3} partitions  {st.spec.policy}")
    return 0
