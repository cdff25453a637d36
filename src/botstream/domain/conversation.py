"""The conversation aggregate (SPEC section 4).

State is an order-free summary of a conversation's events: earliest and
latest times, never the events themselves, so any arrival order of the same
events gives the same classification. Only three things depend on arrival
order, as SPEC wants: the duplicate window, the charge (fixed the first time
the conversation becomes billable) and the revision counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from sys import intern

import orjson

from botstream.domain.config import DUPLICATE_WINDOW
from botstream.domain.events import EventKind, WidgetEvent
from botstream.domain.timefmt import format_timestamp, month_of


class EndRank(IntEnum):
    """How strongly an event ends a conversation; breaks ties between equal times."""

    NONE = 0
    VISITOR_LEFT = 1
    CLOSED = 2


class Outcome(IntEnum):
    """The classification of a conversation, numbered for compact state."""

    NO_CHATBOT = 0
    TRANSFERRED_TO_AGENT = 1
    RESOLVED_BY_CHATBOT = 2
    UNENGAGED = 3


OUTCOME_NAMES = {
    Outcome.NO_CHATBOT: "no_chatbot",
    Outcome.TRANSFERRED_TO_AGENT: "transferred_to_agent",
    Outcome.RESOLVED_BY_CHATBOT: "resolved_by_chatbot",
    Outcome.UNENGAGED: "unengaged",
}
END_REASONS = {EndRank.CLOSED: "closed", EndRank.VISITOR_LEFT: "visitor_left"}
INACTIVITY = "inactivity"

_BOT_KINDS = (EventKind.CHATBOT_TRIGGERED, EventKind.CHATBOT_MESSAGE)
_HUMAN_KINDS = (EventKind.VISITOR_MESSAGE, EventKind.AGENT_JOINED, EventKind.AGENT_MESSAGE)
# Module-level aliases: reading an enum member as a class attribute costs ~90 ns,
# a global ~10 ns, and apply() runs once per event.
_CLICK = EventKind.CHATBOT_BUTTON_CLICKED
_VISITOR_MESSAGE = EventKind.VISITOR_MESSAGE
_AGENT_MESSAGE = EventKind.AGENT_MESSAGE
_TRANSFERRED = EventKind.CONVERSATION_TRANSFERRED
_NO_CHATBOT = Outcome.NO_CHATBOT
_TRANSFERRED_TO_AGENT = Outcome.TRANSFERRED_TO_AGENT
_RESOLVED_BY_CHATBOT = Outcome.RESOLVED_BY_CHATBOT
_UNENGAGED = Outcome.UNENGAGED
_END_REASON_BY_RANK = (INACTIVITY, END_REASONS[EndRank.VISITOR_LEFT], END_REASONS[EndRank.CLOSED])
_END_RANK = {
    EventKind.VISITOR_LEFT: int(EndRank.VISITOR_LEFT),
    EventKind.CONVERSATION_CLOSED: int(EndRank.CLOSED),
}


@dataclass(slots=True)
class Conversation:
    """Order-free state of one conversation. Times are epoch milliseconds (UTC).

    ``human_first`` is the earliest visitor message or agent act (what decides
    whether the chatbot started or joined); ``contact_last`` the latest visitor
    message, agent act or transfer (what decides whether the visitor reached
    an agent). SPEC's separate earliest/latest times reduce to these two.
    """

    account_id: str
    started_at: int
    last_at: int
    last_rank: int = EndRank.NONE
    bot_at: int | None = None
    bot_closed_at: int | None = None
    click_at: int | None = None
    human_first: int | None = None
    contact_last: int | None = None
    events: int = 0
    clicks: int = 0
    visitor_messages: int = 0
    agent_messages: int = 0
    #: ``billable_at`` fixed when the conversation was charged; None before.
    charged_at: int | None = None
    revision: int = 0
    #: Whether the conversation was ended when last evaluated.
    ended: bool = False
    #: (started_at, outcome) of the last revision emitted, for statistics.
    counted_started_at: int | None = None
    counted_outcome: int | None = None
    recent_ids: list[str] = field(default_factory=list)

    # -- folding events -------------------------------------------------

    def is_duplicate(self, event_id: str) -> bool:
        """Whether ``event_id`` is among the last distinct event ids applied."""
        return event_id in self.recent_ids

    def apply(self, event: WidgetEvent) -> None:
        """Fold one (valid, non-duplicate) event into the state, in place."""
        at = event.at
        kind = event.kind
        self.events += 1
        recent = self.recent_ids
        recent.append(event.event_id)
        if len(recent) > DUPLICATE_WINDOW:
            del recent[0]
        if at < self.started_at:
            self.started_at = at
        rank = _END_RANK.get(kind, 0)
        if at > self.last_at or (at == self.last_at and rank > self.last_rank):
            self.last_at = at
            self.last_rank = rank
        if kind in _BOT_KINDS:
            if self.bot_at is None or at < self.bot_at:
                self.bot_at = at
        elif kind is _CLICK:
            self.clicks += 1
            if self.click_at is None or at < self.click_at:
                self.click_at = at
        elif kind in _HUMAN_KINDS:
            if kind is _VISITOR_MESSAGE:
                self.visitor_messages += 1
            elif kind is _AGENT_MESSAGE:
                self.agent_messages += 1
            if self.human_first is None or at < self.human_first:
                self.human_first = at
            if self.contact_last is None or at > self.contact_last:
                self.contact_last = at
        elif kind is _TRANSFERRED:
            if self.contact_last is None or at > self.contact_last:
                self.contact_last = at
        elif event.closed_by_chatbot and (self.bot_closed_at is None or at < self.bot_closed_at):
            self.bot_closed_at = at

    # -- derived, in SPEC's order -----------------------------------------

    @property
    def effective_bot_at(self) -> int | None:
        """``bot_at`` of SPEC: the chatbot's first act, else its closing the conversation."""
        return self.bot_at if self.bot_at is not None else self.bot_closed_at

    @property
    def chatbot_role(self) -> str | None:
        """``started``, ``joined``, ``ended`` or None (no chatbot)."""
        if self.bot_at is None:
            return None if self.bot_closed_at is None else "ended"
        if self.human_first is None or self.bot_at <= self.human_first:
            return "started"
        return "joined"

    @property
    def contacted_agent(self) -> bool:
        """The visitor wrote, an agent acted or a transfer happened at or after the chatbot."""
        bot_at = self.effective_bot_at
        return bot_at is not None and self.contact_last is not None and self.contact_last >= bot_at

    @property
    def outcome(self) -> Outcome:
        """The classification of the conversation."""
        # The two properties above, inlined: this runs for every revision and record.
        bot_at = self.bot_at if self.bot_at is not None else self.bot_closed_at
        if bot_at is None:
            return _NO_CHATBOT
        if self.contact_last is not None and self.contact_last >= bot_at:
            return _TRANSFERRED_TO_AGENT
        if self.click_at is not None:
            return _RESOLVED_BY_CHATBOT
        return _UNENGAGED

    @property
    def billable_at(self) -> int | None:
        """When the conversation became billable (order-free), or None if it is not."""
        bot_at = self.effective_bot_at
        if bot_at is None or self.click_at is None:
            return None
        return bot_at if bot_at > self.click_at else self.click_at

    @property
    def final_end_reason(self) -> str:
        """The end reason once no more events come (an open conversation ends by inactivity)."""
        return _END_REASON_BY_RANK[self.last_rank]

    def end_reason(self, watermark: int | None, idle_timeout_ms: int) -> str | None:
        """Why the conversation is ended at ``watermark``, or None while it is open."""
        if self.last_rank:
            return _END_REASON_BY_RANK[self.last_rank]
        if watermark is not None and watermark - self.last_at >= idle_timeout_ms:
            return INACTIVITY
        return None

    def outcome_record(self, conversation_id: str, end_reason: str) -> dict:
        """The outcome record of the current revision (SPEC section 4)."""
        charged_at = self.charged_at
        return {
            "conversation_id": conversation_id,
            "account_id": self.account_id,
            "revision": self.revision,
            "outcome": OUTCOME_NAMES[self.outcome],
            "chatbot_role": self.chatbot_role,
            "billable": charged_at is not None,
            "billable_at": None if charged_at is None else format_timestamp(charged_at),
            "billing_month": None if charged_at is None else month_of(charged_at),
            "started_at": format_timestamp(self.started_at),
            "ended_at": format_timestamp(self.last_at),
            "end_reason": end_reason,
            "counts": {
                "events": self.events,
                "chatbot_clicks": self.clicks,
                "visitor_messages": self.visitor_messages,
                "agent_messages": self.agent_messages,
            },
        }


def new_conversation(event: WidgetEvent) -> Conversation:
    """An empty conversation for the first event seen of it (not yet applied)."""
    # Interned: an account's many conversations share one string.
    return Conversation(account_id=intern(event.account_id), started_at=event.at, last_at=event.at)


# -- compact serialisation ----------------------------------------------------

_STATE_VERSION = 1


def encode_conversation(state: Conversation) -> bytes:
    """Serialise to compact JSON: a flat array, times relative to ``started_at``."""
    base = state.started_at
    # Optional times are stored as deltas (null stays null), written out rather
    # than through a helper: this runs whenever a conversation ends.
    bot_at = state.bot_at
    bot_closed_at = state.bot_closed_at
    click_at = state.click_at
    human_first = state.human_first
    contact_last = state.contact_last
    charged_at = state.charged_at
    counted_started_at = state.counted_started_at
    # orjson hands back its 4 KiB working buffer as the bytes object; states are
    # kept for days, so copy each into an object of its own size.
    encoded = orjson.dumps(
        [
            _STATE_VERSION,
            state.account_id,
            base,
            state.last_at - base,
            state.last_rank,
            None if bot_at is None else bot_at - base,
            None if bot_closed_at is None else bot_closed_at - base,
            None if click_at is None else click_at - base,
            None if human_first is None else human_first - base,
            None if contact_last is None else contact_last - base,
            state.events,
            state.clicks,
            state.visitor_messages,
            state.agent_messages,
            None if charged_at is None else charged_at - base,
            state.revision,
            int(state.ended),
            None if counted_started_at is None else counted_started_at - base,
            state.counted_outcome,
            state.recent_ids,
        ]
    )
    return memoryview(encoded).tobytes()


def encoded_last_at_and_ended(data: bytes) -> tuple[int, bool]:
    """``(last_at, ended)`` of an encoded state, without building the state."""
    fields = orjson.loads(data)
    if fields[0] != _STATE_VERSION:
        raise ValueError(f"unknown conversation state version {fields[0]}")
    return fields[2] + fields[3], bool(fields[16])


def decode_conversation(data: bytes) -> Conversation:
    """Inverse of :func:`encode_conversation`."""
    (
        version,
        account_id,
        base,
        last,
        last_rank,
        bot_at,
        bot_closed_at,
        click_at,
        human_first,
        contact_last,
        events,
        clicks,
        visitor_messages,
        agent_messages,
        charged_at,
        revision,
        ended,
        counted_started_at,
        counted_outcome,
        recent_ids,
    ) = orjson.loads(data)
    if version != _STATE_VERSION:
        raise ValueError(f"unknown conversation state version {version}")
    return Conversation(
        intern(account_id),
        base,
        last + base,
        last_rank,
        None if bot_at is None else bot_at + base,
        None if bot_closed_at is None else bot_closed_at + base,
        None if click_at is None else click_at + base,
        None if human_first is None else human_first + base,
        None if contact_last is None else contact_last + base,
        events,
        clicks,
        visitor_messages,
        agent_messages,
        None if charged_at is None else charged_at + base,
        revision,
        bool(ended),
        None if counted_started_at is None else counted_started_at + base,
        counted_outcome,
        recent_ids,
    )
