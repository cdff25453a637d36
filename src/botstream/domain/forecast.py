"""When an account will reach its monthly limit, at the month's pace so far.

The pace is the month's charges per elapsed day of event time: from the start
of the month to *as of*, the stream's event time now (in the live stream it
follows the wall clock, SPEC section 4), never before the month's latest
charge and never past the month's end. At that pace the limit is reached when
``used`` grows to ``limit``; if that moment falls before the month ends, the
forecast names its UTC date, otherwise the limit is not reached this month.

The limit is the one in force at *as of*, not the usage record's (which is the
limit at the latest charge): a pack bought after the last charge counts.
Everything is integer milliseconds, so the answer does not depend on rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from botstream.domain.config import DomainConfig
from botstream.domain.plans import PlanHistory, plan_at
from botstream.domain.timefmt import format_timestamp, parse_month, parse_timestamp_ms

#: The limit is already reached: ``used >= limit``.
REACHED = "reached"
#: At the pace so far, the limit is reached before the month ends.
THIS_MONTH = "this_month"
#: At the pace so far (or with no charges yet), the limit holds until the month ends.
NOT_THIS_MONTH = "not_this_month"

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: The shortest stretch a pace is measured over: a few charges in the first
#: minutes of a month are no reason to forecast thousands a day.
MIN_PACE_WINDOW_MS = HOUR_MS


@dataclass(frozen=True, slots=True)
class Forecast:
    """Where a month's usage is heading (see the module docstring)."""

    #: The moment the forecast is made at (epoch ms, within the month).
    as_of: int
    used: int
    #: The limit in force at ``as_of``.
    limit: int
    #: Charges per elapsed day of the month so far.
    per_day: float
    #: :data:`REACHED`, :data:`THIS_MONTH` or :data:`NOT_THIS_MONTH`.
    status: str
    #: When the pace reaches the limit (epoch ms), only for :data:`THIS_MONTH`.
    reached_at: int | None = None


def forecast(used: int, limit: int, month_start: int, month_end: int, as_of: int) -> Forecast:
    """The forecast of ``used`` charges against ``limit`` in the month ``[start, end)``.

    ``as_of`` is clamped into the month: a month that has ended is judged on
    all its days, a month that has not begun on none.
    """
    as_of = min(max(as_of, month_start), month_end)
    window = max(as_of - month_start, MIN_PACE_WINDOW_MS)
    per_day = round(used * DAY_MS / window, 2)
    if used >= limit:
        return Forecast(as_of, used, limit, per_day, REACHED)
    if used == 0:
        return Forecast(as_of, used, limit, per_day, NOT_THIS_MONTH)
    # At ``used`` charges per ``window``, the remaining ones take this long (rounded up:
    # the limit is reached by the charge that makes ``used`` equal to it).
    reached_at = as_of + -(-(limit - used) * window // used)
    if reached_at >= month_end:
        return Forecast(as_of, used, limit, per_day, NOT_THIS_MONTH)
    return Forecast(as_of, used, limit, per_day, THIS_MONTH, reached_at)


def month_forecast(
    used: int,
    month: str,
    latest_charge: int,
    now: int,
    plans: PlanHistory | None,
    config: DomainConfig,
) -> Forecast:
    """The forecast of an account's month, with the limit in force at *as of*.

    *As of* is ``now`` (event time), or the month's ``latest_charge`` when that
    is later (a charge dated a little in the future), clamped into the month.
    """
    bounds = parse_month(month)
    if bounds is None:
        raise ValueError(f"month {month!r} is not YYYY-MM")
    start, end = bounds
    as_of = min(max(now, latest_charge, start), end)
    # The month's end is exclusive: a plan effective from the next month's first
    # instant has no say in this one.
    limit = plan_at(plans, min(as_of, end - 1), config).limit
    return forecast(used, limit, start, end, as_of)


def forecast_record(result: Forecast) -> dict:
    """The ``forecast`` field of the read API's usage answer (``schemas/usage.schema.json``)."""
    reached_at = result.reached_at
    return {
        "status": result.status,
        "limit_reached_on": None if reached_at is None else format_timestamp(reached_at)[:10],
        "per_day": result.per_day,
        "limit": result.limit,
        "as_of": format_timestamp(result.as_of),
    }


def add_forecast(record: dict, plans: PlanHistory | None, now: int, config: DomainConfig) -> dict:
    """``record`` (a usage record) with its ``forecast`` field added, made at ``now`` (epoch ms)."""
    latest_charge = parse_timestamp_ms(record["updated_at"]) or 0
    result = month_forecast(record["used"], record["month"], latest_charge, now, plans, config)
    record["forecast"] = forecast_record(result)
    return record
