"""``python -m reliability bounded``: state stays within its documented bounds, and expires.

Four parts; the first three run the stage tasks in process, without Kafka,
each in a fresh interpreter so that its RSS figures are its own:

* ``conversation``: one conversation with 100,000 events. Its state is an
  order-free aggregate plus the last 256 event ids, so its encoded size must
  stop growing once the id window is full.
* ``account-month``: one account with 100,000 conversations in one month,
  through the conversation and account tasks. The account stage holds one
  usage and one statistics entry for it, whatever the number of
  conversations; the conversation stage holds each conversation until
  ``retention`` after it ended, then drops it (a changelog tombstone each),
  and the RSS comes back.
* ``history``: 10,000 accounts, each with a charge, a conversation and a plan
  change every month, for 39 months. With the default window of 13 months
  the entries stop growing after the 13th month (the RSS after about a year
  of expiries more), and every month after that tombstones the month that
  fell out; with ``--history-months 0`` (keep every month) they grow on.
  Then the clock jumps 13 months ahead: every month expires, and most of the
  RSS comes back.
* ``live``: a ``botstream worker`` on a local broker reads a simulated log of
  about 15 months as a backlog. Its outputs equal ``botstream replay`` of the
  same log (the usage topic keeps the last record of every month, expired
  ones included); the accounts changelog ends with a tombstone for every usage
  and statistics entry of a month before the window; the read API answers
  410 for those months and the replay's figures for the kept ones, also after
  the worker is killed and restores its state from that changelog.

Figures go to the terminal and to the ``bounded`` block of ``docs/reliability.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import orjson

from reliability.report import machine, number, table, write_section
from reliability.report import rss_mib as process_rss_mib

PARTS = ("conversation", "account-month", "history", "live")
DAY_MS = 86_400_000


def rss_mib() -> float:
    """This process's resident set size now, in MiB (after a full garbage collection)."""
    gc.collect()
    return process_rss_mib()


def _settings(**domain):
    from botstream.config import load_settings
    from botstream.domain.config import DomainConfig

    base = load_settings(env={})
    return base.with_overrides(domain=DomainConfig(**domain))


def _record(topic: str, key: bytes | None, value: bytes, offset: int = 0):
    """A consumer record of ``value``, copied: orjson's bytes can pin a 4 KiB buffer each."""
    from aiokafka.structs import ConsumerRecord

    value = memoryview(value).tobytes()
    return ConsumerRecord(topic, 0, offset, 0, 0, key, value, None, 0, len(value), ())


# -- one conversation with 100,000 events ----------------------------------------------------


def conversation_part(events: int) -> dict:
    """Encoded size and RSS of one conversation as its events grow to ``events``."""
    from botstream.domain.conversation import encode_conversation
    from botstream.domain.partition import DictStore, PartitionProcessor
    from botstream.domain.timefmt import format_timestamp, parse_timestamp_ms

    config = _settings().domain
    store = DictStore()
    processor = PartitionProcessor(config, store)
    start = parse_timestamp_ms("2026-11-02T00:00:00Z")
    kinds = ("chatbot.message", "chatbot.button_clicked", "visitor.message", "agent.message")
    checkpoints = {10, 100, 1_000, 10_000, events}
    rows = []
    before = rss_mib()
    from botstream.domain.events import decode_event

    for n in range(events):
        kind = "chatbot.triggered" if n == 0 else kinds[n % len(kinds)]
        value = orjson.dumps(
            {
                "event_id": f"e-{n:09d}-5d1c",
                "type": kind,
                # One a second: the conversation never sits idle for the 30-minute timeout.
                "occurred_at": format_timestamp(start + n * 1000),
                "account_id": "acc-busy",
                "conversation_id": "c-endless",
                "visitor_id": "v-1",
                "data": {"chatbot_id": "bot-1", "button_id": "shipping", "agent_id": "a-1"},
            }
        )
        processor.process(decode_event(value, config.max_event_bytes))
        if n + 1 in checkpoints:
            state = store["c-endless"]
            rows.append(
                {
                    "events": n + 1,
                    "encoded_bytes": len(encode_conversation(state)),
                    "recent_ids": len(state.recent_ids),
                    "counted": state.outcome_record("c-endless", "inactivity")["counts"]["events"],
                    "rss_mib": rss_mib() - before,
                }
            )
    return {"rows": rows}


# -- one account, 100,000 conversations in a month ---------------------------------------------


def account_month_part(conversations: int) -> dict:
    """One account's conversations through both tasks; then retention drops them all."""
    from botstream.domain.timefmt import format_timestamp, parse_timestamp_ms
    from botstream.stream.tasks import AccountTask, ConversationTask

    settings = _settings()
    topics = settings.topics
    work = Path(tempfile.mkdtemp(prefix="botstream-bounded-"))
    settings = settings.with_overrides(data_dir=str(work))
    conversation_task = ConversationTask(0, settings)
    conversation_task.restored()
    account_task = AccountTask(0, settings)
    account_task.restored()
    start = parse_timestamp_ms("2026-11-01T00:00:00Z")
    month_ms = 29 * DAY_MS
    _record(topics.events, None, b"")  # imports done before the baseline
    base = rss_mib()
    batch: list = []
    offset = 0
    figures = {"largest_account_value": 0, "tombstones": 0, "held": 0, "peak_mib": 0.0}
    transactions = 0

    def flush(now_ms: int) -> None:
        nonlocal batch, transactions
        out: list = []
        conversation_task.process(batch, now_ms, out)
        updates = [
            _record(o.topic, o.key, o.value) for o in out if o.topic == topics.account_updates
        ]
        account_task.process(updates, now_ms, [])
        changes = conversation_task.changes()
        figures["tombstones"] += sum(1 for k, v in changes.items() if v is None and k != b"w")
        for value in account_task.changes().values():
            figures["largest_account_value"] = max(
                figures["largest_account_value"], len(value or b"")
            )
        transactions += 1
        conversation_task.committed(f"t{transactions}")
        account_task.committed()
        held = conversation_task.processor.open_conversations
        if held > figures["held"]:
            figures["held"] = held
            figures["peak_mib"] = rss_mib() - base
        batch = []

    for n in range(conversations):
        at = start + n * month_ms // conversations
        for step, kind in enumerate(
            ("chatbot.triggered", "chatbot.button_clicked", "visitor.left")
        ):
            value = orjson.dumps(
                {
                    "event_id": f"e-{n}-{step}",
                    "type": kind,
                    "occurred_at": format_timestamp(at + step * 5000),
                    "account_id": "acc-big",
                    "conversation_id": f"c-{n:07d}",
                }
            )
            batch.append(_record(topics.events, f"c-{n:07d}".encode(), value, offset))
            offset += 1
        if len(batch) >= 6000:
            flush(at)
    end_of_month = start + month_ms
    flush(end_of_month)
    before_drop = rss_mib() - base
    usage = account_task.usage[("acc-big", "2026-11")]
    stats = account_task.stats["acc-big"]["2026-11"]
    account_entries = len(account_task.usage) + sum(len(m) for m in account_task.stats.values())
    # Retention (7 days of event time) after the last conversation ended: all are dropped.
    conversation_task.tick(end_of_month + settings.domain.retention_ms + 60_000, [])
    dropped = conversation_task.changes()
    figures["tombstones"] += sum(
        1 for key, value in dropped.items() if value is None and key != b"w"
    )
    conversation_task.committed("after-retention")
    after = rss_mib() - base
    shutil.rmtree(work, ignore_errors=True)
    return {
        "conversations": conversations,
        "used": usage.used,
        "alerts_sent": len(usage.alerts_sent),
        "resolved": stats["resolved_by_chatbot"],
        "account_entries": account_entries,
        "held_after": conversation_task.processor.open_conversations,
        "before_drop_mib": before_drop,
        "after_mib": after,
        "updated_at": format_timestamp(usage.updated_at),
        **figures,
    }


# -- 39 months of 10,000 accounts ------------------------------------------------------------


def history_part(accounts: int, months: int, history_months: int) -> dict:
    """Entries, tombstones and RSS month by month; then a jump that expires everything."""
    from botstream.domain.history import month_number, month_text
    from botstream.domain.timefmt import parse_month
    from botstream.stream.tasks import AccountTask

    settings = _settings(history_months=history_months)
    topic = settings.topics.account_updates
    first = month_number("2025-01")
    # The wall clock of the run: after every month it uses, so none is capped.
    now_ms = parse_month(month_text(first + months + 13))[1]

    def month_of_records(index: int) -> list:
        month = month_text(first + index)
        start = parse_month(month)[0]
        records = []
        for a in range(accounts):
            account = f"acc-{a:05d}"
            at = start + (a % 27) * DAY_MS + 3_600_000
            messages = (
                {"t": "plan", "plan": ("standard", "pro")[index % 2], "chatbot_pack": False,
                 "effective_at": start},
                {"t": "charge", "conversation_id": f"c-{a}-{index}", "billable_at": at,
                 "month": month},
                {"t": "stats", "old": None, "new": [month, 2]},
            )  # fmt: skip
            for message in messages:
                value = orjson.dumps({"account_id": account, **message})
                records.append(_record(topic, account.encode(), value))
        return records

    # Warm up (imports, caches, the allocator) on a task that is thrown away.
    warm = AccountTask(0, settings)
    warm.restored()
    warm.process(month_of_records(-1), now_ms, [])
    warm.changes()
    warm.committed()
    del warm
    task = AccountTask(0, settings)
    task.restored()
    base = rss_mib()
    base_blocks = sys.getallocatedblocks()
    rows = []

    def apply(records: list) -> tuple[int, int]:
        task.process(records, now_ms, [])
        changes = task.changes()
        task.committed()
        return len(changes), sum(1 for value in changes.values() if value is None)

    for index in range(months):
        month = month_text(first + index)
        _, tombstones = apply(month_of_records(index))
        rows.append(
            {
                "month": month,
                "usage": len(task.usage),
                "stats": sum(len(m) for m in task.stats.values()),
                "plan_records": sum(len(h) for h in task.plans.values()),
                "tombstones": tombstones,
                "rss_mib": rss_mib() - base,
                "objects": sys.getallocatedblocks() - base_blocks,
            }
        )
    # The clock jumps 13 months: one charge of one account, 13 months after the last month.
    jump = month_text(first + months - 1 + 13)
    value = orjson.dumps(
        {"account_id": "acc-00000", "t": "charge", "conversation_id": "c-jump",
         "billable_at": parse_month(jump)[0] + DAY_MS, "month": jump}
    )  # fmt: skip
    peak, peak_blocks = rss_mib() - base, sys.getallocatedblocks() - base_blocks
    _, tombstones = apply([_record(topic, b"acc-00000", value)])
    task.process([], now_ms, [])  # the next batch: the memory goes back then
    after, after_blocks = rss_mib() - base, sys.getallocatedblocks() - base_blocks
    return {
        "accounts": accounts,
        "history_months": history_months,
        "rows": rows,
        "jump": {
            "month": jump,
            "tombstones": tombstones,
            "usage": len(task.usage),
            "stats": sum(len(m) for m in task.stats.values()),
            "plan_records": sum(len(h) for h in task.plans.values()),
            "before_mib": peak,
            "after_mib": after,
            "objects_before": peak_blocks,
            "objects_after": after_blocks,
        },
    }


def _in_child(function, *args) -> dict:
    """Run ``function(*args)`` in a fresh interpreter (its own RSS); its result."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        return pool.apply(function, args)


# -- a live worker on ~15 months --------------------------------------------------------------


async def live_part(bootstrap: str, work: Path, accounts: int) -> dict:
    """A worker reads about 15 months as a backlog: outputs, tombstones, reads, a restore."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from botstream.domain.history import first_kept_month
    from botstream.domain.timefmt import format_timestamp, month_of
    from botstream.kafka.topics import kafka_client_kwargs
    from botstream.sim.generator import SimConfig, TrafficSimulator
    from tests.integration.harness import (
        PLAN_LIMITS,
        Outputs,
        SimLog,
        WorkerPool,
        compare_with_replay,
        exactly_once_problems,
        isolated_settings,
        produce,
        run_replay,
    )

    problems: list[str] = []
    settings = await isolated_settings(bootstrap)
    now = int(time.time() * 1000)
    start = now - 470 * DAY_MS
    simulator = TrafficSimulator(
        SimConfig(
            seed=5, start_ms=start, end_ms=now - 3_600_000, count=None, accounts=accounts,
            hot_accounts=1, conversations_per_account_day=1.0,
        )
    )  # fmt: skip
    plans = [(r.key, r.value) for r in simulator.plan_records()]
    events = [(r.key, r.value) for r in simulator.events()]
    directory = work / "live"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "events.jsonl").write_bytes(b"".join(v + b"\n" for _, v in events))
    (directory / "plans.jsonl").write_bytes(b"".join(v + b"\n" for _, v in plans))
    stats = simulator.stats
    env = {"BOTSTREAM_PLAN_LIMITS": PLAN_LIMITS}
    log = SimLog(
        directory / "events.jsonl", directory / "plans.jsonl", events, plans, stats.first_ms,
        stats.last_ms, stats.first_ms, Counter(stats.faults), env,
    )  # fmt: skip
    replay = run_replay(log, directory / "replay", partitions=settings.partitions)
    pool = WorkerPool(settings, directory / "workers")
    worker = pool.add("worker", env)
    result: dict = {
        "events": len(events),
        "span": " to ".join(format_timestamp(ms)[:10] for ms in (stats.first_ms, stats.last_ms)),
    }
    try:
        async with Outputs(settings) as outputs:
            await produce(settings, settings.topics.plans, plans)
            worker.start()
            await pool.wait_owning([worker], timeout_s=120)
            await outputs.wait_plans_read(len(plans))
            began = time.monotonic()
            await produce(settings, settings.topics.events, events)
            await outputs.wait_settled(
                set(replay.outcomes), len(replay.dead_letters), timeout_s=600, alive=[worker]
            )
            result["seconds"] = time.monotonic() - began
            await outputs.catch_up()
            problems += compare_with_replay(log, outputs, replay, revisions=True)
            problems += exactly_once_problems(outputs, log)
            usage_months = sorted({month for _, month in replay.usage})
            result["months"] = len(usage_months)
            result["usage_records"] = len(outputs.latest_usage())
            # The accounts changelog: the last entry of every key.
            reader = AIOKafkaConsumer(
                **kafka_client_kwargs(settings), isolation_level="read_committed",
                enable_auto_commit=False, auto_offset_reset="earliest",
            )  # fmt: skip
            await reader.start()
            latest: dict[bytes, bytes | None] = {}
            tombstones = Counter()
            try:
                topic = settings.topics.accounts_changelog
                tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
                reader.assign(tps)
                end = await reader.end_offsets(tps)
                while [tp for tp in tps if await reader.position(tp) < end[tp]]:
                    for records in (await reader.getmany(timeout_ms=1000)).values():
                        for r in records:
                            latest[r.key] = r.value
                            if r.value is None:
                                tombstones[orjson.loads(r.key)[0]] += 1
            finally:
                await reader.stop()
            clocks = [orjson.loads(v) for k, v in latest.items() if orjson.loads(k)[0] == "h"]
            clock = max(clocks)
            first_kept = first_kept_month(clock, settings.domain.history_months)
            result.update(clock=clock, first_kept=first_kept, tombstones=dict(tombstones))
            held = Counter()
            for key, value in latest.items():
                kind, *rest = orjson.loads(key)
                if kind in ("u", "s") and value is not None:
                    held[rest[1] < first_kept] += 1
            result["held_entries"] = held[False]
            result["held_expired_entries"] = held[True]
            if held[True]:
                problems.append(f"{held[True]} expired entries still live on the changelog")
            expired = [key for key in replay.usage if key[1] < first_kept]
            kept = [key for key in replay.usage if key[1] >= first_kept]
            result["expired_usage_keys"] = len(expired)
            if not expired:
                problems.append("the log has no month before the window")
            if clock != month_of(stats.last_ms):
                problems.append(f"clock {clock}, the log ends in {month_of(stats.last_ms)}")
            result["reads"] = await _check_reads(worker, replay, expired, kept, problems)
            # Kill the worker: it restores its state from the changelog, tombstones included.
            worker.kill()
            worker.start()
            await pool.wait_owning([worker], timeout_s=120)
            result["reads_after_restore"] = await _check_reads(
                worker, replay, expired, kept, problems
            )
            result["worker_rss_mib"] = process_rss_mib(worker.process.pid)
    except AssertionError as exc:
        problems.append(str(exc)[:800])
    finally:
        pool.close()
    result["problems"] = problems
    return result


async def _check_reads(worker, replay, expired, kept, problems: list[str]) -> str:
    """``/usage`` and ``/stats``: 410 for every expired key, the replay's for the kept ones."""
    gone = 0
    for account, month in expired:
        for path in (f"/usage/{account}", f"/stats/{account}"):
            status, body = await worker.get(path, month=month)
            if status != 410:
                problems.append(f"GET {path}?month={month}: {status} {body[:100]!r}, not 410")
            gone += status == 410
    same = 0
    for account, month in kept:
        got = await worker.get_json(f"/usage/{account}", month=month)
        got.pop("forecast", None)
        if got != replay.usage[(account, month)]:
            problems.append(f"/usage/{account}?month={month}: {got} != the replay's")
        same += got == replay.usage[(account, month)]
    stats = [s for s in replay.stats if (s["account_id"], s["month"]) in set(kept)]
    for want in stats:
        got = await worker.get_json(f"/stats/{want['account_id']}", month=want["month"])
        if got != want:
            problems.append(f"/stats {want['account_id']} {want['month']}: {got} != {want}")
        same += got == want
    return (
        f"{gone} of {2 * len(expired)} reads of expired months 410, {same} of "
        f"{len(kept) + len(stats)} reads of kept months equal to the replay"
    )


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    """Run the bounded-state parts; 0 when every bound held."""
    args = _parser().parse_args(argv)
    chosen = args.parts.split(",") if args.parts else list(PARTS)
    unknown = set(chosen) - set(PARTS)
    if unknown:
        print(f"reliability bounded: unknown parts {sorted(unknown)}", file=sys.stderr)
        return 2
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    results: dict = {}
    problems: list[str] = []
    if "conversation" in chosen:
        print(f"bounded: one conversation with {args.events:,} events", flush=True)
        results["conversation"] = found = _in_child(conversation_part, args.events)
        sizes = [row["encoded_bytes"] for row in found["rows"]]
        # Past the id window only its counters' digits can still grow.
        if sizes[-1] > sizes[2] + 16 or found["rows"][-1]["counted"] != args.events:
            problems.append(f"a conversation's state kept growing: {sizes}")
    if "account-month" in chosen:
        print(f"bounded: one account with {args.conversations:,} conversations", flush=True)
        results["account-month"] = found = _in_child(account_month_part, args.conversations)
        if found["account_entries"] != 2 or found["used"] != args.conversations:
            problems.append(f"the account stage holds {found['account_entries']} entries")
        if found["held_after"] != 0 or found["tombstones"] != args.conversations:
            problems.append(
                f"retention dropped {found['tombstones']} of {args.conversations} conversations"
            )
    if "history" in chosen:
        for months_kept in (13, 0):
            print(
                f"bounded: {args.accounts:,} accounts over {args.months} months, "
                f"--history-months {months_kept}",
                flush=True,
            )
            found = _in_child(history_part, args.accounts, args.months, months_kept)
            results[f"history-{months_kept}"] = found
        windowed = results["history-13"]["rows"]
        held = [row["usage"] + row["stats"] for row in windowed]
        if max(held) > 2 * 13 * args.accounts or held[-1] != held[12]:
            problems.append(f"entries kept growing with a window of 13 months: {held}")
        if windowed[-1]["tombstones"] != 2 * args.accounts:
            problems.append("a month past the window did not tombstone the month that fell out")
        jump = results["history-13"]["jump"]
        if jump["objects_after"] > jump["objects_before"] // 4:
            problems.append(f"expired history stayed in memory: {jump}")
    if "live" in chosen:
        print("bounded: a worker on about 15 months of traffic", flush=True)
        work = Path(tempfile.mkdtemp(prefix="botstream-bounded-"))
        from botstream.kafka.local_broker import LocalKafka

        with LocalKafka(work_dir=work / "broker") as broker:
            results["live"] = found = asyncio.run(
                live_part(broker.bootstrap, work, args.live_accounts)
            )
        problems += found["problems"]
        if not found["problems"]:
            shutil.rmtree(work, ignore_errors=True)
    markdown = _markdown(args, results, problems)
    print(markdown)
    if not args.no_doc and set(chosen) == set(PARTS):
        print(f"bounded: figures written to {write_section('bounded', markdown)}")
    for problem in problems:
        print(f"bounded: PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


def _markdown(args, results: dict, problems: list[str]) -> str:
    lines = [
        "## Bounded state",
        "",
        f"`python -m reliability bounded --events {args.events} --conversations "
        f"{args.conversations} --accounts {args.accounts} --months {args.months}` ({machine()}).",
        "",
        "The bounds (README, *State and its bounds*): a conversation holds an order-free "
        "aggregate and its last 256 event ids, whatever its length, until `retention` "
        "(7 days) after it ended; an account holds one usage and one statistics entry per "
        "month, whatever its traffic, for the last `--history-months` months (13), and the "
        "plan records that can still decide a plan in them.",
        "",
    ]
    if "conversation" in results:
        rows = [
            (number(r["events"]), number(r["encoded_bytes"]), r["recent_ids"],
             f"{r['rss_mib']:.1f}")
            for r in results["conversation"]["rows"]
        ]  # fmt: skip
        lines += [
            f"**One conversation, {number(args.events)} events** (one a second, every kind): "
            "its encoded state stops growing once its 256 recent event ids are full (but for "
            "the digits of its counters).",
            "",
            table(rows, ("events", "encoded state, bytes", "event ids kept", "RSS growth, MiB")),
            "",
        ]
    if "account-month" in results:
        r = results["account-month"]
        lines += [
            f"**One account, {number(r['conversations'])} billable conversations in one "
            f"month**: the account stage holds {r['account_entries']} entries for it (usage "
            f"`used` {number(r['used'])}, {r['alerts_sent']} alerts remembered; statistics "
            f"{number(r['resolved'])} resolved by chatbot); its largest changelog value is "
            f"{r['largest_account_value']} bytes. The conversation stage holds a conversation "
            f"until `retention` after it ended: at most {number(r['held'])} at once "
            f"({r['peak_mib']:.1f} MiB of RSS growth then), and every one of them is dropped "
            f"in the end ({number(r['tombstones'])} changelog tombstones, {r['held_after']} "
            f"held). The RSS growth was {r['before_drop_mib']:.1f} MiB before the last drop "
            f"and {r['after_mib']:.1f} MiB after it.",
            "",
        ]
    if "history-13" in results:
        windowed, keep_all = results["history-13"], results["history-0"]
        rows = []
        for w, k in zip(windowed["rows"], keep_all["rows"], strict=True):
            rows.append(
                (w["month"], number(w["usage"] + w["stats"]), number(w["plan_records"]),
                 number(w["tombstones"]), number(w["objects"]), f"{w['rss_mib']:.0f}",
                 number(k["usage"] + k["stats"]), f"{k['rss_mib']:.0f}")
            )  # fmt: skip
        shown = [
            rows[i] for i in sorted({0, 1, 5, 11, 12, 13, 14, 25, len(rows) - 1}) if i < len(rows)
        ]
        jump = windowed["jump"]
        plateau = windowed["rows"][12]["rss_mib"]
        settled = windowed["rows"][min(25, len(windowed["rows"]) - 1)]["rss_mib"]
        last = windowed["rows"][-1]["rss_mib"]
        lines += [
            f"**{number(windowed['accounts'])} accounts over {len(windowed['rows'])} "
            "months**, each with a charge, a conversation and a plan change every month, "
            "through the account task in process (RSS and live Python objects counted from "
            "the start; the reads' copy of the state included):",
            "",
            table(
                shown,
                (
                    "month",
                    "usage + stats entries",
                    "plan records",
                    "tombstones",
                    "live objects",
                    "RSS MiB",
                    "entries, keeping all",
                    "RSS MiB, keeping all",
                ),
            ),
            "",
            f"With the window, the entries stop at 13 months' worth and every later month "
            f"writes {number(windowed['rows'][-1]['tombstones'])} tombstones (the month that "
            f"fell out); live objects stay flat, and the RSS goes from {plateau:.0f} MiB at "
            f"the 13th month to {settled:.0f} MiB at the 26th and {last:.0f} MiB at the "
            f"{len(windowed['rows'])}th (Python's arenas, partly refilled by each month, "
            "settle after about a year of expiries), where keeping every month reaches "
            f"{keep_all['rows'][-1]['rss_mib']:.0f} MiB and grows on. Then one charge dated "
            f"{jump['month']} moves the clock 13 months on: {number(jump['tombstones'])} "
            f"tombstones; {jump['usage'] + jump['stats']} usage and statistics entries and "
            f"{number(jump['plan_records'])} plan records stay (each account's plan in force). "
            f"Live objects fall from {number(jump['objects_before'])} to "
            f"{number(jump['objects_after'])}, and the RSS from {jump['before_mib']:.0f} MiB "
            f"to {jump['after_mib']:.0f} MiB: the tables are rebuilt and `malloc_trim` hands "
            "the C allocator's free memory back; what stays is Python's own arenas, "
            "partly filled by the surviving plan records, kept for reuse.",
            "",
        ]
    if "live" in results:
        r = results["live"]
        lines += [
            f"**A worker on {number(r['events'])} events over {r.get('months', '?')} months** "
            f"({r['span']}, sent as a backlog, processed in {r.get('seconds', 0):.0f} s): "
            f"outputs equal to `botstream replay --partitions 4` of the same log (revisions "
            f"included) and exactly once; the usage topic keeps the last record of all "
            f"{r.get('usage_records', '?')} account-months, the expired ones included. The "
            f"history clock is {r.get('clock')}, so the window starts at "
            f"{r.get('first_kept')}: the accounts changelog holds tombstones "
            f"{r.get('tombstones')} (u: usage, s: statistics), {r.get('held_entries')} live "
            f"usage and statistics entries, and {r.get('held_expired_entries')} of an expired "
            f"month. Reads: {r.get('reads')}; after a SIGKILL and a restore from the "
            f"changelog: {r.get('reads_after_restore')}. Worker RSS at the end: "
            f"{r.get('worker_rss_mib', 0):.0f} MiB.",
            "",
        ]
    lines.append(f"Problems: {'; '.join(problems) if problems else 'none'}.")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reliability bounded",
        description="Bounded state: a long conversation, a busy account, months of history.",
    )
    parser.add_argument("--parts", help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--events", type=int, default=100_000, help="events of one conversation")
    parser.add_argument(
        "--conversations", type=int, default=100_000, help="conversations of one account"
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts of the history")
    parser.add_argument("--months", type=int, default=39, help="months of the history")
    parser.add_argument(
        "--live-accounts", type=int, default=30, help="accounts of the live worker's log"
    )
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/reliability.md")
    return parser
