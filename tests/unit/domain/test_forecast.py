"""The forecast: when the month's pace so far reaches the limit (README, "The dashboard").

Every expected date and pace below is worked out by hand in the row's comment.
November 2026 has 30 days: 2026-11-01T00:00Z to 2026-12-01T00:00Z.
"""

from __future__ import annotations

import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.forecast import (
    NOT_THIS_MONTH,
    REACHED,
    THIS_MONTH,
    add_forecast,
    forecast,
    month_forecast,
)
from tests.unit.domain.conftest import history, ms, plan_rec

CONFIG = DomainConfig()  # standard 100 / 500 with the pack, pro 500 / 10,000
NOV_START = ms("2026-11-01T00:00:00Z")
NOV_END = ms("2026-12-01T00:00:00Z")
DAY = 86_400_000
HOUR = 3_600_000

STANDARD_SINCE_OCTOBER = history(plan_rec("standard", False, "2026-10-01T00:00:00Z"))
#: The pack is switched on on 10 November: 100 -> 500.
PACK_FROM_10TH = history(
    plan_rec("standard", False, "2026-10-01T00:00:00Z"),
    plan_rec("standard", True, "2026-11-10T00:00:00Z"),
)
#: The pack is switched on from the first instant of December.
PACK_FROM_DECEMBER = history(
    plan_rec("standard", False, "2026-10-01T00:00:00Z"),
    plan_rec("standard", True, "2026-12-01T00:00:00Z"),
)

# (case, used, month, latest charge, now, plans) -> (status, limit reached on, per day, limit)
# fmt: off
CASES = [
    pytest.param(
        # 30 minutes in, 3 charges: the pace is measured over at least an hour, so
        # 3 an hour (72 a day); 97 more take 32 h 20 min: 00:30 + that = 2 Nov 08:50.
        3, "2026-11", "2026-11-01T00:20:00Z", "2026-11-01T00:30:00Z", STANDARD_SINCE_OCTOBER,
        (THIS_MONTH, "2026-11-02", 72.0, 100),
        id="start of month: a few charges in the first half hour",
    ),
    pytest.param(
        # The month's first instant: no time has passed and nothing was charged.
        0, "2026-11", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (NOT_THIS_MONTH, None, 0.0, 100),
        id="start of month: first instant, no charges",
    ),
    pytest.param(
        # 15 days in, nothing charged: no pace, the limit holds.
        0, "2026-11", "2026-11-01T00:00:00Z", "2026-11-16T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (NOT_THIS_MONTH, None, 0.0, 100),
        id="no charges mid-month",
    ),
    pytest.param(
        # 10 days in, 40 charges: 4 a day; 60 more take 15 days: 26 Nov.
        40, "2026-11", "2026-11-10T23:00:00Z", "2026-11-11T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (THIS_MONTH, "2026-11-26", 4.0, 100),
        id="on pace to reach it this month",
    ),
    pytest.param(
        # 10 days in, 20 charges: 2 a day; 80 more take 40 days: past the month.
        20, "2026-11", "2026-11-10T23:00:00Z", "2026-11-11T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (NOT_THIS_MONTH, None, 2.0, 100),
        id="slow pace: not this month",
    ),
    pytest.param(
        # used 100 = limit 100: reached (the chatbot stops at the limit).
        100, "2026-11", "2026-11-05T00:00:00Z", "2026-11-06T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (REACHED, None, 20.0, 100),
        id="already at the limit",
    ),
    pytest.param(
        # 120 of 100 after 4 days: over; 30 a day.
        120, "2026-11", "2026-11-05T00:00:00Z", "2026-11-05T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (REACHED, None, 30.0, 100),
        id="already over the limit",
    ),
    pytest.param(
        # 8 days in, 80 charges, before the pack: 10 a day, 20 more take 2 days: 11 Nov.
        80, "2026-11", "2026-11-08T23:00:00Z", "2026-11-09T00:00:00Z", PACK_FROM_10TH,
        (THIS_MONTH, "2026-11-11", 10.0, 100),
        id="pack bought mid-month: before it takes effect",
    ),
    pytest.param(
        # 12 days in, 120 charges, with the pack since the 10th: limit 500, 10 a day,
        # 380 more take 38 days: past the month.
        120, "2026-11", "2026-11-11T23:00:00Z", "2026-11-13T00:00:00Z", PACK_FROM_10TH,
        (NOT_THIS_MONTH, None, 10.0, 500),
        id="pack bought mid-month: the new limit holds",
    ),
    pytest.param(
        # 12 days in, 120 charges, the last one before the pack: the usage record says
        # limit 100 (at its latest charge), the forecast uses 500 (in force now).
        120, "2026-11", "2026-11-09T12:00:00Z", "2026-11-13T00:00:00Z", PACK_FROM_10TH,
        (NOT_THIS_MONTH, None, 10.0, 500),
        id="pack bought mid-month after the latest charge",
    ),
    pytest.param(
        # November is over (asked on 3 Dec): judged on its 30 days, 90 charges, 3 a day;
        # 10 more would take 3 1/3 days, past its end.
        90, "2026-11", "2026-11-30T20:00:00Z", "2026-12-03T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (NOT_THIS_MONTH, None, 3.0, 100),
        id="month boundary: an ended month that stayed under its limit",
    ),
    pytest.param(
        # A plan effective from December's first instant is not November's.
        90, "2026-11", "2026-11-30T20:00:00Z", "2026-12-03T00:00:00Z", PACK_FROM_DECEMBER,
        (NOT_THIS_MONTH, None, 3.0, 100),
        id="month boundary: next month's pack does not count",
    ),
    pytest.param(
        # 29 days in, 29 charges: 1 a day; the 30th lands exactly on the month's end,
        # which belongs to December.
        29, "2026-11", "2026-11-29T12:00:00Z", "2026-11-30T00:00:00Z",
        history(plan_rec("standard", False, "2026-10-01T00:00:00Z")),
        (NOT_THIS_MONTH, None, 1.0, 100),
        id="month boundary: reached at the first instant of the next month",
    ),
    pytest.param(
        # December: 31 days; 10 days in, 50 charges, 5 a day, 50 more take 10 days:
        # 21 Dec. The year ends with the month.
        50, "2026-12", "2026-12-10T12:00:00Z", "2026-12-11T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (THIS_MONTH, "2026-12-21", 5.0, 100),
        id="month boundary: December",
    ),
    pytest.param(
        # A month that has not begun: no time and no charges yet.
        0, "2026-12", "2026-12-01T00:00:00Z", "2026-11-20T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (NOT_THIS_MONTH, None, 0.0, 100),
        id="month boundary: a month that has not begun",
    ),
    pytest.param(
        # A charge dated 2 hours past now (clock skew): the forecast is made as of it.
        # 1 Nov 02:00, 4 charges over 2 hours: 48 a day; 96 more take 48 hours: 3 Nov.
        4, "2026-11", "2026-11-01T02:00:00Z", "2026-11-01T00:00:00Z", STANDARD_SINCE_OCTOBER,
        (THIS_MONTH, "2026-11-03", 48.0, 100),
        id="a charge dated after now",
    ),
    pytest.param(
        # No plan record: the default plan (standard, no pack).
        0, "2026-11", "2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z", None,
        (NOT_THIS_MONTH, None, 0.0, 100),
        id="no plan record: the default plan",
    ),
]
# fmt: on


@pytest.mark.parametrize(("used", "month", "latest", "now", "plans", "expected"), CASES)
def test_month_forecast(used, month, latest, now, plans, expected) -> None:
    status, reached_on, per_day, limit = expected
    result = month_forecast(used, month, ms(latest), ms(now), plans, CONFIG)
    assert (result.status, result.per_day, result.limit) == (status, per_day, limit)
    date = None if result.reached_at is None else _date(result.reached_at)
    assert date == reached_on


def _date(epoch_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d")


def test_the_last_milliseconds_of_a_month_still_count() -> None:
    # 29 charges over 29 days less 29 ms: one per (1 day - 1 ms); the 30th lands
    # 1 day - 1 ms after as-of = the month's end - 30 ms, on 30 November.
    as_of = NOV_START + 29 * DAY - 29
    result = forecast(29, 30, NOV_START, NOV_END, as_of)
    assert result.status == THIS_MONTH
    assert result.reached_at == NOV_END - 30


def test_a_limit_of_zero_is_reached_before_any_charge() -> None:
    result = forecast(0, 0, NOV_START, NOV_END, NOV_START + 5 * DAY)
    assert result.status == REACHED


def test_the_pace_window_is_at_least_an_hour() -> None:
    # One charge one minute into the month: 24 a day, not 1,440.
    result = forecast(1, 100, NOV_START, NOV_END, NOV_START + 60_000)
    assert result.per_day == 24.0
    # 99 more at one an hour, from 00:01: 99 h later = 5 Nov 03:01.
    assert result.reached_at == NOV_START + 60_000 + 99 * HOUR


def test_add_forecast_to_a_usage_record() -> None:
    record = {
        "account_id": "acc-17",
        "month": "2026-11",
        "plan": "standard",
        "chatbot_pack": False,
        "limit": 100,
        "used": 40,
        "remaining": 60,
        "over_limit": 0,
        "updated_at": "2026-11-10T23:00:00.000Z",
    }
    result = add_forecast(record, STANDARD_SINCE_OCTOBER, ms("2026-11-11T00:00:00Z"), CONFIG)
    assert result is record
    assert record["forecast"] == {
        "status": "this_month",
        "limit_reached_on": "2026-11-26",
        "per_day": 4.0,
        "limit": 100,
        "as_of": "2026-11-11T00:00:00.000Z",
    }
    assert record["used"] == 40 and record["limit"] == 100  # the record itself is unchanged


def test_a_bad_month_is_refused() -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_forecast(1, "2026-13", 0, 0, None, CONFIG)
