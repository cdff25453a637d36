"""SPEC section 6 when the broker itself goes: restarted mid-stream, it loses and doubles nothing.

The quick part of ``python -m reliability faults`` (scenario ``broker-restart``):
two ``botstream worker`` processes on a broker of the test's own, events sent
in real time, and the broker killed (SIGKILL) and started again on the same
data directory in the middle of the stream. What the workers committed must
equal ``botstream replay --partitions 4`` of the same log (all but revision
counts: the feed is held during the outage, see
``reliability.faults.broker_restart``), with nothing published or applied
twice, and no fenced producer's write in the broker's segment files.
"""

from __future__ import annotations

import os
import time

import pytest

from botstream.kafka.local_broker import LocalKafka
from reliability.faults import broker_restart
from tests.integration.harness import log_line

pytestmark = pytest.mark.integration


async def test_a_broker_killed_and_restarted_mid_stream_loses_and_doubles_nothing(
    tmp_path,
) -> None:
    seed = int(os.environ.get("BOTSTREAM_TEST_SEED") or time.time_ns() % 1_000_000)
    log_line(f"broker restart: seed {seed} (set BOTSTREAM_TEST_SEED to repeat)")
    broker = LocalKafka(work_dir=tmp_path / "broker")
    broker.start()
    try:
        result = await broker_restart(broker, tmp_path, seed, 10_000, kinds=("SIGKILL",))
    finally:
        broker.stop()
    for line in result.faults + result.checks + result.notes:
        log_line(line)
    assert result.faults == ["broker restart 1 (SIGKILL)"]
    assert len(result.recoveries) == 1
    assert not result.problems, "\n".join(result.problems)
