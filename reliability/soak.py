"""``python -m reliability soak``: a worker under steady load for 10 minutes, then a burst.

1. **The maximum rate** (unless ``--max-rate`` gives it): a worker of its own
   drains a backlog of ``--backlog-seconds`` (240) of the same traffic at
   20,000 events/s; the maximum is the rate of the second half of the drain,
   once the worker holds as much state as that traffic makes it hold. (A
   short backlog on an empty worker goes a third faster: decoding and
   re-encoding held conversations, and their timers, cost more as they grow.)
2. **The soak**: a fresh worker gets simulated traffic *in real time* (each
   event sent when it happens) at ``--load`` (70 %) of that maximum for
   ``--minutes`` (10). Every 10 s the harness samples the worker's RSS and the
   consumer lag (events on the input topic not yet committed by the
   conversation stage; the account stage's too). After ``--warmup`` the RSS
   must grow less than 10 % and the lag must stay bounded (below 5 s of the
   offered traffic, and not growing).
3. **The burst**: 60 s at 3× the maximum, then the load returns to 70 %; the
   burst's backlog must be absorbed and drained, and the time to drain (until
   the lag is back under its bound) is measured.

The traffic is conversations started at a steady rate, each following one
of four scripts (resolved by chatbot, transferred to an agent, unengaged, no
chatbot; 6 events and at most 80 s on average), sent by a producer process of
its own with event time equal to wall time. (The simulator's traffic would
not do: its conversations last minutes to hours, so its rate only ramps up to
the one asked over the first hour.) The worker runs with an idle timeout of 30 s and a retention of
90 s instead of 30 minutes and 7 days: state then reaches its steady size
within minutes (with the defaults a conversation is held for a week, and the
steady state comes after a week). Everything else is as deployed.

Figures go to the terminal, to the ``soak`` block of ``docs/reliability.md``
and to the chart ``docs/soak.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import multiprocessing
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from reliability.report import DOC, machine, number, rss_mib, table, write_section

CHART = DOC.parent / "soak.png"
SAMPLE_S = 10.0
#: The worker's rules during the soak (see the module docstring).
RULES = {"BOTSTREAM_IDLE_TIMEOUT": "30s", "BOTSTREAM_RETENTION": "90s"}
#: Lag bound: this many seconds of the offered traffic.
LAG_BOUND_S = 5.0
ACCOUNTS = 10_000


# -- the traffic, in a process of its own ----------------------------------------------------

#: Conversation scripts: (seconds after the start, type, data). Chosen in turn, they
#: make 6 events a conversation on average, over at most 80 s, every outcome among them.
SCRIPTS = (
    (  # resolved by chatbot
        (0, "conversation.started", {"initiator": "chatbot"}),
        (1, "chatbot.triggered", {"chatbot_id": "bot-1"}),
        (2, "chatbot.message", {"chatbot_id": "bot-1"}),
        (14, "chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "shipping"}),
        (15, "chatbot.message", {"chatbot_id": "bot-1"}),
        (40, "widget.closed", None),
        (70, "visitor.left", None),
    ),
    (  # transferred to an agent
        (0, "chatbot.triggered", {"chatbot_id": "bot-1"}),
        (1, "chatbot.message", {"chatbot_id": "bot-1"}),
        (9, "chatbot.button_clicked", {"chatbot_id": "bot-1", "button_id": "talk_to_agent"}),
        (10, "conversation.transferred", {"to": "agents"}),
        (30, "agent.joined", {"agent_id": "agent-7"}),
        (45, "agent.message", {"agent_id": "agent-7"}),
        (60, "visitor.message", None),
        (80, "conversation.closed", {"closed_by": "agent"}),
    ),
    (  # unengaged
        (0, "chatbot.triggered", {"chatbot_id": "bot-2"}),
        (1, "chatbot.message", {"chatbot_id": "bot-2"}),
        (25, "widget.closed", None),
        (50, "visitor.left", None),
    ),
    (  # no chatbot
        (0, "conversation.started", {"initiator": "visitor"}),
        (3, "visitor.message", None),
        (20, "agent.joined", {"agent_id": "agent-2"}),
        (35, "agent.message", {"agent_id": "agent-2"}),
        (75, "conversation.closed", {"closed_by": "agent"}),
    ),
)
EVENTS_PER_CONVERSATION = sum(len(script) for script in SCRIPTS) / len(SCRIPTS)
#: Each step of each script, as (offset ms, script number, step number), by offset.
_STEPS = sorted(
    (offset * 1000, number_, step)
    for number_, script in enumerate(SCRIPTS)
    for step, (offset, _, _) in enumerate(script)
)
_LONGEST_MS = max(offset for offset, _, _ in _STEPS)


class Traffic:
    """Conversations started at a steady rate; their events when their time comes.

    Conversation ``n`` starts at ``origin + n / rate`` and follows script
    ``n % 4``, its offsets multiplied by ``time_scale``. :meth:`between`
    gives the events due in a window of wall time, each dated when it is due:
    event time is wall time. Conversations that started before ``origin`` are
    already under way, so ``rate`` events/s come from the first second on,
    until ``seconds`` later.
    """

    def __init__(
        self, origin_ms: int, seconds: float, rate: float, seed: int, time_scale: float = 1.0
    ) -> None:
        self.seed = seed
        self.steps = [(int(offset * time_scale), script, step) for offset, script, step in _STEPS]
        self.longest_ms = max(offset for offset, _, _ in self.steps)
        self.origin_ms = origin_ms
        self.end_ms = origin_ms + int(seconds * 1000)
        #: Conversations per ms, and when conversation 0 starts (before the origin).
        self.per_ms = rate / EVENTS_PER_CONVERSATION / 1000
        self.first_ms = origin_ms - self.longest_ms
        self._partition: dict[int, int] = {}

    def started_by(self, at_ms: float) -> int:
        """How many conversations started before ``at_ms`` (none after the end)."""
        at_ms = min(at_ms, self.end_ms)
        return max(0, int((at_ms - self.first_ms) * self.per_ms))

    def between(self, low_ms: int, high_ms: int, partitions: int):
        """``(partition, key, value)`` of every event due in ``[low_ms, high_ms)``."""
        from botstream.domain.timefmt import format_timestamp
        from botstream.kafka.partitioner import default_partition

        low_ms, high_ms = max(low_ms, self.origin_ms), min(high_ms, self.end_ms)
        if low_ms >= high_ms:
            return
        occurred = format_timestamp(high_ms)
        for offset, script_number, step in self.steps:
            first = self.started_by(low_ms - offset)
            last = self.started_by(high_ms - offset)
            script = SCRIPTS[script_number]
            _, kind, data = script[step]
            # Conversation n follows script n % 4: those of this script in [first, last).
            n = first + (script_number - first) % len(SCRIPTS)
            while n < last:
                conversation = f"c-{self.seed}-{n:09d}"
                key = conversation.encode()
                partition = self._partition.get(n)
                if partition is None:
                    partition = self._partition[n] = default_partition(key, partitions)
                if step == len(script) - 1:
                    self._partition.pop(n, None)
                hot = n % 10 < 3  # three hot accounts get 30 % of the traffic
                account = f"acc-hot-{n % 3}" if hot else f"acc-{n * 7919 % ACCOUNTS}"
                value = orjson.dumps(
                    {
                        "event_id": f"e-{self.seed}-{n}-{step}",
                        "type": kind,
                        "occurred_at": occurred,
                        "account_id": account,
                        "conversation_id": conversation,
                        "visitor_id": f"v-{self.seed}-{n}",
                        "data": data,
                    }
                )
                yield partition, key, value
                n += len(SCRIPTS)


def produce_traffic(bootstrap: str, topic: str, partitions: int, plan, seed, sent, done):
    """Send the traffic of ``plan`` in real time (see :func:`traffic_plan`).

    Runs in a child process. ``sent`` (a shared counter) counts the records
    handed to the producer; ``done`` is set at the end.
    """
    asyncio.run(_produce_live(bootstrap, topic, partitions, plan, seed, sent))
    done.set()


def traffic_plan(origin_ms: int, plan, seed: int) -> list[Traffic]:
    """``plan``: ``[(start s, seconds, events/s, time scale)]``, each a Traffic of its own."""
    return [
        Traffic(origin_ms + int(start * 1000), seconds, rate, seed * 100 + number_, scale)
        for number_, (start, seconds, rate, scale) in enumerate(plan)
    ]


async def _produce_live(bootstrap, topic, partitions, plan, seed, sent) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        now = int(time.time() * 1000)
        streams = traffic_plan(now, plan, seed)
        end = max(stream.end_ms for stream in streams)
        low = now
        while low < end:
            await asyncio.sleep(0.02)
            high = min(int(time.time() * 1000), end)
            count = 0
            for stream in streams:
                count += await _send(producer, topic, stream.between(low, high, partitions))
            low = high
            with sent.get_lock():
                sent.value += count
        await producer.flush()
    finally:
        await producer.stop()


async def _send(producer, topic: str, records) -> int:
    """Send ``(partition, key, value)`` records in batches per partition; how many."""
    batches: dict[int, object] = {}
    count = 0
    for partition, key, value in records:
        batch = batches.get(partition)
        if batch is None:
            batch = batches[partition] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:
            await producer.send_batch(batch, topic, partition=partition)
            batch = batches[partition] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)
        count += 1
    for partition, batch in batches.items():
        if batch.record_count():
            await producer.send_batch(batch, topic, partition=partition)
    return count


async def produce_backlog(settings, seconds: float, rate: float, seed: int) -> int:
    """``seconds`` of the traffic at ``rate``, dated in the recent past, sent at once."""
    from aiokafka import AIOKafkaProducer

    from botstream.kafka.topics import kafka_client_kwargs

    end = int(time.time() * 1000) - 60_000
    start = end - int(seconds * 1000)
    traffic = Traffic(start, seconds, rate, seed)
    producer = AIOKafkaProducer(**kafka_client_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    try:
        for low in range(start, end, 1000):
            records = traffic.between(low, low + 1000, settings.partitions)
            sent += await _send(producer, settings.topics.events, records)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Sample:
    """One sample of the run, ``t`` seconds after the soak started."""

    t: float
    rss_mib: float
    lag: int
    account_lag: int
    sent: int
    committed: int


@dataclass
class SoakRun:
    """Everything measured."""

    max_rate: float = 0.0
    max_rate_note: str = ""
    rate: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    burst_start: float = 0.0
    burst_end: float = 0.0
    drained_at: float | None = None
    soak_end: float = 0.0
    problems: list[str] = field(default_factory=list)


async def lags(settings) -> tuple[int, int, int]:
    """(conversation stage lag, account stage lag, events committed) on the input topics."""
    from tests.integration.harness import _end_offsets, group_offsets

    topics = settings.topics
    end = await _end_offsets(settings, topics.events)
    done = await group_offsets(settings, f"{settings.app_id}-conversations", topics.events)
    end_updates = await _end_offsets(settings, topics.account_updates)
    done_updates = await group_offsets(
        settings, f"{settings.app_id}-accounts", topics.account_updates
    )
    lag = sum(max(0, offset - done.get(p, 0)) for p, offset in end.items())
    account_lag = sum(max(0, offset - done_updates.get(p, 0)) for p, offset in end_updates.items())
    return lag, account_lag, sum(done.values())


async def measure_max_rate(
    bootstrap: str, work: Path, seconds: float, seed: int
) -> tuple[float, str]:
    """Events per second a worker sustains draining a backlog (see the module docstring).

    The backlog is ``seconds`` of the traffic at 20,000 events/s, enough for the
    worker's state to reach the size it has under that traffic (a conversation
    is held for its 80 s, the 30 s idle timeout and the 90 s retention); the
    rate is taken over the second half of the drain, when it has.
    """
    from tests.integration.harness import WorkerPool, isolated_settings

    settings = await isolated_settings(bootstrap)
    sent = await produce_backlog(settings, seconds, rate=20_000, seed=seed)
    pool = WorkerPool(settings, work / "max-rate")
    worker = pool.add("max", RULES)
    try:
        worker.start()
        await pool.wait_owning([worker], timeout_s=120)
        began = time.monotonic()
        half_at = None
        while True:
            _, _, committed = await lags(settings)
            now = time.monotonic()
            if half_at is None and committed >= sent // 2:
                half_at, half_committed = now, committed
            if committed >= sent:
                break
            if not worker.running:
                raise AssertionError(f"the worker exited:\n{worker.logs(10)}")
            await asyncio.sleep(0.5)
        whole = now - began
    finally:
        pool.close()
    rate = (sent - half_committed) / (now - half_at)
    note = (
        f"the second half of a backlog of {number(sent)} events, {seconds:g} s of the traffic; "
        f"the whole backlog went at {sent / whole:,.0f} events/s"
    )
    return rate, note


async def soak(bootstrap: str, work: Path, args, run: SoakRun) -> None:
    """The soak and the burst (see the module docstring); samples into ``run``."""
    from tests.integration.harness import WorkerPool, isolated_settings

    settings = await isolated_settings(bootstrap)
    rate = run.rate = run.max_rate * args.load
    burst_rate = run.max_rate * args.burst
    minutes_s = args.minutes * 60
    pool = WorkerPool(settings, work / "soak")
    worker = pool.add("soak", RULES)
    context = multiprocessing.get_context("spawn")
    sent, done = context.Value("q", 0), context.Event()
    drain_s = args.drain_minutes * 60
    # The steady traffic all along; during the burst, short conversations (their
    # scripts ten times faster) on top of it, up to the burst's rate.
    total_s = minutes_s + args.burst_seconds + drain_s
    plan = [
        (0.0, total_s, rate, 1.0),
        (minutes_s, args.burst_seconds, burst_rate - rate, 0.1),
    ]
    producer = context.Process(
        target=produce_traffic,
        args=(
            bootstrap,
            settings.topics.events,
            settings.partitions,
            plan,
            args.seed,
            sent,
            done,
        ),
        daemon=True,
    )
    try:
        worker.start()
        await pool.wait_owning([worker], timeout_s=120)
        producer.start()
        began = time.monotonic()
        run.burst_start = minutes_s
        run.burst_end = minutes_s + args.burst_seconds
        run.soak_end = run.burst_end + drain_s
        bound = rate * LAG_BOUND_S
        next_sample = began
        while True:
            next_sample += SAMPLE_S
            await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
            t = time.monotonic() - began
            if not worker.running:
                run.problems.append(f"the worker exited at {t:.0f} s:\n{worker.logs(10)}")
                break
            lag, account_lag, committed = await lags(settings)
            sample = Sample(t, rss_mib(worker.process.pid), lag, account_lag, sent.value,
                            committed)  # fmt: skip
            run.samples.append(sample)
            print(
                f"  {t:6.0f} s  RSS {sample.rss_mib:6.1f} MiB  lag {lag:>9,}  accounts lag "
                f"{account_lag:>7,}  sent {sample.sent:>11,}  committed {committed:>11,}",
                flush=True,
            )
            if t > run.burst_end and run.drained_at is None and lag <= bound:
                run.drained_at = t
                print(f"  drained {t - run.burst_end:.0f} s after the burst", flush=True)
            if run.drained_at is not None and t >= run.drained_at + 3 * SAMPLE_S:
                break
            if done.is_set() or t > run.soak_end + 60:
                if run.drained_at is None:
                    run.problems.append(f"the burst was not drained within {drain_s:.0f} s")
                break
    finally:
        producer.terminate()
        producer.join(10)
        pool.close()


def judge(run: SoakRun, args) -> dict:
    """The figures of the run and whether they hold the bounds."""
    warm = args.warmup * 60
    steady = [s for s in run.samples if warm <= s.t <= run.burst_start]
    figures: dict = {}
    if len(steady) < 3:
        run.problems.append("too few samples after the warm-up to judge the soak")
        return figures
    first = steady[: max(1, len(steady) // 5)]
    last = steady[-max(1, len(steady) // 5) :]
    rss_start = statistics.mean(s.rss_mib for s in first)
    rss_end = statistics.mean(s.rss_mib for s in last)
    growth = (rss_end - rss_start) / rss_start
    bound = run.rate * LAG_BOUND_S
    lag_max = max(s.lag for s in steady)
    lag_first = statistics.mean(s.lag for s in first)
    lag_last = statistics.mean(s.lag for s in last)
    span = steady[-1].t - steady[0].t
    offered = (steady[-1].sent - steady[0].sent) / span
    processed = (steady[-1].committed - steady[0].committed) / span
    burst = [s for s in run.samples if s.t >= run.burst_start]
    figures.update(
        rss_start=rss_start, rss_end=rss_end, growth=growth, rss_max=max(s.rss_mib for s in steady),
        lag_max=lag_max, lag_first=lag_first, lag_last=lag_last, lag_bound=bound,
        offered=offered, processed=processed,
        burst_lag_max=max((s.lag for s in burst), default=0),
        burst_processed_max=max(
            ((b.committed - a.committed) / (b.t - a.t) for a, b in itertools.pairwise(burst)),
            default=0.0,
        ),
        burst_rss_max=max((s.rss_mib for s in burst), default=0.0),
        drain_s=None if run.drained_at is None else run.drained_at - run.burst_end,
    )  # fmt: skip
    if growth >= 0.10:
        run.problems.append(f"RSS grew {growth:.1%} after the warm-up (bound 10 %)")
    if lag_max > bound:
        run.problems.append(f"lag reached {lag_max:,} after the warm-up (bound {bound:,.0f})")
    if lag_last > max(2 * lag_first, 0.2 * bound):
        run.problems.append(f"lag grew from {lag_first:,.0f} to {lag_last:,.0f}")
    return figures


# -- report ------------------------------------------------------------------------------------


def chart(run: SoakRun, args, path: Path) -> Path:
    """RSS, lag and rates over time, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.t / 60 for s in run.samples]
    fig, (ax_rss, ax_lag, ax_rate) = plt.subplots(3, 1, figsize=(10, 8.5), sharex=True)
    ax_rss.plot(minutes, [s.rss_mib for s in run.samples], color="tab:blue")
    ax_rss.set_ylabel("worker RSS (MiB)")
    ax_rss.set_ylim(bottom=0)
    ax_lag.plot(minutes, [s.lag for s in run.samples], color="tab:red", label="conversation stage")
    ax_lag.plot(minutes, [s.account_lag for s in run.samples], color="tab:orange",
                label="account stage")  # fmt: skip
    ax_lag.axhline(run.rate * LAG_BOUND_S, color="grey", linestyle=":", label="bound (5 s)")
    ax_lag.set_ylabel("consumer lag (records)")
    ax_lag.legend(loc="upper left")
    pairs = list(zip(run.samples, run.samples[1:], strict=False))
    rate_t = [b.t / 60 for _, b in pairs]
    ax_rate.plot(rate_t, [(b.sent - a.sent) / (b.t - a.t) for a, b in pairs], label="offered")
    ax_rate.plot(rate_t, [(b.committed - a.committed) / (b.t - a.t) for a, b in pairs],
                 label="processed")  # fmt: skip
    ax_rate.axhline(run.max_rate, color="grey", linestyle=":", label="measured maximum")
    ax_rate.set_ylabel("events/s")
    ax_rate.set_xlabel("minutes")
    ax_rate.legend(loc="upper left")
    for ax in (ax_rss, ax_lag, ax_rate):
        ax.axvspan(0, args.warmup, color="grey", alpha=0.12)
        ax.axvspan(run.burst_start / 60, run.burst_end / 60, color="tab:red", alpha=0.12)
        if run.drained_at is not None:
            ax.axvline(run.drained_at / 60, color="tab:green", linestyle="--")
        ax.grid(alpha=0.3)
    ax_rss.set_title(
        f"botstream worker: {args.minutes:g} min at {args.load:.0%} of {run.max_rate:,.0f} "
        f"events/s, then {args.burst_seconds:g} s at {args.burst:g}x (grey: warm-up, red: "
        "burst, green: drained)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def markdown(run: SoakRun, args, figures: dict, command: str) -> str:
    """The ``soak`` block of docs/reliability.md."""
    rows = [
        (f"{s.t / 60:.1f}", f"{s.rss_mib:.0f}", number(s.lag), number(s.account_lag))
        for s in run.samples[:: max(1, len(run.samples) // 16)]
    ]
    drain = figures.get("drain_s")
    lines = [
        "## Load and soak",
        "",
        f"`{command}` ({machine()}).",
        "",
        f"* Maximum rate: **{run.max_rate:,.0f} events/s** ({run.max_rate_note}; one worker, "
        "4 partitions, broker and producer on the same 2 cores).",
        f"* Soak: {args.minutes:g} minutes at {args.load:.0%} of it, {run.rate:,.0f} events/s, "
        "sent in real time by a producer process; idle timeout 30 s and retention 90 s so "
        "that the state reaches its steady size within the run. Samples every 10 s.",
    ]
    if figures:
        lines += [
            f"* After the {args.warmup:g}-minute warm-up: RSS {figures['rss_start']:.0f} MiB "
            f"at first, {figures['rss_end']:.0f} MiB at the end (growth "
            f"**{figures['growth']:+.1%}**, bound 10 %; highest {figures['rss_max']:.0f} MiB); "
            f"lag at most **{number(figures['lag_max'])}** records (bound "
            f"{number(round(figures['lag_bound']))}, 5 s of traffic), "
            f"{figures['lag_first']:,.0f} on average at first and "
            f"{figures['lag_last']:,.0f} at the end; offered {figures['offered']:,.0f} and "
            f"processed {figures['processed']:,.0f} events/s.",
            f"* Burst: {args.burst_seconds:g} s at {args.burst:g}x the maximum "
            f"({run.max_rate * args.burst:,.0f} events/s: the steady traffic, and on top of it "
            "short conversations, their scripts ten times faster), then "
            f"{args.load:.0%} again: lag peaked at **{number(figures['burst_lag_max'])}** "
            f"records, RSS at {figures['burst_rss_max']:.0f} MiB (it stays there: the process "
            "keeps what it once needed); the worker processed up to "
            f"{figures['burst_processed_max']:,.0f} events/s meanwhile, more than the steady "
            "traffic's maximum, since a short conversation's events come in the same fetches "
            "(one decoding of its state per batch, not per event); "
            + (
                f"drained (lag back under its bound) **{drain:.0f} s** after the burst ended."
                if drain is not None
                else "**not drained** in the time given."
            ),
        ]
    lines += [
        "",
        f"![RSS, lag and rates over the soak]({CHART.name})",
        "",
        table(rows, ("minute", "RSS MiB", "lag, conversation stage", "lag, account stage")),
        "",
        f"Problems: {'; '.join(run.problems) if run.problems else 'none'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Run the soak section; 0 when the bounds held."""
    args = _parser().parse_args(argv)
    if args.warmup is None:
        args.warmup = min(3.0, args.minutes / 3)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from botstream.kafka.local_broker import LocalKafka

    work = Path(tempfile.mkdtemp(prefix="botstream-soak-"))
    run = SoakRun()
    # The command that makes such a run: the flags given, but --report-only.
    flags = list(argv)
    if "--report-only" in flags:
        at = flags.index("--report-only")
        del flags[at : at + 2]
    command = " ".join(["python -m reliability soak", *flags])
    if args.report_only:
        return _report(load_run(Path(args.report_only)), args, work, command)
    with LocalKafka(work_dir=work / "broker") as broker:
        if args.max_rate:
            run.max_rate, run.max_rate_note = args.max_rate, "given with --max-rate"
        else:
            print(
                f"soak: measuring the maximum rate on {args.backlog_seconds:g} s of traffic",
                flush=True,
            )
            run.max_rate, run.max_rate_note = asyncio.run(
                measure_max_rate(broker.bootstrap, work, args.backlog_seconds, args.seed)
            )
        print(f"soak: maximum {run.max_rate:,.0f} events/s ({run.max_rate_note})", flush=True)
        asyncio.run(soak(broker.bootstrap, work, args, run))
    return _report(run, args, work, command)


def save_run(run: SoakRun, args, path: Path) -> Path:
    """The run's figures and samples as JSON, to report again (``--report-only``)."""
    data = {name: getattr(run, name) for name in vars(run) if name != "samples"}
    data["samples"] = [vars(sample) for sample in run.samples]
    data["args"] = {k: v for k, v in vars(args).items() if k != "report_only"}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def load_run(path: Path) -> SoakRun:
    """A run saved by :func:`save_run`."""
    data = json.loads(path.read_text())
    samples = [Sample(**sample) for sample in data.pop("samples")]
    data.pop("args", None)
    return SoakRun(**data, samples=samples)


def _report(run: SoakRun, args, work: Path, command: str) -> int:
    figures = judge(run, args)
    text = markdown(run, args, figures, command)
    print(text)
    print(f"soak: run saved in {save_run(run, args, work / 'run.json')}")
    if not args.no_doc:
        print(f"soak: chart {chart(run, args, CHART)}")
        print(f"soak: figures written to {write_section('soak', text)}")
    for problem in run.problems:
        print(f"soak: PROBLEM {problem}", file=sys.stderr)
    return 1 if run.problems else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability soak",
        description="Steady load for minutes, RSS and lag sampled; then a burst and its drain.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak")
    parser.add_argument(
        "--warmup", type=float, help="minutes not judged (default: 3, or a third of the soak)"
    )
    parser.add_argument("--max-rate", type=float, help="the maximum rate (default: measure it)")
    parser.add_argument(
        "--backlog-seconds", type=float, default=240.0,
        help="seconds of traffic (at 20,000 events/s) to measure it on",
    )  # fmt: skip
    parser.add_argument("--load", type=float, default=0.7, help="share of the maximum to soak at")
    parser.add_argument("--burst", type=float, default=3.0, help="burst, times the maximum")
    parser.add_argument("--burst-seconds", type=float, default=60.0, help="length of the burst")
    parser.add_argument(
        "--drain-minutes", type=float, default=15.0, help="how long the burst may take to drain"
    )
    parser.add_argument("--seed", type=int, default=11, help="seed of the traffic")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/ (figures, chart)")
    parser.add_argument(
        "--report-only", metavar="RUN_JSON", help="report a saved run again (no new run)"
    )
    return parser
