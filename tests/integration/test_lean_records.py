"""Unwrapped input records (``botstream.kafka.records``) on the real broker.

A consumer that passes ``value_deserializer=raw_values`` must read exactly
what a plain consumer reads (same offsets, keys and values, aborted
transactions skipped under ``read_committed``, ``max_records`` honoured), only
without a ``ConsumerRecord`` per record; a consumer that does not ask keeps
aiokafka's records.
"""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from botstream.kafka import records
from botstream.kafka.topics import kafka_client_kwargs

pytestmark = pytest.mark.integration


async def _write(settings, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Committed, aborted and committed transactions on partition 0; what was committed."""
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), transactional_id=f"{topic}-writer")
    await producer.start()
    committed: list[tuple[bytes | None, bytes]] = []
    try:
        for round_ in range(3):
            abort = round_ == 1
            async with producer.transaction() if not abort else _Aborting(producer):
                for index in range(500):
                    key = None if index % 7 == 0 else f"k{round_}-{index}".encode()
                    value = f"v{round_}-{index}".encode()
                    await producer.send(topic, value, key=key, partition=0)
                    if not abort:
                        committed.append((key, value))
    finally:
        await producer.stop()
    return committed


class _Aborting:
    """A transaction that is aborted at its end."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self.producer = producer

    async def __aenter__(self) -> None:
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc) -> None:
        await self.producer.abort_transaction()


async def _read_all(settings, topic: str, **extra) -> list:
    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings),
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **extra,
    )
    await consumer.start()
    tp = TopicPartition(topic, 0)
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        found = []
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=137)
            found.extend(batch.get(tp, []))
        return found
    finally:
        await consumer.stop()


async def test_unwrapped_records_are_the_committed_records_and_only_when_asked(
    stream_settings,
) -> None:
    topic = stream_settings.topics.events
    committed = await _write(stream_settings, topic)

    lean = await _read_all(stream_settings, topic, value_deserializer=records.raw_values)
    plain = await _read_all(stream_settings, topic)

    assert records.LEAN, "the installed aiokafka no longer lets records through unwrapped"
    assert not any(isinstance(record, ConsumerRecord) for record in lean)
    assert all(isinstance(record, ConsumerRecord) for record in plain)
    assert [(r.key, r.value) for r in lean] == committed
    assert [(r.offset, r.key, r.value) for r in lean] == [(r.offset, r.key, r.value) for r in plain]
    # The aborted transaction's 500 records sit between the two committed ones.
    assert lean[500].offset > lean[499].offset + 500
