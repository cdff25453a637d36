"""The dashboard's figures from account-stage views (limits: standard 10/50, pro 100/1000)."""

from __future__ import annotations

from botstream.web.summary import (
    account_detail,
    adjacent_month,
    merge_summaries,
    partition_summary,
    previous_months,
)
from tests.unit.web.conftest import FakeWorker, accounts_in

ALL = {0, 1, 2, 3}


def _worker_with(accounts: dict[str, int], month: str = "2026-11") -> FakeWorker:
    worker = FakeWorker("http://a", ALL)
    for account, used in accounts.items():
        worker.charge(account, month, used, f"{month}-10T12:00:00Z")
    return worker


def _summaries(worker: FakeWorker, month: str = "2026-11", nearest: int = 20) -> list[dict]:
    config = worker.settings.domain
    return [
        partition_summary(view, month, config, worker.usage, nearest)
        for view in worker.account_views().values()
    ]


def test_the_figures_of_a_month() -> None:
    # standard: limit 10. a: 12 (over by 2), b: 10 (at it), c: 3, d: 0 charges in October only.
    worker = _worker_with({"a": 12, "b": 10, "c": 3})
    worker.charge("d", "2026-10", 4, "2026-10-10T12:00:00Z")
    worker.outcomes("a", "2026-11", resolved_by_chatbot=5, no_chatbot=1)
    worker.outcomes("c", "2026-11", transferred_to_agent=2, unengaged=3)
    worker.outcomes("c", "2026-10", resolved_by_chatbot=100)  # another month: not counted
    merged = merge_summaries(_summaries(worker))
    assert merged["accounts"] == 3
    assert merged["charged"] == 25
    assert (merged["at_limit"], merged["over_limit"], merged["over_limit_total"]) == (2, 1, 2)
    assert merged["outcomes"] == {
        "resolved_by_chatbot": 5,
        "transferred_to_agent": 2,
        "unengaged": 3,
        "no_chatbot": 1,
    }
    assert merged["conversations"] == 11
    assert merged["months"] == ["2026-10", "2026-11"]
    assert [r["account_id"] for r in merged["nearest"]] == ["a", "b", "c"]


def test_nearest_rows_are_the_read_api_records() -> None:
    worker = _worker_with({"a": 12, "c": 3})
    rows = {r["account_id"]: r for r in merge_summaries(_summaries(worker))["nearest"]}
    for account in ("a", "c"):
        _, view = worker.owner_of(account)
        assert rows[account] == worker.usage(view, account, "2026-11")
    assert rows["a"]["forecast"]["status"] == "reached"
    assert rows["a"]["over_limit"] == 2


def test_the_limit_of_each_row_is_the_one_at_its_latest_charge() -> None:
    # e: 20 charges; standard 10 until the pack (50) from 5 November: 20 of 50 = 40 %.
    # f: 9 charges of 10 = 90 %: nearer its limit than e, though it used fewer.
    worker = _worker_with({"e": 20, "f": 9})
    worker.plan("e", "standard", True, "2026-11-05T00:00:00Z")
    merged = merge_summaries(_summaries(worker))
    assert [(r["account_id"], r["limit"]) for r in merged["nearest"]] == [("f", 10), ("e", 50)]
    assert merged["at_limit"] == 0


def test_ties_are_ordered_by_account_id_across_partitions() -> None:
    # Twelve accounts with the same share, spread over the four partitions; only 5 kept.
    accounts = accounts_in(ALL, 12, prefix="t-")
    worker = _worker_with(dict.fromkeys(accounts, 5))
    merged = merge_summaries(_summaries(worker, nearest=5), nearest=5)
    assert [r["account_id"] for r in merged["nearest"]] == sorted(accounts)[:5]
    assert merged["accounts"] == 12  # the counts cover every account, not only the kept ones


def test_an_empty_month() -> None:
    worker = _worker_with({"a": 3}, month="2026-10")
    merged = merge_summaries(_summaries(worker, month="2026-11"))
    assert merged["nearest"] == [] and merged["accounts"] == 0 and merged["conversations"] == 0
    assert merged["months"] == ["2026-10"]


def test_months_before_and_after() -> None:
    assert previous_months("2026-02", 4) == ["2026-02", "2026-01", "2025-12", "2025-11"]
    assert previous_months("1970-02", 12) == ["1970-02", "1970-01"]
    assert adjacent_month("2026-12", +1) == "2027-01"
    assert adjacent_month("2026-01", -1) == "2025-12"
    assert adjacent_month("1970-01", -1) is None


def test_account_detail() -> None:
    worker = _worker_with({"a": 7})
    worker.charge("a", "2026-09", 11, "2026-09-30T23:00:00Z")
    worker.plan("a", "pro", False, "2026-08-01T00:00:00Z")
    worker.plan("a", "pro", True, "2026-11-10T00:00:00Z")
    worker.outcomes("a", "2026-11", resolved_by_chatbot=7, no_chatbot=2)
    _, view = worker.owner_of("a")
    detail = account_detail(view, "a", "2026-11", worker.usage, worker.stats)
    assert detail["usage"] == worker.usage(view, "a", "2026-11")
    assert detail["usage"]["limit"] == 1000  # pro with the pack at its latest charge
    assert detail["stats"]["resolved_by_chatbot"] == 7
    months = [entry["usage"]["month"] for entry in detail["history"]]
    assert months == previous_months("2026-11", 12) and len(months) == 12
    september = detail["history"][2]
    assert (september["usage"]["used"], september["usage"]["limit"]) == (11, 100)
    assert september["stats"]["resolved_by_chatbot"] == 0
    assert detail["plans"] == [
        {"effective_at": "2026-08-01T00:00:00.000Z", "plan": "pro", "chatbot_pack": False},
        {"effective_at": "2026-11-10T00:00:00.000Z", "plan": "pro", "chatbot_pack": True},
    ]
    assert detail["known"] is True
    stranger = account_detail(view, "never-seen", "2026-11", worker.usage, worker.stats)
    assert stranger["known"] is False and stranger["usage"]["used"] == 0
