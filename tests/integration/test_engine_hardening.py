"""The stream engine at its edges, on the real broker (restarts with a backlog, zombies, reads).

Each test here reproduces a way the engine broke SPEC sections 4, 6 or 7 and
shows it no longer does.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.harness import (
    Outputs,
    compare_with_replay,
    exactly_once_problems,
    generate_log,
    group_offsets,
    log_line,
    produce,
    run_replay,
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


async def test_restart_with_an_old_backlog_gives_the_replays_revisions(
    stream_settings, tmp_path, pool
) -> None:
    """A worker restarted with a backlog older than the idle timeout ends nothing early.

    Partitions whose backlog has not been read yet must not have their event
    time moved to the wall clock: that would end their conversations by
    inactivity, and the backlog would then reopen them (revisions the replay
    never makes).
    """
    settings = stream_settings
    topics = settings.topics
    log = generate_log(tmp_path / "log", count=100_000, seed=17)
    replay = run_replay(log, tmp_path / "replay")
    worker = pool.add("worker", log.env)
    first, rest = log.events[:8_000], log.events[8_000:]
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(log.plans))
        await produce(settings, topics.events, first)
        await _wait_committed(settings, f"{settings.app_id}-conversations", topics.events, 8_000)
        worker.stop()
        # Everything else arrives while the worker is down: a backlog dated over
        # 45 minutes ago, older than the 30-minute idle timeout.
        await produce(settings, topics.events, rest)
        worker.start()
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
