"""``botstream usage``, ``stats`` and ``alerts`` without Kafka: arguments, rendering, HTTP client.

The read API is played by a tiny local HTTP server whose answers each test
scripts (status, body, delay), so every failure a worker can produce is
covered: refused connection, 503 then success, 503 for good, 400, 404, 500,
a body that is not JSON, and no answer in time.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from botstream.cli import main
from botstream.commands import ops
from botstream.errors import BotstreamError
from botstream.kafka.local_broker import free_port

USAGE = {
    "account_id": "acc-17",
    "month": "2026-11",
    "plan": "pro",
    "chatbot_pack": True,
    "limit": 10000,
    "used": 8001,
    "remaining": 1999,
    "over_limit": 0,
    "updated_at": "2026-11-24T20:15:00.123Z",
}
OVER = USAGE | {
    "plan": "standard",
    "chatbot_pack": False,
    "limit": 100,
    "used": 103,
    "remaining": 0,
    "over_limit": 3,
}
STATS = {
    "account_id": "acc-17",
    "month": "2026-11",
    "resolved_by_chatbot": 6,
    "transferred_to_agent": 3,
    "unengaged": 1,
    "no_chatbot": 0,
}
ALERT = {
    "alert_id": "acc-17:2026-11:quota.limit_reached:500",
    "kind": "quota.limit_reached",
    "account_id": "acc-17",
    "month": "2026-11",
    "used": 500,
    "limit": 500,
    "conversation_id": "c-9a1",
    "at": "2026-11-24T20:15:00.123Z",
}


# -- a scripted read API ----------------------------------------------------------------


@dataclass
class Stub:
    """Answers to give, in order, per path (the last one repeats), and requests seen."""

    url: str
    answers: dict[str, list[tuple[int, bytes, float]]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def answer(self, path: str, *answers: tuple[int, object] | tuple[int, object, float]) -> None:
        """Script the answers to ``GET path`` (any query): ``(status, body[, delay_s])``."""
        self.answers[path] = [
            (a[0], a[1] if isinstance(a[1], bytes) else json.dumps(a[1]).encode(), (*a, 0.0)[2])
            for a in answers
        ]


@pytest.fixture
def stub() -> Iterator[Stub]:
    """A local HTTP server playing a worker's read API."""
    state = Stub(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            script = state.answers.get(self.path.split("?")[0])
            status, body, delay = (
                (404, b"not here", 0.0)
                if not script
                else (script.pop(0) if len(script) > 1 else script[0])
            )
            time.sleep(delay)
            with contextlib.suppress(OSError):  # the client may have given up
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """No real pauses between 503 retries; no BOTSTREAM_* from the developer's shell."""
    monkeypatch.setattr(ops, "RETRY_PAUSE_S", 0.01)
    for name in ("BOTSTREAM_WEB_URL", "BOTSTREAM_WEB_HOST", "BOTSTREAM_WEB_PORT"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``botstream ARGV`` in process: ``(status, stdout, stderr)``."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


# -- arguments and help ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["usage", "stats", "alerts"])
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert f"botstream {command}" in out.split("examples:")[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["usage"], "the following arguments are required: ACCOUNT"),
        (["stats"], "the following arguments are required: ACCOUNT"),
        (["usage", "acc-1", "--bogus"], "unrecognized arguments: --bogus"),
        (["alerts", "--follw"], "unrecognized arguments: --follw"),
    ],
)
def test_argument_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("month", ["2026-13", "2026-1", "nov", "2026-11-01", "1969-12", "202611"])
@pytest.mark.parametrize("command", ["usage", "stats"])
def test_bad_month_fails_before_any_request(
    command: str, month: str, stub: Stub, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, command, "acc-1", "--month", month, "--url", stub.url)
    assert status == 2
    assert err == f"botstream: --month {month!r} is not a month, YYYY-MM (example: 2026-11)\n"
    assert out == "" and stub.requests == []


@pytest.mark.parametrize("url", ["ftp://host:6066", "127.0.0.1:6066", "http://"])
def test_bad_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "usage", "acc-1", "--url", url)
    assert status == 2
    assert err == f"botstream: --url {url!r} is not an http:// or https:// URL\n"


def test_empty_account(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "usage", " ", "--url", stub.url)
    assert (status, err) == (2, "botstream: ACCOUNT must not be empty\n")


# -- rendering ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [
        (0, 100, "░" * 20),
        (50, 100, "█" * 10 + "░" * 10),
        (100, 100, "█" * 20),
        (250, 100, "█" * 20),
        (1, 1000, "░" * 20),
        (3, 0, "█" * 20),
        (0, 0, "░" * 20),
    ],
)
def test_bar(value: int, total: int, expected: str) -> None:
    assert ops.bar(value, total) == expected


def test_render_usage() -> None:
    lines = ops.render_usage(USAGE).plain.splitlines()
    assert lines == [
        "acc-17  2026-11  plan pro + chatbot pack",
        f"  used        8,001 of 10,000  {'█' * 16}{'░' * 4}  80%",
        "  remaining   1,999",
        "  over limit  0",
        "  updated at  2026-11-24T20:15:00.123Z",
    ]


def test_render_usage_over_limit_is_red() -> None:
    text = ops.render_usage(OVER)
    assert "plan standard, no chatbot pack" in text.plain
    assert f"used        103 of 100  {'█' * 20}  103%" in text.plain
    assert "over limit  3" in text.plain
    assert {str(span.style) for span in text.spans} >= {"bold red"}
    assert "green" in {str(s.style) for s in ops.render_usage(USAGE | {"used": 10}).spans}


def test_render_usage_of_zero_limit() -> None:
    record = USAGE | {"limit": 0, "used": 0, "remaining": 0}
    assert "used        0 of 0  " + "░" * 20 + "  —" in ops.render_usage(record).plain


def test_render_stats_shares() -> None:
    lines = ops.render_stats(STATS).plain.splitlines()
    assert lines[0] == "acc-17  2026-11  conversations by outcome (by the month they started)"
    assert lines[1] == f"  resolved_by_chatbot    6   60.0%  {'█' * 12}{'░' * 8}"
    assert lines[2].startswith("  transferred_to_agent   3   30.0%  ")
    assert lines[3].startswith("  unengaged              1   10.0%  ")
    assert lines[4].startswith("  no_chatbot             0    0.0%  ")
    assert lines[5] == "  total                 10"


def test_render_stats_without_conversations() -> None:
    record = STATS | dict.fromkeys(("resolved_by_chatbot", "transferred_to_agent", "unengaged"), 0)
    lines = ops.render_stats(record).plain.splitlines()
    assert lines[1] == f"  resolved_by_chatbot   0       —  {'░' * 20}"
    assert lines[-1] == "  total                 0"


def test_render_alert_is_one_line() -> None:
    assert ops.render_alert(ALERT).plain == (
        "2026-11-24T20:15:00.123Z  quota.limit_reached  acc-17        2026-11  500/500  c-9a1"
    )
    warning = ops.render_alert(ALERT | {"kind": "quota.warning"}).plain
    assert warning.startswith("2026-11-24T20:15:00.123Z  quota.warning        acc-17")


# -- the HTTP client against a scripted worker ----------------------------------------


def test_usage_view(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("/usage/acc-17", (200, USAGE))
    status, out, err = run(capsys, "usage", "acc-17", "--month", "2026-11", "--url", stub.url)
    assert (status, err) == (0, "")
    assert stub.requests == ["/usage/acc-17?month=2026-11"]
    assert out.splitlines() == ops.render_usage(USAGE).plain.splitlines()
    assert "\x1b[" not in out  # not a terminal: no colour codes


def test_usage_json_and_default_month(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("/usage/acc-17", (200, USAGE))
    status, out, _ = run(capsys, "usage", "acc-17", "--url", stub.url + "/", "--json")
    assert status == 0
    assert json.loads(out) == USAGE and out.count("\n") == 1
    assert stub.requests == ["/usage/acc-17"]  # the worker picks the current month


def test_stats_view_and_json(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("/stats/acc-17", (200, STATS))
    status, out, _ = run(capsys, "stats", "acc-17", "--month", "2026-11", "--url", stub.url)
    assert status == 0
    assert out.splitlines() == ops.render_stats(STATS).plain.splitlines()
    status, out, _ = run(capsys, "stats", "acc-17", "--url", stub.url, "--json")
    assert (status, json.loads(out)) == (0, STATS)


def test_account_is_quoted(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("/usage/acc%2F1%20x", (200, USAGE))
    status, _, _ = run(capsys, "usage", "acc/1 x", "--url", stub.url, "--json")
    assert status == 0
    assert stub.requests == ["/usage/acc%2F1%20x"]


def test_url_from_the_environment(
    stub: Stub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.answer("/usage/acc-17", (200, USAGE))
    monkeypatch.setenv("BOTSTREAM_WEB_URL", stub.url)
    assert run(capsys, "usage", "acc-17", "--json")[0] == 0
    monkeypatch.delenv("BOTSTREAM_WEB_URL")
    monkeypatch.setenv("BOTSTREAM_WEB_PORT", stub.url.rsplit(":", 1)[1])
    assert run(capsys, "usage", "acc-17", "--json")[0] == 0
    assert len(stub.requests) == 2


def test_default_url_is_the_settings_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from botstream.commands.common import settings_from_args

    args = main.__globals__["build_parser"]().parse_args(["usage", "acc-1"])
    assert ops.worker_url(args, settings_from_args(args)) == "http://127.0.0.1:6066"


def test_503_is_retried(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    busy = {"error": "partition 2 has no owner right now; retry"}
    stub.answer("/usage/acc-17", (503, busy), (503, busy), (200, USAGE))
    status, out, _ = run(capsys, "usage", "acc-17", "--url", stub.url, "--json")
    assert (status, json.loads(out)) == (0, USAGE)
    assert len(stub.requests) == 3


def test_503_for_good(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    stub.answer("/stats/acc-17", (503, {"error": "partition 2 has no owner right now; retry"}))
    status, out, err = run(capsys, "stats", "acc-17", "--url", stub.url)
    assert (status, out) == (2, "")
    assert err == (
        f"botstream: the worker at {stub.url} cannot answer yet (partition 2 has no owner "
        "right now; retry); workers are starting or rebalancing, retry in a few seconds\n"
    )
    assert len(stub.requests) == ops.RETRIES_ON_503 + 1


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (400, {"error": "month '2026-13' is not YYYY-MM"}, "refused the request: month"),
        (500, b"Internal Server Error\nstack", "answered HTTP 500: Internal Server Error"),
        (502, b"", "answered HTTP 502\n"),
        (200, b"<html>", "with something not JSON"),
        (200, b"[1, 2]", "with something not JSON"),
    ],
)
def test_http_errors_are_one_line(
    stub: Stub, capsys: pytest.CaptureFixture[str], status: int, body: object, message: str
) -> None:
    stub.answer("/usage/acc-17", (status, body))
    code, out, err = run(capsys, "usage", "acc-17", "--url", stub.url)
    assert (code, out) == (2, "")
    assert err.startswith("botstream: ") and err.count("\n") == 1
    assert message in err
    assert len(stub.requests) == 1  # only a 503 is retried


def test_not_a_worker(stub: Stub, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "usage", "acc-17", "--url", stub.url)
    assert code == 2
    assert err == (
        f"botstream: {stub.url}/usage/acc-17: HTTP 404 (is {stub.url} a botstream "
        "worker's read API?)\n"
    )


def test_no_worker_listening(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(capsys, "usage", "acc-17", "--url", url)
    assert (code, out) == (2, "")
    assert err == (
        f"botstream: no botstream worker answers at {url} (connection refused); "
        "start one with: botstream worker\n"
    )


def test_worker_too_slow(stub: Stub) -> None:
    stub.answer("/usage/acc-17", (200, USAGE, 1.0))
    with pytest.raises(BotstreamError, match=r"did not answer within 0.2 s"):
        ops.fetch_json(stub.url, "/usage/acc-17", timeout_s=0.2)


# -- alerts without a broker ----------------------------------------------------------


def test_alerts_without_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    code, out, err = run(capsys, "alerts", "--bootstrap", bootstrap)
    assert (code, out) == (2, "")
    assert err == (
        f"botstream: cannot reach Kafka at {bootstrap} (connection failed); "
        "start one with `botstream kafka start` or set --bootstrap\n"
    )
    assert time.monotonic() - began < 10


def test_alerts_bad_security_setting(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "alerts", "--security-protocol", "TLS")
    assert code == 2
    assert err.startswith("botstream: BOTSTREAM_SECURITY_PROTOCOL: 'TLS' is not one of")
