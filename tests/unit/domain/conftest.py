"""Builders shared by the domain tests: times, events, plans, charges, a processor harness.

Expected values in the tests are written by hand from SPEC. These helpers only
build inputs and collect outputs; they convert times with :mod:`datetime`,
which is independent of the code under test (``botstream.domain.timefmt``).

Times given as numbers are minutes after :data:`BASE` (2026-11-24T20:00:00Z),
so a table row can say ``ev(CLICK, 3)`` for "a click at 20:03".
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson

from botstream.domain.config import DomainConfig
from botstream.domain.events import WidgetEvent, event_from_object
from botstream.domain.metering import Charge
from botstream.domain.partition import DictStore, Expired, PartitionProcessor, Revision
from botstream.domain.plans import PlanHistory, PlanRecord, add_plan
from botstream.domain.stats import apply_stats_change

# -- event types ----------------------------------------------------------------

STARTED = "conversation.started"
TRIGGERED = "chatbot.triggered"
BOT_MSG = "chatbot.message"
CLICK = "chatbot.button_clicked"
VISITOR_MSG = "visitor.message"
AGENT_JOINED = "agent.joined"
AGENT_MSG = "agent.message"
TRANSFER = "conversation.transferred"
WIDGET_CLOSED = "widget.closed"
LEFT = "visitor.left"
CLOSED = "conversation.closed"

ALL_TYPES = (
    STARTED,
    TRIGGERED,
    BOT_MSG,
    CLICK,
    VISITOR_MSG,
    AGENT_JOINED,
    AGENT_MSG,
    TRANSFER,
    WIDGET_CLOSED,
    LEFT,
    CLOSED,
)

# -- times ------------------------------------------------------------------------

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
#: SPEC defaults.
IDLE = 30 * MINUTE
RETENTION = 7 * DAY
SKEW = 5 * MINUTE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BASE = "2026-11-24T20:00:00.000Z"


def ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 text, computed with datetime (truncating)."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (dt - EPOCH) // timedelta(milliseconds=1)


BASE_MS = ms(BASE)


def iso(epoch_ms: int) -> str:
    """``YYYY-MM-DDThh:mm:ss.mmmZ`` of epoch milliseconds, computed with datetime."""
    dt = EPOCH + timedelta(milliseconds=epoch_ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def month(epoch_ms: int) -> str:
    """The UTC month ``YYYY-MM`` of epoch milliseconds, computed with datetime."""
    return iso(epoch_ms)[:7]


def when(at: str | float) -> str:
    """A timestamp text: ``at`` itself, or ``at`` minutes after :data:`BASE`."""
    if isinstance(at, str):
        return at
    return iso(BASE_MS + round(at * MINUTE))


def at_ms(at: str | float) -> int:
    """Epoch milliseconds of ``at`` (a timestamp text or minutes after BASE)."""
    return ms(when(at))


# -- events -----------------------------------------------------------------------

_event_numbers = itertools.count(1)


def ev_obj(
    type: str,
    at: str | float = 0,
    conv: str = "c-1",
    account: str = "acc-1",
    id: str | None = None,
    **data: object,
) -> dict:
    """A widget event as a JSON object; keyword arguments become ``data``."""
    obj = {
        "event_id": id if id is not None else f"e-{next(_event_numbers)}",
        "type": type,
        "occurred_at": when(at),
        "account_id": account,
        "conversation_id": conv,
    }
    if data:
        obj["data"] = data
    return obj


def ev(
    type: str,
    at: str | float = 0,
    conv: str = "c-1",
    account: str = "acc-1",
    id: str | None = None,
    **data: object,
) -> WidgetEvent:
    """A decoded widget event (through ``event_from_object``), with a unique id by default."""
    return event_from_object(ev_obj(type, at, conv, account, id, **data))


def ev_raw(
    type: str,
    at: str | float = 0,
    conv: str = "c-1",
    account: str = "acc-1",
    id: str | None = None,
    **data: object,
) -> bytes:
    """A widget event as the raw bytes of a record."""
    return orjson.dumps(ev_obj(type, at, conv, account, id, **data))


# -- plans and charges -------------------------------------------------------------


def plan_obj(
    plan: str = "standard",
    pack: bool = False,
    effective: str | float = "2026-11-01T00:00:00Z",
    account: str = "acc-1",
) -> dict:
    """A plan record as a JSON object."""
    return {
        "account_id": account,
        "plan": plan,
        "chatbot_pack": pack,
        "effective_at": when(effective),
    }


def plan_rec(
    plan: str = "standard",
    pack: bool = False,
    effective: str | float = "2026-11-01T00:00:00Z",
    account: str = "acc-1",
) -> PlanRecord:
    """A typed plan record (effective_at converted with datetime)."""
    return PlanRecord(account, plan, pack, at_ms(effective))


def history(*records: PlanRecord) -> PlanHistory | None:
    """An account's plan history holding ``records`` in read order."""
    result = None
    for record in records:
        result = add_plan(result, record)
    return result


def charge(at: str | float, conv: str = "c-1", account: str = "acc-1") -> Charge:
    """A charge with ``billable_at`` = ``at`` and the month computed by hand."""
    billable_at = at_ms(at)
    return Charge(account, conv, billable_at, month(billable_at))


# -- the partition processor ----------------------------------------------------------


def record_of(revision: Revision) -> dict:
    """A snapshot (deep copy) of a revision's outcome record, taken now."""
    record = revision.record
    if callable(record):
        record = record()
    return orjson.loads(orjson.dumps(record))


class Harness:
    """Drives a :class:`PartitionProcessor` over a :class:`DictStore` and keeps what it emits.

    Revision records are snapshotted as they are emitted; statistics changes are
    applied to ``stats`` (account -> month -> outcome -> count).
    """

    def __init__(self, config: DomainConfig | None = None, **settings: object) -> None:
        self.config = config if config is not None else DomainConfig(**settings)
        self.store = DictStore()
        self.proc = PartitionProcessor(self.config, self.store)
        self.revisions: list[dict] = []
        self.charges: list[Charge] = []
        self.expired: list[str] = []
        self.stats: dict[str, dict[str, dict[str, int]]] = {}

    def _collect(self, outputs: list) -> list:
        collected: list = []
        for output in outputs:
            if isinstance(output, Revision):
                record = record_of(output)
                self.revisions.append(record)
                collected.append(record)
                change = output.stats
                apply_stats_change(self.stats.setdefault(change.account_id, {}), change)
            elif isinstance(output, Expired):
                self.expired.append(output.conversation_id)
            else:
                assert isinstance(output, Charge), output
                self.charges.append(output)
                collected.append(output)
        return collected

    def feed(self, *events: WidgetEvent, now_ms: int | None = None) -> list:
        """Process events in order; return the revisions (as records) and charges emitted."""
        collected: list = []
        for event in events:
            collected += self._collect(self.proc.process(event, now_ms=now_ms))
        return collected

    def advance(self, to: str | float | int, *, raw_ms: bool = False) -> list:
        """Advance the watermark to ``to`` (a time, or epoch ms with ``raw_ms``)."""
        return self._collect(self.proc.advance(to if raw_ms else at_ms(to)))

    def end_all(self) -> list:
        """End every open conversation (end of an offline replay)."""
        return self._collect(self.proc.end_all())

    def revisions_of(self, conv: str = "c-1") -> list[dict]:
        """Every revision record emitted for ``conv``, in order."""
        return [r for r in self.revisions if r["conversation_id"] == conv]

    def latest(self, conv: str = "c-1") -> dict:
        """The last revision record emitted for ``conv``."""
        records = self.revisions_of(conv)
        assert records, f"no revision emitted for {conv}"
        return records[-1]

    def charges_of(self, conv: str = "c-1") -> list[Charge]:
        """The charges emitted for ``conv``."""
        return [c for c in self.charges if c.conversation_id == conv]


def revisions(outputs: list) -> list[dict]:
    """The revision records among collected outputs."""
    return [o for o in outputs if isinstance(o, dict)]


def charges(outputs: list) -> list[Charge]:
    """The charges among collected outputs."""
    return [o for o in outputs if isinstance(o, Charge)]
