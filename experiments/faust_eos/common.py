"""Helpers shared by the experiment scripts: topics, input, reading a topic to its end."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "src"))  # botstream, without installing it

IN_TOPIC = "eos-in"
OUT_TOPIC = "eos-out"
PARTITIONS = 4
ACCOUNTS = 7


def account(seq: int) -> str:
    return f"acct-{seq % ACCOUNTS}"


async def create_topics(bootstrap: str, names: list[str], partitions: int = PARTITIONS) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names]
        )
        for _ in range(100):  # wait until the metadata shows every partition
            described = await admin.describe_topics(names)
            if all(len(t["partitions"]) == partitions for t in described):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topics {names} did not appear")
    finally:
        await admin.close()


async def produce_input(bootstrap: str, n: int) -> None:
    """N records to eos-in, key ``k-{i}``, value ``{"seq": i}``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(IN_TOPIC, json.dumps({"seq": i}).encode(), key=f"k-{i}".encode())
            for i in range(n)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def setup(bootstrap: str, n: int) -> None:
    await create_topics(bootstrap, [IN_TOPIC, OUT_TOPIC])
    await produce_input(bootstrap, n)


@dataclass
class Record:
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


async def read_topic(
    bootstrap: str, topic: str, isolation_level: str = "read_committed", timeout_s: float = 60.0
) -> list[Record]:
    """Every record of ``topic`` from the beginning up to its current end (its LSO)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation_level,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer._client.cluster.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # end_offsets answers with the high watermark; with read_committed the
        # consumer stops at the LSO, so also stop when the position stops moving.
        ends = await consumer.end_offsets(tps)
        records: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle = 0
        while loop.time() < deadline:
            batch = await consumer.getmany(*tps, timeout_ms=500)
            for msgs in batch.values():
                records.extend(
                    Record(m.partition, m.offset, m.timestamp, m.key, m.value) for m in msgs
                )
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            idle = 0 if batch else idle + 1
            if idle >= 6:  # 3 s without records: stuck behind an open transaction
                break
        return records
    finally:
        await consumer.stop()


def seq_counts(records: list[Record]) -> Counter[int]:
    return Counter(json.loads(r.value)["seq"] for r in records if r.value is not None)


def missing_and_duplicated(counts: Counter[int], n: int) -> tuple[int, int]:
    missing = sum(1 for i in range(n) if counts[i] == 0)
    duplicated = sum(c - 1 for c in counts.values() if c > 1)
    return missing, duplicated


def expected_counts(n: int) -> Counter[str]:
    return Counter(account(i) for i in range(n))


def table_from_changelog(records: list[Record]) -> dict[str, int]:
    """The counter table as the last value per key, over all changelog partitions.

    The table is keyed by account while the stream is keyed by ``k-{i}``, so one
    account's counter is written to every changelog partition (a table write
    goes to the partition of the event being processed): "last" is the latest
    record by timestamp among all partitions (ties: the larger count).
    """
    latest: dict[str, tuple[int, int]] = {}
    for r in records:
        if r.key is None or r.value is None:
            continue
        key = json.loads(r.key)
        stamp = (r.timestamp, json.loads(r.value))
        if key not in latest or stamp > latest[key]:
            latest[key] = stamp
    return {k: v[1] for k, v in latest.items()}
