"""The dashboard's pages and JSON on an aiohttp server, one or two workers (no Kafka).

Limits: standard 10 / 50 with the pack. "Now" is 2026-11-16T00:00Z.
"""

from __future__ import annotations

import asyncio
import re
from html import unescape

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from botstream.web.dashboard import Dashboard, account_path, duration_text, usage_bar
from botstream.web.feeds import CommittedFeeds, EventRate
from tests.unit.web.conftest import FakeWorker, accounts_in

ALL = {0, 1, 2, 3}
HOSTILE_ACCOUNT = "<script>window.pwned=1</script>"
HOSTILE_CONVERSATION = '"><img src=x onerror=alert(1)>'


class QuietFeeds(CommittedFeeds):
    """Feeds filled by the test, which never read Kafka."""

    async def run(self) -> None:
        await asyncio.Event().wait()


def alert(account: str, kind: str, used: int, limit: int, at: str, conversation="c-1") -> dict:
    """An alert record as the alerts topic holds it."""
    return {
        "alert_id": f"{account}:2026-11:{kind}:{limit}",
        "kind": kind,
        "account_id": account,
        "month": "2026-11",
        "used": used,
        "limit": limit,
        "conversation_id": conversation,
        "at": at,
    }


async def serve(worker: FakeWorker, feeds: CommittedFeeds | None = None) -> TestClient:
    """A started test client for ``worker``'s dashboard; its URL becomes the worker's."""
    app = web.Application()
    Dashboard(worker, feeds).mount(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    worker.url = str(client.make_url("")).rstrip("/")
    return client


def rows(html: str) -> dict[str, dict[str, str]]:
    """The nearest-limit table: account -> {field: data-value}."""
    found = {}
    for match in re.finditer(r'<tr data-account="([^"]*)">(.*?)</tr>', html, re.S):
        cells = dict(re.findall(r'data-field="(\w+)" data-value="([^"]*)"', match.group(2)))
        found[unescape(match.group(1))] = cells
    return found


@pytest.fixture
def worker() -> FakeWorker:
    worker = FakeWorker("http://placeholder", ALL)
    worker.charge("acc-over", "2026-11", 12, "2026-11-15T10:00:00Z")
    worker.charge("acc-soon", "2026-11", 7, "2026-11-15T10:00:00Z")
    worker.charge("acc-calm", "2026-11", 2, "2026-11-02T10:00:00Z")
    worker.charge(HOSTILE_ACCOUNT, "2026-11", 10, "2026-11-14T10:00:00Z")
    worker.outcomes("acc-over", "2026-11", resolved_by_chatbot=9, transferred_to_agent=3)
    worker.outcomes("acc-calm", "2026-11", unengaged=4, no_chatbot=6)
    return worker


@pytest.fixture
def feeds(worker: FakeWorker) -> QuietFeeds:
    feeds = QuietFeeds(worker.settings)
    feeds.add_alert(alert("acc-over", "quota.warning", 8, 10, "2026-11-12T00:00:00.000Z"))
    feeds.add_alert(alert("acc-over", "quota.exceeded", 11, 10, "2026-11-14T00:00:00.000Z"))
    feeds.add_alert(
        alert(HOSTILE_ACCOUNT, "quota.limit_reached", 10, 10, "2026-11-13T00:00:00.000Z",
              conversation=HOSTILE_CONVERSATION)
    )  # fmt: skip
    for error in ("invalid_json: bad", "late: old", "late: older"):
        feeds.add_dead_letter({"error": error})
    feeds.caught_up = True
    return feeds


async def test_overview_shows_what_the_read_api_answers(worker, feeds) -> None:
    async with await serve(worker, feeds) as client:
        response = await client.get("/")
        html = await response.text()
    assert response.status == 200
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    table = rows(html)
    # Nearest their limit first: 12/10, then 10/10, 7/10, 2/10.
    assert list(table) == ["acc-over", HOSTILE_ACCOUNT, "acc-soon", "acc-calm"]
    for account, cells in table.items():
        _, view = worker.owner_of(account)
        record = worker.usage(view, account, "2026-11")
        for field in ("used", "limit", "remaining", "over_limit"):
            assert cells[field] == str(record[field]), (account, field)
    # 7 charges in 15 days of November, the 10th at that pace on 21.4 days: 22 November.
    assert 'data-field="forecast" data-value="2026-11-22"' in html
    outcomes = dict(re.findall(r'data-outcome="(\w+)">.*?data-value="(\d+)"', html, re.S))
    assert outcomes == {
        "resolved_by_chatbot": "9",
        "transferred_to_agent": "3",
        "unengaged": "4",
        "no_chatbot": "6",
    }
    tiles = dict(re.findall(r'data-tile="(\w+)" data-value="([^"]*)"', html))
    assert tiles["accounts"] == "4" and tiles["at_limit"] == "2" and tiles["conversations"] == "22"
    assert tiles["dead_letters"] == "3"
    assert re.search(r'data-reason="late"><th>late</th><td[^>]*data-value="2"', html)
    alert_ids = re.findall(r'<tr data-alert="([^"]*)"', html)
    newest_first = ["acc-over", HOSTILE_ACCOUNT, "acc-over"]
    assert [unescape(a).split(":")[0] for a in alert_ids] == newest_first


async def test_values_from_events_are_escaped(worker, feeds) -> None:
    async with await serve(worker, feeds) as client:
        pages = [
            await (await client.get("/")).text(),
            await (await client.get(account_path(HOSTILE_ACCOUNT))).text(),
            await (await client.get("/dashboard/fragment/overview")).text(),
        ]
    for html in pages:
        assert "<script>window" not in html and "<img src=x" not in html
        assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in pages[1]  # the alert's conversation
    # The only scripts are the worker's own file.
    assert re.findall(r"<script[^>]*>", pages[0]) == [
        re.search(r'<script src="/dashboard/static/dashboard\.js\?v=\w+" defer>', pages[0])[0]
    ]


async def test_account_page(worker, feeds) -> None:
    worker.plan("acc-soon", "standard", False, "2026-10-01T00:00:00Z")
    worker.charge("acc-soon", "2026-10", 4, "2026-10-20T00:00:00Z")
    async with await serve(worker, feeds) as client:
        response = await client.get("/accounts/acc-over")
        html = await response.text()
        soon = await (await client.get("/accounts/acc-soon?month=2026-11")).text()
        detail = orjson.loads(await (await client.get("/dashboard/api/account/acc-over")).read())
    assert response.status == 200
    usage = dict(re.findall(r'<dd data-field="(\w+)" data-value="([^"]*)"', html))
    assert usage == {
        "used": "12",
        "limit": "10",
        "remaining": "0",
        "over_limit": "2",
        "updated_at": "2026-11-15T10:00:00.000Z",
    }
    assert 'data-status="reached"' in html
    assert len(re.findall(r'<tr data-month="', html)) == 12
    assert 'data-field="limit_reached_on">2026-11-22<' in soon
    october = re.search(r'<tr data-month="2026-10">(.*?)</tr>', soon, re.S)[1]
    assert 'data-field="used" data-value="4"' in october
    assert "2026-10-01 00:00:00</td><td>standard</td><td>off" in soon
    # Its alerts, newest first; the JSON has the same figures.
    assert re.findall(r'<tr data-alert="acc-over:2026-11:([\w.]+):10"', html) == [
        "quota.exceeded",
        "quota.warning",
    ]
    _, view = worker.owner_of("acc-over")
    assert detail["usage"] == worker.usage(view, "acc-over", "2026-11")
    assert [a["kind"] for a in detail["alerts"]] == ["quota.exceeded", "quota.warning"]


async def test_two_workers_each_show_every_account() -> None:
    first, second = FakeWorker("http://a", {0, 1}), FakeWorker("http://b", {2, 3})
    mine = accounts_in({0, 1}, 3, prefix="a-")
    theirs = accounts_in({2, 3}, 3, prefix="b-")
    for n, account in enumerate(mine):
        first.charge(account, "2026-11", n + 1, "2026-11-10T00:00:00Z")
    for n, account in enumerate(theirs):
        second.charge(account, "2026-11", n + 5, "2026-11-10T00:00:00Z")
    second.outcomes(theirs[0], "2026-11", resolved_by_chatbot=4)
    async with await serve(first) as a_client, await serve(second) as b_client:
        for worker in (first, second):
            worker.claim({0: first.url, 1: first.url, 2: second.url, 3: second.url})
        pages = [await (await c.get("/")).text() for c in (a_client, b_client)]
        account_page = await (await a_client.get(f"/accounts/{theirs[2]}")).text()
        overview = orjson.loads(await (await a_client.get("/dashboard/api/overview")).read())
    assert rows(pages[0]) == rows(pages[1])
    assert set(rows(pages[0])) == set(mine) | set(theirs)
    assert rows(pages[0])[theirs[2]]["used"] == "7"
    assert 'data-field="used" data-value="7"' in account_page
    assert overview["outcomes"]["resolved_by_chatbot"] == 4
    assert overview["missing_partitions"] == []
    assert [w["url"] for w in overview["workers"]] == [first.url, second.url]


async def test_a_partition_without_an_answering_owner_is_named() -> None:
    first = FakeWorker("http://a", {0, 1})
    first.charge(accounts_in({0, 1}, 1)[0], "2026-11", 3, "2026-11-10T00:00:00Z")
    async with await serve(first) as client:
        # Partition 2's owner is gone; partition 3 has none.
        first.claim({0: first.url, 1: first.url, 2: "http://127.0.0.1:9"})
        overview = orjson.loads(await (await client.get("/dashboard/api/overview")).read())
        html = await (await client.get("/")).text()
        account = accounts_in({3}, 1)[0]
        missing = await client.get(f"/accounts/{account}")
        missing_html = await missing.text()
        fragment = await client.get(f"/dashboard/fragment/account/{account}")
    assert overview["missing_partitions"] == [2, 3]
    assert overview["accounts"] == 1
    assert [w["ok"] for w in overview["workers"]] == [True, False]
    assert 'data-field="missing_partitions"' in html and "Partitions 2, 3 of 4" in html
    assert missing.status == 503 and "partition 3 has no owner" in missing_html
    assert fragment.status == 503


async def test_fragments_are_the_live_part_only(worker) -> None:
    async with await serve(worker) as client:
        page = await (await client.get("/?month=2026-11")).text()
        fragment = await (await client.get("/dashboard/fragment/overview?month=2026-11")).text()
        account = await (await client.get("/dashboard/fragment/account/acc-over")).text()
    assert "<html" not in fragment and "<html" not in account
    assert 'data-live-url="/dashboard/fragment/overview?month=2026-11"' in page
    assert rows(fragment) == rows(page)
    assert 'data-field="account_id">acc-over<' in account


async def test_requests_it_refuses_or_redirects(worker) -> None:
    async with await serve(worker) as client:
        bad = await client.get("/?month=2026-13")
        bad_text = await bad.text()
        css = await client.get("/dashboard/static/dashboard.css")
        js = await client.get("/dashboard/static/dashboard.js")
        unknown = await client.get("/dashboard/static/secrets.txt")
        found = await client.get("/accounts/?account=a b/c&month=2026-10", allow_redirects=False)
        empty = await client.get("/accounts/?account=", allow_redirects=False)
        partitions = await client.get("/dashboard/api/partitions?partitions=x")
    assert bad.status == 400 and "is not YYYY-MM" in bad_text
    assert css.status == 200 and css.content_type == "text/css"
    assert js.status == 200 and js.content_type == "text/javascript"
    assert unknown.status == 404
    assert found.status == 302 and found.headers["Location"] == "/accounts/a%20b%2Fc?month=2026-10"
    assert empty.status == 302 and empty.headers["Location"] == "/"
    assert partitions.status == 400


async def test_partitions_api_answers_for_its_own_partitions_only() -> None:
    worker = FakeWorker("http://a", {0, 1})
    async with await serve(worker) as client:
        response = await client.get("/dashboard/api/partitions?month=2026-11&partitions=1,2")
        answer = orjson.loads(await response.read())
    assert list(answer["partitions"]) == ["1"]


async def test_worker_api_reports_events_per_second() -> None:
    worker = FakeWorker("http://a", ALL)
    dashboard = Dashboard(worker)
    worker.metrics.events_in.inc(100)
    dashboard.rate.sample(now=10.0)
    worker.metrics.events_in.inc(300)
    dashboard.rate.sample(now=12.0)
    info = dashboard.worker_info()
    assert (info["events_in"], info["events_per_second"]) == (400, 150.0)


def test_event_rate_over_a_window() -> None:
    total = [0.0]
    rate = EventRate(lambda: total[0], window_s=5.0)
    assert rate.per_second == 0.0
    for second in range(12):
        total[0] = 100.0 * second
        rate.sample(now=float(second))
    assert rate.per_second == 100.0
    total[0] = 1100.0 + 1000.0  # a burst in the last second
    rate.sample(now=12.0)
    # Over the window that starts at second 7: (2100 - 700) / 5 s.
    assert rate.per_second == 280.0


def test_usage_bar() -> None:
    assert usage_bar({"used": 5, "limit": 10}) == {
        "used": 50.0, "limit": 100.0, "over": 0.0, "state": "ok"
    }  # fmt: skip
    assert usage_bar({"used": 8, "limit": 10})["state"] == "warn"
    assert usage_bar({"used": 10, "limit": 10})["state"] == "full"
    # 15 of 10: the bar spans 15, the limit mark at two thirds.
    assert usage_bar({"used": 15, "limit": 10}) == {
        "used": 66.67, "limit": 66.67, "over": 33.33, "state": "over"
    }  # fmt: skip
    assert usage_bar({"used": 0, "limit": 0})["state"] == "full"


def test_durations_read_at_a_glance() -> None:
    assert [duration_text(s) for s in (0.4, 59, 119.4, 120, 7199, 7200, 67_041, 172_800)] == [
        "0 s", "59 s", "119 s", "2 min", "119 min", "2 h 0 min", "18 h 37 min", "2 d 0 h"
    ]  # fmt: skip


def test_feeds_keep_alerts_newest_first(feeds) -> None:
    assert [a["kind"] for a in feeds.recent_alerts(2)] == ["quota.exceeded", "quota.limit_reached"]
    assert feeds.alert_count == 3
    assert feeds.dead_letters == {"late": 2, "invalid_json": 1}
    assert feeds.alerts_of("nobody") == []
