"""``python -m reliability SECTION [options]``: run one section of the harness, or all."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

#: The order in which ``all`` runs the sections it knows; others follow by name.
ORDER = ("fuzz", "faults", "soak", "bounded", "security")
_HERE = Path(__file__).parent


def available() -> list[str]:
    """The sections present: modules of this package that define ``main(argv)``."""
    found = [
        path.stem
        for path in sorted(_HERE.glob("*.py"))
        if not path.stem.startswith("_") and "\ndef main(argv" in path.read_text()
    ]
    known = [name for name in ORDER if name in found]
    return known + [name for name in found if name not in known]


def main(argv: list[str]) -> int:
    """Run the section named by ``argv[0]`` with the rest of ``argv``, or every one for ``all``."""
    sections = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m reliability {{{'|'.join([*sections, 'all'])}}} [options]")
        print("       python -m reliability SECTION --help   (a section's own options)")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "all":
        failed = [s for s in sections if importlib.import_module(f"reliability.{s}").main(rest)]
        if failed:
            print(f"reliability: sections with problems: {', '.join(failed)}", file=sys.stderr)
        return 1 if failed else 0
    if name not in sections:
        print(f"reliability: no section {name!r} (have: {', '.join(sections)})", file=sys.stderr)
        return 2
    return importlib.import_module(f"reliability.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
