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

**Steady state.** Each run offers the rate for a warm-up (default 10 s)
before the measured seconds. A fresh worker's first seconds are not its
steady state: its state fills from nothing, the broker's fresh topics and
transactional ids get their first requests, the broker's JIT compiles what
the new load runs. Events sent during the warm-up are left out of the
figures (the practice of the OpenMessaging Benchmark's warm-up) and reported
on their own, so the start-up cost stays in view. Each rate runs several
times (default 3), each with a fresh worker and topics; the figures pool the
samples of every run, and each run's p99 is kept too.
"""

from __future__ import annotations

import gc
import math
import pickle
import shutil
import tempfile
import time
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2

from benchmarks import kit
from botstream.domain.metering import Charge
from botstream.domain.partition import DictStore, PartitionProcessor, Revision
from botstream.errors import InvalidRecord

PARTITIONS = 4
#: How long after the last send the outputs may take to show up.
DRAIN_S = 30.0
#: Seconds of sending per point of a run's timeline.
TIMELINE_STEP_S = 2


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


class _Outcome(msgspec.Struct):
    conversation_id: str
    end_reason: str | None = None


class _Charge(msgspec.Struct):
    account_id: str
    month: str
    conversation_id: str


class _Usage(msgspec.Struct):
    account_id: str
    month: str
    used: int


_OUTCOME = msgspec.json.Decoder(_Outcome)
_CHARGE = msgspec.json.Decoder(_Charge)
_USAGE = msgspec.json.Decoder(_Usage)


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
        """Read what is visible now, noting the time.

        Only the fields it needs are decoded (msgspec skips the rest): the
        follower shares the two cores with what it measures.
        """
        batch = await self._consumer.getmany(timeout_ms=20, max_records=20_000)
        seen = time.time()
        topics = self.topics
        for tp, records in batch.items():
            if tp.topic == topics.outcomes:
                for record in records:
                    outcome = _OUTCOME.decode(record.value)
                    if outcome.end_reason in ("closed", "visitor_left"):
                        self.outcome_seen.setdefault(outcome.conversation_id, seen)
            elif tp.topic == topics.account_updates:
                for record in records:
                    if record.value.startswith(b'{"t":"charge"'):
                        charge = _CHARGE.decode(record.value)
                        key = (charge.account_id, charge.month)
                        self.charge_order[key].append(charge.conversation_id)
            else:
                for record in records:
                    usage = _USAGE.decode(record.value)
                    self.usage_seen.setdefault((usage.account_id, usage.month, usage.used), seen)

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


#: What is sampled: a conversation's end, and its charge.
KINDS = ("outcome", "charge")


def _by_kind() -> dict[str, list[float]]:
    return {what: [] for what in KINDS}


@dataclass
class Run:
    """One run at one rate: its summary and its samples (ms) by kind, measured and warm-up."""

    summary: dict
    measured: dict[str, list[float]] = field(default_factory=_by_kind)
    warmup: dict[str, list[float]] = field(default_factory=_by_kind)


async def one_rate(
    bootstrap: str, log_dir: Path, rate: int, seconds: float, warmup_s: float, index: int
) -> Run:
    """A fresh worker at one offered rate for ``warmup_s + seconds``; its samples."""
    from botstream.kafka.topics import ensure_topics

    count = max(1, int(rate * (warmup_s + seconds)))
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
    # The traffic and its causes are millions of objects that live all run: out of
    # the collector's reach, its full passes (~100 ms each, long enough to delay
    # the follower's clock readings) walk only what the follower adds.
    gc.collect()
    gc.freeze()
    try:
        worker.start(tag)
        ready_s = await worker.wait_ready()
        await follower.start()
        kit.log(
            f"latency at {rate:,} events/s: worker ready in {ready_s:.1f} s, "
            f"{count:,} events over {warmup_s:g} s of warm-up and {seconds:g} s measured"
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
        measured_from = sent[0] + warmup_s
        run = Run({})
        expected = dict.fromkeys(KINDS, 0)
        warmup_expected = dict.fromkeys(KINDS, 0)
        windows: dict[tuple[str, int], list[float]] = defaultdict(list)
        for what, seen, cause in (
            ("outcome", follower.outcome_seen, outcome_cause),
            ("charge", follower.charge_seen(), charge_cause),
        ):
            for conversation, index in cause.items():
                after_warmup = sent[index] >= measured_from
                (expected if after_warmup else warmup_expected)[what] += 1
                if conversation in seen:
                    latency_ms = (seen[conversation] - sent[index]) * 1000
                    (run.measured if after_warmup else run.warmup)[what].append(latency_ms)
                    window = int((sent[index] - sent[0]) // TIMELINE_STEP_S)
                    windows[(what, window)].append(latency_ms)
        span = sent[-1] - sent[0] if len(sent) > 1 else 0
        run.summary = {
            "achieved_per_s": (len(sent) - 1) / span if span else None,
            "events": len(traffic.events),
            "worker_ready_s": ready_s,
            "load_before": load,
            **{what: figures(run.measured[what], expected[what]) for what in KINDS},
            "warmup": {what: figures(run.warmup[what], warmup_expected[what]) for what in KINDS},
            "negative_samples": sum(1 for what in KINDS for v in run.measured[what] if v < 0),
            "timeline": timeline(windows),
        }
        for what in KINDS:
            f, w = run.summary[what], run.summary["warmup"][what]
            kit.log(
                f"  {what:8s} {f['samples']:,}/{f['expected']:,} samples: p50 {f['p50_ms']:.0f}"
                f" p95 {f['p95_ms']:.0f} p99 {f['p99_ms']:.0f} max {f['max_ms']:.0f} ms"
                f" (warm-up: p99 {w['p99_ms']:.0f} ms)"
            )
        return run
    finally:
        if producer is not None:
            producer.stop()
        await follower.stop()
        worker.stop()
        shutil.rmtree(work, ignore_errors=True)
        gc.unfreeze()
        await kit.delete_topics_containing(bootstrap, tag)


def timeline(windows: dict[tuple[str, int], list[float]]) -> list[dict]:
    """p99 of the samples sent in each ``TIMELINE_STEP_S`` of a run, warm-up included.

    It shows how long a fresh worker takes to settle, and whether a tail is
    one burst or spread over the run.
    """
    steps = sorted({window for _, window in windows})
    return [
        {
            "from_s": step * TIMELINE_STEP_S,
            **{
                f"{what}_p99_ms": kit.percentile(sorted(windows.get((what, step), [])), 0.99)
                for what in KINDS
            },
        }
        for step in steps
    ]


async def measure(
    bootstrap: str,
    log_dir: Path,
    *,
    rates: list[int],
    seconds: float,
    warmup_s: float = 10.0,
    runs: int = 3,
    half_max: int | None = None,
    warm_broker: bool = False,
) -> dict:
    """Every offered rate, ``runs`` times each; the section of the results.

    ``warm_broker``: first one run at the highest rate, not measured. A broker
    in service has long compiled (JIT) what this load runs; the benchmark's
    has not, even after the throughput section, whose few large transactions
    run other paths. Without it, the warm-up p99 of the first two runs at half
    the maximum was 1.9 to 3.3 s in two full runs, and 85 and 121 ms for the
    third. It does not remove every slow start (see the README).
    """
    results = []
    number = 0
    if warm_broker and rates:
        kit.log("latency: one run to warm the broker up first, not measured")
        await one_rate(bootstrap, log_dir, max(rates), seconds, warmup_s, number)
        number += 1
    for rate in rates:
        done: list[Run] = []
        for _ in range(runs):
            done.append(await one_rate(bootstrap, log_dir, rate, seconds, warmup_s, number))
            number += 1
        summaries = [run.summary for run in done]
        achieved = [s["achieved_per_s"] for s in summaries if s["achieved_per_s"]]
        pooled = {
            "offered_per_s": rate,
            "is_half_max": rate == half_max,
            "achieved_per_s": min(achieved) if achieved else None,
            **{
                what: figures(
                    [v for run in done for v in run.measured[what]],
                    sum(s[what]["expected"] for s in summaries),
                )
                for what in KINDS
            },
            "warmup": {
                what: figures(
                    [v for run in done for v in run.warmup[what]],
                    sum(s["warmup"][what]["expected"] for s in summaries),
                )
                for what in KINDS
            },
            "runs": summaries,
        }
        for what in KINDS:
            f = pooled[what]
            per_run = ", ".join(f"{s[what]['p99_ms']:.0f}" for s in summaries)
            kit.log(
                f"{rate:,}/s, {what}, {runs} runs pooled: p50 {f['p50_ms']:.0f} p99 "
                f"{f['p99_ms']:.0f} ms (each run's p99: {per_run})"
            )
        results.append(pooled)
    return {
        "rates": results,
        "seconds_per_rate": seconds,
        "warmup_seconds": warmup_s,
        "runs_per_rate": runs,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
