"""The stream engine at its edges, on the real broker (restarts with a backlog, zombies, reads).

Each test here reproduces a way the engine broke SPEC sections 4, 6 or 7 and
shows it no longer does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from botstream.domain.timefmt import parse_timestamp_ms
from botstream.kafka.topics import kafka_client_kwargs
from botstream.sim.generator import SimConfig, TrafficSimulator
from botstream.stream.engine import Stage
from tests.integration.harness import (
    PLAN_LIMITS,
    Outputs,
    SimLog,
    compare_with_replay,
    exactly_once_problems,
    group_offsets,
    log_line,
    produce,
    run_replay,
    simulated_log,
)

pytestmark = pytest.mark.integration


async def _wait_committed(settings, group: str, topic: str, records: int, timeout_s: float = 60):
    """Wait until ``group`` committed ``records`` offsets of ``topic`` in all."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            done = sum((await group_offsets(settings, group, topic)).values())
        except Exception:  # the group does not exist yet
            done = 0
        if done >= records:
            return
        assert asyncio.get_running_loop().time() < deadline, f"{group}: {done}/{records} committed"
        await asyncio.sleep(0.3)


def realtime_log(directory: Path, *, seconds: float, rate: float, seed: int) -> SimLog:
    """A simulated log whose event time starts in two seconds and runs ``seconds``.

    Produced with :func:`produce_in_real_time`, each event is sent when its
    ``occurred_at`` comes, as live widgets do.
    """
    directory.mkdir(parents=True, exist_ok=True)
    start = int(time.time() * 1000) + 2_000
    count = int(seconds * rate)
    per_day = rate * 86_400 / 7 / 200  # about 7 events per conversation, 200 accounts
    simulator = TrafficSimulator(
        SimConfig(
            seed=seed,
            start_ms=start,
            count=count,
            accounts=200,
            conversations_per_account_day=per_day,
        )
    )
    env = {"BOTSTREAM_PLAN_LIMITS": PLAN_LIMITS, "BOTSTREAM_IDLE_TIMEOUT": "12s"}
    return simulated_log(directory, simulator, start, env)


async def produce_in_real_time(
    settings, topic: str, records: list[tuple[bytes | None, bytes]], pause: Callable
) -> None:
    """Send each record once the wall clock reaches its ``occurred_at`` (in file order).

    ``pause(elapsed_s)`` is awaited between sends, for the test to act at set times.
    """
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()
    began = time.monotonic()
    try:
        due = 0
        for key, value in records:
            with contextlib.suppress(Exception):  # a malformed record goes with the one before
                due = max(due, parse_timestamp_ms(orjson.loads(value)["occurred_at"]))
            wait = due / 1000 - time.time()
            if wait > 0.02:
                await producer.flush()
                await asyncio.sleep(wait)
                await pause(time.monotonic() - began)
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def test_restart_with_a_backlog_older_than_the_idle_timeout_gives_the_replays_revisions(
    stream_settings, tmp_path, pool
) -> None:
    """A worker restarted with a backlog older than the idle timeout ends nothing early.

    Widgets send events as they happen, 4,500 a second, while the worker is
    stopped for 18 s, longer than the 12 s idle timeout: a backlog of some
    80,000 events, more than one fetch of every partition. When it starts
    again, partitions whose backlog has not been read yet must not have their
    event time moved to the wall clock: that would end their conversations by
    inactivity, and the backlog would then reopen them (revisions that
    `botstream replay --partitions 4` of the same log does not make).
    """
    settings = stream_settings
    topics = settings.topics
    log = realtime_log(tmp_path / "log", seconds=30, rate=4_500, seed=17)
    worker = pool.add("worker", log.env)
    stopped = restarted = False

    async def stop_then_restart(elapsed_s: float) -> None:
        nonlocal stopped, restarted
        if elapsed_s > 6 and not stopped:
            stopped = True
            worker.stop()
            log_line(f"worker stopped at {elapsed_s:.1f} s")
        elif elapsed_s > 24 and not restarted:
            restarted = True
            worker.start()
            log_line(f"worker started again at {elapsed_s:.1f} s")

    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(log.plans))
        await produce_in_real_time(settings, topics.events, log.events, stop_then_restart)
        assert stopped and restarted
        replay = run_replay(log, tmp_path / "replay", partitions=settings.partitions)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=120, alive=[worker]
        )
        problems = compare_with_replay(log, outputs, replay, revisions=True)
        problems += exactly_once_problems(outputs, log)
    for line in worker.errors():
        log_line(line)
    assert not problems, "\n".join(problems) + "\n" + pool.report()


async def test_a_restore_that_fails_once_is_retried_not_swallowed(stream_settings) -> None:
    """An error while a partition is being acquired must not leave it assigned but unowned.

    aiokafka logs and swallows exceptions raised in rebalance callbacks; the
    partition would then be skipped forever while /health said ok. Here the
    first restore raises: the partition must still be processed (or the stage
    must fail loudly).
    """
    from functools import partial

    from botstream.stream.engine import Stage
    from botstream.stream.tasks import PlanTask

    settings = stream_settings
    topics = settings.topics
    failures = []

    class FlakyPlanTask(PlanTask):
        def restored(self) -> None:
            if not failures:
                failures.append(self)
                raise RuntimeError("restore failed (injected)")
            super().restored()

    stage = Stage(
        "plans",
        settings,
        topics.plans,
        None,
        partial(FlakyPlanTask, settings=settings),
    )
    plans = [
        (
            f"acc-{i}".encode(),
            b'{"account_id": "acc-%d", "plan": "pro", "chatbot_pack": false, '
            b'"effective_at": "2026-11-01T00:00:00Z"}' % i,
        )
        for i in range(40)
    ]
    await produce(settings, topics.plans, plans)
    running = asyncio.create_task(stage.run())
    try:
        done, _ = await asyncio.wait(
            [
                running,
                asyncio.create_task(
                    _wait_committed(
                        settings, f"{settings.app_id}-plans", topics.plans, len(plans), 45
                    )
                ),
            ],
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert failures, "the injected failure never happened"
        if running in done:
            # Failing loudly is the other acceptable answer.
            assert running.exception() is not None
        else:
            for task in done:
                task.result()  # raises if not every plan record was committed
    finally:
        stage.stop()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_restore_longer_than_the_session_timeout_completes_once(kafka_bootstrap) -> None:
    """Restoring a large changelog never happens inside the rebalance callback.

    Inside it, the consumer sends no heartbeat: a restore longer than the
    session timeout (6 s here, the broker's minimum) gets the member thrown out
    of the group, and the next assignment starts the restore over, for ever.
    Outside it, the restore runs once, reports its progress, and the partition
    is then processed.
    """
    from botstream.domain.conversation import encode_conversation, new_conversation
    from botstream.domain.events import decode_event
    from botstream.stream.tasks import ConversationTask
    from tests.integration.harness import isolated_settings

    settings = await isolated_settings(kafka_bootstrap, partitions=1)
    topics = settings.topics
    first = decode_event(
        orjson.dumps(
            {
                "event_id": "e-0",
                "type": "chatbot.triggered",
                "occurred_at": "2026-11-24T20:14:51Z",
                "account_id": "acc-1",
                "conversation_id": "c-0",
            }
        ),
        65_536,
    )
    state = new_conversation(first)
    state.apply(first)
    encoded = encode_conversation(state)
    entries = 1_000_000
    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings), linger_ms=50, max_batch_size=1 << 20
    )
    await producer.start()
    try:
        for number in range(entries):
            await producer.send(topics.conversations_changelog, encoded, key=b"c:c-%d" % number)
        await producer.flush()
    finally:
        await producer.stop()
    log_line(f"changelog: {entries:,} conversations written")

    made = []

    class SlowRestore(ConversationTask):
        """Restores as a slower machine, or larger states, would: 6 µs more per entry."""

        def restore(self, key: bytes, value: bytes | None) -> None:
            super().restore(key, value)
            until = time.perf_counter() + 6e-6
            while time.perf_counter() < until:
                pass

    def make_task(partition: int) -> ConversationTask:
        made.append(partition)
        return SlowRestore(partition, settings=settings)

    stage = Stage(
        "conversations",
        settings,
        topics.events,
        topics.conversations_changelog,
        make_task,
        session_timeout_ms=6_000,
        max_poll_interval_ms=6_000,
    )
    running = asyncio.create_task(stage.run())
    progress: list[int] = []
    try:
        began = time.monotonic()
        while 0 not in stage.owned:
            assert not running.done(), running.exception()
            assert time.monotonic() - began < 120, f"not restored; progress {progress[-5:]}"
            if 0 in stage.restoring:
                progress.append(stage.restoring[0].restored)
            await asyncio.sleep(0.25)
        restored_s = time.monotonic() - began
        log_line(f"restored {entries:,} conversations in {restored_s:.1f} s")
        assert restored_s > 6, "the restore was too quick to show anything: make it larger"
        # The partition is processed, and stays owned: the member was never thrown
        # out of the group (which would start the restore over).
        await produce(settings, topics.events, [(b"c-new", orjson.dumps({"x": 1}))])
        await _wait_committed(settings, stage.group_id, topics.events, 1, timeout_s=30)
        await asyncio.sleep(8)
        assert 0 in stage.owned
        assert made == [0], f"the restore started over: {len(made)} restores"
        assert len(set(progress)) >= 3, f"no progress reported: {progress}"
    finally:
        stage.stop()
        await asyncio.gather(running, return_exceptions=True)
