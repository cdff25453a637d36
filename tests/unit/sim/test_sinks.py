"""Sinks and pacing: JSONL files, the Kafka producer (faked), speed and rate."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from botstream.config import Settings, TopicNames
from botstream.errors import KafkaUnavailableError
from botstream.sim import SimConfig, TrafficSimulator
from botstream.sim.runner import Pacer, produce, write_files
from botstream.sim.sinks import FileSink, KafkaSink


def test_file_sink_writes_one_record_per_line(tmp_path):
    sim = TrafficSimulator(SimConfig(count=5000, malformed_rate=0.05))
    with FileSink(tmp_path / "e.jsonl", tmp_path / "p.jsonl") as sink:
        report = write_files(sim, sink)
    events = (tmp_path / "e.jsonl").read_bytes().split(b"\n")
    assert events[-1] == b"" and len(events) - 1 == 5000 == report.records
    assert events[:-1] == [r.value for r in sim.events()]
    plans = (tmp_path / "p.jsonl").read_bytes().splitlines()
    assert plans == [r.value for r in sim.plan_records()]
    assert report.plan_records == len(plans)


def test_file_sink_without_plans_file(tmp_path):
    sim = TrafficSimulator(SimConfig(count=10))
    with FileSink(tmp_path / "e.jsonl") as sink:
        report = write_files(sim, sink)
    assert report.plan_records == 0
    assert list(tmp_path.iterdir()) == [tmp_path / "e.jsonl"]


def test_paced_file_has_the_same_bytes(tmp_path):
    config = SimConfig(count=300)
    with FileSink(tmp_path / "fast.jsonl") as sink:
        write_files(TrafficSimulator(config), sink)
    sim = TrafficSimulator(config)
    with FileSink(tmp_path / "paced.jsonl") as sink:
        write_files(sim, sink, Pacer(config.start_ms, rate=100_000))
    assert (tmp_path / "fast.jsonl").read_bytes() == (tmp_path / "paced.jsonl").read_bytes()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_follows_speed():
    clock = FakeClock()
    pacer = Pacer(start_ms=0, speed=1440, clock=clock)
    assert pacer.active
    assert pacer.wait_s(0, 0) == 0
    # A simulated day is due one wall minute after the first record.
    assert pacer.wait_s(86_400_000, 1) == pytest.approx(60)
    clock.now += 59
    assert pacer.wait_s(86_400_000, 2) == pytest.approx(1)


def test_pacer_follows_rate_and_the_slower_limit_wins():
    clock = FakeClock()
    pacer = Pacer(start_ms=0, speed=1000, rate=10, clock=clock)
    pacer.wait_s(0, 0)
    assert pacer.wait_s(0, 50) == pytest.approx(5)  # the rate holds it back
    assert pacer.wait_s(600_000, 1) == pytest.approx(0.6)  # the speed does
    assert not Pacer(0).active and not Pacer(0, speed=0, rate=0).active


class FakeProducer:
    """Records what AIOKafkaProducer would have been asked to do."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushes = 0
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def send(self, topic, value=None, key=None):
        self.sent.append((topic, key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def flush(self) -> None:
        self.flushes += 1

    async def stop(self) -> None:
        self.stopped = True


async def test_kafka_sink_produces_plans_first_then_events_keyed():
    producers: list[FakeProducer] = []

    def factory(**kwargs):
        producers.append(FakeProducer(**kwargs))
        return producers[-1]

    settings = Settings(
        bootstrap_servers="broker:9092",
        topics=TopicNames(events="my-events", plans="my-plans"),
    )
    sim = TrafficSimulator(SimConfig(count=500))
    async with KafkaSink(settings, producer_factory=factory) as sink:
        report = await produce(sim, sink)
    producer = producers[0]
    assert producer.started and producer.stopped
    assert producer.kwargs["bootstrap_servers"] == "broker:9092"
    assert producer.kwargs["acks"] == "all" and producer.kwargs["enable_idempotence"] is True
    assert producer.kwargs["linger_ms"] > 0
    plans = sim.plan_records()
    topics = [topic for topic, _, _ in producer.sent]
    assert topics == ["my-plans"] * len(plans) + ["my-events"] * 500
    assert [(k, v) for _, k, v in producer.sent[: len(plans)]] == [(r.key, r.value) for r in plans]
    assert [(k, v) for _, k, v in producer.sent[len(plans) :]] == [
        (r.key, r.value) for r in sim.events()
    ]
    assert report.records == 500 and report.plan_records == len(plans)


async def test_kafka_sink_reports_an_unreachable_broker_in_one_line():
    class Unreachable(FakeProducer):
        async def start(self) -> None:
            raise KafkaConnectionError("Unable to bootstrap from [('nowhere', 9092)]")

    sink = KafkaSink(Settings(bootstrap_servers="nowhere:9092"), producer_factory=Unreachable)
    with pytest.raises(KafkaUnavailableError, match="cannot reach Kafka at nowhere:9092"):
        await sink.start()
