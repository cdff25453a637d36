"""Latency: from an event's produce time to its effect being visible ``read_committed``.

At each offered rate a fresh ``botstream worker`` (topics of its own) gets
simulated widget events from a paced producer (``paced_producer.py``, a
process of its own that writes down the wall-clock time at which it handed
each record to its producer). Meanwhile ``read_committed`` consumers follow
the worker's outputs and note the wall-clock time at which each record
becomes visible to them.

Which event causes which output is known in advance: the events are run
through the domain's own ``PartitionProcessor``, one per input partition (the
partition the producer's default partitioner picks), exactly as the worker
folds them. That gives, for every conversation:

* **outcome**: the event whose processing produced the conversation's first
  outcome revision that ends it by ``closed`` or ``visitor_left`` (usually its
  ``conversation.closed`` or ``visitor.left``): the latency is the time until
  the first such outcome record of the conversation is visible;
* **charge**: the event that made the conversation billable (usually the
  first button click after the chatbot joined): the latency is the time until
  the usage record that counts this charge is visible. A usage record does
  not name the conversation, so it is matched through the internal
  ``botstream-account-updates`` stream: within one account and month, the
  ``n``-th charge there is the one the usage record with ``used = n`` counts
  (the account stage applies them in that order, exactly once).

Conversations ended by inactivity are not sampled (their end depends on when
event time passes, not on one event).
"""

from __future__ import annotations

import math
import pickle
import shutil
import tempfile
import time
from array import array
from collections import defaultdict
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2

from benchmarks import kit
from botstream.domain.metering import Charge
from botstream.domain.partition import DictStore, PartitionProcessor, Revision
from botstream.errors import InvalidRecord

PARTITIONS = 4
#: How long after the last send the outputs may take to show up.
DRAIN_S = 30.0


def partition_of(key: bytes, partitions: int = PARTITIONS) -> int:
    """The partition aiokafka's default partitioner gives a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def causes(records: list[kit.Record], settings) -> tuple[dict[str, int], dict[str, int]]:
    """``(outcome cause, charge cause)``: conversation id -> index of the event that causes it."""
    from botstream.domain.events import decode_event

    config = settings.domain
    processors = [PartitionProcessor(config, DictStore()) for _ in range(PARTITIONS)]
    outcome_cause: dict[str, int] = {}
    charge_cause: dict[str, int] = {}
    now_ms = int(time.time() * 1000)
    for index, (key, value) in enumerate(records):
        try:
            event = decode_event(value, config.max_event_bytes)
        except InvalidRecord:
            continue
        for output in processors[partition_of(key)].process(event, now_ms):
            kind = type(output)
            if kind is Revision:
                if output.end_reason in ("closed", "visitor_left"):
                    outcome_cause.setdefault(output.conversation_id, index)
            elif kind is Charge:
                charge_cause.setdefault(output.conversation_id, index)
    return outcome_cause, charge_cause


class Follower:
    """Follows the worker's outputs ``read_committed`` and notes when each became visible."""

    def __init__(self, bootstrap: str, topics) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        #: conversation id -> when its first closing outcome became visible.
        self.outcome_seen: dict[str, float] = {}
        #: (account, month) -> conversation ids in the order they were charged.
        self.charge_order: dict[tuple[str, str], list[str]] = defaultdict(list)
        #: (account, month, used) -> when that usage record became visible.
        self.usage_seen: dict[tuple[str, str, int], float] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Assign every partition of the three topics, from the beginning."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        await self._consumer.start()
        partitions = []
        for topic in (self.topics.outcomes, self.topics.account_updates, self.topics.usage):
            partitions += await kit.partitions_of(self._consumer, topic)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def poll(self) -> None:
        """Read what is visible now, noting the time."""
        batch = await self._consumer.getmany(timeout_ms=20, max_records=20_000)
        seen = time.time()
        topics = self.topics
        for tp, records in batch.items():
            if tp.topic == topics.outcomes:
                for record in records:
                    outcome = orjson.loads(record.value)
                    if outcome["end_reason"] in ("closed", "visitor_left"):
                        self.outcome_seen.setdefault(outcome["conversation_id"], seen)
            elif tp.topic == topics.account_updates:
                for record in records:
                    if record.value.startswith(b'{"t":"charge"'):
                        update = orjson.loads(record.value)
                        key = (update["account_id"], update["month"])
                        self.charge_order[key].append(update["conversation_id"])
            else:
                for record in records:
                    usage = orjson.loads(record.value)
                    key = (usage["account_id"], usage["month"], usage["used"])
                    self.usage_seen.setdefault(key, seen)

    def charge_seen(self) -> dict[str, float]:
        """conversation id -> when the usage record counting its charge became visible."""
        seen = {}
        for (account, month, used), at in self.usage_seen.items():
            order = self.charge_order.get((account, month), [])
            if used <= len(order):
                seen[order[used - 1]] = at
        return seen


def figures(latencies_ms: list[float], expected: int) -> dict:
    """p50, p95, p99 and max of the samples, and how many there were of how many expected."""
    ordered = sorted(latencies_ms)
    return {
        "samples": len(ordered),
        "expected": expected,
        "p50_ms": kit.percentile(ordered, 0.50),
        "p95_ms": kit.percentile(ordered, 0.95),
        "p99_ms": kit.percentile(ordered, 0.99),
        "max_ms": ordered[-1] if ordered else math.nan,
        "mean_ms": sum(ordered) / len(ordered) if ordered else math.nan,
    }


async def one_rate(bootstrap: str, log_dir: Path, rate: int, seconds: float, index: int) -> dict:
    """A fresh worker at one offered rate; the latency figures."""
    from botstream.kafka.topics import ensure_topics

    count = max(1, int(rate * seconds))
    traffic = kit.simulated_traffic(count, seed=11 + index)
    tag = f"bench-lat{index}-{rate}"
    settings = kit.botstream_settings(bootstrap, f"{tag}-")
    await ensure_topics(settings)
    await kit.produce(bootstrap, settings.topics.plans, traffic.plans)
    outcome_cause, charge_cause = causes(traffic.events, settings)
    worker = kit.BotstreamWorker(settings, log_dir)
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    records_path, times_path = work / "records.pickle", work / "times.bin"
    records_path.write_bytes(pickle.dumps(traffic.events))
    follower = Follower(bootstrap, settings.topics)
    producer = None
    try:
        worker.start(tag)
        ready_s = await worker.wait_ready()
        await follower.start()
        kit.log(
            f"latency at {rate:,} events/s: worker ready in {ready_s:.1f} s, "
            f"{count:,} events over {seconds:g} s"
        )
        producer = kit.Child(
            [
                kit.PYTHON,
                str(kit.HERE / "paced_producer.py"),
                "--bootstrap",
                bootstrap,
                "--topic",
                settings.topics.events,
                "--rate",
                str(rate),
                "--records",
                str(records_path),
                "--times",
                str(times_path),
            ],
            log_dir / f"{tag}-producer.log",
        )
        load = kit.load_average()
        producer.start()
        while producer.alive():
            await follower.poll()
        if producer.process.returncode != 0:
            raise RuntimeError(f"the paced producer failed:\n{producer.log_tail()}")
        sent = array("d")
        with times_path.open("rb") as handle:
            sent.fromfile(handle, len(traffic.events))
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            await follower.poll()
            if set(outcome_cause) <= set(follower.outcome_seen) and len(
                follower.charge_seen()
            ) >= len(charge_cause):
                break
        charge_seen = follower.charge_seen()
        outcome_ms = [
            (follower.outcome_seen[c] - sent[i]) * 1000
            for c, i in outcome_cause.items()
            if c in follower.outcome_seen
        ]
        charge_ms = [
            (charge_seen[c] - sent[i]) * 1000 for c, i in charge_cause.items() if c in charge_seen
        ]
        span = sent[-1] - sent[0] if len(sent) > 1 else 0
        result = {
            "offered_per_s": rate,
            "achieved_per_s": (len(sent) - 1) / span if span else None,
            "events": len(traffic.events),
            "worker_ready_s": ready_s,
            "load_before": load,
            "outcome": figures(outcome_ms, len(outcome_cause)),
            "charge": figures(charge_ms, len(charge_cause)),
            "negative_samples": sum(1 for v in outcome_ms + charge_ms if v < 0),
        }
        for what in ("outcome", "charge"):
            f = result[what]
            kit.log(
                f"  {what:8s} {f['samples']:,}/{f['expected']:,} samples: p50 {f['p50_ms']:.0f}"
                f" p95 {f['p95_ms']:.0f} p99 {f['p99_ms']:.0f} max {f['max_ms']:.0f} ms"
            )
        return result
    finally:
        if producer is not None:
            producer.stop()
        await follower.stop()
        worker.stop()
        shutil.rmtree(work, ignore_errors=True)
        await kit.delete_topics_containing(bootstrap, tag)


async def measure(
    bootstrap: str, log_dir: Path, *, rates: list[int], seconds: float, half_max: int | None = None
) -> dict:
    """Every offered rate in turn; the section of the results."""
    results = []
    for index, rate in enumerate(rates):
        result = await one_rate(bootstrap, log_dir, rate, seconds, index)
        result["is_half_max"] = rate == half_max
        results.append(result)
    return {
        "rates": results,
        "seconds_per_rate": seconds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
