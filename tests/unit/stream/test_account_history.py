"""The account stage keeps a window of months: expiry, tombstones, restores, reads."""

from __future__ import annotations

import orjson
import pytest
from aiokafka.structs import ConsumerRecord

from botstream.config import load_settings
from botstream.domain.config import DomainConfig
from botstream.domain.timefmt import parse_month, parse_timestamp_ms
from botstream.stream.engine import Output
from botstream.stream.tasks import AccountTask

SETTINGS = load_settings(env={})
TOPICS = SETTINGS.topics
#: The wall clock of these tests: later than every month they use.
NOW = parse_timestamp_ms("2027-06-15T12:00:00Z")


def settings(history_months: int = 13):
    return SETTINGS.with_overrides(domain=DomainConfig(history_months=history_months))


def update(account: str, message: dict, offset: int = 0) -> ConsumerRecord:
    value = orjson.dumps({"account_id": account, **message})
    return ConsumerRecord(
        TOPICS.account_updates, 0, offset, 0, 0, account.encode(), value, None, 0, len(value), ()
    )


def charge(account: str, month: str, conversation: str) -> ConsumerRecord:
    """A charge in the middle of ``month``."""
    at = parse_month(month)[0] + 10 * 86_400_000
    message = {"t": "charge", "conversation_id": conversation, "billable_at": at, "month": month}
    return update(account, message)


def stats(account: str, new_month: str, old_month: str | None = None) -> ConsumerRecord:
    """A conversation counted as resolved by chatbot (2) in ``new_month``."""
    old = None if old_month is None else [old_month, 2]
    return update(account, {"t": "stats", "old": old, "new": [new_month, 2]})


def plan(account: str, effective: str, name: str = "pro") -> ConsumerRecord:
    message = {
        "t": "plan",
        "plan": name,
        "chatbot_pack": False,
        "effective_at": parse_timestamp_ms(effective),
    }
    return update(account, message)


def months(first: str, count: int) -> list[str]:
    year, month = int(first[:4]), int(first[5:])
    found = []
    for _ in range(count):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def fresh(history_months: int = 13) -> AccountTask:
    task = AccountTask(0, settings=settings(history_months))
    task.restored()
    return task


def run(task: AccountTask, records: list[ConsumerRecord], now_ms: int = NOW) -> list[Output]:
    """Process and commit one batch; its outputs."""
    out: list[Output] = []
    task.process(records, now_ms, out)
    return out


def test_fifteen_months_keep_thirteen_and_tombstone_the_rest() -> None:
    task = fresh()
    history = months("2025-01", 15)  # 2025-01 .. 2026-03
    changelog: dict[bytes, bytes | None] = {}
    for number, month in enumerate(history):
        run(task, [charge("acc-1", month, f"c-{number}"), stats("acc-1", month)])
        changelog.update(task.changes())
        task.committed()
    kept = history[2:]
    assert task.clock == "2026-03"
    assert task.first_kept == "2025-03"
    assert sorted(month for _, month in task.usage) == kept
    assert sorted(task.stats["acc-1"]) == kept
    # The expired months are tombstones on the changelog, and gone from the reads.
    for month in history[:2]:
        assert changelog[orjson.dumps(["u", "acc-1", month])] is None
        assert changelog[orjson.dumps(["s", "acc-1", month])] is None
    assert sorted(month for _, month in task.view.usage) == kept
    assert sorted(task.view.stats["acc-1"]) == kept
    assert task.view.expired("2025-02") and not task.view.expired("2025-03")
    # A restore from the changelog (tombstones included) gives the same state.
    again = AccountTask(0, settings=settings())
    for key, value in changelog.items():
        again.restore(key, value)
    again.restored()
    assert again.usage == task.usage and again.stats == task.stats
    assert (again.clock, again.first_kept, again.view.first_kept) == (
        "2026-03",
        "2025-03",
        "2025-03",
    )


def test_a_restore_replaying_the_changelog_in_order_drops_tombstoned_entries() -> None:
    """Compaction may not have run: the value and its later tombstone are both read."""
    task = fresh(history_months=2)
    entries: list[tuple[bytes, bytes | None]] = []
    for number, month in enumerate(("2026-01", "2026-02", "2026-03")):
        run(task, [charge("acc-1", month, f"c-{number}"), stats("acc-1", month)])
        entries += list(task.changes().items())
        task.committed()
    again = AccountTask(0, settings=settings(2))
    for key, value in entries:
        again.restore(key, value)
    again.restored()
    assert sorted(again.usage) == [("acc-1", "2026-02"), ("acc-1", "2026-03")]
    assert sorted(again.stats["acc-1"]) == ["2026-02", "2026-03"]


def test_an_account_whose_months_all_expired_leaves_no_statistics_behind() -> None:
    task = fresh(history_months=2)
    run(task, [charge("old", "2026-01", "c-1"), stats("old", "2026-01")])
    run(task, [charge("new", "2026-04", "c-2"), stats("new", "2026-04")])
    assert "old" not in task.stats
    assert ("old", "2026-01") not in task.usage
    changes = task.changes()
    assert changes[orjson.dumps(["u", "old", "2026-01"])] is None
    task.committed()
    assert "old" not in task.view.stats


def test_a_charge_for_an_expired_month_counts_nowhere_and_publishes_nothing() -> None:
    task = fresh(history_months=3)
    run(task, [charge("acc-1", "2026-06", "c-1")])
    out = run(task, [charge("acc-1", "2026-03", "c-late"), stats("acc-1", "2026-03")])
    assert out == []
    assert ("acc-1", "2026-03") not in task.usage
    assert "2026-03" not in task.stats.get("acc-1", {})
    assert task.expired_updates == 2
    # Inside the window, charges count as always.
    out = run(task, [charge("acc-1", "2026-04", "c-2")])
    assert [orjson.loads(o.value)["used"] for o in out if o.topic == TOPICS.usage] == [1]


def test_a_revision_out_of_an_expired_month_only_counts_the_new_month() -> None:
    task = fresh(history_months=2)
    run(task, [stats("acc-1", "2026-05"), stats("acc-1", "2026-06")])
    assert task.first_kept == "2026-05"
    run(task, [stats("acc-1", "2026-07")])  # 2026-05 expires
    # A conversation counted in 2026-05 gets a new revision (unengaged, 3) in 2026-07.
    run(task, [update("acc-1", {"t": "stats", "old": ["2026-05", 2], "new": ["2026-07", 3]})])
    assert task.stats["acc-1"]["2026-07"]["resolved_by_chatbot"] == 1
    assert task.stats["acc-1"]["2026-07"]["unengaged"] == 1
    assert "2026-05" not in task.stats["acc-1"]


def test_one_event_dated_in_the_future_does_not_expire_real_history() -> None:
    task = fresh()
    run(task, [charge("acc-1", "2027-05", "c-1")])
    run(task, [charge("acc-1", "2999-01", "c-future"), stats("acc-1", "2999-01")])
    assert task.clock == "2027-06"  # the wall clock's month: NOW + skew
    assert ("acc-1", "2027-05") in task.usage
    assert ("acc-1", "2999-01") in task.usage  # the future month itself is counted


def test_plan_histories_are_pruned_but_the_plan_in_force_stays() -> None:
    task = fresh(history_months=2)
    run(
        task,
        [
            plan("acc-1", "2025-01-01T00:00:00Z", "standard"),
            plan("acc-1", "2025-06-01T00:00:00Z", "pro"),
            plan("quiet", "2024-01-01T00:00:00Z", "pro"),
        ],
    )
    task.changes()
    task.committed()
    run(task, [charge("acc-1", "2026-03", "c-1")])  # window 2026-02 .. 2026-03
    changes = task.changes()
    task.committed()
    assert task.plans["acc-1"] == [[parse_timestamp_ms("2025-06-01T00:00:00Z"), "pro", False]]
    assert task.plans["quiet"] == [[parse_timestamp_ms("2024-01-01T00:00:00Z"), "pro", False]]
    assert orjson.loads(changes[orjson.dumps(["p", "acc-1"])]) == task.plans["acc-1"]
    assert orjson.dumps(["p", "quiet"]) not in changes  # nothing to prune there
    assert task.view.plans["acc-1"] == task.plans["acc-1"]
    # A record older than the window and superseded is dropped as it arrives.
    run(task, [plan("acc-1", "2025-02-01T00:00:00Z", "standard")])
    assert len(task.plans["acc-1"]) == 1


@pytest.mark.parametrize("history_months", [0, 40])
def test_a_long_enough_window_expires_nothing(history_months: int) -> None:
    task = fresh(history_months)
    history = months("2024-01", 30)
    for number, month in enumerate(history):
        run(task, [charge("acc-1", month, f"c-{number}"), stats("acc-1", month)])
    changes = task.changes()
    assert sorted(month for _, month in task.usage) == history
    assert all(value is not None for value in changes.values())
    assert task.first_kept == (None if history_months == 0 else "2023-03")  # 2026-06 - 39


def test_the_clock_is_on_the_changelog_only_when_it_moves() -> None:
    task = fresh()
    run(task, [charge("acc-1", "2026-05", "c-1")])
    assert orjson.loads(task.changes()[orjson.dumps(["h", ""])]) == "2026-05"
    task.committed()
    run(task, [charge("acc-1", "2026-05", "c-2"), charge("acc-1", "2026-04", "c-3")])
    assert orjson.dumps(["h", ""]) not in task.changes()


async def test_reads_of_an_expired_month_answer_410_and_kept_months_answer_as_always() -> None:
    """The read API: a month before the window is gone (410), not a month without charges."""
    from types import SimpleNamespace

    from botstream.stream.app import Worker, _account_read

    task = fresh(history_months=2)
    run(task, [charge("acc-1", "2026-01", "c-1"), charge("acc-1", "2026-03", "c-2")])
    task.changes()
    task.committed()

    class OneTaskWorker:
        usage = Worker.usage
        settings = task.settings
        clock = staticmethod(lambda: NOW / 1000)

        def owner_of(self, account_id: str):
            return 0, task.view

    def answer(body: dict, status: int = 200) -> tuple[int, dict]:
        return status, body

    async def read(month: str) -> tuple[int, dict]:
        request = SimpleNamespace(query={"month": month}, headers={})
        web = SimpleNamespace(json=answer)
        worker = OneTaskWorker()
        return await _account_read(web, request, worker, "acc-1", worker.usage)

    status, body = await read("2026-01")
    assert status == 410
    assert body == {"error": "month 2026-01 is no longer kept: the history starts at 2026-02"}
    status, body = await read("2026-03")
    assert (status, body["used"]) == (200, 1)
    status, body = await read("2026-02")  # kept, without charges
    assert (status, body["used"]) == (200, 0)
