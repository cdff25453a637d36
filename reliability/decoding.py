"""One hostile record through botstream's decoders, compared with what should happen.

Used record by record by the fuzz harness and by the unit tests: the decoder
must raise :class:`~botstream.errors.InvalidRecord` with an expected reason,
or accept the record with the fields the record holds; any other exception
has escaped.
"""

from __future__ import annotations

from dataclasses import dataclass

from botstream.domain.config import DomainConfig
from botstream.domain.events import decode_event
from botstream.domain.plans import decode_plan
from botstream.errors import InvalidRecord
from reliability.oracle import timestamp_ms

#: Dead-letter codes that only the conversation's state can give: the decoder accepts them.
STATE_CODES = frozenset({"late", "account_mismatch"})


@dataclass(slots=True)
class Decoded:
    """What a decoder made of one record."""

    #: The reason code of the InvalidRecord raised, None when the record was accepted.
    code: str | None = None
    #: The decoded event or plan record.
    value: object = None
    #: Any other exception: it escaped the decoder.
    escaped: BaseException | None = None


def decode_event_safely(raw: bytes, max_bytes: int) -> Decoded:
    """Run :func:`decode_event`, catching everything it raises."""
    try:
        return Decoded(value=decode_event(raw, max_bytes))
    except InvalidRecord as error:
        return Decoded(code=error.code)
    except Exception as exc:  # escaping is what is being looked for
        return Decoded(escaped=exc)


def decode_plan_safely(raw: bytes, config: DomainConfig) -> Decoded:
    """Run :func:`decode_plan`, catching everything it raises."""
    try:
        return Decoded(value=decode_plan(raw, config))
    except InvalidRecord as error:
        return Decoded(code=error.code)
    except Exception as exc:
        return Decoded(escaped=exc)


def verdict_problem(decoded: Decoded, expect: frozenset[str] | str) -> str | None:
    """Why ``decoded`` is not what ``expect`` says (a set of codes, or applied), or None."""
    if decoded.escaped is not None:
        return f"escaped: {type(decoded.escaped).__name__}: {decoded.escaped}"
    if type(expect) is frozenset and not expect <= STATE_CODES:
        if decoded.code is None:
            return f"accepted, expected a dead letter {sorted(expect)}"
        if decoded.code not in expect:
            return f"reason {decoded.code}, expected {sorted(expect)}"
        return None
    if decoded.code is not None:
        return f"rejected as {decoded.code}, expected it accepted"
    return None


def event_fields_problem(event, obj: dict) -> str | None:
    """Why a decoded event does not hold what the record ``obj`` says, or None."""
    closed_by = obj.get("data", {}).get("closed_by") if type(obj.get("data")) is dict else None
    expected = (
        obj["event_id"],
        obj["type"],
        timestamp_ms(obj["occurred_at"]),
        obj["account_id"],
        obj["conversation_id"],
        obj["type"] == "conversation.closed" and closed_by == "chatbot",
    )
    got = (
        event.event_id,
        # CHATBOT_BUTTON_CLICKED names chatbot.button_clicked, and so on.
        event.kind.name.lower().replace("_", ".", 1),
        event.at,
        event.account_id,
        event.conversation_id,
        event.closed_by_chatbot,
    )
    return None if got == expected else f"decoded {got}, the record says {expected}"


def plan_fields_problem(plan, obj: dict) -> str | None:
    """Why a decoded plan record does not hold what the record ``obj`` says, or None."""
    expected = (obj["account_id"], obj["plan"], obj["chatbot_pack"])
    expected += (timestamp_ms(obj["effective_at"]),)
    got = (plan.account_id, plan.plan, plan.chatbot_pack, plan.effective_at)
    return None if got == expected else f"decoded {got}, the record says {expected}"
