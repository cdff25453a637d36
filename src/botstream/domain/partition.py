"""Processing one input partition: event time, conversation lifecycle, charges.

A :class:`PartitionProcessor` owns the watermark of one input partition and
the conversations keyed to it. For each event it returns what must be
published: outcome revisions (with their statistics change) and charges.
The live stream keeps one per assigned partition; the offline replay keeps
one for its whole file. Storage is injected (:class:`ConversationStore`), so
the same code runs over a dict or over a Faust table.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from botstream.domain.config import DomainConfig
from botstream.domain.conversation import Conversation, new_conversation
from botstream.domain.events import WidgetEvent
from botstream.domain.metering import Charge
from botstream.domain.stats import StatsChange
from botstream.domain.timefmt import month_of
from botstream.errors import InvalidRecord


class ConversationStore(Protocol):
    """Where a partition's conversation states live."""

    def get(self, conversation_id: str) -> Conversation | None:
        """The state of a conversation, or None."""

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store the state of a conversation."""

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""

    def items(self) -> Iterator[tuple[str, Conversation]]:
        """Every stored conversation (used to rebuild timers after a restart)."""


class DictStore(dict):
    """The simplest :class:`ConversationStore`: a dict of live objects."""

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store the state of a conversation."""
        self[conversation_id] = state

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""
        self.pop(conversation_id, None)


@dataclass(frozen=True, slots=True)
class Revision:
    """A new outcome revision of a conversation, and how it moves the statistics."""

    conversation_id: str
    record: dict
    stats: StatsChange


Output = Revision | Charge


class PartitionProcessor:
    """Applies events of one input partition and advances its event time."""

    def __init__(
        self, config: DomainConfig, store: ConversationStore, watermark: int | None = None
    ) -> None:
        self.config = config
        self.store = store
        #: The largest event time applied (bounded by wall clock in the live stream).
        self.watermark = watermark
        self.duplicates = 0
        self.applied = 0
        # Timers: one valid (deadline, conversation id) heap entry per conversation;
        # entries whose deadline no longer matches ``_scheduled`` are stale and skipped.
        self._deadlines: list[tuple[int, str]] = []
        self._scheduled: dict[str, int] = {}
        for conversation_id, state in store.items():
            self._schedule(conversation_id, self._deadline(state))

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
        config = self.config
        watermark = self.watermark
        if watermark is not None and watermark - event.at >= config.retention_ms:
            raise InvalidRecord(
                "late",
                f"occurred_at is {(watermark - event.at) // 1000} s before the "
                f"partition's event time, beyond the retention of {config.retention_ms // 1000} s",
            )
        conversation_id = event.conversation_id
        state = self.store.get(conversation_id)
        if state is None:
            state = new_conversation(event)
            old_deadline = None
        else:
            if state.account_id != event.account_id:
                raise InvalidRecord(
                    "account_mismatch",
                    f"conversation {conversation_id[:64]!r} belongs to "
                    f"account {state.account_id[:64]!r}, not {event.account_id[:64]!r}",
                )
            if state.is_duplicate(event.event_id):
                self.duplicates += 1
                return []
            old_deadline = self._deadline(state)
        state.apply(event)
        self.applied += 1

        event_time = (
            event.at if now_ms is None else min(event.at, now_ms + config.max_clock_skew_ms)
        )
        advanced = watermark is None or event_time > watermark
        if advanced:
            self.watermark = watermark = event_time

        outputs: list[Output] = []
        if state.charged_at is None:
            billable_at = state.billable_at
            if billable_at is not None:
                state.charged_at = billable_at
                outputs.append(
                    Charge(state.account_id, conversation_id, billable_at, month_of(billable_at))
                )
        end_reason = state.end_reason(watermark, config.idle_timeout_ms)
        state.ended = end_reason is not None
        if end_reason is not None:
            outputs.append(self._revise(conversation_id, state, end_reason))
        self.store.put(conversation_id, state)
        deadline = self._deadline(state)
        if old_deadline is None or deadline < old_deadline:
            self._schedule(conversation_id, deadline)
        if advanced:
            outputs.extend(self._fire_timers(watermark))
        return outputs

    def advance(self, to_ms: int) -> list[Output]:
        """Move the watermark to ``to_ms`` (if later) and end conversations idle since.

        The live stream calls this with the wall clock when a partition is idle.
        """
        if self.watermark is not None and to_ms <= self.watermark:
            return []
        self.watermark = to_ms
        return list(self._fire_timers(to_ms))

    def end_all(self) -> list[Output]:
        """End every open conversation by inactivity (the end of an offline replay)."""
        outputs: list[Output] = []
        for deadline, conversation_id in sorted(self._deadlines):
            if self._scheduled.get(conversation_id) != deadline:
                continue
            state = self.store.get(conversation_id)
            if state is not None and not state.ended:
                outputs.append(self._end_by_inactivity(conversation_id, state))
        return outputs

    # -- internals ------------------------------------------------------------

    def _deadline(self, state: Conversation) -> int:
        """When the state next needs attention: idle end if open, expiry if ended."""
        config = self.config
        return state.last_at + (config.retention_ms if state.ended else config.idle_timeout_ms)

    def _schedule(self, conversation_id: str, deadline: int) -> None:
        self._scheduled[conversation_id] = deadline
        heapq.heappush(self._deadlines, (deadline, conversation_id))

    def _fire_timers(self, watermark: int) -> Iterator[Output]:
        heap = self._deadlines
        scheduled = self._scheduled
        while heap and heap[0][0] <= watermark:
            deadline, conversation_id = heapq.heappop(heap)
            if scheduled.get(conversation_id) != deadline:
                continue
            state = self.store.get(conversation_id)
            if state is None:
                del scheduled[conversation_id]
                continue
            actual = self._deadline(state)
            if actual > watermark:
                self._schedule(conversation_id, actual)
            elif state.ended:
                del scheduled[conversation_id]
                self.store.delete(conversation_id)
            else:
                yield self._end_by_inactivity(conversation_id, state)

    def _end_by_inactivity(self, conversation_id: str, state: Conversation) -> Revision:
        state.ended = True
        revision = self._revise(conversation_id, state, "inactivity")
        self.store.put(conversation_id, state)
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
        return Revision(conversation_id, state.outcome_record(conversation_id, end_reason), change)
