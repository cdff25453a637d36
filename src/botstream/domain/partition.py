"""Processing one input partition: event time, conversation lifecycle, charges.

A :class:`PartitionProcessor` owns the watermark of one input partition and
the conversations keyed to it. For each event it returns what must be
published: outcome revisions (with their statistics change) and charges.
The live stream keeps one per assigned partition; the offline replay keeps
one for its whole file. Storage is injected (:class:`ConversationStore`), so
the same code runs over a dict or over a Faust table.
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from typing import Protocol

import msgspec

from botstream.domain.config import DomainConfig
from botstream.domain.conversation import Conversation, decode_conversation, new_conversation
from botstream.domain.events import WidgetEvent
from botstream.domain.metering import Charge
from botstream.domain.stats import StatsChange
from botstream.domain.timefmt import month_of
from botstream.errors import InvalidRecord


class ConversationStore(Protocol):
    """Where a partition's conversation states live.

    A store may hand back a state as an object or in the compact form of
    :func:`~botstream.domain.conversation.encode_conversation`; the processor
    decodes it. That lets a store keep cold states small without a decoding
    layer of its own on the hot path.

    A store whose ``holds_open_states`` is true keeps an open state as the very
    object it was given, so changes made to that object are already stored: the
    processor then skips ``put`` after an event that leaves a conversation open
    (most events). Without the attribute, every change is ``put``.
    """

    def get(self, conversation_id: str) -> Conversation | bytes | None:
        """The state of a conversation (object or encoded), or None."""

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store the state of a conversation."""

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""

    def items(self) -> Iterator[tuple[str, Conversation | bytes]]:
        """Every stored conversation (used to rebuild timers after a restart)."""


class DictStore(dict):
    """The simplest :class:`ConversationStore`: a dict of live objects."""

    holds_open_states = True

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store the state of a conversation."""
        self[conversation_id] = state

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""
        self.pop(conversation_id, None)


class Revision(msgspec.Struct, frozen=True, gc=False):
    """A new outcome revision of a conversation, and how it moves the statistics.

    The record is built on demand by :meth:`record`, from the live state: call
    it before the conversation's next event is processed (publishers serialise
    each revision as they receive it). The offline replay never needs the
    intermediate records, only the last one, so it skips that work.
    """

    conversation_id: str
    state: Conversation
    end_reason: str
    stats: StatsChange

    def record(self) -> dict:
        """The outcome record of this revision (SPEC section 4)."""
        return self.state.outcome_record(self.conversation_id, self.end_reason)


class Expired(msgspec.Struct, frozen=True, gc=False):
    """A conversation's state was dropped, ``retention`` after it ended.

    Nothing is published for it: its last revision stays the latest. The live
    stream deletes it from its table; the offline replay keeps its last record.
    """

    conversation_id: str
    state: Conversation


Output = Revision | Charge | Expired

#: Timers wait by the hour of their deadline until event time reaches it (an hour
#: rather than a minute: the replay of a sparse log opened a minute per timer).
TIMER_BUCKET_MS = 3_600_000


def deadline_of(last_at: int, ended: bool, config: DomainConfig) -> int:
    """When a conversation next needs attention: its idle end if open, its expiry if ended."""
    return last_at + (config.retention_ms if ended else config.idle_timeout_ms)


class PartitionProcessor:
    """Applies events of one input partition and advances its event time."""

    def __init__(
        self,
        config: DomainConfig,
        store: ConversationStore,
        watermark: int | None = None,
        deadlines: dict[str, int] | None = None,
    ) -> None:
        """Take over ``store`` at event time ``watermark``.

        Every stored conversation needs a timer; ``deadlines`` (conversation id
        -> :func:`deadline_of` its state) gives them when they are known
        already (the processor keeps that dict as its own), else each stored
        state is read for its deadline here.
        """
        self.config = config
        self.store = store
        self._idle_timeout_ms = config.idle_timeout_ms
        self._retention_ms = config.retention_ms
        self._max_clock_skew_ms = config.max_clock_skew_ms
        self._get = store.get
        self._put = store.put
        self._store_holds_open_states = getattr(store, "holds_open_states", False)
        #: The largest event time applied (bounded by wall clock in the live stream).
        self.watermark = watermark
        self.duplicates = 0
        # Timers (see _schedule): the deadline of every conversation held, the ids
        # scheduled into each hour not yet reached, and a heap of those hours.
        if deadlines is None:
            deadlines = {}
            for conversation_id, state in store.items():
                if state.__class__ is bytes:
                    state = decode_conversation(state)
                deadlines[conversation_id] = self._deadline(state)
        self._scheduled: dict[str, int] = deadlines
        self._buckets: dict[int, list[str]] = {}
        self._bucket_heap: list[int] = []
        #: The last bucket opened: later deadlines wait in ``_buckets``, the others in ``_due``.
        self._due_bucket = -1
        self._due: list[tuple[int, str]] = []
        for conversation_id, deadline in deadlines.items():
            self._schedule(conversation_id, deadline)

    @property
    def open_conversations(self) -> int:
        """How many conversations this partition holds state for."""
        return len(self._scheduled)

    def process(self, event: WidgetEvent, now_ms: int | None = None) -> list[Output]:
        """Apply one decoded event; return the revisions and charges it causes.

        ``now_ms`` is the wall clock in the live stream (it caps how far an event
        dated in the future moves the watermark), None in the offline replay.
        Raises :class:`InvalidRecord` for a ``late`` event or an
        ``account_mismatch``; a duplicate returns no output and changes nothing.
        """
        # The hot path of the whole system: rules are inlined rather than split
        # into helpers, and costly ones are guarded by cheap tests.
        at = event.at
        watermark = self.watermark
        if watermark is not None and watermark - at >= self._retention_ms:
            raise InvalidRecord(
                "late",
                f"occurred_at is {(watermark - at) // 1000} s before the partition's "
                f"event time, beyond the retention of {self._retention_ms // 1000} s",
            )
        conversation_id = event.conversation_id
        state = self._get(conversation_id)
        if state is None:
            state = new_conversation(event)
            was_ended = None
            held_by_store = False
        else:
            if state.__class__ is bytes:
                state = decode_conversation(state)
                held_by_store = False
            else:
                held_by_store = self._store_holds_open_states
            if state.account_id != event.account_id:
                raise InvalidRecord(
                    "account_mismatch",
                    f"conversation {conversation_id[:64]!r} belongs to "
                    f"account {state.account_id[:64]!r}, not {event.account_id[:64]!r}",
                )
            if event.event_id in state.recent_ids:
                self.duplicates += 1
                return []
            was_ended = state.ended
        state.apply(event)

        if now_ms is not None and at > now_ms + self._max_clock_skew_ms:
            at = now_ms + self._max_clock_skew_ms
        advanced = watermark is None or at > watermark
        if advanced:
            self.watermark = watermark = at

        outputs: list[Output] = []
        if state.charged_at is None and state.click_at is not None:
            billable_at = state.billable_at
            if billable_at is not None:
                state.charged_at = billable_at
                outputs.append(
                    Charge(state.account_id, conversation_id, billable_at, month_of(billable_at))
                )
        if state.last_rank or watermark - state.last_at >= self._idle_timeout_ms:
            state.ended = True
            outputs.append(
                self._revise(
                    conversation_id, state, state.end_reason(watermark, self._idle_timeout_ms)
                )
            )
            deadline = state.last_at + self._retention_ms
            # Timers are moved lazily (a later deadline is found when the earlier
            # one fires) except here: an ended state is usually stored encoded, and
            # rescheduling now is cheaper than decoding it when the idle timer fires.
            reschedule = deadline != self._scheduled.get(conversation_id)
            self._put(conversation_id, state)
        else:
            state.ended = False
            deadline = state.last_at + self._idle_timeout_ms
            # An open conversation's deadline only moves later (found lazily when
            # the timer fires); it moves earlier when the conversation is new or
            # was reopened (retention deadline -> idle deadline).
            reschedule = was_ended is None or was_ended
            if not held_by_store:
                self._put(conversation_id, state)
        if reschedule:
            self._schedule(conversation_id, deadline)
        if advanced:
            due = self._due
            if due:
                fire = due[0][0] <= watermark
            else:
                waiting = self._bucket_heap
                fire = bool(waiting) and waiting[0] * TIMER_BUCKET_MS <= watermark
            if fire:
                self._fire_timers(watermark, outputs)
        return outputs

    def advance(self, to_ms: int) -> list[Output]:
        """Move the watermark to ``to_ms`` (if later) and end conversations idle since.

        The live stream calls this with the wall clock when a partition is idle.
        """
        if self.watermark is not None and to_ms <= self.watermark:
            return []
        self.watermark = to_ms
        outputs: list[Output] = []
        self._fire_timers(to_ms, outputs)
        return outputs

    def end_all(self) -> list[Output]:
        """End every open conversation by inactivity (the end of an offline replay)."""
        outputs: list[Output] = []
        timers = sorted((deadline, id_) for id_, deadline in self._scheduled.items())
        for _deadline, conversation_id in timers:
            state = self._load(conversation_id)
            if state is not None and not state.ended:
                outputs.append(self._end_by_inactivity(conversation_id, state))
        return outputs

    # -- internals ------------------------------------------------------------

    def _load(self, conversation_id: str) -> Conversation | None:
        state = self._get(conversation_id)
        if state.__class__ is bytes:
            return decode_conversation(state)
        return state

    def _deadline(self, state: Conversation) -> int:
        """When the state next needs attention: idle end if open, expiry if ended."""
        return deadline_of(state.last_at, state.ended, self.config)

    def _schedule(self, conversation_id: str, deadline: int) -> None:
        """Set the conversation's timer; an earlier one of it becomes stale.

        A timer fires in the order of (deadline, conversation id), as a heap of
        such pairs would have it, but only the timers of hours opened so far are
        pairs in a heap (``_due``): the others are ids in their hour's list, 8
        bytes each rather than 64 for a pair and its heap slot. An hour is
        opened when event time reaches it; its list may name an id whose
        deadline has moved since, which the opening skips.
        """
        self._scheduled[conversation_id] = deadline
        bucket = deadline // TIMER_BUCKET_MS
        if bucket <= self._due_bucket:
            heappush(self._due, (deadline, conversation_id))
            return
        ids = self._buckets.get(bucket)
        if ids is None:
            self._buckets[bucket] = [conversation_id]
            heappush(self._bucket_heap, bucket)
        else:
            ids.append(conversation_id)

    def _open_bucket(self) -> None:
        """Move the earliest waiting hour's timers into ``_due`` (which is empty)."""
        bucket = heappop(self._bucket_heap)
        self._due_bucket = bucket
        scheduled = self._scheduled
        due = self._due
        seen: set[str] = set()
        for conversation_id in self._buckets.pop(bucket):
            deadline = scheduled.get(conversation_id)
            if (
                deadline is not None
                and deadline // TIMER_BUCKET_MS == bucket
                and conversation_id not in seen
            ):
                seen.add(conversation_id)
                due.append((deadline, conversation_id))
        heapify(due)

    def _fire_timers(self, watermark: int, outputs: list[Output]) -> None:
        heap = self._due
        buckets = self._bucket_heap
        scheduled = self._scheduled
        get = self._get
        # _load and _deadline, inlined: this runs for about one event in six.
        idle_timeout_ms = self._idle_timeout_ms
        retention_ms = self._retention_ms
        while True:
            if not heap:
                # Every timer still in an hour's list is later than any in ``_due``.
                if not buckets or buckets[0] * TIMER_BUCKET_MS > watermark:
                    return
                self._open_bucket()
                continue
            if heap[0][0] > watermark:
                return
            deadline, conversation_id = heappop(heap)
            if scheduled.get(conversation_id) != deadline:
                continue
            state = get(conversation_id)
            if state is None:
                del scheduled[conversation_id]
                continue
            if state.__class__ is bytes:
                state = decode_conversation(state)
            actual = state.last_at + (retention_ms if state.ended else idle_timeout_ms)
            if actual > watermark:
                self._schedule(conversation_id, actual)
            elif state.ended:
                del scheduled[conversation_id]
                self.store.delete(conversation_id)
                outputs.append(Expired(conversation_id, state))
            else:
                outputs.append(self._end_by_inactivity(conversation_id, state))

    def _end_by_inactivity(self, conversation_id: str, state: Conversation) -> Revision:
        state.ended = True
        revision = self._revise(conversation_id, state, "inactivity")
        self._put(conversation_id, state)
        self._schedule(conversation_id, self._deadline(state))
        return revision

    def _revise(self, conversation_id: str, state: Conversation, end_reason: str) -> Revision:
        """Count a new revision and build its record and statistics change."""
        state.revision += 1
        outcome = state.outcome
        old = None
        if state.counted_started_at is not None:
            old = (month_of(state.counted_started_at), state.counted_outcome)
        state.counted_started_at = state.started_at
        state.counted_outcome = int(outcome)
        change = StatsChange(state.account_id, old, (month_of(state.started_at), int(outcome)))
        return Revision(conversation_id, state, end_reason, change)
