"""Figures to the terminal and to ``docs/reliability.md``, one marked block per section.

A section writes only its own block, between ``<!-- reliability:NAME -->``
and ``<!-- /reliability:NAME -->``; the other blocks and anything written
around them are kept, so sections can be rerun in any order.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"

_HEADER = """# Reliability

Figures of the reliability harness (`make reliability`, or one section with
`python -m reliability SECTION`). Each section below is rewritten by its own
run; the command that reproduces it is at its top.
"""


def write_section(name: str, markdown: str, doc: Path = DOC) -> Path:
    """Replace (or append) section ``name`` of ``doc`` with ``markdown``; return the file."""
    begin, end = f"<!-- reliability:{name} -->", f"<!-- /reliability:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else _HEADER
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(text, encoding="utf-8")
    return doc


def machine() -> str:
    """One line about where and when figures were measured."""
    import os

    return (
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def table(rows: list[tuple], header: tuple) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float) -> str:
    """A figure with thousands separators (integers) or three significant decimals."""
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}" if abs(value) >= 10 else f"{value:.3g}"


def rss_mib(pid: int | str = "self") -> float:
    """The resident set size of process ``pid`` (default: this one) now, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
