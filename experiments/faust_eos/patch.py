"""Pick a record's transaction by the partition of the event being processed.

Faust 0.15.3 (faust/transport/consumer.py, TransactionManager.send) sends
every record in the transaction named after the record's *destination*
partition, while TransactionManager.commit puts the offsets of source
partition p into the transaction named after p. This subclass names the
transaction after the *source* partition of the current event instead, so a
record and the offset of the event that produced it commit together. Outside
a stream (no current event: e.g. the producer buffer that sends table
changelog records, which Faust already sends to the source partition) it
keeps Faust's behaviour.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as aiokafka_driver


class SourcePartitionTransactionManager(TransactionManager):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Any:
        event = faust.current_event()
        if event is None:
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message.tp
        group = self.app.assignor.group_for_topic(source.topic)
        return await self.producer.send(
            topic,
            key,
            value,
            self.consumer.key_partition(topic, key, partition),
            timestamp,
            headers,
            transactional_id=f"{self.app.conf.id}-{group}-{source.partition}",
        )


def install() -> None:
    aiokafka_driver.Transport.TransactionManager = SourcePartitionTransactionManager
