"""Zombies and the read API's routing, with real worker processes.

A worker paused (SIGSTOP) past its session timeout is replaced by another;
when it resumes it must neither write, nor fence its replacement, nor serve
the state it held before the pause. And a late announcement from a previous
owner must not send readers back to it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import orjson
import pytest

from botstream.stream.app import account_partition
from tests.integration.harness import (
    Outputs,
    compare_with_replay,
    exactly_once_problems,
    generate_log,
    log_line,
    produce,
    run_replay,
)

pytestmark = pytest.mark.integration

#: The stages' session timeout (10 s) and some more.
PAST_SESSION_TIMEOUT_S = 14


async def _events_committed(outputs: Outputs, count: int, timeout_s: float = 90) -> None:
    """Wait until the conversation stage committed ``count`` input offsets."""
    from tests.integration.harness import group_offsets

    settings = outputs.settings
    deadline = time.monotonic() + timeout_s
    group = f"{settings.app_id}-conversations"
    while sum((await group_offsets(settings, group, settings.topics.events)).values()) < count:
        assert time.monotonic() < deadline, "events not committed in time"
        await asyncio.sleep(0.5)


async def test_a_resumed_zombie_writes_nothing_fences_nobody_and_serves_no_stale_read(
    stream_settings, tmp_path, pool
) -> None:
    settings = stream_settings
    topics = settings.topics
    log = generate_log(tmp_path / "log", count=20_000, seed=23)
    replay = run_replay(log, tmp_path / "replay")
    a, b = pool.add("a", log.env), pool.add("b", log.env)
    half = len(log.events) // 2
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        a.start()
        b.start()
        owned = await pool.wait_owning([a, b])
        await outputs.wait_plans_read(len(log.plans))
        await produce(settings, topics.events, log.events[:half])
        await _events_committed(outputs, half)
        # Of the account-months whose account partition `a` serves, the one the second
        # half charges most: what `a` holds then differs most from the final answer.
        held = {
            key: await a.get_json(f"/usage/{key[0]}", month=key[1])
            for key in replay.usage
            if account_partition(key[0], settings.partitions) in owned["a"]["accounts"]
        }
        (account, month), before = max(
            held.items(), key=lambda item: replay.usage[item[0]]["used"] - item[1]["used"]
        )
        path = f"/usage/{account}"

        os.kill(a.process.pid, signal.SIGSTOP)
        log_line(f"SIGSTOP a; it served {account} {month}: used {before['used']}")
        await asyncio.sleep(PAST_SESSION_TIMEOUT_S)
        await pool.wait_owning([b], timeout_s=60)
        await produce(settings, topics.events, log.events[half:])
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=120, alive=[b]
        )
        after = await b.get_json(path, month=month)
        assert after["used"] > before["used"], "pick an account charged in the second half"

        os.kill(a.process.pid, signal.SIGCONT)
        status, body = await a.get(path, month=month)
        log_line(f"SIGCONT a; at once it answered {status} {body[:120]!r}")
        # Forwarded to the owner, or "no owner right now": never what it held.
        assert status == 503 or orjson.loads(body)["used"] == after["used"], body
        await pool.wait_owning([a, b], timeout_s=90)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=60, alive=[a, b]
        )
        problems = compare_with_replay(log, outputs, replay)
        problems += exactly_once_problems(outputs, log)
        fenced = await b.metric("botstream_partitions_fenced_total")
    stood_still = [line for line in a.logs(400).splitlines() if "stood still" in line]
    log_line(f"a: {stood_still[:1]}; b fenced {fenced:.0f} times")
    assert stood_still, "the resumed worker did not notice its pause"
    assert fenced == 0, "the resumed zombie fenced the worker that replaced it"
    assert not problems, "\n".join(problems) + "\n" + pool.report()


async def test_a_late_announcement_from_a_previous_owner_is_ignored(
    stream_settings, tmp_path, pool
) -> None:
    """Partition moves from `c` to `b`; `c`'s claim arrives again, late. `a` must still
    forward reads of that partition to `b`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from botstream.kafka.topics import kafka_client_kwargs

    settings = stream_settings
    topics = settings.topics
    log = generate_log(tmp_path / "log", count=5_000, seed=29)
    replay = run_replay(log, tmp_path / "replay")
    a, b, c = (pool.add(name, log.env) for name in "abc")
    async with Outputs(settings) as outputs:
        await produce(settings, topics.plans, log.plans)
        for worker in (a, b, c):
            worker.start()
        owned = await pool.wait_owning([a, b, c], timeout_s=90)
        await outputs.wait_plans_read(len(log.plans))
        await produce(settings, topics.events, log.events)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=90, alive=[a, b, c]
        )
        moved = owned["c"]["accounts"][0]
        # Everything `c` announced so far, to send one of its claims again later.
        reader = AIOKafkaConsumer(
            **kafka_client_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await reader.start()
        try:
            partitions = [TopicPartition(topics.directory, p) for p in range(settings.partitions)]
            reader.assign(partitions)
            claims = []
            for records in (await reader.getmany(timeout_ms=3000)).values():
                claims += [r for r in records if c.url.encode() in r.value]
        finally:
            await reader.stop()
        claim = [r for r in claims if str(moved).encode() in (r.key or b"")][-1]

        c.kill()
        log_line(f"SIGKILL c, which served account partition {moved}")
        await pool.wait_owning([a, b], timeout_s=60)
        # `c`'s claim, delayed: it arrives after the new owner's.
        await produce(settings, topics.directory, [(claim.key, claim.value)])
        await asyncio.sleep(2)
        (account, month), usage = next(
            (key, usage)
            for key, usage in sorted(replay.usage.items())
            if account_partition(key[0], settings.partitions) == moved
        )
        reader_worker = a if moved in (await b.owned())["accounts"] else b
        got = await reader_worker.get_json(f"/usage/{account}", retry_s=5, month=month)
    # The read API adds a forecast to the usage record (see the dashboard section).
    assert {k: v for k, v in got.items() if k != "forecast"} == usage
