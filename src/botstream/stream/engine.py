"""Exactly-once stages: consume → process → produce in one Kafka transaction.

A :class:`Stage` consumes one input topic in a consumer group. For every input
partition it owns it keeps a :class:`PartitionTask` (the stage's state and
logic for that partition) and two transactional producers whose ids are fixed
by the partition (``<app>-<stage>-<partition>`` and ``...-<partition>-b``).
Each batch of records becomes one transaction holding everything the batch
caused:

* the input offsets, committed with ``send_offsets_to_transaction``, with a
  token of this commit as their metadata;
* the output records (outcomes, usage, alerts, dead letters, internal records);
* the state changes, written to the stage's compacted changelog topic, in the
  partition of the same number.

So a batch takes effect completely or not at all. A worker killed at any point
leaves either a committed transaction (its outputs, state and offsets) or an
aborted one (none of them).

**Two producers per partition, in turn.** A partition's transactions still
run one after the other, but alternate between its two producers. After a
commit the broker writes the transaction's markers in the background, and
until they are written its coordinator refuses the *same* transactional id's
next transaction (``CONCURRENT_TRANSACTIONS``, retried every 10 ms): on a busy
broker that wait was up to half of every transaction. The other producer's
transaction need not wait. Order is kept: each transaction starts after the
previous one's commit was decided, so its records, changelog entries and
offset commit come after the previous one's in every log, and the group
coordinator keeps the offset commit latest in its log whichever transaction's
markers land first. Faust's own exactly-once mode picks the
transaction by the *destination* partition of each output, which breaks this
guarantee for re-keyed outputs (see ``experiments/faust_eos/``); this module is
why botstream does not rely on it.

**Ownership.** The group's rebalance callbacks only take note: a revoked
partition's task is *parked* (its producer stopped), an assigned one is
paused and handed to a background acquisition, so that a long restore never
blocks the group's heartbeats or polls. Acquiring a partition starts its
producer first, which fences any zombie with the same transactional id and
aborts its open transaction. If the partition was parked here and the
committed offsets still carry the token of this stage's own last commit,
nobody else committed anything in between and the parked state is kept;
otherwise the state is rebuilt from the changelog with a ``read_committed``
consumer. Then the partition resumes from the committed offset. An
acquisition that fails is retried a few times, then fails the stage (and the
worker) loudly rather than leave a partition assigned but never processed.

A transaction refused because another producer fenced this one means another
worker owns the partition now: the partition is dropped and only acquired
again on a fresh assignment from the group. So is everything after a pause
longer than the session timeout (a SIGSTOP, a frozen machine): the group has
moved on, and a zombie must neither write nor fence the new owner.

**Event time.** A partition whose position has reached its last stable offset
and that has had nothing new for ``idle_tick_s`` gets a tick (its event time
follows the wall clock, SPEC section 4). A partition with unread records never
does: its backlog, not the wall clock, moves its event time.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import InvalidProducerEpoch, ProducerFenced

from botstream.config import Settings
from botstream.kafka.partitioner import default_partition
from botstream.kafka.records import InputRecord, raw_values
from botstream.kafka.topics import kafka_client_kwargs

log = logging.getLogger(__name__)

#: Errors that mean another producer with the same transactional id took over.
FENCED_ERRORS = (ProducerFenced, InvalidProducerEpoch)


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

    def process(self, records: list[InputRecord], now_ms: int, out: list[Output]) -> None:
        """Handle a batch of input records, appending what to produce to ``out``."""

    def tick(self, now_ms: int, out: list[Output]) -> None:
        """Called when the partition is caught up and idle (wall-clock duties)."""

    def changes(self) -> dict[bytes, bytes | None]:
        """State changes since the last call, as changelog entries; clears them."""

    def committed(self, token: str) -> None:
        """The state is now what the transaction with commit token ``token`` committed.

        Called after each transaction, and after a restore (with the token of the
        last commit before it).
        """

    async def resume_local(self, token: str) -> bool:
        """Load the state from the worker's own files if they hold what ``token`` committed.

        True means the changelog need not be read; False, that it must be (the
        task then starts from an empty state).
        """

    def close(self) -> None:
        """The task is discarded: release what it holds (files, handles)."""


class StageMetrics(Protocol):
    """What a stage reports (see :mod:`botstream.stream.metrics`)."""

    def batch_committed(self, stage: str, records: int, seconds: float) -> None:
        """A transaction with ``records`` input records committed in ``seconds``."""

    def partition_acquired(self, stage: str, how: str) -> None:
        """A partition was acquired (a producer initialised); its state was ``how``:
        ``kept`` from before a rebalance, ``local`` from the worker's files, or
        ``restored`` from the changelog."""

    def partition_fenced(self, stage: str) -> None:
        """A transaction was refused because another producer took the partition over."""


class StageClients(Protocol):
    """How a stage makes its Kafka clients (aiokafka's, or fakes in unit tests)."""

    def consumer(self, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
        """The stage's group consumer (``read_committed``, no auto-commit)."""

    def producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A transactional producer (not started)."""

    def changelog_reader(self, client_id: str) -> AIOKafkaConsumer:
        """A ``read_committed`` consumer without a group, for restores."""

    async def committed(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition
    ) -> tuple[int | None, str]:
        """The group's committed offset of ``tp`` (None if none) and its metadata."""


class KafkaClients:
    """:class:`StageClients` with aiokafka, connected as ``settings`` say."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def consumer(self, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
        """The stage's group consumer (``read_committed``, no auto-commit)."""
        config = {
            "group_id": group_id,
            "client_id": f"{group_id}-consumer",
            "isolation_level": "read_committed",
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "partition_assignment_strategy": (RangePartitionAssignor,),
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
            # Its metadata holds its input topic only: the first end_offsets of a
            # changelog partition fails and is retried after this (default 100 ms).
            "retry_backoff_ms": 20,
            # The broker answers a connection's requests in order: a fetch waiting
            # for data (default up to 500 ms) held up the end_offsets and
            # committed-offset requests of partitions being acquired behind it.
            "fetch_max_wait_ms": 100,
            # The records as aiokafka decoded them, without a ConsumerRecord each.
            "value_deserializer": raw_values,
            **overrides,
        }
        return AIOKafkaConsumer(**kafka_client_kwargs(self.settings), **config)

    def producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A transactional producer (not started)."""
        return AIOKafkaProducer(
            **kafka_client_kwargs(self.settings),
            client_id=transactional_id,
            transactional_id=transactional_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_batch_size=1024 * 1024,
            # A transaction's first request (AddOffsetsToTxn) often meets the previous
            # one's commit markers still being written: the coordinator answers
            # CONCURRENT_TRANSACTIONS, and aiokafka retries after this backoff
            # (default 100 ms, which was most of a batch's latency).
            retry_backoff_ms=10,
        )

    def changelog_reader(self, client_id: str) -> AIOKafkaConsumer:
        """A ``read_committed`` consumer without a group, for restores."""
        return AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            client_id=client_id,
            isolation_level="read_committed",
            enable_auto_commit=False,
            value_deserializer=raw_values,
            # Not the default "latest": the reset it starts on assign can
            # complete after seek_to_beginning and move the position to the end.
            auto_offset_reset="earliest",
        )

    async def committed(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition
    ) -> tuple[int | None, str]:
        """The group's committed offset of ``tp`` (None if none) and its metadata."""
        # AIOKafkaConsumer.committed() drops the metadata, which holds the token.
        found = await consumer._coordinator.fetch_committed_offsets([tp])
        entry = found.get(tp)
        if entry is None or entry.offset < 0:
            return None, ""
        return entry.offset, entry.metadata or ""


@dataclass(slots=True)
class _Owned:
    """A partition this stage processes (or parked, between a revoke and an assignment)."""

    task: PartitionTask
    #: The partition's transactional producers (empty while parked), used in turn.
    producers: list[AIOKafkaProducer]
    #: Offset of the next input record to process. Records before it are
    #: already reflected in the state: a batch fetched before the seek to the
    #: committed offset must not be processed twice.
    next_offset: int
    #: The metadata of the offsets last committed for this partition (this
    #: stage's token once it has committed): if it is still there when the
    #: partition comes back, nobody else committed in between.
    token: str
    last_active: float
    #: Record lists handed over by the consumer, not processed yet.
    pending: list[list[InputRecord]] = field(default_factory=list)
    pending_records: int = 0
    #: Offset after the last record put in ``pending`` (what is queued is not queued twice).
    queued_to: int = 0
    tick_due: bool = False
    #: Processing or committing right now.
    busy: bool = False
    #: Paused in the consumer because too much is pending.
    paused: bool = False
    #: Its runner must stop; ``failed``: its last transaction failed (state dropped).
    stopping: bool = False
    failed: bool = False
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    runner: asyncio.Task | None = None
    #: Index in ``producers`` of the one the next transaction uses.
    turn: int = 0


@dataclass(slots=True)
class RestoreProgress:
    """How far the restore of one partition's changelog has come."""

    restored: int = 0
    total: int = 0


class StageFailed(RuntimeError):
    """A stage gave up (a partition could not be acquired): the worker must stop."""


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
        clients: StageClients | None = None,
        max_batch: int = 5000,
        idle_tick_s: float = 1.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: StageMetrics | None = None,
        on_ownership: Callable[[int, int, bool], None] | None = None,
        session_timeout_ms: int = 10_000,
        max_poll_interval_ms: int = 300_000,
        acquire_attempts: int = 5,
        acquire_backoff_s: float = 1.0,
        producers_per_partition: int = 2,
    ) -> None:
        self.name = name
        self.settings = settings
        self.input_topic = input_topic
        self.changelog_topic = changelog_topic
        self.make_task = make_task
        self.clients = clients or KafkaClients(settings)
        self.max_batch = max_batch
        self.idle_tick_s = idle_tick_s
        self.clock = clock
        self.monotonic = monotonic
        self.metrics = metrics
        #: ``(partition, generation, owned)``: told when a partition starts or stops
        #: being processed here.
        self.on_ownership = on_ownership
        self.session_timeout_s = session_timeout_ms / 1000
        self.max_poll_interval_ms = max_poll_interval_ms
        self.acquire_attempts = acquire_attempts
        self.acquire_backoff_s = acquire_backoff_s
        if not 1 <= producers_per_partition <= 26:
            raise ValueError("producers_per_partition must be between 1 and 26")
        self.producers_per_partition = producers_per_partition
        self.group_id = f"{settings.app_id}-{name}"
        #: Partitions processed now.
        self.owned: dict[int, _Owned] = {}
        #: Restores in progress, by partition (for /health).
        self.restoring: dict[int, RestoreProgress] = {}
        #: The consumer group's generation of the latest assignment.
        self.generation = -1
        self._parked: dict[int, _Owned] = {}
        self._acquiring: dict[int, asyncio.Task] = {}
        self._lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self._last_alive = monotonic()
        #: Set after a pause longer than the session timeout, until the next assignment.
        self._stale = False
        # Commit tokens: unique to this stage object, one per transaction.
        self._token_prefix = uuid.uuid4().hex[:12]
        self._token_counter = itertools.count(1)
        self._partition_counts: dict[str, int] = {}
        self._key_partitions: dict[tuple[str, bytes], int] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Consume and process until :meth:`stop`; raises :class:`StageFailed` on failure."""
        self._consumer = consumer = self.clients.consumer(
            self.group_id,
            session_timeout_ms=int(self.session_timeout_s * 1000),
            max_poll_interval_ms=self.max_poll_interval_ms,
        )
        await consumer.start()
        self._last_alive = self.monotonic()
        watchdog = asyncio.create_task(self._watch_for_pauses(), name=f"{self.group_id}-watchdog")
        try:
            consumer.subscribe([self.input_topic], listener=_Listener(self))
            while not self._stopping:
                if self._failure is not None:
                    raise StageFailed(f"{self.name}: {self._failure}") from self._failure
                batches = await consumer.getmany(timeout_ms=200, max_records=self.max_batch)
                if self._paused_too_long():
                    async with self._lock:
                        await self._drop_everything()
                    continue
                self._dispatch(batches)
                await self._schedule_ticks()
        finally:
            watchdog.cancel()
            for task in list(self._acquiring.values()):
                task.cancel()
            await asyncio.gather(*self._acquiring.values(), return_exceptions=True)
            async with self._lock:
                for partition in list(self.owned):
                    await self._release(partition, park=False)
                for owned in self._parked.values():
                    await _stop_producer(owned)
                    owned.task.close()
                self._parked.clear()
            await consumer.stop()

    def stop(self) -> None:
        """Ask :meth:`run` to return after the current batch."""
        self._stopping = True

    @property
    def serves_reads(self) -> bool:
        """Whether this stage's state may be read (not a zombie after a long pause)."""
        return not self._stale and self.monotonic() - self._last_alive < self.session_timeout_s

    async def _watch_for_pauses(self) -> None:
        """Notice when the whole process stood still (SIGSTOP, a frozen host).

        A pause is a gap between two wake-ups of this task, so a rebalance that
        keeps ``getmany`` waiting is not one.
        """
        while True:
            await asyncio.sleep(0.25)
            self._paused_too_long()
            self._last_alive = self.monotonic()

    def _paused_too_long(self) -> bool:
        """Whether the process stood still past the session timeout (then it stays stale).

        The group has then given this stage's partitions to others; processing
        on would at best be fenced, at worst fence the new owner or serve stale
        reads. Stale lasts until the next assignment.
        """
        gap = self.monotonic() - self._last_alive
        if self._stale or gap < self.session_timeout_s:
            return self._stale
        log.warning(
            "%s: stood still for %.1f s, past the %.0f s session timeout: dropping every "
            "partition until the group assigns them again",
            self.name,
            gap,
            self.session_timeout_s,
        )
        self._stale = True
        self._last_alive = self.monotonic()
        return True

    async def _drop_everything(self) -> None:
        for task in list(self._acquiring.values()):
            task.cancel()
        for partition in list(self.owned):
            await self._release(partition, park=True)
        self._request_rejoin()

    def _request_rejoin(self) -> None:
        """Ask the group for a fresh assignment (the only way back to a dropped partition).

        If this member still owns its partitions, the group hands the same ones
        back; if it was replaced, it joins anew and gets what the group decides.
        """
        with _suppressed():
            self._consumer._coordinator.request_rejoin()

    # -- processing -------------------------------------------------------------------

    def _dispatch(self, batches: dict[TopicPartition, list[InputRecord]]) -> None:
        """Queue each partition's records for its runner (see :meth:`_run_partition`)."""
        for tp, records in batches.items():
            owned = self.owned.get(tp.partition)
            if owned is None or owned.stopping:
                continue  # not acquired (yet, or any more): its owner reads them again
            if records[0].offset < owned.queued_to:
                records = [r for r in records if r.offset >= owned.queued_to]
                if not records:
                    continue
            owned.pending.append(records)
            owned.pending_records += len(records)
            owned.queued_to = records[-1].offset + 1
            owned.wakeup.set()
            if owned.pending_records >= 4 * self.max_batch and not owned.paused:
                # The runner is behind (a slow commit): stop fetching this partition.
                self._consumer.pause(tp)
                owned.paused = True

    async def _schedule_ticks(self) -> None:
        """Ask the runners of caught-up, idle partitions for a tick."""
        now = self.monotonic()
        for partition, owned in list(self.owned.items()):
            if owned.pending or owned.busy or owned.tick_due or owned.stopping:
                continue
            if now - owned.last_active < self.idle_tick_s:
                continue
            if not await self._caught_up(partition):
                continue
            owned.last_active = now
            owned.tick_due = True
            owned.wakeup.set()

    async def _run_partition(self, partition: int, owned: _Owned) -> None:
        """Process one partition: take what is queued, process it, commit it; again.

        Each partition has its runner, so that one partition's transaction in
        flight never holds up the others (nor the consumer's fetching): while
        it waits for the broker, the others process. Records that arrive
        meanwhile are taken together by the next round, up to ``max_batch``.
        """
        tp = TopicPartition(self.input_topic, partition)
        task = owned.task
        while True:
            await owned.wakeup.wait()
            owned.wakeup.clear()
            if owned.stopping:
                return
            if self._paused_too_long():
                continue  # a zombie: the processing loop drops everything
            records: list[InputRecord] = []
            while owned.pending and len(records) < self.max_batch:
                records += owned.pending.pop(0)
            owned.pending_records -= len(records)
            if owned.pending:
                owned.wakeup.set()  # more for the next round
            elif owned.paused:
                self._consumer.resume(tp)
                owned.paused = False
            tick, owned.tick_due = owned.tick_due, False
            if not records and not tick:
                continue
            owned.busy = True
            try:
                started = time.perf_counter()
                out: list[Output] = []
                now_ms = int(self.clock() * 1000)
                if records:
                    task.process(records, now_ms, out)
                    owned.next_offset = records[-1].offset + 1
                    owned.last_active = self.monotonic()
                if tick:
                    task.tick(now_ms, out)
                committed = await self._commit(partition, owned, out, len(records), started)
            finally:
                owned.busy = False
            if not committed:
                return

    async def _caught_up(self, partition: int) -> bool:
        """Whether every committed record of the partition has been handed over.

        The last stable offset comes with each fetch response; the position
        moves as records (and transaction markers) are handed over.
        """
        consumer = self._consumer
        tp = TopicPartition(self.input_topic, partition)
        try:
            stable = consumer.last_stable_offset(tp)
            if stable is None:
                return False  # no fetch response since the assignment
            return await consumer.position(tp) >= stable
        except Exception:  # revoked meanwhile: not caught up here
            return False

    async def _commit(
        self, partition: int, owned: _Owned, out: list[Output], records: int, started: float
    ) -> bool:
        """Commit a batch's outputs, state changes and offsets; False if it failed."""
        changes = owned.task.changes()
        if not out and not changes and not records:
            return True
        producer = owned.producers[owned.turn]
        token = f"{self._token_prefix}:{next(self._token_counter)}"
        offsets = {TopicPartition(self.input_topic, partition): (owned.next_offset, token)}
        try:
            async with producer.transaction():
                # Offsets first: an AddOffsetsToTxn that reaches the coordinator while
                # the broker verifies this transaction's produce requests (KIP-890)
                # makes the broker answer NOT_ENOUGH_REPLICAS, and the producer
                # retries after its backoff (100 ms by default).
                await producer.send_offsets_to_transaction(offsets, self.group_id)
                await self._send(producer, partition, out, changes)
        except Exception as exc:
            await self._transaction_failed(partition, owned, exc)
            return False
        owned.token = token
        owned.turn = (owned.turn + 1) % len(owned.producers)
        owned.task.committed(token)
        if self.metrics is not None:
            self.metrics.batch_committed(self.name, records, time.perf_counter() - started)
        return True

    async def _send(
        self,
        producer: AIOKafkaProducer,
        partition: int,
        out: list[Output],
        changes: dict[bytes, bytes | None],
    ) -> None:
        """Send the outputs and changelog entries in batches, one per topic partition.

        Building the batches here, rather than sending record by record, spares
        aiokafka's per-record work (a future, a metadata check, the
        partitioner), which was a quarter of a stage's time. Keyed records go
        where Kafka's default partitioner would send them.
        """
        groups: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {}
        known = self._key_partitions
        for item in out:
            target = item.partition
            if target is None:
                # Most keys were seen before: a dict lookup, no coroutine per record.
                target = known.get((item.topic, item.key))
                if target is None:
                    target = await self._partition_for(producer, item.topic, item.key, partition)
            entries = groups.get((item.topic, target))
            if entries is None:
                entries = groups[(item.topic, target)] = []
            entries.append((item.key, item.value))
        if self.changelog_topic and changes:
            groups[(self.changelog_topic, partition)] = list(changes.items())
        for (topic, target), entries in groups.items():
            batch = producer.create_batch()
            for key, value in entries:
                if batch.append(key=key, value=value, timestamp=None) is not None:
                    continue
                if batch.record_count():
                    await producer.send_batch(batch, topic, partition=target)
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is not None:
                        continue
                # Larger than a whole batch: sent on its own.
                await producer.send(topic, value, key=key, partition=target)
            if batch.record_count():
                await producer.send_batch(batch, topic, partition=target)

    async def _partition_for(
        self, producer: AIOKafkaProducer, topic: str, key: bytes | None, partition: int
    ) -> int:
        """Where Kafka's default partitioner sends ``key`` in ``topic`` (cached)."""
        count = self._partition_counts.get(topic)
        if count is None:
            count = self._partition_counts[topic] = len(await producer.partitions_for(topic))
        if key is None:
            return partition % count  # no key: any partition; this one spreads them
        cache = self._key_partitions
        found = cache.get((topic, key))
        if found is None:
            if len(cache) >= 100_000:
                cache.clear()
            found = cache[(topic, key)] = default_partition(key, count)
        return found

    async def _transaction_failed(self, partition: int, owned: _Owned, exc: Exception) -> None:
        """Drop the partition's state (it holds the aborted batch's effects).

        The partition is acquired again (its state rebuilt from the changelog)
        only on a fresh assignment from the group: acquiring it at once would
        fence its new owner if this worker is a zombie.
        """
        if isinstance(exc, FENCED_ERRORS):
            log.warning(
                "%s: partition %d was taken over by another producer (fenced); "
                "released until the group assigns it again",
                self.name,
                partition,
            )
            if self.metrics is not None:
                self.metrics.partition_fenced(self.name)
        else:
            log.warning(
                "%s: transaction of partition %d failed (%r); released until the group "
                "assigns it again",
                self.name,
                partition,
                exc,
            )
        owned.failed = True
        owned.stopping = True
        if self.owned.get(partition) is owned:
            del self.owned[partition]
            await _stop_producer(owned)
            owned.task.close()
            if self.on_ownership is not None:
                self.on_ownership(partition, self.generation, False)
        self._request_rejoin()

    # -- ownership --------------------------------------------------------------------

    def _start_acquiring(self, partition: int, generation: int) -> None:
        tp = TopicPartition(self.input_topic, partition)
        with _suppressed():
            self._consumer.pause(tp)
        self._acquiring[partition] = asyncio.create_task(
            self._acquire(partition, generation), name=f"{self.group_id}-acquire-{partition}"
        )

    async def _acquire(self, partition: int, generation: int) -> None:
        """Acquire ``partition`` (retrying), then hand it to the processing loop."""
        try:
            for attempt in range(1, self.acquire_attempts + 1):
                try:
                    owned, how = await self._take(partition)
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if attempt == self.acquire_attempts:
                        log.error(
                            "%s: could not acquire partition %d after %d attempts: %r",
                            self.name,
                            partition,
                            attempt,
                            exc,
                        )
                        self._failure = exc
                        return
                    log.warning(
                        "%s: acquiring partition %d failed (%r); attempt %d of %d in %.1f s",
                        self.name,
                        partition,
                        exc,
                        attempt + 1,
                        self.acquire_attempts,
                        self.acquire_backoff_s * attempt,
                    )
                    await asyncio.sleep(self.acquire_backoff_s * attempt)
            async with self._lock:
                if generation != self.generation or self._stale or self._stopping:
                    await _stop_producer(owned)  # a newer assignment took over meanwhile
                    self._park(partition, owned)
                    return
                tp = TopicPartition(self.input_topic, partition)
                owned.last_active = self.monotonic()
                owned.queued_to = owned.next_offset
                owned.runner = asyncio.create_task(
                    self._run_partition(partition, owned), name=f"{self.group_id}-{partition}"
                )
                self.owned[partition] = owned
                self._consumer.seek(tp, owned.next_offset)
                self._consumer.resume(tp)
            if self.metrics is not None:
                self.metrics.partition_acquired(self.name, how)
            log.info(
                "%s: partition %d acquired (generation %d, state %s, from offset %d)",
                self.name,
                partition,
                generation,
                how,
                owned.next_offset,
            )
            if self.on_ownership is not None:
                self.on_ownership(partition, generation, True)
        finally:
            if self._acquiring.get(partition) is asyncio.current_task():
                del self._acquiring[partition]
                self.restoring.pop(partition, None)

    async def _take(self, partition: int) -> tuple[_Owned, str]:
        """Fence zombies, then keep the parked state or rebuild it; resume where committed.

        Returns the partition and how its state came: ``kept``, ``local`` or
        ``restored``.
        """
        producers = await self._start_producers(partition)
        try:
            tp = TopicPartition(self.input_topic, partition)
            offset, token = await self.clients.committed(self._consumer, tp)
            parked = self._parked.pop(partition, None)
            if parked is not None and parked.token == token and token:
                parked.producers = producers
                parked.turn = 0
                return parked, "kept"
            if parked is not None:
                parked.task.close()  # before a new task opens the same files
            task = self.make_task(partition)
            try:
                how = "restored"
                if self.changelog_topic:
                    if await task.resume_local(token):
                        how = "local"
                    else:
                        await self._restore(partition, task)
                task.restored()
                task.committed(token)
            except BaseException:
                task.close()
                raise
            return _Owned(task, producers, offset or 0, token, self.monotonic()), how
        except BaseException:
            await _stop_all(producers)
            raise

    async def _start_producers(self, partition: int) -> list[AIOKafkaProducer]:
        """Start the partition's producers, which fences any previous owner's.

        Each start (``init_transactions``) aborts the previous owner's open
        transaction and waits until its committed one is complete, so the
        committed offsets read afterwards are final.
        """
        base = f"{self.group_id}-{partition}"
        producers = [
            self.clients.producer(base if slot == 0 else f"{base}-{chr(ord('a') + slot)}")
            for slot in range(self.producers_per_partition)
        ]
        try:
            started = await asyncio.gather(*(p.start() for p in producers), return_exceptions=True)
        except BaseException:  # cancelled, and the starts with it
            await _stop_all(producers)
            raise
        failure = next((r for r in started if isinstance(r, BaseException)), None)
        if failure is not None:
            await _stop_all(producers)
            raise failure
        return producers

    async def _restore(self, partition: int, task: PartitionTask) -> None:
        tp = TopicPartition(self.changelog_topic, partition)
        # An empty changelog (a new application) needs no reader of its own, whose
        # start (a connection, metadata) was most of a fresh worker's acquisitions.
        if (await self._consumer.end_offsets([tp]))[tp] == 0:
            return
        reader = self.clients.changelog_reader(f"{self.group_id}-restore-{partition}")
        progress = self.restoring[partition] = RestoreProgress()
        await reader.start()
        try:
            reader.assign([tp])
            end = (await reader.end_offsets([tp]))[tp]
            await reader.seek_to_beginning(tp)
            position = start = await reader.position(tp)
            progress.total = end - start
            began = reported = time.monotonic()
            while position < end:
                batch = await reader.getmany(tp, timeout_ms=1000, max_records=10_000)
                for record in batch.get(tp, ()):
                    task.restore(record.key, record.value)
                position = await reader.position(tp)
                progress.restored = position - start
                if time.monotonic() - reported >= 5:
                    reported = time.monotonic()
                    log.info(
                        "%s: restoring partition %d: %d of %d changelog offsets (%.0f/s)",
                        self.name,
                        partition,
                        progress.restored,
                        progress.total,
                        progress.restored / (reported - began),
                    )
        finally:
            await reader.stop()

    async def _release(self, partition: int, *, park: bool) -> None:
        """Stop processing ``partition``; keep its state for a comeback when ``park``.

        Waits for the transaction in flight, if any, to end.
        """
        owned = self.owned.pop(partition, None)
        if owned is None:
            return
        owned.stopping = True
        owned.wakeup.set()
        if owned.runner is not None:
            await asyncio.gather(owned.runner, return_exceptions=True)
        if owned.failed:
            return  # its runner dropped it already
        await _stop_producer(owned)
        if owned.paused:
            with _suppressed():
                self._consumer.resume(TopicPartition(self.input_topic, partition))
        if park:
            self._park(partition, owned)
        else:
            owned.task.close()
        if self.on_ownership is not None:
            self.on_ownership(partition, self.generation, False)

    def _park(self, partition: int, owned: _Owned) -> None:
        """Keep a partition's task for a comeback (closing any older one parked)."""
        previous = self._parked.get(partition)
        if previous is not None and previous is not owned:
            previous.task.close()
        owned.pending.clear()  # the next owner (maybe this one) reads them again
        owned.pending_records = 0
        owned.tick_due = owned.stopping = owned.paused = False
        owned.wakeup = asyncio.Event()
        owned.runner = None
        self._parked[partition] = owned

    async def _on_revoked(self, revoked: list[TopicPartition]) -> None:
        for task in list(self._acquiring.values()):
            task.cancel()
        await asyncio.gather(*self._acquiring.values(), return_exceptions=True)
        async with self._lock:  # waits for the batch in flight to commit
            for partition in list(self.owned):
                await self._release(partition, park=True)

    async def _on_assigned(self, assigned: list[TopicPartition]) -> None:
        partitions = {tp.partition for tp in assigned if tp.topic == self.input_topic}
        with _suppressed():
            self.generation = self._consumer._coordinator.generation
        self._stale = False
        async with self._lock:
            # Parked partitions that went elsewhere: their state is someone else's now.
            for partition in set(self._parked) - partitions:
                self._parked.pop(partition).task.close()
        for partition in sorted(partitions - set(self.owned)):
            self._start_acquiring(partition, self.generation)


class _Listener(ConsumerRebalanceListener):
    """Rebalance callbacks that never raise into aiokafka (which would swallow the error)."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self.stage._on_revoked(revoked)
        except Exception as exc:
            log.exception("%s: handling a revocation failed", self.stage.name)
            self.stage._failure = exc

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        try:
            await self.stage._on_assigned(assigned)
        except Exception as exc:
            log.exception("%s: handling an assignment failed", self.stage.name)
            self.stage._failure = exc


async def _stop_producer(owned: _Owned) -> None:
    producers, owned.producers = owned.producers, []
    await _stop_all(producers)


async def _stop_all(producers: list[AIOKafkaProducer]) -> None:
    for producer in producers:
        try:
            await producer.stop()
        except Exception as exc:  # a fenced (or never started) producer may fail to stop
            log.debug("stopping a producer failed: %r", exc)


class _suppressed:
    """``contextlib.suppress(Exception)`` for calls into aiokafka internals and fakes."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        return exc_type is not None and issubclass(exc_type, Exception)
