"""Hostile widget events and plan records, each knowing what should become of it.

:class:`EventForge` and :class:`PlanForge` build valid records and records
broken on purpose, one way at a time, from a catalogue of shapes (every field
of the wrong type, invalid UTF-8, lone surrogates, deep nesting, huge numbers,
sizes around ``max_event_bytes``, a 10 MB value...). A broken record carries
the reason code its dead letter must have, known from how it was broken
(SPEC sections 3, 5 and 6; README's decisions where SPEC is silent).
:func:`mutate` breaks records at random instead; those are judged by
:mod:`reliability.oracle`.

:class:`Feed` strings them into a log that a replay and a live worker can both
run: conversations of valid events interleaved with broken records, exact
redeliveries (duplicates), events of another account (``account_mismatch``),
events dated long before the window (``late``) and mutated records, each with
its expected fate.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from reliability.oracle import judge_event, timestamp_ms

DAY_MS = 86_400_000
MINUTE_MS = 60_000

#: The retention both runs of a log use (``--retention``): ten years, so that a fixed
#: window of event time stays within it by the wall clock for years.
RETENTION_DAYS = 3650

#: What becomes of a record that is not a dead letter.
APPLIED = "applied"
DUPLICATE = "duplicate"

EVENT_TYPES = (
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
)
REQUIRED = ("event_id", "type", "occurred_at", "account_id", "conversation_id")
IDS = ("event_id", "account_id", "conversation_id")
PLAN_FIELDS = ("account_id", "plan", "chatbot_pack", "effective_at")

#: A value of every JSON type but string, for "wrong type" shapes.
WRONG_TYPES: dict[str, object] = {
    "null": None,
    "true": True,
    "false": False,
    "zero": 0,
    "integer": 17,
    "negative": -1,
    "float": 1.5,
    "big-float": 1e300,
    "empty-array": [],
    "array": ["chatbot.triggered"],
    "empty-object": {},
    "object": {"id": "x"},
}

#: Timestamps SPEC section 3 rejects, as the value of occurred_at or effective_at.
BAD_TIMESTAMPS = (
    "2026-11-24t20:15:00Z",
    "2026-11-24T20:15:00z",
    "2026-11-24T20:15:00",
    "2026-11-24 20:15:00Z",
    "2026-02-30T00:00:00Z",
    "2027-02-29T12:00:00Z",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
    "2026-W48-2T10:00:00Z",
    "2026-328T10:00:00Z",
    "20261124T201500Z",
    "2026-11-24",
    "20:15:00Z",
    "2026-11-24T24:00:00Z",
    "2026-11-24T20:60:00Z",
    "2026-11-24T20:15:60Z",
    "2026-11-24T20:15:00+0100",
    "2026-11-24T20:15:00+01",
    "2026-11-24T20:15:00+24:00",
    "2026-11-24T20:15:00-00:60",
    "2026-11-24T20:15:00.Z",
    "2026-11-24T20:15:00,123Z",
    "2026-11-24T20:15:00Z\n",
    " 2026-11-24T20:15:00Z",
    "\uff12\uff10\uff12\uff16-11-24T20:15:00Z",
    "2026-11-24T20:15:00.\u0661\u0662Z",
    "+002026-11-24T20:15:00Z",
    "2026-13-01T00:00:00Z",
    "2026-00-10T00:00:00Z",
    "2026-11-00T00:00:00Z",
    "now",
    "1764015300",
)
UNKNOWN_TYPES = (
    "chatbot.reacted",
    "Chatbot.Triggered",
    "chatbot.triggered ",
    " visitor.left",
    "chatbot.triggered\u0000",
    "conversation",
    "chatbot_triggered",
    "visitor.left\n",
    "\u0441hatbot.message",  # a Cyrillic "c"
)
BAD_ENUM_VALUES = (None, "", "Visitor", "bot", "SYSTEM", "visitor ", 1, True, [], {}, ["chatbot"])

#: Bytes that are not UTF-8, put inside a JSON string.
INVALID_UTF8 = {
    "byte-ff": b"\xff",
    "byte-fe": b"\xfe",
    "lone-continuation": b"\x80",
    "bad-2-byte": b"\xc3\x28",
    "bad-3-byte": b"\xe2\x28\xa1",
    "bad-4-byte": b"\xf0\x28\x8c\xbc",
    "overlong-slash": b"\xc0\xaf",
    "overlong-nul": b"\xe0\x80\x80",
    "5-byte": b"\xf8\x88\x80\x80\x80",
    "beyond-10ffff": b"\xf4\x90\x80\x80",
    "cesu-high-surrogate": b"\xed\xa0\x80",
    "cesu-low-surrogate": b"\xed\xbf\xbf",
    "cesu-pair": b"\xed\xa0\xbd\xed\xb8\x80",
    "truncated-3-byte": b"\xe2\x82",
    "latin1-e-acute": "\u00e9".encode("latin-1"),
}
#: JSON string escapes that decode to a lone surrogate.
LONE_SURROGATES = {
    "high": b"\\ud800",
    "low": b"\\udfff",
    "high-then-letter": b"\\ud83dA",
    "high-then-escaped-letter": b"\\ud83d\\u0041",
    "reversed-pair": b"\\ude00\\ud83d",
    "two-highs": b"\\ud83d\\ud83d",
}
#: Literals that are not strict JSON values (README: numbers beyond the double range).
NOT_JSON_NUMBERS = {
    "nan": b"NaN",
    "infinity": b"Infinity",
    "minus-infinity": b"-Infinity",
    "exponent-overflow": b"1e400",
    "negative-exponent-overflow": b"-1.5e309",
    "integer-310-digits": b"1" + b"0" * 309,
    "integer-5000-digits": b"9" * 5000,
    "leading-zero": b"012",
    "plus-sign": b"+1",
    "bare-fraction": b".5",
    "trailing-dot": b"1.",
    "hex": b"0x1F",
    "python-none": b"None",
    "python-true": b"True",
}
#: Numbers that are strict JSON, however large or small (valid in ignored fields).
HUGE_NUMBERS = (
    b"18446744073709551616",
    b"-9223372036854775809",
    b"1" + b"0" * 308,
    b"-" + b"9" * 300,
    b"1.7976931348623157e308",
    b"-1.7976931348623157e308",
    b"1e-400",
    b"4.9e-324",
    b"0.000000000000000000000000000000000000001",
    b"123456789012345678901234567890.123456789e-5",
    b"-0",
    b"-0.0e+0",
)
#: Ids that are valid: any string of 1 to 128 code points, bytes do not count.
ODD_IDS = (
    "\u0000",
    "a\u0000b",
    "\U0001f600" * 128,
    "\u00e9" * 128,
    "x" * 128,
    "\u202eevil",
    "e\u0301",
    "\ufeff",
    " ",
    "\t\n",
    "<script>",
    "'; DROP TABLE x;--",
    "\\",
    '"',
    "\u2028\u2029",
    "\uffff",
    "\U0010ffff",
)
#: Keys a Kafka record may have besides its conversation id.
ODD_KEYS = (
    None,
    b"",
    b"\xff\xfe\xfd",
    b"\xc3\x28",
    b"\xed\xa0\x80",
    b"\x00\x00\x00\x00",
    b"\x80" * 64,
    bytes(range(256)),
)


def dumps(obj: object) -> bytes:
    """Compact UTF-8 JSON, the form widgets send."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def format_time(ms: int, rng: random.Random) -> str:
    """``ms`` as an RFC 3339 timestamp in one of its many valid forms (millisecond exact)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    form = rng.random()
    if form < 0.15:
        offset_minutes = rng.choice((-720, -300, -210, 60, 330, 345, 840, 0))
        moment = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    millis = ms % 1000
    if millis or rng.random() < 0.5:
        digits = f"{millis:03d}"
        if rng.random() < 0.1:
            digits += "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9)))
        elif rng.random() < 0.1 and millis % 100 == 0:
            digits = digits[:1]
        text += "." + digits
    offset = moment.utcoffset()
    if not offset:
        return text + ("Z" if form >= 0.05 else rng.choice(("+00:00", "-00:00")))
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def nested(depth: int, leaf: object = 1) -> object:
    """A value nested ``depth`` levels deep (arrays and objects alternating)."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


@dataclass(slots=True)
class Hostile:
    """One record to send, and what must become of it."""

    key: bytes | None
    value: bytes
    #: How it was made: ``valid:...``, ``broken:<shape>``, ``mutated``, ``duplicate``...
    shape: str
    #: APPLIED, DUPLICATE, or the reason codes its dead letter may have.
    expect: frozenset[str] | str
    #: The conversation an applied event counts for.
    conversation_id: str | None = None

    @property
    def bad(self) -> bool:
        """Whether it must become a dead letter."""
        return type(self.expect) is frozenset

    @property
    def jsonl_ok(self) -> bool:
        """Whether it can be one line of a JSONL file and be read back as the same record.

        ``botstream replay`` splits lines at ``\\n``, skips blank ones and drops
        one trailing ``\\r``: such records can only travel through Kafka.
        """
        value = self.value
        return bool(value) and not value.isspace() and b"\n" not in value and value[-1] != 13


def _codes(*codes: str) -> frozenset[str]:
    return frozenset(codes)


# -- events ---------------------------------------------------------------------------


class EventForge:
    """Valid widget events, and events broken in one known way each."""

    def __init__(self, rng: random.Random, max_bytes: int) -> None:
        self.rng = rng
        self.max_bytes = max_bytes
        self._serial = 0

    def serial(self) -> int:
        """A number never handed out before by this forge."""
        self._serial += 1
        return self._serial

    def event(
        self,
        type_name: str,
        at_ms: int,
        account_id: str,
        conversation_id: str,
        data: dict | None = None,
    ) -> dict:
        """A valid event object, with the optional fields in one of their valid forms."""
        rng = self.rng
        obj = {
            "event_id": f"e-{self.serial()}",
            "type": type_name,
            "occurred_at": format_time(at_ms, rng),
            "account_id": account_id,
            "conversation_id": conversation_id,
        }
        roll = rng.random()
        if roll < 0.6:
            obj["visitor_id"] = f"v-{rng.randrange(10**6)}"
        elif roll < 0.7:
            obj["visitor_id"] = None
        elif roll < 0.75:
            obj["visitor_id"] = rng.choice(("", "\u0000", "v" * 128, "\U0001f600" * 128))
        if data is not None:
            obj["data"] = data
        elif rng.random() < 0.1:
            obj["data"] = None
        if rng.random() < 0.08:
            self._add_ignored(obj)
        if rng.random() < 0.03:
            # Any string of 1 to 128 code points is an id; the serial keeps it unique.
            obj["event_id"] = f"{rng.choice(ODD_IDS)}-{self.serial()}"[-128:]
        return obj

    def _add_ignored(self, obj: dict) -> None:
        """Fields botstream must ignore, of every type, some deep or huge."""
        rng = self.rng
        choice = rng.randrange(7)
        if choice == 0:
            obj["source"] = nested(rng.choice((10, 100, 1000, 1022)))
        elif choice == 1:
            obj["widget"] = {"version": "2.14", "screen": [1920, 1080], "ratio": 1.25}
        elif choice == 2:
            obj["score"] = None
            obj["tags"] = ["a", 1, None, True, {"b": []}]
        elif choice == 3:
            obj["unicode"] = "".join(rng.choice(ODD_IDS) for _ in range(3))
        elif choice == 4:
            data = obj.get("data") if type(obj.get("data")) is dict else {}
            # Unchecked data fields of any type, on any event type.
            data = {**data, "chatbot_id": rng.choice(list(WRONG_TYPES.values())), "to": [None]}
            obj["data"] = data
        else:
            obj["extra"] = None
        # Numbers are left to the raw form: json.dumps cannot write some of them.

    def with_huge_number(self, raw: bytes) -> bytes:
        """``raw`` (an object) with an ignored field holding a huge but strict JSON number."""
        return raw[:-1] + b',"amount":' + self.rng.choice(HUGE_NUMBERS) + b"}"

    def padded(self, obj: dict, size: int, multibyte: bool = False) -> bytes:
        """``obj`` with an ignored field padded so that the record is exactly ``size`` bytes."""
        base = dumps({**obj, "padding": ""})
        missing = size - len(base)
        if missing < 0:
            raise ValueError(f"cannot pad to {size} bytes: the record has {len(base)}")
        # Multibyte: three-byte characters, then ASCII to land on the exact size.
        pad = "\u20ac" * (missing // 3) + "p" * (missing % 3) if multibyte else "p" * missing
        raw = dumps({**obj, "padding": pad})
        assert len(raw) == size, (len(raw), size)
        return raw

    # -- the catalogue of broken events: (name, builder(obj) -> (bytes, codes)) ------------

    def broken_shapes(self) -> list[tuple[str, Callable[[dict], tuple[bytes, frozenset[str]]]]]:
        """Every way to break a valid event object, each with its reason codes."""
        shapes: list[tuple[str, Callable]] = []
        invalid_field, invalid_json = _codes("invalid_field"), _codes("invalid_json")

        def set_field(name: str, value: object, codes: frozenset[str]):
            return lambda obj: (dumps({**obj, name: value}), codes)

        def drop_field(name: str):
            return lambda obj: (dumps({k: v for k, v in obj.items() if k != name}), missing)

        missing = _codes("missing_field")
        for name in REQUIRED:
            shapes.append((f"missing:{name}", drop_field(name)))
            shapes.append((f"empty:{name}", set_field(name, "", invalid_field)))
            for kind, value in WRONG_TYPES.items():
                shapes.append((f"wrong-type:{name}:{kind}", set_field(name, value, invalid_field)))
        for name in IDS:
            shapes.append((f"too-long:{name}", set_field(name, "x" * 129, invalid_field)))
            shapes.append(
                (f"too-long-multibyte:{name}", set_field(name, "\U0001f600" * 129, invalid_field))
            )
        for text in UNKNOWN_TYPES:
            shapes.append(
                (f"unknown-type:{text!r}", set_field("type", text, _codes("unknown_type")))
            )
        for text in BAD_TIMESTAMPS:
            shapes.append(
                (
                    f"bad-timestamp:{text!r}",
                    set_field("occurred_at", text, _codes("invalid_timestamp")),
                )
            )
        for kind, value in WRONG_TYPES.items():
            if value is not None:
                shapes.append(
                    (f"wrong-type:visitor_id:{kind}", set_field("visitor_id", value, invalid_field))
                )
            if type(value) is not dict and value is not None:
                shapes.append((f"wrong-type:data:{kind}", set_field("data", value, invalid_field)))
        shapes.append(("too-long:visitor_id", set_field("visitor_id", "v" * 129, invalid_field)))
        for bad in ("", "text", "0"):
            shapes.append(
                (f"wrong-type:data:string-{bad!r}", set_field("data", bad, invalid_field))
            )
        for name in ("initiator", "closed_by"):
            for value in BAD_ENUM_VALUES:
                shapes.append(
                    (
                        f"bad-enum:data.{name}:{value!r}",
                        lambda obj, name=name, value=value: (
                            dumps({**obj, "data": {"chatbot_id": "bot-1", name: value}}),
                            invalid_field,
                        ),
                    )
                )
        for name, raw in INVALID_UTF8.items():
            shapes.append((f"invalid-utf8:{name}:in-id", self._raw_in("conversation_id", raw)))
            shapes.append((f"invalid-utf8:{name}:in-ignored", self._raw_in("note", raw)))
            shapes.append((f"invalid-utf8:{name}:in-key", self._raw_key(raw)))
        for name, raw in LONE_SURROGATES.items():
            shapes.append((f"lone-surrogate:{name}:in-id", self._raw_in("event_id", raw)))
            shapes.append((f"lone-surrogate:{name}:in-ignored", self._raw_in("note", raw)))
            shapes.append((f"lone-surrogate:{name}:in-key", self._raw_key(raw)))
        for name, raw in NOT_JSON_NUMBERS.items():
            shapes.append(
                (
                    f"not-json-number:{name}",
                    lambda obj, raw=raw: (dumps(obj)[:-1] + b',"n":' + raw + b"}", invalid_json),
                )
            )
        shapes += [
            ("deep:1025-levels", lambda obj: (dumps({**obj, "deep": nested(1024)}), invalid_json)),
            ("deep:30000-arrays", lambda obj: (b"[" * 30000 + b"]" * 30000, invalid_json)),
            ("deep:unclosed", lambda obj: (b'{"a":' + b"[" * 5000, invalid_json)),
            ("json:truncated", self._truncated),
            ("json:trailing-garbage", lambda obj: (dumps(obj) + b"x", invalid_json)),
            ("json:two-objects", lambda obj: (dumps(obj) + dumps(obj), invalid_json)),
            ("json:trailing-comma", lambda obj: (dumps(obj)[:-1] + b",}", invalid_json)),
            ("json:single-quotes", lambda obj: (dumps(obj).replace(b'"', b"'"), invalid_json)),
            ("json:comment", lambda obj: (b"/*c*/" + dumps(obj), invalid_json)),
            ("json:unquoted-key", lambda obj: (b"{event_id:" + dumps(obj)[12:], invalid_json)),
            ("json:bom", lambda obj: (b"\xef\xbb\xbf" + dumps(obj), invalid_json)),
            ("json:utf16", lambda obj: (json.dumps(obj).encode("utf-16"), invalid_json)),
            ("json:utf32-le", lambda obj: (json.dumps(obj).encode("utf-32-le"), invalid_json)),
            ("json:control-char", self._raw_in("note", b"\x01")),
            ("json:raw-tab-in-string", self._raw_in("note", b"\t")),
            ("json:nul-byte", self._raw_in("note", b"\x00")),
            ("json:bad-escape", self._raw_in("note", b"\\x41")),
            ("json:short-unicode-escape", self._raw_in("note", b"\\u12")),
            ("json:form-feed-whitespace", lambda obj: (b"\x0c" + dumps(obj), invalid_json)),
            ("json:nbsp-whitespace", lambda obj: ("\u00a0".encode() + dumps(obj), invalid_json)),
            ("json:only-open-brace", lambda obj: (b"{", invalid_json)),
            # A repeated key keeps its last value, but the text must be strict JSON
            # all through: what an earlier value breaks still counts.
            ("repeated-key:lone-surrogate-first", _repeated(b'"\\ud800"', invalid_json)),
            ("repeated-key:nan-first", _repeated(b"NaN", invalid_json)),
            ("repeated-key:1025-levels-first", _repeated(b"[" * 1025 + b"]" * 1025, invalid_json)),
            ("repeated-key:huge-number-first", _repeated(b"1e999", invalid_json)),
            (
                "json:garbage-bytes",
                lambda obj: (self.rng.randbytes(self.rng.randint(1, 200)), None),
            ),
        ]
        for name, value in (
            ("empty-array", b"[]"),
            ("array-of-event", None),
            ("string", b'"chatbot.triggered"'),
            ("integer", b"17"),
            ("float", b"-1.5e3"),
            ("true", b"true"),
            ("false", b"false"),
            ("null", b"null"),
            ("nested-arrays", b"[[[]]]"),
        ):
            shapes.append(
                (
                    f"not-object:{name}",
                    lambda obj, value=value: (
                        value or b"[" + dumps(obj) + b"]",
                        _codes("not_object"),
                    ),
                )
            )
        too_large = _codes("too_large")
        shapes += [
            ("size:limit+1", lambda obj: (self.padded(obj, self.max_bytes + 1), too_large)),
            (
                "size:limit+1-multibyte",
                lambda obj: (self.padded(obj, self.max_bytes + 1, multibyte=True), too_large),
            ),
            ("size:limit+100", lambda obj: (self.padded(obj, self.max_bytes + 100), too_large)),
            ("size:2x-limit", lambda obj: (self.padded(obj, 2 * self.max_bytes), too_large)),
            (
                "size:limit+1-invalid-json",
                lambda obj: (b"\xff" * (self.max_bytes + 1), too_large),
            ),
        ]
        return shapes

    def _raw_in(self, name: str, raw: bytes):
        """A builder that puts raw bytes into the string value of field ``name``."""

        def build(obj: dict) -> tuple[bytes, frozenset[str]]:
            marker = "\u0000MARK\u0000"
            text = dumps({**obj, name: f"a{marker}b"})
            return text.replace(b"\\u0000MARK\\u0000", raw), _codes("invalid_json")

        return build

    def _raw_key(self, raw: bytes):
        """A builder that puts raw bytes into an object key."""

        def build(obj: dict) -> tuple[bytes, frozenset[str]]:
            return dumps(obj)[:-1] + b',"k' + raw + b'":1}', _codes("invalid_json")

        return build

    def _truncated(self, obj: dict) -> tuple[bytes, frozenset[str]]:
        raw = dumps(obj)
        # Any proper prefix of a JSON object without trailing whitespace is not JSON.
        return raw[: self.rng.randrange(1, len(raw))], _codes("invalid_json")


# -- plan records -----------------------------------------------------------------------


class PlanForge:
    """Valid plan records, and plan records broken in one known way each."""

    def __init__(self, rng: random.Random, max_bytes: int, plans: tuple[str, ...]) -> None:
        self.rng = rng
        self.max_bytes = max_bytes
        self.plans = plans

    def plan(self, account_id: str, effective_ms: int) -> dict:
        """A valid plan record."""
        rng = self.rng
        obj = {
            "account_id": account_id,
            "plan": rng.choice(self.plans),
            "chatbot_pack": rng.random() < 0.3,
            "effective_at": format_time(effective_ms, rng),
        }
        if rng.random() < 0.1:
            obj["note"] = nested(rng.choice((3, 500)))
        return obj

    def broken_shapes(self) -> list[tuple[str, Callable[[dict], tuple[bytes, frozenset[str]]]]]:
        """Every way to break a valid plan record, each with its reason codes."""
        shapes: list[tuple[str, Callable]] = []
        invalid_field = _codes("invalid_field")

        def set_field(name: str, value: object, codes: frozenset[str]):
            return lambda obj: (dumps({**obj, name: value}), codes)

        for name in PLAN_FIELDS:
            shapes.append(
                (
                    f"missing:{name}",
                    lambda obj, name=name: (
                        dumps({k: v for k, v in obj.items() if k != name}),
                        _codes("missing_field"),
                    ),
                )
            )
            for kind, value in WRONG_TYPES.items():
                if name == "chatbot_pack" and type(value) is bool:
                    continue
                shapes.append((f"wrong-type:{name}:{kind}", set_field(name, value, invalid_field)))
        for value in ("true", "false", "", "yes"):
            shapes.append(
                (
                    f"wrong-type:chatbot_pack:{value!r}",
                    set_field("chatbot_pack", value, invalid_field),
                )
            )
        shapes.append(("empty:account_id", set_field("account_id", "", invalid_field)))
        shapes.append(("too-long:account_id", set_field("account_id", "a" * 129, invalid_field)))
        for value in ("gold", "Standard", "PRO", "", "pro ", "standard\u0000", "enterprise"):
            shapes.append(
                (f"unknown-plan:{value!r}", set_field("plan", value, _codes("unknown_plan")))
            )
        for text in BAD_TIMESTAMPS:
            shapes.append(
                (
                    f"bad-timestamp:{text!r}",
                    set_field("effective_at", text, _codes("invalid_timestamp")),
                )
            )
        invalid_json = _codes("invalid_json")
        for name, raw in INVALID_UTF8.items():
            shapes.append((f"invalid-utf8:{name}", self._raw_in("account_id", raw)))
        for name, raw in LONE_SURROGATES.items():
            shapes.append((f"lone-surrogate:{name}", self._raw_in("plan", raw)))
        for name, raw in NOT_JSON_NUMBERS.items():
            shapes.append(
                (
                    f"not-json-number:{name}",
                    lambda obj, raw=raw: (dumps(obj)[:-1] + b',"n":' + raw + b"}", invalid_json),
                )
            )
        shapes += [
            ("deep:1025-levels", lambda obj: (dumps({**obj, "deep": nested(1024)}), invalid_json)),
            (
                "json:truncated",
                lambda obj: (dumps(obj)[: self.rng.randrange(1, len(dumps(obj)))], invalid_json),
            ),
            ("json:bom", lambda obj: (b"\xef\xbb\xbf" + dumps(obj), invalid_json)),
            ("repeated-key:lone-surrogate-first", _repeated(b'"\\udfff"', invalid_json)),
            ("not-object:array", lambda obj: (b"[" + dumps(obj) + b"]", _codes("not_object"))),
            ("not-object:null", lambda obj: (b"null", _codes("not_object"))),
            ("not-object:string", lambda obj: (b'"pro"', _codes("not_object"))),
            (
                "size:limit+1",
                lambda obj: (_pad_to(obj, self.max_bytes + 1), _codes("too_large")),
            ),
        ]
        return shapes

    def _raw_in(self, name: str, raw: bytes):
        def build(obj: dict) -> tuple[bytes, frozenset[str]]:
            text = dumps({**obj, name: "a\u0000MARK\u0000b"})
            return text.replace(b"\\u0000MARK\\u0000", raw), _codes("invalid_json")

        return build


def _repeated(first: bytes, codes: frozenset[str]):
    """A builder: the record with a field ``note`` given twice, first as ``first``."""
    return lambda obj: (b'{"note":' + first + b"," + dumps({**obj, "note": 1})[1:], codes)


def _shape_weight(name: str) -> float:
    """How often a broken shape is drawn: large records rarely, to keep a long log small."""
    if name.startswith("size:"):
        return 0.02
    if name.startswith("deep:30000"):
        return 0.05
    return 1.0


def _pad_to(obj: dict, size: int) -> bytes:
    base = dumps({**obj, "padding": ""})
    return dumps({**obj, "padding": "p" * (size - len(base))})


# -- random mutation ----------------------------------------------------------------------

#: Tokens a byte mutation inserts or writes over the record.
_TOKENS = (
    b'"', b"\\", b"{", b"}", b"[", b"]", b":", b",", b"0", b"-", b"e", b".", b" ", b"\n",
    b"\x00", b"\xff", b"\x80", b"\xc3", b"\\u", b"\\ud800", b"\\udc00", b"\xed\xa0\x80",
    b"NaN", b"1e999", b"null", b"true", b'""', b"{}", b"[]", b"Z", b"T", b"+01:00",
    b"\\u0000", b"9" * 30,
)  # fmt: skip


def mutate(raw: bytes, rng: random.Random) -> bytes:
    """``raw`` after one to four random byte-level edits."""
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            index = min(at, len(data) - 1)
            data[index] ^= 1 << rng.randrange(8)
        elif op == 1 and data:
            index = min(at, len(data) - 1)
            data[index : index + 1] = rng.choice(_TOKENS)
        elif op == 2:
            data[at:at] = rng.choice(_TOKENS)
        elif op == 3 and data:
            del data[at : at + rng.randint(1, 8)]
        elif op == 4 and data:
            end = min(len(data), at + rng.randint(1, 16))
            data[at:at] = data[at:end]
        elif op == 5 and data:
            data[at : at + 1] = bytes([rng.randrange(256)])
        elif op == 6:
            del data[at:]
    return bytes(data)


def mutate_structure(obj: dict, rng: random.Random) -> dict:
    """``obj`` with one to three fields (top level or in ``data``) removed, renamed or retyped."""
    obj = json.loads(json.dumps(obj))
    pool = [*WRONG_TYPES.values(), "", "x" * 129, *BAD_TIMESTAMPS[:8], *UNKNOWN_TYPES[:3]]
    pool += ["chatbot", "system", "visitor", "agent", "pro", "gold", "chatbot.triggered"]
    for _ in range(rng.randint(1, 3)):
        target = obj
        if type(obj.get("data")) is dict and rng.random() < 0.3:
            target = obj["data"]
        names = [*target, "initiator", "closed_by", "extra"]
        name = rng.choice(names)
        op = rng.random()
        if op < 0.2:
            target.pop(name, None)
        elif op < 0.3 and name in target:
            target[name.upper()] = target.pop(name)
        else:
            # A copy: the pool's lists and objects are shared, and may be mutated next.
            target[name] = copy.deepcopy(rng.choice(pool))
    return obj


# -- a log of hostile traffic -------------------------------------------------------------


@dataclass
class FeedConfig:
    """The shape of a hostile log."""

    seed: int = 7
    events: int = 100_000
    #: Accounts of the valid conversations; each has one valid plan record.
    accounts: int = 200
    #: Plan records broken on purpose (besides one valid record per account).
    broken_plans: int = 400
    max_bytes: int = 64 * 1024
    plans: tuple[str, ...] = ("standard", "pro")
    #: The runs' retention: the window must be younger than this, by the wall clock too.
    retention_ms: int = RETENTION_DAYS * DAY_MS
    #: Event time of the valid events: ``window_days`` days ending at ``window_end_ms``.
    #: A fixed date, so that a seed always makes the same log; it must be in the past,
    #: and within the retention of the wall clock, for a live worker to agree with a replay.
    window_end_ms: int = 1_704_153_600_000  # 2024-01-02T00:00:00Z
    window_days: float = 1.0
    #: Share of the records: valid events, redeliveries, account mismatches, late events,
    #: broken by construction, mutated (judged by the oracle). The rest: none.
    shares: dict[str, float] = field(
        default_factory=lambda: {
            "valid": 0.52,
            "duplicate": 0.02,
            "account_mismatch": 0.01,
            "late": 0.01,
            "broken": 0.32,
            "mutated": 0.12,
        }
    )
    #: Records of 10 MiB and 1 MiB (too_large), and valid records of exactly the limit.
    ten_mib: int = 1
    one_mib: int = 2
    at_limit: int = 10
    #: Kafka keys other than the conversation id on records whose key does not matter.
    odd_key_share: float = 0.2


class Feed:
    """A hostile log of widget events and plan records, every record with its expected fate.

    Valid events belong to conversations of a handful of events each, keyed by
    their conversation id (so a conversation stays in one partition). Records
    whose key does not matter (dead letters, one-event conversations) get odd
    keys too: none, empty, not UTF-8. A mutated record is kept only when its
    fate does not depend on the partition it lands in: bad, or valid as a
    conversation of its own, dated inside the window.
    """

    def __init__(self, config: FeedConfig) -> None:
        self.config = config
        self.rng = rng = random.Random(config.seed)
        self.window_end_ms = config.window_end_ms
        self.window_start_ms = self.window_end_ms - int(config.window_days * DAY_MS)
        self.events = EventForge(rng, config.max_bytes)
        self.plan_forge = PlanForge(rng, config.max_bytes, config.plans)
        self.event_shapes = self.events.broken_shapes()
        self.event_weights = [_shape_weight(name) for name, _ in self.event_shapes]
        self.plan_shapes = self.plan_forge.broken_shapes()
        self.accounts = [f"acc-{n}" for n in range(config.accounts)]
        self.run = f"{config.seed}"
        #: Conversation id -> account, for every conversation an applied event opened.
        self.conversations: dict[str, str] = {}
        #: Events of open conversations still to send: (conversation, [(type, ms, data)]).
        self._open: list[tuple[str, list]] = []
        #: Valid events already sent, for redeliveries (key, value, conversation).
        self._sent: list[tuple[bytes, bytes, str]] = []
        self._used_ids: set[str] = set()

    # -- plans ----------------------------------------------------------------------------

    def plan_records(self) -> Iterator[Hostile]:
        """One valid plan per account (effective before the window), and broken ones."""
        rng = self.rng
        records = []
        for account in self.accounts:
            effective = self.window_start_ms - rng.randrange(1, 60) * DAY_MS
            raw = dumps(self.plan_forge.plan(account, effective))
            records.append(Hostile(account.encode(), raw, "valid:plan", APPLIED))
        weights = [_shape_weight(name) for name, _ in self.plan_shapes]
        for _ in range(self.config.broken_plans):
            name, build = rng.choices(self.plan_shapes, weights)[0]
            obj = self.plan_forge.plan(rng.choice(self.accounts), self.window_start_ms - DAY_MS)
            raw, codes = build(obj)
            records.append(Hostile(self._odd_key(obj["account_id"]), raw, f"broken:{name}", codes))
        # Each account has one valid record, so their order changes no limit.
        rng.shuffle(records)
        yield from records

    # -- events ---------------------------------------------------------------------------

    def event_records(self) -> Iterator[Hostile]:
        """``config.events`` records in the order to send them."""
        config, rng = self.config, self.rng
        count = config.events
        big = {}
        for _ in range(config.ten_mib):
            big[rng.randrange(count)] = 10 * 1024 * 1024
        for _ in range(config.one_mib):
            big[rng.randrange(count)] = 1024 * 1024
        at_limit = {rng.randrange(count) for _ in range(config.at_limit)}
        kinds = list(config.shares)
        weights = [config.shares[k] for k in kinds]
        for index in range(count):
            if index in big:
                yield self._huge(big[index])
                continue
            if index in at_limit:
                yield self._valid_event(size=config.max_bytes - rng.randrange(2))
                continue
            kind = rng.choices(kinds, weights)[0]
            record = None
            if kind == "duplicate" and self._sent:
                key, value, conversation = rng.choice(self._sent[-5000:])
                record = Hostile(key, value, "duplicate", DUPLICATE, conversation)
            elif kind in ("account_mismatch", "late") and self._sent:
                record = self._post_decode(kind)
            elif kind == "broken":
                record = self._broken_event()
            elif kind == "mutated":
                record = self._mutated()
            yield record or self._valid_event()

    def _conversation_id(self) -> str:
        rng = self.rng
        while True:
            serial = self.events.serial()
            if rng.random() < 0.02:
                cid = (rng.choice(ODD_IDS) + f"-{serial}")[-128:]
            else:
                cid = f"c-{self.run}-{serial}"
            if cid not in self._used_ids:
                self._used_ids.add(cid)
                return cid

    def _new_conversation(self) -> tuple[str, list]:
        """A conversation's events to come: a story, its times, a little out of order."""
        rng = self.rng
        story = rng.choice(_STORIES)
        start = self.window_start_ms + rng.randrange(self.window_end_ms - self.window_start_ms)
        at = start
        steps = []
        for type_name, data in story:
            steps.append((type_name, at, data))
            at += rng.randrange(500, 240_000)
        for i in range(len(steps) - 1):
            if rng.random() < 0.1:
                steps[i], steps[i + 1] = steps[i + 1], steps[i]
        return self._conversation_id(), steps

    def _valid_event(self, size: int | None = None) -> Hostile:
        rng = self.rng
        if len(self._open) < 400 or rng.random() < 0.05:
            self._open.append(self._new_conversation())
        slot = rng.randrange(len(self._open))
        conversation_id, steps = self._open[slot]
        type_name, at, data = steps.pop(0)
        if not steps:
            self._open[slot] = self._open[-1]
            self._open.pop()
        account = self.conversations.get(conversation_id)
        if account is None:
            account = self.conversations[conversation_id] = rng.choice(self.accounts)
        obj = self.events.event(
            type_name, at, account, conversation_id, dict(data) if data else None
        )
        if size is not None:
            value = self.events.padded(obj, size, multibyte=rng.random() < 0.5)
            shape = f"valid:size-{size}"
        elif rng.random() < 0.01:
            value = self.events.with_huge_number(dumps(obj))
            shape = "valid:huge-number"
        elif rng.random() < 0.005:
            # A required field given twice: the last value counts, the first may be anything.
            name = rng.choice(REQUIRED).encode()
            junk = rng.choice((b"17", b"null", b'""', b"[1]", b'{"x":"\\ud83d\\ude00"}'))
            value = b'{"' + name + b'":' + junk + b"," + dumps(obj)[1:]
            shape = "valid:repeated-key"
        else:
            value = dumps(obj)
            shape = f"valid:{type_name}"
        key = conversation_id.encode()
        self._sent.append((key, value, conversation_id))
        if len(self._sent) > 20_000:
            del self._sent[:10_000]
        return Hostile(key, value, shape, APPLIED, conversation_id)

    def _post_decode(self, kind: str) -> Hostile:
        """A valid event that the conversation's state rejects: another account, or too old."""
        rng = self.rng
        key, _, conversation_id = rng.choice(self._sent[-5000:])
        account = self.conversations[conversation_id]
        if kind == "account_mismatch":
            other = account + "-other"
            at = self.window_start_ms + rng.randrange(self.window_end_ms - self.window_start_ms)
            obj = self.events.event("visitor.message", at, other, conversation_id)
            return Hostile(key, dumps(obj), "account_mismatch", _codes("account_mismatch"))
        # Older than any partition's event time can be, by more than the retention.
        at = self.window_start_ms - self.config.retention_ms - rng.randrange(1, 30) * DAY_MS
        obj = self.events.event("chatbot.button_clicked", at, account, conversation_id)
        return Hostile(key, dumps(obj), "late", _codes("late"))

    def _broken_event(self) -> Hostile:
        rng = self.rng
        name, build = rng.choices(self.event_shapes, self.event_weights)[0]
        if self._sent and rng.random() < 0.5:
            # The id of a live conversation: a bad record must not touch its state.
            conversation_id = rng.choice(self._sent[-5000:])[2]
            account = self.conversations[conversation_id]
        else:
            conversation_id, account = f"c-bad-{self.events.serial()}", rng.choice(self.accounts)
        at = self.window_start_ms + rng.randrange(self.window_end_ms - self.window_start_ms)
        obj = self.events.event(rng.choice(EVENT_TYPES), at, account, conversation_id)
        raw, codes = build(obj)
        if codes is None:  # random bytes: the oracle decides
            codes = judge_event(raw, self.config.max_bytes).codes or None
            if codes is None:
                return None
        return Hostile(self._odd_key(conversation_id), raw, f"broken:{name}", codes)

    def _mutated(self) -> Hostile | None:
        """A valid one-event conversation, mutated; kept if its fate is partition-free."""
        rng = self.rng
        reserved = self._conversation_id()
        at = self.window_start_ms + rng.randrange(self.window_end_ms - self.window_start_ms)
        data = rng.choice(rng.choice(_STORIES))[1]
        obj = self.events.event(
            rng.choice(EVENT_TYPES), at, rng.choice(self.accounts), reserved, dict(data or {})
        )
        raw = mutate(dumps(obj), rng) if rng.random() < 0.5 else dumps(mutate_structure(obj, rng))
        verdict = judge_event(raw, self.config.max_bytes)
        if not verdict.valid:
            return Hostile(self._odd_key(reserved), raw, "mutated", verdict.codes)
        # Still valid: keep it only as a conversation of its own, inside the window,
        # where nothing else decides what becomes of it, and that the replay can read
        # too (a newline between JSON tokens is valid, but splits a JSONL line).
        value = verdict.value
        if not Hostile(None, raw, "", APPLIED).jsonl_ok:
            return None
        conversation_id = value["conversation_id"]
        if conversation_id != reserved and conversation_id in self._used_ids:
            return None
        if not self.window_start_ms <= timestamp_ms(value["occurred_at"]) <= self.window_end_ms:
            return None
        self._used_ids.add(conversation_id)
        self.conversations[conversation_id] = value["account_id"]
        key = self._odd_key(conversation_id)
        return Hostile(key, raw, "mutated:valid", APPLIED, conversation_id)

    def _huge(self, size: int) -> Hostile:
        """A record of ``size`` bytes, far over the limit."""
        conversation_id = f"c-huge-{self.events.serial()}"
        at = self.window_start_ms
        obj = self.events.event("chatbot.message", at, self.accounts[0], conversation_id)
        raw = self.events.padded(obj, size)
        return Hostile(
            self._odd_key(conversation_id), raw, f"broken:size-{size}", _codes("too_large")
        )

    def _odd_key(self, conversation_id: str) -> bytes | None:
        if self.rng.random() < self.config.odd_key_share:
            return self.rng.choice(ODD_KEYS)
        return conversation_id.encode()


#: Conversations as stories of (type, data): resolved, transferred, unengaged, no chatbot...
_STORIES: tuple[tuple[tuple[str, dict | None], ...], ...] = (
    (
        ("conversation.started", {"initiator": "chatbot"}),
        ("chatbot.triggered", {"chatbot_id": "bot-1"}),
        ("chatbot.message", {"chatbot_id": "bot-1"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "shipping"}),
        ("widget.closed", None),
        ("visitor.left", None),
    ),
    (
        ("chatbot.triggered", {"chatbot_id": "bot-2"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-2", "button_id": "returns"}),
        ("visitor.message", None),
        ("conversation.transferred", {"to": "support"}),
        ("agent.joined", {"agent_id": "ag-1"}),
        ("agent.message", {"agent_id": "ag-1"}),
        ("conversation.closed", {"closed_by": "agent"}),
    ),
    (
        ("conversation.started", {"initiator": "visitor"}),
        ("chatbot.triggered", {"chatbot_id": "bot-1"}),
        ("chatbot.message", {"chatbot_id": "bot-1"}),
        ("visitor.left", None),
    ),
    (
        ("conversation.started", {"initiator": "visitor"}),
        ("visitor.message", None),
        ("agent.joined", {"agent_id": "ag-2"}),
        ("agent.message", {"agent_id": "ag-2"}),
        ("conversation.closed", {"closed_by": "system"}),
    ),
    (
        ("conversation.started", {"initiator": "agent"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-3", "button_id": "faq"}),
        ("conversation.closed", {"closed_by": "chatbot"}),
    ),
    (
        ("chatbot.message", {"chatbot_id": "bot-1"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "yes"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "no"}),
    ),
    (
        ("visitor.message", None),
        ("chatbot.triggered", {"chatbot_id": "bot-4"}),
        ("chatbot.button_clicked", {"chatbot_id": "bot-4", "button_id": "pricing"}),
        ("conversation.closed", {"closed_by": "visitor"}),
    ),
)
