"""The simplified job every peer does, as plain functions (pure: no Kafka here).

Per widget event: parse the JSON; fold it into its conversation's state
(keyed by conversation id, kept in the peer's own store with a changelog);
publish one outcome-like record keyed by conversation id; re-key by account
and count the events of each account. A record that is not a JSON object with
string ``conversation_id`` and ``account_id`` gets an error record instead of
an outcome, and no count. The Kafka Streams peer (``kstreams/``) does the same
in Java.
"""

from __future__ import annotations

import orjson

CLOSING_TYPES = frozenset({"conversation.closed", "visitor.left"})


def parse_event(value: bytes | None) -> dict | None:
    """The event as a dict, or None when it is not a JSON object with string ids."""
    if not value:
        return None
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if (
        type(event) is not dict
        or type(event.get("conversation_id")) is not str
        or type(event.get("account_id")) is not str
    ):
        return None
    return event


def fold(state: dict | None, event: dict) -> dict:
    """The conversation's state after ``event`` (a new dict; ``state`` is not changed)."""
    at = event.get("occurred_at")
    if state is None:
        state = {
            "account_id": event["account_id"],
            "events": 0,
            "clicks": 0,
            "started_at": at,
            "last_at": at,
        }
    else:
        state = dict(state)
    state["events"] += 1
    event_type = event.get("type")
    if event_type == "chatbot.button_clicked":
        state["clicks"] += 1
    if isinstance(at, str) and isinstance(state["last_at"], str) and at > state["last_at"]:
        state["last_at"] = at
    state["last_type"] = event_type
    return state


def outcome(conversation_id: str, state: dict) -> dict:
    """The outcome-like record of a conversation after an event."""
    return {
        **state,
        "conversation_id": conversation_id,
        "ended": state["last_type"] in CLOSING_TYPES,
    }


def error_record(offset: int) -> dict:
    """What a peer publishes for a record it cannot read."""
    return {"error": "invalid event", "offset": offset}
