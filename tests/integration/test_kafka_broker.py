"""aiokafka against the local Kafka broker: everything botstream relies on.

Topic creation with configs, consumer groups with commits, transactions with
offsets committed inside them and ``read_committed`` consumers; and the local
broker itself: it starts, answers, stops, and never outlives its parent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from botstream import cli
from botstream.config import TopicNames, load_settings
from botstream.errors import ConfigError, KafkaUnavailableError
from botstream.kafka import local_broker
from botstream.kafka.local_broker import LocalKafka
from botstream.kafka.topics import (
    admin_client,
    ensure_topics,
    kafka_client_kwargs,
    topic_specs,
)

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def settings_for(bootstrap: str, partitions: int = 2, **env: str):
    """Settings on the test broker, with topic names unique to the calling test."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        f"BOTSTREAM_TOPIC_{name.upper()}": f"{default}-{suffix}"
        for name, default in vars(TopicNames()).items()
    }
    return load_settings(
        env={
            "BOTSTREAM_BOOTSTRAP": bootstrap,
            "BOTSTREAM_PARTITIONS": str(partitions),
            **names,
            **env,
        }
    )


def on(bootstrap: str):
    """Default settings, on the given broker."""
    return load_settings(env={"BOTSTREAM_BOOTSTRAP": bootstrap})


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    """Create one plain topic."""
    async with admin_client(on(bootstrap)) as admin:
        await admin.create_topics([NewTopic(name, partitions, 1)])


async def drain(consumer: AIOKafkaConsumer, expected: int, timeout_s: float = 15.0) -> list:
    """Consume until ``expected`` records arrived, then a little more to catch extras."""
    records: list = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = await consumer.getmany(timeout_ms=300)
        for partition_records in batch.values():
            records.extend(partition_records)
        if len(records) >= expected:
            # Anything that should not be there would have come with the rest.
            batch = await consumer.getmany(timeout_ms=1000)
            for partition_records in batch.values():
                records.extend(partition_records)
            break
    return records


def client_kwargs(bootstrap: str) -> dict:
    """The kwargs every client of the project uses, on the test broker."""
    return kafka_client_kwargs(on(bootstrap))


# --------------------------------------------------------------------------- topics


async def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    async with admin_client(on(kafka_bootstrap)) as admin:
        cluster = await admin.describe_cluster()
    assert len(cluster["brokers"]) == 1
    assert cluster["controller_id"] >= 0


async def test_ensure_topics_creates_every_topic_with_its_policy(kafka_bootstrap: str) -> None:
    settings = settings_for(kafka_bootstrap, partitions=3)
    statuses = await ensure_topics(settings)
    assert [st.spec.name for st in statuses] == [s.name for s in topic_specs(settings)]
    assert all(st.created and st.partitions == 3 for st in statuses)

    names = settings.topics
    async with admin_client(settings) as admin:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, st.spec.name) for st in statuses]
        )
    configs = {
        resource[3]: {entry[0]: entry[1] for entry in resource[4]}
        for response in responses
        for resource in response.resources
    }
    for topic in (
        names.outcomes,
        names.usage,
        names.conversations_changelog,
        names.accounts_changelog,
        names.directory,
    ):
        assert configs[topic]["cleanup.policy"] == "compact"
    for topic in (names.alerts, names.dead_letters, names.account_updates):
        assert configs[topic]["cleanup.policy"] == "delete"
        assert configs[topic]["retention.ms"] == str(30 * 86_400_000)
    assert configs[names.plans]["cleanup.policy"] == "delete"
    assert configs[names.plans]["retention.ms"] == "-1"
    assert configs[names.events]["retention.ms"] == str(7 * 86_400_000)

    # Idempotent: the second run finds them all.
    again = await ensure_topics(settings)
    assert not any(st.created for st in again)

    with pytest.raises(ConfigError, match="wrong number of partitions"):
        await ensure_topics(settings.with_overrides(partitions=5))


async def test_unreachable_broker_is_one_line_error() -> None:
    port = local_broker.free_port()  # nobody listens there
    settings = on(f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(KafkaUnavailableError, match="cannot reach Kafka") as caught:
        await ensure_topics(settings, timeout_s=5)
    assert "\n" not in str(caught.value)
    assert time.monotonic() - started < 10


def test_topics_create_command(kafka_bootstrap: str, capsys, monkeypatch) -> None:
    settings = settings_for(kafka_bootstrap)
    for name, value in vars(settings.topics).items():
        monkeypatch.setenv(f"BOTSTREAM_TOPIC_{name.upper()}", value)
    code = cli.main(["topics", "create", "--bootstrap", kafka_bootstrap, "--partitions", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(lines) == len(topic_specs(settings))
    assert lines[0].split()[:3] == ["created", settings.topics.events, "2"]
    assert any(settings.topics.outcomes in line and line.endswith("compact") for line in lines)
    code = cli.main(["topics", "create", "--bootstrap", kafka_bootstrap, "--partitions", "2"])
    assert code == 0
    assert all(line.startswith("exists") for line in capsys.readouterr().out.splitlines())


# --------------------------------------------------------------------------- groups


async def test_consumer_group_resumes_after_committed_offset(kafka_bootstrap: str) -> None:
    topic, group = unique("group-test"), unique("group")
    await create_topic(kafka_bootstrap, topic)
    producer = AIOKafkaProducer(**client_kwargs(kafka_bootstrap), acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"k")
    finally:
        await producer.stop()

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            **client_kwargs(kafka_bootstrap),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = consumer()
    await first.start()
    try:
        records = await drain(first, 10)
        assert [r.value for r in records] == [f"m{i}".encode() for i in range(10)]
        tp = TopicPartition(topic, 0)
        await first.commit({tp: records[4].offset + 1})  # processed m0..m4
    finally:
        await first.stop()

    second = consumer()
    await second.start()
    try:
        records = await drain(second, 5)
        assert [r.value for r in records] == [f"m{i}".encode() for i in range(5, 10)]
    finally:
        await second.stop()


# --------------------------------------------------------------------------- transactions


async def test_transactions_commit_and_abort_with_offsets(kafka_bootstrap: str) -> None:
    """Consume-transform-produce, as botstream's exactly-once stages do it."""
    source, sink, group = unique("tx-in"), unique("tx-out"), unique("tx-group")
    await create_topic(kafka_bootstrap, source)
    await create_topic(kafka_bootstrap, sink)
    tp = TopicPartition(source, 0)

    plain = AIOKafkaProducer(**client_kwargs(kafka_bootstrap), acks="all")
    await plain.start()
    try:
        for i in range(4):
            await plain.send_and_wait(source, f"in{i}".encode())
    finally:
        await plain.stop()

    producer = AIOKafkaProducer(
        **client_kwargs(kafka_bootstrap), transactional_id=unique("botstream-test-tx")
    )
    await producer.start()  # InitProducerId
    try:
        # Transaction 1: inputs 0-1 -> outputs, offsets committed with them.
        async with producer.transaction():
            for i in range(2):
                await producer.send(sink, f"out{i}".encode())
            await producer.send_offsets_to_transaction({tp: 2}, group)
        # Transaction 2: inputs 2-3 -> outputs, then aborted: neither counts.
        await producer.begin_transaction()
        for i in range(2, 4):
            await producer.send(sink, f"out{i}".encode())
        await producer.send_offsets_to_transaction({tp: 4}, group)
        await producer.abort_transaction()
    finally:
        await producer.stop()

    async def read(isolation_level: str, expected: int) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            sink,
            **client_kwargs(kafka_bootstrap),
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level=isolation_level,
        )
        await consumer.start()
        try:
            return [r.value for r in await drain(consumer, expected)]
        finally:
            await consumer.stop()

    assert await read("read_committed", 2) == [b"out0", b"out1"]
    # The aborted records were written: only the isolation level hides them.
    assert await read("read_uncommitted", 4) == [b"out0", b"out1", b"out2", b"out3"]

    async with admin_client(on(kafka_bootstrap)) as admin:
        offsets = await admin.list_consumer_group_offsets(group)
    assert offsets[tp].offset == 2

    # A consumer of the group continues after the offset committed in transaction 1.
    consumer = AIOKafkaConsumer(
        source,
        **client_kwargs(kafka_bootstrap),
        group_id=group,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        assert [r.value for r in await drain(consumer, 2)] == [b"in2", b"in3"]
    finally:
        await consumer.stop()


async def test_new_transactional_producer_fences_the_old_one(kafka_bootstrap: str) -> None:
    """A restarted worker takes over its transactional id; the zombie is fenced."""
    from aiokafka.errors import KafkaError

    topic, txid = unique("fence"), unique("botstream-test-fence")
    await create_topic(kafka_bootstrap, topic)
    old = AIOKafkaProducer(**client_kwargs(kafka_bootstrap), transactional_id=txid)
    new = AIOKafkaProducer(**client_kwargs(kafka_bootstrap), transactional_id=txid)
    await old.start()
    try:
        await old.begin_transaction()
        await old.send_and_wait(topic, b"zombie")
        await new.start()  # bumps the epoch and aborts the old open transaction
        async with new.transaction():
            await new.send_and_wait(topic, b"live")
        with pytest.raises(KafkaError):
            await old.commit_transaction()
    finally:
        await new.stop()
        await old.stop()


# --------------------------------------------------------------------------- the broker


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False


def _gone_path(path: Path, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def test_stop_leaves_no_java_process() -> None:
    broker = LocalKafka()
    with broker:
        assert broker.bootstrap.startswith("127.0.0.1:")
        java_pid, work_dir = broker.java_pid, broker.work_dir
        assert java_pid and Path(f"/proc/{java_pid}").exists()
        assert "kafka.Kafka" in Path(f"/proc/{java_pid}/cmdline").read_bytes().decode()

        async def metadata() -> dict:
            async with admin_client(on(broker.bootstrap)) as admin:
                return await admin.describe_cluster()

        assert asyncio.run(metadata())["brokers"]
    assert not broker.running
    assert _gone(java_pid, 5), "the JVM is still there after stop()"
    with pytest.raises(ProcessLookupError):
        os.kill(java_pid, 0)
    assert work_dir is not None and not work_dir.exists()


def test_jvm_dies_with_its_parent() -> None:
    """Even a SIGKILLed parent leaves no JVM (and no data) behind."""
    script = textwrap.dedent(
        """
        import sys, time
        from botstream.kafka.local_broker import LocalKafka
        broker = LocalKafka()
        broker.start()
        print(broker.java_pid, broker.work_dir, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline().split()
        assert line, "the parent did not start its broker"
        java_pid, work_dir = int(line[0]), Path(line[1])
        assert Path(f"/proc/{java_pid}").exists()
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    # The watchdog notices within half a second, Kafka shuts down cleanly.
    assert _gone(java_pid, 40), "the JVM outlived its parent"
    assert _gone_path(work_dir, 10)


def test_detached_broker_commands(tmp_path: Path, monkeypatch, capsys) -> None:
    """``botstream kafka start|status|stop`` with its own state, sharing the jars."""
    cache = tmp_path / "cache"
    cache.mkdir()
    jars = local_broker.jars_dir()
    (cache / jars.parent.name).symlink_to(jars.parent)  # no second download
    monkeypatch.setenv("BOTSTREAM_CACHE_DIR", str(cache))

    assert cli.main(["kafka", "status"]) == 1
    capsys.readouterr()
    assert cli.main(["kafka", "start", "--port", "0"]) == 0
    try:
        bootstrap = capsys.readouterr().out.strip()
        assert bootstrap.startswith("127.0.0.1:")
        state = local_broker.read_state()
        assert state is not None and state.bootstrap == bootstrap
        assert cli.main(["kafka", "status"]) == 0
        assert capsys.readouterr().out.strip() == bootstrap
        # Started again: the running one is reported, not a second one started.
        assert cli.main(["kafka", "start"]) == 0
        assert capsys.readouterr().out.strip() == bootstrap
    finally:
        assert cli.main(["kafka", "stop"]) == 0
    assert state.java_pid and _gone(state.java_pid, 5)
    assert not Path(state.work_dir).exists()
    assert cli.main(["kafka", "status"]) == 1
