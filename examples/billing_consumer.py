#!/usr/bin/env python3
"""A reference billing consumer of botstream's outcomes topic.

It counts the billable chatbot conversations of every account and billing
month, the way a billing system downstream of botstream should:

* read the outcomes topic ``read_committed``, from the beginning of every
  partition;
* keep the **last** record of each conversation, in log order;
* count the conversations whose last record has ``billable`` true, by
  ``account_id`` and ``billing_month``.

By default it stops at the end offsets it saw when it started and prints a
table (or, with ``--json``, one JSON object). With ``--follow`` it keeps
reading: it prints the counts once it has caught up, then again every
``--interval`` seconds when they changed, until Ctrl-C (exit status 0).
A Kafka that cannot be reached, a missing topic or a record that is not an
outcome ends it with one line on stderr and exit status 2.

Self-contained on purpose: it needs only aiokafka and orjson (no botstream
import), so it can be copied into another code base as it is.

    python billing_consumer.py --bootstrap kafka:9092
    python billing_consumer.py --topic botstream-outcomes --json | jq .
    python billing_consumer.py --follow --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections import Counter

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

#: botstream's default name of the outcomes topic (SPEC section 2).
DEFAULT_TOPIC = "botstream-outcomes"


class Billing:
    """The last outcome of every conversation, and the billable counts they give."""

    def __init__(self) -> None:
        # conversation_id -> (account_id, billing_month) of its last record when
        # that record is billable, else None. Only what billing needs is kept.
        self.latest: dict[str, tuple[str, str] | None] = {}
        self.records = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one record of the outcomes topic in, in log order.

        botstream publishes a new revision of a conversation's outcome each
        time the conversation ends, and again when a late event changes it (an
        ``unengaged`` conversation can become billable when a click arrives
        late). The topic is keyed by conversation id, so all revisions of a
        conversation are in one partition, in the order they were made, and
        the last one is the truth. Counting every record would count a
        conversation once per revision; keeping the first would miss the
        late changes. The topic is also compacted: after compaction only the
        last record of each key is left, and keeping the last record gives the
        same result whether compaction ran or not.
        """
        self.records += 1
        if value is None:
            # A tombstone (null value) deletes its key from a compacted topic.
            # botstream does not write them (SPEC section 4 has none), but one
            # written by an operator, for example to erase a conversation,
            # must count as a deletion: compaction would remove the key anyway.
            if key is not None:
                self.latest.pop(key.decode(), None)
            return
        outcome = orjson.loads(value)
        billed = None
        if outcome.get("billable"):
            billed = (outcome["account_id"], outcome["billing_month"])
        # The key is the conversation id too (SPEC section 2); the value says it explicitly.
        self.latest[outcome["conversation_id"]] = billed

    def counts(self) -> dict[tuple[str, str], int]:
        """Billable conversations by (account_id, billing_month), sorted."""
        counted = Counter(billed for billed in self.latest.values() if billed is not None)
        return dict(sorted(counted.items()))


def fail(message: str) -> SystemExit:
    """Exit status 2 with a one-line message on stderr."""
    print(f"billing_consumer: {message}", file=sys.stderr)
    return SystemExit(2)


async def topic_partitions(args: argparse.Namespace) -> list[int]:
    """The partition ids of the topic, or a one-line exit when it or Kafka is missing.

    It asks for the list of every topic first: a metadata request naming a
    missing topic would create it on a cluster that creates topics on demand.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=args.bootstrap)
    try:
        await asyncio.wait_for(admin.start(), 15)
        if args.topic not in await asyncio.wait_for(admin.list_topics(), 15):
            raise fail(f"topic {args.topic} does not exist at {args.bootstrap}")
        described = await asyncio.wait_for(admin.describe_topics([args.topic]), 15)
    except (TimeoutError, KafkaError, OSError) as exc:
        raise fail(f"cannot reach Kafka at {args.bootstrap} ({type(exc).__name__})") from None
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return sorted(
        p["partition"] for t in described if t["topic"] == args.topic for p in t["partitions"]
    )


async def consume(args: argparse.Namespace) -> int:
    """Read the topic, print the counts (once, or as they change with ``--follow``)."""
    partitions = [TopicPartition(args.topic, p) for p in await topic_partitions(args)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        # read_committed: botstream writes its outputs in Kafka transactions,
        # one per batch of input, together with its state and input offsets.
        # When a worker dies mid-batch, or is fenced by the worker that takes
        # its partitions over, the open transaction is aborted and the new
        # owner processes the batch again. With read_uncommitted (aiokafka's
        # and Kafka's default) a consumer would also see the records of the
        # aborted attempt: revisions that were never final, and conversations
        # counted from records that, officially, were never written.
        isolation_level="read_committed",
        # No consumer group: this reader has the whole topic to itself, starts
        # from the beginning every time and commits nothing.
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        await asyncio.wait_for(consumer.start(), 15)
    except (TimeoutError, KafkaError, OSError) as exc:
        await consumer.stop()
        raise fail(f"cannot reach Kafka at {args.bootstrap} ({type(exc).__name__})") from None
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Without --follow: stop at the end offsets seen now. With read_committed
        # they are the last stable offsets, so the snapshot ends before any
        # transaction still open.
        end = None if args.follow else await consumer.end_offsets(partitions)
        billing = Billing()
        printed: dict | None = None
        caught_up = False
        next_print = 0.0
        while True:
            wanted = partitions
            if end is not None:
                wanted = [tp for tp in partitions if await consumer.position(tp) < end[tp]]
                if not wanted:
                    break
            batch = await consumer.getmany(*wanted, timeout_ms=500, max_records=50_000)
            for tp, records in batch.items():
                for record in records:
                    if end is not None and record.offset >= end[tp]:
                        continue  # committed after the start: not in this snapshot
                    try:
                        billing.apply(record.key, record.value)
                    except (ValueError, KeyError, TypeError) as exc:
                        raise fail(
                            f"{args.topic} partition {tp.partition} offset {record.offset} "
                            f"is not an outcome record ({type(exc).__name__}: {exc})"
                        ) from None
            # --follow: a first report once caught up, then every --interval
            # seconds, when the counts changed.
            caught_up = caught_up or not batch
            if end is None and caught_up and time.monotonic() >= next_print:
                next_print = time.monotonic() + args.interval
                counts = billing.counts()
                if counts != printed:
                    report(billing, counts, args)
                    printed = counts
        report(billing, billing.counts(), args)
        return 0
    finally:
        await consumer.stop()


def report(billing: Billing, counts: dict[tuple[str, str], int], args: argparse.Namespace) -> None:
    """Print the counts: a table, or one JSON object on one line with ``--json``."""
    if args.json:
        document = {
            "topic": args.topic,
            "records": billing.records,
            "conversations": len(billing.latest),
            "billable": [
                {"account_id": account, "billing_month": month, "conversations": n}
                for (account, month), n in counts.items()
            ],
        }
        sys.stdout.buffer.write(orjson.dumps(document) + b"\n")
        sys.stdout.flush()
        return
    width = max([len("account")] + [len(account) for account, _ in counts])
    lines = [f"{'account':<{width}}  month    billable", f"{'-' * width}  -------  --------"]
    lines += [f"{account:<{width}}  {month}  {n:>8,}" for (account, month), n in counts.items()]
    lines.append(
        f"{len(billing.latest):,} conversations in {billing.records:,} records; "
        f"{sum(counts.values()):,} billable"
    )
    print("\n".join(lines), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Count billable chatbot conversations per account and month "
        "from botstream's outcomes topic."
    )
    parser.add_argument(
        "--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers (127.0.0.1:9092)"
    )
    parser.add_argument(
        "--topic", default=DEFAULT_TOPIC, help=f"the outcomes topic ({DEFAULT_TOPIC})"
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep reading; print the counts every --interval seconds when they changed",
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between prints with --follow (5)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the consumer; Ctrl-C ends it quietly."""
    args = parse_args(argv)
    # aiokafka logs every failed connection attempt; the error message is enough.
    logging.basicConfig(level=logging.CRITICAL)
    try:
        return asyncio.run(consume(args))
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # Our reader went away (``| head``): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
