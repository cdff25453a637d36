"""`examples/billing_consumer.py`, the reference billing consumer, on a real broker.

Its billable counts per account and billing month must be what the replay's
outcomes give, and the `used` of every usage record the worker serves. Hand
made outcome topics check the rules it shows: the last record of a
conversation wins, a tombstone deletes it, and only committed transactions
count (an open one ends the snapshot without blocking it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from botstream.commands.ops import fetch_json
from botstream.config import Settings
from botstream.kafka.local_broker import free_port
from botstream.kafka.topics import kafka_client_kwargs
from tests.integration.harness import (
    PYTHON,
    SettledRun,
    WorkerPool,
    isolated_settings,
    settled_run,
)

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "billing_consumer.py"


def billing(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the example as a billing team would (no botstream settings in its environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    return subprocess.run(
        [PYTHON, str(EXAMPLE), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def counts_of(document: dict) -> dict[tuple[str, str], int]:
    """``{(account, month): billable}`` from the example's JSON report."""
    return {(r["account_id"], r["billing_month"]): r["conversations"] for r in document["billable"]}


@pytest.fixture(scope="module")
def live(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SettledRun]:
    """One worker that processed a 3,000-record log."""
    directory = tmp_path_factory.mktemp("billing")
    settings = asyncio.run(isolated_settings(kafka_bootstrap))
    pool = WorkerPool(settings, directory / "workers")
    try:
        yield asyncio.run(
            settled_run(
                settings,
                directory,
                pool,
                count=3_000,
                seed=31,
                accounts=12,
                plan_limits="standard=5/15,pro=10/40",
            )
        )
    finally:
        pool.close()


def test_counts_equal_replay_and_usage(live: SettledRun) -> None:
    settings = live.settings
    result = billing(
        "--bootstrap", settings.bootstrap_servers, "--topic", settings.topics.outcomes, "--json"
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    document = json.loads(result.stdout)
    got = counts_of(document)
    # The replay's latest outcomes, counted the same way...
    from_replay = Counter(
        (o["account_id"], o["billing_month"])
        for o in live.replay.outcomes.values()
        if o["billable"]
    )
    assert got == dict(from_replay)
    assert len(got) >= 10 and sum(got.values()) >= 100
    # ...the replay's usage, and the usage the worker serves.
    assert got == {key: u["used"] for key, u in live.replay.usage.items()}
    for (account, month), n in got.items():
        served = fetch_json(live.worker.url, f"/usage/{account}", month)
        assert served["used"] == n, f"{account} {month}"
    assert document["conversations"] == len(live.replay.outcomes)
    assert document["records"] == live.outcome_records
    # More records than conversations: revisions happened, and were not counted twice.
    assert live.outcome_records > len(live.replay.outcomes)

    # The table says the same.
    table = billing("--bootstrap", settings.bootstrap_servers, "--topic", settings.topics.outcomes)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["account", "month", "billable"]
    rows = {(a, m): int(n.replace(",", "")) for a, m, n in (line.split() for line in lines[2:-1])}
    assert rows == got
    assert lines[-1] == (
        f"{len(live.replay.outcomes):,} conversations in {live.outcome_records:,} records; "
        f"{sum(got.values()):,} billable"
    )


# -- hand-made outcome topics -------------------------------------------------------------


def outcome(cid: str, account: str, revision: int, month: str | None) -> bytes:
    """An outcome record; billable in ``month``, or not billable when it is None."""
    at = None if month is None else f"{month}-10T10:00:00.000Z"
    return json.dumps(
        {
            "conversation_id": cid,
            "account_id": account,
            "revision": revision,
            "outcome": "unengaged" if month is None else "resolved_by_chatbot",
            "chatbot_role": "started",
            "billable": month is not None,
            "billable_at": at,
            "billing_month": month,
            "started_at": "2026-11-10T09:59:00.000Z",
            "ended_at": "2026-11-10T10:05:00.000Z",
            "end_reason": "visitor_left",
            "counts": {
                "events": 3,
                "chatbot_clicks": 1,
                "visitor_messages": 0,
                "agent_messages": 0,
            },
        }
    ).encode()


async def test_last_record_tombstones_and_transactions(stream_settings: Settings) -> None:
    settings = stream_settings
    topic = settings.topics.outcomes
    args = ("--bootstrap", settings.bootstrap_servers, "--topic", topic, "--json")
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), transactional_id=f"{topic}-t")
    await producer.start()
    try:

        async def transaction(*records: tuple[str, bytes | None], commit: bool | None) -> None:
            await producer.begin_transaction()
            for key, value in records:
                await producer.send_and_wait(topic, value, key=key.encode())
            if commit is True:
                await producer.commit_transaction()
            elif commit is False:
                await producer.abort_transaction()

        await transaction(
            # Not billable, then billable after a late click: counted, once.
            ("c-1", outcome("c-1", "acc-a", 1, None)),
            ("c-1", outcome("c-1", "acc-a", 2, "2026-11")),
            # Billable in two revisions: counted once.
            ("c-2", outcome("c-2", "acc-a", 1, "2026-11")),
            ("c-2", outcome("c-2", "acc-a", 2, "2026-11")),
            # Billable, then deleted by a tombstone: not counted.
            ("c-3", outcome("c-3", "acc-b", 1, "2026-12")),
            ("c-3", None),
            ("c-4", outcome("c-4", "acc-b", 1, "2026-12")),
            commit=True,
        )
        # An aborted attempt: a billable revision that never happened.
        await transaction(("c-5", outcome("c-5", "acc-b", 1, "2026-12")), commit=False)
        # A transaction still open when the consumer starts: not in its snapshot.
        await transaction(("c-6", outcome("c-6", "acc-c", 1, "2026-12")), commit=None)
        result = await asyncio.to_thread(billing, *args, timeout=30)
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        assert counts_of(document) == {("acc-a", "2026-11"): 2, ("acc-b", "2026-12"): 1}
        assert document["records"] == 7 and document["conversations"] == 3
        await producer.commit_transaction()
    finally:
        await producer.stop()
    result = await asyncio.to_thread(billing, *args, timeout=30)
    assert counts_of(json.loads(result.stdout)) == {
        ("acc-a", "2026-11"): 2,
        ("acc-b", "2026-12"): 1,
        ("acc-c", "2026-12"): 1,
    }


async def test_follow_prints_updates_and_stops_on_ctrl_c(stream_settings: Settings) -> None:
    settings = stream_settings
    topic = settings.topics.outcomes
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, outcome("c-1", "acc-a", 1, "2026-11"), key=b"c-1")
        process = await asyncio.create_subprocess_exec(
            PYTHON,
            str(EXAMPLE),
            *("--bootstrap", settings.bootstrap_servers, "--topic", topic),
            *("--follow", "--interval", "0.2", "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            first = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            assert counts_of(first) == {("acc-a", "2026-11"): 1}
            await producer.send_and_wait(topic, outcome("c-2", "acc-a", 1, "2026-11"), key=b"c-2")
            await producer.send_and_wait(topic, outcome("c-3", "acc-b", 1, "2026-12"), key=b"c-3")
            latest = first
            while counts_of(latest) != {("acc-a", "2026-11"): 2, ("acc-b", "2026-12"): 1}:
                latest = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
            process.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(process.communicate(), 20)
        finally:
            if process.returncode is None:
                process.kill()
        assert (process.returncode, err) == (0, b"")
    finally:
        await producer.stop()


def test_one_line_errors(kafka_bootstrap: str) -> None:
    down = f"127.0.0.1:{free_port()}"
    result = billing("--bootstrap", down)
    assert result.returncode == 2
    assert (
        result.stderr == f"billing_consumer: cannot reach Kafka at {down} (KafkaConnectionError)\n"
    )
    result = billing("--bootstrap", kafka_bootstrap, "--topic", "no-such-outcomes")
    assert result.returncode == 2
    assert result.stderr == (
        f"billing_consumer: topic no-such-outcomes does not exist at {kafka_bootstrap}\n"
    )
