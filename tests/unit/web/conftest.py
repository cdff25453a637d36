"""A stand-in for ``botstream.stream.app.Worker`` with hand-made account-stage state.

It has the interface the dashboard uses (``account_views``, ``owner_of``,
``usage``, ``stats``, ``directory``, ``metrics``, ``settings``, ``clock``,
``url``) and reuses the real ``Worker.usage`` and ``Worker.stats``, so what
the pages show is what the read API would answer.
"""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from botstream.config import load_settings
from botstream.domain.metering import Usage
from botstream.domain.plans import PlanRecord, add_plan
from botstream.domain.stats import STAT_FIELDS
from botstream.domain.timefmt import parse_timestamp_ms
from botstream.stream.app import Worker, account_partition
from botstream.stream.directory import Directory, announcement
from botstream.stream.metrics import StreamMetrics

#: 2026-11-16T00:00:00Z: the middle of November 2026, "now" for these tests.
NOW_S = parse_timestamp_ms("2026-11-16T00:00:00Z") / 1000


def ms(text: str) -> int:
    """Epoch ms of an RFC 3339 text."""
    return parse_timestamp_ms(text)


def empty_view() -> SimpleNamespace:
    """An account-stage view with nothing in it."""
    return SimpleNamespace(plans={}, usage={}, stats={})


class FakeWorker:
    """Just enough of a worker for the dashboard (see the module docstring)."""

    usage = Worker.usage
    stats = Worker.stats

    def __init__(self, url: str, owned: set[int], partitions: int = 4, **settings) -> None:
        base = load_settings(env={"BOTSTREAM_PLAN_LIMITS": "standard=10/50,pro=100/1000"})
        self.settings = replace(base, partitions=partitions, **settings)
        self.clock = lambda: NOW_S
        self.url = url
        self.metrics = StreamMetrics()
        self.directory = Directory()
        self.stages: dict = {}
        self.views = {p: empty_view() for p in owned}

    def claim(self, owners: dict[int, str]) -> None:
        """Have the directory say who serves each partition (as announced)."""
        for partition, url in owners.items():
            self.directory.apply(*announcement(partition, url, 1, True))

    def account_views(self) -> dict:
        """Partition -> view, for the partitions this worker owns."""
        return dict(self.views)

    def owner_of(self, account_id: str):
        """``(partition, view or None)``."""
        partition = account_partition(account_id, self.settings.partitions)
        return partition, self.views.get(partition)

    # -- building state --------------------------------------------------------------------

    def view_of(self, account_id: str) -> SimpleNamespace:
        """The view holding ``account_id`` (it must be one this worker owns)."""
        partition, view = self.owner_of(account_id)
        assert view is not None, f"{account_id} is in partition {partition}, not owned here"
        return view

    def charge(self, account_id: str, month: str, used: int, latest: str) -> None:
        """Set an account's usage of ``month``: ``used`` charges, the latest at ``latest``."""
        self.view_of(account_id).usage[(account_id, month)] = Usage(
            account_id, month, used, ms(latest), []
        )

    def plan(self, account_id: str, plan: str, pack: bool, effective: str) -> None:
        """Add a plan record to an account's history."""
        view = self.view_of(account_id)
        record = PlanRecord(account_id, plan, pack, ms(effective))
        view.plans[account_id] = add_plan(view.plans.get(account_id), record)

    def outcomes(self, account_id: str, month: str, **counts: int) -> None:
        """Set an account's conversations by outcome in ``month``."""
        per_month = dict.fromkeys(STAT_FIELDS, 0) | counts
        self.view_of(account_id).stats.setdefault(account_id, {})[month] = per_month


def accounts_in(
    partitions: set[int], count: int, prefix: str = "acc-", total: int = 4
) -> list[str]:
    """The first ``count`` account ids ``prefix<n>`` whose partition is in ``partitions``."""
    found = []
    n = 0
    while len(found) < count:
        account = f"{prefix}{n}"
        if account_partition(account, total) in partitions:
            found.append(account)
        n += 1
    return found
