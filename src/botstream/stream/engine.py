"""Exactly-once stages: consume → process → produce in one Kafka transaction.

A :class:`Stage` consumes one input topic in a consumer group. For every input
partition it owns it keeps a :class:`PartitionTask` (the stage's state and
logic for that partition) and a transactional producer whose id is fixed by
the partition (``<app>-<stage>-<partition>``). Each batch of records becomes
one transaction holding everything the batch caused:

* the output records (outcomes, usage, alerts, dead letters, internal records),
* the state changes, written to the stage's compacted changelog topic, in the
  partition of the same number,
* the input offsets, committed with ``send_offsets_to_transaction``.

So a batch takes effect completely or not at all. A worker killed at any point
leaves either a committed transaction (its outputs, state and offsets) or an
aborted one (none of them). The next owner of the partition starts its producer
first, which fences any zombie with the same transactional id and aborts its
open transaction; then it rebuilds the state from the changelog with a
``read_committed`` consumer and resumes from the committed offset. Faust's own
exactly-once mode picks the transaction by the *destination* partition of each
output, which breaks this guarantee for re-keyed outputs (see
``experiments/faust_eos/``); this module is why botstream does not rely on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord

from botstream.config import Settings
from botstream.kafka.topics import kafka_client_kwargs

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Output:
    """One record to produce inside the current transaction."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None


class PartitionTask(Protocol):
    """A stage's state and logic for one input partition."""

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Load one changelog entry (latest wins; None deletes)."""

    def restored(self) -> None:
        """Called once the changelog has been read to its end."""

    def process(self, records: list[ConsumerRecord], now_ms: int, out: list[Output]) -> None:
        """Handle a batch of input records, appending what to produce to ``out``."""

    def tick(self, now_ms: int, out: list[Output]) -> None:
        """Called when the partition has been idle for a while (wall-clock duties)."""

    def changes(self) -> dict[bytes, bytes | None]:
        """State changes since the last call, as changelog entries; clears them."""


class StageMetrics(Protocol):
    """What a stage reports (see :mod:`botstream.stream.metrics`)."""

    def batch_committed(self, stage: str, records: int, seconds: float) -> None:
        """A transaction with ``records`` input records committed in ``seconds``."""


@dataclass
class _Owned:
    task: PartitionTask
    producer: AIOKafkaProducer
    last_active: float
    #: Offset of the next input record to process. Records before it are
    #: already reflected in the state: a batch fetched while the partition was
    #: being acquired, and fetched again after the seek to the committed offset,
    #: must not be processed twice.
    next_offset: int = 0


class Stage:
    """One exactly-once stage of the topology (see the module docstring)."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        input_topic: str,
        changelog_topic: str | None,
        make_task: Callable[[int], PartitionTask],
        *,
        max_batch: int = 5000,
        idle_tick_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        metrics: StageMetrics | None = None,
        on_assigned: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.input_topic = input_topic
        self.changelog_topic = changelog_topic
        self.make_task = make_task
        self.max_batch = max_batch
        self.idle_tick_s = idle_tick_s
        self.clock = clock
        self.metrics = metrics
        self.on_assigned = on_assigned
        self.group_id = f"{settings.app_id}-{name}"
        self.owned: dict[int, _Owned] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Consume and process until :meth:`stop`; raises on unexpected errors."""
        client = kafka_client_kwargs(self.settings)
        self._consumer = consumer = AIOKafkaConsumer(
            **client,
            group_id=self.group_id,
            client_id=f"{self.group_id}-consumer",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await consumer.start()
        try:
            consumer.subscribe([self.input_topic], listener=_Listener(self))
            while not self._stopping:
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                async with self._lock:
                    await self._process(batches)
                    await self._tick_idle()
        finally:
            async with self._lock:
                for partition in list(self.owned):
                    await self._release(partition)
            await consumer.stop()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch."""
        self._stopping = True

    # -- processing -------------------------------------------------------------------

    async def _process(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        commits = []
        for tp, records in batches.items():
            owned = self.owned.get(tp.partition)
            if owned is None:
                continue  # revoked meanwhile: the new owner reprocesses them
            if records and records[0].offset < owned.next_offset:
                records = [r for r in records if r.offset >= owned.next_offset]
            if not records:
                continue
            started = time.perf_counter()
            out: list[Output] = []
            owned.task.process(records, int(self.clock() * 1000), out)
            owned.last_active = time.monotonic()
            owned.next_offset = records[-1].offset + 1
            offsets = {tp: owned.next_offset}
            commits.append(self._commit(tp.partition, owned, out, offsets, len(records), started))
        if commits:
            await asyncio.gather(*commits)

    async def _tick_idle(self) -> None:
        now = time.monotonic()
        commits = []
        for partition, owned in self.owned.items():
            if now - owned.last_active < self.idle_tick_s:
                continue
            owned.last_active = now
            out: list[Output] = []
            owned.task.tick(int(self.clock() * 1000), out)
            if out or self.changelog_topic:
                commits.append(self._commit(partition, owned, out, None, 0, time.perf_counter()))
        if commits:
            await asyncio.gather(*commits)

    async def _commit(
        self,
        partition: int,
        owned: _Owned,
        out: list[Output],
        offsets: dict[TopicPartition, int] | None,
        records: int,
        started: float,
    ) -> None:
        changes = owned.task.changes()
        if not out and not changes and offsets is None:
            return
        producer = owned.producer
        try:
            async with producer.transaction():
                # Offsets first: an AddOffsetsToTxn that reaches the coordinator while
                # the broker verifies this transaction's produce requests (KIP-890)
                # makes the broker answer NOT_ENOUGH_REPLICAS, and the producer
                # retries after its 100 ms backoff.
                if offsets is not None:
                    await producer.send_offsets_to_transaction(offsets, self.group_id)
                send = producer.send
                for item in out:
                    await send(item.topic, item.value, key=item.key, partition=item.partition)
                if self.changelog_topic:
                    for key, value in changes.items():
                        await send(self.changelog_topic, value, key=key, partition=partition)
        except Exception:
            # The transaction is aborted, but the in-memory state already holds
            # its effects: rebuild the partition from what was committed.
            log.exception(
                "%s: transaction of partition %d failed; rebuilding it", self.name, partition
            )
            await self._release(partition)
            # Fenced because another worker owns it now: leave it to that worker.
            if TopicPartition(self.input_topic, partition) in self._consumer.assignment():
                await self._acquire(partition)
            return
        if self.metrics is not None:
            self.metrics.batch_committed(self.name, records, time.perf_counter() - started)

    # -- ownership --------------------------------------------------------------------

    async def _acquire(self, partition: int) -> None:
        """Fence zombies, rebuild the state, and resume from the committed offset."""
        producer = AIOKafkaProducer(
            **kafka_client_kwargs(self.settings),
            client_id=f"{self.group_id}-{partition}",
            transactional_id=f"{self.group_id}-{partition}",
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
        )
        await producer.start()  # init_transactions: fences the previous owner
        task = self.make_task(partition)
        if self.changelog_topic:
            await self._restore(partition, task)
        task.restored()
        consumer = self._consumer
        tp = TopicPartition(self.input_topic, partition)
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)
        self.owned[partition] = _Owned(task, producer, time.monotonic(), committed or 0)

    async def _restore(self, partition: int, task: PartitionTask) -> None:
        tp = TopicPartition(self.changelog_topic, partition)
        reader = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            client_id=f"{self.group_id}-restore-{partition}",
            isolation_level="read_committed",
            enable_auto_commit=False,
            # Not the default "latest": the reset it starts on assign can
            # complete after seek_to_beginning and move the position to the end.
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            await reader.seek_to_beginning(tp)
            position = await reader.position(tp)
            while position < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batch.get(tp, ()):
                    task.restore(record.key, record.value)
                position = await reader.position(tp)
        finally:
            await reader.stop()

    async def _release(self, partition: int) -> None:
        owned = self.owned.pop(partition, None)
        if owned is not None:
            await owned.producer.stop()

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        async with self._lock:
            for tp in revoked:
                if tp.topic == self.input_topic:
                    await self._release(tp.partition)

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        async with self._lock:
            partitions = {tp.partition for tp in assigned if tp.topic == self.input_topic}
            for partition in sorted(partitions - set(self.owned)):
                await self._acquire(partition)
            if self.on_assigned is not None:
                self.on_assigned(set(self.owned))


class _Listener(ConsumerRebalanceListener):
    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.stage._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self.stage._on_assigned(assigned)
