"""End-to-end machinery: a simulated log, `botstream worker` processes, outputs, replay.

The acceptance tests run the real worker command as subprocesses against the
session's broker and compare what it committed with `botstream replay` run on
the same bytes. This module holds what they share:

* :func:`generate_log` writes a simulated log (events and plan records) to files
  and keeps the records, so that the same bytes go to Kafka and to the replay;
* :class:`WorkerPool` starts `python -m botstream worker` processes, each in
  its own process group, and kills every one of them when closed (the tests'
  ``pool`` fixtures close it in teardown, so no worker outlives a test, even a
  failed one; at interpreter exit any pool still open is closed too, and each
  worker also dies with the test process, by PR_SET_PDEATHSIG);
* :class:`Outputs` follows the output topics ``read_committed`` and
  :meth:`Outputs.wait_settled` waits until the worker has processed everything;
* :func:`run_replay` runs `botstream replay` and loads its result files;
* :func:`compare_with_replay` and :func:`exactly_once_problems` are the checks.

Event time. The live stream bounds event time with the wall clock: a partition
that receives nothing for a second has its watermark advanced to now (that is
also what ends the last open conversations at the end of a test), and an
event dated ``retention`` or more before its partition's watermark is a
``late`` dead letter. The log must span a month boundary, and the last one is
usually more than the default 7 days ago, so both runs get a ``retention``
long enough to cover the log (see :attr:`SimLog.env`); with that, no event is
late and no state is dropped, in either run.
"""

from __future__ import annotations

import asyncio
import atexit
import calendar
import contextlib
import os
import random
import subprocess
import sys
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from botstream.config import Settings, TopicNames
from botstream.demo.processes import WorkerProcess as ChildWorker
from botstream.domain.config import DAY_MS, MINUTE_MS, DomainConfig
from botstream.domain.metering import warning_threshold
from botstream.domain.plans import add_plan, decode_plan, plan_at
from botstream.domain.timefmt import format_timestamp, parse_timestamp_ms
from botstream.kafka.local_broker import free_port
from botstream.kafka.topics import kafka_client_kwargs
from botstream.sim.generator import SimConfig, TrafficSimulator, expected_span_ms
from botstream.stream.metrics import metric_total
from tests.integration.conftest import produce
from tests.unit.schema_helpers import validator

PYTHON = sys.executable

#: Lower limits than the defaults, for both runs, so that several accounts cross them.
PLAN_LIMITS = "standard=20/60,pro=50/200"

#: The output topics the tests compare, and the schema of each one's records.
SCHEMAS = {
    "outcomes": "outcome",
    "usage": "usage",
    "alerts": "alert",
    "dead_letters": "dead-letter",
}


def log_line(message: str) -> None:
    """A progress line on stderr (shown by pytest for failed tests, or with -s)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the log ------------------------------------------------------------------------


@dataclass
class SimLog:
    """A simulated log, both as files (for the replay) and as records (for Kafka)."""

    events_path: Path
    plans_path: Path
    events: list[tuple[bytes | None, bytes]]
    plans: list[tuple[bytes | None, bytes]]
    #: Earliest and latest ``occurred_at`` of the well-formed events (epoch ms).
    first_ms: int
    last_ms: int
    #: The month boundary the log spans (epoch ms).
    boundary_ms: int
    faults: Counter
    #: ``BOTSTREAM_*`` rule settings for both runs (limits, retention).
    env: dict[str, str]

    def domain_config(self) -> DomainConfig:
        """The rules both runs use (for the test's own computations)."""
        from botstream.config import load_settings

        return load_settings(env=self.env).domain


def _month_start(ms: int, back: int = 0) -> int:
    day = datetime.fromtimestamp(ms / 1000, UTC)
    year, month = day.year, day.month - back
    while month < 1:
        year, month = year - 1, month + 12
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def generate_log(
    directory: Path,
    *,
    count: int = 20_000,
    seed: int = 7,
    accounts: int = 30,
    hot_accounts: int = 3,
    conversations_per_account_day: float = 50.0,
    duplicate_rate: float = 0.02,
    out_of_order_rate: float = 0.05,
    malformed_rate: float = 0.01,
) -> SimLog:
    """A simulated log of ``count`` records centred on the latest month boundary it fits.

    The log's event time must end well before now (more than the idle timeout,
    so that the wall-clock advance can end every conversation by the end of the
    test), so when the current month started too recently the previous month's
    boundary is used. ``retention`` is set so that no event of the log is ever
    late, even against a watermark at the wall clock.
    """
    directory.mkdir(parents=True, exist_ok=True)
    now_ms = int(time.time() * 1000)
    probe = SimConfig(
        seed=seed,
        count=count,
        accounts=accounts,
        hot_accounts=hot_accounts,
        conversations_per_account_day=conversations_per_account_day,
        duplicate_rate=duplicate_rate,
        out_of_order_rate=out_of_order_rate,
        malformed_rate=malformed_rate,
    )
    span = expected_span_ms(probe)
    boundary = _month_start(now_ms)
    # The run may last longer than expected: leave room, and two idle timeouts.
    if boundary + span + 60 * MINUTE_MS > now_ms:
        boundary = _month_start(now_ms, back=1)
    start = (boundary - span // 2) // 1000 * 1000
    sim = TrafficSimulator(
        SimConfig(
            **{f.name: getattr(probe, f.name) for f in fields(SimConfig)} | {"start_ms": start}
        )
    )
    retention_days = (now_ms - start) // DAY_MS + 8
    env = {"BOTSTREAM_PLAN_LIMITS": PLAN_LIMITS, "BOTSTREAM_RETENTION": f"{retention_days}d"}
    log = simulated_log(directory, sim, boundary, env)
    assert log.first_ms < boundary < log.last_ms, "the log must span a month boundary"
    assert log.last_ms < now_ms - 45 * MINUTE_MS, "the log must end before now - idle timeout"
    log_line(
        f"log: {len(log.events)} records ({dict(log.faults)}), {len(log.plans)} plan records, "
        f"{format_timestamp(log.first_ms)} .. {format_timestamp(log.last_ms)}, "
        f"retention {retention_days}d"
    )
    return log


def simulated_log(
    directory: Path, sim: TrafficSimulator, boundary_ms: int, env: dict[str, str]
) -> SimLog:
    """The records of ``sim``, kept and written as JSONL files in ``directory``."""
    plans = [(r.key, r.value) for r in sim.plan_records()]
    events = [(r.key, r.value) for r in sim.events()]
    for _, value in events + plans:
        assert b"\n" not in value and not value.endswith(b"\r"), "one record per JSONL line"
    events_path = directory / "events.jsonl"
    plans_path = directory / "plans.jsonl"
    events_path.write_bytes(b"".join(value + b"\n" for _, value in events))
    plans_path.write_bytes(b"".join(value + b"\n" for _, value in plans))
    stats = sim.stats
    return SimLog(
        events_path,
        plans_path,
        events,
        plans,
        stats.first_ms,
        stats.last_ms,
        boundary_ms,
        Counter(stats.faults),
        env,
    )


# -- worker processes ------------------------------------------------------------------


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``BOTSTREAM_*`` variables that make a worker use ``settings``' broker and topics."""
    env = {
        "BOTSTREAM_BOOTSTRAP": settings.bootstrap_servers,
        "BOTSTREAM_APP_ID": settings.app_id,
        "BOTSTREAM_PARTITIONS": str(settings.partitions),
        "BOTSTREAM_REPLICATION_FACTOR": str(settings.replication_factor),
    }
    for f in fields(TopicNames):
        env[f"BOTSTREAM_TOPIC_{f.name.upper()}"] = getattr(settings.topics, f.name)
    return env


#: The worker command (``--log-level info`` so that its logs say what it did).
WORKER_ARGS = ("worker", "--log-level", "info")

#: Log lines that mean the worker went wrong (stage failures, crashes).
_ERROR_MARKS = (
    "Traceback",
    "CRITICAL",
    "a stage stopped",
    "Crashed",
    "could not acquire",
    "handling an assignment failed",
    "handling a revocation failed",
)


class WorkerProcess(ChildWorker):
    """One `botstream worker` subprocess in its own process group; restartable.

    It dies with the test process (PR_SET_PDEATHSIG, see
    :mod:`botstream.demo.processes`).
    """

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        super().__init__(WORKER_ARGS, env, log_dir / f"{name}.0.log", cwd=log_dir)
        self.name = name
        self.port = int(env["BOTSTREAM_WEB_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.starts = 0
        self.log_paths: list[Path] = []

    def start(self) -> None:
        """Start the worker (a new log file for every start)."""
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        self.log_path = self.log_dir / f"{self.name}.{self.starts}.log"
        self.log_paths.append(self.log_path)
        data_dir = self.log_dir / f"{self.name}-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.env["BOTSTREAM_DATA_DIR"] = str(data_dir)
        super().start()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM, then SIGKILL whatever is left of the process group."""
        super().stop(timeout_s)

    def logs(self, tail_lines: int = 60) -> str:
        """The last lines of each of this worker's log files."""
        parts = []
        for path in self.log_paths:
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").splitlines()
                parts.append(f"--- {path.name} ---\n" + "\n".join(lines[-tail_lines:]))
        return "\n".join(parts)

    def errors(self) -> list[str]:
        """Tracebacks and botstream's own error lines, of every start.

        (The clients' transient errors while the broker settles, such as
        GroupCoordinatorNotAvailable or NotEnoughReplicas retries, are not.)
        """
        found = []
        for path in self.log_paths:
            with contextlib.suppress(OSError):
                for line in path.read_text(errors="replace").splitlines():
                    if any(mark in line for mark in _ERROR_MARKS):
                        found.append(f"{path.name}: {line}")
        return found

    # -- HTTP ------------------------------------------------------------------------

    async def get(self, path: str, **params: str) -> tuple[int, bytes]:
        """``GET path`` on this worker: ``(status, body)``."""
        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(self.url + path, params=params or None) as response,
        ):
            return response.status, await response.read()

    async def get_json(self, path: str, retry_s: float = 20.0, **params: str) -> Any:
        """``GET path`` as JSON, retrying a 503 (no owner right now) for ``retry_s``."""
        deadline = time.monotonic() + retry_s
        while True:
            status, body = await self.get(path, **params)
            if status == 200:
                return orjson.loads(body)
            if status != 503 or time.monotonic() > deadline:
                raise AssertionError(f"{self.name} GET {path} {params}: {status} {body[:300]!r}")
            await asyncio.sleep(0.5)

    async def health(self) -> dict | None:
        """``GET /health`` as JSON, or None while the worker does not answer."""
        try:
            status, body = await self.get("/health")
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
        return orjson.loads(body) if status in (200, 503) else None

    async def metric(self, name: str) -> float:
        """The sum of every sample of Prometheus metric ``name`` on ``GET /metrics``."""
        _, body = await self.get("/metrics")
        return parse_metric(body.decode(), name)

    async def owned(self) -> dict[str, list[int]]:
        """The partitions of each stage this worker owns now (empty when it does not answer)."""
        health = await self.health()
        return {} if health is None else health["partitions"]


def parse_metric(text: str, name: str) -> float:
    """Sum of the samples of ``name`` (with any labels) in Prometheus text ``text``."""
    total = metric_total(text, name)
    if total is None:
        raise AssertionError(f"metric {name} not in /metrics")
    return total


_OPEN_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


class WorkerPool:
    """The workers of one test; :meth:`close` kills every process it started."""

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.workers: list[WorkerProcess] = []
        log_dir.mkdir(parents=True, exist_ok=True)
        _OPEN_POOLS.add(self)

    def add(self, name: str, env: dict[str, str]) -> WorkerProcess:
        """A new worker (not started yet) with its own web port and the rules of ``env``."""
        env = settings_env(self.settings) | env
        env |= {"BOTSTREAM_WEB_HOST": "127.0.0.1", "BOTSTREAM_WEB_PORT": str(free_port())}
        worker = WorkerProcess(name, env, self.log_dir)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        """Kill every worker process group (teardown)."""
        for worker in self.workers:
            worker.kill()
        _OPEN_POOLS.discard(self)

    def report(self) -> str:
        """Where every worker's logs are, for a failure message."""
        paths = [str(path) for worker in self.workers for path in worker.log_paths]
        return "worker logs: " + " ".join(paths)

    async def wait_owning(
        self, workers: Iterable[WorkerProcess], timeout_s: float = 60.0, each: bool = True
    ) -> dict[str, dict[str, list[int]]]:
        """Wait until ``workers`` together own every partition of every stage.

        With ``each`` every one of them must also own at least one partition of
        each stage (the group has settled on all of them).
        """
        workers = list(workers)
        deadline = time.monotonic() + timeout_s
        partitions = set(range(self.settings.partitions))
        while True:
            owned = {w.name: await w.owned() for w in workers}
            stages = ("conversations", "plans", "accounts")
            complete = all(
                sorted(p for o in owned.values() for p in o.get(stage, ())) == sorted(partitions)
                for stage in stages
            )
            if complete and (
                not each or all(all(o.get(s) for s in stages) for o in owned.values())
            ):
                return owned
            for worker in workers:
                if worker.process is not None and worker.process.poll() is not None:
                    raise AssertionError(f"{worker.name} exited:\n{worker.logs(15)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"partitions not owned after {timeout_s} s: {owned}")
            await asyncio.sleep(0.5)


@atexit.register
def _close_open_pools() -> None:
    for pool in list(_OPEN_POOLS):
        pool.close()


# -- reading the topics -------------------------------------------------------------


@dataclass(slots=True)
class Rec:
    """One committed record of a topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes

    def json(self) -> Any:
        """The value as JSON."""
        return orjson.loads(self.value)


class TopicReader:
    """Follows one topic ``read_committed``, accumulating its records in log order."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self.records: list[Rec] = []
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]

    async def start(self) -> None:
        """Connect and start at the beginning of every partition."""
        self._consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()

    async def catch_up(self) -> list[Rec]:
        """Read every record committed so far (up to the current last stable offsets)."""
        consumer = self._consumer
        end = await consumer.end_offsets(self._partitions)
        new: list[Rec] = []
        while True:
            behind = [tp for tp in self._partitions if await consumer.position(tp) < end[tp]]
            if not behind:
                break
            batch = await consumer.getmany(*behind, timeout_ms=500, max_records=20_000)
            for tp, items in batch.items():
                new.extend(Rec(tp.partition, r.offset, r.key, r.value) for r in items)
        self.records.extend(new)
        return new

    def last_offsets(self) -> dict[int, int]:
        """Partition -> offset of its last record read."""
        last: dict[int, int] = {}
        for rec in self.records:
            last[rec.partition] = max(rec.offset, last.get(rec.partition, -1))
        return last


async def group_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """Committed offsets of consumer group ``group`` on ``topic``, by partition."""
    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


class Outputs:
    """Everything the workers committed: the four output topics and the internal stream."""

    def __init__(self, settings: Settings) -> None:
        topics = settings.topics
        self.settings = settings
        self.readers = {
            "outcomes": TopicReader(settings, topics.outcomes),
            "usage": TopicReader(settings, topics.usage),
            "alerts": TopicReader(settings, topics.alerts),
            "dead_letters": TopicReader(settings, topics.dead_letters),
            "updates": TopicReader(settings, topics.account_updates),
        }

    async def __aenter__(self) -> Outputs:
        for reader in self.readers.values():
            await reader.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for reader in self.readers.values():
            with contextlib.suppress(Exception):
                await reader.stop()

    def records(self, name: str) -> list[Rec]:
        """The records of output ``name`` read so far, in log order per partition."""
        return self.readers[name].records

    def values(self, name: str) -> list[dict]:
        """The values of output ``name`` as JSON, in log order per partition."""
        return [r.json() for r in sorted(self.records(name), key=lambda r: (r.partition, r.offset))]

    async def catch_up(self) -> None:
        """Read everything committed so far on every topic."""
        for reader in self.readers.values():
            await reader.catch_up()

    async def wait_plans_read(self, expected: int, timeout_s: float = 60.0) -> None:
        """Wait until the plan stage has forwarded ``expected`` plan records to the accounts."""
        deadline = time.monotonic() + timeout_s
        while True:
            await self.readers["updates"].catch_up()
            plans = sum(1 for r in self.records("updates") if r.json()["t"] == "plan")
            if plans >= expected:
                return  # more would be doubles: exactly_once_problems reports them
            if time.monotonic() > deadline:
                raise AssertionError(f"only {plans} of {expected} plan records read")
            await asyncio.sleep(0.3)

    async def wait_settled(
        self,
        conversations: set[str],
        dead_letters: int,
        timeout_s: float,
        alive: Iterable[WorkerProcess] = (),
    ) -> float:
        """Wait until the workers have processed every input record and gone quiet.

        Settled means: every conversation of ``conversations`` has an outcome,
        ``dead_letters`` dead letters were published, the conversation and
        account stages' groups have committed past every record of their input,
        and nothing new was committed for a second. Returns when it settled
        (``time.monotonic()`` of the first poll that saw everything).
        """
        settings = self.settings
        topics = settings.topics
        deadline = time.monotonic() + timeout_s
        seen: set[str] = set()
        counted = 0
        first_complete = None
        previous = None
        end_events = await _end_offsets(settings, topics.events)
        while True:
            await self.catch_up()
            outcomes = self.records("outcomes")
            seen.update(orjson.loads(r.value)["conversation_id"] for r in outcomes[counted:])
            counted = len(outcomes)
            status = (
                len(seen & conversations),
                len(self.records("dead_letters")),
                tuple(sorted(self.readers["updates"].last_offsets().items())),
            )
            complete = status[0] == len(conversations) and status[1] >= dead_letters
            if complete:
                consumed = await group_offsets(
                    settings, f"{settings.app_id}-conversations", topics.events
                )
                updates = await group_offsets(
                    settings, f"{settings.app_id}-accounts", topics.account_updates
                )
                complete = all(consumed.get(p, 0) >= end for p, end in end_events.items()) and all(
                    updates.get(p, 0) > last for p, last in status[2]
                )
            if complete:
                first_complete = first_complete or time.monotonic()
                if status == previous:
                    return first_complete
            else:
                first_complete = None
            previous = status
            for worker in alive:
                if not worker.running:
                    raise AssertionError(f"{worker.name} exited:\n{worker.logs(15)}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not settled after {timeout_s} s: {status[0]}/{len(conversations)} "
                    f"conversations, {status[1]}/{dead_letters} dead letters"
                )
            await asyncio.sleep(1.0)

    # -- results ---------------------------------------------------------------------

    def latest_outcomes(self) -> dict[str, dict]:
        """The last outcome record of every conversation, in log order."""
        return {v["conversation_id"]: v for v in self.values("outcomes")}

    def latest_usage(self) -> dict[tuple[str, str], dict]:
        """The last usage record of every ``account:month`` key."""
        return {(v["account_id"], v["month"]): v for v in self.values("usage")}


async def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**kafka_client_kwargs(settings), enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        end = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in end.items()}
    finally:
        await consumer.stop()


async def produce_paced(
    settings: Settings,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    seconds: float,
    chunks: int = 40,
) -> None:
    """Produce ``records`` in order, in ``chunks`` spread over about ``seconds``."""
    size = -(-len(records) // chunks)
    pause = seconds / chunks
    for start in range(0, len(records), size):
        await produce(settings, topic, records[start : start + size])
        await asyncio.sleep(pause)


# -- the reference: botstream replay ---------------------------------------------------


@dataclass
class ReplayOutputs:
    """The five result files of `botstream replay`."""

    outcomes: dict[str, dict]
    usage: dict[tuple[str, str], dict]
    alerts: list[dict]
    stats: list[dict]
    dead_letters: list[dict]
    seconds: float = 0.0

    @property
    def charges(self) -> int:
        """How many conversations were charged (the sum of the final ``used``)."""
        return sum(u["used"] for u in self.usage.values())


def run_replay(log: SimLog, out: Path, partitions: int = 1) -> ReplayOutputs:
    """`botstream replay` on the log's files with the log's rules; its results.

    With ``partitions`` > 1 the replay keeps event time per partition as the
    live stream does (``--partitions``), so revision counts can be compared.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")} | log.env
    began = time.monotonic()
    result = subprocess.run(
        [
            *(PYTHON, "-m", "botstream", "replay", str(log.events_path)),
            *("--plans", str(log.plans_path), "--out", str(out), "--quiet"),
            *("--partitions", str(partitions)),
        ],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
    )
    seconds = time.monotonic() - began
    assert result.returncode == 0, result.stderr.decode(errors="replace")

    def load(name: str) -> list[dict]:
        return [orjson.loads(line) for line in (out / name).read_bytes().splitlines() if line]

    outcomes = {r["conversation_id"]: r for r in load("outcomes.jsonl")}
    usage = {(r["account_id"], r["month"]): r for r in load("usage.jsonl")}
    return ReplayOutputs(
        outcomes,
        usage,
        load("alerts.jsonl"),
        load("stats.jsonl"),
        load("dead_letters.jsonl"),
        seconds,
    )


# -- checks -------------------------------------------------------------------------


def _without_revision(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "revision"}


def stable_limit_months(
    log: SimLog, replay: ReplayOutputs
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """``(stable, changing)``: (account, month) pairs by whether one limit priced every charge.

    SPEC section 5 promises the same set of alert ids with the same ``used``
    and ``limit`` only "while the month's limit stays the same": when a plan
    change falls among a month's charges, which charges come first across
    partitions decides which alerts fire, and the live stream interleaves the
    conversation partitions differently from the single-partition replay.
    """
    config = log.domain_config()
    histories: dict[str, Any] = {}
    for _, value in log.plans:
        plan = decode_plan(value, config)
        histories[plan.account_id] = add_plan(histories.get(plan.account_id), plan)
    limits: dict[tuple[str, str], set[int]] = defaultdict(set)
    for record in replay.outcomes.values():
        if record["billable_at"] is not None:
            at = parse_timestamp_ms(record["billable_at"])
            key = (record["account_id"], record["billing_month"])
            limits[key].add(plan_at(histories.get(record["account_id"]), at, config).limit)
    stable = {key for key, found in limits.items() if len(found) == 1}
    return stable, set(limits) - stable


def compare_with_replay(
    log: SimLog, outputs: Outputs, replay: ReplayOutputs, *, revisions: bool = False
) -> list[str]:
    """Every way the committed outputs differ from the replay's (empty when they agree).

    With ``revisions`` the outcomes' revision counts must agree too.
    """
    problems: list[str] = []
    live = outputs.latest_outcomes()
    # Outcomes: the latest record of each conversation, on every field but `revision`
    # unless asked. The revision counts how many times a conversation was published,
    # and that depends on when event time moved: the live stream has one watermark
    # per partition and moves an idle partition's watermark to the wall clock, so a
    # conversation that really stayed silent for the idle timeout in wall time can
    # be ended there and then revised by its next event, where the replay's single
    # watermark ended it once. A log whose events all arrive well after their event
    # time, processed without wall-clock pauses, must give the replay's revisions.
    strip = (lambda record: record) if revisions else _without_revision
    missing = sorted(set(replay.outcomes) - set(live))
    extra = sorted(set(live) - set(replay.outcomes))
    if missing or extra:
        problems.append(
            f"conversation ids differ: {len(missing)} missing (e.g. {missing[:5]}), "
            f"{len(extra)} extra (e.g. {extra[:5]})"
        )
    differing = [
        (cid, live[cid], replay.outcomes[cid])
        for cid in sorted(set(live) & set(replay.outcomes))
        if strip(live[cid]) != strip(replay.outcomes[cid])
    ]
    if differing:
        cid, got, want = differing[0]
        problems.append(
            f"{len(differing)} outcomes differ from the replay; first {cid}:\n"
            f"  live   {got}\n  replay {want}"
        )
    # Usage: the final record of every account and month, exactly.
    usage = outputs.latest_usage()
    if usage != replay.usage:
        keys = sorted(set(usage) | set(replay.usage))
        diff = [
            (k, usage.get(k), replay.usage.get(k))
            for k in keys
            if usage.get(k) != replay.usage.get(k)
        ]
        problems.append(f"{len(diff)} usage records differ; first: {diff[:3]}")
    # Alerts: the same ids with the same used and limit, where the month's limit
    # did not change among its charges (see stable_limit_months).
    stable, _ = stable_limit_months(log, replay)

    def alert_view(alerts: list[dict], only: set[tuple[str, str]]) -> dict[str, tuple]:
        return {
            a["alert_id"]: (a["used"], a["limit"])
            for a in alerts
            if (a["account_id"], a["month"]) in only
        }

    live_alerts = outputs.values("alerts")
    got, want = alert_view(live_alerts, stable), alert_view(replay.alerts, stable)
    if got != want:
        problems.append(
            f"alerts differ on months with one limit: live only "
            f"{sorted(set(got.items()) - set(want.items()))}, replay only "
            f"{sorted(set(want.items()) - set(got.items()))}"
        )
    _, changing = stable_limit_months(log, replay)
    got, want = alert_view(live_alerts, changing), alert_view(replay.alerts, changing)
    if got != want:
        log_line(
            "alerts differ on months whose limit changed (allowed by SPEC section 5): "
            f"live only {sorted(set(got.items()) - set(want.items()))}, "
            f"replay only {sorted(set(want.items()) - set(got.items()))}"
        )
    problems += alert_rule_problems(live_alerts, log.domain_config().warning_percent)
    # Dead letters: same number, same errors and same raw values (their topic,
    # partition, offset and key say where they came from, which differs by nature).
    dead = outputs.values("dead_letters")
    if len(dead) != len(replay.dead_letters):
        problems.append(f"{len(dead)} dead letters, replay has {len(replay.dead_letters)}")
    if Counter(d["error"] for d in dead) != Counter(d["error"] for d in replay.dead_letters):
        got_e = Counter(d["error"] for d in dead)
        want_e = Counter(d["error"] for d in replay.dead_letters)
        problems.append(
            f"dead-letter errors differ: live-replay {got_e - want_e}, replay-live {want_e - got_e}"
        )
    if Counter(d["value"] for d in dead) != Counter(d["value"] for d in replay.dead_letters):
        problems.append("dead-letter values differ")
    return problems


def alert_rule_problems(alerts: list[dict], warning_percent: int) -> list[str]:
    """Alerts that break SPEC section 5's rules whatever the order of charges."""
    problems = []
    for alert in alerts:
        used, limit, kind = alert["used"], alert["limit"], alert["kind"]
        ok = {
            "quota.warning": used >= warning_threshold(limit, warning_percent),
            "quota.limit_reached": used >= limit,
            "quota.exceeded": used > limit,
        }[kind]
        if not ok or alert["alert_id"] != f"{alert['account_id']}:{alert['month']}:{kind}:{limit}":
            problems.append(f"alert breaks its rule: {alert}")
    return problems


def exactly_once_problems(outputs: Outputs, log: SimLog) -> list[str]:
    """Doubles or gaps in what was committed: revisions, charges, alerts, dead letters.

    Besides the output topics this reads the internal stream between the
    stages (``botstream-account-updates``): every plan record is forwarded
    once and every conversation charged once.
    """
    problems: list[str] = []
    # Outcomes: per conversation, revisions 1..n, each once, in log order.
    revisions: dict[str, list[int]] = defaultdict(list)
    for value in outputs.values("outcomes"):
        revisions[value["conversation_id"]].append(value["revision"])
    bad = {cid: revs for cid, revs in revisions.items() if revs != list(range(1, len(revs) + 1))}
    if bad:
        sample = dict(list(bad.items())[:5])
        problems.append(f"{len(bad)} conversations with revisions not 1..n once each: {sample}")
    # Usage: one record per charge, so `used` goes 1, 2, 3, ... per key in log order.
    used: dict[tuple[str, str], list[int]] = defaultdict(list)
    for value in outputs.values("usage"):
        used[(value["account_id"], value["month"])].append(value["used"])
    bad_usage = {k: u for k, u in used.items() if u != list(range(1, len(u) + 1))}
    if bad_usage:
        sample = {k: _runs(u) for k, u in list(bad_usage.items())[:5]}
        problems.append(f"{len(bad_usage)} usage keys whose `used` is not 1, 2, 3...: {sample}")
    # ...and a charge applied twice (an input record of the account stage
    # processed twice) still steps by one: the final `used` of each month must
    # be the number of conversations billed in it (each is charged once, and
    # billable_at and billing_month never change once charged).
    billed = Counter(
        (v["account_id"], v["billing_month"])
        for v in outputs.latest_outcomes().values()
        if v["billable"]
    )
    final = {key: u[-1] for key, u in used.items()}
    if final != dict(billed):
        wrong = {
            k: (final.get(k), billed.get(k))
            for k in sorted(set(final) | set(billed))
            if final.get(k) != billed.get(k)
        }
        problems.append(
            f"{len(wrong)} usage keys whose final `used` is not the number of conversations "
            f"billed in the month, (used, billed): {dict(list(wrong.items())[:8])}"
        )
    # Alerts: each id once.
    ids = Counter(a["alert_id"] for a in outputs.values("alerts"))
    doubled = {i: n for i, n in ids.items() if n > 1}
    if doubled:
        problems.append(f"alerts published more than once: {doubled}")
    # Charges on the internal stream: each conversation charged once.
    charges = Counter(v["conversation_id"] for v in outputs.values("updates") if v["t"] == "charge")
    doubled_charges = {c: n for c, n in charges.items() if n > 1}
    if doubled_charges:
        problems.append(
            f"conversations charged more than once: {dict(list(doubled_charges.items())[:10])}"
        )
    # Plan records on the internal stream: each input plan record forwarded once.
    forwarded = Counter(
        (v["account_id"], v["plan"], v["chatbot_pack"], v["effective_at"])
        for v in outputs.values("updates")
        if v["t"] == "plan"
    )
    config = log.domain_config()
    wanted = Counter()
    for _, value in log.plans:
        plan = decode_plan(value, config)
        wanted[(plan.account_id, plan.plan, plan.chatbot_pack, plan.effective_at)] += 1
    if forwarded != wanted:
        doubled_plans = forwarded - wanted
        problems.append(
            f"plan records forwarded {sum(forwarded.values())} times for {sum(wanted.values())} "
            f"records; extra: {sum(doubled_plans.values())} (e.g. {list(doubled_plans)[:3]}), "
            f"missing: {sum((wanted - forwarded).values())}"
        )
    # Dead letters: each input record once.
    where = Counter(
        (d["topic"], d["partition"], d["offset"]) for d in outputs.values("dead_letters")
    )
    doubled_dead = {w: n for w, n in where.items() if n > 1}
    if doubled_dead:
        problems.append(f"dead letters published more than once: {doubled_dead}")
    return problems


def _runs(values: list[int]) -> str:
    """``1-17, 17-40`` for a sequence, to show where it jumps or repeats."""
    runs = []
    start = prev = values[0]
    for v in values[1:]:
        if v != prev + 1:
            runs.append(f"{start}-{prev}")
            start = v
        prev = v
    runs.append(f"{start}-{prev}")
    return ", ".join(runs)


def schema_problems(outputs: Outputs, replay: ReplayOutputs | None = None) -> list[str]:
    """Records of the output topics (and the replay's files) that break their schema."""
    problems = []
    for name, schema in SCHEMAS.items():
        check = validator(schema)
        records = outputs.values(name)
        if replay is not None:
            records = (
                records
                + {
                    "outcomes": list(replay.outcomes.values()),
                    "usage": list(replay.usage.values()),
                    "alerts": replay.alerts,
                    "dead_letters": replay.dead_letters,
                }[name]
            )
        for record in records:
            errors = list(check.iter_errors(record))
            if errors:
                problems.append(f"{name} record breaks {schema}: {errors[0].message}: {record}")
                break
    if replay is not None:
        stats_check = validator("stats")
        for record in replay.stats:
            stats_check.validate(record)
    return problems


async def final_problems(
    log: SimLog, outputs: Outputs, replay: ReplayOutputs, worker: WorkerProcess
) -> list[str]:
    """Every check of a finished run: equal to the replay, exactly once, schemas, stats."""
    problems = compare_with_replay(log, outputs, replay)
    problems += exactly_once_problems(outputs, log)
    problems += schema_problems(outputs, replay)
    problems += await stats_problems(worker, replay)
    return problems


async def stats_problems(worker: WorkerProcess, replay: ReplayOutputs) -> list[str]:
    """Statistics served by ``worker`` that differ from the replay's stats.jsonl."""
    problems = []
    check = validator("stats")
    for want in replay.stats:
        got = await worker.get_json(f"/stats/{want['account_id']}", month=want["month"])
        errors = list(check.iter_errors(got))
        if errors:
            problems.append(f"/stats breaks the schema: {errors[0].message}: {got}")
        if got != want:
            problems.append(f"stats of {want['account_id']} {want['month']}: {got} != {want}")
    return problems


def summary(log: SimLog, replay: ReplayOutputs, outputs: Outputs) -> str:
    """One line about what the run covered."""
    _, changing = stable_limit_months(log, replay)
    crossed = sorted(f"{a}:{m}" for (a, m), u in replay.usage.items() if u["used"] >= u["limit"])
    return (
        f"{len(replay.outcomes)} conversations, {replay.charges} charges, "
        f"{len(replay.alerts)} alerts, {len(replay.dead_letters)} dead letters, "
        f"months {sorted({m for _, m in replay.usage})}, {len(crossed)} account-months at or "
        f"over the limit, {len(changing)} with a limit change; live: "
        f"{len(outputs.records('outcomes'))} outcome revisions"
    )


def rng_for(request_name: str) -> random.Random:
    """A random generator seeded from the test (and BOTSTREAM_TEST_SEED, printed)."""
    seed = int(os.environ.get("BOTSTREAM_TEST_SEED") or time.time_ns() % 1_000_000)
    log_line(f"{request_name}: kill timing seed {seed} (set BOTSTREAM_TEST_SEED to repeat)")
    return random.Random(seed)


# -- one settled run shared by several tests (ops commands, billing example) ----------


async def isolated_settings(bootstrap: str, partitions: int = 4) -> Settings:
    """Settings with topics and groups of their own, topics created (as ``stream_settings``)."""
    import uuid
    from dataclasses import replace

    from botstream.config import load_settings
    from botstream.kafka.topics import ensure_topics

    settings = load_settings(env={}).with_prefix(f"m{uuid.uuid4().hex[:8]}-")
    settings = replace(settings, bootstrap_servers=bootstrap, partitions=partitions)
    await ensure_topics(settings)
    return settings


@dataclass
class SettledRun:
    """A worker that processed a whole simulated log, and what it committed."""

    settings: Settings
    log: SimLog
    replay: ReplayOutputs
    worker: WorkerProcess
    #: The committed alerts, in log order per partition.
    alerts: list[dict]
    #: The last committed outcome of every conversation, and how many outcome records.
    outcomes: dict[str, dict]
    outcome_records: int


async def settled_run(
    settings: Settings,
    directory: Path,
    pool: WorkerPool,
    *,
    count: int,
    seed: int,
    accounts: int = 30,
    plan_limits: str = PLAN_LIMITS,
) -> SettledRun:
    """Run one worker of ``pool`` on a simulated log until it settled; checked against the replay.

    Plans first, then events, as the replay reads them; the worker keeps
    running afterwards (for the read API). Few ``accounts`` and low
    ``plan_limits`` make a small log cross limits.
    """
    log = generate_log(directory / "log", count=count, seed=seed, accounts=accounts)
    log.env["BOTSTREAM_PLAN_LIMITS"] = plan_limits
    replay = run_replay(log, directory / "replay")
    worker = pool.add("worker", log.env)
    async with Outputs(settings) as outputs:
        await produce(settings, settings.topics.plans, log.plans)
        worker.start()
        await pool.wait_owning([worker])
        await outputs.wait_plans_read(len(log.plans))
        await produce(settings, settings.topics.events, log.events)
        await outputs.wait_settled(
            set(replay.outcomes), len(replay.dead_letters), timeout_s=90, alive=[worker]
        )
        problems = compare_with_replay(log, outputs, replay)
        assert not problems, "\n".join(problems) + "\n" + pool.report()
        return SettledRun(
            settings,
            log,
            replay,
            worker,
            outputs.values("alerts"),
            outputs.latest_outcomes(),
            len(outputs.records("outcomes")),
        )
