"""The Faust peer: a Faust agent and Faust tables with ``processing_guarantee="exactly_once"``.

One agent reads the widget events, folds each into a Faust table keyed by
conversation id (memory store, changelog topic), sends one outcome-like
record per input and forwards the account to a topic keyed by account; a
second agent counts events per account in another table, whose changelog is
the counts output. See :mod:`job` for the job itself. Runs until SIGTERM.

    python benchmarks/peers/faust_peer.py --bootstrap HOST:PORT --group G \
        --input T --outcomes T --data-dir DIR worker -l warn
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import faust
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from job import error_record, fold, outcome, parse_event


def build_app(args: argparse.Namespace) -> faust.App:
    """The Faust app of the peer."""
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        processing_guarantee="exactly_once",
        store="memory://",
        web_enabled=False,
        datadir=args.data_dir,
        topic_partitions=args.partitions,
        topic_replication_factor=1,
        broker_commit_interval=args.commit_interval_ms / 1000,
        broker_session_timeout=10.0,
        autodiscover=False,
    )
    events = app.topic(
        args.input, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    outcomes = app.topic(
        args.outcomes,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    by_account = app.topic(
        f"{args.group}-by-account",
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=args.partitions,
    )
    conversations = app.Table("conversations", default=None, partitions=args.partitions)
    counts = app.Table("account-counts", default=int, partitions=args.partitions)
    dumps = orjson.dumps

    @app.agent(events)
    async def fold_conversations(stream: faust.Stream) -> None:
        async for event in stream.events():
            parsed = parse_event(event.value)
            if parsed is None:
                record = error_record(event.message.offset)
                await outcomes.send(key=event.key, value=dumps(record))
                continue
            conversation_id = parsed["conversation_id"]
            state = fold(conversations.get(conversation_id), parsed)
            conversations[conversation_id] = state
            await outcomes.send(key=event.key, value=dumps(outcome(conversation_id, state)))
            await by_account.send(key=parsed["account_id"].encode(), value=b"")

    @app.agent(by_account)
    async def count_accounts(stream: faust.Stream) -> None:
        async for event in stream.events():
            counts[event.key.decode()] += 1

    return app


def main() -> None:
    """Parse the peer's own flags, then hand the rest to Faust's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--outcomes", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    args, rest = parser.parse_known_args()
    app = build_app(args)
    sys.argv = [sys.argv[0], *rest]
    app.main()


if __name__ == "__main__":
    main()
