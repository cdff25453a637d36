"""`botstream simulate` to a file, replayed, equals the same traffic through Kafka.

The simulator runs twice with the same flags: once writing JSONL files, once
producing to Kafka (plan records first, then, once the worker has read them,
the events). The worker's committed outputs must equal what `botstream
replay` computes from the files, with the stream issue's checks; and the
records on the events topic must be the file's lines.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from botstream.domain.config import DAY_MS
from botstream.domain.timefmt import format_timestamp
from botstream.kafka.topics import kafka_client_kwargs
from tests.integration.harness import (
    PLAN_LIMITS,
    PYTHON,
    Outputs,
    SimLog,
    _month_start,
    compare_with_replay,
    exactly_once_problems,
    log_line,
    run_replay,
    schema_problems,
    settings_env,
)

pytestmark = pytest.mark.integration

#: 12,000 records of 33 accounts cover about nine days of event time.
SPAN_DAYS = 9


def simulate(*flags: str, env: dict[str, str]) -> str:
    """Run `botstream simulate FLAGS`; its output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    result = subprocess.run(
        [PYTHON, "-m", "botstream", "simulate", *flags],
        env=clean | env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    return output


async def topic_values(settings, topic: str) -> list[bytes]:
    """Every record value of ``topic`` (all partitions, read to their ends)."""
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        values: list[bytes] = []
        behind = {tp for tp, end in ends.items() if end}
        while behind:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records)
            behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
        return values
    finally:
        await consumer.stop()


async def test_simulator_file_replayed_equals_the_same_traffic_through_kafka(
    stream_settings, tmp_path: Path, pool
) -> None:
    settings = stream_settings
    now_ms = int(time.time() * 1000)
    boundary = _month_start(now_ms)
    if boundary + SPAN_DAYS * DAY_MS // 2 + 2 * DAY_MS > now_ms:
        boundary = _month_start(now_ms, back=1)
    start_ms = boundary - SPAN_DAYS * DAY_MS // 2
    flags = [
        *("--seed", "11", "--count", "12000", "--start", format_timestamp(start_ms)),
        *("--accounts", "30", "--hot-accounts", "3", "--duplicate-rate", "0.02"),
        *("--out-of-order-rate", "0.05", "--malformed-rate", "0.01"),
    ]
    rules = {
        "BOTSTREAM_PLAN_LIMITS": PLAN_LIMITS,
        "BOTSTREAM_RETENTION": f"{(now_ms - start_ms) // DAY_MS + 8}d",
    }
    events_path, plans_path = tmp_path / "events.jsonl", tmp_path / "plans.jsonl"
    report = simulate("--out", str(events_path), "--plans-out", str(plans_path), *flags, env={})
    log_line(report.splitlines()[0])
    lines = events_path.read_bytes().splitlines()
    plans = plans_path.read_bytes().splitlines()
    log = SimLog(
        events_path,
        plans_path,
        [(None, line) for line in lines],
        [(None, line) for line in plans],
        start_ms,
        start_ms + SPAN_DAYS * DAY_MS,
        boundary,
        Counter(),
        rules,
    )
    replay = run_replay(log, tmp_path / "replay")
    assert len({month for _, month in replay.usage}) >= 2, "the traffic must straddle a month"

    kafka_env = settings_env(settings) | rules
    worker = pool.add("worker", rules)
    async with Outputs(settings) as outputs:
        simulate("--only", "plans", *flags, env=kafka_env)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(plans))
        simulate("--only", "events", *flags, env=kafka_env)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=90, alive=[worker]
        )
        sent = await topic_values(settings, settings.topics.events)
        problems = []
        if Counter(sent) != Counter(lines):
            problems.append(
                f"the events topic holds {len(sent)} records, not the file's {len(lines)} lines"
            )
        problems += compare_with_replay(log, outputs, replay)
        problems += exactly_once_problems(outputs, log)
        problems += schema_problems(outputs, replay)
        problems += worker.errors()
    log_line(
        f"{len(lines)} records, {len(replay.outcomes)} conversations, {replay.charges} charges, "
        f"{len(replay.alerts)} alerts, {len(replay.dead_letters)} dead letters: equal"
    )
    assert not problems, "\n".join(problems) + "\n" + pool.report()
