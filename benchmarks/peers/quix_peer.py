"""The Quix Streams peer: ``processing_guarantee="exactly-once"``, its RocksDB state.

A StreamingDataFrame folds each widget event into a stateful step keyed by
conversation id (RocksDB, changelog topic), sends one outcome-like record per
input, then groups by account (a repartition topic) and counts events per
account in a second stateful step whose results go to the counts topic. See
:mod:`job` for the job itself. Runs until SIGTERM.

    python benchmarks/peers/quix_peer.py --bootstrap HOST:PORT --group G \
        --input T --outcomes T --counts T --state-dir DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quixstreams import Application

sys.path.insert(0, str(Path(__file__).resolve().parent))

from job import error_record, fold, outcome, parse_event


def main() -> None:
    """Build the app from the flags and run it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--outcomes", required=True)
    parser.add_argument("--counts", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    args = parser.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        processing_guarantee="exactly-once",
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval_ms / 1000,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    events = app.topic(args.input, key_deserializer="bytes", value_deserializer="bytes")
    outcomes = app.topic(args.outcomes, key_serializer="bytes", value_serializer="json")
    counts_topic = app.topic(args.counts, key_serializer="str", value_serializer="json")

    def fold_conversation(value: bytes, key: bytes, timestamp: int, headers, state) -> dict:
        parsed = parse_event(value)
        if parsed is None:
            return error_record(-1)
        conversation = fold(state.get("conversation"), parsed)
        state.set("conversation", conversation)
        return outcome(parsed["conversation_id"], conversation)

    def count_account(value: dict, state) -> int:
        total = state.get("count", 0) + 1
        state.set("count", total)
        return total

    sdf = app.dataframe(events)
    sdf = sdf.apply(fold_conversation, stateful=True, metadata=True)
    sdf.to_topic(outcomes)
    valid = sdf.filter(lambda value: "account_id" in value)
    accounts = valid.group_by(lambda value: value["account_id"], name="by-account")
    accounts = accounts.apply(count_account, stateful=True)
    accounts.to_topic(counts_topic)
    app.run()


if __name__ == "__main__":
    main()
