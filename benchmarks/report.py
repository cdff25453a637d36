"""The results of ``make bench``: one Markdown table, the JSON files and a chart.

The table is what the README's Performance section shows; it is printed in
Markdown so that it can be pasted as it is. ``latest.json`` holds the latest
figures of every section (a run of some sections replaces those and keeps
the others, each section with its own ``measured_at``); ``<timestamp>.json``
holds exactly what one run measured.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

#: What the issue asks for, to print beside each figure.
TARGETS = {
    "ceiling_ratio": 0.8,
    "p99_ms": 500,
    "memory_rss_mb": 1000,
    "rocksdb_rss_mb": 400,
    "recovery_s": 60,
    "replay_events_per_s": 250_000,
}


#: The order of the contenders in the table and the chart (the JSON keeps them sorted).
ORDER = ("botstream", "ceiling", "kstreams", "quix", "faust")


def _ordered(contenders: dict) -> list[str]:
    return sorted(contenders, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER))


def load_latest(folder: Path) -> dict:
    """``latest.json`` of ``folder``, or an empty document."""
    try:
        return json.loads((folder / "latest.json").read_text())
    except (OSError, ValueError):
        return {}


def merge(previous: dict, current: dict) -> dict:
    """The latest figure of every section: ``current``'s sections over ``previous``'s."""
    merged = dict(previous)
    merged.update(current)
    return merged


def write(results: dict, folder: Path, stamp: str) -> list[Path]:
    """Write ``<stamp>.json``, ``latest.json`` and the charts; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    run_json = folder / f"{stamp}.json"
    latest_json = folder / "latest.json"
    text = json.dumps(results, indent=2, sort_keys=True, default=_json_default) + "\n"
    run_json.write_text(text)
    latest_json.write_text(text)
    paths = [run_json, latest_json]
    try:
        chart(results, folder / f"{stamp}.png")
        chart(results, folder / "latest.png")
        paths += [folder / f"{stamp}.png", folder / "latest.png"]
    except ImportError:
        print("matplotlib is not installed (it is in the bench extra): no chart")
    return paths


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


def _rate(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:,.0f}"


def _identical(same: bool | None) -> str:
    if same is None:
        return "no reference"
    return "byte-identical to the reference ✓" if same else "DIFFERENT from the reference ✗"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" ✓" if ok else " ✗")


def table(results: dict) -> str:
    """Every section's figures as Markdown tables, with the issue's targets."""
    parts = []
    throughput = results.get("throughput")
    if throughput:
        parts.append(throughput_table(throughput))
    latency = results.get("latency")
    if latency:
        parts.append(latency_table(latency))
    memory = results.get("memory")
    if memory:
        parts.append(memory_table(memory))
    replay = results.get("replay")
    if replay:
        target = TARGETS["replay_events_per_s"]
        rate = replay.get("median_events_per_s")
        parts.append(
            "| replay | events | events/s (median) | peak RSS | target | outputs |\n"
            "|---|---:|---:|---:|---|---|\n"
            f"| `botstream replay`, one core | {replay['events']:,} | {_rate(rate)} | "
            f"{replay.get('median_peak_rss_mb', 0):,.0f} MB | >= {target:,}"
            f"{_verdict(rate is not None and rate >= target)} | "
            f"{_identical(replay.get('identical_to_reference'))} |"
        )
    return "\n\n".join(parts)


def throughput_table(section: dict) -> str:
    """Events/s of every contender and botstream's ratio to it."""
    contenders = section["contenders"]
    mine = contenders.get("botstream", {}).get("median_events_per_s")
    lines = [
        f"Throughput: {section['events']:,} simulated widget events, {section['partitions']} "
        f"partitions, exactly-once everywhere, median of {section['runs']} interleaved runs "
        f"(measured {section.get('measured_at', '?')}).",
        "",
        "| contender | events/s (median) | runs | botstream / it | steady events/s | "
        "first commit after |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for name in _ordered(contenders):
        figures = contenders[name]
        rate = figures.get("median_events_per_s")
        runs = ", ".join(_rate(r) for r in figures.get("runs_events_per_s", []))
        if name == "botstream" or not mine or not rate:
            ratio = "-"
        else:
            ratio = f"{mine / rate:.2f}"
            if name == "ceiling":
                ratio += _verdict(mine / rate >= TARGETS["ceiling_ratio"])
        wrong = (
            " (WRONG: " + "; ".join(figures["problems"]) + ")" if figures.get("problems") else ""
        )
        first = figures.get("median_first_commit_s")
        lines.append(
            f"| {figures['label']}{wrong} | {_rate(rate)} | {runs} | {ratio} | "
            f"{_rate(figures.get('median_steady_events_per_s'))} | "
            f"{'-' if first is None else f'{first:.1f} s'} |"
        )
    return "\n".join(lines)


def latency_table(section: dict) -> str:
    """p50/p95/p99/max of outcome and charge latency at each offered rate."""
    runs = section.get("runs_per_rate", 1)
    warmup = section.get("warmup_seconds")
    how = (
        f"{runs} runs of {section.get('seconds_per_rate', 0):g} s per rate, samples pooled, "
        f"after {warmup:g} s of warm-up each (the warm-up's own p99 in the last column)"
        if warmup is not None
        else "one run per rate"
    )
    lines = [
        "Latency: produce time to visibility for a `read_committed` consumer, in ms; "
        f"{how} (measured {section.get('measured_at', '?')}).",
        "",
        "| offered rate | achieved | what | samples | p50 | p95 | p99 | max "
        "| each run's p99 | warm-up p99 |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for rate in section.get("rates", []):
        for what in ("outcome", "charge"):
            figures = rate[what]
            ok = None
            if rate.get("is_half_max"):
                ok = (
                    figures["p99_ms"] == figures["p99_ms"] and figures["p99_ms"] < TARGETS["p99_ms"]
                )
            per_run = ", ".join(_ms(run[what]["p99_ms"]) for run in rate.get("runs", []))
            warm = rate.get("warmup", {}).get(what, {}).get("p99_ms")
            lines.append(
                f"| {rate['offered_per_s']:,}/s{' (half max)' if rate.get('is_half_max') else ''}"
                f" | {_rate(rate.get('achieved_per_s'))}/s | {what} | {figures['samples']:,} | "
                f"{_ms(figures['p50_ms'])} | {_ms(figures['p95_ms'])} | "
                f"{_ms(figures['p99_ms'])}{_verdict(ok)} | {_ms(figures['max_ms'])} | "
                f"{per_run or '-'} | {_ms(warm) if warm is not None else '-'} |"
            )
    return "\n".join(lines)


def memory_table(section: dict) -> str:
    """Peak RSS and recovery time of each store."""
    lines = [
        f"Memory and recovery: a worker holding {section['conversations']:,} open conversations "
        f"(measured {section.get('measured_at', '?')}).",
        "",
        "| store | peak RSS | target | ready again after SIGKILL | from | target |",
        "|---|---:|---|---:|---|---|",
    ]
    for store in section.get("stores", []):
        if store.get("skipped"):
            lines.append(f"| {store['store']} | - | | - | | skipped: {store['skipped']} |")
            continue
        limit = (
            TARGETS["memory_rss_mb"] if store["store"] == "memory" else TARGETS["rocksdb_rss_mb"]
        )
        rss = store.get("peak_rss_mb")
        for index, recovery in enumerate(store.get("recoveries", [])):
            seconds = recovery.get("ready_s")
            ok = None
            if store["store"] == "memory":
                ok = seconds is not None and seconds < TARGETS["recovery_s"]
            first = index == 0
            name = store["store"] if first else ""
            peak = f"{rss:,.0f} MB" if first and rss else ""
            limit_text = f"<= {limit:,} MB{_verdict(rss is not None and rss <= limit)}"
            ready = "-" if seconds is None else f"{seconds:.1f} s"
            target = "" if ok is None else f"< {TARGETS['recovery_s']} s{_verdict(ok)}"
            lines.append(
                f"| {name} | {peak} | {limit_text if first else ''} | {ready} | "
                f"{recovery['from']} | {target} |"
            )
    return "\n".join(lines)


def check_table(section: dict) -> str:
    """What ``--check`` found for each contender."""
    lines = ["| contender | events/s | checks | problems |", "|---|---:|---|---|"]
    for name in _ordered(section["contenders"]):
        figures = section["contenders"][name]
        checks = ", ".join(f"{k} {v:,}" for k, v in figures.get("checks", {}).items())
        problems = "; ".join(figures.get("problems", [])) or "none"
        lines.append(
            f"| {figures['label']} | {_rate(figures.get('median_events_per_s'))} | "
            f"{checks} | {problems} |"
        )
    lines.append(
        f"\n{section['events']:,} input records, {section['valid_events']:,} of them "
        "countable events"
    )
    return "\n".join(lines)


# -- the chart ------------------------------------------------------------------------

_COLOURS = {
    "botstream": "#1b6ca8",
    "ceiling": "#9aa5b1",
    "kstreams": "#e07b39",
    "quix": "#7b4fa0",
    "faust": "#3a9d5d",
}


def chart(results: dict, path: Path) -> None:
    """One picture of every section: bars against the issue's targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("throughput", "latency", "memory", "replay") if results.get(name)]
    if not panels:
        return
    columns = 2 if len(panels) > 1 else 1
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(7 * columns, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, name in zip(axes.flat, panels, strict=False):
        {
            "throughput": _throughput_panel,
            "latency": _latency_panel,
            "memory": _memory_panel,
            "replay": _replay_panel,
        }[name](ax, results[name])
    figure.suptitle("botstream performance (make bench)", fontsize=14, fontweight="bold")
    environment = results.get("environment", {})
    load = (environment.get("load_average_at_start") or [None])[0]
    figure.text(
        0.5,
        0.005,
        f"{environment.get('cpus', '?')} CPUs, Python {environment.get('python', '?')}; "
        f"load average {load if load is None else round(load, 1)} when the last run started "
        "(each section says when it was measured in the JSON)",
        ha="center",
        va="bottom",
        fontsize=8,
        color="dimgrey",
    )
    figure.tight_layout(rect=(0, 0.02, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _throughput_panel(ax, section: dict) -> None:
    contenders = section["contenders"]
    names = [n for n in _ordered(contenders) if contenders[n].get("median_events_per_s")]
    rates = [contenders[n]["median_events_per_s"] for n in names]
    bars = ax.barh(range(len(names)), rates, color=[_COLOURS.get(n, "grey") for n in names])
    ax.set_yticks(range(len(names)), [contenders[n]["label"] for n in names], fontsize=8)
    ax.invert_yaxis()
    mine = contenders.get("botstream", {}).get("median_events_per_s")
    for bar, name, rate in zip(bars, names, rates, strict=True):
        note = f"{rate:,.0f}/s"
        if mine and name != "botstream":
            note += f"  (botstream ×{mine / rate:.2f})"
        ax.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + note, va="center", fontsize=8
        )
    if "ceiling" in contenders and contenders["ceiling"].get("median_events_per_s"):
        target = TARGETS["ceiling_ratio"] * contenders["ceiling"]["median_events_per_s"]
        ax.axvline(target, color="crimson", linestyle="--", linewidth=1)
        ax.text(target, len(names) - 0.4, " 0.8 × ceiling", color="crimson", fontsize=8)
    ax.set_xlim(0, max(rates) * 1.45 if rates else 1)
    ax.xaxis.set_major_formatter(_thousands())
    ax.set_xlabel("events/s, launch to everything committed (higher is better)")
    ax.set_title(
        f"Throughput, {section['events']:,} events, exactly-once, median of {section['runs']}",
        fontsize=10,
    )


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:,.0f}")


def _latency_panel(ax, section: dict) -> None:
    labels, values = [], {"p50": [], "p95": [], "p99": [], "max": []}
    for rate in section.get("rates", []):
        for what in ("outcome", "charge"):
            labels.append(f"{what}\n{rate['offered_per_s']:,}/s")
            for key in values:
                values[key].append(rate[what][f"{key}_ms"])
    width = 0.2
    for index, (key, series) in enumerate(values.items()):
        ax.bar([i + (index - 1.5) * width for i in range(len(labels))], series, width, label=key)
    ax.axhline(TARGETS["p99_ms"], color="crimson", linestyle="--", linewidth=1)
    ax.text(-0.5, TARGETS["p99_ms"], "p99 target 500 ms", color="crimson", fontsize=8, va="bottom")
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("ms (lower is better)")
    ax.legend(fontsize=8)
    ax.set_title("Latency: produce → visible read_committed", fontsize=10)


def _memory_panel(ax, section: dict) -> None:
    stores = [s for s in section.get("stores", []) if not s.get("skipped")]
    names = [s["store"] for s in stores]
    rss = [s.get("peak_rss_mb") or 0 for s in stores]
    bars = ax.bar(names, rss, color="#1b6ca8", width=0.5)
    for bar, store in zip(bars, stores, strict=True):
        limit = (
            TARGETS["memory_rss_mb"] if store["store"] == "memory" else TARGETS["rocksdb_rss_mb"]
        )
        ax.hlines(
            limit,
            bar.get_x() - 0.05,
            bar.get_x() + bar.get_width() + 0.05,
            color="crimson",
            linestyle="--",
        )
        recoveries = ", ".join(
            f"{r['from']}: {r['ready_s']:.1f} s"
            for r in store.get("recoveries", [])
            if r.get("ready_s") is not None
        )
        ax.text(
            bar.get_x() + bar.get_width() / 2,
            max(bar.get_height(), limit) * 1.04,
            f"{bar.get_height():,.0f} MB (limit {limit:,})\nready after kill:\n{recoveries}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    skipped = [s for s in section.get("stores", []) if s.get("skipped")]
    for store in skipped:
        ax.text(
            0.98,
            0.95,
            f"{store['store']}: {store['skipped']}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
            color="dimgrey",
        )
    ax.set_xlim(-0.75, max(len(stores), 2) - 0.25)
    ax.set_ylim(0, max([*rss, TARGETS["memory_rss_mb"]]) * 1.6)
    ax.set_ylabel("peak RSS, MB (lower is better)")
    ax.set_title(f"Worker holding {section['conversations']:,} open conversations", fontsize=10)


def _replay_panel(ax, section: dict) -> None:
    rate = section.get("median_events_per_s") or 0
    ax.bar(["botstream replay"], [rate], color="#1b6ca8", width=0.4)
    ax.set_xlim(-0.6, 0.6)
    ax.axhline(TARGETS["replay_events_per_s"], color="crimson", linestyle="--", linewidth=1)
    ax.text(
        -0.55,
        TARGETS["replay_events_per_s"],
        "target 250,000/s",
        color="crimson",
        fontsize=8,
        va="bottom",
    )
    same = section.get("identical_to_reference")
    note = {None: "", True: "\noutputs byte-identical", False: "\noutputs DIFFERENT"}[same]
    # On white, so that a target line just above the bar does not cross the figure.
    ax.text(
        0,
        rate,
        f"{rate:,.0f}/s{note}",
        ha="center",
        va="bottom",
        fontsize=9,
        bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
    )
    ax.set_ylim(0, max(rate, TARGETS["replay_events_per_s"]) * 1.3)
    ax.yaxis.set_major_formatter(_thousands())
    ax.set_ylabel("events/s, one core (higher is better)")
    ax.set_title(f"Replay of {section['events']:,} events", fontsize=10)
