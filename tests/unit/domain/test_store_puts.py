"""What the processor stores: every change, unless the store holds open states itself."""

from __future__ import annotations

import random

from botstream.domain.config import DomainConfig
from botstream.domain.conversation import decode_conversation, encode_conversation
from botstream.domain.partition import DictStore, PartitionProcessor
from botstream.errors import InvalidRecord
from tests.unit.domain.conftest import (
    AGENT_MSG,
    CLICK,
    CLOSED,
    LEFT,
    RETENTION,
    TRIGGERED,
    VISITOR_MSG,
    ev,
    record_of,
)


class EncodingStore(dict):
    """Holds every state encoded, like the live worker between batches; no attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, conversation_id, state) -> None:
        self.puts += 1
        self[conversation_id] = encode_conversation(state)

    def delete(self, conversation_id) -> None:
        self.pop(conversation_id, None)


class CountingDictStore(DictStore):
    def __init__(self) -> None:
        super().__init__()
        self.puts = 0

    def put(self, conversation_id, state) -> None:
        self.puts += 1
        super().put(conversation_id, state)


def _events(seed: int) -> list:
    """Events of a few conversations: reopened, closed, idle, late and duplicated."""
    rnd = random.Random(seed)
    events = []
    for step in range(300):
        conv = f"c-{rnd.randrange(6)}"
        kind = rnd.choice([TRIGGERED, CLICK, VISITOR_MSG, AGENT_MSG, LEFT, CLOSED])
        minutes = step * rnd.choice([0.5, 1, 20, 45]) + rnd.choice([0, 0, -30, -RETENTION / 60_000])
        events.append(ev(kind, minutes, conv=conv, id=f"e-{rnd.randrange(250)}"))
    return events


def _run(store, events) -> tuple[list, int]:
    processor = PartitionProcessor(DomainConfig(), store)
    emitted = []
    for event in events:
        try:
            outputs = processor.process(event)
        except InvalidRecord as error:
            emitted.append(error.code)
            continue
        emitted += [record_of(o) if hasattr(o, "record") else o for o in outputs]
    emitted += [record_of(o) for o in processor.end_all()]
    return emitted, processor.duplicates


def test_store_holding_open_states_gets_the_same_results_with_fewer_puts():
    for seed in range(5):
        events = _events(seed)
        encoding, counting = EncodingStore(), CountingDictStore()
        assert _run(encoding, events) == _run(counting, events)
        assert {k: decode_conversation(v) for k, v in encoding.items()} == dict(counting)
        assert counting.puts < encoding.puts


def test_store_without_the_attribute_sees_every_change():
    store = EncodingStore()
    processor = PartitionProcessor(DomainConfig(), store)
    for minute, kind in enumerate([TRIGGERED, CLICK, VISITOR_MSG, LEFT]):
        processor.process(ev(kind, minute))
        assert store.puts == minute + 1
