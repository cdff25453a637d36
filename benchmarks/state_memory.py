"""How big is a conversation's state? Serialised size, and RSS per held conversation.

Run: ``.venv/bin/python benchmarks/state_memory.py [--count 1000000]``

A typical open conversation here has 7 events (chatbot triggered, a message,
two clicks, a visitor message, an agent joining, an agent message) and
realistic ids. The RSS cost is measured in a fresh child process per store
kind: peak RSS after building N conversations minus RSS before, divided by N.
It includes everything the partition processor keeps per conversation
(store entry and its timer). "encoded" is how the live worker holds every
conversation between batches (and the replay holds ended ones); "objects" is
how a conversation is held while it is being worked on.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

from botstream.domain.config import DomainConfig
from botstream.domain.conversation import encode_conversation
from botstream.domain.events import event_from_object
from botstream.domain.partition import DictStore, PartitionProcessor

TYPES = (
    "conversation.started",
    "chatbot.triggered",
    "chatbot.message",
    "chatbot.button_clicked",
    "chatbot.button_clicked",
    "visitor.message",
    "agent.joined",
)
START_MS = 1_795_551_300_000


def typical_events(number: int) -> list:
    """The 7 events of open conversation number ``number``."""
    conversation_id = f"c-{number:08x}-4f1e"
    account_id = f"acc-{number % 5000}"
    events = []
    for step, type_name in enumerate(TYPES):
        seconds = (number // 10) % 86_400 + step * 7
        hours, minutes = seconds // 3600 % 24, seconds // 60 % 60
        events.append(
            event_from_object(
                {
                    "event_id": f"e-{number:08x}{step:02x}-9c2a",
                    "type": type_name,
                    "occurred_at": f"2026-11-24T{hours:02d}:{minutes:02d}:"
                    f"{seconds % 60:02d}.{number % 1000:03d}Z",
                    "account_id": account_id,
                    "conversation_id": conversation_id,
                    "data": {"chatbot_id": "bot-1"},
                }
            )
        )
    return events


def rss_kb() -> int:
    """Resident set size now, in KiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(kind: str, count: int) -> dict:
    """Build ``count`` open conversations in a store of ``kind``; RSS bytes per conversation."""
    # An idle timeout longer than the span keeps every conversation open.
    config = DomainConfig(idle_timeout_ms=2 * 86_400_000, retention_ms=8 * 86_400_000)
    store = DictStore()
    processor = PartitionProcessor(config, store)
    before = rss_kb()
    for number in range(count):
        for event in typical_events(number):
            processor.process(event)
        if kind == "encoded":
            # What a key-value table holds: the compact serialised form.
            store[f"c-{number:08x}-4f1e"] = encode_conversation(store[f"c-{number:08x}-4f1e"])
    after = rss_kb()
    assert processor.open_conversations == count
    return {"kind": kind, "count": count, "rss_bytes_each": (after - before) * 1024 / count}


def main() -> None:
    """Print the serialised size and the RSS cost per conversation for both store kinds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--child", choices=["objects", "encoded"])
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.count)))
        return

    store = DictStore()
    processor = PartitionProcessor(
        DomainConfig(idle_timeout_ms=86_400_000 * 2, retention_ms=86_400_000 * 8), store
    )
    for event in typical_events(123_456):
        processor.process(event)
    encoded = encode_conversation(next(iter(store.values())))
    print(f"typical open conversation (7 events): {len(encoded)} bytes serialised")
    print(f"  {encoded.decode()}")
    for kind in ("objects", "encoded"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--count", str(args.count)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out)
        print(
            f"holding {result['count']:,} open conversations as {kind}: "
            f"{result['rss_bytes_each']:.0f} bytes of RSS each"
        )


if __name__ == "__main__":
    main()
