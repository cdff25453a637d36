"""The web server's front door: API token, parameter checks and JSON errors, without Kafka.

Most tests put the middleware in front of a small aiohttp app whose routes
have the read API's shapes; the last ones use the worker's real Faust app
(:func:`botstream.stream.app.create_app`, never started: no Kafka is needed
to serve a request that the middleware answers, or a read that finds no owner).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from botstream.config import Settings, load_settings
from botstream.errors import ConfigError
from botstream.web import security
from botstream.web.security import TOKEN_COOKIE, forward_headers, security_middleware

TOKEN = "s3cret-token-for-tests_0123456789"
SECRET_IN_ERROR = "v-visitor-4711 said hello"


async def _usage(request: web.Request) -> web.Response:
    return web.json_response(
        {"account_id": request.match_info["account_id"], "month": request.query.get("month")}
    )


async def _broken(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET_IN_ERROR)


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _app(token: str | None) -> web.Application:
    app = web.Application(middlewares=[security_middleware(token)])
    app.router.add_route("GET", "/usage/{account_id}", _usage)
    app.router.add_route("GET", "/broken/{account_id}", _broken)
    app.router.add_route("GET", "/health", _health)
    return app


@pytest.fixture
async def open_api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(_app(None))) as client:
        yield client


@pytest.fixture
async def locked_api() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(_app(TOKEN))) as client:
        yield client


async def _error(response) -> str:
    """The ``error`` of a JSON error answer (and it must be one)."""
    assert response.content_type == "application/json"
    body = orjson.loads(await response.read())
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    return body["error"]


# -- parameters -------------------------------------------------------------------------


async def test_a_good_read_passes_through(open_api: TestClient) -> None:
    response = await open_api.get("/usage/acc-17", params={"month": "2026-11"})
    assert response.status == 200
    assert await response.json() == {"account_id": "acc-17", "month": "2026-11"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "Cache-Control" not in response.headers  # no token: nothing private to keep


@pytest.mark.parametrize(
    "account",
    ["a" * 128, "<script>alert(1)</script>", "acc with spaces", "ünïcødé-账户", "a/b", "%41"],
)
async def test_any_account_id_of_spec_shape_is_served(open_api: TestClient, account: str) -> None:
    # SPEC section 3: an id is any non-empty string of at most 128 characters.
    # Escaping it is the page's job; refusing it would hide a real account.
    response = await open_api.get(f"/usage/{urllib.parse.quote(account, safe='')}")
    assert response.status == 200, await response.text()
    assert (await response.json())["account_id"] == account


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("/usage/" + "a" * 129, 400, "1 to 128 characters"),
        ("/usage/" + "%C3%A9" * 129, 400, "1 to 128 characters"),
        ("/usage/a%00b", 400, "control character (U+0000)"),
        ("/usage/a%0Ab", 400, "control character (U+000A)"),
        ("/usage/a%7F", 400, "control character (U+007F)"),
        ("/usage/a%C2%85", 400, "control character (U+0085)"),
        ("/usage/%FF%FE", 400, "not valid UTF-8"),
        ("/usage/%ED%A0%80", 400, "not valid UTF-8"),  # a lone surrogate, UTF-8 encoded
        ("/usage/%C3", 400, "not valid UTF-8"),  # a truncated sequence
        ("/usage/" + "b" * 1100, 414, "longer than 1024"),
    ],
)
async def test_bad_account_ids_are_refused(
    open_api: TestClient, path: str, status: int, words: str
) -> None:
    response = await open_api.get(path)
    assert response.status == status
    assert words in await _error(response)


@pytest.mark.parametrize(
    "month",
    [
        "2026-13",
        "2026-00",
        "2026-1",
        "26-11",
        "2026-11-01",
        "nov-2026",
        "202611",
        " 2026-11",
        "2026-11 ",
        "٢٠٢٦-١١",  # digits, but not ASCII ones
        "2026–11",  # an en dash
        "",
    ],
)
async def test_a_month_must_be_yyyy_mm(open_api: TestClient, month: str) -> None:
    response = await open_api.get("/usage/acc-17", params={"month": month})
    assert response.status == 400
    assert "YYYY-MM" in await _error(response)


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ("month=2026-01&month=2026-02", 400, "more than once"),
        ("month=%FF", 400, "not valid UTF-8"),
        ("q=%ED%B2%80", 400, "not valid UTF-8"),
        ("q=a%01", 400, "control character"),
        ("q%0D=1", 400, "control character"),
        ("q=" + "x" * 257, 400, "longer than 256"),
        ("q=" + "x" * 7000, 414, "longer than 2048"),
    ],
)
async def test_bad_queries_are_refused(
    open_api: TestClient, query: str, status: int, words: str
) -> None:
    response = await open_api.get(f"/usage/acc-17?{query}")
    assert response.status == status
    assert words in await _error(response)


async def test_other_parameters_within_bounds_pass(open_api: TestClient) -> None:
    # Pages on the same server may have parameters of their own.
    response = await open_api.get("/usage/acc-17", params={"sort": "used", "q": "x" * 256})
    assert response.status == 200


# -- JSON errors ------------------------------------------------------------------------


async def test_unknown_path_is_a_json_404(open_api: TestClient) -> None:
    response = await open_api.get("/nothing/here")
    assert response.status == 404
    assert "no such path" in await _error(response)


async def test_wrong_method_is_a_json_405(open_api: TestClient) -> None:
    response = await open_api.post("/usage/acc-17", data=b"{}")
    assert response.status == 405
    assert "POST is not allowed" in await _error(response)
    assert "GET" in response.headers["Allow"]


async def test_an_exception_in_a_view_is_a_json_500_without_details(
    open_api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger=security.__name__):
        response = await open_api.get("/broken/acc-17")
    assert response.status == 500
    error = await _error(response)
    assert "internal error" in error
    body = (await response.read()).decode()
    for leak in (SECRET_IN_ERROR, "Traceback", "RuntimeError", "acc-17"):
        assert leak not in body
    # The log names the route and the type, never the message or the account.
    logged = caplog.text
    assert "/broken/{account_id}" in logged and "RuntimeError" in logged
    assert SECRET_IN_ERROR not in logged and "acc-17" not in logged


# -- the token --------------------------------------------------------------------------


async def test_no_token_no_read(locked_api: TestClient) -> None:
    response = await locked_api.get("/usage/acc-17")
    assert response.status == 401
    assert "API token" in await _error(response)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "authorization",
    [
        f"Bearer {TOKEN[:-1]}",
        f"Bearer {TOKEN}x",
        f"Basic {TOKEN}",
        TOKEN,
        "Bearer ",
        f"Bearer {TOKEN.upper()}",
    ],
)
async def test_a_wrong_token_is_refused(locked_api: TestClient, authorization: str) -> None:
    response = await locked_api.get("/usage/acc-17", headers={"Authorization": authorization})
    assert response.status == 401


async def test_the_bearer_token_opens_it(locked_api: TestClient) -> None:
    response = await locked_api.get(
        "/usage/acc-17", params={"month": "2026-11"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status == 200
    assert (await response.json())["account_id"] == "acc-17"
    assert response.headers["Cache-Control"] == "no-store"
    assert TOKEN_COOKIE not in response.cookies  # programs get no cookie


async def test_health_stays_open(locked_api: TestClient) -> None:
    response = await locked_api.get("/health")
    assert response.status == 200


async def test_unknown_paths_are_hidden_behind_the_token(locked_api: TestClient) -> None:
    # Without the token nobody learns which paths exist, nor their parameters' rules.
    assert (await locked_api.get("/nothing/here")).status == 401
    assert (await locked_api.get("/usage/a%00b")).status == 401
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    assert (await locked_api.get("/nothing/here", headers=authorized)).status == 404
    assert (await locked_api.get("/usage/a%00b", headers=authorized)).status == 400


async def test_a_browser_trades_the_query_token_for_a_cookie(locked_api: TestClient) -> None:
    response = await locked_api.get(
        "/usage/acc-17",
        params={"month": "2026-11", "token": TOKEN},
        headers={"Accept": "text/html,application/xhtml+xml"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == "/usage/acc-17?month=2026-11"
    cookie = response.cookies[TOKEN_COOKIE]
    assert cookie.value == TOKEN
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    # The cookie alone opens the next pages.
    follow = await locked_api.get("/usage/acc-17?month=2026-11")
    assert follow.status == 200


async def test_a_program_may_use_the_query_token(locked_api: TestClient) -> None:
    response = await locked_api.get("/usage/acc-17", params={"token": TOKEN})
    assert response.status == 200
    assert response.cookies[TOKEN_COOKIE].value == TOKEN


async def test_a_wrong_cookie_is_refused() -> None:
    async with TestClient(TestServer(_app(TOKEN))) as client:
        client.session.cookie_jar.update_cookies({TOKEN_COOKIE: "not-the-token-0123456789"})
        assert (await client.get("/usage/acc-17")).status == 401
        # A right query token gets past a stale cookie, and replaces it.
        response = await client.get("/usage/acc-17", params={"token": TOKEN})
        assert response.status == 200
        assert (await client.get("/usage/acc-17")).status == 200


async def test_the_token_is_compared_in_constant_time(
    locked_api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = security.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    response = await locked_api.get("/usage/acc-17", headers={"Authorization": "Bearer short"})
    assert response.status == 401
    # Digests of equal length, so that neither content nor length shows in the time taken.
    assert compared and all(len(a) == len(b) == 32 for a, b in compared)


def test_forwarding_carries_the_token() -> None:
    assert forward_headers(Settings(api_token=TOKEN)) == {"Authorization": f"Bearer {TOKEN}"}
    assert forward_headers(Settings()) == {}


# -- settings ---------------------------------------------------------------------------


def test_the_token_setting() -> None:
    assert load_settings(env={}).api_token is None
    assert load_settings(env={"BOTSTREAM_API_TOKEN": TOKEN}).api_token == TOKEN
    flag = load_settings(env={}, overrides={"BOTSTREAM_API_TOKEN": TOKEN})
    assert flag.api_token == TOKEN


@pytest.mark.parametrize(
    "token", ["", "short", "x" * 15, "has space in it 0123", 'quote"d-0123456789', "é" * 20]
)
def test_a_weak_or_unsafe_token_is_a_config_error(token: str) -> None:
    with pytest.raises(ConfigError, match="BOTSTREAM_API_TOKEN"):
        load_settings(env={"BOTSTREAM_API_TOKEN": token})


# -- the worker's own app ---------------------------------------------------------------


@pytest.fixture
async def worker_api(request: pytest.FixtureRequest) -> AsyncIterator[TestClient]:
    """The web server of a real (never started) worker app, with or without a token."""
    from botstream.stream.app import create_app

    token = getattr(request, "param", None)
    settings = Settings(api_token=token, app_id="security-unit-test")
    app = create_app(settings)
    app.web.init_server()
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield client


def test_the_worker_listens_on_loopback_by_default() -> None:
    from botstream.stream.app import create_app

    app = create_app(Settings(app_id="security-unit-test"))
    assert app.conf.web_bind == "127.0.0.1"
    everywhere = create_app(Settings(app_id="security-unit-test", web_host="0.0.0.0"))
    assert everywhere.conf.web_bind == "0.0.0.0"  # only when asked for


async def test_the_worker_app_checks_its_reads(worker_api: TestClient) -> None:
    for path, status in (
        ("/usage/a%00b", 400),
        ("/stats/" + "a" * 129, 400),
        ("/usage/acc-17?month=2026-13", 400),
        ("/no/such/path", 404),
    ):
        response = await worker_api.get(path)
        assert response.status == status, path
        await _error(response)
    response = await worker_api.post("/usage/acc-17")
    assert response.status == 405
    await _error(response)
    # A good read that no worker can answer yet (nothing runs): a JSON 503.
    response = await worker_api.get("/usage/acc-17?month=2026-11")
    assert response.status == 503
    await _error(response)


@pytest.mark.parametrize("worker_api", [TOKEN], indirect=True)
async def test_the_worker_app_wants_its_token(worker_api: TestClient) -> None:
    assert (await worker_api.get("/health")).status in {200, 503}  # open, whatever it says
    for path in ("/usage/acc-17", "/stats/acc-17", "/metrics", "/router/", "/no/such/path"):
        response = await worker_api.get(path)
        assert response.status == 401, path
        await _error(response)
    response = await worker_api.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    assert "botstream_events_in_total" in await response.text()


async def test_an_unparsable_request_is_one_log_line(
    worker_api: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    # Too long for aiohttp's parser: answered before any middleware, by aiohttp.
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        response = await worker_api.get("/usage/" + "q" * 9000)
    assert response.status == 400
    assert "Traceback" not in caplog.text and "qqqq" not in caplog.text
    assert "refused a malformed HTTP request (LineTooLong, status 400)" in caplog.text
