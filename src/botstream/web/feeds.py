"""What every worker follows for its dashboard: committed alerts and dead letters, events/s.

:class:`CommittedFeeds` reads the alerts and dead-letter topics
``read_committed``, from the beginning of their retention, without a consumer
group: every worker sees every committed alert and dead letter, whichever
worker produced it, and never one of an aborted transaction. So any worker's
page shows the same lists, and a worker that restarts reads them again.

:class:`EventRate` samples the worker's own ``botstream_events_in_total``
counter once a second; the overview adds up the rates of every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

import orjson

from botstream.config import Settings
from botstream.kafka.topics import kafka_client_kwargs

log = logging.getLogger(__name__)

#: Alerts kept per account (the newest), and dead-letter reasons are only counted.
ALERTS_PER_ACCOUNT = 50
#: Seconds between attempts when the broker cannot be read.
RETRY_S = 2.0


def alert_order(alert: dict) -> tuple[str, str]:
    """Newest first: by the charge's time ``at``, then by ``alert_id`` (a stable tie-break)."""
    return (alert["at"], alert["alert_id"])


class CommittedFeeds:
    """Every committed alert (newest per account) and dead letters counted by reason."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.alerts_by_account: dict[str, deque[dict]] = {}
        self.alert_count = 0
        self.dead_letters: Counter[str] = Counter()
        #: True once the topics were read up to where they ended when reading began.
        self.caught_up = False
        self.error: str | None = None
        self._positions: dict = {}

    # -- reading -------------------------------------------------------------------------

    def add_alert(self, alert: dict) -> None:
        """One committed alert record."""
        account = alert["account_id"]
        kept = self.alerts_by_account.get(account)
        if kept is None:
            kept = self.alerts_by_account[account] = deque(maxlen=ALERTS_PER_ACCOUNT)
        kept.append(alert)
        self.alert_count += 1

    def add_dead_letter(self, letter: dict) -> None:
        """One committed dead letter, counted by the reason code that starts its ``error``."""
        self.dead_letters[str(letter.get("error", "")).split(":", 1)[0]] += 1

    async def run(self) -> None:
        """Follow both topics until cancelled; a broker that goes away is retried."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the page says so; the worker goes on
                error = f"{type(exc).__name__}: {exc}"
                if error != self.error:  # once, not every retry
                    log.warning("dashboard: reading alerts and dead letters failed: %s", error)
                self.error = error
                await asyncio.sleep(RETRY_S)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topics = self.settings.topics
        handlers = {topics.alerts: self.add_alert, topics.dead_letters: self.add_dead_letter}
        consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            client_id=f"{self.settings.app_id}-dashboard",
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            # Assigning a topic that does not exist makes the client retry in a tight
            # loop: wait for the topics instead (botstream topics create makes them).
            missing = set(handlers) - await consumer.topics()
            if missing:
                raise LookupError(f"topics {sorted(missing)} do not exist yet")
            partitions = [
                TopicPartition(topic, p)
                for topic in handlers
                for p in range(self.settings.partitions)
            ]
            consumer.assign(partitions)
            for tp in partitions:
                # After a failure, go on from where reading stopped: nothing counted twice.
                if tp in self._positions:
                    consumer.seek(tp, self._positions[tp])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(partitions)
            self.error = None
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    handle = handlers[tp.topic]
                    for record in records:
                        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                            handle(orjson.loads(record.value))
                    if records:
                        self._positions[tp] = records[-1].offset + 1
                if not self.caught_up:
                    self.caught_up = all(
                        [await consumer.position(tp) >= ends[tp] for tp in partitions]
                    )
        finally:
            await consumer.stop()

    # -- what the page asks ----------------------------------------------------------------

    def recent_alerts(self, count: int) -> list[dict]:
        """The ``count`` newest alerts of every account, newest first."""
        every = (alert for kept in self.alerts_by_account.values() for alert in kept)
        return heapq.nlargest(count, every, key=alert_order)

    def alerts_of(self, account_id: str) -> list[dict]:
        """The alerts of one account, newest first."""
        return sorted(self.alerts_by_account.get(account_id, ()), key=alert_order, reverse=True)


class EventRate:
    """Events per second of one worker, from its ``botstream_events_in_total`` counter."""

    def __init__(self, read_total: Callable[[], float], window_s: float = 5.0) -> None:
        self.read_total = read_total
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, now: float | None = None) -> None:
        """Take one reading (the sampler task calls this every second)."""
        now = time.monotonic() if now is None else now
        samples = self._samples
        samples.append((now, self.read_total()))
        while len(samples) > 2 and now - samples[1][0] >= self.window_s:
            samples.popleft()

    @property
    def total(self) -> float:
        """The counter at the latest reading."""
        return self._samples[-1][1] if self._samples else self.read_total()

    @property
    def per_second(self) -> float:
        """Events per second over the last few seconds (0 before two readings)."""
        samples = self._samples
        if len(samples) < 2:
            return 0.0
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        return (last - first) / (last_at - first_at) if last_at > first_at else 0.0

    async def run(self, interval_s: float = 1.0) -> None:
        """Sample every ``interval_s`` until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(interval_s)
