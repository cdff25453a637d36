"""A worker with ``--store rocksdb``, SIGKILLed while events flow: nothing lost or doubled,
and after each kill it resumes from its own files rather than the changelog."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.integration.harness import (
    Outputs,
    final_problems,
    generate_log,
    log_line,
    produce,
    produce_paced,
    rng_for,
    run_replay,
)

pytestmark = pytest.mark.integration


def acquisitions(metrics_text: str, state: str) -> float:
    """Conversation-stage partitions acquired with their state from ``state``."""
    pattern = (
        r'^botstream_partition_acquisitions_total\{stage="conversations",state="'
        + state
        + r'"\} (\S+)$'
    )
    return sum(float(m.group(1)) for m in re.finditer(pattern, metrics_text, re.M))


async def test_rocksdb_worker_killed_twice_resumes_from_its_files(
    stream_settings, tmp_path, request, pool
) -> None:
    settings = stream_settings
    topics = settings.topics
    rng = rng_for(request.node.name)
    log = generate_log(tmp_path / "log", count=20_000, seed=31)
    replay = run_replay(log, tmp_path / "replay")
    worker = pool.add("worker", log.env | {"BOTSTREAM_STORE": "rocksdb"})
    local = 0.0
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(log.plans))
        producing = asyncio.create_task(
            produce_paced(settings, topics.events, log.events, seconds=20)
        )
        for _ in range(2):
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            worker.kill()
            log_line(f"SIGKILL the rocksdb worker (start {worker.starts})")
            worker.start()
            await pool.wait_owning([worker], timeout_s=90)
            _, body = await worker.get("/metrics")
            local += acquisitions(body.decode(), "local")
        await producing
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=120, alive=[worker]
        )
        problems = await final_problems(log, outputs, replay, worker)
    log_line(f"conversation partitions resumed from local files: {local:.0f}")
    assert not problems, "\n".join(problems) + "\n" + pool.report()
    assert local >= 1, "no partition resumed from the worker's own files"
