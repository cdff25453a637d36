"""Which changelog partition does a table write inside a stream.take() batch go to?

    .venv/bin/python experiments/faust_eos/take_partition.py [--n 5000]

Runs app.py with EOS_TAKE=1 (at_least_once, no kills): for every seq of a batch
the agent writes ``origin[str(seq)]``. For each such changelog record we know the
partition it landed in, the partition of the input record it stands for (the
input key ``k-{seq}`` hashed like the producer did), and the partition of the
event Faust's current_event() returned when the write was made.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import HERE, IN_TOPIC, read_topic, setup

from botstream.kafka.local_broker import LocalKafka


async def input_partitions(bootstrap: str) -> dict[int, int]:
    return {json.loads(r.value)["seq"]: r.partition for r in await read_topic(bootstrap, IN_TOPIC)}


async def measure(bootstrap: str, n: int, workdir: Path) -> None:
    await setup(bootstrap, n)
    env = {
        **os.environ,
        "EOS_BOOTSTRAP": bootstrap,
        "EOS_APP_ID": "faust-eos-take",
        "EOS_GUARANTEE": "at_least_once",
        "EOS_TAKE": "1",
        "EOS_DATADIR": str(workdir),
    }
    with open(workdir / "worker.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, str(HERE / "app.py"), "worker", "-l", "warn", "--without-web"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        deadline = time.monotonic() + 120
        changelog = []
        while time.monotonic() < deadline:
            await asyncio.sleep(3)
            changelog = await read_topic(bootstrap, "faust-eos-take-origin-changelog")
            if len({r.key for r in changelog}) >= n:
                break
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    source = await input_partitions(bootstrap)
    tally: Counter[str] = Counter()
    for r in changelog:
        seq, value = int(json.loads(r.key)), json.loads(r.value)
        tally["writes"] += 1
        tally["landed in the partition of its own input record"] += r.partition == source[seq]
        tally["landed in current_event()'s partition"] += (
            r.partition == value["context_event_partition"]
        )
        tally["current_event() is the stream's last event"] += (
            value["context_event_partition"] == value["stream_current_event_partition"]
        )
    for what, count in tally.items():
        print(f"{what}: {count}")
    text = (workdir / "worker.log").read_text(errors="replace")
    crashes = [line for line in text.splitlines() if "Crashed reason" in line]
    print(f"worker crash lines: {len(crashes)}", *crashes[:2], sep="\n  ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faust_eos-") as tmp, LocalKafka() as kafka:
        asyncio.run(measure(kafka.bootstrap, args.n, Path(tmp)))


if __name__ == "__main__":
    main()
