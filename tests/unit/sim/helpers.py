"""Small, independent readings of the SPEC used to check the simulator's output.

The classifier here follows SPEC section 4 in the plainest way (all events of a
conversation in memory), so the simulator's tests do not depend on how the
domain core stores its state.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import orjson

from botstream.domain.events import decode_event
from botstream.domain.timefmt import month_of, parse_timestamp_ms
from botstream.errors import InvalidRecord
from botstream.sim import SimConfig, TrafficSimulator


@dataclass
class Conversation:
    """Every well-formed event of one conversation, parsed."""

    account_id: str
    events: list[dict] = field(default_factory=list)

    def times(self, *types: str) -> list[int]:
        return [e["at"] for e in self.events if e["type"] in types]

    def classify(self) -> dict:
        """outcome, chatbot_role, billable and billable_at as SPEC section 4 defines them."""
        bots = self.times("chatbot.triggered", "chatbot.message")
        bot_closes = [
            e["at"]
            for e in self.events
            if e["type"] == "conversation.closed"
            and (e.get("data") or {}).get("closed_by") == "chatbot"
        ]
        ended_only = not bots and bool(bot_closes)
        bot_at = min(bots) if bots else (min(bot_closes) if bot_closes else None)
        clicks = self.times("chatbot.button_clicked")
        click_at = min(clicks) if clicks else None
        visitor = self.times("visitor.message")
        agent = self.times("agent.joined", "agent.message")
        transfers = self.times("conversation.transferred")
        if bot_at is None:
            role = None
        elif ended_only:
            role = "ended"
        elif all(bot_at <= min(ts) for ts in (visitor, agent) if ts):
            role = "started"
        else:
            role = "joined"
        latest_contact = max(visitor + agent + transfers, default=None)
        contacted = bot_at is not None and latest_contact is not None and latest_contact >= bot_at
        if role is None:
            outcome = "no_chatbot"
        elif contacted:
            outcome = "transferred_to_agent"
        elif click_at is not None:
            outcome = "resolved_by_chatbot"
        else:
            outcome = "unengaged"
        billable = role is not None and click_at is not None
        return {
            "outcome": outcome,
            "chatbot_role": role,
            "billable": billable,
            "billable_at": max(bot_at, click_at) if billable else None,
        }


@dataclass
class Observed:
    """What a stream of event records contains, as a consumer sees it."""

    conversations: dict[str, Conversation] = field(default_factory=dict)
    records: int = 0
    invalid: int = 0
    invalid_codes: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    duplicates: int = 0
    #: First deliveries dated before an event of their conversation delivered earlier.
    out_of_order: int = 0
    keys_match: bool = True


def observe(records) -> Observed:
    """Decode every record and gather conversations, duplicates and late events."""
    seen: set[bytes] = set()
    latest: dict[str, int] = {}
    result = Observed()
    for record in records:
        result.records += 1
        try:
            event = decode_event(record.value)
        except InvalidRecord as error:
            result.invalid += 1
            result.invalid_codes[error.code] += 1
            continue
        if record.value in seen:
            result.duplicates += 1
            continue
        seen.add(record.value)
        obj = orjson.loads(record.value)
        obj["at"] = event.at
        cid = obj["conversation_id"]
        result.keys_match &= record.key == cid.encode()
        if event.at < latest.get(cid, event.at):
            result.out_of_order += 1
        latest[cid] = max(latest.get(cid, event.at), event.at)
        conversation = result.conversations.setdefault(cid, Conversation(obj["account_id"]))
        conversation.events.append(obj)
    return result


def billable_by_account_month(observed: Observed) -> dict[tuple[str, str], int]:
    """Billable conversations per (account, month of billable_at)."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for conversation in observed.conversations.values():
        result = conversation.classify()
        if result["billable"]:
            counts[(conversation.account_id, month_of(result["billable_at"]))] += 1
    return counts


def run(**overrides) -> tuple[TrafficSimulator, list]:
    """A simulator for ``SimConfig(**overrides)`` (fixed start) and all its event records."""
    overrides.setdefault("start_ms", parse_timestamp_ms("2026-11-02T08:00:00Z"))
    sim = TrafficSimulator(SimConfig(**overrides))
    return sim, list(sim.events())
