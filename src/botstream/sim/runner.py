"""Running a simulation into a sink, in wall time.

The generator knows only simulated time; this module is where the wall clock
comes in, and only to hold records back: :class:`Pacer` makes the output
follow ``--speed`` (event time per wall time) and ``--rate`` (records per wall
second). It never changes what is generated, so a paced file has the same
bytes as an unpaced one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from botstream.sim.generator import Record, SimStats, TrafficSimulator
from botstream.sim.sinks import FileSink, KafkaSink

#: Waits shorter than this are skipped (and caught up on the next record).
MIN_SLEEP_S = 0.005
#: How often the progress callback is called, in wall seconds.
PROGRESS_EVERY_S = 2.0

ProgressCallback = Callable[[SimStats], None]


class Pacer:
    """How long to hold each record back so the output keeps to a speed and a rate.

    ``speed`` is simulated milliseconds per wall millisecond (1440 = a day in
    a minute; ``None`` or 0: no limit); ``rate`` is records per wall second (0:
    no limit). With both, the slower one wins. The clock starts at the first
    record.
    """

    def __init__(
        self,
        start_ms: int,
        speed: float | None = None,
        rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.start_ms = start_ms
        self.speed = speed or None
        self.rate = rate or None
        self.clock = clock
        self._t0: float | None = None

    @property
    def active(self) -> bool:
        """Whether records are held back at all."""
        return self.speed is not None or self.rate is not None

    def wait_s(self, at_ms: int, index: int) -> float:
        """Seconds to wait before sending record ``index`` (0-based), delivered at ``at_ms``."""
        now = self.clock()
        if self._t0 is None:
            self._t0 = now
        due = 0.0
        if self.speed is not None:
            due = (at_ms - self.start_ms) / self.speed / 1000.0
        if self.rate is not None:
            due = max(due, index / self.rate)
        return due - (now - self._t0)


@dataclass
class RunReport:
    """How a run went, in wall time."""

    records: int
    plan_records: int
    elapsed_s: float


def write_files(
    sim: TrafficSimulator,
    sink: FileSink,
    pacer: Pacer | None = None,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """Write the plan records, then the events of ``sim`` to ``sink``."""
    started = time.perf_counter()
    plans = sink.write_plans(sim.plan_records())
    if pacer is None or not pacer.active:
        _write_fast(sim, sink, progress)
    else:
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        for index, record in enumerate(sim.events()):
            wait = pacer.wait_s(record.at_ms, index)
            if wait > MIN_SLEEP_S:
                sink.flush()  # let readers following the file see what came so far
                time.sleep(wait)
            sink.write(record)
            if progress is not None and time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                progress(sim.stats)
    return RunReport(sim.stats.records, plans, time.perf_counter() - started)


def _write_fast(sim: TrafficSimulator, sink: FileSink, progress: ProgressCallback | None) -> None:
    write = sink.write
    if progress is None:
        for record in sim.events():
            write(record)
        return
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    for index, record in enumerate(sim.events()):
        write(record)
        if index & 4095 == 0 and time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            progress(sim.stats)


async def produce(
    sim: TrafficSimulator,
    sink: KafkaSink,
    pacer: Pacer | None = None,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """Produce the plan records, wait for them, then produce the events of ``sim``.

    ``sink`` must be started. Plans go first so that botstream knows every
    account's plan before the first charge.
    """
    started = time.perf_counter()
    plans = await produce_plans(sim, sink)
    await produce_events(sim, sink, pacer, progress)
    return RunReport(sim.stats.records, plans, time.perf_counter() - started)


async def produce_plans(sim: TrafficSimulator, sink: KafkaSink) -> int:
    """Produce the plan records of ``sim`` and wait for their acknowledgement; return how many."""
    plans = sim.plan_records()
    for record in plans:
        await sink.send(record)
    await sink.flush()
    return len(plans)


async def produce_events(
    sim: TrafficSimulator,
    sink: KafkaSink,
    pacer: Pacer | None = None,
    progress: ProgressCallback | None = None,
    *,
    stop: asyncio.Event | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> int:
    """Produce the events of ``sim`` (paced by ``pacer``) until done or ``stop`` is set.

    ``on_record`` sees every record after it was queued (the demo keeps a copy
    of the log with it). Returns the number of records produced, all acknowledged.
    """
    paced = pacer is not None and pacer.active
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    sent = 0
    for index, record in enumerate(sim.events()):
        if stop is not None and stop.is_set():
            break
        if paced:
            wait = pacer.wait_s(record.at_ms, index)
            if wait > MIN_SLEEP_S:
                await asyncio.sleep(wait)
        await sink.send(record)
        sent += 1
        if on_record is not None:
            on_record(record)
        if progress is not None and index % 256 == 0 and time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            progress(sim.stats)
    await sink.flush()
    return sent
