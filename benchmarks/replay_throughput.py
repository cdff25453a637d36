"""Throughput and peak memory of ``botstream replay`` on a generated log.

Run: ``.venv/bin/python benchmarks/replay_throughput.py [--events 1000000] [--runs 3]``

Generates the log once with ``botstream simulate`` (fixed seed and start, so
every run and every machine replays the same bytes; kept in
``~/.cache/botstream/bench``), then runs the real command ``botstream replay``
``--runs`` times, each in a fresh process pinned to one CPU core, and prints
each run's wall time, events/s and peak RSS, and their medians. Wall time is
the whole command: start-up, reading, processing and writing the results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 7
START = "2026-09-01T00:00:00Z"


def cache_dir() -> Path:
    """Where generated logs are kept between runs."""
    base = os.environ.get("BOTSTREAM_CACHE_DIR") or (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "botstream"
    )
    return Path(base) / "bench"


def botstream(*args: str) -> list[str]:
    """The command line that runs ``botstream`` with this interpreter."""
    return [sys.executable, "-m", "botstream", *args]


def generated_log(events: int) -> tuple[Path, Path]:
    """The event log and plans file of ``events`` events, generated on first use."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"events-{events}-seed{SEED}.jsonl"
    plans = folder / f"plans-{events}-seed{SEED}.jsonl"
    if not (log.exists() and plans.exists()):
        print(f"generating {events:,} events into {log} ...", flush=True)
        subprocess.run(
            botstream("simulate", "--out", str(log), "--plans-out", str(plans),
                      "--count", str(events), "--seed", str(SEED), "--start", START, "--quiet"),
            check=True,
        )
    return log, plans


def run_once(log: Path, plans: Path, core: int) -> tuple[float, int]:
    """One replay in a fresh process on one core: (wall seconds, peak RSS in KiB)."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            botstream("replay", str(log), "--plans", str(plans), "--out", out, "--quiet"),
            preexec_fn=lambda: os.sched_setaffinity(0, {core}),
        )
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"replay failed with status {status}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    """Generate the log if needed, replay it several times and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    args = parser.parse_args()
    log, plans = generated_log(args.events)
    lines = sum(1 for _ in log.open("rb"))
    print(f"replaying {lines:,} records ({log.stat().st_size / 1e6:.0f} MB) on core {args.core}")
    rates, peaks = [], []
    for run in range(1, args.runs + 1):
        elapsed, peak_kib = run_once(log, plans, args.core)
        rates.append(lines / elapsed)
        peaks.append(peak_kib)
        print(f"  run {run}: {elapsed:6.2f} s  {lines / elapsed:10,.0f} events/s  "
              f"peak RSS {peak_kib / 1024:6.0f} MiB")
    print(f"median: {statistics.median(rates):,.0f} events/s, "
          f"peak RSS {statistics.median(peaks) / 1024:.0f} MiB "
          f"(load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
