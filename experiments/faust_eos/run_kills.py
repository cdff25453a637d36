"""SIGKILL the Faust worker of app.py at random moments, restart it, count the outputs.

    .venv/bin/python experiments/faust_eos/run_kills.py --guarantee exactly_once
    .venv/bin/python experiments/faust_eos/run_kills.py --guarantee exactly_once --patch
    .venv/bin/python experiments/faust_eos/run_kills.py --guarantee exactly_once --consume-out
    .venv/bin/python experiments/faust_eos/run_kills.py --guarantee at_least_once

Each run starts its own broker (LocalKafka), creates eos-in/eos-out (4 partitions),
produces N records and runs the worker, killing it --kills times while it
processes (each kill once the worker has made progress past a random fraction of
N, after a random 0-3 s more). It stops when a read_committed consumer of eos-out
has seen every seq, or nothing new for --stall seconds; then the worker gets
SIGTERM, open transactions are left to settle, and eos-out and the counter
table's changelog are read from the beginning with read_committed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from common import (
    HERE,
    IN_TOPIC,
    OUT_TOPIC,
    PARTITIONS,
    expected_counts,
    missing_and_duplicated,
    read_topic,
    seq_counts,
    setup,
    table_from_changelog,
)

from botstream.kafka.local_broker import LocalKafka


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(HERE / "app.py"), "worker", "-l", "warn", "--without-web"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=env["EOS_DATADIR"],
        )


async def follow(bootstrap: str, seen: Counter[int], progress: list[float]) -> None:
    """Count the seqs of eos-out as a read_committed consumer sees them."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(OUT_TOPIC, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            records = [r for rs in batch.values() for r in rs]
            if records:
                before = len(seen)
                seen.update(seq_counts(records))  # type: ignore[arg-type]
                if len(seen) > before:
                    progress[0] = time.monotonic()
    finally:
        await consumer.stop()


async def committed_inputs(admin: AIOKafkaAdminClient, group: str) -> int:
    """How many eos-in records the app's consumer group has committed."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # the group does not exist yet
        return 0
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == IN_TOPIC)


async def settle(bootstrap: str, timeout_s: float = 75.0) -> bool:
    """Wait until no transaction is open on eos-out (its LSO equals its high watermark)."""
    tps = [TopicPartition(OUT_TOPIC, p) for p in range(PARTITIONS)]
    clients = [
        AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=level)
        for level in ("read_committed", "read_uncommitted")
    ]
    for c in clients:
        await c.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            lso, hw = [await c.end_offsets(tps) for c in clients]
            if lso == hw:
                return True
            await asyncio.sleep(1)
        return False
    finally:
        for c in clients:
            await c.stop()


async def one_run(bootstrap: str, args: argparse.Namespace, run: int, workdir: Path) -> dict:
    rng = random.Random(args.seed + run)
    await setup(bootstrap, args.n)
    app_id = f"faust-eos-{run}"
    env = {
        "EOS_BOOTSTRAP": bootstrap,
        "EOS_APP_ID": app_id,
        "EOS_GUARANTEE": args.guarantee,
        "EOS_PATCH": "1" if args.patch else "0",
        "EOS_CONSUME_OUT": "1" if args.consume_out else "0",
        "EOS_DATADIR": str(workdir),
    }
    log = workdir / "worker.log"
    seen: Counter[int] = Counter()
    progress = [time.monotonic()]
    follower = asyncio.create_task(follow(bootstrap, seen, progress))
    thresholds = sorted(rng.uniform(0.1, 0.9) * args.n for _ in range(args.kills))
    kills = 0
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    committed = 0
    started = time.monotonic()
    worker = start_worker(env, log)
    try:
        # Done when every input is committed and every seq seen, or nothing moves.
        while (committed < args.n or len(seen) < args.n) and (
            time.monotonic() - progress[0] < args.stall
        ):
            now_committed = await committed_inputs(admin, app_id)
            if now_committed > committed:
                committed, progress[0] = now_committed, time.monotonic()
            if kills < len(thresholds) and len(seen) >= thresholds[kills]:
                at_start = len(seen)
                await asyncio.sleep(rng.uniform(0, 3))
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                kills += 1
                print(f"  run {run}: kill {kills} at ~{at_start} seqs seen", flush=True)
                worker = start_worker(env, log)
                progress[0] = time.monotonic()
                # the next kill only after this worker has produced something
                thresholds[kills:] = [max(t, len(seen) + 1) for t in thresholds[kills:]]
            await asyncio.sleep(0.2)
        elapsed = time.monotonic() - started
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        await admin.close()
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    settled = await settle(bootstrap)
    out = await read_topic(bootstrap, OUT_TOPIC)
    missing, duplicated = missing_and_duplicated(seq_counts(out), args.n)
    changelog = await read_topic(bootstrap, f"{app_id}-counts-changelog")
    table = table_from_changelog(changelog)
    expected = expected_counts(args.n)
    table_diff = {k: table.get(k, 0) - expected[k] for k in expected}
    text = log.read_text(errors="replace")
    keep = Path(args.logs) / f"{args.label.replace(' ', '')}-run{run}.log"
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(text)
    return {
        "run": run,
        "kills": kills,
        "seconds": round(elapsed),
        "inputs_committed": committed,
        "out_records": len(out),
        "missing": missing,
        "duplicated": duplicated,
        "settled": settled,
        "table_minus_expected": sum(table_diff.values()),
        "table_keys_wrong": sum(1 for d in table_diff.values() if d),
        "crash_lines": text.count("Crashed reason"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--guarantee", default="exactly_once")
    parser.add_argument("--patch", action="store_true", help="transaction by source partition")
    parser.add_argument(
        "--consume-out", action="store_true", help="the app also consumes eos-out (see README)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--stall", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--logs", default="/tmp/faust_eos-logs", help="worker logs go here")
    args = parser.parse_args()
    label = args.label = (
        args.guarantee
        + (" +patch" if args.patch else "")
        + (" +consume-out" if args.consume_out else "")
    )
    print(f"mode: {label}, N={args.n}, kills/run={args.kills}", flush=True)
    results = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="faust_eos-") as tmp, LocalKafka() as kafka:
            result = asyncio.run(one_run(kafka.bootstrap, args, run, Path(tmp)))
        print("  " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
        results.append(result)
    total = {k: sum(r[k] for r in results) for k in ("kills", "missing", "duplicated")}
    print(
        f"SUMMARY | {label} | runs {len(results)} | kills {total['kills']} | "
        f"missing {total['missing']} | duplicated {total['duplicated']} | "
        f"table off by {[r['table_minus_expected'] for r in results]}",
        flush=True,
    )


if __name__ == "__main__":
    main()
