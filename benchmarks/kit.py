"""What every section of ``make bench`` shares: traffic, topics, processes, offsets, RSS.

Nothing here measures anything by itself. The sections (``throughput.py``,
``latency.py``, ``memory.py``, ``replay_throughput.py``) use these pieces so
that every contender sees the same data on the same broker, and every figure
is timed the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from botstream.config import Settings, TopicNames, load_settings
from botstream.kafka.local_broker import cache_dir, free_port
from botstream.sim.generator import SimConfig, TrafficSimulator, expected_span_ms

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PEERS = HERE / "peers"
PYTHON = sys.executable

Record = tuple[bytes | None, bytes]


def log(message: str) -> None:
    """A progress line on stderr, so that stdout keeps only the results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_cache() -> Path:
    """Where generated logs and the Kafka Streams build are kept between runs."""
    path = cache_dir() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- traffic ----------------------------------------------------------------------------


@dataclass
class Traffic:
    """Simulated plan records and widget events, the events dated up to a few minutes ago."""

    plans: list[Record]
    events: list[Record]
    first_ms: int
    last_ms: int
    #: Records the simulator made malformed on purpose (botstream's dead letters).
    malformed: int = 0


def simulated_traffic(events: int, seed: int = 3, end_before_now_s: float = 600) -> Traffic:
    """``events`` records from ``botstream simulate``'s generator, ending before now.

    The default simulator configuration (the one ``botstream simulate`` uses),
    with its share of duplicates, out-of-order and malformed records.
    """
    probe = SimConfig(seed=seed, count=events)
    start = int(time.time() * 1000) - expected_span_ms(probe) - int(end_before_now_s * 1000)
    simulator = TrafficSimulator(replace(probe, start_ms=start))
    plans = [(r.key, r.value) for r in simulator.plan_records()]
    records = [(r.key, r.value) for r in simulator.events()]
    stats = simulator.stats
    return Traffic(plans, records, stats.first_ms or start, stats.last_ms or start, stats.malformed)


# -- topics and records -------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(bootstrap: str):
    """An aiokafka admin client, closed afterwards."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 4,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create plain topics (existing ones are left alone) and wait until they are usable."""
    names = list(names)
    async with admin_client(bootstrap) as admin:
        for name in names:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(
                    [NewTopic(name, partitions, 1, topic_configs=dict(config or {}))]
                )
        for _ in range(200):
            described = await admin.describe_topics(names)
            if all(len(t.get("partitions") or ()) == partitions for t in described):
                return
            await asyncio.sleep(0.05)
    raise RuntimeError(f"topics {names} did not appear")


async def delete_topics_containing(bootstrap: str, tag: str) -> None:
    """Delete every topic whose name contains ``tag`` (a finished run's topics)."""
    async with admin_client(bootstrap) as admin:
        names = [name for name in await admin.list_topics() if tag in name]
        if names:
            with contextlib.suppress(Exception):
                await admin.delete_topics(names)


async def topics_containing(bootstrap: str, tag: str) -> list[str]:
    """The names of the topics that contain ``tag``."""
    async with admin_client(bootstrap) as admin:
        return sorted(name for name in await admin.list_topics() if tag in name)


async def produce(bootstrap: str, topic: str, records: Sequence[Record]) -> float:
    """Produce ``records`` in order (idempotent, acks=all); the seconds it took."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=20,
        max_batch_size=512 * 1024,
        enable_idempotence=True,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        send = producer.send
        for key, value in records:
            await send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def read_all(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list:
    """Every record of ``topic`` visible ``read_committed``, up to its last stable offset."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topic)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind:
                break
            batch = await consumer.getmany(*behind, timeout_ms=500, max_records=50_000)
            for items in batch.values():
                records.extend(items)
        return records
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic``, asked of the cluster (the topic must exist)."""
    client = consumer._client
    client.add_topic(topic)
    for _ in range(100):
        await client.force_metadata_update()
        found = client.cluster.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        await asyncio.sleep(0.05)
    raise RuntimeError(f"topic {topic} has no partitions")


# -- completion: every input committed, every output visible ------------------------------


@dataclass(frozen=True)
class Hop:
    """A consumer group that must have committed everything of its input topic."""

    group: str
    topic: str


class CompletionWatcher:
    """Says when a contender has done all its work, as any Kafka client can see it.

    Done means, at one poll: every :class:`Hop`'s group has committed past the
    last data record of its topic (a transaction's commit marker takes an
    offset of its own, so "committed == end offset" would never hold on a
    transactional topic), and no topic of the contender has an open
    transaction (last stable offset == high watermark): everything it wrote
    is visible to a ``read_committed`` consumer.
    """

    def __init__(self, bootstrap: str, hops: Sequence[Hop], outputs: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.hops = list(hops)
        self.outputs = list(outputs)
        self._admin: AIOKafkaAdminClient | None = None
        self._committed_reader: AIOKafkaConsumer | None = None
        self._uncommitted_reader: AIOKafkaConsumer | None = None
        self._partitions: dict[str, list[TopicPartition]] = {}
        #: When the first hop's group first had offsets committed (``perf_counter``), and
        #: how many: the steady rate leaves out start-up (process, group join, restore).
        self.first_commit_at: float | None = None
        self.first_committed = 0

    async def __aenter__(self) -> CompletionWatcher:
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self._admin.start()
        common = {"bootstrap_servers": self.bootstrap, "enable_auto_commit": False}
        self._committed_reader = AIOKafkaConsumer(
            **common,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=10,
        )
        self._uncommitted_reader = AIOKafkaConsumer(**common)
        await self._committed_reader.start()
        await self._uncommitted_reader.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for client in (self._committed_reader, self._uncommitted_reader):
            with contextlib.suppress(Exception):
                await client.stop()
        with contextlib.suppress(Exception):
            await self._admin.close()

    async def _tps(self, topic: str) -> list[TopicPartition]:
        if topic not in self._partitions:
            self._partitions[topic] = await partitions_of(self._committed_reader, topic)
        return self._partitions[topic]

    async def done(self) -> bool:
        """Whether the contender has done everything (see the class docstring)."""
        committed_by_group: dict[str, dict] = {}
        for hop in self.hops:
            if hop.group not in committed_by_group:
                try:
                    committed_by_group[hop.group] = await self._admin.list_consumer_group_offsets(
                        hop.group
                    )
                except KafkaError:  # no coordinator yet: the group has not started
                    return False
        if self.first_commit_at is None and self.hops:
            first = self.hops[0]
            total = sum(
                meta.offset
                for tp, meta in committed_by_group[first.group].items()
                if tp.topic == first.topic and meta.offset > 0
            )
            if total > 0:
                self.first_commit_at, self.first_committed = time.perf_counter(), total
        for hop in self.hops:
            committed = committed_by_group[hop.group]
            tps = await self._tps(hop.topic)
            stable = await self._committed_reader.end_offsets(tps)
            for tp in tps:
                done_to = committed[tp].offset if tp in committed else 0
                if done_to < stable[tp] and not await self._only_markers(tp, done_to, stable[tp]):
                    return False
        for topic in self.outputs:
            tps = await self._tps(topic)
            stable = await self._committed_reader.end_offsets(tps)
            high = await self._uncommitted_reader.end_offsets(tps)
            if any(stable[tp] < high[tp] for tp in tps):
                return False
        return True

    async def _only_markers(self, tp: TopicPartition, start: int, end: int) -> bool:
        """Whether offsets ``start`` to ``end`` hold no committed data record (only markers)."""
        if end - start > 64:
            return False  # a transaction marker or two, not that many
        reader = self._committed_reader
        reader.assign([tp])
        reader.seek(tp, start)
        for _ in range(40):
            batch = await reader.getmany(tp, timeout_ms=50)
            if batch.get(tp):
                return False
            if await reader.position(tp) >= end:
                return True
        return False

    async def wait(
        self, started: float, timeout_s: float, alive=None, poll_s: float = 0.1
    ) -> float:
        """Seconds from ``started`` (``time.perf_counter()``) until :meth:`done`."""
        deadline = time.perf_counter() + timeout_s
        while True:
            if await self.done():
                return time.perf_counter() - started
            if alive is not None and not alive():
                raise RuntimeError("the contender's process exited before it was done")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"not done after {timeout_s:g} s")
            await asyncio.sleep(poll_s)


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """The committed offsets of ``group``."""
    async with admin_client(bootstrap) as admin:
        found = await admin.list_consumer_group_offsets(group)
    return {tp: meta.offset for tp, meta in found.items()}


# -- processes --------------------------------------------------------------------------

# The child asks for SIGKILL when the bench dies (PR_SET_PDEATHSIG), then becomes the
# command: no contender outlives the bench, even when the bench is killed.
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]): os._exit(1)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def still_launching(pid: int) -> bool:
    """Whether ``pid`` is still the launcher (``python -c``), not yet the command it execs."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:2] == [b"-c"]
    except OSError:
        return False


class Child:
    """A contender's process in its own session, logging to a file; it dies with the bench."""

    def __init__(
        self,
        command: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        core: int | None = None,
    ) -> None:
        self.command = list(command)
        self.log_path = log_path
        self.env = dict(env or {})
        self.cwd = cwd
        self.core = core
        self.process: subprocess.Popen | None = None
        self.started = 0.0

    def start(self) -> float:
        """Start the process; returns ``time.perf_counter()`` just before it was launched."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")}
        env.update(self.env, PYTHONUNBUFFERED="1")
        core = self.core
        self.started = time.perf_counter()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [PYTHON, "-c", _LAUNCHER, str(os.getpid()), *self.command],
                env=env,
                cwd=self.cwd or REPO,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=None if core is None else (lambda: os.sched_setaffinity(0, {core})),
            )
        return self.started

    @property
    def pid(self) -> int | None:
        """The process id (the command's own: the launcher execs it)."""
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process is not None and self.process.poll() is None

    def peak_rss_kib(self) -> int | None:
        """The process's peak resident set size so far (VmHWM), in KiB."""
        return _status_kib(self.pid, "VmHWM:")

    def rss_kib(self) -> int | None:
        """The process's resident set size now (VmRSS), in KiB."""
        return _status_kib(self.pid, "VmRSS:")

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, then SIGKILL whatever is left of the group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        self.kill()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _status_kib(pid: int | None, field_name: str) -> int | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# -- botstream workers ------------------------------------------------------------------


def botstream_settings(bootstrap: str, prefix: str, events_topic: str | None = None) -> Settings:
    """Settings with topics and groups of their own; the events topic may be a shared one."""
    settings = replace(
        load_settings(env={}).with_prefix(prefix), bootstrap_servers=bootstrap, partitions=4
    )
    if events_topic is not None:
        settings = replace(settings, topics=replace(settings.topics, events=events_topic))
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``BOTSTREAM_*`` variables that point a worker at ``settings``' broker and topics."""
    env = {
        "BOTSTREAM_BOOTSTRAP": settings.bootstrap_servers,
        "BOTSTREAM_APP_ID": settings.app_id,
        "BOTSTREAM_PARTITIONS": str(settings.partitions),
    }
    for f in fields(TopicNames):
        env[f"BOTSTREAM_TOPIC_{f.name.upper()}"] = getattr(settings.topics, f.name)
    return env


def worker_help() -> str:
    """``botstream worker --help``, to see which options this botstream has."""
    result = subprocess.run(
        [PYTHON, "-m", "botstream", "worker", "--help"], capture_output=True, text=True, check=False
    )
    return result.stdout


def worker_has_store_option() -> bool:
    """Whether ``botstream worker`` offers ``--store memory|rocksdb``."""
    return "--store" in worker_help()


@dataclass
class BotstreamWorker:
    """A ``botstream worker`` process with its own web port and data directory."""

    settings: Settings
    log_dir: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    core: int | None = None
    child: Child | None = None
    port: int = 0

    def start(self, name: str = "worker") -> float:
        """Start the worker; returns ``time.perf_counter()`` at launch."""
        self.port = free_port()
        self.data_dir = self.data_dir or Path(tempfile.mkdtemp(prefix="bench-worker-"))
        env = (
            settings_env(self.settings)
            | self.env
            | {
                "BOTSTREAM_WEB_HOST": "127.0.0.1",
                "BOTSTREAM_WEB_PORT": str(self.port),
                "BOTSTREAM_DATA_DIR": str(self.data_dir),
                # Faust's own group: 10 s for a killed member to expire, not 60 s.
                "BROKER_SESSION_TIMEOUT": "10",
                "BROKER_REBALANCE_TIMEOUT": "10",
            }
        )
        self.child = Child(
            [PYTHON, "-m", "botstream", "worker", *self.extra_args],
            self.log_dir / f"{name}.log",
            env,
            core=self.core,
        )
        return self.child.start()

    async def owns_everything(self) -> bool:
        """Whether this worker owns every partition of every stage (it is ready)."""
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session,
                session.get(f"http://127.0.0.1:{self.port}/health") as response,
            ):
                health = orjson.loads(await response.read())
        except Exception:
            return False
        wanted = list(range(self.settings.partitions))
        owned = health.get("partitions", {})
        return all(
            sorted(owned.get(s, ())) == wanted for s in ("conversations", "plans", "accounts")
        )

    async def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds from launch until the worker owns every partition of every stage."""
        deadline = time.perf_counter() + timeout_s
        while not await self.owns_everything():
            if not self.child.alive():
                raise RuntimeError(f"the worker exited:\n{self.child.log_tail()}")
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the worker was not ready after {timeout_s:g} s")
            await asyncio.sleep(0.1)
        return time.perf_counter() - self.child.started

    def hops(self) -> list[Hop]:
        """The stages' groups and their input topics."""
        topics, app = self.settings.topics, self.settings.app_id
        return [
            Hop(f"{app}-conversations", topics.events),
            Hop(f"{app}-plans", topics.plans),
            Hop(f"{app}-accounts", topics.account_updates),
        ]

    def outputs(self) -> list[str]:
        """The topics the worker writes in transactions."""
        topics = self.settings.topics
        return [
            topics.outcomes,
            topics.usage,
            topics.alerts,
            topics.dead_letters,
            topics.account_updates,
            topics.conversations_changelog,
            topics.accounts_changelog,
        ]

    def stop(self) -> None:
        """Stop the worker and remove its data directory."""
        if self.child is not None:
            self.child.stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# -- Kafka Streams build ----------------------------------------------------------------


def kstreams_build() -> Path:
    """Build the Kafka Streams peer with Maven (once per pom and source digest); its directory.

    The classes and jars go to botstream's cache, never into the repository.
    """
    source = PEERS / "kstreams"
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file() and "target" not in path.parts:
            digest.update(path.relative_to(source).as_posix().encode() + path.read_bytes())
    build = bench_cache() / f"kstreams-{digest.hexdigest()[:12]}"
    marker = build / ".complete"
    if marker.exists():
        return build
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RuntimeError("mvn not found: Maven builds the Kafka Streams peer")
    log("building the Kafka Streams peer with Maven (first run only)...")
    result = subprocess.run(
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(source / "pom.xml"),
            f"-Dbench.build.dir={build}",
            "package",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={build / 'libs'}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building the Kafka Streams peer failed:\n{result.stdout[-2000:]}")
    marker.write_text("ok\n")
    return build


def java() -> str:
    """The ``java`` to run."""
    home = os.environ.get("JAVA_HOME")
    if home and os.access(Path(home, "bin", "java"), os.X_OK):
        return str(Path(home, "bin", "java"))
    found = shutil.which("java")
    if found is None:
        raise RuntimeError("java not found: the Kafka Streams peer needs Java 17+")
    return found


# -- figures ----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    rank = math.ceil(fraction * len(sorted_values) - 1e-9)
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def load_average() -> float:
    """The 1-minute load average now: how busy the machine was."""
    return os.getloadavg()[0]
