"""Hostile input: a million generated and mutated records to the decoders, the replay and a worker.

    python -m reliability fuzz [--count 1000000] [--seed 7] [--targets ...]   (make fuzz)

One hostile log (:class:`reliability.hostile.Feed`: valid conversations among
records broken every way, redeliveries, events of another account, events
older than the retention, and random mutations) goes, record for record, to:

* **decoder**: :func:`decode_event` and :func:`decode_plan` in process, as the
  log is generated; plus **hypothesis** strategies and **atheris**
  (coverage-guided libFuzzer) on the decoders alone;
* **replay**: ``botstream replay`` on the log as JSONL files;
* **worker**: a real ``botstream worker`` process on a real local broker,
  fed the same log through Kafka (plus records a JSONL line cannot carry).

Every record must end as expected, known from how it was made or judged by
:mod:`reliability.oracle` (schemas and SPEC, never botstream's decoders): no
exception escapes, the worker never stops, every record is applied or a dead
letter with an expected reason, and the dead letters are exactly the bad
records. The worker's outputs must also equal the replay's. Figures are
printed and written to the ``fuzz`` block of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from botstream.domain.config import DomainConfig
from reliability.decoding import (
    decode_event_safely,
    decode_plan_safely,
    event_fields_problem,
    plan_fields_problem,
    verdict_problem,
)
from reliability.hostile import (
    APPLIED,
    DUPLICATE,
    RETENTION_DAYS,
    EventForge,
    Feed,
    FeedConfig,
    Hostile,
    PlanForge,
    dumps,
)
from reliability.ledger import (
    FeedFiles,
    Findings,
    check_applied,
    check_dead_letters,
    check_replay_results,
    read_records,
    write_feed,
)
from reliability.report import machine, number, table, write_section

TARGETS = ("decoder", "hypothesis", "atheris", "replay", "worker")
#: Rules of both runs: low limits so that alerts fire, a retention that covers the log.
RUN_ENV = {
    "BOTSTREAM_PLAN_LIMITS": "standard=20/60,pro=50/200",
    "BOTSTREAM_RETENTION": f"{RETENTION_DAYS}d",
}
#: What the fuzz run's input topics accept (the broker's default for a topic is 1 MiB).
INPUT_MAX_MESSAGE_BYTES = 12 * 1024 * 1024


@dataclass
class TargetResult:
    """What one target was fed and what came of it."""

    name: str
    records: int = 0
    seconds: float = 0.0
    bad: int = 0
    good: int = 0
    dead_letters: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Records per second."""
        return self.records / self.seconds if self.seconds else 0.0

    def problem(self, text: str) -> None:
        """Note a problem (at most 50 are kept)."""
        if len(self.problems) < 50:
            self.problems.append(text)


# -- decoder ------------------------------------------------------------------------------


class DecoderTarget:
    """Each record of the log through its decoder, as the log is generated."""

    def __init__(self, config: DomainConfig) -> None:
        self.config = config
        self.result = TargetResult("decoder")
        self.escaped: Counter = Counter()

    def event(self, record: Hostile) -> None:
        """Decode one event record and compare with its expected fate."""
        started = time.perf_counter()
        decoded = decode_event_safely(record.value, self.config.max_event_bytes)
        self.result.seconds += time.perf_counter() - started
        self._judge(record, decoded, event_fields_problem, "")

    def plan(self, record: Hostile) -> None:
        """Decode one plan record and compare with its expected fate."""
        started = time.perf_counter()
        decoded = decode_plan_safely(record.value, self.config)
        self.result.seconds += time.perf_counter() - started
        self._judge(record, decoded, plan_fields_problem, "plan ")

    def _judge(self, record: Hostile, decoded, fields_problem, prefix: str) -> None:
        result = self.result
        result.records += 1
        if decoded.escaped is not None:
            self.escaped[type(decoded.escaped).__name__] += 1
        if decoded.code is None:
            result.good += 1
        else:
            result.bad += 1
            result.dead_letters[prefix + decoded.code] += 1
        problem = verdict_problem(decoded, record.expect)
        if problem is None and decoded.value is not None:
            problem = fields_problem(decoded.value, json.loads(record.value))
        if problem is not None:
            result.problem(f"{record.shape}: {problem}: {record.value[:160]!r}")


# -- hypothesis ---------------------------------------------------------------------------


def run_hypothesis(examples: int, seed: int) -> TargetResult:
    """The strategies of :mod:`reliability.strategies`, ``examples`` in all, on the decoders."""
    from hypothesis import strategies as st

    from reliability import strategies as hs

    result = TargetResult("hypothesis")
    cases = [
        ("broken events", hs.broken_events(), lambda case: hs.check_event(*case)),
        ("valid events", hs.valid_events(), lambda case: hs.check_event(case[0])),
        ("any value in any event field", hs.any_typed_events(), hs.check_event),
        ("mutated events", hs.mutated_events(), hs.check_event),
        ("broken plans", hs.broken_plans(), lambda case: hs.check_plan(*case)),
        ("valid plans", hs.valid_plans(), lambda case: hs.check_plan(case[0])),
        ("any value in any plan field", hs.any_typed_plans(), hs.check_plan),
        (
            "random bytes",
            st.binary(max_size=2048),
            lambda raw: (hs.check_event(raw), hs.check_plan(raw)),
        ),
    ]
    each = max(1, examples // len(cases))
    started = time.perf_counter()
    drawn: list[str] = []
    for name, strategy, check in cases:
        count = [0]
        try:
            _given(strategy, check, each, count, seed)()
        except Exception as exc:  # a failing example, shrunk: report it
            result.problem(f"{name}: {str(exc).splitlines()[0][:300]}")
        result.records += count[0]
        drawn.append(f"{name} {count[0]:,}")
    result.seconds = time.perf_counter() - started
    result.notes.append("examples: " + ", ".join(drawn))
    return result


def _given(strategy, check, examples: int, count: list[int], seed: int):
    """A hypothesis test of ``check`` on ``examples`` draws of ``strategy``, counting them."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    @seeded(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case) -> None:
        count[0] += 1
        check(case)

    return run


# -- atheris -------------------------------------------------------------------------------

_DICTIONARY = [
    *(f'"{name}"' for name in ("event_id", "type", "occurred_at", "account_id")),
    *(f'"{name}"' for name in ("conversation_id", "visitor_id", "data", "initiator")),
    *(f'"{name}"' for name in ("closed_by", "plan", "chatbot_pack", "effective_at")),
    *(f'"{name}"' for name in ("chatbot.triggered", "conversation.closed", "visitor.left")),
    *(f'"{name}"' for name in ("chatbot", "visitor", "agent", "system", "pro", "standard")),
    '"2026-11-24T20:15:00.123Z"',
    '"2026-11-24T20:15:00+01:00"',
    "T20:15:00",
    ".123Z",
    "+01:00",
    "true",
    "false",
    "null",
    "\\ud800",
    "\\u0000",
    "1e999",
    "NaN",
]


def run_atheris(runs: int, seed: int, directory: Path, max_bytes: int) -> TargetResult:
    """``runs`` libFuzzer executions of :mod:`reliability.atheris_target`, from a seed corpus."""
    result = TargetResult("atheris")
    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus"
    corpus.mkdir(exist_ok=True)
    seeds = _seed_corpus(corpus, max_bytes)
    result.notes.append(f"{len(seeds)} seed inputs: a valid event, a valid plan, each broken shape")
    dictionary = directory / "json.dict"
    dictionary.write_text(
        "".join(f"kw{i}={json.dumps(token)}\n" for i, token in enumerate(_DICTIONARY))
    )
    log_path = directory / "atheris.log"
    command = [
        sys.executable,
        "-m",
        "reliability.atheris_target",
        f"-runs={runs}",
        f"-seed={seed}",
        "-max_len=4096",
        f"-dict={dictionary}",
        "-print_final_stats=1",
        f"-artifact_prefix={directory}/",
        str(corpus),
    ]
    started = time.perf_counter()
    with log_path.open("wb") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=False)
    result.seconds = time.perf_counter() - started
    text = log_path.read_text(errors="replace")
    executed = re.search(r"stat::number_of_executed_units:\s*(\d+)", text)
    result.records = int(executed.group(1)) if executed else 0
    coverage = re.findall(r"cov: (\d+) ft: (\d+)", text)
    if coverage:
        result.notes.append(f"coverage: {coverage[-1][0]} edges, {coverage[-1][1]} features")
    if process.returncode != 0 or result.records < runs:
        crash = re.search(r"(Uncaught Python exception.*?)(?:\n\n|$)", text, re.S)
        detail = crash.group(1)[-600:] if crash else text[-600:]
        result.problem(f"atheris exit {process.returncode} after {result.records} runs: {detail}")
        result.notes.append(f"log: {log_path}")
    return result


def _seed_corpus(corpus: Path, max_bytes: int) -> list[Path]:
    """Valid records and every broken shape that fits libFuzzer's input size."""
    import random

    rng = random.Random(1)
    events = EventForge(rng, max_bytes)
    plans = PlanForge(rng, max_bytes, ("standard", "pro"))
    paths = []
    base = events.event("chatbot.button_clicked", 1_795_000_000_000, "acc-1", "c-1")
    plan = plans.plan("acc-1", 1_795_000_000_000)
    samples = [dumps(base), dumps(plan)]
    samples += [build(dict(base))[0] for _, build in events.broken_shapes()]
    samples += [build(dict(plan))[0] for _, build in plans.broken_shapes()]
    for index, raw in enumerate(samples):
        if len(raw) <= 4096:
            path = corpus / f"seed-{index:04d}"
            path.write_bytes(raw)
            paths.append(path)
    return paths


# -- replay --------------------------------------------------------------------------------


def run_replay(files: FeedFiles, out: Path) -> tuple[TargetResult, Findings]:
    """``botstream replay`` on the log's JSONL files, checked against the ledger."""
    result = TargetResult("replay")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOTSTREAM_")} | RUN_ENV
    command = [
        *(sys.executable, "-m", "botstream", "replay", str(files.events_jsonl)),
        *("--plans", str(files.plans_jsonl), "--out", str(out), "--quiet"),
    ]
    started = time.perf_counter()
    process = subprocess.run(command, env=env, capture_output=True, check=False)
    result.seconds = time.perf_counter() - started
    result.records = len(files.events.index_of_line) + len(files.plans.index_of_line)
    if process.returncode != 0:
        result.problem(f"botstream replay exit {process.returncode}: {process.stderr[-800:]!r}")
        return result, Findings()
    findings = check_replay_results(files, out)
    result.problems += findings.problems
    result.dead_letters = findings.dead_letters
    result.bad = sum(findings.dead_letters.values())
    result.good = result.records - result.bad
    counts = files.events.counts(jsonl_only=True)
    result.notes.append(
        f"{findings.applied:,} events applied to {findings.conversations:,} conversations "
        f"(expected {counts[APPLIED]:,}), {counts[DUPLICATE]:,} redeliveries ignored"
    )
    return result, findings


# -- worker --------------------------------------------------------------------------------


@dataclass
class _LogView:
    """What the integration harness's checks read of a log: the valid plans and the rules."""

    plans: list[tuple[bytes | None, bytes]]
    env: dict[str, str]

    def domain_config(self) -> DomainConfig:
        from botstream.config import load_settings

        return load_settings(env=self.env).domain


async def run_worker(
    files: FeedFiles,
    bootstrap: str,
    directory: Path,
    replay_out: Path | None,
    settle_timeout_s: float | None = None,
) -> TargetResult:
    """Feed the log to a ``botstream worker`` through Kafka; check what it committed.

    The worker gets topics and a consumer group of its own on the broker at
    ``bootstrap``; ``replay_out`` holds the replay's results to compare with.
    """
    from tests.integration.harness import (
        Outputs,
        WorkerPool,
        exactly_once_problems,
        isolated_settings,
        schema_problems,
    )

    result = TargetResult("worker")
    settings = await isolated_settings(bootstrap)
    topics = settings.topics
    await _raise_max_message_bytes(settings, [topics.events, topics.plans])
    pool = WorkerPool(settings, directory)
    worker = pool.add("worker", dict(RUN_ENV))
    plans = list(read_records(files.plans_bin))
    valid_plans = [r for i, r in enumerate(plans) if files.plans.fate(i) == APPLIED]
    expected_conversations = files.events.applied_per_conversation()
    bad_total = sum(
        1 for ledger in (files.events, files.plans) for i in range(len(ledger))
        if type(ledger.fate(i)) is frozenset
    )  # fmt: skip
    try:
        async with Outputs(settings) as outputs:
            await _produce(settings, topics.plans, plans)
            worker.start()
            await pool.wait_owning([worker], timeout_s=120)
            await outputs.wait_plans_read(len(valid_plans), timeout_s=120)
            began = time.monotonic()
            sent = await _produce(settings, topics.events, read_records(files.events_bin), worker)
            produced = time.monotonic() - began
            timeout = settle_timeout_s or 180 + sent / 1500
            settled = await outputs.wait_settled(
                set(expected_conversations), bad_total, timeout_s=timeout, alive=[worker]
            )
            result.seconds = settled - began
            result.records = sent + len(plans)
            result.notes.append(
                f"{sent:,} events produced in {produced:.1f} s, all processed "
                f"{result.seconds:.1f} s after the first"
            )
            await outputs.catch_up()
            checking = time.monotonic()
            _check_worker(result, files, outputs, expected_conversations, topics)
            result.problems += exactly_once_problems(outputs, _LogView(valid_plans, RUN_ENV))
            result.problems += schema_problems(outputs)
            await _check_metrics(result, worker, sent, topics)
            if replay_out is not None:
                result.problems += _compare_with_replay(outputs, replay_out)
            if not worker.running:
                result.problem("the worker stopped")
            result.problems += [f"worker log: {line[:300]}" for line in _trouble(worker)[:10]]
            result.notes.append(
                f"worker started {worker.starts} time(s), "
                f"{'still running' if worker.running else 'STOPPED'}; "
                f"{sum(len(r.records) for r in outputs.readers.values()):,} output records "
                f"checked in {time.monotonic() - checking:.0f} s"
            )
    except AssertionError as exc:
        result.problem(f"{str(exc)[:1500]}\n{pool.report()}")
    finally:
        pool.close()
    return result


#: Worker log lines that mean a record caused trouble: a failed or fenced transaction
#: (retried on the same records, it can block a partition), a lost partition.
_TROUBLE = re.compile(
    r"transaction of partition \d+ failed|fenced|could not acquire|stood still|"
    r"acquiring partition \d+ failed"
)


def _trouble(worker) -> list[str]:
    """The worker's error lines (the harness's marks) and its stages' troubles."""
    found = list(worker.errors())
    for path in worker.log_paths:
        with path.open(errors="replace") as log:
            found += [f"{path.name}: {line.strip()}" for line in log if _TROUBLE.search(line)]
    return found


def _check_worker(result, files, outputs, expected_conversations, topics) -> None:
    findings = Findings()
    letters = outputs.values("dead_letters")
    by_topic = {topics.events: [], topics.plans: []}
    for letter in letters:
        by_topic.setdefault(letter["topic"], []).append(letter)
    unknown = set(by_topic) - {topics.events, topics.plans}
    if unknown:
        findings.problem(f"worker: dead letters from unknown topics {sorted(unknown)}")
    check_dead_letters(
        files.plans, by_topic[topics.plans], findings, by_line=False, what="worker plans"
    )
    plan_letters = Counter(findings.dead_letters)
    findings.dead_letters.clear()
    check_dead_letters(
        files.events, by_topic[topics.events], findings, by_line=False, what="worker events"
    )
    result.dead_letters = findings.dead_letters + Counter(
        {f"plan {code}": n for code, n in plan_letters.items()}
    )
    check_applied(expected_conversations, outputs.values("outcomes"), findings, "worker")
    result.problems += findings.problems
    result.bad = len(letters)
    result.good = result.records - result.bad
    counts = files.events.counts()
    result.notes.append(
        f"{findings.applied:,} events applied to {findings.conversations:,} conversations "
        f"(expected {counts[APPLIED]:,}), {counts[DUPLICATE]:,} redeliveries ignored"
    )


async def _check_metrics(result: TargetResult, worker, sent: int, topics) -> None:
    """The worker's own counters agree with what it committed."""
    _, body = await worker.get("/metrics")
    text = body.decode()
    events_in = _metric(text, "botstream_events_in_total")
    if events_in.get((), 0) != sent:
        result.problem(f"botstream_events_in_total {events_in}, {sent} events sent")
    counted = Counter()
    for labels, value in _metric(text, "botstream_dead_letters_total").items():
        labels = dict(labels)
        prefix = "plan " if labels.get("topic") == topics.plans else ""
        counted[prefix + labels.get("reason", "?")] += int(value)
    if counted != result.dead_letters:
        result.problem(
            f"dead letters by reason: metrics {dict(counted)}, topic {dict(result.dead_letters)}"
        )


def _metric(text: str, name: str) -> dict[tuple, float]:
    """Samples of Prometheus counter ``name``: sorted label pairs -> value."""
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            metric, _, value = line.rpartition(" ")
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', metric)))
            samples[labels] = float(value)
    return samples


def _compare_with_replay(outputs, replay_out: Path) -> list[str]:
    """The worker's latest outcomes (but revision), usage and alerts equal the replay's."""

    def load(name: str) -> list[dict]:
        return [orjson.loads(line) for line in (replay_out / name).open("rb")]

    problems = []

    def strip(record: dict) -> dict:
        return {k: v for k, v in record.items() if k != "revision"}

    live = {cid: strip(r) for cid, r in outputs.latest_outcomes().items()}
    replay = {r["conversation_id"]: strip(r) for r in load("outcomes.jsonl")}
    if live != replay:
        differ = [c for c in replay if live.get(c) != replay[c]] + [
            c for c in live if c not in replay
        ]
        first = differ[0]
        problems.append(
            f"{len(differ)} outcomes differ from the replay; first {first!r}: "
            f"live {live.get(first)} replay {replay.get(first)}"
        )
    usage = {(u["account_id"], u["month"]): u for u in load("usage.jsonl")}
    if outputs.latest_usage() != usage:
        problems.append("usage differs from the replay")
    alerts = Counter((a["alert_id"], a["used"], a["limit"]) for a in load("alerts.jsonl"))
    live_alerts = Counter((a["alert_id"], a["used"], a["limit"]) for a in outputs.values("alerts"))
    if live_alerts != alerts:
        problems.append(
            f"alerts differ from the replay: live only {live_alerts - alerts}, "
            f"replay only {alerts - live_alerts}"
        )
    return problems


async def _raise_max_message_bytes(settings, topic_names: list[str]) -> None:
    """Let the input topics take records up to INPUT_MAX_MESSAGE_BYTES (the 10 MiB value)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from botstream.kafka.topics import kafka_client_kwargs

    admin = AIOKafkaAdminClient(**kafka_client_kwargs(settings))
    await admin.start()
    try:
        resources = [
            ConfigResource(
                ConfigResourceType.TOPIC,
                name,
                {"max.message.bytes": str(INPUT_MAX_MESSAGE_BYTES)},
            )
            for name in topic_names
        ]
        for response in await admin.alter_configs(resources):
            for error_code, message, _, name in (r[:4] for r in response.resources):
                if error_code:
                    raise RuntimeError(f"cannot raise max.message.bytes of {name}: {message}")
    finally:
        await admin.close()


async def _produce(settings, topic: str, records, worker=None) -> int:
    """Produce ``(key, value)`` records in order, as fast as the broker takes them."""
    from aiokafka import AIOKafkaProducer

    from botstream.kafka.topics import kafka_client_kwargs

    producer = AIOKafkaProducer(
        **kafka_client_kwargs(settings),
        acks="all",
        enable_idempotence=True,
        linger_ms=20,
        max_batch_size=512 * 1024,
        max_request_size=INPUT_MAX_MESSAGE_BYTES + 1024 * 1024,
    )
    await producer.start()
    sent = 0
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                if worker is not None and not worker.running:
                    raise AssertionError(f"the worker stopped after {sent} records")
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


# -- the run ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the hostile-input section; 0 when nothing went wrong."""
    args = _parser().parse_args(argv)
    targets = set(args.targets.split(",")) if args.targets else set(TARGETS)
    unknown = targets - set(TARGETS)
    if unknown:
        print(f"reliability fuzz: unknown targets {sorted(unknown)}", file=sys.stderr)
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="botstream-fuzz-"))
    work.mkdir(parents=True, exist_ok=True)
    config = DomainConfig()
    feed_config = FeedConfig(
        seed=args.seed,
        events=args.count,
        broken_plans=max(100, args.count // 500),
        ten_mib=1 + args.count // 500_000,
        one_mib=2 + args.count // 200_000,
        at_limit=10 + args.count // 10_000,
    )
    results: list[TargetResult] = []
    print(f"fuzz: {args.count:,} events, seed {args.seed}, files in {work}", flush=True)

    decoder = DecoderTarget(config)
    files, generated = None, 0.0
    if targets & {"decoder", "replay", "worker"}:
        began = time.perf_counter()
        feed = Feed(feed_config)
        hooks = (decoder.event, decoder.plan) if "decoder" in targets else (None, None)
        files = write_feed(feed, work / "feed", on_event=hooks[0], on_plan=hooks[1])
        generated = time.perf_counter() - began
        _print_feed(files, generated)
    if "decoder" in targets:
        if decoder.escaped:
            decoder.result.problem(f"exceptions escaped: {dict(decoder.escaped)}")
        results.append(_done(decoder.result))
    if "hypothesis" in targets:
        results.append(_done(run_hypothesis(args.hypothesis_examples, args.seed)))
    if "atheris" in targets:
        max_bytes = config.max_event_bytes
        results.append(
            _done(run_atheris(args.atheris_runs, args.seed, work / "atheris", max_bytes))
        )
    replay_out = None
    if "replay" in targets:
        replay_out = work / "replay"
        result, _ = run_replay(files, replay_out)
        results.append(_done(result))
    if "worker" in targets:
        results.append(_done(_run_worker_sync(files, args.bootstrap, work, replay_out)))
    failed = [r for r in results if r.problems]
    # The document holds whole runs only: every target, on one log.
    if not args.no_doc and targets == set(TARGETS):
        path = write_section("fuzz", _markdown(args, files, results, generated))
        print(f"fuzz: figures written to {path}")
    if not failed and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    elif failed:
        print(f"fuzz: problems in {', '.join(r.name for r in failed)}; files kept in {work}")
    return 1 if failed else 0


def _run_worker_sync(files, bootstrap, work, replay_out) -> TargetResult:
    if bootstrap:
        return asyncio.run(run_worker(files, bootstrap, work / "worker", replay_out))
    from botstream.kafka.local_broker import LocalKafka

    with LocalKafka(work_dir=work / "broker") as broker:
        return asyncio.run(run_worker(files, broker.bootstrap, work / "worker", replay_out))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability fuzz",
        description="Hostile records to the decoders, botstream replay and a live worker.",
    )
    parser.add_argument("--count", type=int, default=1_000_000, help="event records in the log")
    parser.add_argument("--seed", type=int, default=7, help="seed of the log and the fuzzers")
    parser.add_argument("--atheris-runs", type=int, default=1_000_000, help="libFuzzer runs")
    parser.add_argument(
        "--hypothesis-examples", type=int, default=20_000, help="hypothesis examples in all"
    )
    parser.add_argument("--targets", help=f"comma-separated subset of {','.join(TARGETS)}")
    parser.add_argument("--bootstrap", help="an existing broker (default: start a local one)")
    parser.add_argument("--work", help="directory for the log and results (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files of a good run")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/reliability.md")
    return parser


def _done(result: TargetResult) -> TargetResult:
    status = "ok" if not result.problems else f"{len(result.problems)} PROBLEMS"
    print(
        f"  {result.name:<10} {result.records:>10,} records in {result.seconds:7.1f} s "
        f"({result.rate:,.0f}/s): {status}",
        flush=True,
    )
    for note in result.notes:
        print(f"             {note}")
    for problem in result.problems[:20]:
        print(f"    ! {problem}")
    return result


def _print_feed(files: FeedFiles, seconds: float) -> None:
    events, plans = files.events, files.plans
    counts = events.counts()
    print(
        f"  log        {len(events):,} events ({counts[APPLIED]:,} valid, "
        f"{counts[DUPLICATE]:,} redeliveries, {counts['bad']:,} bad), {len(plans):,} plan "
        f"records ({plans.counts()['bad']:,} bad), generated in {seconds:.1f} s",
        flush=True,
    )


def _markdown(args, files: FeedFiles, results: list[TargetResult], generated: float) -> str:
    events, plans = files.events, files.plans
    counts, plan_counts = events.counts(), plans.counts()
    with_fates = ("decoder", "replay", "worker")
    rows = [
        (
            r.name,
            number(r.records),
            f"{r.seconds:,.1f}",
            number(round(r.rate)),
            number(r.good) if r.name in with_fates else "",
            number(r.bad) if r.name in with_fates else "",
            "none" if not r.problems else f"**{len(r.problems)}**",
        )
        for r in results
    ]
    header = ("target", "records", "seconds", "records/s", "accepted", "rejected", "problems")
    shown = [r for r in results if r.dead_letters]
    reason_rows = [
        (code, *(number(r.dead_letters.get(code, 0)) for r in shown))
        for code in sorted({code for r in shown for code in r.dead_letters})
    ]
    shapes = ", ".join(f"{name} {number(n)}" for name, n in events.shapes.most_common())
    notes = "\n".join(f"* {r.name}: {note}" for r in results for note in r.notes)
    problems = "\n".join(f"* {r.name}: {p}" for r in results for p in r.problems[:10])
    command = "python -m reliability fuzz" + (
        f" --count {args.count}" if args.count != 1_000_000 else ""
    )
    paragraphs = [
        f"Reproduce: `make fuzz` (or `.venv/bin/{command} --seed {args.seed}`). "
        f"Measured {machine()}, on a machine shared with other jobs.",
        f"One hostile log of {number(len(events))} widget-event records and "
        f"{number(len(plans))} plan records, generated in {generated:.0f} s from seed "
        f"{args.seed}: {number(counts[APPLIED])} valid events of conversations, "
        f"{number(counts[DUPLICATE])} exact redeliveries and {number(counts['bad'])} bad events; "
        f"{number(plan_counts[APPLIED])} valid and {number(plan_counts['bad'])} bad plan "
        f"records. By how they were made: {shapes}. Bad records are broken one way each, with "
        "the reason known from how (every field of every wrong type, invalid UTF-8 and lone "
        "surrogates in values and keys, repeated keys, nesting beyond 1,024 levels, numbers "
        "beyond the double range, NaN, BOMs, UTF-16, truncation, sizes just under, at and over "
        "`max_event_bytes`, 1 MiB and 10 MiB values, plan records of every broken shape, events "
        "of another account, events older than the retention), or mutated at random and judged "
        "by `reliability/oracle.py` (the JSON Schemas and SPEC's rules, never botstream's "
        "decoder). Kafka keys include none, empty and non-UTF-8 ones.",
        "Every target must take each record as expected: no exception escapes, every record "
        "is applied (or ignored as a redelivery) or a dead letter with an expected reason, the "
        "dead letters are exactly the bad records, and each conversation counts exactly its "
        "valid events. The worker must also never stop or fail a transaction, its metrics "
        "must count what it committed, every output record must match its schema, nothing may "
        "be doubled (the integration harness's exactly-once checks), and its outcomes (but "
        "revision), usage and alerts must equal the replay's.",
    ]
    timing = [
        "Accepted: decoded (decoder), or applied or ignored as a redelivery (replay, worker); "
        "rejected: a dead letter. The decoder's time is the decoders' own, records checked as "
        "the log was generated; it rejects no `late` or `account_mismatch` event, which only "
        "a conversation's state can tell. The replay's time is the whole `botstream replay` "
        "command, on the records a JSONL line can carry; the worker also gets those it cannot "
        "(empty, blank, with a newline: hence its extra `invalid_json`). The worker's time "
        "runs from the first event produced until every output was committed, the producer "
        "sharing the two cores with the broker and the worker.",
        "Large records. The run's two input topics accept 12 MiB (`max.message.bytes` raised "
        "on those topics only; the broker's default, 1 MiB, stays for every other topic). The "
        "worker's consumer asks for at most 4 MiB per partition (`max_partition_fetch_bytes`), "
        "and a 10 MiB record still arrives whole: since fetch version 3 (KIP-74) the broker "
        "returns the first batch of a response whole however large, and answers an empty set, "
        "never a cut batch, for a partition whose next batch does not fit; that partition is "
        "read first in a later fetch. A record's dead letter keeps at most `max_event_bytes` of "
        "it (README: decisions), so it fits in a Kafka message: before that, a record of "
        "768 KiB or more made a dead letter larger than the producer's 1 MiB limit, and its "
        "partition retried the failing transaction forever. Likewise a bad record's key: a dead "
        "letter carries at most its first 4 KiB (`MAX_KEY_BYTES`), twice (as its own key and "
        "in base64 in its value); a key over about 450 KB, carried whole, made one too large "
        "to publish.",
    ]
    fill = "\n\n".join(textwrap.fill(text, 95) for text in paragraphs)
    after = "\n\n".join(textwrap.fill(text, 95) for text in timing)
    return f"""## Hostile input (fuzz)

{fill}

{table(rows, header)}

{after}

Dead letters by reason (`plan ...`: of plan records):

{table(reason_rows, ("reason", *(r.name for r in shown)))}

{notes}

Problems: {"none." if not problems else chr(10) + problems}
"""
