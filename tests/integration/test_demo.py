"""`botstream demo` end to end: its own broker, a worker, traffic, a summary, and a clean exit.

Each test runs the real command as a subprocess, as a newcomer would (with
``--no-live``, since there is no terminal), then checks what it reported
against the offline replay of the traffic it kept, and that no worker or
broker process of the run is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from botstream.commands.replay import replay_files
from botstream.config import load_settings
from botstream.domain.stats import STAT_FIELDS
from botstream.replay.engine import ReplayEngine

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def start_demo(folder: Path, *flags: str) -> tuple[subprocess.Popen, Path]:
    """``botstream demo --no-live --dir FOLDER FLAGS`` with its output in a file."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    output = folder.parent / "demo-output.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "botstream", "demo", "--no-live", "--dir", str(folder), *flags],
            env=env,
            cwd=folder.parent,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return process, output


def finish(process: subprocess.Popen, timeout_s: float) -> int:
    """Wait for the demo; kill it (failing the test) when it takes too long."""
    try:
        return process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"the demo did not finish within {timeout_s} s") from None


def leftovers(summary: dict) -> list[str]:
    """Processes of the run still alive: its worker or its broker's JVM."""
    assert summary["worker_pid"] and summary["broker_pid"], summary
    return [
        f"{name} {summary[key]}"
        for name, key in (("worker", "worker_pid"), ("broker JVM", "broker_pid"))
        if alive(summary[key])
    ]


def test_demo_runs_end_to_end_and_matches_the_replay(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    process, output = start_demo(folder, "--duration", "20")
    code = finish(process, 240)
    text = output.read_text()
    assert code == 0, text
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["settled"] and not summary["interrupted"], text

    # Every kind of output appeared.
    assert summary["sent"] == summary["processed"] > 10_000
    assert all(summary["outcomes"].get(kind, 0) > 0 for kind in STAT_FIELDS), summary
    assert summary["usage_records"] > 0
    assert summary["charged"] == summary["billable"] > 0
    assert summary["alerts"].get("quota.exceeded", 0) > 0, summary["alerts"]
    assert sum(summary["dead_letters"].values()) > 0
    for heading in ("outcome (latest per conversation)", "where to look next", "read API"):
        assert heading in text
    # Where the dashboard is: the worker's own web server.
    assert f"dashboard {summary['worker_url']}/" in text

    # What the demo saw through Kafka is what the replay computes from its log copy.
    events = (folder / "events.jsonl").read_bytes().count(b"\n")
    assert events == summary["sent"]
    result = replay_files(
        folder / "events.jsonl", folder / "plans.jsonl", ReplayEngine(load_settings(env={}).domain)
    )
    replay_outcomes = Counter()
    for months in result.stats.values():
        for counts in months.values():
            replay_outcomes.update(counts)
    assert {k: n for k, n in replay_outcomes.items() if n} == summary["outcomes"]
    assert result.charges == summary["charged"]
    assert dict(Counter(a["kind"] for a in result.alerts)) == summary["alerts"]
    assert dict(result.dead_letter_codes) == summary["dead_letters"]

    assert leftovers(summary) == [], text


def test_ctrl_c_stops_everything_and_still_summarises(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    process, output = start_demo(folder, "--duration", "120")
    deadline = time.monotonic() + 120
    while "sent " not in output.read_text():  # the traffic is flowing
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.5)
    interrupted_at = time.monotonic()
    process.send_signal(signal.SIGINT)
    code = finish(process, 90)
    took = time.monotonic() - interrupted_at
    text = output.read_text()
    assert code == 130, text
    summary = orjson.loads((folder / "summary.json").read_bytes())
    assert summary["interrupted"] and summary["sent"] > 0, summary
    assert "stopped early" in text
    assert leftovers(summary) == [], text
    print(f"stopped {took:.1f} s after Ctrl-C")
