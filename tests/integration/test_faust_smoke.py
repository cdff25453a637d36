"""Faust's own Kafka driver against the local broker, the way botstream's worker runs it.

One tiny app, in-process: exactly-once processing (a transactional producer
per partition, ``read_committed`` consumers), an agent with a table (its
changelog topic is created by Faust and recovered at start), forwarding to an
output topic. If this starts and processes one message, the broker suits Faust.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import NewTopic

from botstream.config import load_settings
from botstream.kafka.topics import admin_client, kafka_client_kwargs

pytestmark = pytest.mark.integration


async def test_faust_app_processes_one_message_exactly_once(kafka_bootstrap: str, tmp_path) -> None:
    suffix = uuid.uuid4().hex[:8]
    source_name, sink_name = f"faust-in-{suffix}", f"faust-out-{suffix}"
    settings = load_settings(env={"BOTSTREAM_BOOTSTRAP": kafka_bootstrap})
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(source_name, 1, 1), NewTopic(sink_name, 1, 1)])

    app = faust.App(
        f"botstream-smoke-{suffix}",
        broker=f"kafka://{kafka_bootstrap}",
        store="memory://",
        datadir=str(tmp_path),
        processing_guarantee="exactly_once",
        topic_partitions=1,
        topic_replication_factor=1,
        web_enabled=False,
        broker_commit_every=1,
    )
    source = app.topic(source_name, key_type=bytes, value_type=bytes, value_serializer="raw")
    sink = app.topic(sink_name, key_type=bytes, value_type=bytes, value_serializer="raw")
    counts = app.Table("counts", default=int, partitions=1)

    @app.agent(source)
    async def count(stream):
        async for key, value in stream.items():
            counts[key] += 1
            await sink.send(key=key, value=value.upper() + b" #%d" % counts[key])

    logging.getLogger("faust").setLevel(logging.WARNING)
    await app.start()
    try:
        await source.send(key=b"k", value=b"hello")
        consumer = AIOKafkaConsumer(
            sink_name,
            **kafka_client_kwargs(settings),
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            record = await asyncio.wait_for(consumer.getone(), 60)
        finally:
            await consumer.stop()
        assert (record.key, record.value) == (b"k", b"HELLO #1")
        # Faust declared the table's changelog topic itself (auto-create is off).
        async with admin_client(settings) as admin:
            topics = set(await admin.list_topics())
        assert f"botstream-smoke-{suffix}-counts-changelog" in topics
    finally:
        await app.stop()
