"""The ``botstream`` command line: one sub-command per module under ``botstream.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and
sets ``func`` (taking the parsed namespace and returning an exit code).
Expected failures (:class:`~botstream.errors.BotstreamError`) become a
one-line message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from botstream import __version__
from botstream.errors import BotstreamError

# Imported lazily by name so that `botstream --help` stays fast and a command's
# heavy imports (Faust, aiokafka) load only when that command runs.
COMMAND_MODULES = (
    "botstream.commands.demo",
    "botstream.commands.worker",
    "botstream.commands.replay",
    "botstream.commands.simulate",
    "botstream.commands.kafka",
    "botstream.commands.topics",
    "botstream.commands.ops",
)


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``botstream: <message>`` and exit 2."""
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available sub-command."""
    parser = _OneLineParser(
        prog="botstream",
        description="Classify chatbot conversations and meter billable ones, on Kafka.",
    )
    parser.add_argument("--version", action="version", version=f"botstream {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_OneLineParser
    )
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BotstreamError as exc:
        print(f"botstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("botstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
