"""What the simulated platform looks like: accounts, their plans, and conversation flows.

Everything here is pure: it takes a :class:`random.Random` and returns data.
A conversation is first written as a *script*, a list of
``(occurred_at_ms, type, data)`` in time order; :mod:`botstream.sim.generator`
then interleaves the scripts of many conversations and serialises them.

The flows follow SPEC section 1 and the variants seen on real widgets. Their
names are the *intended* flow, which is what the generator counts; the
outcome botstream computes for each is noted on the flow function.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from botstream.domain.config import DAY_MS, MINUTE_MS

SECOND_MS = 1000
HOUR_MS = 60 * MINUTE_MS

# Human-like gaps between events, (shortest, longest) in milliseconds. A gap is
# drawn log-triangular between the two (see ScriptBuilder.gap): mostly near the
# geometric middle, now and then close to either end, never outside.
BOT_REPLY = (300, 2_500)  # the chatbot answers a click or a greeting
READ_AND_CLICK = (3 * SECOND_MS, 45 * SECOND_MS)  # the visitor reads, then clicks a button
TYPE_MESSAGE = (8 * SECOND_MS, 2 * MINUTE_MS)  # the visitor types a message
AGENT_JOIN = (10 * SECOND_MS, 4 * MINUTE_MS)  # an agent picks the chat from the queue
AGENT_REPLY = (5 * SECOND_MS, 90 * SECOND_MS)
CLOSE_WIDGET = (2 * SECOND_MS, 40 * SECOND_MS)  # the visitor got the answer, closes the box
LEAVE_SITE = (5 * SECOND_MS, 6 * MINUTE_MS)  # the visitor browses on, then leaves
WRAP_UP = (10 * SECOND_MS, 3 * MINUTE_MS)  # an agent closes the chat after the last message
# Longer than the default 30-minute idle timeout, so botstream ends the
# conversation by inactivity and must reopen it when the visitor is back.
LONG_PAUSE = (31 * MINUTE_MS, 2 * HOUR_MS)
REOPEN_AFTER = (35 * MINUTE_MS, 5 * HOUR_MS)

BUTTONS = (
    "shipping",
    "returns",
    "order_status",
    "pricing",
    "opening_hours",
    "payment",
    "sizes",
    "track_parcel",
    "discounts",
    "warranty",
)
TALK_TO_AGENT = "talk_to_agent"
TRANSFER_TARGETS = ("agents", "agents", "agents", "support", "sales")

#: The plans of normal accounts: (cumulative share, (plan, pack)); ``None`` is
#: an account without any plan record, to which botstream's default plan applies.
PLAN_MIX: tuple[tuple[float, tuple[str, bool] | None], ...] = (
    (0.10, None),
    (0.55, ("standard", False)),
    (0.70, ("standard", True)),
    (0.90, ("pro", False)),
    (1.01, ("pro", True)),
)

#: Share of all conversations given to each hot account, and the cap for all of them.
HOT_SHARE_EACH = 0.10
HOT_SHARE_MAX = 0.60

# A small constant set of data objects, shared by every event that uses them
# (the serialiser only reads them), so no per-event dict is built.
_STARTED = {who: {"initiator": who} for who in ("visitor", "chatbot", "agent")}
_CLOSED = {who: {"closed_by": who} for who in ("visitor", "agent", "chatbot", "system")}
_TRANSFER = {to: {"to": to} for to in set(TRANSFER_TARGETS)}


@dataclass(frozen=True, slots=True)
class PlanChange:
    """One plan record of an account: from ``effective_at_ms`` on, ``plan`` with or without pack."""

    effective_at_ms: int
    plan: str
    chatbot_pack: bool


@dataclass(frozen=True, slots=True)
class Account:
    """A customer of the live-chat product, with its widget setup and plan history."""

    account_id: str
    hot: bool
    #: Relative share of the platform's conversations.
    weight: float
    #: Plan records in effective order; empty means no record (the default plan applies).
    plans: tuple[PlanChange, ...]
    #: ``{"chatbot_id": ...}`` data objects, one per chatbot of the account.
    chatbots: tuple[dict, ...]
    #: ``{"agent_id": ...}`` data objects, one per agent.
    agents: tuple[dict, ...]
    #: chatbot id -> button id -> ``{"chatbot_id", "button_id"}`` data object.
    clicks: dict[str, dict[str, dict]]
    #: The buttons of the account's chatbot menu (without "talk to agent").
    buttons: tuple[str, ...]


def _account(
    rng: random.Random, account_id: str, hot: bool, weight: float, plans: list[PlanChange]
) -> Account:
    short = account_id.removeprefix("acc-")
    bots = ("bot-1", "bot-2") if rng.random() < 0.2 else ("bot-1",)
    agents = tuple({"agent_id": f"agent-{short}-{k}"} for k in range(1, rng.randint(2, 9)))
    buttons = tuple(rng.sample(BUTTONS, rng.randint(3, 6)))
    clicks = {
        bot: {b: {"chatbot_id": bot, "button_id": b} for b in (*buttons, TALK_TO_AGENT)}
        for bot in bots
    }
    return Account(
        account_id=account_id,
        hot=hot,
        weight=weight,
        plans=tuple(plans),
        chatbots=tuple({"chatbot_id": bot} for bot in bots),
        agents=agents,
        clicks=clicks,
        buttons=buttons,
    )


def build_accounts(
    rng: random.Random, normal: int, hot: int, start_ms: int, span_ms: int
) -> list[Account]:
    """The simulated accounts: ``normal`` ones named ``acc-N`` and ``hot`` ones ``acc-hot-N``.

    Normal accounts get a realistic mix of plans (some with no plan record at
    all); ``acc-1`` buys the chatbot pack a third into the run and ``acc-2``
    downgrades from PRO with pack to Standard halfway, so both kinds of change
    always occur. Hot accounts share up to 60% of the traffic so they cross their
    limits quickly: ``acc-hot-1`` is Standard, ``acc-hot-2`` Standard and buys the
    pack 40% into the run (after it has usually hit its limit), ``acc-hot-3``
    PRO, and so on in turn. ``span_ms`` is the expected event-time span of the
    run, used to place the mid-run plan changes.
    """

    def signup() -> int:
        # Accounts existed before the run: their first plan record is older.
        return start_ms - rng.randint(1, 400) * DAY_MS - rng.randint(0, DAY_MS // 1000) * 1000

    def during_run(fraction: float) -> int:
        return start_ms + int(span_ms * fraction) // 1000 * 1000

    hot_share = min(HOT_SHARE_EACH * hot, HOT_SHARE_MAX) if normal else 1.0
    raw = [rng.lognormvariate(0.0, 0.8) for _ in range(normal)]
    total = sum(raw) or 1.0

    def share(weight: float) -> float:
        return (1 - hot_share) * weight / total

    accounts: list[Account] = []
    for index, weight in enumerate(raw, 1):
        plans: list[PlanChange] = []
        draw = rng.random()
        if index == 1:
            plans = [PlanChange(signup(), "standard", False)]
            plans.append(PlanChange(during_run(1 / 3), "standard", True))
        elif index == 2:
            plans = [PlanChange(signup(), "pro", True)]
            plans.append(PlanChange(during_run(0.5), "standard", False))
        else:
            terms = next(terms for bound, terms in PLAN_MIX if draw < bound)
            if terms is None:
                accounts.append(_account(rng, f"acc-{index}", False, share(weight), []))
                continue
            plan, pack = terms
            plans = [PlanChange(signup(), plan, pack)]
            change = rng.random()
            if change < 0.08 and not pack:
                plans.append(PlanChange(during_run(rng.uniform(0.1, 0.8)), plan, True))
            elif change < 0.12 and (pack or plan == "pro"):
                plans.append(PlanChange(during_run(rng.uniform(0.1, 0.8)), "standard", False))
        accounts.append(_account(rng, f"acc-{index}", False, share(weight), plans))
    for index in range(1, hot + 1):
        kind = (index - 1) % 3
        first = PlanChange(signup(), "pro" if kind == 2 else "standard", False)
        plans = [first]
        if kind == 1:
            plans.append(PlanChange(during_run(0.4), "standard", True))
        accounts.append(_account(rng, f"acc-hot-{index}", True, hot_share / hot, plans))
    return accounts


class ScriptBuilder:
    """Writes one conversation's events with human-like gaps between them.

    ``events`` collects ``(occurred_at_ms, type, data)``; ``t`` is the time of
    the last event. The flow functions below read like the conversation they
    describe.
    """

    __slots__ = ("_random", "account", "agent", "bot", "clicks", "events", "rng", "t")

    def __init__(self, rng: random.Random, account: Account, t: int) -> None:
        self.rng = rng
        self._random = rng.random
        self.account = account
        self.t = t
        self.events: list[tuple[int, str, dict | None]] = []
        bots = account.chatbots
        self.bot = bots[0] if len(bots) == 1 else bots[int(self._random() * len(bots))]
        self.clicks = account.clicks[self.bot["chatbot_id"]]
        agents = account.agents
        self.agent = agents[int(self._random() * len(agents))]

    def gap(self, bounds: tuple[int, int]) -> None:
        """Let a human-like time pass, between ``bounds[0]`` and ``bounds[1]`` ms."""
        low, high = bounds
        # Log-triangular: the mean of two uniforms as the exponent. Much cheaper
        # than a log-normal draw and, unlike it, never outside the bounds.
        self.t += int(low * (high / low) ** ((self._random() + self._random()) * 0.5))

    def chance(self, p: float) -> bool:
        """True with probability ``p``."""
        return self._random() < p

    def add(self, type_: str, data: dict | None = None) -> None:
        """An event at the current time."""
        self.events.append((self.t, type_, data))

    def started(self, initiator: str) -> None:
        """``conversation.started`` opened by ``initiator``."""
        self.add("conversation.started", _STARTED[initiator])

    def triggered(self) -> None:
        """The chatbot is triggered; it follows its trigger by a few milliseconds."""
        self.t += int(self._random() * 40)
        self.add("chatbot.triggered", self.bot)

    def bot_says(self) -> None:
        """The chatbot sends a message shortly after whatever happened last."""
        self.gap(BOT_REPLY)
        self.add("chatbot.message", self.bot)

    def click(self, button: str | None = None) -> None:
        """The visitor reads and clicks a chatbot button (a menu one unless given)."""
        self.gap(READ_AND_CLICK)
        buttons = self.account.buttons
        if button is None:
            button = buttons[int(self._random() * len(buttons))]
        self.add("chatbot.button_clicked", self.clicks[button])

    def clicks_with_answers(self, low: int, high: int) -> None:
        """``low`` to ``high`` clicks, most answered by a chatbot message."""
        for _ in range(self.rng.randint(low, high)):
            self.click()
            if self.chance(0.75):
                self.bot_says()

    def visitor_writes(self) -> None:
        """The visitor types and sends a message."""
        self.gap(TYPE_MESSAGE)
        self.add("visitor.message")

    def agent_joins(self) -> None:
        """An agent picks up the conversation."""
        self.gap(AGENT_JOIN)
        self.add("agent.joined", self.agent)

    def agent_writes(self) -> None:
        """The agent answers."""
        self.gap(AGENT_REPLY)
        self.add("agent.message", self.agent)

    def chat_with_agent(self) -> None:
        """An agent joins and there are one to four rounds of messages."""
        self.agent_joins()
        self.agent_writes()
        for _ in range(self.rng.randint(0, 3)):
            self.visitor_writes()
            self.agent_writes()

    def transfer(self) -> None:
        """The chatbot hands the visitor to the agents."""
        self.gap(BOT_REPLY)
        self.add("conversation.transferred", _TRANSFER[self.rng.choice(TRANSFER_TARGETS)])

    def widget_closed(self) -> None:
        """The visitor closes the chat box."""
        self.gap(CLOSE_WIDGET)
        self.add("widget.closed")

    def visitor_left(self) -> None:
        """The visitor leaves the website."""
        self.gap(LEAVE_SITE)
        self.add("visitor.left")

    def closed(self, by: str, gap: tuple[int, int] = WRAP_UP) -> None:
        """``conversation.closed`` by ``by``."""
        self.gap(gap)
        self.add("conversation.closed", _CLOSED[by])

    def agent_ends(self) -> None:
        """How an agent chat usually ends: closed by the agent, the visitor or the system."""
        draw = self._random()
        if draw < 0.6:
            self.closed("agent")
        elif draw < 0.8:
            self.widget_closed()
            self.visitor_left()
        elif draw < 0.9:
            self.closed("visitor", CLOSE_WIDGET)
        else:
            self.closed("system", LONG_PAUSE if self.chance(0.5) else WRAP_UP)


# Flows. Each takes a builder positioned at the conversation's start time.


def resolved_by_chatbot(b: ScriptBuilder) -> None:
    """The chatbot greets, the visitor clicks its buttons, finds the answer and leaves.

    botstream: resolved_by_chatbot, role started, billable.
    """
    b.started("chatbot")
    b.triggered()
    b.bot_says()
    b.clicks_with_answers(1, 4)
    b.widget_closed()
    draw = b._random()
    if draw < 0.65:
        b.visitor_left()
    elif draw < 0.9:
        b.closed("visitor", CLOSE_WIDGET)
    # else: the tab stays open and the conversation ends by inactivity


def clicked_then_agent(b: ScriptBuilder) -> None:
    """The visitor clicks, does not find the answer and asks for an agent.

    botstream: transferred_to_agent, billable (the chatbot was used).
    """
    b.started("chatbot")
    b.triggered()
    b.bot_says()
    b.clicks_with_answers(0, 2)
    b.click(TALK_TO_AGENT)
    b.transfer()
    b.agent_joins()
    b.agent_writes()
    b.visitor_writes()
    for _ in range(b.rng.randint(0, 2)):
        b.agent_writes()
        b.visitor_writes()
    b.agent_writes()
    b.closed("agent")


def ignored_chatbot(b: ScriptBuilder) -> None:
    """The normal conversation: the chatbot greets, the visitor ignores it and writes.

    botstream: transferred_to_agent, not billable.
    """
    b.started("chatbot")
    b.triggered()
    b.bot_says()
    b.visitor_writes()
    if b.chance(0.3):
        b.visitor_writes()  # a second message before anybody answers
    b.chat_with_agent()
    b.agent_ends()


def chatbot_joined(b: ScriptBuilder) -> None:
    """The visitor writes first (e.g. outside office hours) and the chatbot joins.

    botstream: role joined, billable; resolved_by_chatbot, or
    transferred_to_agent when the visitor then asks for an agent.
    """
    b.started("visitor")
    b.visitor_writes()
    b.gap(AGENT_JOIN)  # nobody picked it up, so the chatbot steps in
    b.triggered()
    b.bot_says()
    if b.chance(0.6):
        b.clicks_with_answers(1, 3)
        b.widget_closed()
        b.visitor_left()
    else:
        b.clicks_with_answers(0, 1)
        b.click(TALK_TO_AGENT)
        b.transfer()
        b.chat_with_agent()
        b.closed("agent")


def chatbot_closed(b: ScriptBuilder) -> None:
    """The chatbot ends the conversation, sometimes with no trigger event before.

    botstream: resolved_by_chatbot (billable) when the visitor clicked; role
    ``ended`` when there was no trigger; unengaged when nobody clicked.
    """
    if b.chance(0.6):
        b.started("chatbot")
        b.triggered()
        b.bot_says()
        b.clicks_with_answers(1, 2)
        b.closed("chatbot", BOT_REPLY)
    elif b.chance(0.5):
        # The greeting came from a widget version that does not report triggers.
        b.started("visitor")
        b.clicks_with_answers(1, 2)
        b.widget_closed()
        b.closed("chatbot", CLOSE_WIDGET)
    else:
        # The chatbot auto-closes a chat that was opened and never used.
        b.started("visitor")
        b.closed("chatbot", LEAVE_SITE)


def unengaged(b: ScriptBuilder) -> None:
    """The chatbot is triggered, the visitor closes the box, nothing else happens.

    botstream: unengaged, not billable, ended by inactivity.
    """
    b.triggered()
    if b.chance(0.5):
        b.bot_says()
    b.widget_closed()


def no_chatbot(b: ScriptBuilder) -> None:
    """No chatbot at all: the visitor writes to the agents (or an agent reaches out).

    botstream: no_chatbot, not billable.
    """
    if b.chance(0.2):
        b.started("agent")  # a proactive invitation from an agent
        b.agent_writes()
        b.visitor_writes()
        b.agent_writes()
    else:
        if b.chance(0.7):
            b.started("visitor")
        b.visitor_writes()
        b.chat_with_agent()
    b.agent_ends()


def reopened(b: ScriptBuilder) -> None:
    """A conversation that ended with the visitor leaving, then the visitor came back.

    The first part is a chatbot-resolved or an agent conversation; much later a
    ``visitor.message`` arrives with the same conversation id. botstream ends
    it twice and charges it at most once.
    """
    if b.chance(0.6):
        b.started("chatbot")
        b.triggered()
        b.bot_says()
        b.clicks_with_answers(1, 3)
    else:
        b.started("visitor")
        b.visitor_writes()
        b.chat_with_agent()
    b.widget_closed()
    b.visitor_left()
    b.gap(REOPEN_AFTER)
    b.add("visitor.message")
    if b.chance(0.7):
        b.chat_with_agent()
        b.closed("agent")
    # else nobody answers and it ends by inactivity again


def long_pause(b: ScriptBuilder) -> None:
    """A conversation with a silence longer than the idle timeout in the middle.

    botstream ends it by inactivity, then reopens it on the next event.
    """
    if b.chance(0.6):
        b.started("chatbot")
        b.triggered()
        b.bot_says()
        b.click()
        b.gap(LONG_PAUSE)
        b.clicks_with_answers(1, 2)
        b.widget_closed()
        b.visitor_left()
    else:
        b.visitor_writes()
        b.agent_joins()
        b.agent_writes()
        b.gap(LONG_PAUSE)
        b.visitor_writes()
        b.agent_writes()
        b.closed("agent")


#: Every flow by name, with the share of conversations it gets by default.
FLOWS: dict[str, Callable[[ScriptBuilder], None]] = {
    "resolved_by_chatbot": resolved_by_chatbot,
    "clicked_then_agent": clicked_then_agent,
    "ignored_chatbot": ignored_chatbot,
    "chatbot_joined": chatbot_joined,
    "chatbot_closed": chatbot_closed,
    "unengaged": unengaged,
    "no_chatbot": no_chatbot,
    "reopened": reopened,
    "long_pause": long_pause,
}
DEFAULT_FLOW_WEIGHTS: dict[str, float] = {
    "resolved_by_chatbot": 0.30,
    "clicked_then_agent": 0.12,
    "ignored_chatbot": 0.18,
    "chatbot_joined": 0.06,
    "chatbot_closed": 0.04,
    "unengaged": 0.15,
    "no_chatbot": 0.12,
    "reopened": 0.02,
    "long_pause": 0.01,
}

_MEAN_EVENTS: dict[str, float] = {}


def mean_events(flow: str) -> float:
    """The average number of events a conversation of ``flow`` has (measured once, cached)."""
    if flow not in _MEAN_EVENTS:
        rng = random.Random(f"mean-events:{flow}")
        account = _account(rng, "acc-0", False, 1.0, [])
        samples = 400
        total = 0
        for _ in range(samples):
            builder = ScriptBuilder(rng, account, 0)
            FLOWS[flow](builder)
            total += len(builder.events)
        _MEAN_EVENTS[flow] = total / samples
    return _MEAN_EVENTS[flow]


def check_flow_weights(weights: dict[str, float]) -> str | None:
    """Why ``weights`` cannot be used as a flow mix, or ``None`` when they can."""
    unknown = sorted(set(weights) - set(FLOWS))
    if unknown:
        return f"unknown flow {unknown[0]!r} (flows: {', '.join(FLOWS)})"
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        return "flow weights must be finite and not negative"
    if not sum(weights.values()) > 0:
        return "at least one flow needs a positive weight"
    return None
