"""SPEC section 6: a worker killed at any point, or a rebalance, neither loses nor doubles.

Workers are `botstream worker` processes killed with SIGKILL (no shutdown
code runs) while events are flowing. Whatever happened, the committed outputs
must equal the replay's, and nothing may be published or applied twice:
per conversation the revisions are 1..n once each; a usage record is published
per charge, so each key's ``used`` goes 1, 2, 3... and ends at the number of
conversations billed in that month (a charge applied twice would end higher);
no alert id and no dead letter appears twice; every plan record and every
charge is on the internal stream between the stages once.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.harness import (
    Outputs,
    WorkerPool,
    WorkerProcess,
    final_problems,
    generate_log,
    log_line,
    produce,
    produce_paced,
    rng_for,
    run_replay,
    summary,
)

pytestmark = pytest.mark.integration


async def _progress(outputs: Outputs) -> str:
    await outputs.catch_up()
    return (
        f"{len(outputs.records('outcomes'))} outcome revisions, "
        f"{len(outputs.records('usage'))} usage records committed"
    )


async def _kill_while_consuming(
    pool: WorkerPool, worker: WorkerProcess, delay_s: float, outputs: Outputs
) -> None:
    """Once ``worker`` owns its partitions again, let it run ``delay_s`` more, then SIGKILL it."""
    await pool.wait_owning([worker], timeout_s=90)
    await asyncio.sleep(delay_s)
    consumed = await worker.metric("botstream_events_in_total")
    worker.kill()
    log_line(
        f"SIGKILL {worker.name} (start {worker.starts}) {delay_s:.1f} s after it owned its "
        f"partitions, having read {consumed:.0f} events; {await _progress(outputs)}"
    )


async def test_worker_killed_three_times_loses_and_doubles_nothing(
    stream_settings, tmp_path, request, pool
) -> None:
    settings = stream_settings
    topics = settings.topics
    rng = rng_for(request.node.name)
    log = generate_log(tmp_path / "log", count=20_000, seed=11)
    replay = run_replay(log, tmp_path / "replay")
    worker = pool.add("worker", log.env)
    began = time.monotonic()
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(log.plans))
        # The events flow in over ~25 s while the worker is killed and restarted;
        # each restart waits for the group to drop the dead member (session
        # timeout, 10 s), so events pile up and the next start has a backlog.
        producing = asyncio.create_task(
            produce_paced(settings, topics.events, log.events, seconds=30)
        )
        for _ in range(3):
            await _kill_while_consuming(pool, worker, rng.uniform(0.3, 3.0), outputs)
            worker.start()
        await producing
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=120, alive=[worker]
        )
        log_line(f"settled {time.monotonic() - began:.0f} s after the first start")
        log_line(summary(log, replay, outputs))
        problems = await final_problems(log, outputs, replay, worker)
    for line in worker.errors():
        log_line(line)
    assert not problems, "\n".join(problems) + "\n" + pool.report()


async def test_two_workers_one_killed_the_other_takes_over(
    stream_settings, tmp_path, request, pool
) -> None:
    settings = stream_settings
    topics = settings.topics
    rng = rng_for(request.node.name)
    log = generate_log(tmp_path / "log", count=20_000, seed=13)
    replay = run_replay(log, tmp_path / "replay")
    first, second = pool.add("a", log.env), pool.add("b", log.env)
    began = time.monotonic()
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        first.start()
        second.start()
        owned = await pool.wait_owning([first, second])
        log_line(f"sharing the work: {owned}")
        await outputs.wait_plans_read(len(log.plans))
        producing = asyncio.create_task(
            produce_paced(settings, topics.events, log.events, seconds=12)
        )
        await asyncio.sleep(rng.uniform(3.0, 7.0))
        consumed = await second.metric("botstream_events_in_total")
        second.kill()
        killed_at = time.monotonic()
        log_line(f"SIGKILL b having read {consumed:.0f} events; {await _progress(outputs)}")
        # The group drops b after its session timeout (10 s); then a owns everything.
        await pool.wait_owning([first], timeout_s=60)
        log_line(f"a owns every partition {time.monotonic() - killed_at:.1f} s after the kill")
        await producing
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=120, alive=[first]
        )
        log_line(f"settled {time.monotonic() - began:.0f} s after the start")
        log_line(summary(log, replay, outputs))
        problems = await final_problems(log, outputs, replay, first)
    for line in first.errors():
        log_line(line)
    assert not problems, "\n".join(problems) + "\n" + pool.report()
