"""The traffic generator: a deterministic stream of widget-event records.

:class:`TrafficSimulator` turns a :class:`SimConfig` into plan records and an
iterator of event records. It does no I/O and never reads the wall clock:
event time is a simulated clock that starts at ``start_ms``, and all
randomness comes from :class:`random.Random` instances seeded from
``seed``, so the same config gives the same bytes on every run.

How it works: conversations arrive as a Poisson process over the whole
platform; each picks an account (hot accounts get a large share) and an
intended flow, and is written out as a script of timed events
(:mod:`botstream.sim.model`). The events of all open conversations wait in a
heap ordered by delivery time and leave it as the simulated clock passes
them, so the output interleaves conversations the way a busy topic does.
Faults are applied on the way: an out-of-order event gets a later delivery
time, a duplicate is pushed back into the heap a few seconds later, and a
malformed record is emitted just before the event it was made from (a
garbled first attempt; the real event still follows, so the intended flows
stay intact).
"""

from __future__ import annotations

import functools
import heapq
import math
import random
from bisect import bisect
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from botstream.domain.config import DAY_MS, MINUTE_MS
from botstream.domain.timefmt import format_timestamp
from botstream.errors import ConfigError
from botstream.sim.faults import malform, pick_kind
from botstream.sim.model import (
    DEFAULT_FLOW_WEIGHTS,
    FLOWS,
    HOT_SHARE_EACH,
    HOT_SHARE_MAX,
    Account,
    ScriptBuilder,
    build_accounts,
    check_flow_weights,
    mean_events,
)

#: Share of conversations whose visitor has no id (cookies blocked): ``visitor_id: null``.
ANONYMOUS_SHARE = 0.03
#: An out-of-order event is delivered after the next one to three events of its conversation.
MAX_OUT_OF_ORDER_SKIP = 3
#: ...but never more than this after its own time, so it stays "a little" late.
MAX_OUT_OF_ORDER_DELAY_MS = 5 * MINUTE_MS
#: A duplicate is delivered again between these many ms after the first copy.
DUPLICATE_DELAY_MS = (200, 8_000)
#: Larger than any count or epoch millisecond: "no limit".
_NEVER = 1 << 62
#: Span assumed for plan changes when the run has neither a count nor an end.
UNBOUNDED_SPAN_MS = 30 * DAY_MS

# Ids are a counter run through a bijection of 48-bit integers (multiply by an
# odd constant, add a per-seed salt), so they look random and are unique.
_ID_MASK = (1 << 48) - 1
_EVENT_MULT = 0x9E3779B97F4B
_CONV_MULT = 0xC2B2AE3D27D5
_VISITOR_MULT = 0x165667B19E37

# "hh:mm:" for every minute of a day and "ss.mmmZ" for every millisecond of a
# minute: with the cached "YYYY-MM-DDT" of the current day they make a
# timestamp by concatenation, several times faster than formatting it.
_MINUTES = tuple(f"{m // 60:02d}:{m % 60:02d}:" for m in range(24 * 60))


@functools.cache
def _millis_of_minute() -> tuple[str, ...]:
    # Built on first use (60,000 short strings), not at import.
    return tuple(f"{ms // 1000:02d}.{ms % 1000:03d}Z" for ms in range(MINUTE_MS))


class Record(NamedTuple):
    """One record for a topic: ``key`` and ``value`` are the raw bytes to produce."""

    key: bytes | None
    value: bytes
    #: ``"events"`` (``widget-events``) or ``"plans"`` (``account-plans``).
    topic_kind: str
    #: Simulated time at which the record is delivered (epoch ms), for pacing.
    at_ms: int


@dataclass
class SimStats:
    """What a run generated so far; updated as records are taken from the iterator."""

    #: Intended flow -> conversations that had at least one record delivered.
    conversations: Counter = field(default_factory=Counter)
    #: ``duplicate``, ``out_of_order`` and ``malformed.<kind>`` -> records.
    faults: Counter = field(default_factory=Counter)
    #: Records on the events topic, faults included.
    records: int = 0
    plan_records: int = 0
    #: Earliest and latest ``occurred_at`` of the well-formed events (epoch ms).
    first_ms: int | None = None
    last_ms: int | None = None

    @property
    def events(self) -> int:
        """Well-formed events delivered for the first time (no duplicates, no malformed)."""
        return self.records - self.faults["duplicate"] - self.malformed

    @property
    def malformed(self) -> int:
        """Malformed records of every kind."""
        return sum(n for kind, n in self.faults.items() if kind.startswith("malformed."))


@dataclass(frozen=True)
class SimConfig:
    """Everything that determines a simulated run; the same config gives the same output."""

    seed: int = 1
    #: Event time of the first conversation (epoch ms, UTC).
    start_ms: int = 1_790_812_800_000  # 2026-10-01T00:00:00Z
    #: Stop after this many records on the events topic (faults included).
    count: int | None = 10_000
    #: Stop at this event time (epoch ms, exclusive).
    end_ms: int | None = None
    #: Normal accounts (``acc-N``) and hot accounts (``acc-hot-N``).
    accounts: int = 200
    hot_accounts: int = 3
    #: Average conversations per day of a normal account (hot ones get far more).
    conversations_per_account_day: float = 5.0
    #: Per event: the chance it is delivered again, delivered after some of
    #: its conversation's later events, or preceded by a malformed record.
    duplicate_rate: float = 0.01
    out_of_order_rate: float = 0.02
    malformed_rate: float = 0.002
    #: Intended flow -> relative share of conversations.
    flow_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FLOW_WEIGHTS))

    def __post_init__(self) -> None:
        """Reject values that cannot make a run, with the flag's name in the message."""
        for name in ("duplicate_rate", "out_of_order_rate", "malformed_rate"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag}: {value!r} is not a fraction between 0 and 1")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"--count: must be at least 1, not {self.count}")
        if self.accounts < 0 or self.hot_accounts < 0:
            raise ConfigError("--accounts and --hot-accounts must not be negative")
        if self.accounts + self.hot_accounts < 1:
            raise ConfigError("--accounts: at least one account is needed")
        if not (
            math.isfinite(self.conversations_per_account_day)
            and self.conversations_per_account_day > 0
        ):
            raise ConfigError("conversations per account and day must be positive")
        if not 0 <= self.start_ms < 32_503_680_000_000:  # 1970 to 2999, as botstream reads
            raise ConfigError("--start: must be between 1970 and 2999")
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ConfigError("the end of the run must come after its start")
        problem = check_flow_weights(dict(self.flow_weights))
        if problem:
            raise ConfigError(f"flow weights: {problem}")


def hot_share(config: SimConfig) -> float:
    """The share of all conversations that goes to hot accounts."""
    if not config.hot_accounts:
        return 0.0
    if not config.accounts:
        return 1.0
    return min(HOT_SHARE_EACH * config.hot_accounts, HOT_SHARE_MAX)


def conversations_per_ms(config: SimConfig) -> float:
    """The platform-wide arrival rate of conversations, per millisecond of event time."""
    per_day = config.conversations_per_account_day
    if config.accounts:
        daily = per_day * config.accounts / (1 - hot_share(config))
    else:
        # Only hot accounts: each as busy as it is next to the default normal accounts.
        normal = SimConfig.accounts
        daily = per_day * normal / (1 - HOT_SHARE_EACH) * HOT_SHARE_EACH * config.hot_accounts
    return daily / DAY_MS


def records_per_ms(config: SimConfig) -> float:
    """The expected records on the events topic per millisecond of event time."""
    weights = config.flow_weights
    total = sum(weights.values())
    per_conversation = sum(w * mean_events(flow) for flow, w in weights.items() if w) / total
    extra = 1 + config.duplicate_rate + config.malformed_rate
    return conversations_per_ms(config) * per_conversation * extra


def expected_span_ms(config: SimConfig) -> int:
    """The event time a run is expected to cover (exact when it stops at ``end_ms``)."""
    if config.end_ms is not None:
        span = config.end_ms - config.start_ms
        if config.count is not None:
            span = min(span, int(config.count / records_per_ms(config)))
        return span
    if config.count is not None:
        return int(config.count / records_per_ms(config))
    return UNBOUNDED_SPAN_MS


def _salt(seed: int, name: str) -> int:
    return random.Random(f"{seed}:{name}").getrandbits(48)


class TrafficSimulator:
    """Generates the plan records and the widget-event records of one simulated run."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        #: The event time the run is expected to cover, used to place plan changes.
        self.span_ms = expected_span_ms(config)
        self.accounts: list[Account] = build_accounts(
            random.Random(f"{config.seed}:accounts"),
            config.accounts,
            config.hot_accounts,
            config.start_ms,
            self.span_ms,
        )
        self.stats = SimStats()

    def plan_records(self) -> list[Record]:
        """Every account's plan records, oldest ``effective_at`` first, keyed by account id.

        Produce these before the events: they include the changes that take
        effect during the run (a record applies to the charges after it is read).
        """
        changes = sorted(
            (change.effective_at_ms, account.account_id, change)
            for account in self.accounts
            for change in account.plans
        )
        records = [
            Record(
                account_id.encode(),
                orjson.dumps(
                    {
                        "account_id": account_id,
                        "plan": change.plan,
                        "chatbot_pack": change.chatbot_pack,
                        "effective_at": format_timestamp(at),
                    }
                ),
                "plans",
                at,
            )
            for at, account_id, change in changes
        ]
        self.stats.plan_records = len(records)
        return records

    def events(self) -> Iterator[Record]:
        """The widget-event records in delivery order, until ``count`` or ``end_ms``.

        Each call starts the run again from the seed (and resets :attr:`stats`,
        except ``plan_records``). Stopping early is fine: the iterator holds no
        resource.
        """
        config = self.config
        plan_records = self.stats.plan_records
        stats = self.stats = SimStats(plan_records=plan_records)
        flows = stats.conversations
        faults = stats.faults
        seed = config.seed
        rng = random.Random(f"{seed}:traffic")
        fault_rng = random.Random(f"{seed}:faults")
        chance = rng.random
        fault_chance = fault_rng.random
        event_salt = _salt(seed, "events")
        conversation_salt = _salt(seed, "conversations")
        visitor_salt = _salt(seed, "visitors")
        event_n = conversation_n = visitor_n = 0

        accounts = self.accounts
        account_bounds = list(_cumulative(a.weight for a in accounts))
        account_total = account_bounds[-1]
        weights = {flow: w for flow, w in config.flow_weights.items() if w > 0}
        flow_names = list(weights)
        flow_funcs = [FLOWS[name] for name in flow_names]
        flow_bounds = list(_cumulative(weights.values()))
        flow_total = flow_bounds[-1]
        mean_gap_ms = 1 / conversations_per_ms(config)

        duplicate_p = config.duplicate_rate
        malformed_p = config.malformed_rate
        late_p = config.out_of_order_rate
        dup_low, dup_high = DUPLICATE_DELAY_MS
        # Plain ints as "no limit": comparing ints with a float is slower.
        count = config.count if config.count is not None else _NEVER
        end = config.end_ms if config.end_ms is not None else _NEVER

        dumps = orjson.dumps
        heap: list[tuple] = []
        push = heapq.heappush
        pop = heapq.heappop
        seq = 0
        delivered = 0
        next_arrival = config.start_ms
        day_start = day_end = 0
        day_prefix = ""
        first_ms = _NEVER
        last_ms = -1
        minutes = _MINUTES
        millis_of_minute = _millis_of_minute()
        new_tuple = tuple.__new__

        while True:
            if not heap or heap[0][0] > next_arrival:
                # The next thing to happen is a new conversation.
                if next_arrival >= end:
                    break
                account = accounts[bisect(account_bounds, chance() * account_total)]
                flow = bisect(flow_bounds, chance() * flow_total)
                builder = ScriptBuilder(rng, account, next_arrival)
                flow_funcs[flow](builder)
                script = builder.events
                conversation_n += 1
                conversation_id = "c-%012x" % (
                    (conversation_n * _CONV_MULT + conversation_salt) & _ID_MASK
                )
                if chance() < ANONYMOUS_SHARE:
                    visitor_id = None
                else:
                    visitor_n += 1
                    visitor_id = "v-%012x" % ((visitor_n * _VISITOR_MULT + visitor_salt) & _ID_MASK)
                # [account, conversation, visitor, key, flow, delivered yet]
                conv = [
                    account.account_id,
                    conversation_id,
                    visitor_id,
                    conversation_id.encode(),
                    flow_names[flow],
                    False,
                ]
                late = _late_deliveries(script, late_p, fault_rng) if late_p else None
                if late is None:
                    for at, type_, data in script:
                        push(heap, (at, seq, at, type_, data, conv, False))
                        seq += 1
                else:
                    for (at, type_, data), delivery in zip(script, late, strict=True):
                        push(heap, (delivery, seq, at, type_, data, conv, delivery != at))
                        seq += 1
                next_arrival += int(rng.expovariate(1.0) * mean_gap_ms) + 1
                continue

            delivery, _, at, type_, data, conv, is_late = pop(heap)
            if delivery >= end:
                break
            if type_ is None:
                # A duplicate: ``data`` is the record exactly as first delivered.
                faults["duplicate"] += 1
                delivered += 1
                stats.records = delivered
                yield new_tuple(Record, (conv[3], data, "events", delivery))
                if delivered >= count:
                    break
                continue

            if not conv[5]:
                conv[5] = True
                flows[conv[4]] += 1
            if not day_start <= at < day_end:
                day_start = at - at % DAY_MS
                day_end = day_start + DAY_MS
                day_prefix = format_timestamp(day_start)[:11]
            minute, millis = divmod(at - day_start, MINUTE_MS)
            stamp = day_prefix + minutes[minute] + millis_of_minute[millis]
            event_n += 1
            event_id = "e-%012x" % ((event_n * _EVENT_MULT + event_salt) & _ID_MASK)
            if data is None:
                event = {
                    "event_id": event_id,
                    "type": type_,
                    "occurred_at": stamp,
                    "account_id": conv[0],
                    "conversation_id": conv[1],
                    "visitor_id": conv[2],
                }
            else:
                event = {
                    "event_id": event_id,
                    "type": type_,
                    "occurred_at": stamp,
                    "account_id": conv[0],
                    "conversation_id": conv[1],
                    "visitor_id": conv[2],
                    "data": data,
                }
            value = dumps(event)

            if malformed_p and fault_chance() < malformed_p:
                kind = pick_kind(fault_rng)
                faults["malformed." + kind] += 1
                delivered += 1
                stats.records = delivered
                bad = malform(fault_rng, kind, event, value)
                yield new_tuple(Record, (conv[3], bad, "events", delivery))
                if delivered >= count:
                    break

            if is_late:
                faults["out_of_order"] += 1
            if at < first_ms:
                first_ms = stats.first_ms = at
            if at > last_ms:
                last_ms = stats.last_ms = at
            delivered += 1
            stats.records = delivered
            yield new_tuple(Record, (conv[3], value, "events", delivery))
            if delivered >= count:
                break
            if duplicate_p and fault_chance() < duplicate_p:
                again = delivery + fault_rng.randint(dup_low, dup_high)
                push(heap, (again, seq, at, None, value, conv, False))
                seq += 1


def _cumulative(values) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def _late_deliveries(
    script: list[tuple[int, str, dict | None]], rate: float, rng: random.Random
) -> list[int] | None:
    """Delivery times for ``script`` with some events delivered out of order, or ``None``.

    An event chosen to be late is delivered 1 ms after one of the next
    :data:`MAX_OUT_OF_ORDER_SKIP` events of its conversation (never more than
    :data:`MAX_OUT_OF_ORDER_DELAY_MS` after its own time). The last event
    cannot be late within its conversation, so the others are chosen a little
    more often, to keep the share of late events at ``rate``.
    """
    n = len(script)
    if n < 2:
        return None
    p = min(1.0, rate * n / (n - 1))
    deliveries = None
    for i in range(n - 1):
        if rng.random() >= p:
            continue
        at = script[i][0]
        j = min(i + rng.randint(1, MAX_OUT_OF_ORDER_SKIP), n - 1)
        while j > i and script[j][0] - at > MAX_OUT_OF_ORDER_DELAY_MS:
            j -= 1
        if j == i or script[j][0] == at:
            continue  # the next event is too far away (or simultaneous): not late
        if deliveries is None:
            deliveries = [event[0] for event in script]
        deliveries[i] = script[j][0] + 1
    return deliveries
