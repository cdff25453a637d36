"""Throughput: botstream, the plain aiokafka ceiling and the peer engines, on the same data.

The same pre-produced widget events (one shared input topic, 4 partitions)
are read by every contender in a consumer group of its own, and every
contender writes to topics of its own. Each contender is a separate process,
timed from its launch until it has done everything: every input offset
committed (at every hop of its topology) and everything it wrote visible to a
``read_committed`` consumer (see :class:`kit.CompletionWatcher`). Runs are
interleaved (every contender once, then again, in a rotating order) so that
drift of a shared machine hits all of them, and the median is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from benchmarks import kit
from benchmarks.peers.job import parse_event

#: Every contender, in the order of the table.
CONTENDERS = ("botstream", "ceiling", "kstreams", "quix", "faust")

LABELS = {
    "botstream": "botstream worker (3 stages)",
    "ceiling": "ceiling: plain aiokafka EOS loop",
    "kstreams": "Kafka Streams 4.3 (exactly_once_v2)",
    "quix": "Quix Streams (exactly-once)",
    "faust": "Faust agent + table (exactly_once)",
}


@dataclass
class Job:
    """The shared input and what a correct contender must have produced from it."""

    bootstrap: str
    traffic: kit.Traffic
    log_dir: Path
    commit_interval_ms: int
    #: The shared input topic (a name of its own in every invocation of the bench).
    input_topic: str = "bench-widget-events"
    #: Records that parse as a JSON object with string ids (the peers count these).
    valid: int = 0
    #: Invalid records that a lenient JSON parser accepts: a lone surrogate escape
    #: (``"\\ud83d"``) is valid JSON grammar, which Jackson reads and orjson refuses.
    lenient: int = 0

    @property
    def inputs(self) -> int:
        """Records on the input topic."""
        return len(self.traffic.events)


@dataclass
class RunResult:
    """One timed run of one contender."""

    contender: str
    run: int
    seconds: float
    events_per_s: float
    load_before: float
    #: From launch to the first committed input offset (start-up, group join, first batch).
    first_commit_s: float | None = None
    #: Events/s from the first committed offset to the end: the rate without start-up.
    steady_events_per_s: float | None = None
    checks: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Contender:
    """One process doing the job; subclasses say how to start it and what it must produce."""

    name = ""

    def __init__(self, job: Job, tag: str) -> None:
        self.job = job
        #: Every topic and group of this run carries the tag.
        self.tag = tag
        self.child: kit.Child | None = None
        self._work_dir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))

    async def prepare(self) -> None:
        """Create what must exist before the launch (output topics, plan records)."""

    def start(self) -> float:
        """Launch the process; ``time.perf_counter()`` at launch."""
        raise NotImplementedError

    def hops(self) -> list[kit.Hop]:
        """The groups that must commit all of their input."""
        raise NotImplementedError

    def internal_topics(self) -> list[str]:
        """Topics the contender creates itself, which must exist before it can be watched."""
        return []

    async def verify(self) -> tuple[dict, list[str]]:
        """Figures about what it committed, and every way it is wrong."""
        raise NotImplementedError

    def alive(self) -> bool:
        """Whether its process still runs."""
        return self.child is not None and self.child.alive()

    def stop(self) -> None:
        """Stop its process and remove its files."""
        if self.child is not None:
            self.child.stop()
        shutil.rmtree(self._work_dir, ignore_errors=True)

    def log_tail(self) -> str:
        """The end of its log."""
        return "" if self.child is None else self.child.log_tail()

    # -- shared checks ---------------------------------------------------------------

    async def check_outcomes_and_counts(
        self, outcomes_topic: str, counts_topic: str
    ) -> tuple[dict, list[str]]:
        """One outcome-like record per input, and counts per account summing to the valid inputs."""
        bootstrap = self.job.bootstrap
        outcomes = await kit.read_all(bootstrap, outcomes_topic)
        latest: dict[bytes, int] = {}
        for record in await kit.read_all(bootstrap, counts_topic):
            if record.value is not None:
                latest[record.key] = int(orjson.loads(record.value))
        counted = sum(latest.values())
        problems = []
        if len(outcomes) != self.job.inputs:
            problems.append(f"{len(outcomes)} outcome records for {self.job.inputs} inputs")
        if not self.job.valid <= counted <= self.job.valid + self.job.lenient:
            problems.append(
                f"account counts sum to {counted}, not {self.job.valid}"
                + (f" (+{self.job.lenient} lenient)" if self.job.lenient else "")
            )
        return {
            "outcome_records": len(outcomes),
            "accounts": len(latest),
            "counted": counted,
        }, problems


class Botstream(Contender):
    """A real ``botstream worker`` process: all three stages, exactly once."""

    name = "botstream"

    def __init__(self, job: Job, tag: str) -> None:
        super().__init__(job, tag)
        settings = kit.botstream_settings(job.bootstrap, f"{tag}-", job.input_topic)
        self.worker = kit.BotstreamWorker(settings, job.log_dir, data_dir=self._work_dir)

    async def prepare(self) -> None:
        from botstream.kafka.topics import ensure_topics

        await ensure_topics(self.worker.settings)
        await kit.produce(
            self.job.bootstrap, self.worker.settings.topics.plans, self.job.traffic.plans
        )

    def start(self) -> float:
        started = self.worker.start(self.tag)
        self.child = self.worker.child
        return started

    def hops(self) -> list[kit.Hop]:
        return self.worker.hops()

    async def verify(self) -> tuple[dict, list[str]]:
        bootstrap, topics = self.job.bootstrap, self.worker.settings.topics
        outcomes = await kit.read_all(bootstrap, topics.outcomes)
        usage = await kit.read_all(bootstrap, topics.usage)
        updates = await kit.read_all(bootstrap, topics.account_updates)
        dead = await kit.read_all(bootstrap, topics.dead_letters)
        charges = sum(1 for r in updates if b'"t":"charge"' in r.value)
        final_used: dict[bytes, int] = {}
        for record in usage:
            final_used[record.key] = orjson.loads(record.value)["used"]
        problems = []
        if sum(final_used.values()) != charges:
            problems.append(f"final usage sums to {sum(final_used.values())}, {charges} charges")
        if len(usage) != charges:
            problems.append(f"{len(usage)} usage records for {charges} charges")
        if len(dead) != self.job.traffic.malformed:
            problems.append(
                f"{len(dead)} dead letters for {self.job.traffic.malformed} malformed records"
            )
        return {
            "outcome_revisions": len(outcomes),
            "charges": charges,
            "usage_records": len(usage),
            "dead_letters": len(dead),
        }, problems

    def stop(self) -> None:
        self.worker.stop()
        super().stop()


class Ceiling(Contender):
    """The plain aiokafka exactly-once loop (``peers/ceiling.py``)."""

    name = "ceiling"

    @property
    def output(self) -> str:
        return f"{self.tag}-out"

    async def prepare(self) -> None:
        await kit.create_topics(self.job.bootstrap, [self.output])

    def start(self) -> float:
        self.child = kit.Child(
            [
                kit.PYTHON,
                str(kit.PEERS / "ceiling.py"),
                "--bootstrap",
                self.job.bootstrap,
                "--group",
                self.tag,
                "--input",
                self.job.input_topic,
                "--output",
                self.output,
            ],
            self.job.log_dir / f"{self.tag}.log",
        )
        return self.child.start()

    def hops(self) -> list[kit.Hop]:
        return [kit.Hop(self.tag, self.job.input_topic)]

    async def verify(self) -> tuple[dict, list[str]]:
        records = await kit.read_all(self.job.bootstrap, self.output)
        problems = []
        if len(records) != self.job.inputs:
            problems.append(f"{len(records)} output records for {self.job.inputs} inputs")
        return {"output_records": len(records)}, problems


class Faust(Contender):
    """The Faust peer (``peers/faust_peer.py``)."""

    name = "faust"

    def start(self) -> float:
        self.child = kit.Child(
            [
                kit.PYTHON,
                str(kit.PEERS / "faust_peer.py"),
                "--bootstrap",
                self.job.bootstrap,
                "--group",
                self.tag,
                "--input",
                self.job.input_topic,
                "--outcomes",
                f"{self.tag}-outcomes",
                "--data-dir",
                str(self._work_dir),
                "--commit-interval-ms",
                str(self.job.commit_interval_ms),
                "worker",
                "-l",
                "warn",
                "--without-web",
            ],
            self.job.log_dir / f"{self.tag}.log",
        )
        return self.child.start()

    async def prepare(self) -> None:
        # Faust creates its tables' changelogs itself, but not the topics its agents read.
        await kit.create_topics(
            self.job.bootstrap, [f"{self.tag}-outcomes", f"{self.tag}-by-account"]
        )

    def internal_topics(self) -> list[str]:
        return [f"{self.tag}-by-account", f"{self.tag}-account-counts-changelog"]

    def hops(self) -> list[kit.Hop]:
        return [
            kit.Hop(self.tag, self.job.input_topic),
            kit.Hop(self.tag, f"{self.tag}-by-account"),
        ]

    async def verify(self) -> tuple[dict, list[str]]:
        return await self.check_outcomes_and_counts(
            f"{self.tag}-outcomes", f"{self.tag}-account-counts-changelog"
        )


class Quix(Contender):
    """The Quix Streams peer (``peers/quix_peer.py``)."""

    name = "quix"

    def start(self) -> float:
        self.child = kit.Child(
            [
                kit.PYTHON,
                str(kit.PEERS / "quix_peer.py"),
                "--bootstrap",
                self.job.bootstrap,
                "--group",
                self.tag,
                "--input",
                self.job.input_topic,
                "--outcomes",
                f"{self.tag}-outcomes",
                "--counts",
                f"{self.tag}-counts",
                "--state-dir",
                str(self._work_dir),
                "--commit-interval-ms",
                str(self.job.commit_interval_ms),
            ],
            self.job.log_dir / f"{self.tag}.log",
        )
        return self.child.start()

    async def prepare(self) -> None:
        await kit.create_topics(self.job.bootstrap, [f"{self.tag}-outcomes", f"{self.tag}-counts"])

    def internal_topics(self) -> list[str]:
        return [f"repartition__{self.tag}"]

    def hops(self) -> list[kit.Hop]:
        # Quix names its repartition topic after the group, the stream and the operation.
        repartition = self._repartition
        return [kit.Hop(self.tag, self.job.input_topic), kit.Hop(self.tag, repartition)]

    async def resolve(self) -> None:
        """Find the name Quix gave the repartition topic."""
        names = await kit.topics_containing(self.job.bootstrap, f"repartition__{self.tag}")
        self._repartition = names[0]

    async def verify(self) -> tuple[dict, list[str]]:
        return await self.check_outcomes_and_counts(f"{self.tag}-outcomes", f"{self.tag}-counts")


class KafkaStreams(Contender):
    """The Kafka Streams peer (``peers/kstreams``), built by Maven."""

    name = "kstreams"

    def start(self) -> float:
        build = kit.kstreams_build()
        self.child = kit.Child(
            [
                kit.java(),
                "-Xmx2g",
                "-cp",
                f"{build / 'classes'}:{build / 'libs'}/*",
                "botstream.bench.PeerTopology",
                self.job.bootstrap,
                self.tag,
                self.job.input_topic,
                f"{self.tag}-outcomes",
                f"{self.tag}-counts",
                str(self._work_dir),
                str(self.job.commit_interval_ms),
                "1",
            ],
            self.job.log_dir / f"{self.tag}.log",
        )
        return self.child.start()

    async def prepare(self) -> None:
        kit.kstreams_build()  # before the clock starts
        await kit.create_topics(self.job.bootstrap, [f"{self.tag}-outcomes", f"{self.tag}-counts"])

    def internal_topics(self) -> list[str]:
        return [f"{self.tag}-by-account-repartition"]

    def hops(self) -> list[kit.Hop]:
        return [
            kit.Hop(self.tag, self.job.input_topic),
            kit.Hop(self.tag, f"{self.tag}-by-account-repartition"),
        ]

    async def verify(self) -> tuple[dict, list[str]]:
        return await self.check_outcomes_and_counts(f"{self.tag}-outcomes", f"{self.tag}-counts")


KINDS: dict[str, type[Contender]] = {
    "botstream": Botstream,
    "ceiling": Ceiling,
    "faust": Faust,
    "quix": Quix,
    "kstreams": KafkaStreams,
}


def _median(values) -> float | None:
    found = [v for v in values if v is not None and v == v]
    return statistics.median(found) if found else None


def lone_surrogate(value: bytes) -> bool:
    """Whether a record is refused only for a lone surrogate escape (see :attr:`Job.lenient`)."""
    if b"\\ud" not in value or parse_event(value) is not None:
        return False
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


async def prepare_input(job: Job) -> None:
    """Create the shared input topic (kept forever) and produce the events once."""
    await kit.create_topics(job.bootstrap, [job.input_topic], config={"retention.ms": "-1"})
    seconds = await kit.produce(job.bootstrap, job.input_topic, job.traffic.events)
    kit.log(f"produced {job.inputs:,} events to {job.input_topic} in {seconds:.1f} s")


async def profile_botstream(job: Job, out: Path, timeout_s: float) -> str | None:
    """One more botstream run (not counted) under py-spy; the flame graph's path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "profile-worker.svg"
    kit.log(f"profiling one more botstream run with py-spy into {path}")
    result = await run_one(job, "botstream", 0, timeout_s, False, profile_to=path)
    return str(path) if result.seconds == result.seconds and path.exists() else None


async def run_one(
    job: Job, name: str, run: int, timeout_s: float, verify: bool, profile_to: Path | None = None
) -> RunResult:
    """Time one run of one contender, then check what it committed."""
    tag = f"bench-r{run}-{name}"
    contender = KINDS[name](job, tag)
    spy = None
    try:
        await contender.prepare()
        load = kit.load_average()
        started = contender.start()
        if profile_to is not None:
            # Attach once the launcher has become the worker (py-spy cannot follow an exec).
            pid = contender.child.pid
            while contender.alive() and kit.still_launching(pid):
                await asyncio.sleep(0.01)
            spy = kit.Child(
                [
                    str(Path(kit.PYTHON).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    "100",
                    "--output",
                    str(profile_to),
                    "--format",
                    "flamegraph",
                ],
                job.log_dir / f"{tag}-py-spy.log",
            )
            spy.start()
        # Internal topics appear once the contender has started; watch them from then on.
        for topic in contender.internal_topics():
            while not await kit.topics_containing(job.bootstrap, topic):
                if not contender.alive():
                    raise RuntimeError(f"{name} exited:\n{contender.log_tail()}")
                await asyncio.sleep(0.05)
        if isinstance(contender, Quix):
            await contender.resolve()
        outputs = [
            t
            for t in await kit.topics_containing(job.bootstrap, tag)
            if t not in {h.topic for h in contender.hops()}
        ]
        async with kit.CompletionWatcher(job.bootstrap, contender.hops(), outputs) as watcher:
            seconds = await watcher.wait(started, timeout_s, alive=contender.alive)
            done_at = started + seconds
        result = RunResult(name, run, seconds, job.inputs / seconds, load)
        if watcher.first_commit_at is not None and done_at > watcher.first_commit_at:
            result.first_commit_s = watcher.first_commit_at - started
            result.steady_events_per_s = (job.inputs - watcher.first_committed) / (
                done_at - watcher.first_commit_at
            )
        contender.stop()
        if spy is not None:
            with contextlib.suppress(Exception):
                spy.process.wait(60)
        if verify:
            result.checks, result.problems = await contender.verify()
        status = "ok" if not result.problems else "WRONG: " + "; ".join(result.problems)
        steady = result.steady_events_per_s
        kit.log(
            f"  {name:10s} run {run}: {seconds:7.2f} s {result.events_per_s:10,.0f} events/s "
            f"(first commit after {result.first_commit_s or 0:.1f} s, then "
            f"{steady or 0:,.0f}/s) "
            f"(load {load:.2f}) {status if verify else ''}"
        )
        return result
    except Exception as error:
        kit.log(f"  {name} run {run} failed: {error}\n{contender.log_tail()}")
        return RunResult(
            name, run, float("nan"), float("nan"), kit.load_average(), problems=[f"failed: {error}"]
        )
    finally:
        contender.stop()
        await kit.delete_topics_containing(job.bootstrap, tag)


async def measure(
    bootstrap: str,
    traffic: kit.Traffic,
    log_dir: Path,
    *,
    contenders: Sequence[str],
    runs: int,
    commit_interval_ms: int,
    timeout_s: float,
    verify_all: bool,
    profile: bool = False,
    out: Path | None = None,
    warm_broker: bool = False,
) -> dict:
    """Every contender ``runs`` times, interleaved; the section of the results.

    ``warm_broker``: first one run of the ceiling on the same input, not
    measured. On a broker that has just started, whichever contender runs
    first pays for the broker's first transactions (its JIT, its coordinators'
    first writes): botstream, first in the first round, committed first after
    1.1 to 1.7 s in its first runs against 0.6 to 0.9 s in the next ones, in
    four invocations of the section.
    """
    job = Job(
        bootstrap,
        traffic,
        log_dir,
        commit_interval_ms,
        input_topic=f"bench-widget-events-{int(time.time())}",
    )
    job.valid = sum(1 for _, value in traffic.events if parse_event(value) is not None)
    job.lenient = sum(1 for _, value in traffic.events if lone_surrogate(value))
    await prepare_input(job)
    results: list[RunResult] = []
    order = list(contenders)
    if warm_broker:
        kit.log("throughput: one ceiling run to warm the broker up first, not measured")
        await run_one(job, "ceiling", 0, timeout_s, verify=False)
    for run in range(1, runs + 1):
        kit.log(f"throughput run {run} of {runs}: {', '.join(order)}")
        for name in order:
            results.append(await run_one(job, name, run, timeout_s, verify_all or run == 1))
        order = order[1:] + order[:1]  # rotate, so that no contender always goes first
    profile_path = None
    if profile and "botstream" in contenders and out is not None:
        profile_path = await profile_botstream(job, out, timeout_s)
    summary = {}
    for name in contenders:
        mine = [r for r in results if r.contender == name]
        rates = [r.events_per_s for r in mine if r.events_per_s == r.events_per_s]
        summary[name] = {
            "label": LABELS[name],
            "median_events_per_s": statistics.median(rates) if rates else None,
            "runs_events_per_s": [r.events_per_s for r in mine],
            "runs_seconds": [r.seconds for r in mine],
            "median_steady_events_per_s": _median(r.steady_events_per_s for r in mine),
            "median_first_commit_s": _median(r.first_commit_s for r in mine),
            "load_before": [r.load_before for r in mine],
            "checks": next((r.checks for r in mine if r.checks), {}),
            "problems": sorted({p for r in mine for p in r.problems}),
        }
    mine = summary.get("botstream", {}).get("median_events_per_s")
    ratios = {}
    for name in contenders:
        other = summary[name]["median_events_per_s"]
        if name != "botstream" and mine and other:
            ratios[f"botstream/{name}"] = mine / other
    return {
        "events": len(traffic.events),
        "valid_events": job.valid,
        "partitions": 4,
        "runs": runs,
        "commit_interval_ms": commit_interval_ms,
        "contenders": summary,
        "ratios": ratios,
        "profile": profile_path,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
