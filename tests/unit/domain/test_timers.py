"""Timers fire in (deadline, conversation id) order, whatever their hourly buckets.

The processor keeps the timers of hours not yet reached as plain id lists and
turns an hour's into a heap of (deadline, id) pairs when event time reaches it
(``partition._schedule``). With buckets of 1 ms every timer is in a heap as it
is scheduled; with buckets of a century all of them are in one list until the
first fires. Both extremes and the real width must give the very same outputs
in the very same order, on logs that reopen, end, expire and restart
conversations, jump event time past the retention, and bring late events.
"""

from __future__ import annotations

import random

import pytest

from botstream.domain import partition
from botstream.domain.config import DomainConfig
from botstream.domain.metering import Charge
from botstream.domain.partition import DictStore, Expired, PartitionProcessor, Revision
from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import (
    AGENT_MSG,
    BOT_MSG,
    CLICK,
    CLOSED,
    DAY,
    HOUR,
    LEFT,
    MINUTE,
    STARTED,
    TRIGGERED,
    VISITOR_MSG,
    WIDGET_CLOSED,
    at_ms,
    ev,
    iso,
)

CONFIG = DomainConfig(idle_timeout_ms=20 * MINUTE, retention_ms=2 * DAY)
TYPES = (STARTED, TRIGGERED, BOT_MSG, CLICK, VISITOR_MSG, AGENT_MSG, WIDGET_CLOSED, LEFT, CLOSED)


def _log(seed: int) -> list:
    """Events of 60 conversations over days, with bursts, gaps and late arrivals."""
    rng = random.Random(seed)
    start = at_ms(0)
    events, clock = [], start
    for _ in range(900):
        step = rng.choice((0, 1, 1000, 37_000, 5 * MINUTE, 25 * MINUTE, 3 * HOUR))
        if rng.random() < 0.01:
            step = 3 * DAY  # beyond the retention: expiries and inactivity ends at once
        clock += step
        at = clock - (rng.randint(0, 2 * HOUR) if rng.random() < 0.05 else 0)  # late
        conversation = f"c-{rng.randint(0, 59):02d}"
        kind = rng.choice(TYPES)
        extra = {"closed_by": "chatbot"} if kind == CLOSED and rng.random() < 0.5 else {}
        events.append(ev(kind, iso(at), conv=conversation, account="acc-1", **extra))
    return events


def _outputs(events: list) -> list[tuple]:
    processor = PartitionProcessor(CONFIG, DictStore())
    seen = []
    for event in events:
        try:
            outputs = processor.process(event)
        except InvalidRecord as error:
            seen.append(("dead", error.code))
            continue
        for output in outputs:
            if type(output) is Revision:
                seen.append(("revision", output.conversation_id, output.record()))
            elif type(output) is Charge:
                seen.append(("charge", output))
            else:
                assert type(output) is Expired
                seen.append(("expired", output.conversation_id, output.state.last_at))
    for output in processor.end_all():
        seen.append(("end", output.conversation_id, output.record()))
    return seen


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_timer_buckets_change_nothing_of_the_outputs_nor_their_order(seed, monkeypatch):
    events = _log(seed)
    real = _outputs(events)
    monkeypatch.setattr(partition, "TIMER_BUCKET_MS", 1)
    each_its_own = _outputs(events)
    monkeypatch.setattr(partition, "TIMER_BUCKET_MS", 100 * 365 * DAY)
    all_in_one = _outputs(events)

    assert real == each_its_own == all_in_one
    kinds = {entry[0] for entry in real}
    assert {"revision", "charge", "expired", "end"} <= kinds  # the log exercises every timer
    assert sum(1 for entry in real if entry[0] == "expired") > 10
