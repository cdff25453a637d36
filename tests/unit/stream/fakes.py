"""In-memory stand-ins for the Kafka clients of a :class:`~botstream.stream.engine.Stage`.

They implement only what the stage calls, with the behaviour the engine's
edge cases depend on (a position that moves as records are handed over, a
last stable offset per partition, fencing by a newer producer of the same
transactional id), so that those cases can be set up exactly. Everything else
about Kafka is tested on the real broker in ``tests/integration``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord


def record(topic: str, partition: int, offset: int, value: bytes = b"{}") -> ConsumerRecord:
    """A consumer record as aiokafka hands it over."""
    return ConsumerRecord(topic, partition, offset, 0, 0, None, value, None, 0, len(value), ())


class FakeClock:
    """A monotonic clock that tests move."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Broker:
    """What the fakes share: committed offsets, producer epochs, the log of transactions."""

    #: (topic, partition) -> (offset, metadata) committed by transactions.
    committed: dict[tuple[str, int], tuple[int, str]] = field(default_factory=dict)
    #: transactional id -> current epoch (each start bumps it, fencing older producers).
    epochs: dict[str, int] = field(default_factory=dict)
    #: transactional id -> how many producers were started (initialised) with it.
    inits: dict[str, int] = field(default_factory=dict)
    #: Committed transactions: (transactional id, records sent, offsets).
    transactions: list[tuple[str, list, dict]] = field(default_factory=list)


class FakeProducer:
    """A transactional producer: ``start`` fences older ones, commits go to the broker."""

    def __init__(self, broker: Broker, transactional_id: str) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self.epoch = -1
        self.fail_next_commit: BaseException | None = None
        self._sent: list = []
        self._offsets: dict = {}

    async def start(self) -> None:
        broker = self.broker
        self.epoch = broker.epochs.get(self.transactional_id, -1) + 1
        broker.epochs[self.transactional_id] = self.epoch
        broker.inits[self.transactional_id] = broker.inits.get(self.transactional_id, 0) + 1

    async def stop(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def transaction(self):
        self._sent, self._offsets = [], {}
        yield self
        if self.broker.epochs.get(self.transactional_id) != self.epoch:
            raise ProducerFenced()
        if self.fail_next_commit is not None:
            error, self.fail_next_commit = self.fail_next_commit, None
            raise error
        for tp, (offset, metadata) in self._offsets.items():
            self.broker.committed[(tp.topic, tp.partition)] = (offset, metadata)
        self.broker.transactions.append((self.transactional_id, self._sent, self._offsets))

    async def send_offsets_to_transaction(self, offsets: dict, group_id: str) -> None:
        self._offsets.update(offsets)

    async def send(self, topic, value=None, key=None, partition=None):
        self._sent.append((topic, key, value, partition))

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> None:
        self._sent.extend((topic, key, value, partition) for key, value in batch.records)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3}


class FakeBatch:
    """A producer batch that holds any number of records."""

    def __init__(self) -> None:
        self.records: list[tuple] = []

    def append(self, *, key, value, timestamp):
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class FakeConsumer:
    """A group consumer over scripted partitions.

    ``backlog[p]`` is the list of records of partition ``p`` that ``getmany``
    may hand over; ``serve`` decides which partitions a ``getmany`` call serves
    (all by default), which is how a shared ``max_records`` starves some of
    them. The last stable offset of a partition is the end of its backlog.
    """

    def __init__(self, topic: str, clock: FakeClock, step_s: float = 0.01) -> None:
        self.topic = topic
        self.clock = clock
        self.step_s = step_s
        self.backlog: dict[int, list[ConsumerRecord]] = {}
        self.positions: dict[int, int] = {}
        self.paused: set[int] = set()
        self.assigned: set[int] = set()
        self.serve: Callable[[int], bool] = lambda partition: True
        #: At most this many records of a partition per ``getmany`` (None: ``max_records``).
        self.per_call: int | None = None
        self.listener = None
        self.pending_assignment: list[int] | None = None
        self.rejoins = 0
        self._coordinator = self  # the engine reads the generation and asks for rejoins here
        self.generation = 0

    # -- what the stage calls -------------------------------------------------------

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def subscribe(self, topics, listener) -> None:
        self.listener = listener

    def request_rejoin(self) -> None:
        self.rejoins += 1

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(self.topic, p) for p in self.assigned}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tp.partition for tp in tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tp.partition for tp in tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp.partition] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions.get(tp.partition, 0)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return len(self.backlog.get(tp.partition, ()))

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        # The fake clock runs about ten times faster than real time: much faster, and
        # the stage's watchdog (which wakes every 0.25 s of real time) would see pauses.
        await asyncio.sleep(0.001)
        self.clock.now += self.step_s
        if self.pending_assignment is not None:
            partitions, self.pending_assignment = self.pending_assignment, None
            await self.assign(partitions)
        batches = {}
        for partition in sorted(self.assigned - self.paused):
            if not self.serve(partition):
                continue
            position = self.positions.get(partition, 0)
            size = self.per_call or max_records or 500
            records = self.backlog.get(partition, [])[position : position + size]
            if records:
                self.positions[partition] = records[-1].offset + 1
                batches[TopicPartition(self.topic, partition)] = records
        return batches

    # -- what tests call ------------------------------------------------------------

    async def assign(self, partitions: list[int]) -> None:
        """A rebalance: revoke everything, then assign ``partitions`` (eager protocol)."""
        if self.assigned:
            await self.listener.on_partitions_revoked(self.assignment())
        self.generation += 1
        self.assigned = set(partitions)
        await self.listener.on_partitions_assigned(self.assignment())


class FakeClients:
    """:class:`~botstream.stream.engine.StageClients` over the fakes above."""

    def __init__(self, consumer: FakeConsumer, broker: Broker | None = None) -> None:
        self.consumer_ = consumer
        self.broker = broker or Broker()
        self.producers: list[FakeProducer] = []

    def consumer(self, group_id: str, **overrides) -> FakeConsumer:
        return self.consumer_

    def producer(self, transactional_id: str) -> FakeProducer:
        producer = FakeProducer(self.broker, transactional_id)
        self.producers.append(producer)
        return producer

    def changelog_reader(self, client_id: str):
        raise AssertionError("these tests use stages without a changelog")

    async def committed(self, consumer, tp: TopicPartition) -> tuple[int | None, str]:
        offset, metadata = self.broker.committed.get((tp.topic, tp.partition), (None, ""))
        return offset, metadata
