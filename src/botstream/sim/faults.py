"""Malformed records: the ways real producers get widget events wrong.

Each kind is made from a real event, so it carries a plausible key and
plausible content around the defect. None of them contains a raw newline
(orjson escapes them in strings and the defects add none), so a JSONL file of
records stays one record per line.
"""

from __future__ import annotations

import random

import orjson

#: Malformed kinds with their share of malformed records, and the
#: ``InvalidRecord.code`` botstream's decoder gives each.
MALFORMED_KINDS: dict[str, tuple[float, str]] = {
    # A producer killed mid-write, or a fixed-size buffer.
    "truncated": (0.24, "invalid_json"),
    # A page title sent in Latin-1 instead of UTF-8.
    "invalid_utf8": (0.10, "invalid_json"),
    # An emoji cut in half by a length limit: one escaped surrogate left.
    "lone_surrogate": (0.04, "invalid_json"),
    # An older widget that does not send every required field.
    "missing_field": (0.14, "missing_field"),
    # A newer widget sending event types botstream does not know yet.
    "unknown_type": (0.14, "unknown_type"),
    # Local time without an offset, or a space instead of the T.
    "bad_timestamp": (0.14, "invalid_timestamp"),
    # Numbers where strings belong, a string where an object belongs.
    "wrong_type": (0.10, "invalid_field"),
    # A JavaScript producer serialising a NaN timing measurement.
    "nan": (0.05, "invalid_json"),
    # A batching producer that sends an array of events as one record.
    "not_object": (0.05, "not_object"),
}

_KINDS = tuple(MALFORMED_KINDS)
_CUMULATIVE = []
_total = 0.0
for _share, _ in MALFORMED_KINDS.values():
    _total += _share
    _CUMULATIVE.append(_total)

_REQUIRED = ("event_id", "type", "occurred_at", "account_id", "conversation_id")
_UNKNOWN_TYPES = (
    "visitor.typing",
    "agent.typing",
    "chatbot.rated",
    "conversation.rated",
    "chatbot.button_click",
    "Visitor.Message",
)


def pick_kind(rng: random.Random) -> str:
    """A malformed kind, drawn with the shares of :data:`MALFORMED_KINDS`."""
    draw = rng.random() * _total
    for kind, bound in zip(_KINDS, _CUMULATIVE, strict=True):
        if draw < bound:
            return kind
    return _KINDS[-1]


def malform(rng: random.Random, kind: str, event: dict, value: bytes) -> bytes:
    """A malformed record of ``kind`` made from ``event`` (whose serialised form is ``value``).

    ``event`` is not modified.
    """
    if kind == "truncated":
        # Any proper prefix of a JSON object is invalid JSON.
        return value[: rng.randint(1, len(value) - 1)]
    if kind == "invalid_utf8":
        return value[:-1] + b',"page_title":"Caf\xe9 M\xfcller \x96 Shop"}'
    if kind == "lone_surrogate":
        return value[:-1] + b',"page_title":"Great deals \\ud83d"}'
    if kind == "nan":
        return value[:-1] + b',"latency_ms":NaN}'
    if kind == "not_object":
        return b"[" + value + b"]"
    broken = dict(event)
    if kind == "missing_field":
        del broken[rng.choice(_REQUIRED)]
    elif kind == "unknown_type":
        broken["type"] = rng.choice(_UNKNOWN_TYPES)
    elif kind == "bad_timestamp":
        stamp = event["occurred_at"]
        draw = rng.random()
        if draw < 0.6:
            broken["occurred_at"] = stamp[:-1]  # 2026-11-24T20:15:00.123
        elif draw < 0.8:
            broken["occurred_at"] = stamp.replace("T", " ")
        else:
            broken["occurred_at"] = stamp[:19]  # no fraction, no offset
    elif kind == "wrong_type":
        draw = rng.random()
        if draw < 0.3:
            broken["account_id"] = int(event["account_id"].rpartition("-")[2])
        elif draw < 0.55:
            broken["event_id"] = rng.randint(1, 2**31)
        elif draw < 0.8:
            broken["data"] = "shipping"
        else:
            # Epoch milliseconds instead of a date-time string.
            broken["occurred_at"] = rng.randint(1_700_000_000_000, 1_800_000_000_000)
    else:
        raise ValueError(f"unknown malformed kind {kind!r}")
    return orjson.dumps(broken)
