"""``botstream replay --partitions N``: event time kept per partition, as in the live stream.

Conversations are routed by Kafka's default partitioner (murmur2 of the key,
which SPEC section 2 says is the conversation id), computed here with
aiokafka's own murmur2 rather than botstream's helper.
"""

from __future__ import annotations

import orjson
import pytest
from aiokafka.partitioner import murmur2

from botstream.domain.config import DomainConfig
from botstream.replay.engine import ReplayEngine
from tests.unit.domain.conftest import CLICK, TRIGGERED, VISITOR_MSG, ev_raw


def conversation_in(partition: int, partitions: int) -> str:
    """A conversation id that Kafka's default partitioner sends to ``partition``."""
    for number in range(1000):
        conversation_id = f"c-{number}"
        if (murmur2(conversation_id.encode()) & 0x7FFFFFFF) % partitions == partition:
            return conversation_id
    raise AssertionError("no such id")


def revisions(events: list[bytes], partitions: int) -> dict[str, int]:
    engine = ReplayEngine(DomainConfig(), partitions=partitions)
    for offset, raw in enumerate(events):
        engine.add_event(raw, "events.jsonl", offset)
    result = engine.finish()
    return {
        record["conversation_id"]: record["revision"]
        for record in map(orjson.loads, result.outcome_records())
    }


@pytest.mark.parametrize(
    ("partitions", "quiet_revisions", "busy_revisions"),
    [
        # One partition: the busy conversation's event at minute 60 moves the single
        # event time past the quiet one's idle timeout (30 min), which ends it; its
        # event at minute 5, read later, reopens it, and the end of the input ends
        # it again: two revisions.
        (1, 2, 1),
        # Two partitions: the quiet conversation's partition never saw minute 60, so
        # it stays open until the end of the input: one revision, as live.
        (2, 1, 1),
    ],
)
def test_event_time_is_per_partition(partitions, quiet_revisions, busy_revisions) -> None:
    quiet, busy = conversation_in(0, 2), conversation_in(1, 2)
    events = [
        ev_raw(TRIGGERED, 0, conv=quiet),
        ev_raw(TRIGGERED, 0, conv=busy),
        ev_raw(CLICK, 60, conv=busy),
        ev_raw(VISITOR_MSG, 5, conv=quiet),
    ]
    assert revisions(events, partitions) == {quiet: quiet_revisions, busy: busy_revisions}
