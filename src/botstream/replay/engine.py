"""The offline replay engine: the live stream's domain core, run over files.

Reads plan records first, then the event log in file order: as one partition,
or, given ``partitions``, routed to as many partitions as Kafka's default
partitioner would send each conversation's events (so that event time, late
events and revisions are those of a live stream with that many partitions).
It keeps every result in memory: usage per account and month, alerts in the
order raised, statistics, dead letters, and the conversations themselves, from
which the latest outcome revisions are written at the end. Nothing here knows
about terminals or flags (see :mod:`botstream.commands.replay`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import orjson

from botstream.domain.config import DomainConfig
from botstream.domain.conversation import Conversation, decode_conversation, encode_conversation
from botstream.domain.dead_letters import dead_letter
from botstream.domain.events import WidgetEvent, decode_event
from botstream.domain.metering import Charge, Usage, count_charge, usage_record
from botstream.domain.partition import PartitionProcessor, Revision
from botstream.domain.plans import PlanHistory, add_plan, decode_plan
from botstream.domain.stats import apply_stats_change, stats_record
from botstream.errors import InvalidRecord
from botstream.kafka.partitioner import default_partition


class CompactingStore(dict):
    """Conversation store that keeps states as objects, and compacts ended ones in bulk.

    Most conversations of a log are ended and only kept for late events until
    their retention runs out. In a log of a few weeks most of them expire
    while few are held, and serialising each one when it ends, to decode it
    again when it expires, was a tenth of a replay's time. So ended states stay
    objects until ``max_ended_objects`` of them are held; then all of them are
    put in their compact serialised form (about 200 bytes against 1.4 KB), so a
    long log's replay stays small. A conversation dropped after retention
    leaves its last outcome record in ``dropped``. ``get`` is the plain dict
    lookup: the processor decodes compact states itself.
    """

    # An open state is held as the object put: the processor need not put it again.
    holds_open_states = True

    def __init__(self, max_ended_objects: int = 100_000) -> None:
        super().__init__()
        self.dropped: dict[str, bytes] = {}
        self.max_ended_objects = max_ended_objects
        #: Conversations put since the last compaction while ended (some reopened since).
        self._ended_objects: set[str] = set()

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store a conversation (as the object; ended ones are compacted in bulk)."""
        self[conversation_id] = state
        if state.ended:
            ended = self._ended_objects
            ended.add(conversation_id)
            if len(ended) > self.max_ended_objects:
                self.compact()

    def compact(self) -> None:
        """Serialise every ended conversation held as an object."""
        for conversation_id in self._ended_objects:
            state = dict.get(self, conversation_id)
            if state is not None and type(state) is not bytes and state.ended:
                self[conversation_id] = encode_conversation(state)
        self._ended_objects.clear()

    def load(self, conversation_id: str) -> Conversation | None:
        """The state of a conversation as an object, or None."""
        state = self.get(conversation_id)
        return decode_conversation(state) if type(state) is bytes else state

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation (its last record is kept by the engine)."""
        self.pop(conversation_id, None)
        self._ended_objects.discard(conversation_id)

    def states(self) -> Iterator[tuple[str, Conversation]]:
        """Every stored conversation, decoded."""
        for conversation_id in list(self.keys()):
            yield conversation_id, self.load(conversation_id)


@dataclass
class ReplayResult:
    """Everything an offline replay produced."""

    store: CompactingStore = field(default_factory=CompactingStore)
    #: The usage record of every (account, month) with a charge, built by ``finish``.
    usage: dict[tuple[str, str], dict] = field(default_factory=dict)
    alerts: list[dict] = field(default_factory=list)
    #: account id -> month -> outcome name -> count.
    stats: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    dead_letters: list[dict] = field(default_factory=list)
    dead_letter_codes: Counter = field(default_factory=Counter)
    events_read: int = 0
    plans_read: int = 0
    revisions: int = 0
    charges: int = 0
    duplicates: int = 0

    def outcome_records(self) -> Iterator[bytes]:
        """The latest outcome revision of every conversation, serialised.

        After :meth:`ReplayEngine.finish` every live conversation has ended,
        so its state is exactly its latest revision.
        """
        store = self.store
        # A live state is newer than a dropped record of the same id (it started afresh).
        for conversation_id, state in store.states():
            yield orjson.dumps(state.outcome_record(conversation_id, state.final_end_reason))
        for conversation_id, record in store.dropped.items():
            if conversation_id not in store:
                yield record

    def stats_records(self) -> list[dict]:
        """Statistics per account and month of ``started_at``, skipping empty months."""
        return [
            stats_record(account_id, month, counts)
            for account_id, months in sorted(self.stats.items())
            for month, counts in sorted(months.items())
            if any(counts.values())
        ]


class ReplayEngine:
    """Feeds records through the domain core exactly as the live stream does."""

    def __init__(
        self, config: DomainConfig, partitions: int = 1, max_ended_objects: int = 100_000
    ) -> None:
        """Replay under ``config`` as ``partitions`` partitions would.

        ``max_ended_objects`` is how many ended conversations are held as objects
        before they are compacted (see :class:`CompactingStore`).
        """
        self.config = config
        self.result = ReplayResult(store=CompactingStore(max_ended_objects))
        #: One processor per partition; conversations of different partitions never
        #: share a key, so they share the store.
        self.partitions = [
            PartitionProcessor(config, self.result.store) for _ in range(max(1, partitions))
        ]
        self._process = self.partitions[0].process if partitions <= 1 else self._process_routed
        self._plans: dict[str, PlanHistory] = {}
        self._usage: dict[tuple[str, str], Usage] = {}
        #: The plan history in force at each month's last charge, for its usage record.
        self._usage_plans: dict[tuple[str, str], PlanHistory | None] = {}

    def add_plan(self, raw: bytes, source: str, offset: int) -> None:
        """Read one raw plan record (a bad one becomes a dead letter)."""
        try:
            record = decode_plan(raw, self.config)
        except InvalidRecord as error:
            self._dead(error, source, offset, raw)
            return
        self.result.plans_read += 1
        self._plans[record.account_id] = add_plan(self._plans.get(record.account_id), record)

    def add_event(self, raw: bytes, source: str, offset: int) -> None:
        """Process one raw widget event (a bad one becomes a dead letter)."""
        self.result.events_read += 1
        try:
            outputs = self._process(decode_event(raw, self.config.max_event_bytes))
        except InvalidRecord as error:
            self._dead(error, source, offset, raw)
            return
        if outputs:
            self._publish(outputs)

    def _process_routed(self, event: WidgetEvent) -> list:
        """Process ``event`` in the partition its conversation's key goes to."""
        key = event.conversation_id.encode()
        return self.partitions[default_partition(key, len(self.partitions))].process(event)

    def add_event_lines(self, chunks: Iterable[list[bytes]], source: str) -> None:
        """Process a file's lines, given as consecutive lists; the hot loop of a replay.

        Lines are numbered from 0 across the lists; blank (empty or whitespace)
        lines are skipped but counted, and one trailing ``\r`` is dropped. The
        steps are those of :meth:`add_event`, with lookups hoisted out of the loop.
        """
        process = self._process
        publish = self._publish
        max_bytes = self.config.max_event_bytes
        first_number = 0  # of the first line in ``lines``
        blank_lines = 0
        for lines in chunks:
            # Lines are decoded as they are. A blank line, or one with a CRLF end,
            # needs a second look only when it is rejected: JSON allows whitespace
            # (``\r`` included) around the object, and a blank line is never valid.
            for index, raw in enumerate(lines):
                try:
                    outputs = process(decode_event(raw, max_bytes))
                except InvalidRecord as error:
                    blank_lines += self._rejected_line(raw, error, source, first_number + index)
                    continue
                if outputs:
                    publish(outputs)
            first_number += len(lines)
        self.result.events_read += first_number - blank_lines

    def _rejected_line(self, raw: bytes, error: InvalidRecord, source: str, number: int) -> int:
        """Deal with a line whose event was rejected as it was; 1 if it was blank, else 0.

        A blank line is skipped. A line with a CRLF end is retried without its
        ``\r`` (the limit on the size of a record does not count it). Anything
        else is a dead letter. A rejected event changed nothing, so a retry is safe.
        """
        if not raw or raw.isspace():
            return 1
        if raw[-1] != 13:
            self._dead(error, source, number, raw)
            return 0
        raw = raw[:-1]
        try:
            outputs = self._process(decode_event(raw, self.config.max_event_bytes))
        except InvalidRecord as retried_error:
            self._dead(retried_error, source, number, raw)
            return 0
        if outputs:
            self._publish(outputs)
        return 0

    def finish(self) -> ReplayResult:
        """End every open conversation by inactivity and return the results."""
        for partition in self.partitions:
            self._publish(partition.end_all())
        result = self.result
        result.duplicates = sum(partition.duplicates for partition in self.partitions)
        # Only the last usage record of a month is written, so records are built
        # once here rather than on every charge, each with the plan history as it
        # was at the month's last charge.
        result.usage = {
            key: usage_record(usage, self._usage_plans[key], self.config)
            for key, usage in self._usage.items()
        }
        return result

    def _publish(self, outputs: list) -> None:
        result = self.result
        store = result.store
        for output in outputs:
            kind = type(output)
            if kind is Revision:
                result.revisions += 1
                change = output.stats
                account_stats = result.stats.get(change.account_id)
                if account_stats is None:
                    account_stats = result.stats[change.account_id] = {}
                apply_stats_change(account_stats, change)
            elif kind is Charge:
                self._charge(output)
            else:
                state = output.state
                record = state.outcome_record(output.conversation_id, state.final_end_reason)
                # A copy, so the kept record does not pin orjson's 4 KiB buffer.
                store.dropped[output.conversation_id] = memoryview(orjson.dumps(record)).tobytes()

    def _charge(self, charge: Charge) -> None:
        key = (charge.account_id, charge.month)
        plans = self._plans.get(charge.account_id)
        self._usage[key], alerts = count_charge(self._usage.get(key), charge, plans, self.config)
        # Histories are replaced, never changed, when a plan is added: keep this one.
        self._usage_plans[key] = plans
        if alerts:
            self.result.alerts.extend(alerts)
        self.result.charges += 1

    def _dead(self, error: InvalidRecord, source: str, offset: int, raw: bytes) -> None:
        self.result.dead_letters.append(dead_letter(error, source, None, offset, None, raw))
        self.result.dead_letter_codes[error.code] += 1
