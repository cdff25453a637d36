"""Widget events (SPEC section 3): the typed event and its decoder.

The decoder is the first thing every input record meets, so it is written for
speed (one ``orjson.loads``, then plain checks) and returns a precise reason for
every way a record can be bad. ``schemas/widget-event.schema.json`` is the
published form of the same rules; a unit test feeds the schema's cases to both.
"""

from __future__ import annotations

import json
from enum import IntEnum
from operator import itemgetter
from typing import Annotated, Any

import msgspec
import orjson

from botstream.domain.timefmt import (
    HOUR_STARTS,
    MILLISECOND_OFFSETS,
    MINUTE_SECOND_OFFSETS,
    parse_timestamp_ms,
)
from botstream.errors import InvalidRecord

MAX_ID_LENGTH = 128


class EventKind(IntEnum):
    """The widget event types, numbered for compact state."""

    CONVERSATION_STARTED = 0
    CHATBOT_TRIGGERED = 1
    CHATBOT_MESSAGE = 2
    CHATBOT_BUTTON_CLICKED = 3
    VISITOR_MESSAGE = 4
    AGENT_JOINED = 5
    AGENT_MESSAGE = 6
    CONVERSATION_TRANSFERRED = 7
    WIDGET_CLOSED = 8
    VISITOR_LEFT = 9
    CONVERSATION_CLOSED = 10


EVENT_TYPES: dict[str, EventKind] = {
    "conversation.started": EventKind.CONVERSATION_STARTED,
    "chatbot.triggered": EventKind.CHATBOT_TRIGGERED,
    "chatbot.message": EventKind.CHATBOT_MESSAGE,
    "chatbot.button_clicked": EventKind.CHATBOT_BUTTON_CLICKED,
    "visitor.message": EventKind.VISITOR_MESSAGE,
    "agent.joined": EventKind.AGENT_JOINED,
    "agent.message": EventKind.AGENT_MESSAGE,
    "conversation.transferred": EventKind.CONVERSATION_TRANSFERRED,
    "widget.closed": EventKind.WIDGET_CLOSED,
    "visitor.left": EventKind.VISITOR_LEFT,
    "conversation.closed": EventKind.CONVERSATION_CLOSED,
}

_CLOSED = EventKind.CONVERSATION_CLOSED

INITIATORS = frozenset({"visitor", "chatbot", "agent"})
CLOSED_BY = frozenset({"visitor", "agent", "chatbot", "system"})

_REQUIRED_STRINGS = ("event_id", "type", "occurred_at", "account_id", "conversation_id")
_BOUNDED_IDS = ("event_id", "account_id", "conversation_id")
#: The required fields of an object as a tuple, in one call (KeyError if one is missing).
_required_fields = itemgetter(*_REQUIRED_STRINGS)
#: ``closed_by`` and ``initiator`` are optional: a valid stand-in for a missing one.
_ABSENT_CLOSED_BY = "system"
_ABSENT_INITIATOR = "visitor"


class WidgetEvent(msgspec.Struct, gc=False):
    """A valid widget event, reduced to what botstream uses. Times are epoch ms (UTC)."""

    event_id: str
    kind: EventKind
    at: int
    account_id: str
    conversation_id: str
    #: True for ``conversation.closed`` with ``closed_by: chatbot``.
    closed_by_chatbot: bool = False


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """An event of the common shape, as msgspec decodes and type-checks it in one pass."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    type: str
    occurred_at: str
    account_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    conversation_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
    visitor_id: Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)] | None = None
    # Decoded whole, not skipped: msgspec does not check the UTF-8 or the number
    # range of a value it skips, and orjson rejects both.
    data: dict[str, Any] | None = None


_decode_wire = msgspec.json.Decoder(_WireEvent).decode


def decode_event(raw: bytes, max_bytes: int = 64 * 1024) -> WidgetEvent:
    """Decode one raw record into a :class:`WidgetEvent`.

    Raises :class:`~botstream.errors.InvalidRecord` with a precise reason when
    the record is too large, not strict UTF-8 JSON, not an object, or breaks
    the widget event schema.
    """
    # This runs once per input record, so the common valid record takes a fast
    # path: msgspec decodes it and checks its fields' types and lengths in one
    # pass into a typed object, where parsing into a dict and testing it in
    # Python took three times orjson's parse alone. A record msgspec refuses (an
    # unknown top-level field, a wrong type, bad JSON...) takes the general fast
    # path below; any record neither accepts, valid in a rarer form or not, goes
    # through _decode_checked, which applies every rule in order and names the
    # first problem. Each fast path accepts a subset of what _decode_checked
    # accepts, with the same result (tests/unit/domain/test_decode_paths.py).
    if len(raw) <= max_bytes:
        try:
            wire = _decode_wire(raw)
        except (ValueError, RecursionError):  # msgspec's errors are ValueErrors
            return _decode_general(raw, max_bytes)
        kind = EVENT_TYPES.get(wire.type)
        occurred_at = wire.occurred_at
        # The canonical form of an hour already seen: timefmt's table lookups, inlined.
        at: int | None
        try:
            at = (
                HOUR_STARTS[occurred_at[:13]]
                + MINUTE_SECOND_OFFSETS[occurred_at[13:19]]
                + MILLISECOND_OFFSETS[occurred_at[19:]]
            )
        except KeyError:
            at = parse_timestamp_ms(occurred_at)
        if kind is not None and at is not None:
            data = wire.data
            # Most events carry neither optional field of data.
            if not data or ("initiator" not in data and "closed_by" not in data):
                return WidgetEvent(wire.event_id, kind, at, wire.account_id, wire.conversation_id)
            initiator = data.get("initiator", _ABSENT_INITIATOR)
            closed_by = data.get("closed_by", _ABSENT_CLOSED_BY)
            if (
                type(initiator) is str
                and initiator in INITIATORS
                and type(closed_by) is str
                and closed_by in CLOSED_BY
            ):
                return WidgetEvent(
                    wire.event_id,
                    kind,
                    at,
                    wire.account_id,
                    wire.conversation_id,
                    kind is _CLOSED and closed_by == "chatbot",
                )
    return _decode_checked(raw, max_bytes)


def _decode_general(raw: bytes, max_bytes: int) -> WidgetEvent:
    """:func:`decode_event`'s fast path for any valid object: parsed to a dict, then tested."""
    # Few, combined tests, where a wrong type shows up as the exception a lookup raises.
    try:
        obj = orjson.loads(raw)
        # TypeError unless obj is an object, KeyError unless it has every field.
        required = _required_fields(obj)
        # TypeError unless all five are strings.
        "".join(required)
        event_id, type_name, occurred_at, account_id, conversation_id = required
        kind = EVENT_TYPES[type_name]
        at = parse_timestamp_ms(occurred_at)
        visitor_id = obj.get("visitor_id")
        data = obj.get("data")
        if (
            at is not None
            and 0 < len(event_id) <= MAX_ID_LENGTH
            and 0 < len(account_id) <= MAX_ID_LENGTH
            and 0 < len(conversation_id) <= MAX_ID_LENGTH
            and (
                visitor_id is None or (type(visitor_id) is str and len(visitor_id) <= MAX_ID_LENGTH)
            )
        ):
            # Most events carry neither optional field of data.
            if data is None or (
                type(data) is dict and "initiator" not in data and "closed_by" not in data
            ):
                return WidgetEvent(event_id, kind, at, account_id, conversation_id)
            # A set lookup is False for a wrong value, TypeError for an unhashable one.
            if type(data) is dict and data.get("initiator", _ABSENT_INITIATOR) in INITIATORS:
                closed_by = data.get("closed_by", _ABSENT_CLOSED_BY)
                if closed_by in CLOSED_BY:
                    return WidgetEvent(
                        event_id,
                        kind,
                        at,
                        account_id,
                        conversation_id,
                        kind is _CLOSED and closed_by == "chatbot",
                    )
    except (ValueError, TypeError, KeyError):  # orjson.JSONDecodeError is a ValueError
        pass
    return _decode_checked(raw, max_bytes)


def event_from_object(obj: dict) -> WidgetEvent:
    """Check a parsed JSON object against the widget event schema and type it.

    For tests and tools: it re-encodes ``obj`` (stdlib json, which keeps any
    integer) and decodes it, so it applies exactly the rules of :func:`decode_event`.
    """
    return decode_event(json.dumps(obj).encode(), max_bytes=1 << 62)


def _decode_checked(raw: bytes, max_bytes: int) -> WidgetEvent:
    """:func:`decode_event` one check at a time, raising the first problem found."""
    if len(raw) > max_bytes:
        raise InvalidRecord(
            "too_large",
            f"{len(raw)} bytes exceeds the limit of {max_bytes}; "
            f"the dead letter keeps the first {max_bytes}",
            keep_bytes=max_bytes,
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord("invalid_json", str(exc)) from None
    if type(obj) is not dict:
        raise InvalidRecord("not_object", f"the record is a JSON {_json_type(obj)}, not an object")
    get = obj.get
    try:
        event_id = obj["event_id"]
        type_name = obj["type"]
        occurred_at = obj["occurred_at"]
        account_id = obj["account_id"]
        conversation_id = obj["conversation_id"]
    except KeyError:
        _reject_required(obj)
    # One combined test for the common, valid case; the slow path names the problem.
    if not (
        type(event_id) is str
        and type(type_name) is str
        and type(occurred_at) is str
        and type(account_id) is str
        and type(conversation_id) is str
        and 0 < len(event_id) <= MAX_ID_LENGTH
        and 0 < len(account_id) <= MAX_ID_LENGTH
        and 0 < len(conversation_id) <= MAX_ID_LENGTH
        and type_name
        and occurred_at
    ):
        _reject_required(obj)
    kind = EVENT_TYPES.get(type_name)
    if kind is None:
        raise InvalidRecord("unknown_type", f"{type_name[:64]!r} is not a widget event type")
    at = parse_timestamp_ms(occurred_at)
    if at is None:
        raise InvalidRecord(
            "invalid_timestamp",
            f"occurred_at {occurred_at[:40]!r} is not an RFC 3339 date-time with an offset",
        )
    visitor_id = get("visitor_id")
    if visitor_id is not None and (type(visitor_id) is not str or len(visitor_id) > MAX_ID_LENGTH):
        raise InvalidRecord(
            "invalid_field", f"visitor_id must be null or a string of at most {MAX_ID_LENGTH}"
        )
    closed_by_chatbot = False
    data = get("data")
    if data:
        if type(data) is not dict:
            _reject_data(data)
        # Most events carry neither field: test presence before fetching.
        if "initiator" in data:
            initiator = data["initiator"]
            if type(initiator) is not str or initiator not in INITIATORS:
                raise InvalidRecord(
                    "invalid_field", "data.initiator must be one of agent, chatbot, visitor"
                )
        if "closed_by" in data:
            closed_by = data["closed_by"]
            if type(closed_by) is not str or closed_by not in CLOSED_BY:
                raise InvalidRecord(
                    "invalid_field",
                    "data.closed_by must be one of agent, chatbot, system, visitor",
                )
            closed_by_chatbot = kind is _CLOSED and closed_by == "chatbot"
    elif data is not None and type(data) is not dict:
        _reject_data(data)
    return WidgetEvent(event_id, kind, at, account_id, conversation_id, closed_by_chatbot)


def _reject_required(obj: dict) -> None:
    """Raise the precise reason why a required field of ``obj`` is bad."""
    for name in _REQUIRED_STRINGS:
        value = obj.get(name)
        if type(value) is not str or not value:
            _bad_required(obj, name)
    for name in _BOUNDED_IDS:
        if len(obj[name]) > MAX_ID_LENGTH:
            raise InvalidRecord(
                "invalid_field", f"{name} is longer than {MAX_ID_LENGTH} characters"
            )
    raise AssertionError("unreachable: the fast check and the slow path disagree")


def _reject_data(data: object) -> None:
    raise InvalidRecord(
        "invalid_field", f"data must be an object or null, not a {_json_type(data)}"
    )


def _bad_required(obj: dict, name: str) -> None:
    if name not in obj:
        raise InvalidRecord("missing_field", f"{name} is required")
    value = obj[name]
    if type(value) is not str:
        raise InvalidRecord("invalid_field", f"{name} must be a string, not a {_json_type(value)}")
    raise InvalidRecord("invalid_field", f"{name} must not be empty")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
