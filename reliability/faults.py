"""``python -m reliability faults``: the broker and the workers fail while events flow.

Each scenario runs real ``botstream worker`` processes on a local broker of
its own (:class:`~botstream.kafka.local_broker.LocalKafka`), feeds them a
simulated log *in real time* (each event is sent when its delivery time
comes, as live widgets send them), breaks something on the way, and judges
the result by the checks of the integration tests: what the workers
committed equals ``botstream replay --partitions N`` of the same log
(outcomes with their revisions, usage, alerts, statistics, dead letters)
and nothing was published or applied twice (``exactly_once_problems``).
Besides, the broker's segment files show that no fenced producer's write got
through (:mod:`reliability.kafka_log`).

Scenarios (``--scenarios``, all by default):

* ``broker-restart``: two workers; the broker is restarted twice on the
  same data directory, once cleanly (SIGTERM) and once killed (SIGKILL,
  so Kafka recovers its logs), at seeded points of the stream;
* ``sigkill``: two workers and 100,000 events; one of them, chosen by the
  seed, is SIGKILLed at 10 seeded points of the stream and started again;
* ``zombie``: two workers; one is SIGSTOPped past the session timeout, the
  other takes its partitions over, then the first gets SIGCONT: it must
  write nothing (its producers were fenced) and fence nobody;
* ``kill-two``: three workers, two of them SIGKILLed at once; the third
  finishes the run alone;
* ``disk-full``: the broker's data directory on a small filesystem that
  fills up (optional: it needs a tmpfs mount, that is root; otherwise it
  says why it was skipped).

Why real time: the replay's revisions are those of a stream whose event time
comes from its events; a log sent in real time keeps the wall clock (which
moves an idle partition's event time, SPEC section 4) in step with them, so
the revisions must agree too. A worker restarted after a crash finds a
backlog, and event time may only move with it (the engine ticks a partition
only once it is caught up).

Every run prints its seed; ``--seed`` repeats its fault points. Figures go
to the terminal and to the ``faults`` block of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from reliability.report import machine, number, table, write_section

SCENARIOS = ("broker-restart", "sigkill", "zombie", "kill-two", "disk-full")

#: Event time: a conversation silent this long ends by inactivity. Short, so that
#: the wall clock ends the last conversations soon after the last event; longer
#: than a broker restart, during which the feed is held.
IDLE_TIMEOUT = "30s"
#: The stages' session timeout (10 s) and some more: how long a zombie stands still.
PAST_SESSION_TIMEOUT_S = 15.0


def log_line(message: str) -> None:
    """A progress line on stdout."""
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- the log, sent in real time --------------------------------------------------------


@dataclass
class TimedLog:
    """A simulated log (see the integration harness's ``SimLog``) and when to send each event."""

    log: object
    #: Delivery time of each event record (epoch ms), non-decreasing.
    due_ms: list[int]


def realtime_log(directory: Path, *, seconds: float, rate: float, seed: int) -> TimedLog:
    """A log of ``seconds`` × ``rate`` events whose event time starts in two seconds.

    200 normal accounts and 3 hot ones, with the integration tests' low plan
    limits so that alerts fire, and the default faults of the simulator
    (duplicates, out-of-order deliveries, malformed records).
    """
    from botstream.sim.generator import SimConfig, TrafficSimulator, records_per_ms
    from tests.integration.harness import SimLog

    directory.mkdir(parents=True, exist_ok=True)
    start = int(time.time() * 1000) + 2_000
    count = int(seconds * rate)
    base = SimConfig(seed=seed, start_ms=start, count=count, conversations_per_account_day=1.0)
    per_day = rate / 1000 / records_per_ms(base)
    simulator = TrafficSimulator(
        SimConfig(seed=seed, start_ms=start, count=count, conversations_per_account_day=per_day)
    )
    plans = [(r.key, r.value) for r in simulator.plan_records()]
    records = list(simulator.events())
    events = [(r.key, r.value) for r in records]
    due, latest = [], 0
    for record in records:
        latest = max(latest, record.at_ms)
        due.append(latest)
    events_path, plans_path = directory / "events.jsonl", directory / "plans.jsonl"
    events_path.write_bytes(b"".join(value + b"\n" for _, value in events))
    plans_path.write_bytes(b"".join(value + b"\n" for _, value in plans))
    stats = simulator.stats
    log = SimLog(
        events_path,
        plans_path,
        events,
        plans,
        stats.first_ms,
        stats.last_ms,
        stats.first_ms,
        Counter(stats.faults),
        rules_env(),
    )
    return TimedLog(log, due)


def rules_env() -> dict[str, str]:
    """The rules of both runs, the workers' and the replay's."""
    from tests.integration.harness import PLAN_LIMITS

    return {"BOTSTREAM_PLAN_LIMITS": PLAN_LIMITS, "BOTSTREAM_IDLE_TIMEOUT": IDLE_TIMEOUT}


class Feeder:
    """Sends a :class:`TimedLog`'s events when their time comes; can be held (broker restarts).

    One idempotent producer for the whole log, so that its retries never
    write a record twice: the topic then holds exactly the replay's input.
    While held, nothing is in flight (the producer was flushed), so a broker
    restart cannot make a batch expire.
    """

    def __init__(self, settings, timed: TimedLog) -> None:
        self.settings = settings
        self.timed = timed
        self.sent = 0
        self.finished_at: float | None = None
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()

    @property
    def total(self) -> int:
        """Events in the log."""
        return len(self.timed.due_ms)

    async def run(self) -> None:
        """Send every event at its time (later while held); flush at the end."""
        from aiokafka import AIOKafkaProducer

        from botstream.kafka.topics import kafka_client_kwargs

        topic = self.settings.topics.events
        producer = AIOKafkaProducer(
            **kafka_client_kwargs(self.settings),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=120_000,
        )
        await producer.start()
        try:
            send = producer.send
            for index, ((key, value), due) in enumerate(
                zip(self.timed.log.events, self.timed.due_ms, strict=True)
            ):
                wait = due / 1000 - time.time()
                if wait > 0.02:
                    await producer.flush()
                    await asyncio.sleep(wait)
                if not self._open.is_set():
                    await producer.flush()
                    self._idle.set()
                    await self._open.wait()
                    self._idle.clear()
                await send(topic, value, key=key)
                self.sent = index + 1
            await producer.flush()
        finally:
            self.finished_at = time.monotonic()
            self._idle.set()
            await producer.stop()

    @contextlib.asynccontextmanager
    async def held(self):
        """Nothing is sent (and nothing is in flight) inside this block."""
        self._open.clear()
        try:
            if self.finished_at is None:
                await self._idle.wait()
            yield
        finally:
            self._open.set()

    async def reach(self, position: int) -> None:
        """Wait until ``position`` events have been sent (or all of them)."""
        while self.sent < min(position, self.total) and self.finished_at is None:
            await asyncio.sleep(0.05)


# -- one scenario run --------------------------------------------------------------------


@dataclass
class Result:
    """What one scenario did and found."""

    name: str
    events: int = 0
    workers: int = 0
    faults: list[str] = field(default_factory=list)
    #: Seconds from each fault until the stages had committed every event sent before it.
    recoveries: list[float] = field(default_factory=list)
    #: Seconds from the last event sent until every output equalled the replay's.
    settle_s: float = 0.0
    total_s: float = 0.0
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None


class Run:
    """The broker, workers, feed and outputs of one scenario, and its record of faults."""

    def __init__(self, broker, settings, directory: Path, timed: TimedLog, result: Result) -> None:
        from tests.integration.harness import WorkerPool

        self.broker = broker
        self.settings = settings
        self.directory = directory
        self.timed = timed
        self.result = result
        self.pool = WorkerPool(settings, directory / "workers")
        self.feeder = Feeder(settings, timed)
        self.outputs = None
        #: Workers the scenario has taken down on purpose (not restarted by the supervisor).
        self.down: set = set()
        self.unplanned_exits: list[str] = []
        #: Cleared while the broker is down (no client is started then).
        self.broker_up = asyncio.Event()
        self.broker_up.set()
        #: The batches of the broker's segment files, read once the outputs were checked.
        self.batches: list = []
        self._recoveries: list[asyncio.Task] = []

    async def supervise(self) -> None:
        """Start again a worker that exited on its own, as a supervisor would, and say so."""
        while True:
            await asyncio.sleep(0.5)
            for worker in self.pool.workers:
                if worker.process is None or worker.running or worker in self.down:
                    continue
                tail = worker.logs(5).splitlines()[-3:]
                self.unplanned_exits.append(
                    f"{worker.name} exited by itself (status {worker.returncode}): {tail}"
                )
                log_line(f"{worker.name} EXITED by itself; starting it again")
                worker.start()

    def fault(self, text: str) -> None:
        """Note a fault now, and time the recovery from it (see :meth:`_recovery`)."""
        log_line(f"fault: {text} ({self.feeder.sent:,} of {self.feeder.total:,} events sent)")
        self.result.faults.append(text)
        self._recoveries.append(asyncio.create_task(self._recovery(time.monotonic())))

    async def _recovery(self, began: float) -> float:
        """Seconds until every partition has an owner again and the backlog is committed.

        Owners are asked on ``/health`` (workers taken down on purpose are not
        asked); the backlog is every event sent by the moment each partition
        had an owner, and it is committed when the conversation stage's
        offsets reach it.
        """
        from tests.integration.harness import _end_offsets, group_offsets

        settings = self.settings
        partitions = set(range(settings.partitions))
        while True:
            await self.broker_up.wait()
            owned: dict[str, set[int]] = {}
            for worker in self.pool.workers:
                if worker.running and worker not in self.down:
                    for stage, numbers in (await worker.owned()).items():
                        owned.setdefault(stage, set()).update(numbers)
            stages = ("conversations", "plans", "accounts")
            if all(owned.get(stage) == partitions for stage in stages):
                break
            await asyncio.sleep(0.25)
        # A broker restart holds the feed: let it send what piled up meanwhile first.
        await asyncio.sleep(1.0)
        while True:
            await self.broker_up.wait()
            try:
                end = await _end_offsets(settings, settings.topics.events)
                break
            except Exception:
                await asyncio.sleep(0.5)
        group = f"{settings.app_id}-conversations"
        while True:
            with contextlib.suppress(Exception):
                done = await group_offsets(settings, group, settings.topics.events)
                if all(done.get(p, 0) >= offset for p, offset in end.items()):
                    return time.monotonic() - began
            await asyncio.sleep(0.25)

    async def wait_recovered(self, timeout_s: float = 240.0) -> None:
        """Wait for every recovery measurement; note each in order."""
        if not self._recoveries:
            return
        _, late = await asyncio.wait(self._recoveries, timeout=timeout_s)
        for task in self._recoveries:
            if task in late:
                task.cancel()
                self.result.problems.append("a fault was not recovered from in time")
            else:
                self.result.recoveries.append(task.result())


async def run_scenario(
    broker,
    directory: Path,
    result: Result,
    *,
    seconds: float,
    rate: float,
    seed: int,
    workers: str,
    inject: Callable[[Run], Awaitable[None]],
    after: Callable[[Run], Awaitable[None]] | None = None,
    settle_timeout_s: float = 240.0,
    broker_outages: bool = False,
    revisions: bool = True,
    expected_error: Callable[[object, str], bool] | None = None,
) -> Result:
    """Run one scenario: workers up, the log fed in real time while ``inject`` breaks things.

    ``after(run)`` adds the scenario's own checks once the common ones are done
    (``run.batches`` then holds the batches of the broker's segment files).
    Error lines in the workers' logs are problems, unless ``broker_outages``:
    then the clients' tracebacks while the broker is away are expected, and
    only counted; ``expected_error(worker, line)`` picks other expected ones
    (a zombie's fenced transactions). Without ``revisions`` the outcomes'
    revision counts are not compared, only counted (see :func:`broker_restart`).
    """
    from tests.integration.harness import (
        Outputs,
        compare_with_replay,
        exactly_once_problems,
        isolated_settings,
        produce,
        run_replay,
        schema_problems,
        stats_problems,
    )

    began = time.monotonic()
    settings = await isolated_settings(broker.bootstrap)
    # The log's event time starts two seconds after it is made: make it once the
    # workers are up, so that they do not start with a backlog.
    placeholder = TimedLog(None, [])
    run = Run(broker, settings, directory, placeholder, result)
    members = [run.pool.add(name, rules_env()) for name in workers]
    result.workers = len(members)
    supervisor = None
    try:
        for worker in members:
            worker.start()
        await run.pool.wait_owning(members, timeout_s=120)
        timed = realtime_log(directory / "log", seconds=seconds, rate=rate, seed=seed)
        run.timed, run.feeder = timed, Feeder(settings, timed)
        result.events = len(timed.log.events)
        replaying = asyncio.create_task(
            asyncio.to_thread(run_replay, timed.log, directory / "replay", settings.partitions)
        )
        async with Outputs(settings) as outputs:
            run.outputs = outputs
            await produce(settings, settings.topics.plans, timed.log.plans)
            await outputs.wait_plans_read(len(timed.log.plans), timeout_s=60)
            supervisor = asyncio.create_task(run.supervise())
            feeding = asyncio.create_task(run.feeder.run())
            await inject(run)
            await feeding
            log_line(f"all {run.feeder.total:,} events sent")
            replay = await replaying
            alive = [w for w in members if w.running]
            settled = await outputs.wait_settled(
                set(replay.outcomes), len(replay.dead_letters), timeout_s=settle_timeout_s,
                alive=alive,
            )  # fmt: skip
            result.settle_s = settled - run.feeder.finished_at
            await run.wait_recovered()
            await outputs.catch_up()
            result.problems += compare_with_replay(timed.log, outputs, replay, revisions=revisions)
            result.problems += exactly_once_problems(outputs, timed.log)
            result.problems += schema_problems(outputs, replay)
            result.problems += await stats_problems(alive[0], replay)
            live = outputs.latest_outcomes()
            revised = sum(
                1
                for cid, record in replay.outcomes.items()
                if cid in live and live[cid]["revision"] != record["revision"]
            )
            result.checks.append(
                f"{len(replay.outcomes):,} conversations, {replay.charges:,} charges, "
                f"{len(replay.alerts):,} alerts, {len(replay.dead_letters):,} dead letters, "
                f"{len(outputs.records('outcomes')):,} outcome revisions: equal to the replay "
                + ("(revisions too) " if revisions else f"(revision counts: {revised} differ) ")
                + "and exactly once"
                if not result.problems
                else "differs from the replay or not exactly once (see problems)"
            )
            batches = _batches(broker, settings)
            from reliability.kafka_log import epoch_order_problems

            order = epoch_order_problems(batches)
            result.problems += order
            transactional = sum(1 for b in batches if b.transactional and b.control is None)
            result.checks.append(
                f"{transactional:,} transactional batches on disk, every producer's epochs in "
                f"order: {'yes' if not order else 'NO'}"
            )
            run.batches = batches
            if after is not None:
                await after(run)
        if run.unplanned_exits:
            result.notes += run.unplanned_exits
            result.problems.append(f"{len(run.unplanned_exits)} unplanned worker exits")
        errors, expected = [], []
        for worker in members:
            for line in error_lines(worker):
                if expected_error is not None and expected_error(worker, line):
                    expected.append(line)
                else:
                    errors.append(f"{worker.name} log: {line[:240]}")
        if expected:
            result.notes.append(
                f"{len(expected)} expected error lines in the logs, e.g. {expected[0][:200]}"
            )
        if broker_outages:
            tracebacks = sum(1 for line in errors if "Traceback" in line)
            result.notes.append(
                f"the workers' logs hold {len(errors)} error lines, {tracebacks} of them "
                "tracebacks of the Kafka clients while the broker was away; "
                f"{len(errors) - tracebacks} others"
                + (
                    f", e.g. {[e for e in errors if 'Traceback' not in e][:2]}"
                    if len(errors) > tracebacks
                    else ""
                )
            )
        else:
            result.problems += errors[:5]
    except AssertionError as exc:
        result.problems.append(f"{str(exc)[:1500]}\n{run.pool.report()}")
    finally:
        if supervisor is not None:
            supervisor.cancel()
        run.pool.close()
        result.total_s = time.monotonic() - began
    return result


def error_lines(worker) -> list[str]:
    """The worker's error lines (the harness's marks); a traceback with its exception's line."""
    import re

    found = []
    for path in worker.log_paths:
        with contextlib.suppress(OSError):
            lines = path.read_text(errors="replace").splitlines()
            for index, line in enumerate(lines):
                if not any(mark in line for mark in _ERROR_MARKS):
                    continue
                if "Traceback" in line:
                    for after in lines[index + 1 : index + 80]:
                        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Fenced|Exit)\b", after):
                            line = f"Traceback: {after.strip()}"
                            break
                found.append(f"{path.name}: {line.strip()}")
    return found


#: What the integration harness counts as a worker going wrong (its ``WorkerProcess.errors``).
_ERROR_MARKS = ("Traceback", "CRITICAL", "rebuilding it", "a stage stopped", "Crashed")


def _batches(broker, settings) -> list:
    """The batches of every topic the workers write, from the broker's segment files."""
    from reliability.kafka_log import read_batches

    topics = settings.topics
    data = broker.work_dir / "data"
    names = (
        topics.outcomes,
        topics.usage,
        topics.alerts,
        topics.dead_letters,
        topics.account_updates,
        topics.conversations_changelog,
        topics.accounts_changelog,
    )
    return [batch for name in names for batch in read_batches(data, name)]


def _points(rng: random.Random, count: int, total: int, low: float, high: float) -> list[int]:
    """``count`` positions in the stream between fractions ``low`` and ``high`` of it.

    One at random in each of ``count`` equal slices, so that they are spread
    out: each fault gets time to be recovered from before the next.
    """
    width = (high - low) / count
    return [int(total * (low + width * (i + rng.random()))) for i in range(count)]


# -- scenarios -------------------------------------------------------------------------------


async def broker_restart(
    broker, directory: Path, seed: int, events: int, kinds: tuple[str, ...] = ("SIGTERM", "SIGKILL")
) -> Result:
    """Two workers; the broker restarted mid-stream on the same data, once per ``kinds``.

    A ``SIGTERM`` restart is a clean shutdown; a ``SIGKILL`` one a crash. The
    feed is held while the broker is down (as a producer buffers), so events
    reach the workers up to the outage late in wall time: a conversation
    whose next event comes more than the idle timeout after the previous one
    in wall time ends by inactivity first and is revised again (README,
    *Decisions*). Revision counts are therefore counted, not compared;
    everything else must equal the replay.
    """
    result = Result("broker-restart")
    rng = random.Random(f"{seed}:broker-restart")

    async def inject(run: Run) -> None:
        points = _points(rng, len(kinds), events, 0.15, 0.85)
        log_line(f"broker restarts after events {points} (seed {seed})")
        for number_, (point, kind) in enumerate(zip(points, kinds, strict=True), 1):
            await run.feeder.reach(point)
            await run.pool.wait_owning(run.pool.workers, timeout_s=120)
            async with run.feeder.held():
                run.fault(f"broker restart {number_} ({kind})")
                run.broker_up.clear()
                try:
                    down = await asyncio.to_thread(broker.restart, hard=kind == "SIGKILL")
                finally:
                    run.broker_up.set()
                run.result.notes.append(
                    f"restart {number_} ({kind}) after {run.feeder.sent:,} events: "
                    f"the broker answered again {down:.1f} s after it was stopped"
                )
                log_line(f"broker back after {down:.1f} s")

    return await run_scenario(
        broker, directory, result, seconds=events / 1000, rate=1000, seed=seed,
        workers="ab", inject=inject, broker_outages=True, revisions=False,
    )  # fmt: skip


async def sigkill(broker, directory: Path, seed: int, events: int, kills: int = 10) -> Result:
    """Two workers, ``events`` events; one worker SIGKILLed at ``kills`` seeded points."""
    result = Result("sigkill")
    rng = random.Random(f"{seed}:sigkill")
    # Each kill costs a session timeout (10 s) before the group moves on: spread the
    # log over enough time for every kill to land in the middle of the stream.
    seconds = max(60.0, kills * 20.0)

    async def inject(run: Run) -> None:
        points = _points(rng, kills, events, 0.03, 0.92)
        victims = [rng.choice(run.pool.workers) for _ in points]
        delays = [rng.uniform(0.0, 1.5) for _ in points]
        log_line(f"SIGKILL at events {points}, workers {[v.name for v in victims]} (seed {seed})")
        for point, victim, delay in zip(points, victims, delays, strict=True):
            await run.feeder.reach(point)
            await run.pool.wait_owning(run.pool.workers, timeout_s=120)
            await asyncio.sleep(delay)
            consumed = await _metric_or_none(victim, "botstream_events_in_total")
            run.down.add(victim)
            victim.kill()
            run.fault(f"SIGKILL {victim.name} ({consumed} events read by this process)")
            victim.start()
            run.down.discard(victim)

    return await run_scenario(
        broker, directory, result, seconds=seconds, rate=events / seconds, seed=seed,
        workers="ab", inject=inject, settle_timeout_s=300,
    )  # fmt: skip


async def _metric_or_none(worker, name: str) -> str:
    try:
        return f"{await worker.metric(name):,.0f}"
    except Exception:
        return "?"


async def zombie(broker, directory: Path, seed: int, events: int) -> Result:
    """SIGSTOP one of two workers past the session timeout; the other takes over; SIGCONT."""
    result = Result("zombie")
    rng = random.Random(f"{seed}:zombie")
    seconds = max(45.0, events / 1000)
    times: dict[str, int] = {}

    async def inject(run: Run) -> None:
        a, b = run.pool.workers
        point = _points(rng, 1, events, 0.2, 0.35)[0]
        await run.feeder.reach(point)
        await run.pool.wait_owning([a, b], timeout_s=120)
        times["owned_before"] = await a.owned()
        run.down.add(a)
        times["stop_ms"] = int(time.time() * 1000)
        os.kill(a.process.pid, signal.SIGSTOP)
        run.fault(f"SIGSTOP a (owning {times['owned_before']})")
        stopped = time.monotonic()
        await run.pool.wait_owning([b], timeout_s=90)
        took_over = time.monotonic() - stopped
        log_line(f"b owns every partition {took_over:.1f} s after the SIGSTOP")
        # Past the session timeout, and b processing a while on its own: then wake
        # the zombie up, mid-stream.
        await asyncio.sleep(max(0.0, PAST_SESSION_TIMEOUT_S - took_over) + rng.uniform(3.0, 8.0))
        times["resume_ms"] = int(time.time() * 1000)
        os.kill(a.process.pid, signal.SIGCONT)
        run.down.discard(a)
        run.fault("SIGCONT a")
        run.result.notes.append(
            f"SIGSTOP of a after {point:,} events; b owned every partition {took_over:.1f} s "
            f"later; a resumed after {time.monotonic() - stopped:.1f} s"
        )

    async def after(run: Run) -> None:
        from reliability.kafka_log import producers_by_partition, zombie_writes

        a, b = run.pool.workers
        topics = run.settings.topics
        owned = times["owned_before"]
        zombie_pids = {
            pid
            for stage, changelog in (
                ("conversations", topics.conversations_changelog),
                ("accounts", topics.accounts_changelog),
            )
            for pid, partition in producers_by_partition(run.batches, changelog).items()
            if partition in owned.get(stage, ())
        }
        found = zombie_writes(run.batches, zombie_pids, times["stop_ms"], times["resume_ms"])
        fenced_b = await b.metric("botstream_partitions_fenced_total")
        fenced_a = await a.metric("botstream_partitions_fenced_total")
        stood_still = [line for line in a.logs(2000).splitlines() if "stood still" in line]
        run.result.checks.append(
            f"a's producers (of the partitions it owned) fenced by b's takeover: "
            f"{len(found.fenced)} of {len(zombie_pids)}; batches of their old epochs stamped "
            f"after the SIGCONT: {len(found.after_resume)}, committed: "
            f"{len(found.committed_after_resume)}"
        )
        run.result.checks.append(
            f"botstream_partitions_fenced_total: a (the zombie) {fenced_a:.0f}, b {fenced_b:.0f}; "
            f"a's log says it stood still: {'yes' if stood_still else 'NO'}"
        )
        if stood_still:
            run.result.notes.append(f"a's log: {stood_still[0].strip()[-160:]}")
        if not found.fenced:
            run.result.problems.append("no producer of a was seen fenced by b")
        if found.committed_after_resume:
            run.result.problems.append(
                f"the zombie committed {len(found.committed_after_resume)} batches after it "
                f"resumed, e.g. {found.committed_after_resume[:3]}"
            )
        if fenced_b:
            run.result.problems.append("the resumed zombie fenced b")
        if not stood_still:
            run.result.problems.append("a did not notice its pause")

    def fenced_zombie(worker, line: str) -> bool:
        # The zombie's transactions refused as it wakes up: the fence, seen from its side.
        return worker.name == "a" and "ProducerFenced" in line

    return await run_scenario(
        broker, directory, result, seconds=seconds, rate=events / seconds, seed=seed,
        workers="ab", inject=inject, after=after, expected_error=fenced_zombie,
    )  # fmt: skip


async def kill_two(broker, directory: Path, seed: int, events: int) -> Result:
    """Three workers; two SIGKILLed at once; the third carries on alone."""
    result = Result("kill-two")
    rng = random.Random(f"{seed}:kill-two")
    seconds = max(40.0, events / 1000)

    async def inject(run: Run) -> None:
        workers = run.pool.workers
        point = _points(rng, 1, events, 0.25, 0.5)[0]
        victims = rng.sample(workers, 2)
        survivor = next(w for w in workers if w not in victims)
        await run.feeder.reach(point)
        await run.pool.wait_owning(workers, timeout_s=120)
        for victim in victims:
            run.down.add(victim)
        for victim in victims:
            os.killpg(victim.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        for victim in victims:
            victim.kill()  # reap
        run.fault(f"SIGKILL {' and '.join(v.name for v in victims)} at once")
        await run.pool.wait_owning([survivor], timeout_s=90)
        run.result.notes.append(
            f"{survivor.name} owned every partition {time.monotonic() - killed:.1f} s after "
            f"the kills, at event {point:,}"
        )

    return await run_scenario(
        broker, directory, result, seconds=seconds, rate=events / seconds, seed=seed,
        workers="abc", inject=inject,
    )  # fmt: skip


# -- the disk fills up ---------------------------------------------------------------------


DISK_MB = 160


def disk_full(directory: Path, seed: int, events: int) -> Result:
    """The broker's data directory on a small tmpfs that fills up while a worker runs."""
    result = Result("disk-full")
    mount = directory / "small-disk"
    mount.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        result.skipped = (
            f"mounting a {DISK_MB} MB tmpfs failed ({mounted.stderr.strip()[:120]}): it needs root"
        )
        return result
    try:
        return asyncio.run(_disk_full(mount, directory, seed, events, result))
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


async def _disk_full(mount: Path, directory: Path, seed: int, events: int, result: Result):
    """See :func:`disk_full`: fill the disk under a stream; free it; start the broker again."""
    from botstream.kafka.local_broker import LocalKafka
    from tests.integration.harness import (
        Outputs,
        SimLog,
        WorkerPool,
        compare_with_replay,
        exactly_once_problems,
        isolated_settings,
        produce,
        run_replay,
    )

    began = time.monotonic()
    broker = LocalKafka(work_dir=mount / "broker", keep_data=True)
    broker.start()
    pool = supervisor = None
    try:
        settings = await isolated_settings(broker.bootstrap)
        pool = WorkerPool(settings, directory / "workers")
        worker = pool.add("a", rules_env())
        worker.start()
        await pool.wait_owning([worker], timeout_s=120)
        timed = realtime_log(directory / "log", seconds=events / 2000, rate=2000, seed=seed)
        result.events, result.workers = len(timed.log.events), 1
        await produce(settings, settings.topics.plans, timed.log.plans)
        # Fill the disk to within a few MB, so that the stream's own writes fill it.
        filler = mount / "filler"
        free_mb = shutil.disk_usage(mount).free // 2**20
        with open(filler, "wb") as handle:
            handle.write(b"\0" * max(0, free_mb - 8) * 2**20)
        result.faults.append(
            f"data directory on a {DISK_MB} MB tmpfs with "
            f"{shutil.disk_usage(mount).free // 2**20} MB left"
        )
        exits: list[str] = []

        async def supervise() -> None:  # as systemd or Kubernetes would
            while True:
                await asyncio.sleep(0.5)
                if not worker.running:
                    tail = [line[-160:] for line in worker.logs(400).splitlines()
                            if "a stage stopped" in line][:1]  # fmt: skip
                    exits.append(
                        f"{time.monotonic() - filled_at:.0f} s after the feed began "
                        f"(status {worker.returncode}): {tail}"
                    )
                    worker.start()

        feeder = Feeder(settings, timed)
        feeding = asyncio.create_task(feeder.run())
        filled_at = time.monotonic()
        supervisor = asyncio.create_task(supervise())
        deadline = filled_at + events / 2000 + 60
        while time.monotonic() < deadline and broker.running and not feeding.done():
            await asyncio.sleep(0.5)
        died = not broker.running
        result.notes.append(
            f"the broker {'stopped' if died else 'kept running'} "
            f"{time.monotonic() - filled_at:.0f} s after the feed began, with "
            f"{feeder.sent:,} of {feeder.total:,} events sent and "
            f"{shutil.disk_usage(mount).free // 2**20} MB free"
        )
        result.notes += _broker_errors(broker)
        await asyncio.sleep(60)  # what the worker does meanwhile: a minute without a broker
        result.notes.append(
            f"a minute later: the worker exited {len(exits)} times ({exits[:2]}) and was "
            f"started again each time; its log: {_worker_trouble(worker)}"
        )
        feeding.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(feeding, 30)
        if not died:
            result.notes.append("the disk never filled up: nothing more to see")
            return result
        filler.unlink()
        down = await asyncio.to_thread(broker.restart)
        result.faults.append("disk freed, broker started again on its data")
        result.notes.append(
            f"with the disk freed, the broker started again on its data in {down:.0f} s"
        )
        # Whatever the producer could not deliver is sent again; the replay then runs
        # on exactly what the events topic holds.
        landed = await _topic_values(settings, settings.topics.events)
        missing = Counter(value for _, value in timed.log.events) - Counter(landed)
        rest = []
        for key, value in timed.log.events:
            if missing[value] > 0:
                missing[value] -= 1
                rest.append((key, value))
        result.notes.append(
            f"the events topic held {len(landed):,} events; the other {len(rest):,} were sent again"
        )
        await produce(settings, settings.topics.events, rest)
        held = await _topic_values(settings, settings.topics.events)
        events_path = directory / "events-in-kafka.jsonl"
        events_path.write_bytes(b"".join(value + b"\n" for value in held))
        log = SimLog(
            events_path, timed.log.plans_path, [(None, v) for v in held], timed.log.plans,
            timed.log.first_ms, timed.log.last_ms, timed.log.boundary_ms, timed.log.faults,
            timed.log.env,
        )  # fmt: skip
        replay = await asyncio.to_thread(run_replay, log, directory / "replay", settings.partitions)
        async with Outputs(settings) as outputs:
            settled = time.monotonic()
            await outputs.wait_settled(
                set(replay.outcomes), len(replay.dead_letters), timeout_s=240
            )
            result.recoveries.append(time.monotonic() - settled)
            await outputs.catch_up()
            result.problems += compare_with_replay(log, outputs, replay)
            result.problems += exactly_once_problems(outputs, log)
        result.notes.append(f"worker exits in all: {len(exits)}, {exits[:1]}")
        result.checks.append(
            f"{len(replay.outcomes):,} conversations, {replay.charges:,} charges: equal to the "
            "replay of what the events topic holds, and exactly once"
            if not result.problems
            else "differs from the replay or not exactly once (see problems)"
        )
    except AssertionError as exc:
        result.problems.append(str(exc)[:600])
    finally:
        if supervisor is not None:
            supervisor.cancel()
        if pool is not None:
            pool.close()
        broker.stop()
        result.total_s = time.monotonic() - began
    return result


async def _topic_values(settings, topic: str) -> list[bytes]:
    """Every value of ``topic``, partition by partition in offset order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from botstream.kafka.topics import kafka_client_kwargs

    consumer = AIOKafkaConsumer(
        **kafka_client_kwargs(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        found: dict[int, list] = {p: [] for p in range(settings.partitions)}
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for tp, records in (await consumer.getmany(timeout_ms=1000)).items():
                found[tp.partition] += [(r.offset, r.value) for r in records]
    finally:
        await consumer.stop()
    return [value for p in sorted(found) for _, value in sorted(found[p])]


def _worker_trouble(worker) -> str:
    lines = []
    for path in worker.log_paths:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if "WARNING" in line and ("transaction" in line or "acquir" in line):
                    lines.append(line.split("] ", 3)[-1].strip()[:140])
    return f"{len(lines)} warnings, e.g. {lines[:2]}" if lines else "no warnings"


def _broker_errors(broker) -> list[str]:
    lines = []
    with contextlib.suppress(OSError):
        for line in broker.log_path.read_text(errors="replace").splitlines():
            if "ERROR" in line or "FATAL" in line:
                lines.append("broker: " + line.strip()[:220])
    return lines[:4]


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the fault scenarios; 0 when every check held."""
    args = _parser().parse_args(argv)
    chosen = args.scenarios.split(",") if args.scenarios else list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        print(f"reliability faults: unknown scenarios {sorted(unknown)}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else time.time_ns() % 1_000_000
    # The harness's own readers: a broker restart is expected, not worth a log line each.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="botstream-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"faults: seed {seed} (--seed {seed} repeats the fault points), files in {work}")
    results = []
    from botstream.kafka.local_broker import LocalKafka

    sizes = {
        "broker-restart": args.events // 2,
        "sigkill": args.events,
        "zombie": args.events // 2,
        "kill-two": args.events // 2,
    }
    runners = {
        "broker-restart": broker_restart,
        "sigkill": sigkill,
        "zombie": zombie,
        "kill-two": kill_two,
    }
    for name in chosen:
        print(f"faults: {name}", flush=True)
        if name == "disk-full":
            result = disk_full(work / name, seed, min(args.events, 200_000))
        else:
            with LocalKafka(work_dir=work / name / "broker") as broker:
                result = asyncio.run(runners[name](broker, work / name, seed, sizes[name]))
        _print(result)
        results.append(result)
    failed = [r for r in results if r.problems]
    if not args.no_doc and set(chosen) == set(SCENARIOS):
        path = write_section("faults", _markdown(args, seed, results))
        print(f"faults: figures written to {path}")
    if not failed and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"faults: problems in {', '.join(r.name for r in failed)}; files kept in {work}")
    return 1 if failed else 0


def _print(result: Result) -> None:
    if result.skipped:
        print(f"  {result.name}: skipped: {result.skipped}")
        return
    status = "ok" if not result.problems else f"{len(result.problems)} PROBLEMS"
    print(
        f"  {result.name}: {result.events:,} events, {result.workers} workers, "
        f"{len(result.faults)} faults, recovered in {_recovery(result)}, settled "
        f"{result.settle_s:.1f} s after the last event, {result.total_s:.0f} s in all: {status}"
    )
    for line in result.checks + result.notes:
        print(f"      {line}")
    for problem in result.problems[:20]:
        print(f"    ! {problem}")


def _recovery(result: Result) -> str:
    values = sorted(result.recoveries)
    if not values:
        return "-"
    if len(values) <= 3:
        return ", ".join(f"{value:.1f} s" for value in result.recoveries)
    return f"{values[len(values) // 2]:.1f} s median, {values[-1]:.1f} s at most"


def _markdown(args, seed: int, results: list[Result]) -> str:
    rows = []
    for r in results:
        if r.skipped:
            rows.append((r.name, "-", "-", "skipped", "-", "-", r.skipped))
            continue
        rows.append(
            (
                r.name,
                number(r.events),
                r.workers,
                "; ".join(_short(f) for f in r.faults) if len(r.faults) <= 3
                else f"{len(r.faults)}: " + ", ".join(_short(f) for f in r.faults),
                _recovery(r),
                f"{r.settle_s:.1f} s",
                "passed" if not r.problems else f"**{len(r.problems)} problems**",
            )
        )  # fmt: skip
    details = []
    for r in results:
        if r.skipped:
            continue
        details.append(f"* **{r.name}** ({r.total_s:.0f} s in all):")
        details += [f"  * {line}" for line in r.checks + r.notes]
        details += [f"  * PROBLEM: {p[:300]}" for p in r.problems[:10]]
    problems = sum(len(r.problems) for r in results)
    return "\n".join(
        [
            "## Faults",
            "",
            f"`python -m reliability faults --events {args.events} --seed {seed}` ({machine()}).",
            "",
            "Events are sent in real time (each when its delivery time comes) to real "
            "`botstream worker` processes on a broker of the scenario's own; the check is "
            "the integration tests' one: the committed outcomes (revisions included), usage, "
            "alerts, statistics and dead letters equal `botstream replay --partitions 4` of "
            "the same log, and nothing is published or applied twice. *Recovered* is the "
            "time from a fault until every partition of every stage had an owner again and "
            "the conversation stage had committed every event sent by then; *settled* is the "
            "time from the last event sent until every output "
            f"was there (it includes the {IDLE_TIMEOUT} idle timeout, after which the wall "
            "clock ends the last conversations).",
            "",
            table(
                rows, ("scenario", "events", "workers", "faults", "recovered", "settled", "check")
            ),
            "",
            *details,
            "",
            f"Problems: {problems or 'none'}.",
        ]
    )


def _short(text: str) -> str:
    return text.split(" (")[0] if len(text) > 60 else text


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability faults",
        description="Broker restarts, SIGKILLed and SIGSTOPped workers, a full disk.",
    )
    parser.add_argument(
        "--scenarios", help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument(
        "--events", type=int, default=100_000,
        help="events of the sigkill run (the others get half of it)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, help="seed of the logs and fault points")
    parser.add_argument("--work", help="directory for logs and results (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files of a good run")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/reliability.md")
    return parser
