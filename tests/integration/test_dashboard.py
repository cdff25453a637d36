"""The dashboard in a real browser: two workers, real traffic, headless Chromium.

Two `botstream worker` processes share the work; hand-made conversations go
through Kafka; Debian's Chromium, driven by Playwright, opens the overview on
one worker and an account owned by the other. The numbers on the page must be
what `/usage`, `/stats` and `/metrics` answer; they must change, without a
reload, when more traffic arrives; and an account id and a conversation id
holding markup must show as text. One screenshot of each page is kept per run
in ``.botstream-data/test-artifacts/``.

Chromium is not a Python package: ``make test`` installs Debian's ``chromium``
when ``/usr/bin/chromium`` is missing and it can (as root, with apt-get).
Where it cannot, this test is skipped, and the reason shows in the summary.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from botstream.domain.stats import STAT_FIELDS
from botstream.domain.timefmt import format_timestamp, month_of, parse_month
from botstream.stream.app import account_partition
from tests.integration.harness import log_line, produce

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".botstream-data" / "test-artifacts"
#: Never a browser of Playwright's own, never the network: Debian's Chromium, locked down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Low limits, so that a few conversations cross them (standard 5, 20 with the pack).
ENV = {"BOTSTREAM_PLAN_LIMITS": "standard=5/20,pro=50/200"}

HOSTILE_ACCOUNT = "<script>window.__pwned=1</script>"
#: Every conversation of the hostile account starts so: whichever charge raises an
#: alert, the alert's conversation id holds markup too.
HOSTILE_CONVERSATION = 'c-"><img src=x onerror="window.__pwned=2">'

#: The page's figures, read in the browser: rows of the nearest-limit table,
#: outcome counts and tiles, each with the text a person sees.
READ_OVERVIEW = """() => {
  const values = (root) => Object.fromEntries(
    Array.from(root.querySelectorAll("[data-field][data-value]"))
      .map((cell) => [cell.dataset.field, [cell.dataset.value, cell.textContent.trim()]]));
  return {
    rows: Array.from(document.querySelectorAll("tr[data-account]")).map((row) => ({
      account: row.dataset.account,
      shown: row.querySelector("[data-field=account_id]").textContent,
      cells: values(row),
    })),
    outcomes: Object.fromEntries(Array.from(document.querySelectorAll("tr[data-outcome]"))
      .map((row) => [row.dataset.outcome, values(row)[row.dataset.outcome]])),
    tiles: Object.fromEntries(Array.from(document.querySelectorAll("[data-tile]"))
      .map((tile) => [tile.dataset.tile, tile.dataset.value])),
    eventsIn: Number(document.querySelector("[data-field=events_in]").dataset.value),
    updates: Number(document.getElementById("live").dataset.updates),
    marker: window.__notReloaded === true,
    pwned: window.__pwned === undefined ? null : window.__pwned,
    injected: document.querySelectorAll("img, #live script").length,
  };
}"""


def _require_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "no /usr/bin/chromium: the browser test needs Debian's chromium package, which "
            "`make test` installs with apt-get when it runs as root; install it to run this test"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed: run `make .venv/.installed` (dev extra)")


# -- traffic --------------------------------------------------------------------------

_ids = itertools.count(1)


def conversation(account: str, kind: str, at_ms: int, conv: str | None = None) -> list[dict]:
    """The events of one conversation that ends at once, with the given outcome."""
    conv = conv or f"c-{next(_ids)}"
    steps = {
        "resolved_by_chatbot": [
            ("chatbot.triggered", {"chatbot_id": "bot-1"}),
            ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "faq"}),
            ("widget.closed", None),
            ("visitor.left", None),
        ],
        "transferred_to_agent": [
            ("chatbot.triggered", {"chatbot_id": "bot-1"}),
            ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "human"}),
            ("visitor.message", None),
            ("conversation.closed", {"closed_by": "agent"}),
        ],
        "unengaged": [
            ("chatbot.triggered", {"chatbot_id": "bot-1"}),
            ("visitor.left", None),
        ],
        "no_chatbot": [
            ("conversation.started", {"initiator": "visitor"}),
            ("visitor.message", None),
            ("agent.message", {"agent_id": "ag-1"}),
            ("conversation.closed", {"closed_by": "agent"}),
        ],
    }[kind]
    return [
        {
            "event_id": f"e-{next(_ids)}",
            "type": kind_of_event,
            "occurred_at": format_timestamp(at_ms + 1000 * step),
            "account_id": account,
            "conversation_id": conv,
            "visitor_id": "v-1",
            "data": data,
        }
        for step, (kind_of_event, data) in enumerate(steps)
    ]


def records(events: list[dict]) -> list[tuple[bytes, bytes]]:
    """Kafka records keyed by conversation id."""
    return [(e["conversation_id"].encode(), orjson.dumps(e)) for e in events]


def traffic(plan: dict[str, dict[str, int]], start_ms: int) -> list[dict]:
    """Conversations per account and outcome, a few seconds apart from ``start_ms``."""
    events = []
    at = start_ms
    for account, kinds in plan.items():
        hostile = account == HOSTILE_ACCOUNT
        for kind, count in kinds.items():
            for _ in range(count):
                conv = f"{HOSTILE_CONVERSATION}-{next(_ids)}" if hostile else None
                events += conversation(account, kind, at, conv)
                at += 5_000
    return events


BILLABLE = ("resolved_by_chatbot", "transferred_to_agent")


def expected_used(*plans: dict[str, dict[str, int]]) -> Counter:
    """Charges per account: every resolved or transferred conversation is billable."""
    used = Counter()
    for plan in plans:
        for account, kinds in plan.items():
            used[account] += sum(kinds.get(kind, 0) for kind in BILLABLE)
    return used


# -- the test -------------------------------------------------------------------------


async def wait_for_usage(worker, used: Counter, month: str, timeout_s: float = 60.0) -> None:
    """Until ``worker``'s read API serves ``used`` charges for every account."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = {a: (await worker.get_json(f"/usage/{_quote(a)}", month=month))["used"] for a in used}
        if got == dict(used):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"usage not reached after {timeout_s} s: {got} != {dict(used)}")
        await asyncio.sleep(0.5)


def _quote(account: str) -> str:
    from urllib.parse import quote

    return quote(account, safe="")


async def test_dashboard_in_a_browser(stream_settings, pool) -> None:
    _require_browser()
    from playwright.async_api import async_playwright

    settings = stream_settings
    first, second = pool.add("a", ENV), pool.add("b", ENV)
    first.start()
    second.start()
    owned = await pool.wait_owning([first, second])
    by_b = set(owned["b"]["accounts"])
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 10 * 60_000
    if month_of(start_ms) != month_of(now_ms):
        # The month began less than ten minutes ago: all traffic in the previous one.
        start_ms = parse_month(month_of(now_ms))[0] - 2 * 3_600_000
    month = month_of(start_ms)
    batch_one = {
        "acc-busy": {"resolved_by_chatbot": 4, "transferred_to_agent": 2, "unengaged": 1},
        "acc-quiet": {"resolved_by_chatbot": 1, "no_chatbot": 3},
        "acc-mid": {"resolved_by_chatbot": 3},
        HOSTILE_ACCOUNT: {"resolved_by_chatbot": 6},
        **{f"acc-{n}": {"transferred_to_agent": n % 3, "unengaged": 1} for n in range(8)},
    }
    await produce(settings, settings.topics.events, records(traffic(batch_one, start_ms)))
    used = expected_used(batch_one)
    await wait_for_usage(second, used, month)
    # An account owned by the worker whose page is *not* opened, with charges.
    remote = next(
        a for a in sorted(used) if used[a] and account_partition(a, settings.partitions) in by_b
    )
    log_line(f"dashboard: month {month}; b owns {sorted(by_b)}; remote account {remote}")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            await page.goto(f"{first.url}/?month={month}")
            await page.evaluate("() => { window.__notReloaded = true; }")
            # The alerts feed reads the committed alerts topic: wait for the hostile one.
            await page.wait_for_function(
                "() => document.querySelectorAll('tr[data-alert]').length >= 3", timeout=30_000
            )
            seen = await page.evaluate(READ_OVERVIEW)
            await check_overview(seen, [first, second], used, month)
            assert seen["pwned"] is None and seen["injected"] == 0
            assert HOSTILE_ACCOUNT in [row["shown"] for row in seen["rows"]]
            alert_text = await page.locator("table.alerts").inner_text()
            assert HOSTILE_ACCOUNT in alert_text and HOSTILE_CONVERSATION in alert_text
            # Events in, as the page shows them, are what the workers' /metrics count.
            events_in = 0
            for worker in (first, second):
                events_in += int(await worker.metric("botstream_events_in_total"))
            await page.wait_for_function(
                "(want) => Number(document.querySelector('[data-field=events_in]')"
                ".dataset.value) === want",
                arg=events_in,
                timeout=15_000,
            )
            await page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

            # More traffic: the open page follows without a reload.
            batch_two = {"acc-mid": {"resolved_by_chatbot": 4}, remote: {"resolved_by_chatbot": 2}}
            await produce(
                settings,
                settings.topics.events,
                records(traffic(batch_two, start_ms + 5 * 60_000)),
            )
            used = expected_used(batch_one, batch_two)
            await wait_for_usage(first, used, month)
            await page.wait_for_function(
                """(want) => {
                  const cell = document.querySelector(
                    'tr[data-account="acc-mid"] [data-field=used]');
                  return cell && cell.dataset.value === want;
                }""",
                arg=str(used["acc-mid"]),
                timeout=15_000,
            )
            later = await page.evaluate(READ_OVERVIEW)
            assert later["marker"] is True, "the page was reloaded"
            assert later["updates"] > seen["updates"]
            await check_overview(later, [first, second], used, month)

            # One account owned by the other worker, on this worker's page.
            account_page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            await account_page.goto(f"{first.url}/accounts/{_quote(remote)}?month={month}")
            await check_account(account_page, second, remote, month)
            await account_page.screenshot(
                path=str(ARTIFACTS / "dashboard-account.png"), full_page=True
            )
            # The hostile account's own page shows its id as text.
            hostile = await browser.new_page()
            await hostile.goto(f"{first.url}/accounts/{_quote(HOSTILE_ACCOUNT)}?month={month}")
            assert await hostile.locator("h1 [data-field=account_id]").inner_text() == (
                HOSTILE_ACCOUNT
            )
            assert await hostile.evaluate("() => window.__pwned === undefined")
            assert await hostile.locator("img").count() == 0
            shown = await hostile.locator("[data-field=conversation_id]").first.inner_text()
            assert shown.startswith(HOSTILE_CONVERSATION + "-")
        finally:
            await browser.close()
    log_line(f"dashboard screenshots in {ARTIFACTS}")
    for worker in (first, second):
        assert not worker.errors(), worker.errors()


async def check_overview(seen: dict, workers: list, used: Counter, month: str) -> None:
    """The overview's figures against ``/usage``, ``/stats`` and ``/metrics``."""
    reader = workers[1]  # the other worker: half its answers are forwarded
    rows = {row["account"]: row for row in seen["rows"]}
    charged = {a for a, n in used.items() if n}
    assert set(rows) == charged, "every charged account is listed (fewer than 20)"
    for account, row in rows.items():
        assert row["shown"] == account
        usage = await reader.get_json(f"/usage/{_quote(account)}", month=month)
        for field in ("used", "limit", "remaining", "over_limit"):
            value, text = row["cells"][field]
            assert int(value) == usage[field], (account, field)
            assert int(text.replace(",", "")) == usage[field], (account, field, "as shown")
        forecast = row["cells"]["forecast"][0]
        want = usage["forecast"]
        assert forecast == (want["limit_reached_on"] or want["status"]), (account, forecast)
    totals = Counter()
    for account in used:
        stats = await reader.get_json(f"/stats/{_quote(account)}", month=month)
        totals.update({name: stats[name] for name in STAT_FIELDS})
    assert {name: int(v[0]) for name, v in seen["outcomes"].items()} == dict(totals)
    assert int(seen["tiles"]["conversations"]) == sum(totals.values())
    assert int(seen["tiles"]["accounts"]) == len(charged)
    at_limit = 0
    for account in charged:
        usage = await reader.get_json(f"/usage/{_quote(account)}", month=month)
        at_limit += usage["used"] >= usage["limit"]
    assert int(seen["tiles"]["at_limit"]) == at_limit
    # The page sampled the counters a moment before /metrics was read: never more.
    events_in = 0.0
    for worker in workers:
        events_in += await worker.metric("botstream_events_in_total")
    assert 0 < seen["eventsIn"] <= events_in


async def check_account(page, reader, account: str, month: str) -> None:
    """The account page against ``/usage`` and ``/stats`` of its owner."""
    usage = await reader.get_json(f"/usage/{_quote(account)}", month=month)
    stats = await reader.get_json(f"/stats/{_quote(account)}", month=month)
    assert await page.locator("h1 [data-field=account_id]").inner_text() == account
    for field in ("used", "limit", "remaining", "over_limit"):
        cell = page.locator(f".usage dd[data-field={field}]")
        assert int(await cell.get_attribute("data-value")) == usage[field], field
        assert int((await cell.inner_text()).replace(",", "")) == usage[field], field
    assert (
        await page.locator("[data-field=forecast-line]").get_attribute("data-status")
        == (usage["forecast"]["status"])
    )
    row = page.locator(f'tr[data-month="{month}"]')
    for name in STAT_FIELDS:
        value = await row.locator(f"[data-field={name}]").get_attribute("data-value")
        assert int(value) == stats[name], name
    assert await page.locator("tr[data-month]").count() == 12
