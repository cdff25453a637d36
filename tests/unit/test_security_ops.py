"""``botstream usage`` and ``stats`` against a worker that wants an API token (no Kafka).

A tiny local HTTP server plays the worker: it answers 401 unless the request
carries ``Authorization: Bearer TOKEN``, as a worker started with
``--api-token`` does, and keeps the headers it saw.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from botstream.cli import main
from botstream.kafka.local_broker import free_port

TOKEN = "ops-token-0123456789abcdef"
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


@pytest.fixture
def worker() -> Iterator[tuple[str, list[str | None]]]:
    """``(url, Authorization headers seen)`` of a token-protected stub worker."""
    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            given = self.headers.get("Authorization")
            seen.append(given)
            if given == f"Bearer {TOKEN}":
                status, body = 200, USAGE
            else:
                status, body = 401, {"error": "this worker needs the API token"}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", ["usage", "stats"])
def test_the_token_comes_from_the_environment(
    worker, command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = worker
    monkeypatch.setenv("BOTSTREAM_API_TOKEN", TOKEN)
    assert main([command, "acc-17", "--url", url, "--json"]) == 0
    assert seen == [f"Bearer {TOKEN}"]
    assert json.loads(capsys.readouterr().out) == USAGE


def test_the_token_flag_wins_over_the_environment(
    worker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = worker
    monkeypatch.setenv("BOTSTREAM_API_TOKEN", "an-older-token-000000")
    assert main(["usage", "acc-17", "--url", url, "--api-token", TOKEN, "--json"]) == 0
    assert seen == [f"Bearer {TOKEN}"]


def test_no_token_is_one_line(
    worker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = worker
    monkeypatch.delenv("BOTSTREAM_API_TOKEN", raising=False)
    assert main(["usage", "acc-17", "--url", url]) == 2
    err = capsys.readouterr().err
    assert seen == [None]  # nothing sent when there is nothing to send
    assert err.count("\n") == 1 and "needs an API token: set BOTSTREAM_API_TOKEN" in err


def test_a_refused_token_is_one_line(
    worker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = worker
    monkeypatch.setenv("BOTSTREAM_API_TOKEN", "not-the-right-token-000")
    assert main(["stats", "acc-17", "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused the API token" in err


def test_a_malformed_token_fails_before_any_request(
    worker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = worker
    monkeypatch.setenv("BOTSTREAM_API_TOKEN", "short")
    assert main(["usage", "acc-17", "--url", url]) == 2
    assert seen == []
    assert "--api-token (BOTSTREAM_API_TOKEN)" in capsys.readouterr().err
