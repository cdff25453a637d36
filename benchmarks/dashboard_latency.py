"""How fast does the dashboard answer with 10,000 accounts held? Prints milliseconds.

Run: ``.venv/bin/python benchmarks/dashboard_latency.py [--accounts 10000] [--requests 40]``

The state is what a busy deployment's account stage holds: every account has
usage in each of the last 12 months, outcome counts in each month, and one
or two plan records; a tenth are near or past their limit, and the alerts
feed holds three alerts for each of those. The dashboard's real aiohttp
routes answer on loopback, and an aiohttp client times whole requests (page
rendered and read), one after another:

* one worker holding every partition;
* two workers holding two partitions each, asked of the first: half the
  overview's partitions and the remote account are forwarded over HTTP to the
  second. Both run in this process, on one event loop, so every request also
  pays for the other worker's work: an upper bound.

Each figure is the median and the 95th percentile of ``--requests`` requests
after a few warm-up ones, and the slowest.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from dataclasses import replace
from types import SimpleNamespace

import aiohttp
from aiohttp import web

from botstream.config import load_settings
from botstream.domain.metering import Usage
from botstream.domain.plans import PlanRecord, add_plan
from botstream.domain.stats import STAT_FIELDS
from botstream.domain.timefmt import month_of, parse_month
from botstream.stream.app import Worker, account_partition
from botstream.stream.directory import Directory, announcement
from botstream.stream.metrics import StreamMetrics
from botstream.web.dashboard import Dashboard, account_path
from botstream.web.feeds import CommittedFeeds
from botstream.web.summary import previous_months

PARTITIONS = 4


class HeldState:
    """A worker's read side (the interface the dashboard uses) over hand-built state."""

    usage = Worker.usage
    stats = Worker.stats

    def __init__(self, owned: set[int], now_s: float) -> None:
        self.settings = replace(load_settings(env={}), partitions=PARTITIONS)
        self.clock = lambda: now_s
        self.url = ""
        self.metrics = StreamMetrics()
        self.directory = Directory()
        self.stages: dict = {}
        self.views = {p: SimpleNamespace(plans={}, usage={}, stats={}) for p in owned}

    def account_views(self) -> dict:
        return dict(self.views)

    def owner_of(self, account_id: str):
        partition = account_partition(account_id, PARTITIONS)
        return partition, self.views.get(partition)


class QuietFeeds(CommittedFeeds):
    """The alerts feed, filled here instead of from Kafka."""

    async def run(self) -> None:
        await asyncio.Event().wait()


def fill(workers: list[HeldState], feeds: list[CommittedFeeds], accounts: int, now_ms: int):
    """Give every account 12 months of usage and outcomes, plans, and the hot ones alerts."""
    rng = random.Random(7)
    months = previous_months(month_of(now_ms), 12)
    config = workers[0].settings.domain
    for n in range(accounts):
        account = f"acc-{n:05d}"
        view = next(w.views[p] for w in workers for p in w.views
                    if p == account_partition(account, PARTITIONS))  # fmt: skip
        pro = n % 5 == 0
        plans = add_plan(None, PlanRecord(account, "pro" if pro else "standard", False, 0))
        if n % 7 == 0:
            plans = add_plan(plans, PlanRecord(account, "pro" if pro else "standard", True, 1))
        view.plans[account] = plans
        limit = config.limit_for("pro" if pro else "standard", n % 7 == 0)
        hot = n % 10 == 0
        for month in months:
            _, end = parse_month(month)
            used = int(limit * (rng.uniform(0.8, 1.2) if hot else rng.uniform(0.05, 0.7)))
            latest = min(end - 1, now_ms)
            view.usage[(account, month)] = Usage(account, month, used, latest, [])
            view.stats.setdefault(account, {})[month] = {
                name: rng.randrange(used + 1) for name in STAT_FIELDS
            }
        if hot:
            for feed in feeds:
                for kind, used in (("quota.warning", limit * 8 // 10), ("quota.limit_reached",
                                   limit), ("quota.exceeded", limit + 1)):  # fmt: skip
                    feed.add_alert(
                        {
                            "alert_id": f"{account}:{months[0]}:{kind}:{limit}",
                            "kind": kind,
                            "account_id": account,
                            "month": months[0],
                            "used": used,
                            "limit": limit,
                            "conversation_id": f"c-{n}-{kind}",
                            "at": f"{months[0]}-02T10:00:{n % 60:02d}.000Z",
                        }
                    )


async def serve(worker: HeldState, feeds: CommittedFeeds) -> web.AppRunner:
    app = web.Application()
    Dashboard(worker, feeds).mount(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    worker.url = f"http://127.0.0.1:{port}"
    return runner


async def timed(session: aiohttp.ClientSession, url: str, requests: int) -> tuple[list[float], int]:
    """Milliseconds of each of ``requests`` GETs (after warm-up), and the body size."""
    size = 0
    for _ in range(3):
        async with session.get(url) as response:
            size = len(await response.read())
            assert response.status == 200, (url, response.status)
    times = []
    for _ in range(requests):
        began = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        times.append((time.perf_counter() - began) * 1000)
    return times, size


def line(name: str, times: list[float], size: int) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return (
        f"  {name:<34} median {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms   "
        f"max {max(times):7.1f} ms   ({size / 1024:,.0f} KiB)"
    )


async def run(accounts: int, requests: int) -> None:
    now_s = time.time()
    now_ms = int(now_s * 1000)
    hot = "acc-00010"
    single = HeldState(set(range(PARTITIONS)), now_s)
    pair = [HeldState({0, 1}, now_s), HeldState({2, 3}, now_s)]
    single_feeds = QuietFeeds(single.settings)
    pair_feeds = [QuietFeeds(w.settings) for w in pair]
    began = time.perf_counter()
    fill([single], [single_feeds], accounts, now_ms)
    fill(pair, pair_feeds, accounts, now_ms)
    held = sum(len(v.usage) for v in single.views.values())
    print(
        f"dashboard latency: {accounts:,} accounts, {held:,} account-months held "
        f"(built in {time.perf_counter() - began:.1f} s), {requests} requests each"
    )
    runners = [await serve(single, single_feeds)]
    for worker, feeds in zip(pair, pair_feeds, strict=True):
        runners.append(await serve(worker, feeds))
    for worker in pair:
        owners = {0: pair[0].url, 1: pair[0].url, 2: pair[1].url, 3: pair[1].url}
        for partition, url in owners.items():
            worker.directory.apply(*announcement(partition, url, 1, True))
    remote = next(f"acc-{n:05d}" for n in range(0, accounts, 10)
                  if account_partition(f"acc-{n:05d}", PARTITIONS) in (2, 3))  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            print("one worker, every partition:")
            for name, path in (
                ("overview page  GET /", "/"),
                ("overview live part", "/dashboard/fragment/overview"),
                ("overview JSON", "/dashboard/api/overview"),
                (f"account page  {hot}", account_path(hot)),
            ):
                print(line(name, *await timed(session, single.url + path, requests)))
            print("two workers, asked of the first (half forwarded):")
            for name, path in (
                ("overview page  GET /", "/"),
                (f"account page  {remote} (remote)", account_path(remote)),
            ):
                print(line(name, *await timed(session, pair[0].url + path, requests)))
    finally:
        for runner in runners:
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(run(args.accounts, args.requests))


if __name__ == "__main__":
    main()
