"""The front door of a worker's web server: API token, parameter checks, JSON errors.

:func:`install_security` adds one aiohttp middleware to the Faust app's web
server, so it covers every route: the read API, the dashboard pages, Faust's
own views, and paths that match nothing. For each request it

1. checks the API token when one is configured (``--api-token``,
   ``BOTSTREAM_API_TOKEN``), except for :data:`OPEN_PATHS`. The token may come
   as ``Authorization: Bearer TOKEN`` (programs, and workers forwarding a read
   to the owner), as the ``botstream_token`` cookie (browsers), or as
   ``?token=TOKEN``, which also sets that cookie (HttpOnly, SameSite=Strict),
   and sends a browser on to the same address without the token. Tokens are
   compared in constant time, on their SHA-256 digests, so that neither the
   content nor the length leaks through timing;
2. checks the path and the query before any view sees them: valid UTF-8
   after percent-decoding, no control characters, bounded lengths, an
   ``account_id`` of 1 to 128 characters (SPEC section 3), a ``month`` that is
   ``YYYY-MM``, no parameter given twice;
3. turns every error into a JSON body ``{"error": "..."}`` with the right
   status: 401, 400, 404 for unknown paths, 405 for wrong methods, and 500
   for an exception inside a view, whose details go to the log (the type and
   the route, never the request's values), not to the client.

It also adds ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
``Referrer-Policy: no-referrer`` and, when a token is required,
``Cache-Control: no-store`` to every answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import re
import unicodedata
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from botstream.config import Settings

log = logging.getLogger(__name__)

#: Paths anyone may read without the token: liveness for load balancers and
#: supervisors. /health says which partitions a worker owns, nothing about accounts.
OPEN_PATHS = frozenset({"/health"})
#: The cookie a browser keeps the token in, and the query parameter that sets it.
TOKEN_COOKIE = "botstream_token"
TOKEN_PARAMETER = "token"
#: SPEC section 3: ids are at most 128 characters.
MAX_ID_LENGTH = 128
#: Bounds of the rest of a request line (characters, after percent-decoding).
MAX_PATH_LENGTH = 1024
MAX_QUERY_LENGTH = 2048
MAX_PARAMETER_LENGTH = 256

_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestRefused(Exception):
    """A request the middleware answers itself, with ``status`` and a JSON error."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def install_security(app: Any, settings: Settings) -> None:
    """Put the security middleware in front of every route of a Faust app's web server."""
    app.web.web_app.middlewares.append(security_middleware(settings.api_token))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
    if not settings.api_token and settings.web_host not in {"127.0.0.1", "::1", "localhost"}:
        log.warning(
            "the read API listens on %s without an API token: anyone who reaches it can "
            "read every account's usage (set --api-token or BOTSTREAM_API_TOKEN)",
            settings.web_host,
        )


class MalformedRequestFilter(logging.Filter):
    """One log line, not a traceback, for a request aiohttp cannot parse.

    Such requests (a request line over 8 KB, bytes that are not HTTP) never
    reach the middleware; aiohttp answers them with a plain 400 and logs the
    error with its traceback, which quotes the request's bytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite aiohttp's record of a parse error; let every other record through."""
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg = "refused a malformed HTTP request (%s, status %s)"
            record.args = (type(error).__name__, error.code)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def forward_headers(settings: Settings) -> dict[str, str]:
    """Headers that let one worker's request through another's middleware (the token)."""
    return {"Authorization": f"Bearer {settings.api_token}"} if settings.api_token else {}


def json_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    """An error answer: ``{"error": message}`` with ``status``."""
    return web.Response(
        body=orjson.dumps({"error": message}),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def security_middleware(token: str | None) -> Callable[[web.Request, Handler], Awaitable[Any]]:
    """The aiohttp middleware (see the module docstring); ``token`` None: no token needed."""
    expected = _digest(token) if token else None

    @web.middleware
    async def botstream_security(request: web.Request, handler: Handler) -> web.StreamResponse:
        set_cookie = False
        try:
            if expected is not None and request.path not in OPEN_PATHS:
                set_cookie = _authorize(request, expected)
            check_parameters(request)
            if set_cookie and _wants_page(request):
                response = web.Response(status=303, headers={"Location": _without_token(request)})
            else:
                response = await handler(request)
        except RequestRefused as refused:
            response = json_error(refused.status, refused.message, refused.headers)
        except web.HTTPException as exc:
            if exc.status < 400:  # a view's redirect
                raise
            response = json_error(exc.status, _http_error_message(exc, request), _allow(exc))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            route = request.match_info.route.resource
            pattern = route.canonical if route is not None else "(no route)"
            # The type and the route only: messages and values may hold account data.
            log.error("read API: %s %s failed with %s", request.method, pattern, type(exc).__name__)
            log.debug("read API failure", exc_info=True)
            response = json_error(500, "internal error; the worker's log says where")
        if set_cookie and token:
            response.set_cookie(
                TOKEN_COOKIE,
                token,
                httponly=True,
                samesite="Strict",
                secure=request.secure,
                path="/",
            )
        _harden(response, token_required=expected is not None)
        return response

    return botstream_security


# -- the token ------------------------------------------------------------------------


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def tokens_match(given: str, expected_digest: bytes) -> bool:
    """Whether ``given`` is the token whose digest is ``expected_digest``, in constant time."""
    return hmac.compare_digest(_digest(given), expected_digest)


def _authorize(request: web.Request, expected: bytes) -> bool:
    """Pass a request that carries the token; return whether it came as ``?token=``."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and tokens_match(credentials.strip(), expected):
        return False
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie is not None and tokens_match(cookie, expected):
        return False
    given = request.query.getall(TOKEN_PARAMETER, [])
    if len(given) == 1 and tokens_match(given[0], expected):
        return True
    raise RequestRefused(
        401,
        "this worker needs the API token: Authorization: Bearer TOKEN, or ?token=TOKEN "
        "in a browser",
        {"WWW-Authenticate": 'Bearer realm="botstream"'},
    )


def _wants_page(request: web.Request) -> bool:
    """A browser navigating (GET for HTML): send it on without the token in its address bar."""
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


def _without_token(request: web.Request) -> str:
    query = [(k, v) for k, v in request.query.items() if k != TOKEN_PARAMETER]
    return request.path + ("?" + urllib.parse.urlencode(query) if query else "")


# -- parameters -----------------------------------------------------------------------


def check_parameters(request: web.Request) -> None:
    """Refuse (400, 414) a path or query that no view should have to look at."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    if len(raw_path) > 3 * MAX_PATH_LENGTH or len(request.path) > MAX_PATH_LENGTH:
        raise RequestRefused(414, f"the path is longer than {MAX_PATH_LENGTH} characters")
    for segment in raw_path.split("/"):
        _decoded(segment, "the path")
    if len(raw_query) > 3 * MAX_QUERY_LENGTH:
        raise RequestRefused(414, f"the query is longer than {MAX_QUERY_LENGTH} characters")
    seen: set[str] = set()
    for pair in filter(None, raw_query.split("&")):
        raw_name, _, raw_value = pair.partition("=")
        name = _decoded(raw_name.replace("+", " "), "a query parameter name")
        value = _decoded(raw_value.replace("+", " "), f"query parameter {name[:32]!r}")
        _check_text(name, "a query parameter name", MAX_PARAMETER_LENGTH)
        _check_text(value, f"query parameter {name[:32]!r}", MAX_PARAMETER_LENGTH)
        if name in seen:
            raise RequestRefused(400, f"query parameter {name[:32]!r} is given more than once")
        seen.add(name)
        if name == "month" and not _MONTH.fullmatch(value):
            raise RequestRefused(400, f"month {value[:16]!r} is not a month, YYYY-MM")
    for name, value in request.match_info.items():
        if name == "account_id":
            if not 1 <= len(value) <= MAX_ID_LENGTH:
                raise RequestRefused(
                    400, f"an account id has 1 to {MAX_ID_LENGTH} characters, not {len(value)}"
                )
            _check_text(value, "the account id", MAX_ID_LENGTH)
        else:
            _check_text(value, f"path parameter {name!r}", MAX_PARAMETER_LENGTH)


def _decoded(raw: str, what: str) -> str:
    """Percent-decode ``raw`` strictly: invalid UTF-8 (a lone surrogate, say) is refused."""
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRefused(400, f"{what} is not valid UTF-8 once percent-decoded") from None


def _check_text(value: str, what: str, max_length: int) -> None:
    if len(value) > max_length:
        raise RequestRefused(400, f"{what} is longer than {max_length} characters")
    for char in value:
        if unicodedata.category(char) in {"Cc", "Cs"}:
            raise RequestRefused(400, f"{what} holds a control character (U+{ord(char):04X})")


# -- answers --------------------------------------------------------------------------


def _http_error_message(exc: web.HTTPException, request: web.Request) -> str:
    if exc.status == 404:
        return "no such path (the read API: /usage/ACCOUNT, /stats/ACCOUNT, /health, /metrics)"
    if exc.status == 405:
        return f"{request.method[:16]} is not allowed here"
    return exc.reason or "request refused"


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


def _harden(response: web.StreamResponse, *, token_required: bool) -> None:
    if response.prepared:  # a streamed answer has sent its headers already
        return
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if token_required:
        headers.setdefault("Cache-Control", "no-store")
