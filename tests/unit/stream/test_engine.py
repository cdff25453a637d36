"""The stage engine's edge cases, with in-memory clients (see ``fakes.py``).

Idle ticks only when caught up; failed acquisitions retried or failing the
stage; no re-acquisition after a fence without a fresh assignment; state kept
across a rebalance only when nobody else committed; a stage paused past its
session timeout drops everything.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from botstream.config import load_settings
from botstream.stream.engine import Stage, StageFailed
from tests.unit.stream.fakes import Broker, FakeClients, FakeClock, FakeConsumer, record

TOPIC = "events"
SETTINGS = load_settings(env={})


class RecordingTask:
    """A partition task that remembers what the stage asked of it."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.processed: list[int] = []
        self.ticks = 0
        self.commits = 0
        self.closed = False
        self.pending: dict[bytes, bytes | None] = {}

    def restore(self, key, value) -> None:
        raise AssertionError("no changelog here")

    def restored(self) -> None:
        return None

    def process(self, records, now_ms, out) -> None:
        self.processed.extend(r.offset for r in records)

    def tick(self, now_ms, out) -> None:
        self.ticks += 1

    def changes(self) -> dict[bytes, bytes | None]:
        changes, self.pending = self.pending, {}
        return changes

    def committed(self, token: str) -> None:
        self.commits += 1

    async def resume_local(self, token: str) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class Harness:
    """A stage over fake clients, and the tasks it made."""

    def __init__(self, partitions: list[int], **stage_options) -> None:
        self.clock = FakeClock()
        self.consumer = FakeConsumer(TOPIC, self.clock)
        self.clients = FakeClients(self.consumer, Broker())
        self.tasks: list[RecordingTask] = []
        self.consumer.pending_assignment = partitions
        options = {"session_timeout_ms": 60_000, "acquire_backoff_s": 0.0} | stage_options
        self.stage = Stage(
            "stage",
            SETTINGS,
            TOPIC,
            None,
            self._make_task,
            clients=self.clients,
            monotonic=self.clock,
            **options,
        )
        self.running: asyncio.Task | None = None

    def _make_task(self, partition: int) -> RecordingTask:
        task = RecordingTask(partition)
        self.tasks.append(task)
        return task

    def task_of(self, partition: int) -> RecordingTask:
        return [t for t in self.tasks if t.partition == partition][-1]

    def inits(self, partition: int) -> int:
        return self.clients.broker.inits.get(f"{self.stage.group_id}-{partition}", 0)

    async def __aenter__(self) -> Harness:
        self.running = asyncio.create_task(self.stage.run())
        await self.until(lambda: True)
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.stage.stop()
        await asyncio.gather(self.running, return_exceptions=True)

    async def until(self, condition, timeout_s: float = 5.0) -> None:
        """Let the stage run until ``condition()`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not condition():
            assert not self.running.done() or self.running.exception() is None, (
                self.running.exception()
            )
            assert asyncio.get_running_loop().time() < deadline, "condition never held"
            await asyncio.sleep(0.005)

    async def steps(self, fake_seconds: float) -> None:
        """Let ``fake_seconds`` of the stage's monotonic clock pass, polling as it goes."""
        target = self.clock.now + fake_seconds
        await self.until(lambda: self.clock.now >= target)


def records(partition: int, count: int) -> list:
    return [record(TOPIC, partition, offset) for offset in range(count)]


async def test_no_tick_while_a_partition_has_an_unread_backlog() -> None:
    """Partition 1 holds an old backlog that ``getmany`` never gets to (partition 0 takes
    every batch): its event time must not follow the wall clock meanwhile. Partition 2,
    caught up and idle, does tick."""
    async with Harness([0, 1, 2]) as h:
        h.consumer.backlog = {0: records(0, 100_000), 1: records(1, 1_000), 2: []}
        h.consumer.per_call = 10
        h.consumer.serve = lambda partition: partition != 1
        await h.until(lambda: len(h.stage.owned) == 3)
        await h.steps(5.0)
        assert h.task_of(1).processed == []
        assert h.task_of(1).ticks == 0
        assert h.task_of(0).ticks == 0  # busy
        assert h.task_of(2).ticks >= 3  # caught up and idle: about one tick a second
        # Once the backlog is read, partition 1 is caught up and ticks like the others.
        h.consumer.per_call = None
        h.consumer.serve = lambda partition: True
        await h.until(lambda: len(h.task_of(1).processed) == 1_000)
        await h.steps(3.0)
        assert h.task_of(1).ticks >= 1


async def test_an_acquisition_that_fails_once_is_retried() -> None:
    h = Harness([0])
    original = h.clients.committed
    failures = []

    async def committed_failing_once(consumer, tp):
        if not failures:
            failures.append(tp)
            raise ConnectionError("injected")
        return await original(consumer, tp)

    h.clients.committed = committed_failing_once
    async with h:
        h.consumer.backlog = {0: records(0, 10)}
        await h.until(lambda: h.tasks and h.task_of(0).processed == list(range(10)))
    assert failures


async def test_an_acquisition_that_keeps_failing_fails_the_stage() -> None:
    h = Harness([0], acquire_attempts=3)

    async def committed_failing(consumer, tp):
        raise ConnectionError("injected")

    h.clients.committed = committed_failing
    h.running = asyncio.create_task(h.stage.run())
    with pytest.raises(StageFailed, match="injected"):
        await asyncio.wait_for(h.running, 5)


async def test_a_fenced_partition_waits_for_a_fresh_assignment() -> None:
    """After another producer of its transactional id took over, the stage neither
    processes nor re-acquires the partition until the group assigns it again."""
    async with Harness([0]) as h:
        h.consumer.backlog = {0: records(0, 5)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 5)
        assert h.inits(0) == 1
        # A new owner elsewhere initialises its producers: ours are fenced.
        for transactional_id in (f"{h.stage.group_id}-0", f"{h.stage.group_id}-0-b"):
            await h.clients.producer(transactional_id).start()
        h.consumer.backlog[0] += [record(TOPIC, 0, offset) for offset in range(5, 10)]
        await h.until(lambda: 0 not in h.stage.owned and h.consumer.rejoins >= 1)
        await h.steps(3.0)
        assert h.inits(0) == 2  # ours and the intruder's: no re-acquisition
        assert 0 not in h.stage.owned
        committed_offsets = [t[2] for t in h.clients.broker.transactions]
        assert all(o[next(iter(o))][0] <= 5 for o in committed_offsets)
        # The group assigns it again: now it is acquired (fencing the other one).
        await h.consumer.assign([0])
        await h.until(lambda: 0 in h.stage.owned)
        assert h.inits(0) == 3


async def test_transactions_alternate_between_the_partitions_two_producers() -> None:
    """Both producers are initialised (fencing zombies) before anything is processed,
    and consecutive transactions of a partition use them in turn, with offsets that
    only move forward."""
    async with Harness([0]) as h:
        ids = [f"{h.stage.group_id}-0", f"{h.stage.group_id}-0-b"]
        h.consumer.per_call = 3
        h.consumer.backlog = {0: records(0, 12)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 12)
        await h.until(lambda: len(h.clients.broker.transactions) >= 4)
        assert [h.clients.broker.inits.get(i) for i in ids] == [1, 1]
        used = [t[0] for t in h.clients.broker.transactions]
        assert set(used) == set(ids)
        assert all(a != b for a, b in itertools.pairwise(used)), used
        offsets = [next(iter(t[2].values()))[0] for t in h.clients.broker.transactions]
        assert offsets == sorted(offsets) and offsets[-1] == 12


async def test_one_producer_per_partition_when_asked() -> None:
    async with Harness([0], producers_per_partition=1) as h:
        h.consumer.per_call = 3
        h.consumer.backlog = {0: records(0, 9)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 9)
        await h.until(lambda: len(h.clients.broker.transactions) >= 3)
        assert {t[0] for t in h.clients.broker.transactions} == {f"{h.stage.group_id}-0"}


async def test_state_is_kept_across_a_rebalance_when_nobody_else_committed() -> None:
    async with Harness([0]) as h:
        h.consumer.backlog = {0: records(0, 5)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 5)
        before = h.task_of(0)
        await h.consumer.assign([0])
        await h.until(lambda: 0 in h.stage.owned)
        assert h.stage.owned[0].task is before  # kept, not rebuilt
        assert h.inits(0) == 2  # but a new producer: zombies are fenced all the same


async def test_state_is_rebuilt_when_another_owner_committed_meanwhile() -> None:
    async with Harness([0]) as h:
        h.consumer.backlog = {0: records(0, 5)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 5)
        before = h.task_of(0)
        # Revoked; meanwhile (this worker missed a generation, say while paused) another
        # worker owned the partition and committed; then it comes back here.
        consumer = h.consumer
        await consumer.listener.on_partitions_revoked(consumer.assignment())
        h.clients.broker.committed[(TOPIC, 0)] = (7, "someone-else:1")
        consumer.generation += 2
        await consumer.listener.on_partitions_assigned(consumer.assignment())
        await h.until(lambda: 0 in h.stage.owned)
        assert h.stage.owned[0].task is not before
        assert h.stage.owned[0].next_offset == 7


async def test_a_stage_paused_past_its_session_timeout_drops_everything() -> None:
    """A zombie (SIGSTOP, a frozen host) processes and commits nothing more, and serves
    no reads, until the group assigns it partitions again."""
    async with Harness([0, 1], session_timeout_ms=10_000) as h:
        h.consumer.backlog = {0: records(0, 5), 1: records(1, 5)}
        await h.until(lambda: len(h.tasks) == 2 and all(len(t.processed) == 5 for t in h.tasks))
        assert h.stage.serves_reads
        transactions = len(h.clients.broker.transactions)
        h.clock.now += 11  # the whole process stood still for 11 s
        assert not h.stage.serves_reads  # at once, before the stage even notices
        h.consumer.backlog[0] += [record(TOPIC, 0, offset) for offset in range(5, 10)]
        await h.until(lambda: not h.stage.owned and h.consumer.rejoins >= 1)
        await h.steps(2.0)
        assert len(h.clients.broker.transactions) == transactions
        assert not h.stage.serves_reads
        await h.consumer.assign([0, 1])
        await h.until(lambda: len(h.stage.owned) == 2)
        assert h.stage.serves_reads


async def test_a_failed_commit_drops_the_state_it_held() -> None:
    """A transaction that fails leaves the task's effects uncommitted: the task is dropped
    and rebuilt on the next assignment, never reused."""
    async with Harness([0]) as h:
        h.consumer.backlog = {0: records(0, 5)}
        await h.until(lambda: h.tasks and len(h.task_of(0).processed) == 5)
        first = h.task_of(0)
        owned = h.stage.owned[0]
        owned.producers[owned.turn].fail_next_commit = ConnectionError("broker went away")
        h.consumer.backlog[0] += [record(TOPIC, 0, 5)]
        await h.until(lambda: 0 not in h.stage.owned)
        assert first.commits == 2  # after its acquisition, and after its one transaction
        assert first.closed
        await h.consumer.assign([0])
        await h.until(lambda: 0 in h.stage.owned and len(h.tasks) == 2)
        assert h.task_of(0) is not first
        await h.until(lambda: h.task_of(0).processed == [5])
