"""``python -m reliability SECTION [options]``: run one section of the harness, or all."""

from __future__ import annotations

import importlib
import importlib.util
import sys

#: The sections in the order ``all`` runs them; a section is ``reliability/<name>.py``.
ORDER = ("fuzz", "faults", "soak", "bounded", "security")


def available() -> list[str]:
    """The sections present in this checkout, in running order."""
    return [name for name in ORDER if importlib.util.find_spec(f"reliability.{name}")]


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
