"""SPEC section 6: the outputs are the same through Kafka as through the offline replay.

One `botstream worker` process runs a simulated log of 20,000 records (with
duplicates, out-of-order arrival and malformed records, across a month
boundary, with accounts crossing their limits); what it committed, read back
``read_committed``, must equal what `botstream replay` computes from the same
bytes.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.harness import (
    Outputs,
    compare_with_replay,
    exactly_once_problems,
    generate_log,
    log_line,
    produce,
    run_replay,
    schema_problems,
    stats_problems,
    summary,
)

pytestmark = pytest.mark.integration


async def test_kafka_outputs_equal_replay(stream_settings, tmp_path, pool) -> None:
    settings = stream_settings
    topics = settings.topics
    log = generate_log(tmp_path / "log", count=20_000, seed=7)
    replay = run_replay(log, tmp_path / "replay")
    worker = pool.add("worker", log.env)
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        # A plan record applies to the charges processed after it was read,
        # and the replay reads every plan first: wait until all are read.
        await outputs.wait_plans_read(len(log.plans))
        began = time.monotonic()
        await produce(settings, topics.events, log.events)
        produced = time.monotonic() - began
        settled = await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=90, alive=[worker]
        )
        seconds = settled - began
        log_line(
            f"{len(log.events)} records produced in {produced:.1f} s; all outcomes visible "
            f"after {seconds:.1f} s: {len(log.events) / seconds:.0f} events/s "
            f"(replay: {replay.seconds:.1f} s)"
        )
        log_line(summary(log, replay, outputs))
        problems = compare_with_replay(log, outputs, replay)
        problems += exactly_once_problems(outputs, log)
        problems += schema_problems(outputs, replay)
        problems += await stats_problems(worker, replay)
        events_in = await worker.metric("botstream_events_in_total")
        charges = await worker.metric("botstream_charges_total")
        if events_in != len(log.events):
            problems.append(f"botstream_events_in_total {events_in}, expected {len(log.events)}")
        if charges != replay.charges:
            problems.append(f"botstream_charges_total {charges}, expected {replay.charges}")
        problems += worker.errors()
    assert not problems, "\n".join(problems) + "\n" + pool.report()
