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
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED = 7
#: Digests of the replay outputs recorded before any optimisation (see --record-reference).
REFERENCE = Path(__file__).resolve().parent / "results" / "replay-reference.json"
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
            botstream(
                "simulate",
                "--out",
                str(log),
                "--plans-out",
                str(plans),
                "--count",
                str(events),
                "--seed",
                str(SEED),
                "--start",
                START,
                "--quiet",
            ),
            check=True,
        )
    return log, plans


# Runs the command in a child pinned to one core and prints its wall time and peak RSS.
# A small process of its own forks it: the kernel's peak RSS of a child counts the
# parent's pages it held between fork and exec, and the bench's own process is large.
_MEASURE = (
    "import json, os, sys, time\n"
    "core = int(sys.argv[1])\n"
    "started = time.perf_counter()\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.sched_setaffinity(0, {core})\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(json.dumps([time.perf_counter() - started, usage.ru_maxrss,\n"
    "                  os.waitstatus_to_exitcode(status)]))\n"
)


def run_once(log: Path, plans: Path, core: int, keep: Path | None = None) -> tuple[float, int]:
    """One replay in a fresh process on one core: (wall seconds, peak RSS in KiB).

    With ``keep``, the replay's result files are written there (else to a temporary folder).
    """
    with tempfile.TemporaryDirectory() as scratch:
        out = str(keep or scratch)
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                _MEASURE,
                str(core),
                *botstream("replay", str(log), "--plans", str(plans), "--out", out, "--quiet"),
            ],
            stdout=subprocess.PIPE,
            check=False,
        )
    elapsed, peak_kib, code = json.loads(result.stdout)
    if code != 0 or result.returncode != 0:
        raise SystemExit(f"replay failed with status {code}")
    return elapsed, peak_kib


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every result file of a replay, by file name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.glob("*.jsonl"))
    }


def reference_digests(events: int) -> dict[str, str] | None:
    """The digests that the replay of this log gave when the reference was recorded."""
    try:
        reference = json.loads(REFERENCE.read_text())
    except (OSError, ValueError):
        return None
    return reference.get("logs", {}).get(f"events-{events}-seed{SEED}")


def measure(events: int = 1_000_000, runs: int = 3, core: int | None = None) -> dict:
    """Replay the generated log ``runs`` times; the figures, and whether outputs are unchanged."""
    core = max(os.sched_getaffinity(0)) if core is None else core
    log, plans = generated_log(events)
    lines = sum(1 for _ in log.open("rb"))
    print(
        f"replaying {lines:,} records ({log.stat().st_size / 1e6:.0f} MB) on core {core}",
        file=sys.stderr,
    )
    rates, peaks, seconds = [], [], []
    found: dict[str, str] = {}
    for run in range(1, runs + 1):
        with tempfile.TemporaryDirectory() as keep:
            elapsed, peak_kib = run_once(log, plans, core, Path(keep) if run == 1 else None)
            if run == 1:
                found = digests(Path(keep))
        rates.append(lines / elapsed)
        peaks.append(peak_kib)
        seconds.append(elapsed)
        print(
            f"  run {run}: {elapsed:6.2f} s  {lines / elapsed:10,.0f} events/s  "
            f"peak RSS {peak_kib / 1024:6.0f} MiB",
            file=sys.stderr,
        )
    reference = reference_digests(events)
    return {
        "events": lines,
        "core": core,
        "runs_events_per_s": rates,
        "runs_seconds": seconds,
        "median_events_per_s": statistics.median(rates),
        "median_peak_rss_mb": statistics.median(peaks) / 1024,
        "output_sha256": found,
        "identical_to_reference": None if reference is None else found == reference,
        "load_after": os.getloadavg()[0],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def record_reference(events: int) -> None:
    """Write the digests of this replay's outputs as the reference later replays must match."""
    log, plans = generated_log(events)
    with tempfile.TemporaryDirectory() as keep:
        run_once(log, plans, max(os.sched_getaffinity(0)), Path(keep))
        found = digests(Path(keep))
    try:
        reference = json.loads(REFERENCE.read_text())
    except (OSError, ValueError):
        reference = {
            "about": "SHA-256 of botstream replay's result files on the generated "
            "logs of benchmarks/replay_throughput.py; later replays must match",
            "logs": {},
        }
    reference["logs"][f"events-{events}-seed{SEED}"] = found
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    REFERENCE.write_text(json.dumps(reference, indent=2, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE}")


def main() -> None:
    """Generate the log if needed, replay it several times and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)))
    parser.add_argument(
        "--record-reference",
        action="store_true",
        help="write the outputs' digests as the reference (before optimising)",
    )
    args = parser.parse_args()
    if args.record_reference:
        record_reference(args.events)
        return
    result = measure(args.events, args.runs, args.core)
    same = {
        None: "no reference recorded",
        True: "identical to the reference",
        False: "DIFFERENT from the reference",
    }[result["identical_to_reference"]]
    print(
        f"median: {result['median_events_per_s']:,.0f} events/s, "
        f"peak RSS {result['median_peak_rss_mb']:.0f} MiB, outputs {same} "
        f"(load average now {result['load_after']:.2f})"
    )


if __name__ == "__main__":
    main()
