"""The dashboard: an overview page and a page per account, served by every worker.

The pages are rendered on the server (Jinja2, every value escaped) and stay
live with a few lines of plain JavaScript that fetch the page's live part
again every two seconds. Nothing is built and nothing comes from outside the
worker. Routes, on the worker's existing web server:

=========================================== =============================================
``GET /``                                   the overview (``?month=YYYY-MM``, default now)
``GET /accounts/{account_id}``              one account (``?month=``)
``GET /dashboard/fragment/overview``        the overview's live part, as HTML
``GET /dashboard/fragment/account/{id}``    the account page's live part, as HTML
``GET /dashboard/api/overview``             the overview's figures, as JSON
``GET /dashboard/api/account/{id}``         an account's figures, as JSON (from its owner)
``GET /dashboard/api/partitions``           summaries of this worker's own partitions
``GET /dashboard/api/worker``               this worker's events/s and watermark lags
``GET /dashboard/static/{name}``            the stylesheet and the script
=========================================== =============================================

Where the numbers come from, so that any worker's page shows every account:

* usage, forecasts and outcome counts: the account-stage state of each
  partition, summarised by the worker that owns it (``Worker.account_views``)
  and fetched from it like the read API forwards a read (the
  ``X-Botstream-Forwarded`` header stops loops);
* alerts and dead letters: the committed records of their topics, which every
  worker reads itself (:class:`~botstream.web.feeds.CommittedFeeds`);
* events/s and watermark lag: each worker's own metrics, asked of every
  worker in the ownership directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from yarl import URL

from botstream.domain.stats import STAT_FIELDS
from botstream.domain.timefmt import format_timestamp, month_of, parse_month
from botstream.web.feeds import CommittedFeeds, EventRate
from botstream.web.summary import (
    account_detail,
    adjacent_month,
    merge_summaries,
    partition_summary,
)

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Botstream-Forwarded"
HERE = Path(__file__).parent
#: How often an open page fetches its live part again.
REFRESH_MS = 2000
#: How long a worker waits for another worker's part of a page.
PEER_TIMEOUT_S = 3.0
#: How many of the newest alerts the overview lists.
RECENT_ALERTS = 15

#: Pages load only the worker's own script and stylesheet: even a value that
#: slipped through escaping could not run a script or load anything.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


class Unavailable(Exception):
    """A part of a page cannot be had right now (no owner, the owner did not answer)."""


def account_path(account_id: str) -> str:
    """``/accounts/{account_id}`` with the id quoted (it may hold ``/``, spaces, anything)."""
    return "/accounts/" + quote(account_id, safe="")


class Dashboard:
    """The pages and their data for one worker (see the module docstring)."""

    def __init__(self, worker: Any, feeds: CommittedFeeds | None = None) -> None:
        self.worker = worker
        self.feeds = feeds
        self.rate = EventRate(self._events_total)
        self.templates = _environment(self._static_url, worker.settings.domain.warning_percent)
        self._assets = {
            path.name: (path.read_bytes(), _STATIC_TYPES[path.suffix])
            for path in sorted((HERE / "static").iterdir())
            if path.suffix in _STATIC_TYPES
        }
        self._asset_version = hashlib.sha256(
            b"".join(body for body, _ in self._assets.values())
        ).hexdigest()[:12]
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task] = []

    # -- wiring ----------------------------------------------------------------------------

    def mount(self, web_app: web.Application) -> None:
        """Add the routes to an aiohttp application, and start and stop with it."""
        routes = web_app.router
        routes.add_get("/", self.overview_page)
        routes.add_get("/accounts/", self.find_account)
        routes.add_get("/accounts/{account_id}", self.account_page)
        routes.add_get("/dashboard/fragment/overview", self.overview_fragment)
        routes.add_get("/dashboard/fragment/account/{account_id}", self.account_fragment)
        routes.add_get("/dashboard/api/overview", self.overview_api)
        routes.add_get("/dashboard/api/account/{account_id}", self.account_api)
        routes.add_get("/dashboard/api/partitions", self.partitions_api)
        routes.add_get("/dashboard/api/worker", self.worker_api)
        routes.add_get("/dashboard/static/{name}", self.static)
        web_app.on_startup.append(self._on_startup)
        web_app.on_cleanup.append(self._on_cleanup)

    async def _on_startup(self, _app: web.Application) -> None:
        await self.start()

    async def _on_cleanup(self, _app: web.Application) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start following the alert and dead-letter topics, and sampling events/s."""
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self.rate.run(), name="dashboard-rate"))
        if self.feeds is not None:
            self._tasks.append(asyncio.create_task(self.feeds.run(), name="dashboard-feeds"))

    async def stop(self) -> None:
        """Stop the background readers and close connections to other workers."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the figures -----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.worker.clock() * 1000)

    def _events_total(self) -> float:
        registry = self.worker.metrics.registry
        return registry.get_sample_value("botstream_events_in_total") or 0.0

    def local_partitions(self, month: str, wanted: set[int] | None = None) -> dict[int, dict]:
        """Summaries of the account-stage partitions this worker owns (of ``wanted`` ones)."""
        worker = self.worker
        config = worker.settings.domain
        return {
            partition: partition_summary(view, month, config, worker.usage)
            for partition, view in worker.account_views().items()
            if wanted is None or partition in wanted
        }

    def worker_info(self) -> dict:
        """This worker's throughput and the watermark lag of the input partitions it owns."""
        worker = self.worker
        stages = getattr(worker, "stages", {})
        owned = {name: sorted(stage.owned) for name, stage in stages.items()}
        mine = {str(p) for p in owned.get("conversations", ())}
        lags = {}
        for metric in worker.metrics.registry.collect():
            if metric.name == "botstream_watermark_lag_seconds":
                for sample in metric.samples:
                    partition = sample.labels.get("partition")
                    if partition in mine:
                        lags[partition] = round(sample.value, 1)
        return {
            "url": worker.url,
            "ok": True,
            "events_in": int(self.rate.total),
            "events_per_second": round(self.rate.per_second, 1),
            "watermark_lag_s": lags,
            "partitions": owned,
        }

    async def overview(self, month: str, request: web.Request) -> dict:
        """Every figure of the overview, gathered from every partition's owner."""
        worker = self.worker
        partitions = worker.settings.partitions
        summaries = self.local_partitions(month)
        owners = worker.directory.owners()
        by_owner: dict[str, list[int]] = {}
        missing = []
        for partition in range(partitions):
            if partition in summaries:
                continue
            owner = owners.get(partition)
            if owner is None or owner == worker.url:
                missing.append(partition)
            else:
                by_owner.setdefault(owner, []).append(partition)
        # Every worker that owns a partition reports its own throughput and lags.
        peers = sorted(set(owners.values()) - {worker.url})
        answers = await asyncio.gather(
            *(
                self._owner_partitions(owner, wanted, month, request)
                for owner, wanted in by_owner.items()
            ),
            *(self._peer_info(peer, request) for peer in peers),
        )
        owner_answers, peer_answers = answers[: len(by_owner)], answers[len(by_owner) :]
        for wanted, answer in zip(by_owner.values(), owner_answers, strict=True):
            for partition in wanted:
                summary = answer.get(str(partition))
                if summary is None:
                    missing.append(partition)
                else:
                    summaries[partition] = summary
        workers = [self.worker_info(), *peer_answers]
        overview = merge_summaries(summaries.values())
        lags = [lag for info in workers if info["ok"] for lag in info["watermark_lag_s"].values()]
        overview.update(
            month=month,
            generated_at=format_timestamp(self._now_ms()),
            worker=worker.url,
            partitions=partitions,
            missing_partitions=sorted(missing),
            workers=workers,
            events_in=sum(info["events_in"] for info in workers if info["ok"]),
            events_per_second=round(
                sum(info["events_per_second"] for info in workers if info["ok"]), 1
            ),
            watermark_lag_s=max(lags) if lags else None,
            **self._feed_figures(),
        )
        return overview

    def _feed_figures(self) -> dict:
        feeds = self.feeds
        if feeds is None:
            return {"feeds": None, "alerts": [], "alerts_total": 0, "dead_letters": {}}
        return {
            "feeds": {"caught_up": feeds.caught_up, "error": feeds.error},
            "alerts": feeds.recent_alerts(RECENT_ALERTS),
            "alerts_total": feeds.alert_count,
            "dead_letters": dict(feeds.dead_letters.most_common()),
            "dead_letters_total": sum(feeds.dead_letters.values()),
        }

    async def account(self, account_id: str, month: str, request: web.Request) -> dict:
        """An account's figures, from the worker that owns it; raises :class:`Unavailable`."""
        worker = self.worker
        partition, view = worker.owner_of(account_id)
        if view is not None:
            detail = account_detail(view, account_id, month, worker.usage, worker.stats)
        else:
            owner = worker.directory.owner(partition)
            if owner is None or owner == worker.url or request.headers.get(FORWARDED_HEADER):
                raise Unavailable(f"partition {partition} has no owner right now")
            path = "/dashboard/api/account/" + quote(account_id, safe="")
            status, detail = await self._peer_json(owner, path, {"month": month}, request)
            if status != 200:
                raise Unavailable(f"the owner of partition {partition} answered {status}")
        detail["partition"] = partition
        detail["alerts"] = [] if self.feeds is None else self.feeds.alerts_of(account_id)
        return detail

    # -- other workers ---------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
            )
        return self._session

    def _peer_headers(self, request: web.Request) -> dict[str, str]:
        headers = {FORWARDED_HEADER: self.worker.url}
        # Workers share the read API's token: pass on the caller's, or our own.
        token = getattr(self.worker.settings, "api_token", None)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        elif "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return headers

    async def _peer_json(
        self, base: str, path: str, params: dict[str, str], request: web.Request
    ) -> tuple[int, Any]:
        url = URL(base.rstrip("/") + path, encoded=True).with_query(params)
        try:
            async with self._http().get(url, headers=self._peer_headers(request)) as response:
                body = await response.read()
                if response.status != 200:
                    return response.status, None
                return 200, orjson.loads(body)
        except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError) as exc:
            log.warning("dashboard: %s%s did not answer: %s", base, path, exc)
            return 503, None

    async def _owner_partitions(
        self, owner: str, wanted: list[int], month: str, request: web.Request
    ) -> dict[str, dict]:
        params = {"month": month, "partitions": ",".join(map(str, wanted))}
        status, answer = await self._peer_json(owner, "/dashboard/api/partitions", params, request)
        return answer["partitions"] if status == 200 else {}

    async def _peer_info(self, peer: str, request: web.Request) -> dict:
        status, answer = await self._peer_json(peer, "/dashboard/api/worker", {}, request)
        if status != 200:
            return {
                "url": peer,
                "ok": False,
                "events_in": 0,
                "events_per_second": 0.0,
                "watermark_lag_s": {},
                "partitions": {},
            }
        return answer

    # -- handlers --------------------------------------------------------------------------

    def _month(self, request: web.Request) -> str:
        month = request.query.get("month") or month_of(self._now_ms())
        if parse_month(month) is None:
            raise web.HTTPBadRequest(
                text=orjson.dumps({"error": f"month {month[:20]!r} is not YYYY-MM"}).decode(),
                content_type="application/json",
            )
        return month

    async def overview_page(self, request: web.Request) -> web.Response:
        """``GET /``: the overview."""
        month = self._month(request)
        data = await self.overview(month, request)
        return self._html("overview.html", self._overview_context(data, request))

    async def overview_fragment(self, request: web.Request) -> web.Response:
        """The overview's live part (what the page's script fetches)."""
        month = self._month(request)
        data = await self.overview(month, request)
        return self._html("_overview.html", self._overview_context(data, request))

    async def overview_api(self, request: web.Request) -> web.Response:
        """The overview's figures as JSON."""
        return _json(await self.overview(self._month(request), request))

    async def find_account(self, request: web.Request) -> web.Response:
        """``GET /accounts/?account=ID``: the header's account box without JavaScript."""
        account_id = request.query.get("account", "").strip()
        if not account_id:
            raise web.HTTPFound("/")
        month = request.query.get("month")
        raise web.HTTPFound(account_path(account_id) + (f"?month={quote(month)}" if month else ""))

    async def account_page(self, request: web.Request) -> web.Response:
        """``GET /accounts/{account_id}``: one account."""
        return await self._account_html(request, "account.html")

    async def account_fragment(self, request: web.Request) -> web.Response:
        """The account page's live part."""
        return await self._account_html(request, "_account.html")

    async def _account_html(self, request: web.Request, template: str) -> web.Response:
        account_id = request.match_info["account_id"]
        month = self._month(request)
        fragment = "/dashboard/fragment/account/" + quote(account_id, safe="")
        context = self._page_context(request, month, fragment)
        context.update(account_id=account_id, title=f"account {account_id}")
        try:
            context["a"] = await self.account(account_id, month, request)
        except Unavailable as exc:
            context.update(a=None, unavailable=str(exc))
            return self._html(template, context, status=503)
        return self._html(template, context)

    async def account_api(self, request: web.Request) -> web.Response:
        """An account's figures as JSON (forwarded to its owner)."""
        account_id = request.match_info["account_id"]
        try:
            return _json(await self.account(account_id, self._month(request), request))
        except Unavailable as exc:
            return _json({"error": f"{exc}; retry"}, status=503)

    async def partitions_api(self, request: web.Request) -> web.Response:
        """Summaries of the asked partitions that this worker owns (the others are left out)."""
        month = self._month(request)
        try:
            wanted = {int(p) for p in request.query.get("partitions", "").split(",") if p}
        except ValueError:
            return _json({"error": "partitions is a comma-separated list of numbers"}, status=400)
        summaries = self.local_partitions(month, wanted or None)
        return _json({"partitions": {str(p): s for p, s in summaries.items()}})

    async def worker_api(self, request: web.Request) -> web.Response:
        """This worker's events/s and watermark lags."""
        return _json(self.worker_info())

    async def static(self, request: web.Request) -> web.Response:
        """The stylesheet and the script (served from the package, never from elsewhere)."""
        asset = self._assets.get(request.match_info["name"])
        if asset is None:
            raise web.HTTPNotFound()
        body, content_type = asset
        return web.Response(
            body=body,
            content_type=content_type,
            charset="utf-8",
            headers={"Cache-Control": "max-age=86400", "X-Content-Type-Options": "nosniff"},
        )

    # -- rendering -------------------------------------------------------------------------

    def _static_url(self, name: str) -> str:
        return f"/dashboard/static/{name}?v={self._asset_version}"

    def _page_context(self, request: web.Request, month: str, fragment_path: str) -> dict:
        asked = request.query.get("month")
        query = f"?month={month}" if asked else ""
        return {
            "month": month,
            "asked_month": asked,
            "previous_month": adjacent_month(month, -1),
            "next_month": adjacent_month(month, +1),
            "fragment_url": fragment_path + query,
            "refresh_ms": REFRESH_MS,
            "worker_url": self.worker.url,
            "stat_fields": STAT_FIELDS,
        }

    def _overview_context(self, data: dict, request: web.Request) -> dict:
        context = self._page_context(request, data["month"], "/dashboard/fragment/overview")
        context.update(o=data, title="overview")
        return context

    def _html(self, template: str, context: dict, status: int = 200) -> web.Response:
        html = self.templates.get_template(template).render(context)
        return web.Response(
            text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS
        )


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(value),
        content_type="application/json",
        charset="utf-8",
        status=status,
    )


# -- templates -------------------------------------------------------------------------------


def _environment(static_url, warning_percent: int) -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        # Every {{ value }} is HTML-escaped: account ids and every other field of a
        # record came from an event, and the page must show them as text.
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static=static_url, account_path=account_path)
    env.filters.update(
        duration=duration_text,
        number=_number,
        share=_share,
        when=_when,
        bar=lambda record: usage_bar(record, warning_percent),
    )
    return env


def duration_text(seconds: float) -> str:
    """``42 s``, ``17 min``, ``18 h 37 min``, ``3 d 4 h``: a lag a person reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _when(timestamp: str | None) -> str:
    """``2026-11-24T20:15:00.123Z`` -> ``2026-11-24 20:15:00``."""
    return "–" if not timestamp else timestamp[:19].replace("T", " ")


def usage_bar(record: dict, warning_percent: int = 80) -> dict:
    """A used/limit bar: widths in % of the bar, and its state (the colour).

    The bar spans the larger of used and limit, so usage past the limit shows as
    a second part beyond the limit mark.
    """
    used, limit = record["used"], record["limit"]
    scale = max(used, limit, 1)
    if used > limit:
        state = "over"
    elif used >= limit:
        state = "full"
    elif used * 100 >= warning_percent * limit:
        state = "warn"
    else:
        state = "ok"
    return {
        "used": round(100 * min(used, limit) / scale, 2),
        "limit": round(100 * limit / scale, 2),
        "over": round(100 * max(0, used - limit) / scale, 2),
        "state": state,
    }


def add_dashboard(app: Any, worker: Any) -> Dashboard:
    """Serve the dashboard on a Faust app's web server (one call in ``create_app``)."""
    dashboard = Dashboard(worker, CommittedFeeds(worker.settings))
    dashboard.mount(app.web.web_app)
    with contextlib.suppress(AttributeError):
        app.botstream_dashboard = dashboard
    return dashboard
