"""How much account history is kept: the newest ``history_months`` months, by event time.

The account stage keeps, per account, usage and statistics per month, and the
plan history. Without a bound that grows by a month per account, forever. It
keeps a *window* of months instead: the latest month it has seen (its
history clock) and the ``history_months - 1`` before it (13 by default: the
current month and the 12 before it, so a year ago can be compared with
today). When the clock enters a new month, whatever lies before the window
expires:

* usage and statistics of earlier months are deleted (the live stream writes
  changelog tombstones for them); their last usage records stay in the
  compacted usage topic, which is what billing reads;
* plan records that can no longer decide the plan of any month in the window
  are dropped: those superseded before the window starts, and those read
  before another with the same ``effective_at`` (SPEC section 5: the one read
  later wins). The plan in force when the window starts is always kept: it is
  the account's plan until a newer record arrives.

The clock is the latest month among the charges (``billable_at``) and
statistics changes (``started_at``) the stage has applied. In the live stream
each is first capped at the month of the wall clock plus ``max_clock_skew``,
as event time is (SPEC section 4), so that one event dated in the future
cannot expire a year of real history.

A charge or statistics change for a month before the window (possible only
when one input partition's event time is more than the window behind another
one's, or with a ``retention`` longer than the window) finds no state: it is
not counted, because counting it from zero would publish a usage record
that contradicts the one billing already has. Its outcome record still says
it is billable.
"""

from __future__ import annotations

from collections.abc import Iterable

from botstream.domain.plans import PlanHistory
from botstream.domain.timefmt import month_of, parse_month


def month_number(month: str) -> int:
    """``YYYY-MM`` as a count of months (year × 12 + month − 1), for arithmetic."""
    return int(month[:4]) * 12 + int(month[5:7]) - 1


def month_text(number: int) -> str:
    """The inverse of :func:`month_number`."""
    year, month = divmod(number, 12)
    return f"{year:04d}-{month + 1:02d}"


def first_kept_month(latest: str | None, history_months: int) -> str | None:
    """The first month of the window that ends with ``latest`` (None: nothing expires)."""
    if latest is None or history_months <= 0:
        return None
    return month_text(month_number(latest) - history_months + 1)


def capped_month(month: str, now_ms: int | None, max_clock_skew_ms: int) -> str:
    """``month``, or the month of ``now_ms + max_clock_skew_ms`` if later (live stream only)."""
    if now_ms is None:
        return month
    cap = month_of(now_ms + max_clock_skew_ms)
    return cap if month > cap else month


def advance_clock(clock: str | None, month: str) -> str:
    """The history clock after a charge or statistics change of ``month``: the later one."""
    return month if clock is None or month > clock else clock


def is_expired(month: str, first_kept: str | None) -> bool:
    """Whether ``month`` lies before the window (its state is gone)."""
    return first_kept is not None and month < first_kept


def expired_months(months: Iterable[str], first_kept: str | None) -> list[str]:
    """The months of ``months`` that lie before the window, sorted."""
    if first_kept is None:
        return []
    return sorted(month for month in months if month < first_kept)


def prune_plan_history(history: PlanHistory, first_kept: str | None) -> PlanHistory:
    """The records of ``history`` that can still decide a plan in the window, in read order.

    ``plan_at`` gives the same answer with the pruned history as with the
    whole one for every moment from the start of the window on.
    """
    if first_kept is None or not history:
        return history
    window_start = _month_start_ms(first_kept)
    # The last read record of each effective_at: earlier ones never win (ties go to later).
    last_read = {entry[0]: index for index, entry in enumerate(history)}
    in_force_at_start = max((at for at in last_read if at <= window_start), default=None)
    return [
        entry
        for index, entry in enumerate(history)
        if last_read[entry[0]] == index
        and (entry[0] > window_start or entry[0] == in_force_at_start)
    ]


def _month_start_ms(month: str) -> int:
    bounds = parse_month(month)
    if bounds is None:  # before 1970: every record is at or after it
        return -(1 << 62)
    return bounds[0]
