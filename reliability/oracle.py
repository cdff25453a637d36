"""The judge of hostile records, independent of botstream's decoders.

A fuzz run must know what should become of every record it sends. Records
broken on purpose carry their reason from the way they were made (see
:mod:`reliability.hostile`); a record whose fate is not known by construction
(a random mutation) is judged here, from the published contract only:

* SPEC section 6: larger than ``max_event_bytes`` is ``too_large``;
* SPEC section 3: not strict UTF-8 JSON is ``invalid_json``. Strict means the
  standard library's parser with every leniency turned off: no NaN or
  Infinity, no invalid UTF-8 and no lone surrogates, plus two limits that
  SPEC leaves open and README records (numbers beyond the IEEE 754 double
  range, as in I-JSON, RFC 7493, and nesting deeper than
  :data:`MAX_JSON_DEPTH` levels);
* anything else that is not a JSON object is ``not_object``;
* ``schemas/widget-event.schema.json`` and ``schemas/plan-record.schema.json``
  decide the rest, with the validators of ``tests/unit/schema_helpers``; each
  schema error names the reason codes a decoder may give for it.

Neither orjson nor any botstream module is used here: a verdict that agrees
with botstream's decoder is evidence, not an echo.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import accumulate

from tests.unit.schema_helpers import validator

#: JSON nested deeper than this is not strict JSON (README: decisions).
MAX_JSON_DEPTH = 1024
#: The largest finite IEEE 754 double: a JSON number beyond it is not strict JSON.
MAX_DOUBLE = sys.float_info.max
#: An integer literal with more digits than this is beyond the double range.
_MAX_DOUBLE_DIGITS = len(str(int(MAX_DOUBLE)))

# The standard parser recurses once per nesting level: let it reach past the
# depth limit, so that depth is judged by MAX_JSON_DEPTH and not by the stack.
sys.setrecursionlimit(max(sys.getrecursionlimit(), 4 * MAX_JSON_DEPTH))

EVENT_TYPES = frozenset(
    {
        "conversation.started",
        "chatbot.triggered",
        "chatbot.message",
        "chatbot.button_clicked",
        "visitor.message",
        "agent.joined",
        "agent.message",
        "conversation.transferred",
        "widget.closed",
        "visitor.left",
        "conversation.closed",
    }
)

#: A JSON string literal, and one escape sequence in one (``\\uXXXX`` captured).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)
_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class NotStrictJson(ValueError):
    """The bytes are not strict UTF-8 JSON."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a record should become: applied when ``valid``, else a dead letter.

    ``codes`` holds the reason codes its dead letter may carry: one when the
    cause is unambiguous, several when a record breaks more than one rule (a
    decoder names the first problem it finds, in an order of its own).
    """

    valid: bool
    codes: frozenset[str] = frozenset()
    #: The parsed object of a valid record.
    value: dict | None = None


def _reject_constant(name: str) -> None:
    raise NotStrictJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise NotStrictJson(f"{text[:20]} is beyond the double range")
    return number


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_DOUBLE_DIGITS:
        raise NotStrictJson("an integer beyond the double range")
    number = int(text)
    if abs(number) > MAX_DOUBLE:
        try:
            float(number)
        except OverflowError:
            raise NotStrictJson("an integer beyond the double range") from None
    return number


_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int
)


def strict_json(raw: bytes) -> object:
    """The JSON value of ``raw``, or :class:`NotStrictJson` (see the module docstring).

    Depth and lone surrogates are judged on the text, not on the parsed value:
    with a repeated key the parser keeps only the last value, and an earlier
    one may hold what makes the text not strict JSON.
    """
    try:
        text = raw.decode("utf-8")  # strict: invalid bytes and encoded surrogates fail
    except UnicodeDecodeError as exc:
        raise NotStrictJson(f"not UTF-8: {exc.reason}") from None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # json.JSONDecodeError is a ValueError
        raise NotStrictJson(str(exc)[:80]) from None
    # Parsed, so every backslash is inside a string, and so is every escape.
    if "\\u" in text:
        _check_surrogate_escapes(text)
    if _depth(text) > MAX_JSON_DEPTH:
        raise NotStrictJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _check_surrogate_escapes(text: str) -> None:
    """NotStrictJson unless every ``\\uD800``-``\\uDBFF`` escape is followed by a low one."""
    expect_low_at = -1
    for match in _ESCAPE.finditer(text):
        code = match.group(1)
        unit = int(code, 16) if code else -1
        if 0xDC00 <= unit <= 0xDFFF:
            if match.start() != expect_low_at:
                raise NotStrictJson("a lone low surrogate")
            expect_low_at = -1
            continue
        if expect_low_at >= 0:
            raise NotStrictJson("a lone high surrogate")
        if 0xD800 <= unit <= 0xDBFF:
            expect_low_at = match.end()
    if expect_low_at >= 0:
        raise NotStrictJson("a lone high surrogate")


def _depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped)."""
    skeleton = _STRING.sub("", text)
    if skeleton.count("[") + skeleton.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper than the limit: no need to count
    steps = [1 if char in "[{" else -1 for char in skeleton if char in "[]{}"]
    return max(accumulate(steps), default=0)


def _shape_verdict(raw: bytes, max_bytes: int) -> Verdict | dict:
    """The verdict of the size and JSON rules, or the parsed object to check further."""
    if len(raw) > max_bytes:
        return Verdict(False, frozenset({"too_large"}))
    try:
        value = strict_json(raw)
    except NotStrictJson:
        return Verdict(False, frozenset({"invalid_json"}))
    if type(value) is not dict:
        return Verdict(False, frozenset({"not_object"}))
    return value


def judge_event(raw: bytes, max_bytes: int = 64 * 1024) -> Verdict:
    """Whether a raw ``widget-events`` value is a valid event, and if not, its reasons."""
    value = _shape_verdict(raw, max_bytes)
    if type(value) is Verdict:
        return value
    codes: set[str] = set()
    for error in validator("widget-event").iter_errors(value):
        codes |= _event_codes(error)
    return Verdict(False, frozenset(codes)) if codes else Verdict(True, value=value)


def judge_plan(raw: bytes, plans: frozenset[str], max_bytes: int = 64 * 1024) -> Verdict:
    """Whether a raw ``account-plans`` value is a valid plan record with a configured plan.

    The published schema's list of plans is the default configuration; ``plans``,
    the names configured for the run, decide instead.
    """
    value = _shape_verdict(raw, max_bytes)
    if type(value) is Verdict:
        return value
    codes: set[str] = set()
    for error in validator("plan-record").iter_errors(value):
        where = error.absolute_path[0] if error.absolute_path else None
        if where == "plan" and error.validator == "enum":
            continue
        codes |= _plan_codes(error)
    if type(value.get("plan")) is str and value["plan"] not in plans:
        codes.add("unknown_plan")
    return Verdict(False, frozenset(codes)) if codes else Verdict(True, value=value)


def _event_codes(error) -> set[str]:
    """The reason codes a schema error of a widget event stands for."""
    if error.validator == "required":
        return {"missing_field"}
    where = error.absolute_path[0] if error.absolute_path else None
    # SPEC calls the required fields "non-empty strings": an empty type or time
    # breaks that as much as it is an unknown type or a bad timestamp.
    if where == "type" and error.validator == "enum":
        return {"unknown_type"} if error.instance else {"unknown_type", "invalid_field"}
    if where == "occurred_at" and error.validator in ("pattern", "format"):
        return {"invalid_timestamp"} if error.instance else {"invalid_timestamp", "invalid_field"}
    return {"invalid_field"}


def _plan_codes(error) -> set[str]:
    """The reason codes a schema error of a plan record stands for."""
    if error.validator == "required":
        return {"missing_field"}
    where = error.absolute_path[0] if error.absolute_path else None
    if where == "effective_at" and error.validator in ("pattern", "format"):
        return {"invalid_timestamp"}
    return {"invalid_field"}


def timestamp_ms(text: str) -> int:
    """Epoch milliseconds of a valid RFC 3339 timestamp, by the standard library's calendar."""
    match = _TIMESTAMP.fullmatch(text)
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, sign, off_hours, off_minutes = match.group(7, 8, 9, 10)
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(off_hours), minutes=int(off_minutes))
        offset = offset if sign == "+" else -offset
    moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    return (moment - _EPOCH) // timedelta(milliseconds=1) + millis
