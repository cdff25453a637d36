"""Helpers for tests on the real broker: isolated settings, producing, reading back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from botstream.config import Settings
from botstream.kafka.topics import kafka_client_kwargs


@pytest.fixture
async def stream_settings(kafka_bootstrap: str) -> Settings:
    """Settings whose topics and consumer groups belong to this test alone."""
    from tests.integration.harness import isolated_settings

    return await isolated_settings(kafka_bootstrap)


@pytest.fixture
def pool(stream_settings, tmp_path):
    """The test's ``botstream worker`` processes, all killed in teardown, whatever happened."""
    from tests.integration.harness import WorkerPool

    pool = WorkerPool(stream_settings, tmp_path / "workers")
    yield pool
    pool.close()


async def produce(
    settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]
) -> None:
    """Produce ``(key, value)`` records in order (acks=all, idempotent)."""
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def read_committed(
    settings: Settings,
    topic: str,
    done: Callable[[list[dict]], bool],
    timeout_s: float = 60.0,
) -> list[dict]:
    """Every committed record of ``topic`` (values as JSON), polling until ``done(records)``."""
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records: list[dict] = []
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout_s
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            for items in batch.values():
                records.extend(orjson.loads(item.value) for item in items)
            if done(records):
                return records
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{topic}: gave up after {timeout_s} s with {len(records)} records"
                )
    finally:
        await consumer.stop()


async def settle(seconds: float) -> None:
    """Let background stages work for a while."""
    await asyncio.sleep(seconds)
