"""Prometheus metrics of a worker, served at ``GET /metrics``."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class StreamMetrics:
    """The counters, gauges and histograms a worker exports.

    Each worker has its own registry, so that several workers in one process
    (as in tests) do not share counts.
    """

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.events_in = Counter(
            "botstream_events_in", "Input records read from widget-events.", registry=registry
        )
        self.dead_letters = Counter(
            "botstream_dead_letters",
            "Input records sent to the dead-letter topic.",
            ["topic", "reason"],
            registry=registry,
        )
        self.outcomes = Counter(
            "botstream_outcome_revisions",
            "Outcome revisions published.",
            ["outcome"],
            registry=registry,
        )
        self.charges = Counter(
            "botstream_charges", "Billable conversations charged.", registry=registry
        )
        self.alerts = Counter("botstream_alerts", "Quota alerts published.", registry=registry)
        self.open_conversations = Gauge(
            "botstream_conversations_held",
            "Conversations held in state, per input partition.",
            ["partition"],
            registry=registry,
        )
        self.watermark_lag = Gauge(
            "botstream_watermark_lag_seconds",
            "Wall clock minus event time (watermark), per input partition.",
            ["partition"],
            registry=registry,
        )
        self.acquisitions = Counter(
            "botstream_partition_acquisitions",
            "Partitions acquired (a transactional producer initialised), by where the state "
            "came from: kept from before a rebalance, the worker's local files, or the changelog.",
            ["stage", "state"],
            registry=registry,
        )
        self.fenced = Counter(
            "botstream_partitions_fenced",
            "Transactions refused because another producer took the partition over.",
            ["stage"],
            registry=registry,
        )
        self._outcome_counters: dict = {}
        for stage in ("conversations", "plans", "accounts"):
            self.fenced.labels(stage)  # shown as 0 until it happens
        self.batch_seconds = Histogram(
            "botstream_batch_seconds",
            "Processing latency: from taking a batch to committing its transaction.",
            ["stage"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )

    def events_processed(self, partition: int, records: list, processor) -> None:
        """A batch of widget events went through ``processor``."""
        self.events_in.inc(len(records))
        self.open_conversations.labels(str(partition)).set(processor.open_conversations)
        if processor.watermark is not None:
            self.watermark_lag.labels(str(partition)).set(time.time() - processor.watermark / 1000)

    def revision(self, revision) -> None:
        """An outcome revision was published."""
        outcome = revision.state.outcome
        counter = self._outcome_counters.get(outcome)
        if counter is None:  # labels() costs as much as the rest of a revision's publishing
            counter = self._outcome_counters[outcome] = self.outcomes.labels(outcome.name.lower())
        counter.inc()

    def dead_letter(self, topic: str, reason: str) -> None:
        """An input record became a dead letter."""
        self.dead_letters.labels(topic, reason).inc()

    def charged(self, alerts: int) -> None:
        """A charge was metered, raising ``alerts`` alerts."""
        self.charges.inc()
        if alerts:
            self.alerts.inc(alerts)

    def batch_committed(self, stage: str, records: int, seconds: float) -> None:
        """A stage committed a transaction."""
        self.batch_seconds.labels(stage).observe(seconds)

    def partition_acquired(self, stage: str, how: str) -> None:
        """A stage acquired a partition, its state ``kept``, ``local`` or ``restored``."""
        self.acquisitions.labels(stage, how).inc()

    def partition_fenced(self, stage: str) -> None:
        """A stage's transaction was fenced by another producer."""
        self.fenced.labels(stage).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


def metric_total(text: str, name: str) -> float | None:
    """The sum of every sample of ``name`` (any labels) in Prometheus text, None if absent."""
    total = None
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        if metric == name or metric.startswith(name + "{"):
            total = (total or 0.0) + float(value)
    return total
