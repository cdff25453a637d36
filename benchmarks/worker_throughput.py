"""Live throughput: the worker's stages against a plain aiokafka exactly-once loop.

Run: ``.venv/bin/python benchmarks/worker_throughput.py [--events 100000]``

Starts a local broker, generates simulated traffic dated just before now, and
produces it twice, to two independent sets of topics. Then it times, on the
same broker:

* **baseline**: one aiokafka consumer (``read_committed``) that parses every
  record with orjson and writes one output record per input in a transaction
  per batch, committing offsets inside it. This is the plain consume → parse →
  transactional-produce loop;
* **botstream**: the three exactly-once stages of the worker, in-process.

Each is timed from start until its consumer group has committed every input
offset. The figures are events/s and the ratio of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from dataclasses import replace

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from botstream.config import load_settings
from botstream.kafka.local_broker import LocalKafka
from botstream.kafka.topics import ensure_topics, kafka_client_kwargs
from botstream.sim.generator import SimConfig, TrafficSimulator, expected_span_ms
from botstream.stream.topology import build_stages


def isolated_settings(bootstrap: str, prefix: str):
    """Settings whose topics and groups carry ``prefix``."""
    return replace(
        load_settings(env={}).with_prefix(prefix), bootstrap_servers=bootstrap, partitions=4
    )


def traffic(events: int) -> tuple[list, list]:
    """Plan records and events, the events' time ending a few minutes before now."""
    probe = SimConfig(seed=3, count=events)
    start = int(time.time() * 1000) - expected_span_ms(probe) - 10 * 60_000
    simulator = TrafficSimulator(replace(probe, start_ms=start))
    plans = [(r.key, r.value) for r in simulator.plan_records()]
    return plans, [(r.key, r.value) for r in simulator.events()]


async def produce(settings, topic: str, records: list) -> None:
    """Produce ``records`` (key, value) in order."""
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        enable_idempotence=True,
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def lag(settings, group: str, topic: str) -> int:
    """Input records not yet committed by ``group``."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings))
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)
    finally:
        await consumer.stop()
        await admin.close()


async def wait_drained(settings, group: str, topic: str, started: float) -> float:
    """Seconds from ``started`` until ``group`` committed all of ``topic``."""
    while await lag(settings, group, topic) > 0:
        await asyncio.sleep(0.2)
    return time.perf_counter() - started


async def baseline(settings, count: int) -> float:
    """The plain loop: consume, parse, produce in a transaction per batch."""
    topic, out = settings.topics.events, settings.topics.outcomes
    group = settings.app_id + "-baseline"
    consumer = AIOKafkaConsumer(
        topic,
        **kafka_client_kwargs(settings),
        group_id=group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        transactional_id=f"{group}-{uuid.uuid4().hex[:6]}",
        linger_ms=5,
        max_batch_size=1024 * 1024,
    )
    await consumer.start()
    await producer.start()
    started = time.perf_counter()
    seen = 0
    try:
        while seen < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=5000)
            if not batches:
                continue
            async with producer.transaction():
                # Offsets first, as the stages do (tests/integration/test_stage_transactions.py).
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await producer.send_offsets_to_transaction(offsets, group)
                for records in batches.values():
                    for record in records:
                        try:
                            value = orjson.loads(record.value)
                        except orjson.JSONDecodeError:
                            value = None
                        await producer.send(out, orjson.dumps(value), key=record.key)
                    seen += len(records)
        return time.perf_counter() - started
    finally:
        await producer.stop()
        await consumer.stop()


async def botstream_stages(settings, count: int) -> float:
    """The worker's three stages, until the conversation stage committed everything."""
    stages = build_stages(settings)
    started = time.perf_counter()
    tasks = [asyncio.create_task(stage.run()) for stage in stages.values()]
    try:
        return await wait_drained(
            settings, f"{settings.app_id}-conversations", settings.topics.events, started
        )
    finally:
        for stage in stages.values():
            stage.stop()
        await asyncio.gather(*tasks, return_exceptions=True)


async def main_async(events: int) -> None:
    """Generate, produce and time both pipelines."""
    with LocalKafka() as broker:
        plans, records = traffic(events)
        print(f"{len(records):,} input records, {len(plans)} plan records")
        results = {}
        for name, run in (("baseline", baseline), ("botstream", botstream_stages)):
            settings = isolated_settings(broker.bootstrap, f"bench-{name}-")
            await ensure_topics(settings)
            await produce(settings, settings.topics.plans, plans)
            await produce(settings, settings.topics.events, records)
            seconds = await run(settings, len(records))
            results[name] = len(records) / seconds
            print(f"  {name:10s} {seconds:6.2f} s  {results[name]:10,.0f} events/s")
        print(f"botstream / baseline = {results['botstream'] / results['baseline']:.2f}")


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main_async(args.events))


if __name__ == "__main__":
    main()
