"""The three stages' per-partition tasks: decode, call the domain, collect outputs.

No business rule lives here: every decision is a call into
:mod:`botstream.domain`. A task only turns Kafka records into domain inputs,
domain outputs into :class:`~botstream.stream.engine.Output` records, and its
state into changelog entries.

* :class:`ConversationTask` (input ``widget-events``): conversation state,
  outcome revisions, charges and statistics changes re-keyed by account.
* :class:`PlanTask` (input ``account-plans``): validates plan records and
  re-keys them by account, so that they reach the account stage in the same
  partition as the account's charges, whatever partitioner upstream used.
* :class:`AccountTask` (input ``botstream-account-updates``): plan history,
  usage and alerts, statistics, of the months of history it keeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from botstream.config import Settings
from botstream.domain.conversation import encoded_last_at_and_ended
from botstream.domain.dead_letters import dead_letter, dead_letter_key
from botstream.domain.events import decode_event
from botstream.domain.history import (
    advance_clock,
    capped_month,
    expired_months,
    first_kept_month,
    is_expired,
    prune_plan_history,
)
from botstream.domain.metering import Charge, Usage, apply_charge
from botstream.domain.partition import Expired, PartitionProcessor, Revision, deadline_of
from botstream.domain.plans import PlanHistory, PlanRecord, add_plan, decode_plan
from botstream.domain.stats import StatsChange, apply_kept_stats_change
from botstream.errors import InvalidRecord
from botstream.kafka.records import InputRecord
from botstream.stream.engine import Output
from botstream.stream.memory import release_free_memory
from botstream.stream.stores import open_store

_WATERMARK_KEY = b"w"
_CONVERSATION_PREFIX = b"c:"


class ConversationTask:
    """Conversations of one ``widget-events`` partition."""

    def __init__(self, partition: int, settings: Settings, metrics=None) -> None:
        self.partition = partition
        self.settings = settings
        self.metrics = metrics
        path = Path(settings.data_dir, "state", f"{settings.app_id}-conversations", str(partition))
        self.store = open_store(settings.store, path)
        self.processor: PartitionProcessor | None = None
        self._restored_watermark: int | None = None
        self._saved_watermark: int | None = None
        #: Timers of the restored conversations, worked out as the changelog is read
        #: (in batches) rather than all at once in :meth:`restored`.
        self._restored_deadlines: dict[str, int] = {}
        topics = settings.topics
        self._input = topics.events
        self._outcomes, self._updates = topics.outcomes, topics.account_updates

    # -- changelog ------------------------------------------------------------------

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Load a conversation state or the watermark from the changelog."""
        if key == _WATERMARK_KEY:
            self._restored_watermark = None if value is None else int(value)
        elif key.startswith(_CONVERSATION_PREFIX):
            conversation_id = key[len(_CONVERSATION_PREFIX) :].decode()
            self.store.restore(conversation_id, value)
            if value is None:
                self._restored_deadlines.pop(conversation_id, None)
            else:
                last_at, ended = encoded_last_at_and_ended(value)
                self._restored_deadlines[conversation_id] = deadline_of(
                    last_at, ended, self.settings.domain
                )

    async def resume_local(self, token: str) -> bool:
        """Take the state from the worker's own files if ``token`` committed it (RocksDB)."""
        config = self.settings.domain
        local = await self.store.resume(
            token, lambda last_at, ended: deadline_of(last_at, ended, config)
        )
        if local is None:
            return False
        self._restored_deadlines, self._restored_watermark = local
        return True

    def restored(self) -> None:
        """Build the processor (and its timers) over the restored state."""
        self.store.take_changes()  # nothing changed yet; ends a restore's last write
        self._saved_watermark = self._restored_watermark
        self.processor = PartitionProcessor(
            self.settings.domain,
            self.store,
            self._restored_watermark,
            deadlines=self._restored_deadlines,
        )
        self._restored_deadlines = {}
        if self.metrics is not None:  # conversations held, from the start
            self.metrics.events_processed(self.partition, [], self.processor)

    def changes(self) -> dict[bytes, bytes | None]:
        """Changed conversations (encoded, or None when dropped) and the watermark."""
        changes: dict[bytes, bytes | None] = {
            _CONVERSATION_PREFIX + conversation_id.encode(): state
            for conversation_id, state in self.store.take_changes().items()
        }
        watermark = self.processor.watermark
        if watermark != self._saved_watermark:
            changes[_WATERMARK_KEY] = str(watermark).encode()
            self._saved_watermark = watermark
        return changes

    def committed(self, token: str) -> None:
        """The state is what transaction ``token`` committed: a RocksDB store writes it."""
        self.store.committed(token, self.processor.watermark)

    def close(self) -> None:
        """Release the store (a RocksDB database stays on disk for the next start)."""
        self.store.close()

    # -- processing -----------------------------------------------------------------

    def process(self, records: list[InputRecord], now_ms: int, out: list[Output]) -> None:
        """Decode and apply each event; publish revisions, charges and dead letters."""
        process = self.processor.process
        max_bytes = self.settings.domain.max_event_bytes
        for record in records:
            try:
                outputs = process(decode_event(record.value or b"", max_bytes), now_ms)
            except InvalidRecord as error:
                out.append(
                    dead_letter_output(
                        error, self._input, self.partition, record, self.settings, self.metrics
                    )
                )
                continue
            if outputs:
                self._publish(outputs, out)
        if self.metrics is not None:
            self.metrics.events_processed(self.partition, records, self.processor)

    def tick(self, now_ms: int, out: list[Output]) -> None:
        """An idle partition's event time follows the wall clock (SPEC section 4).

        A partition that has never had an event has no event time yet, and is
        left so: advancing it would end nothing, and would make a backlog of
        older events, arriving later, look idle on arrival (each event would
        end its conversation at once, then reopen it with the next).
        """
        if self.processor.watermark is None:
            return
        self._publish(self.processor.advance(now_ms), out)

    def _publish(self, outputs: Iterable, out: list[Output]) -> None:
        for output in outputs:
            kind = type(output)
            if kind is Revision:
                account = output.state.account_id.encode()
                out.append(
                    Output(
                        self._outcomes,
                        output.conversation_id.encode(),
                        orjson.dumps(output.record()),
                    )
                )
                out.append(Output(self._updates, account, encode_stats_change(output.stats)))
                if self.metrics is not None:
                    self.metrics.revision(output)
            elif kind is Charge:
                out.append(Output(self._updates, output.account_id.encode(), encode_charge(output)))
            elif kind is not Expired:
                raise TypeError(f"unexpected output {output!r}")


class PlanTask:
    """Plan records of one ``account-plans`` partition: validated, re-keyed by account."""

    def __init__(self, partition: int, settings: Settings, metrics=None) -> None:
        self.partition = partition
        self.settings = settings
        self.metrics = metrics

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Stateless: nothing to restore."""

    def restored(self) -> None:
        """Stateless: nothing to prepare."""

    def changes(self) -> dict[bytes, bytes | None]:
        """Stateless: no changes."""
        return {}

    def committed(self, token: str) -> None:
        """Stateless: nothing to publish to readers."""

    async def resume_local(self, token: str) -> bool:
        """Stateless: nothing kept locally."""
        return False

    def close(self) -> None:
        """Stateless: nothing to release."""

    def tick(self, now_ms: int, out: list[Output]) -> None:
        """No wall-clock duties."""

    def process(self, records: list[InputRecord], now_ms: int, out: list[Output]) -> None:
        """Forward each valid plan record to the account stage; dead-letter the rest."""
        topics = self.settings.topics
        for record in records:
            try:
                plan = decode_plan(record.value or b"", self.settings.domain)
            except InvalidRecord as error:
                out.append(
                    dead_letter_output(
                        error, topics.plans, self.partition, record, self.settings, self.metrics
                    )
                )
                continue
            out.append(Output(topics.account_updates, plan.account_id.encode(), encode_plan(plan)))


class AccountView:
    """The account stage's state as of its last committed transaction: what reads see.

    A batch changes the task's own state before its transaction commits, and
    the transaction may still abort; readers must never see that.
    """

    def __init__(self) -> None:
        self.plans: dict[str, PlanHistory] = {}
        self.usage: dict[tuple[str, str], Usage] = {}
        self.stats: dict[str, dict[str, dict[str, int]]] = {}
        #: The first month of the kept history (None: nothing has expired yet).
        self.first_kept: str | None = None

    def expired(self, month: str) -> bool:
        """Whether ``month`` lies before the kept history (its usage and statistics are gone)."""
        return is_expired(month, self.first_kept)


#: The changelog key of the account stage's history clock (the latest month seen).
_CLOCK_KEY = ("h", "", None)


def _compact_dumps(value: object) -> bytes:
    """``orjson.dumps`` in a bytes object of its own size.

    orjson hands back its 4 KiB working buffer as the bytes object: a batch of
    thousands of changelog entries and usage records would hold thousands of
    them at once (a month's expiry, hundreds of thousands).
    """
    return memoryview(orjson.dumps(value)).tobytes()


class AccountTask:
    """Plans, usage, alerts and statistics of the accounts of one partition.

    It keeps ``history_months`` months of them (see
    :mod:`botstream.domain.history`): when its history clock enters a new
    month, the usage and statistics of months before the window are deleted,
    with tombstones on the changelog, and plan records that can no longer
    matter are dropped.
    """

    def __init__(self, partition: int, settings: Settings, metrics=None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.plans: dict[str, PlanHistory] = {}
        self.usage: dict[tuple[str, str], Usage] = {}
        self.stats: dict[str, dict[str, dict[str, int]]] = {}
        #: The latest month of the charges and statistics applied (capped by the wall clock).
        self.clock: str | None = None
        self.first_kept: str | None = None
        #: Charges and statistics changes that found their month expired (see history.py).
        self.expired_updates = 0
        #: Set when a month expired: the next commit shrinks the tables, the next batch
        #: (once the transaction's own buffers are gone) frees the memory.
        self._shrink = False
        self._release = False
        self.view = AccountView()
        self._dirty: set[tuple] = set()
        #: Entries written by the transaction in flight, published to the view once it commits.
        self._in_flight: set[tuple] = set()

    def restore(self, key: bytes, value: bytes | None) -> None:
        """Load a plan history, a usage or a statistics entry, or the history clock."""
        kind, account, *rest = orjson.loads(key)
        data = None if value is None else orjson.loads(value)
        if kind == "p":
            if data is None:
                self.plans.pop(account, None)
            else:
                self.plans[account] = data
        elif kind == "u":
            (month,) = rest
            if data is None:
                self.usage.pop((account, month), None)
            else:
                used, updated_at, alerts_sent = data
                self.usage[(account, month)] = Usage(account, month, used, updated_at, alerts_sent)
        elif kind == "s":
            (month,) = rest
            if data is None:
                months = self.stats.get(account, {})
                months.pop(month, None)
                if not months:
                    self.stats.pop(account, None)
            else:
                self.stats.setdefault(account, {})[month] = data
        elif kind == "h":
            self.clock = data
            self.first_kept = first_kept_month(data, self.settings.domain.history_months)

    def restored(self) -> None:
        """Nothing is dirty right after a restore; readers see everything restored."""
        self._in_flight = {("p", account, None) for account in self.plans}
        self._in_flight.update(("u", account, month) for account, month in self.usage)
        self._in_flight.update(
            ("s", account, month) for account, months in self.stats.items() for month in months
        )
        self._in_flight.add(_CLOCK_KEY)
        self.committed()
        self._dirty.clear()

    async def resume_local(self, token: str) -> bool:
        """Nothing is kept locally: the state comes from the changelog."""
        return False

    def close(self) -> None:
        """Nothing to release."""

    def committed(self, token: str = "") -> None:
        """Publish the committed entries to :attr:`view` (copies: the task keeps changing)."""
        view = self.view
        for kind, account, month in self._in_flight:
            if kind == "p":
                plans = self.plans.get(account)
                if plans is None:
                    view.plans.pop(account, None)
                else:
                    view.plans[account] = plans  # replaced, never changed in place
            elif kind == "u":
                usage = self.usage.get((account, month))
                if usage is None:
                    view.usage.pop((account, month), None)
                    continue
                view.usage[(account, month)] = Usage(
                    usage.account_id,
                    usage.month,
                    usage.used,
                    usage.updated_at,
                    list(usage.alerts_sent),
                )
            elif kind == "s":
                counts = self.stats.get(account, {}).get(month)
                if counts is not None:
                    view.stats.setdefault(account, {})[month] = dict(counts)
                elif account in view.stats:
                    view.stats[account].pop(month, None)
                    if not view.stats[account]:
                        del view.stats[account]
            else:
                view.first_kept = self.first_kept
        self._in_flight = set()
        if self._shrink:
            # A dict keeps its table after deletions: rebuild the big ones; the memory
            # goes back to the system before the next batch, when the transaction's
            # buffers (its tombstones) are gone too.
            self._shrink = False
            self.usage, self.stats = dict(self.usage), dict(self.stats)
            view.usage, view.stats = dict(view.usage), dict(view.stats)
            self._release = True

    def tick(self, now_ms: int, out: list[Output]) -> None:
        """No wall-clock duties."""

    def changes(self) -> dict[bytes, bytes | None]:
        """Changed plan histories, usages, statistics and clock; None for what expired."""
        changes: dict[bytes, bytes | None] = {}
        for kind, account, month in self._dirty:
            if kind == "p":
                value = self.plans.get(account)
            elif kind == "u":
                usage = self.usage.get((account, month))
                value = None if usage is None else [usage.used, usage.updated_at, usage.alerts_sent]
            elif kind == "s":
                value = self.stats.get(account, {}).get(month)
            else:
                value = self.clock
            key = [kind, account] if month is None else [kind, account, month]
            changes[_compact_dumps(key)] = None if value is None else _compact_dumps(value)
        self._in_flight, self._dirty = self._dirty, set()
        return changes

    def process(self, records: list[InputRecord], now_ms: int, out: list[Output]) -> None:
        """Apply charges, statistics changes and plan changes in log order."""
        if self._release:
            self._release = False
            release_free_memory()
        topics = self.settings.topics
        config = self.settings.domain
        for record in records:
            message = orjson.loads(record.value)
            kind = message["t"]
            account = message["account_id"]
            if kind == "charge":
                charge = Charge(
                    account, message["conversation_id"], message["billable_at"], message["month"]
                )
                self._advance_clock(charge.month, now_ms)
                if is_expired(charge.month, self.first_kept):
                    self.expired_updates += 1
                    continue
                key = (account, charge.month)
                usage, usage_record, alerts = apply_charge(
                    self.usage.get(key), charge, self.plans.get(account), config
                )
                self.usage[key] = usage
                self._dirty.add(("u", account, charge.month))
                out.append(
                    Output(
                        topics.usage,
                        f"{account}:{charge.month}".encode(),
                        _compact_dumps(usage_record),
                    )
                )
                for alert in alerts:
                    out.append(Output(topics.alerts, account.encode(), _compact_dumps(alert)))
                if self.metrics is not None:
                    self.metrics.charged(len(alerts))
            elif kind == "stats":
                old = message["old"]
                change = StatsChange(
                    account, None if old is None else tuple(old), tuple(message["new"])
                )
                self._advance_clock(change.new[0], now_ms)
                changed = apply_kept_stats_change(
                    self.stats.setdefault(account, {}), change, self.first_kept
                )
                if len(changed) < (1 if change.old is None else 2):
                    self.expired_updates += 1
                    if not self.stats[account]:
                        del self.stats[account]
                for month in changed:
                    self._dirty.add(("s", account, month))
            elif kind == "plan":
                plan = PlanRecord(
                    account, message["plan"], message["chatbot_pack"], message["effective_at"]
                )
                history = add_plan(self.plans.get(account), plan)
                self.plans[account] = prune_plan_history(history, self.first_kept)
                self._dirty.add(("p", account, None))

    def _advance_clock(self, month: str, now_ms: int | None) -> None:
        """Move the history clock to ``month`` (capped by the wall clock); expire what fell out."""
        config = self.settings.domain
        clock = advance_clock(self.clock, capped_month(month, now_ms, config.max_clock_skew_ms))
        if clock == self.clock:
            return
        self.clock = clock
        self._dirty.add(_CLOCK_KEY)
        first_kept = first_kept_month(clock, config.history_months)
        if first_kept != self.first_kept:
            self.first_kept = first_kept
            self._expire(first_kept)

    def _expire(self, first_kept: str) -> None:
        """Delete usage and statistics before ``first_kept``; prune the plan histories."""
        expired = [key for key in self.usage if key[1] < first_kept]
        for key in expired:
            del self.usage[key]
            self._dirty.add(("u", *key))
        emptied = []
        for account, months in self.stats.items():
            for month in expired_months(months, first_kept):
                del months[month]
                self._dirty.add(("s", account, month))
                expired.append((account, month))
            if not months:
                emptied.append(account)
        for account in emptied:
            del self.stats[account]
        for account, history in self.plans.items():
            pruned = prune_plan_history(history, first_kept)
            if len(pruned) != len(history):
                self.plans[account] = pruned
                self._dirty.add(("p", account, None))
        self._shrink = bool(expired)


def dead_letter_output(
    error: InvalidRecord,
    topic: str,
    partition: int,
    record: InputRecord,
    settings: Settings,
    metrics=None,
) -> Output:
    """The dead letter of a bad input record of ``topic``, keyed by the record's own key."""
    if metrics is not None:
        metrics.dead_letter(topic, error.code)
    letter = dead_letter(error, topic, partition, record.offset, record.key, record.value)
    return Output(settings.topics.dead_letters, dead_letter_key(record.key), orjson.dumps(letter))


# -- internal records between the stages ---------------------------------------------


def encode_charge(charge: Charge) -> bytes:
    """The internal record of a charge."""
    return orjson.dumps(
        {
            "t": "charge",
            "account_id": charge.account_id,
            "conversation_id": charge.conversation_id,
            "billable_at": charge.billable_at,
            "month": charge.month,
        }
    )


def encode_stats_change(change: StatsChange) -> bytes:
    """The internal record of a statistics change."""
    return orjson.dumps(
        {"t": "stats", "account_id": change.account_id, "old": change.old, "new": change.new}
    )


def encode_plan(plan: PlanRecord) -> bytes:
    """The internal record of a validated plan record."""
    return orjson.dumps(
        {
            "t": "plan",
            "account_id": plan.account_id,
            "plan": plan.plan,
            "chatbot_pack": plan.chatbot_pack,
            "effective_at": plan.effective_at,
        }
    )
