"""One demo run: a worker process, simulated traffic, the live view, a summary.

The broker is the caller's business (:mod:`botstream.commands.demo` starts a
local one unless ``--bootstrap`` names one). :func:`run_demo`:

1. starts ``botstream worker`` as a child process and waits until it owns
   every partition of every stage;
2. follows the four output topics ``read_committed`` (from their ends: only
   this run's records) into a :class:`~botstream.demo.board.DemoBoard`, and the
   worker's ``/metrics`` for its throughput;
3. produces the simulator's plan records, waits until the worker has read
   them, then the events, paced so that ``days`` of event time take
   ``duration`` of wall time, keeping a copy of everything as JSONL;
4. waits until the worker has processed every event and its outputs are
   quiet (the last conversations end by inactivity once their partitions go
   idle: the traffic ends more than the idle timeout before now);
5. prints the summary and where to look next (the dashboard's address first),
   and stops the worker (``--stay`` keeps it, and the dashboard, up).

SIGINT and SIGTERM (Ctrl-C) end the traffic at once and go straight to the
summary and the shutdown; nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import orjson
from rich.console import Console
from rich.live import Live

from botstream.config import Settings
from botstream.demo.board import DemoBoard, live_view, summary_view
from botstream.demo.processes import WorkerProcess
from botstream.domain.config import MINUTE_MS
from botstream.domain.timefmt import format_timestamp, month_of
from botstream.errors import BotstreamError
from botstream.kafka.local_broker import free_port, port_is_free
from botstream.kafka.topics import admin_client, kafka_client_kwargs
from botstream.sim.generator import Record, SimConfig, TrafficSimulator
from botstream.sim.runner import Pacer, produce_events, produce_plans
from botstream.sim.sinks import KafkaSink
from botstream.stream.metrics import metric_total
from botstream.web.security import forward_headers

log = logging.getLogger(__name__)

#: How long the worker may take to own its partitions (Faust and three stages).
READY_TIMEOUT_S = 120.0
#: After the traffic, how long the outputs must stay quiet to call the run settled.
QUIET_S = 3.0
#: The longest wait for the worker to settle after the traffic.
SETTLE_TIMEOUT_S = 60.0


class DemoError(BotstreamError):
    """The demo could not run (the worker failed to start, Kafka went away...)."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``botstream demo`` was asked to do."""

    duration_s: float = 60.0
    #: Simulated milliseconds per wall millisecond (2880: two days a minute).
    speed: float = 2880.0
    accounts: int = 1000
    hot_accounts: int = 3
    seed: int = 7
    live: bool = True
    #: Keep the worker (and broker) running after the summary, until Ctrl-C.
    stay: bool = False
    #: Where the log copy, the worker's log and data, and summary.json go.
    folder: Path = Path(".botstream-data/demo")
    #: ``BOTSTREAM_*`` settings the worker gets (the demo's config, environment and flags).
    worker_env: Mapping[str, str] = field(default_factory=dict)
    #: The local broker's JVM, when the demo started one (reported in summary.json).
    broker_pid: int | None = None


@dataclass
class DemoResult:
    """How a run went; also written to ``summary.json``."""

    sent: int = 0
    processed: int = 0
    plan_records: int = 0
    interrupted: bool = False
    settled: bool = False
    seconds: float = 0.0
    worker_url: str = ""
    worker_pid: int | None = None
    broker_pid: int | None = None
    outcomes: dict[str, int] = field(default_factory=dict)
    conversations: int = 0
    revisions: int = 0
    billable: int = 0
    charged: int = 0
    usage_records: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    event_time: tuple[str, str] | None = None


def demo_sim_config(options: DemoOptions, settings: Settings, now_ms: int) -> SimConfig:
    """The traffic of a run: ``duration × speed`` of event time, ending well before now.

    It ends the idle timeout and 15 minutes before ``now_ms``, so that once the
    traffic stops and the partitions go idle, event time catches up with the
    wall clock and every conversation ends (by inactivity, if not before).
    """
    span = int(options.duration_s * 1000 * options.speed)
    end = now_ms - settings.domain.idle_timeout_ms - 15 * MINUTE_MS
    return SimConfig(
        seed=options.seed,
        start_ms=end - span,
        end_ms=end,
        count=None,
        accounts=options.accounts,
        hot_accounts=options.hot_accounts,
    )


class OutputFollower:
    """Reads the output topics ``read_committed`` into a board, from where they end now."""

    def __init__(self, settings: Settings, board: DemoBoard) -> None:
        topics = settings.topics
        self.settings = settings
        self.handlers = {
            topics.outcomes: board.add_outcome,
            topics.usage: board.add_usage,
            topics.alerts: board.add_alert,
            topics.dead_letters: board.add_dead_letter,
        }
        self.last_record_at = time.monotonic()
        self._consumer = None

    async def start(self) -> None:
        """Connect and position at the current ends of the topics."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(
            **kafka_client_kwargs(self.settings),
            client_id=f"{self.settings.app_id}-demo-view",
            isolation_level="read_committed",
            enable_auto_commit=False,
        )
        await consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in self.handlers
            for p in range(self.settings.partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        self._consumer = consumer

    async def run(self) -> None:
        """Feed every committed record to the board, until cancelled."""
        consumer = self._consumer
        while True:
            batches = await consumer.getmany(timeout_ms=250, max_records=5000)
            for tp, records in batches.items():
                handle = self.handlers[tp.topic]
                for record in records:
                    handle(orjson.loads(record.value))
                if records:
                    self.last_record_at = time.monotonic()

    async def stop(self) -> None:
        """Disconnect."""
        if self._consumer is not None:
            await self._consumer.stop()


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, bytes] | None:
    try:
        async with session.get(url) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


def events_processed(metrics_text: str) -> int:
    """``botstream_events_in_total`` from a worker's Prometheus text (0 before the first)."""
    return int(metric_total(metrics_text, "botstream_events_in_total") or 0)


class DemoRun:
    """The parts of one run and the order in which they start and stop."""

    def __init__(self, options: DemoOptions, settings: Settings, console: Console) -> None:
        self.options = options
        self.settings = settings
        self.console = console
        self.board = DemoBoard()
        self.result = DemoResult(broker_pid=options.broker_pid)
        self.stop = asyncio.Event()
        folder = options.folder
        port = settings.web_port if port_is_free(settings.web_port) else free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = ["worker", "--log-level", "info"]
        env = {
            **options.worker_env,
            "BOTSTREAM_BOOTSTRAP": settings.bootstrap_servers,
            "BOTSTREAM_WEB_HOST": "127.0.0.1",
            "BOTSTREAM_WEB_PORT": str(port),
            "BOTSTREAM_WEB_URL": self.url,
            "BOTSTREAM_DATA_DIR": str((folder / "worker-data").resolve()),
        }
        self.worker = WorkerProcess(args, env, folder / "worker.log", cwd=Path.cwd())
        self.follower = OutputFollower(settings, self.board)
        self.http: aiohttp.ClientSession | None = None
        self.started = time.monotonic()
        self.traffic_started: float | None = None
        self._last_poll: tuple[float, int] | None = None

    # -- the run ------------------------------------------------------------------------

    async def run(self) -> DemoResult:
        """Run the demo end to end (see the module docstring)."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=5), headers=forward_headers(self.settings)
        )
        tasks: list[asyncio.Task] = []
        try:
            self.worker.start()
            self.result.worker_pid = self.worker.process.pid
            self.result.worker_url = self.url
            self._say(f"worker starting (log: {self.worker.log_path}) ...")
            await self._wait_ready()
            self._say(f"worker ready; dashboard at {self.dashboard_url()}")
            await self.follower.start()
            tasks.append(asyncio.create_task(self.follower.run(), name="follow-outputs"))
            tasks.append(asyncio.create_task(self._poll_metrics(), name="poll-metrics"))
            if not self.stop.is_set():
                await self._traffic_and_view()
            await self._poll_once()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.follower.stop()
            self._fill_result()
            self.console.print(summary_view(self.board))
            self._write_summary_json()
            self._where_next()
            if self.options.stay and not self.stop.is_set() and self.worker.running:
                self.console.print(
                    f"\n[bold]still running[/]: dashboard at {self.dashboard_url()}, read API at "
                    f"{self.url}, Kafka at {self.settings.bootstrap_servers}. "
                    "Ctrl-C stops everything.",
                    soft_wrap=True,
                )
                await self._wait_stop_or_worker_exit()
            await self.http.close()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            self._say("stopping the worker ...")
            await asyncio.to_thread(self.worker.stop)
        return self.result

    async def _traffic_and_view(self) -> None:
        options = self.options
        sim = TrafficSimulator(demo_sim_config(options, self.settings, int(time.time() * 1000)))
        folder = options.folder
        live = None
        if options.live:
            live = Live(
                get_renderable=self._live_renderable,
                console=self.console,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            live.start()
        reporter = None if options.live else asyncio.create_task(self._report_lines())
        try:
            with (folder / "events.jsonl").open("wb") as events_copy:
                async with KafkaSink(self.settings) as sink:
                    plans = sim.plan_records()
                    (folder / "plans.jsonl").write_bytes(
                        b"".join(record.value + b"\n" for record in plans)
                    )
                    self.result.plan_records = await produce_plans(sim, sink)
                    await self._wait_plans_read()
                    self.traffic_started = time.monotonic()

                    def keep(record: Record) -> None:
                        events_copy.write(record.value + b"\n")
                        self.board.throughput.sent += 1
                        self.board.throughput.event_time = format_timestamp(record.at_ms)

                    pacer = Pacer(sim.config.start_ms, options.speed)
                    self.result.sent = await produce_events(
                        sim, sink, pacer, stop=self.stop, on_record=keep
                    )
            stats = sim.stats
            if stats.first_ms is not None:
                self.result.event_time = (
                    format_timestamp(stats.first_ms),
                    format_timestamp(stats.last_ms),
                )
            if not self.stop.is_set():
                await self._wait_settled()
        finally:
            if reporter is not None:
                reporter.cancel()
            if live is not None:
                live.stop()

    # -- waiting -----------------------------------------------------------------------

    async def _wait_ready(self) -> None:
        """Until the worker owns every partition of every stage (or fails, or Ctrl-C)."""
        wanted = set(range(self.settings.partitions))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stop.is_set():
            if not self.worker.running:
                raise DemoError(
                    f"the worker exited with status {self.worker.returncode}; "
                    f"its log ends:\n{self.worker.log_tail()}"
                )
            answer = await _get(self.http, f"{self.url}/health")
            if answer is not None and answer[0] == 200:
                owned = orjson.loads(answer[1])["partitions"]
                if owned and all(set(parts) == wanted for parts in owned.values()):
                    return
            if time.monotonic() > deadline:
                raise DemoError(
                    f"the worker did not own its partitions within {READY_TIMEOUT_S:.0f} s "
                    f"(see {self.worker.log_path})"
                )
            await asyncio.sleep(0.5)

    async def _wait_plans_read(self, timeout_s: float = 60.0) -> None:
        """Until the plan stage has committed past every plan record (so charges see them)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.settings.topics.plans
        partitions = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        consumer = AIOKafkaConsumer(**kafka_client_kwargs(self.settings))
        await consumer.start()
        try:
            ends = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        deadline = time.monotonic() + timeout_s
        async with admin_client(self.settings) as admin:
            while not self.stop.is_set():
                committed = await admin.list_consumer_group_offsets(f"{self.settings.app_id}-plans")
                done = {tp: meta.offset for tp, meta in committed.items()}
                if all(done.get(tp, 0) >= end for tp, end in ends.items() if end):
                    return
                if time.monotonic() > deadline:
                    raise DemoError(f"the worker did not read the plan records in {timeout_s} s")
                await asyncio.sleep(0.3)

    async def _wait_settled(self) -> None:
        """Until every event was processed and the outputs were quiet for a while."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not self.stop.is_set() and time.monotonic() < deadline:
            if not self.worker.running:
                raise DemoError(f"the worker exited; its log ends:\n{self.worker.log_tail()}")
            caught_up = self.board.throughput.processed >= self.result.sent
            quiet = time.monotonic() - self.follower.last_record_at >= QUIET_S
            if caught_up and quiet:
                self.result.settled = True
                return
            await asyncio.sleep(0.5)

    async def _wait_stop_or_worker_exit(self) -> None:
        while not self.stop.is_set() and self.worker.running:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), timeout=1.0)

    # -- throughput --------------------------------------------------------------------

    async def _poll_metrics(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await self._poll_once()

    async def _poll_once(self) -> None:
        answer = await _get(self.http, f"{self.url}/metrics")
        if answer is None or answer[0] != 200:
            return
        flow = self.board.throughput
        now = time.monotonic()
        processed = events_processed(answer[1].decode())
        last = self._last_poll
        if last is not None and now > last[0]:
            flow.per_second = (processed - last[1]) / (now - last[0])
            flow.peak_per_second = max(flow.peak_per_second, flow.per_second)
        self._last_poll = (now, processed)
        flow.processed = processed

    # -- output ------------------------------------------------------------------------

    def _month_query(self) -> str:
        """``?month=`` of the traffic's month when that is not the current one (else empty).

        The dashboard opens on the current month; traffic that ended in the
        previous one (a demo run early in a month) is one click away, or here.
        """
        now_ms = int(time.time() * 1000)
        end_ms = demo_sim_config(self.options, self.settings, now_ms).end_ms
        month = month_of(end_ms)
        return "" if month == month_of(now_ms) else f"?month={month}"

    def dashboard_url(self) -> str:
        """The address of the worker's dashboard page, on the month of the traffic."""
        return f"{self.url}/{self._month_query()}"

    def _header(self) -> str:
        began = self.traffic_started
        elapsed = 0.0 if began is None else time.monotonic() - began
        return (
            f"botstream demo · traffic {min(elapsed, self.options.duration_s):3.0f}/"
            f"{self.options.duration_s:.0f} s · Kafka {self.settings.bootstrap_servers}"
            f" · dashboard {self.dashboard_url()} · Ctrl-C stops"
        )

    def _live_renderable(self):
        return live_view(self.board, self._header())

    async def _report_lines(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            board, flow = self.board, self.board.throughput
            self._say(
                f"sent {flow.sent:,} · processed {flow.processed:,} "
                f"({flow.per_second:,.0f}/s) · conversations {len(board.outcomes):,} · "
                f"alerts {len(board.alerts):,} · dead letters {sum(board.dead_letters.values()):,}"
            )

    def _say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.started:6.1f}s[/] {text}")

    def _fill_result(self) -> None:
        board, result = self.board, self.result
        result.processed = board.throughput.processed
        result.seconds = round(time.monotonic() - self.started, 1)
        result.outcomes = dict(board.outcome_counts())
        result.conversations = len(board.outcomes)
        result.revisions = board.revisions
        result.billable = board.billable
        result.charged = board.charged
        result.usage_records = len(board.usage)
        result.alerts = dict(board.alert_counts())
        result.dead_letters = dict(board.dead_letters)
        result.interrupted = self.stop.is_set()

    def _write_summary_json(self) -> None:
        path = self.options.folder / "summary.json"
        path.write_bytes(orjson.dumps(asdict(self.result), option=orjson.OPT_INDENT_2))

    def _where_next(self) -> None:
        topics = self.settings.topics
        folder = self.options.folder
        hot = "acc-hot-1" if self.options.hot_accounts else "acc-1"
        up = "" if self.options.stay else "   (they stop with the demo; --stay keeps them up)"
        lines = [
            "",
            "[bold]where to look next[/]",
            f"  topics    in:  {topics.events}, {topics.plans}",
            f"            out: {topics.outcomes}, {topics.usage}, {topics.alerts}, "
            f"{topics.dead_letters}",
            f"  dashboard {self.dashboard_url()}  ·  /accounts/{hot}{self._month_query()}",
            f"  read API  {self.url}/usage/{hot}  ·  /stats/{hot}  ·  /health  ·  /metrics",
            f"  ops       botstream usage {hot} --url {self.url}",
            f"            botstream alerts --bootstrap {self.settings.bootstrap_servers}{up}",
            f"  replay    botstream replay {folder}/events.jsonl --plans {folder}/plans.jsonl "
            f"--out {folder}/replay",
            f"  files     {folder}/summary.json, {folder}/worker.log",
        ]
        for line in lines:
            self.console.print(line, highlight=False, soft_wrap=True)


def prepare_folder(folder: Path, fresh_state: bool) -> None:
    """Create the demo folder; with a fresh broker, old worker data would only confuse."""
    folder.mkdir(parents=True, exist_ok=True)
    if fresh_state:
        shutil.rmtree(folder / "worker-data", ignore_errors=True)
    for name in ("events.jsonl", "plans.jsonl", "summary.json"):
        (folder / name).unlink(missing_ok=True)


async def run_demo(options: DemoOptions, settings: Settings, console: Console) -> DemoResult:
    """Run one demo on a broker that is up and has botstream's topics."""
    return await DemoRun(options, settings, console).run()
