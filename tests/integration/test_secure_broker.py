"""The secured local broker (SASL_SSL, SCRAM-SHA-512, a keytool CA) and botstream's clients.

One ``LocalKafka(secure=True)`` for the module. With the credentials it
prints, ``botstream worker``, ``simulate`` and ``alerts`` do their work; with
a wrong password, or a CA that did not sign the broker's certificate, each of
``worker``, ``simulate``, ``alerts`` and ``demo`` fails with one line on
stderr and a non-zero exit, well within 30 s.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from botstream.config import Settings, load_settings
from botstream.errors import BrokerSetupError
from botstream.kafka.local_broker import LocalKafka, generate_ca
from botstream.kafka.topics import ensure_topics, kafka_client_kwargs
from tests.integration.harness import TopicReader, WorkerPool, log_line, settings_env

pytestmark = pytest.mark.integration

#: A command that hangs instead of failing is a failure too.
FAIL_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[LocalKafka]:
    """A secured local broker for this module."""
    broker = LocalKafka(secure=True)
    try:
        try:
            broker.start()
        except BrokerSetupError as exc:
            pytest.fail(f"secured local Kafka broker: {exc}", pytrace=False)
        log_line(f"secured broker at {broker.bootstrap}: {broker.timings}")
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def secure_settings(secure_broker: LocalKafka) -> Settings:
    """Settings from the broker's client variables, with topics of their own (created)."""
    prefix = f"s{uuid.uuid4().hex[:8]}-"
    settings = load_settings(env=secure_broker.client_env()).with_prefix(prefix)
    asyncio.run(ensure_topics(settings))
    return settings


@pytest.fixture(scope="module")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The certificate of a CA that did not sign the broker's."""
    return generate_ca(tmp_path_factory.mktemp("other-ca"), "other-ca-password", name="other CA")


def _env(settings: Settings, secure_broker: LocalKafka, **changes: str) -> dict[str, str]:
    """The environment of a command: this process's, with the settings and credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
    return env | secure_broker.client_env() | settings_env(settings) | changes


async def _records_in(settings: Settings, topic: str) -> int:
    """How many records ``topic`` holds (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


def _run(
    args: list[str], env: dict[str, str], cwd: Path
) -> tuple[subprocess.CompletedProcess, float]:
    began = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "botstream", *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=FAIL_WITHIN_S + 30,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"botstream {' '.join(args)} hung for {FAIL_WITHIN_S + 30} s")
    return done, time.monotonic() - began


def test_the_broker_has_no_plaintext_way_in(secure_broker: LocalKafka) -> None:
    properties = (secure_broker.work_dir / "server.properties").read_text()
    listeners = next(line for line in properties.splitlines() if line.startswith("listeners="))
    assert "PLAINTEXT" not in listeners and "SASL_SSL://" in listeners
    assert (secure_broker.work_dir / "server.properties").stat().st_mode & 0o077 == 0
    credentials = secure_broker.client_credentials
    assert credentials is not None and credentials.mechanism == "SCRAM-SHA-512"
    # Python's ssl trusts the CA exported as PEM, and checks the broker's name (127.0.0.1).
    assert ssl.create_default_context(cafile=credentials.cafile).get_ca_certs()
    context = kafka_client_kwargs(load_settings(env=secure_broker.client_env()))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize(
    ("protocol", "words"),
    [("PLAINTEXT", "may expect TLS"), ("SSL", "may expect SASL")],
)
def test_a_client_without_sasl_ssl_is_told_why(
    secure_settings: Settings, secure_broker: LocalKafka, tmp_path: Path, protocol: str, words: str
) -> None:
    env = _env(secure_settings, secure_broker, BOTSTREAM_SECURITY_PROTOCOL=protocol)
    done, took = _run(["topics", "create"], env, tmp_path)
    assert done.returncode == 2 and took < FAIL_WITHIN_S
    assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr


async def test_worker_simulate_and_alerts_with_credentials(
    secure_settings: Settings, secure_broker: LocalKafka, tmp_path: Path
) -> None:
    settings = secure_settings
    limits = {"BOTSTREAM_PLAN_LIMITS": "standard=3/6,pro=5/10"}
    pool = WorkerPool(settings, tmp_path / "workers")
    try:
        worker = pool.add("secure", secure_broker.client_env() | limits)
        worker.start()
        await pool.wait_owning([worker], timeout_s=90)
        simulate = ["simulate", "--count", "2000", "--seed", "11", "--accounts", "3"]
        simulate += ["--hot-accounts", "1", "--quiet"]
        done, _ = _run(simulate, _env(settings, secure_broker), tmp_path)
        assert done.returncode == 0, done.stderr
        sent = await _records_in(settings, settings.topics.events)
        assert sent >= 2000

        # The worker reads every record and publishes alerts, through SASL_SSL.
        deadline = time.monotonic() + 90
        while await worker.metric("botstream_events_in_total") < sent:
            assert worker.running, worker.logs(20)
            assert time.monotonic() < deadline, "the worker did not read every record"
            await asyncio.sleep(0.5)
        alerts = TopicReader(settings, settings.topics.alerts)
        await alerts.start()
        try:
            published: list[dict] = []
            while not published or await worker.metric("botstream_alerts_total") > len(published):
                published += [r.json() for r in await alerts.catch_up()]
                assert time.monotonic() < deadline, "no alert was committed"
                await asyncio.sleep(0.5)
        finally:
            await alerts.stop()
        assert not worker.errors(), worker.errors()
        logged = "".join(path.read_text(errors="replace") for path in worker.log_paths)
        assert secure_broker.client_credentials.password not in logged
    finally:
        pool.close()

    # botstream alerts reads them with the same credentials.
    done, _ = _run(["alerts", "--json"], _env(settings, secure_broker), tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert sorted(a["alert_id"] for a in printed) == sorted(a["alert_id"] for a in published)
    assert {a["kind"] for a in printed} >= {"quota.warning", "quota.limit_reached"}
    log_line(f"{sent} records through SASL_SSL, {len(printed)} alerts")


COMMANDS = {
    "worker": ["worker"],
    "simulate": ["simulate", "--count", "10", "--quiet"],
    "alerts": ["alerts"],
    "demo": ["demo", "--no-live", "--duration", "5"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_wrong_password_is_one_line_and_fast(
    secure_settings: Settings, secure_broker: LocalKafka, tmp_path: Path, command: str
) -> None:
    env = _env(secure_settings, secure_broker, BOTSTREAM_SASL_PASSWORD="not-the-password")
    args = COMMANDS[command] + (["--dir", str(tmp_path / "demo")] if command == "demo" else [])
    done, took = _run(args, env, tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert took < FAIL_WITHIN_S
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "authentication failed for user 'botstream' (SCRAM-SHA-512)" in done.stderr


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_untrusted_certificate_is_one_line_and_fast(
    secure_settings: Settings,
    secure_broker: LocalKafka,
    untrusted_ca: Path,
    tmp_path: Path,
    command: str,
) -> None:
    env = _env(secure_settings, secure_broker, BOTSTREAM_SSL_CAFILE=str(untrusted_ca))
    args = COMMANDS[command] + (["--dir", str(tmp_path / "demo")] if command == "demo" else [])
    done, took = _run(args, env, tmp_path)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert took < FAIL_WITHIN_S
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "TLS: the broker's certificate is not trusted by BOTSTREAM_SSL_CAFILE" in done.stderr
