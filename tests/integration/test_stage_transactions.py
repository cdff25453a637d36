"""The stages' transactions on the real broker: no retry forced by the order of requests.

Kafka brokers since 3.6 verify each transactional produce with the transaction
coordinator (KIP-890). If ``AddOffsetsToTxn`` reaches the coordinator while a
produce of the same transaction is being verified, the coordinator answers
``CONCURRENT_TRANSACTIONS``, which the broker reports to clients of the older
protocol (aiokafka) as ``NOT_ENOUGH_REPLICAS``: the client waits its retry
backoff (100 ms) and sends again. Nothing is lost, but each such retry stalls
that partition's transaction. A stage therefore adds its input offsets to the
transaction before it produces.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

import pytest
from aiokafka.errors import GroupCoordinatorNotAvailableError

from botstream.sim.generator import SimConfig, TrafficSimulator, expected_span_ms
from botstream.stream.topology import build_stages
from tests.integration.conftest import produce
from tests.integration.harness import group_offsets

pytestmark = pytest.mark.integration


class _Retries(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "NotEnoughReplicas" in message:
            self.messages.append(message)


async def _committed(settings, group: str) -> int:
    try:
        return sum((await group_offsets(settings, group, settings.topics.events)).values())
    except GroupCoordinatorNotAvailableError:  # the group does not exist yet
        return 0


async def test_stage_transactions_are_never_retried_for_not_enough_replicas(
    stream_settings,
) -> None:
    settings = stream_settings
    probe = SimConfig(seed=11, count=20_000)
    start = int(time.time() * 1000) - expected_span_ms(probe) - 10 * 60_000
    simulator = TrafficSimulator(replace(probe, start_ms=start))
    plans = [(r.key, r.value) for r in simulator.plan_records()]
    await produce(settings, settings.topics.plans, plans)
    events = [(r.key, r.value) for r in simulator.events()]
    await produce(settings, settings.topics.events, events)

    retries = _Retries()
    aiokafka_log = logging.getLogger("aiokafka")
    aiokafka_log.addHandler(retries)
    stages = build_stages(settings)
    tasks = [asyncio.create_task(stage.run()) for stage in stages.values()]
    try:
        group = f"{settings.app_id}-conversations"
        deadline = time.monotonic() + 120
        while await _committed(settings, group) < len(events):
            assert time.monotonic() < deadline, "the stages did not commit every event"
            await asyncio.sleep(0.5)
    finally:
        for stage in stages.values():
            stage.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        aiokafka_log.removeHandler(retries)
    assert retries.messages == [], f"{len(retries.messages)} retries, first: {retries.messages[0]}"
