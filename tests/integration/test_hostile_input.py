"""Hostile input to a running worker (the quick part of ``make fuzz``).

A real ``botstream worker`` on the real broker gets a hostile log: valid
conversations among records broken every way, redeliveries, events of another
account or older than the retention, random mutations, a 10 MiB value, 1 MiB
values, values at the size limit, keys that are null, empty or not UTF-8, and
plan records of every broken shape. The worker must never stop or log an
error, apply every valid event exactly once, publish exactly one dead letter
per bad record with an expected reason (and no other), count them in its
metrics, and commit the same outcomes, usage and alerts as ``botstream
replay`` of the same log.

The input topics of this test accept 12 MiB records (a topic setting; the
broker's default stays 1 MiB). A record of 1 MiB used to make a dead letter
too large to publish, and its partition retried that transaction forever.
"""

from __future__ import annotations

import pytest

from reliability.fuzz import run_replay, run_worker
from reliability.hostile import Feed, FeedConfig
from reliability.ledger import write_feed
from tests.integration.harness import log_line

pytestmark = pytest.mark.integration


async def test_worker_survives_hostile_input(kafka_bootstrap, tmp_path) -> None:
    config = FeedConfig(seed=23, events=12_000, broken_plans=150, ten_mib=1, one_mib=2)
    files = write_feed(Feed(config), tmp_path / "feed")
    replay, _ = run_replay(files, tmp_path / "replay")
    assert replay.problems == []

    result = await run_worker(
        files, kafka_bootstrap, tmp_path / "workers", tmp_path / "replay", settle_timeout_s=120
    )

    log_line(f"worker: {result.records} records, {result.seconds:.1f} s; {result.notes}")
    log_line(f"dead letters: {dict(result.dead_letters)}")
    assert result.problems == []
    assert result.records == len(files.events) + len(files.plans)
    assert sum(result.dead_letters.values()) == result.bad > 0
