"""`botstream usage`, `stats` and `alerts` against a real worker and broker.

One worker processes a simulated log of 4,000 records once for the whole
module (12 accounts, low limits so that several go over them, a month
boundary, alerts); the commands'
answers must be what `botstream replay` computes from the same log, and what
the worker committed. The alert-following tests use topics of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from botstream.cli import main
from botstream.commands import ops
from botstream.config import Settings
from botstream.domain.timefmt import month_of
from botstream.errors import BotstreamError
from botstream.kafka.topics import kafka_client_kwargs
from tests.integration.harness import (
    PYTHON,
    SettledRun,
    WorkerPool,
    isolated_settings,
    log_line,
    settings_env,
    settled_run,
    stable_limit_months,
)

pytestmark = pytest.mark.integration

#: The installed console script, as a user runs it (else the module).
BOTSTREAM = (
    [str(Path(PYTHON).parent / "botstream")]
    if (Path(PYTHON).parent / "botstream").exists()
    else [PYTHON, "-m", "botstream"]
)


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SettledRun]:
    """One worker that processed a 4,000-record log, for every test of the module."""
    directory = tmp_path_factory.mktemp("ops")
    settings = asyncio.run(isolated_settings(kafka_bootstrap))
    pool = WorkerPool(settings, directory / "workers")
    try:
        run = asyncio.run(
            settled_run(
                settings,
                directory,
                pool,
                count=4_000,
                seed=23,
                accounts=12,
                plan_limits="standard=5/15,pro=10/40",
            )
        )
        log_line(
            f"ops: {len(run.replay.usage)} usage keys, {len(run.replay.stats)} stats records, "
            f"{len(run.alerts)} alerts"
        )
        yield run
        assert not run.worker.errors(), run.worker.errors()
    finally:
        pool.close()


def command_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `botstream` subprocess on ``settings``' broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    return env | settings_env(settings) | extra


def botstream(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the `botstream` command, output as text."""
    return subprocess.run(
        [*BOTSTREAM, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`botstream ARGV` in this process: ``(status, stdout, stderr)``."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def on_live(live: SettledRun, monkeypatch: pytest.MonkeyPatch) -> SettledRun:
    """``live``, with this process's BOTSTREAM_* variables pointing at its broker and topics."""
    for name in list(os.environ):
        if name.startswith("BOTSTREAM_"):
            monkeypatch.delenv(name)
    for name, value in settings_env(live.settings).items():
        monkeypatch.setenv(name, value)
    return live


# -- usage ------------------------------------------------------------------------------


def test_usage_json_is_the_replay_usage(on_live: SettledRun, capsys) -> None:
    replay, url = on_live.replay, on_live.worker.url
    assert any(u["over_limit"] > 0 for u in replay.usage.values()), "no account over its limit"
    for (account, month), want in sorted(replay.usage.items()):
        status, out, err = cli(capsys, "usage", account, "--month", month, "--url", url, "--json")
        assert (status, err) == (0, ""), f"usage {account} {month}"
        answer = json.loads(out)
        forecast = answer.pop("forecast")  # the read API adds it to the record
        assert answer == want
        assert (forecast["status"] == "reached") == (want["used"] >= forecast["limit"])
    # A month without charges, within the kept history: used 0 (README).
    account = next(iter(replay.usage))[0]
    quiet_month = month_of(int((time.time() - 180 * 86_400) * 1000))  # before the log
    status, out, _ = cli(capsys, "usage", account, "--month", quiet_month, "--url", url, "--json")
    assert status == 0
    assert json.loads(out)["used"] == 0 and json.loads(out)["month"] == quiet_month
    # A month older than the kept history: a one-line error, not a zero.
    status, out, err = cli(capsys, "usage", account, "--month", "2020-01", "--url", url, "--json")
    assert (status, out) == (2, "")
    assert "410" in err and "2020-01" in err and len(err.strip().splitlines()) == 1


def test_usage_view_from_the_console_script(live: SettledRun) -> None:
    replay = live.replay
    (account, month), want = max(replay.usage.items(), key=lambda item: item[1]["over_limit"])
    # No --url: BOTSTREAM_WEB_URL says where the worker is.
    result = botstream(
        "usage",
        account,
        "--month",
        month,
        env=command_env(live.settings, BOTSTREAM_WEB_URL=live.worker.url),
    )
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    pack = " + chatbot pack" if want["chatbot_pack"] else ", no chatbot pack"
    assert lines[0] == f"{account}  {month}  plan {want['plan']}{pack}"
    assert lines[1].startswith(f"  used        {want['used']:,} of {want['limit']:,}  ")
    assert lines[1].endswith(f"{100 * want['used'] / want['limit']:.0f}%")
    assert lines[2:] == [
        f"  remaining   {want['remaining']:,}",
        f"  over limit  {want['over_limit']:,}",
        f"  updated at  {want['updated_at']}",
    ]
    assert want["over_limit"] > 0
    assert "\x1b[" not in result.stdout  # piped: no colour codes
    # BOTSTREAM_WEB_PORT alone (host 127.0.0.1 by default) finds it too.
    result = botstream(
        "usage",
        account,
        "--month",
        month,
        "--json",
        env=command_env(live.settings, BOTSTREAM_WEB_PORT=str(live.worker.port)),
    )
    assert result.returncode == 0
    answer = json.loads(result.stdout)
    forecast = answer.pop("forecast")
    assert answer == want
    assert (forecast["status"] == "reached") == (want["used"] >= forecast["limit"])


def test_usage_errors(live: SettledRun) -> None:
    env = command_env(live.settings)
    result = botstream("usage", "acc-1", "--month", "2026-13", "--url", live.worker.url, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "botstream: --month '2026-13' is not a month, YYYY-MM (example: 2026-11)\n"
    )
    # Nothing listens on port 1.
    result = botstream("usage", "acc-1", env=env | {"BOTSTREAM_WEB_PORT": "1"})
    assert result.returncode == 2
    assert result.stderr == (
        "botstream: no botstream worker answers at http://127.0.0.1:1 (connection refused); "
        "start one with: botstream worker\n"
    )


# -- stats ------------------------------------------------------------------------------


def test_stats_json_is_the_replay_stats(live: SettledRun, capsys) -> None:
    for want in live.replay.stats:
        status, out, _ = cli(
            capsys,
            "stats",
            want["account_id"],
            "--month",
            want["month"],
            "--url",
            live.worker.url,
            "--json",
        )
        assert status == 0 and json.loads(out) == want


def test_stats_view_shares(live: SettledRun) -> None:
    want = max(live.replay.stats, key=lambda s: sum(v for v in s.values() if isinstance(v, int)))
    counts = {k: v for k, v in want.items() if k not in {"account_id", "month"}}
    total = sum(counts.values())
    result = botstream(
        "stats",
        want["account_id"],
        "--month",
        want["month"],
        "--url",
        live.worker.url,
        env=command_env(live.settings),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{want['account_id']}  {want['month']}  conversations by outcome")
    for line, (name, count) in zip(lines[1:], counts.items(), strict=False):
        assert line.split()[:3] == [name, f"{count:,}", f"{100 * count / total:.1f}%"]
    assert lines[-1].split() == ["total", f"{total:,}"]
    assert len(lines) == len(counts) + 2


# -- alerts -----------------------------------------------------------------------------


def test_alerts_are_the_committed_alerts(on_live: SettledRun, capsys) -> None:
    committed = on_live.alerts
    assert len(committed) >= 3, "the log should raise alerts"
    status, out, err = cli(capsys, "alerts", "--json")
    assert (status, err) == (0, "")
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(printed, key=str) == sorted(committed, key=str)
    # Where the month's limit did not change, they are the replay's alerts (SPEC 5).
    stable, _ = stable_limit_months(on_live.log, on_live.replay)

    def view(alerts: list[dict]) -> set[tuple]:
        return {
            (a["alert_id"], a["used"], a["limit"])
            for a in alerts
            if (a["account_id"], a["month"]) in stable
        }

    assert view(printed) == view(on_live.replay.alerts)
    # Per account (one partition), in the order raised: used never goes down.
    for account in {a["account_id"] for a in printed}:
        used = [(a["month"], a["used"]) for a in printed if a["account_id"] == account]
        for month in {m for m, _ in used}:
            month_used = [u for m, u in used if m == month]
            assert month_used == sorted(month_used)

    # Readable: one line per alert, with what it says.
    status, out, _ = cli(capsys, "alerts")
    lines = out.splitlines()
    assert status == 0 and len(lines) == len(committed)
    expected = {
        (a["at"], a["kind"], a["account_id"], a["month"], f"{a['used']}/{a['limit']}", a[cid])
        for a in committed
        for cid in ["conversation_id"]
    }
    assert {tuple(line.split()) for line in lines} == expected

    # --account: only that account's.
    account = Counter(a["account_id"] for a in committed).most_common(1)[0][0]
    status, out, _ = cli(capsys, "alerts", "--account", account, "--json")
    mine = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and mine == [a for a in printed if a["account_id"] == account]


async def test_alerts_follow_from_beginning_then_ctrl_c(live: SettledRun) -> None:
    process = await asyncio.create_subprocess_exec(
        *BOTSTREAM,
        "alerts",
        "--follow",
        "--from-beginning",
        "--json",
        env=command_env(live.settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        printed = [
            json.loads(await asyncio.wait_for(process.stdout.readline(), 30)) for _ in live.alerts
        ]
        assert sorted(printed, key=str) == sorted(live.alerts, key=str)
        await asyncio.sleep(1.0)  # still following, nothing more to print
        assert process.returncode is None
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
    assert process.returncode == 0
    assert out == b""
    assert err.decode().splitlines() == [
        f"botstream: following {live.settings.topics.alerts} (from the beginning); Ctrl-C to stop"
    ]


def alert(account: str, used: int, limit: int = 10) -> dict:
    """An alert record as botstream writes it."""
    kind = "quota.exceeded" if used > limit else "quota.limit_reached"
    return {
        "alert_id": f"{account}:2026-11:{kind}:{limit}",
        "kind": kind,
        "account_id": account,
        "month": "2026-11",
        "used": used,
        "limit": limit,
        "conversation_id": f"c-{account}-{used}",
        "at": "2026-11-24T20:15:00.123Z",
    }


async def test_alerts_read_committed_and_follow_new_only(stream_settings: Settings) -> None:
    """Aborted alerts never show, an open transaction ends the snapshot, --follow starts now."""
    settings = stream_settings
    topic = settings.topics.alerts
    env = command_env(settings)
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), transactional_id=f"{topic}-t")
    await producer.start()
    try:

        async def transaction(*alerts: dict, commit: bool | None) -> None:
            await producer.begin_transaction()
            for a in alerts:
                await producer.send_and_wait(
                    topic, json.dumps(a).encode(), key=a["account_id"].encode()
                )
            if commit is True:
                await producer.commit_transaction()
            elif commit is False:
                await producer.abort_transaction()

        old, aborted, open_, new = alert("a", 10), alert("b", 10), alert("c", 11), alert("d", 12)
        await transaction(old, commit=True)
        await transaction(aborted, commit=False)
        await transaction(open_, commit=None)  # left open while the command runs
        snapshot = await asyncio.to_thread(botstream, "alerts", "--json", env=env, timeout=30)
        assert snapshot.returncode == 0, snapshot.stderr
        assert [json.loads(line) for line in snapshot.stdout.splitlines()] == [old]
        await producer.commit_transaction()

        process = await asyncio.create_subprocess_exec(
            *BOTSTREAM,
            "alerts",
            "--follow",
            "--json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            ready = await asyncio.wait_for(process.stderr.readline(), 30)
            assert ready.decode().startswith(f"botstream: following {topic} (new alerts only)")
            await transaction(aborted, commit=False)
            await transaction(new, commit=True)
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert json.loads(line) == new
            process.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(process.communicate(), 20)
        finally:
            if process.returncode is None:
                process.kill()
        assert (process.returncode, out, err) == (0, b"", b"")
    finally:
        await producer.stop()
    # Without --follow, every committed alert: open_ is committed now.
    everything = await asyncio.to_thread(botstream, "alerts", "--json", env=env, timeout=30)
    printed = [json.loads(line) for line in everything.stdout.splitlines()]
    assert sorted(printed, key=str) == sorted([old, open_, new], key=str)


def test_alerts_missing_topic(live: SettledRun) -> None:
    env = command_env(live.settings, BOTSTREAM_TOPIC_ALERTS="no-such-alerts-topic")
    result = botstream("alerts", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "botstream: topic no-such-alerts-topic does not exist; "
        "create it with: botstream topics create\n"
    )


def test_read_api_errors_name_the_worker(live: SettledRun) -> None:
    """The client's one-line errors, on a real worker: a path that is not the read API."""
    with pytest.raises(BotstreamError, match="HTTP 404"):
        ops.fetch_json(live.worker.url, "/nothing/acc-1")
