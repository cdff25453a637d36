"""Real workers behind an API token: reads, forwarding, refusals, the ops command, the logs.

Two ``botstream worker`` processes share the work with ``--api-token`` set
(as ``BOTSTREAM_API_TOKEN``). Every account is read from both, so half the
reads are forwarded to the owner, which must accept the forwarding worker's
token. The events carry a recognisable visitor id and message text, also in
malformed records that become dead letters; the workers run at debug level,
and their logs must hold neither.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest

from botstream.domain.timefmt import format_timestamp, month_of
from botstream.stream.app import account_partition
from tests.integration.harness import log_line, produce

pytestmark = pytest.mark.integration

TOKEN = "integration-api-token-0123456789"
VISITOR = "VISITOR-7d1c-do-not-log"
MESSAGE = "MESSAGE-CONTENT-5e2a-do-not-log"
ACCOUNTS = [f"acc-sec-{n}" for n in range(8)]


async def _get(
    url: str, path: str, token: str | None = None, **params: str
) -> tuple[int, dict | None]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session,
        session.get(url + path, params=params or None, headers=headers) as response,
    ):
        body = await response.read()
        assert response.content_type == "application/json", (path, response.status, body[:200])
        return response.status, orjson.loads(body)


def _events(now_ms: int) -> list[tuple[bytes | None, bytes]]:
    """One billable conversation per account, and malformed records, all holding the secrets."""
    records: list[tuple[bytes | None, bytes]] = []
    for n, account in enumerate(ACCOUNTS):
        conversation = f"c-sec-{n}"
        at = now_ms - 600_000 + n * 1000
        for i, (kind, data) in enumerate(
            [
                ("chatbot.triggered", {"chatbot_id": "bot-1", "text": MESSAGE}),
                ("chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": MESSAGE}),
                ("visitor.message", {"text": MESSAGE}),
                ("visitor.left", None),
            ]
        ):
            event = {
                "event_id": f"e-sec-{n}-{i}",
                "type": kind,
                "occurred_at": format_timestamp(at + i * 100),
                "account_id": account,
                "conversation_id": conversation,
                "visitor_id": VISITOR,
                "data": data,
            }
            records.append((conversation.encode(), orjson.dumps(event)))
    # Dead letters whose raw bytes (and keys) hold the secrets.
    records += [
        (VISITOR.encode(), f'{{"visitor_id": "{VISITOR}", "text": "{MESSAGE}"'.encode()),
        (None, orjson.dumps({"event_id": "x", "type": MESSAGE, "visitor_id": VISITOR})),
        (None, orjson.dumps({"visitor_id": VISITOR * 10, "data": {"text": MESSAGE}})),
    ]
    return records


async def test_workers_behind_a_token(stream_settings, pool, tmp_path) -> None:
    settings = stream_settings
    env = {"BOTSTREAM_API_TOKEN": TOKEN}
    first, second = pool.add("a", env), pool.add("b", env)
    for worker in (first, second):
        worker.args = ["worker", "--log-level", "debug"]
        worker.start()
    owned = await pool.wait_owning([first, second])
    await produce(settings, settings.topics.events, _events(int(time.time() * 1000)))
    month = month_of(int(time.time() * 1000) - 600_000)

    # Every account, from both workers, with the token: one charge each.
    owners = set()
    forwarded = 0
    deadline = time.monotonic() + 60
    for account in ACCOUNTS:
        partition = account_partition(account, settings.partitions)
        owner = "a" if partition in owned["a"]["accounts"] else "b"
        owners.add(owner)
        for worker in (first, second):
            while True:
                status, body = await _get(worker.url, f"/usage/{account}", TOKEN, month=month)
                if status == 200 and body["used"] == 1:
                    break
                assert status in {200, 503}, (worker.name, account, status, body)
                assert time.monotonic() < deadline, f"{account} not charged: {status} {body}"
                await asyncio.sleep(0.3)
            forwarded += worker.name != owner
    assert owners == {"a", "b"}, "reads are forwarded both ways"
    log_line(f"{2 * len(ACCOUNTS)} reads with the token, {forwarded} forwarded")

    account = ACCOUNTS[0]
    for worker in (first, second):
        # No token, a wrong one, an unknown path: 401 before anything else.
        for token in (None, TOKEN[:-1] + "x"):
            for path in (f"/usage/{account}", f"/stats/{account}", "/metrics", "/no/such"):
                status, body = await _get(worker.url, path, token)
                assert status == 401, (worker.name, path, token, body)
        # /health stays open.
        status, body = await _get(worker.url, "/health")
        assert status == 200 and body["status"] == "ok"
        # With the token, bad parameters are refused, as JSON.
        for path, params in (
            (f"/usage/{'x' * 129}", {}),
            ("/usage/a%00b", {}),
            (f"/stats/{account}", {"month": "2026-13"}),
            (f"/usage/{account}", {"month": "٢٠٢٦-١١"}),
        ):
            status, body = await _get(worker.url, path, TOKEN, **params)
            assert status == 400 and "error" in body, (worker.name, path, params, body)
        status, body = await _get(worker.url, "/no/such/path", TOKEN)
        assert status == 404 and "error" in body

    # The ops command sends the token from the environment; without it, one line.
    command = [sys.executable, "-m", "botstream", "usage", account, "--url", second.url]
    command += ["--month", month, "--json"]
    done = subprocess.run(
        command, env=_env(BOTSTREAM_API_TOKEN=TOKEN), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["used"] == 1
    refused = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "needs an API token" in refused.stderr

    # What the workers logged, at debug level, holds no visitor id and no message text.
    for worker in (first, second):
        worker.stop()
    logs = "".join(path.read_text(errors="replace") for w in pool.workers for path in w.log_paths)
    assert "acquired" in logs, "the workers logged nothing of their work"
    for secret in (VISITOR, MESSAGE, "do-not-log"):
        assert secret not in logs, f"{secret} is in the worker logs ({pool.report()})"
    for worker in (first, second):
        assert not worker.errors(), worker.errors()


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without its ``BOTSTREAM_*`` settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    return env | extra
