"""Charges, usage records and quota alerts (SPEC section 5)."""

from __future__ import annotations

import pytest

from botstream.domain.config import DomainConfig
from botstream.domain.metering import Charge, apply_charge
from tests.unit.domain.conftest import (
    CLICK,
    CLOSED,
    LEFT,
    TRIGGERED,
    VISITOR_MSG,
    Harness,
    at_ms,
    charge,
    charges,
    ev,
    history,
    iso,
    ms,
    plan_rec,
    revisions,
)

WARNING = "quota.warning"
LIMIT_REACHED = "quota.limit_reached"
EXCEEDED = "quota.exceeded"

# -- charging in the partition processor ---------------------------------------------------


def test_charged_as_soon_as_billable_before_the_end():
    harness = Harness()
    assert harness.feed(ev(TRIGGERED, 1, conv="c-9a1", account="acc-17")) == []
    outputs = harness.feed(ev(CLICK, "2026-11-24T20:15:00.123Z", conv="c-9a1", account="acc-17"))
    assert outputs == [
        Charge("acc-17", "c-9a1", ms("2026-11-24T20:15:00.123Z"), "2026-11"),
    ]
    # More clicks and the end: no second charge.
    assert charges(harness.feed(ev(CLICK, 16, conv="c-9a1", account="acc-17"))) == []
    [record] = revisions(harness.feed(ev(LEFT, 17, conv="c-9a1", account="acc-17")))
    assert record["billable"] is True
    assert record["billable_at"] == "2026-11-24T20:15:00.123Z"
    assert record["billing_month"] == "2026-11"
    assert len(harness.charges) == 1


def test_billable_at_fixed_at_charge_time():
    harness = Harness()
    [first] = harness.feed(ev(TRIGGERED, 1), ev(CLICK, 5))
    assert first.billable_at == at_ms(5)
    # A click dated earlier arrives later: the order-free billable_at would be 2.
    assert charges(harness.feed(ev(CLICK, 2))) == []
    [record] = revisions(harness.feed(ev(LEFT, 6)))
    assert record["billable_at"] == iso(at_ms(5))
    # Still fixed after a late event applied to the ended conversation.
    [record] = revisions(harness.feed(ev(CLICK, 1.5)))
    assert record["revision"] == 2
    assert record["billable_at"] == iso(at_ms(5))
    assert record["counts"]["chatbot_clicks"] == 3
    assert len(harness.charges) == 1


def test_billing_month_fixed_at_charge_time_across_months():
    harness = Harness()
    harness.feed(ev(TRIGGERED, "2026-11-30T23:59:00Z"), ev(CLICK, "2026-12-01T00:00:30Z"))
    [only] = harness.charges
    assert only.month == "2026-12"
    harness.feed(ev(CLICK, "2026-11-30T23:59:30Z"))  # order-free billable_at now in November
    harness.end_all()
    record = harness.latest()
    assert (record["billable_at"], record["billing_month"]) == (
        "2026-12-01T00:00:30.000Z",
        "2026-12",
    )
    assert record["started_at"] == "2026-11-30T23:59:00.000Z"


# (case id, chatbot time, click time, expected billable_at in UTC, month)
MONTH_BOUNDARY = [
    (
        "last-ms-of-november",
        "2026-11-30T23:59:00Z",
        "2026-11-30T23:59:59.999Z",
        "2026-11-30T23:59:59.999Z",
        "2026-11",
    ),
    (
        "first-ms-of-december",
        "2026-11-30T23:59:00Z",
        "2026-12-01T00:00:00Z",
        "2026-12-01T00:00:00.000Z",
        "2026-12",
    ),
    (
        "plus-offset-still-november-utc",
        "2026-11-30T23:00:00Z",
        "2026-12-01T00:30:00+01:00",
        "2026-11-30T23:30:00.000Z",
        "2026-11",
    ),
    (
        "plus-offset-exactly-december-utc",
        "2026-11-30T23:00:00Z",
        "2026-12-01T01:00:00+01:00",
        "2026-12-01T00:00:00.000Z",
        "2026-12",
    ),
    (
        "minus-offset-crosses-into-december-utc",
        "2026-11-30T23:00:00Z",
        "2026-11-30T23:30:00-01:00",
        "2026-12-01T00:30:00.000Z",
        "2026-12",
    ),
    (
        "chatbot-later-than-click-decides",
        "2026-12-01T00:00:00.000Z",
        "2026-11-30T23:59:00Z",
        "2026-12-01T00:00:00.000Z",
        "2026-12",
    ),
    (
        "year-boundary",
        "2026-12-31T23:59:00Z",
        "2027-01-01T00:00:00+00:00",
        "2027-01-01T00:00:00.000Z",
        "2027-01",
    ),
]


@pytest.mark.parametrize(
    ("bot", "click", "billable_at", "month"),
    [c[1:] for c in MONTH_BOUNDARY],
    ids=[c[0] for c in MONTH_BOUNDARY],
)
def test_billing_month_is_utc_month_of_billable_at(bot, click, billable_at, month):
    harness = Harness()
    harness.feed(ev(TRIGGERED, bot), ev(CLICK, click))
    assert harness.charges == [Charge("acc-1", "c-1", ms(billable_at), month)]
    harness.end_all()
    assert (harness.latest()["billable_at"], harness.latest()["billing_month"]) == (
        billable_at,
        month,
    )


def test_late_click_on_ended_conversation_charges_then():
    harness = Harness()
    assert harness.feed(ev(TRIGGERED, 1), ev(LEFT, 3)) != []
    assert harness.charges == []
    outputs = harness.feed(ev(CLICK, 2))
    assert charges(outputs) == [Charge("acc-1", "c-1", at_ms(2), "2026-11")]
    [record] = revisions(outputs)
    assert (record["revision"], record["billable"], record["billable_at"]) == (
        2,
        True,
        iso(at_ms(2)),
    )


def test_charged_once_across_reopen_and_late_events():
    harness = Harness()
    harness.feed(
        ev(TRIGGERED, 1),
        ev(CLICK, 2),
        ev(LEFT, 3),
        ev(CLICK, 4),
        ev(VISITOR_MSG, 5),
        ev(CLOSED, 6),
        ev(CLICK, 1.5),
        ev(TRIGGERED, 0.5),
    )
    harness.end_all()
    assert len(harness.charges) == 1
    assert harness.latest()["billable_at"] == iso(at_ms(2))


# -- usage records -----------------------------------------------------------------------------


def run_charges(
    charge_list: list[Charge], plans=None, config: DomainConfig | None = None
) -> tuple[list[dict], list[dict]]:
    """Apply charges of one (account, month); return every usage record and every alert."""
    config = config or DomainConfig()
    usage = None
    records: list[dict] = []
    alerts: list[dict] = []
    for item in charge_list:
        usage, record, raised = apply_charge(usage, item, plans, config)
        records.append(record)
        alerts.extend(raised)
    return records, alerts


def test_usage_record_fields():
    [record], _ = run_charges([charge("2026-11-24T20:15:00.123Z", conv="c-9a1", account="acc-17")])
    assert record == {
        "account_id": "acc-17",
        "month": "2026-11",
        "plan": "standard",
        "chatbot_pack": False,
        "limit": 100,
        "used": 1,
        "remaining": 99,
        "over_limit": 0,
        "updated_at": "2026-11-24T20:15:00.123Z",
    }


# (case id, number of charges, limit, used, remaining, over_limit)
USAGE_COUNTS = [
    ("one", 1, 100, 1, 99, 0),
    ("one-below-limit", 99, 100, 99, 1, 0),
    ("at-limit", 100, 100, 100, 0, 0),
    ("one-over", 101, 100, 101, 0, 1),
    ("fifty-over", 150, 100, 150, 0, 50),
]


@pytest.mark.parametrize(
    ("n", "limit", "used", "remaining", "over"),
    [c[1:] for c in USAGE_COUNTS],
    ids=[c[0] for c in USAGE_COUNTS],
)
def test_remaining_and_over_limit(n, limit, used, remaining, over):
    records, _ = run_charges([charge(i / 60, conv=f"c-{i}") for i in range(n)])
    last = records[-1]
    assert (last["limit"], last["used"], last["remaining"], last["over_limit"]) == (
        limit,
        used,
        remaining,
        over,
    )
    assert [r["used"] for r in records] == list(range(1, n + 1))


def test_updated_at_is_latest_billable_at_even_out_of_order():
    records, _ = run_charges(
        [
            charge("2026-11-20T10:00:00Z"),
            charge("2026-11-05T10:00:00Z"),
            charge("2026-11-10T10:00:00Z"),
        ]
    )
    assert [r["updated_at"] for r in records] == ["2026-11-20T10:00:00.000Z"] * 3


STANDARD_THEN_PRO = history(
    plan_rec("standard", False, "2026-11-01T00:00:00Z"),
    plan_rec("pro", False, "2026-11-15T00:00:00Z"),
)
# (case id, charge times in arrival order, expected final (updated_at, plan, limit, remaining))
PLAN_AT_UPDATED = [
    (
        "latest-first-then-earlier",
        ["2026-11-20T00:00:00Z", "2026-11-05T00:00:00Z"],
        ("2026-11-20T00:00:00.000Z", "pro", 500, 498),
    ),
    (
        "earlier-first-then-latest",
        ["2026-11-05T00:00:00Z", "2026-11-20T00:00:00Z"],
        ("2026-11-20T00:00:00.000Z", "pro", 500, 498),
    ),
    (
        "all-before-the-change",
        ["2026-11-10T00:00:00Z", "2026-11-05T00:00:00Z"],
        ("2026-11-10T00:00:00.000Z", "standard", 100, 98),
    ),
    (
        "exactly-at-the-change",
        ["2026-11-05T00:00:00Z", "2026-11-15T00:00:00Z"],
        ("2026-11-15T00:00:00.000Z", "pro", 500, 498),
    ),
]


@pytest.mark.parametrize(
    ("times", "expected"), [c[1:] for c in PLAN_AT_UPDATED], ids=[c[0] for c in PLAN_AT_UPDATED]
)
def test_usage_plan_and_limit_are_those_at_updated_at(times, expected):
    charge_list = [charge(t, conv=f"c-{n}") for n, t in enumerate(times)]
    records, _ = run_charges(charge_list, STANDARD_THEN_PRO)
    last = records[-1]
    assert (last["updated_at"], last["plan"], last["limit"], last["remaining"]) == expected


def test_usage_record_shows_pack():
    plans = history(plan_rec("pro", True, "2026-11-01T00:00:00Z"))
    [record], _ = run_charges([charge("2026-11-24T20:15:00.123Z")], plans)
    assert (record["plan"], record["chatbot_pack"], record["limit"], record["remaining"]) == (
        "pro",
        True,
        10_000,
        9_999,
    )


# -- alerts ----------------------------------------------------------------------------------------

# (case id, limit L, warning percent P, used at warning = ceil(P*L/100) worked out by hand)
THRESHOLDS = [
    ("L100-P80", 100, 80, 80),
    ("L500-P80", 500, 80, 400),
    ("L10000-P80", 10_000, 80, 8000),
    ("L7-P80-ceil-5.6", 7, 80, 6),
    ("L1-P80-ceil-0.8", 1, 80, 1),
    ("L3-P80-ceil-2.4", 3, 80, 3),
    ("L5-P80-exact-4", 5, 80, 4),
    ("L10-P33-ceil-3.3", 10, 33, 4),
    ("L7-P50-ceil-3.5", 7, 50, 4),
    ("L100-P100", 100, 100, 100),
    ("L100-P1", 100, 1, 1),
    ("L333-P90-ceil-299.7", 333, 90, 300),
    ("L2-P50-exact-1", 2, 50, 1),
]


@pytest.mark.parametrize(
    ("limit", "percent", "warning_at"),
    [c[1:] for c in THRESHOLDS],
    ids=[c[0] for c in THRESHOLDS],
)
def test_alert_thresholds(limit, percent, warning_at):
    config = DomainConfig(
        plan_limits={"standard": (limit, limit), "pro": (1, 1)}, warning_percent=percent
    )
    _, alerts = run_charges(
        [charge(n / 1000, conv=f"c-{n}") for n in range(limit + 5)], config=config
    )
    assert [(a["used"], a["kind"], a["limit"]) for a in alerts] == [
        (warning_at, WARNING, limit),
        (limit, LIMIT_REACHED, limit),
        (limit + 1, EXCEEDED, limit),
    ]


def test_spec_example_alert():
    plans = history(plan_rec("pro", False, "2026-11-01T00:00:00Z", account="acc-17"))
    earlier = [charge(n / 60, conv=f"c-{n}", account="acc-17") for n in range(499)]
    final = charge("2026-11-24T20:15:00.123Z", conv="c-9a1", account="acc-17")
    _, alerts = run_charges([*earlier, final], plans)
    assert alerts[-1] == {
        "alert_id": "acc-17:2026-11:quota.limit_reached:500",
        "kind": "quota.limit_reached",
        "account_id": "acc-17",
        "month": "2026-11",
        "used": 500,
        "limit": 500,
        "conversation_id": "c-9a1",
        "at": "2026-11-24T20:15:00.123Z",
    }
    assert alerts[0]["alert_id"] == "acc-17:2026-11:quota.warning:500"
    assert alerts[0]["used"] == 400


def test_one_charge_raising_several_alerts_in_order():
    config = DomainConfig(plan_limits={"standard": (1, 1), "pro": (500, 10_000)})
    _, alerts = run_charges([charge("2026-11-24T20:15:00.123Z", conv="c-9a1")], config=config)
    assert [a["alert_id"] for a in alerts] == [
        "acc-1:2026-11:quota.warning:1",
        "acc-1:2026-11:quota.limit_reached:1",
    ]
    assert all(a["conversation_id"] == "c-9a1" and a["used"] == 1 for a in alerts)
    assert all(a["at"] == "2026-11-24T20:15:00.123Z" for a in alerts)


def test_downgrade_below_usage_raises_three_alerts_at_once():
    plans = history(
        plan_rec("pro", False, "2026-11-01T00:00:00Z"),
        plan_rec("standard", False, "2026-11-15T00:00:00Z"),
    )
    before = [charge(_day(2, n), conv=f"c-{n}") for n in range(150)]
    records, alerts = run_charges(before, plans)
    assert alerts == []
    assert records[-1]["limit"] == 500
    records, alerts = run_charges([*before, charge("2026-11-16T00:00:00Z", conv="c-next")], plans)
    assert [(a["kind"], a["used"], a["limit"]) for a in alerts] == [
        (WARNING, 151, 100),
        (LIMIT_REACHED, 151, 100),
        (EXCEEDED, 151, 100),
    ]
    assert [a["alert_id"] for a in alerts] == [
        "acc-1:2026-11:quota.warning:100",
        "acc-1:2026-11:quota.limit_reached:100",
        "acc-1:2026-11:quota.exceeded:100",
    ]
    assert all(a["conversation_id"] == "c-next" for a in alerts)
    last = records[-1]
    assert (last["plan"], last["limit"], last["remaining"], last["over_limit"]) == (
        "standard",
        100,
        0,
        51,
    )


def _day(day: int, n: int) -> str:
    """A distinct time on November ``day`` for the n-th charge."""
    return f"2026-11-{day:02d}T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z"


def test_pack_bought_mid_month_gives_new_limit_its_own_alerts():
    plans = history(
        plan_rec("standard", False, "2026-11-01T00:00:00Z"),
        plan_rec("standard", True, "2026-11-15T00:00:00Z"),
    )
    early = [charge(_day(2, n), conv=f"a-{n}") for n in range(100)]
    late = [charge(_day(16, n), conv=f"b-{n}") for n in range(401)]
    _, alerts = run_charges([*early, *late], plans)
    assert [(a["alert_id"], a["used"]) for a in alerts] == [
        ("acc-1:2026-11:quota.warning:100", 80),
        ("acc-1:2026-11:quota.limit_reached:100", 100),
        # Charge 101 is after the pack: limit 500, nothing exceeded.
        ("acc-1:2026-11:quota.warning:500", 400),
        ("acc-1:2026-11:quota.limit_reached:500", 500),
        ("acc-1:2026-11:quota.exceeded:500", 501),
    ]


def test_late_charge_under_old_limit_uses_that_limit():
    plans = history(
        plan_rec("standard", False, "2026-11-01T00:00:00Z"),
        plan_rec("standard", True, "2026-11-15T00:00:00Z"),
    )
    early = [charge(_day(2, n), conv=f"a-{n}") for n in range(100)]
    after_pack = charge(_day(16, 0), conv="b-0")
    before_pack = charge(_day(14, 0), conv="late")
    _, alerts = run_charges([*early, after_pack, before_pack], plans)
    assert [(a["alert_id"], a["used"], a["conversation_id"]) for a in alerts][-1] == (
        "acc-1:2026-11:quota.exceeded:100",
        102,
        "late",
    )


def test_each_alert_once_per_account_month_kind_limit():
    config = DomainConfig(plan_limits={"standard": (2, 2), "pro": (1, 1)})
    _, alerts = run_charges([charge(n / 60, conv=f"c-{n}") for n in range(20)], config=config)
    ids = [a["alert_id"] for a in alerts]
    assert ids == [
        "acc-1:2026-11:quota.warning:2",
        "acc-1:2026-11:quota.limit_reached:2",
        "acc-1:2026-11:quota.exceeded:2",
    ]


def test_new_month_and_other_account_alert_again():
    config = DomainConfig(plan_limits={"standard": (1, 1), "pro": (1, 1)})
    _, november = run_charges([charge("2026-11-24T00:00:00Z")], config=config)
    _, december = run_charges([charge("2026-12-01T00:00:00Z")], config=config)
    _, other = run_charges([charge("2026-11-24T00:00:00Z", account="acc-2")], config=config)
    assert [a["alert_id"] for a in november] == [
        "acc-1:2026-11:quota.warning:1",
        "acc-1:2026-11:quota.limit_reached:1",
    ]
    assert [a["alert_id"] for a in december] == [
        "acc-1:2026-12:quota.warning:1",
        "acc-1:2026-12:quota.limit_reached:1",
    ]
    assert [a["alert_id"] for a in other] == [
        "acc-2:2026-11:quota.warning:1",
        "acc-2:2026-11:quota.limit_reached:1",
    ]


def test_plan_read_later_applies_to_charges_processed_after():
    config = DomainConfig()
    usage = None
    alerts: list[dict] = []
    for n in range(80):
        usage, record, raised = apply_charge(usage, charge(n / 60, conv=f"c-{n}"), None, config)
        alerts += raised
    assert [a["alert_id"] for a in alerts] == ["acc-1:2026-11:quota.warning:100"]
    plans = history(plan_rec("pro", False, "2026-11-01T00:00:00Z"))
    usage, record, raised = apply_charge(usage, charge(2, conv="c-next"), plans, config)
    assert raised == []
    assert (record["plan"], record["limit"], record["used"], record["remaining"]) == (
        "pro",
        500,
        81,
        419,
    )


def test_alert_at_is_the_charge_billable_at_in_utc():
    config = DomainConfig(plan_limits={"standard": (1, 1), "pro": (1, 1)})
    _, alerts = run_charges([charge("2026-12-01T00:30:00.5+01:00", conv="c-x")], config=config)
    assert {a["at"] for a in alerts} == {"2026-11-30T23:30:00.500Z"}
    assert {a["month"] for a in alerts} == {"2026-11"}
