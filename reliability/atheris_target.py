"""Coverage-guided fuzzing of the event and plan decoders, with atheris (libFuzzer).

    python -m reliability.atheris_target -runs=500000 -seed=7 -max_len=2048 CORPUS_DIR

libFuzzer mutates its inputs towards new branches of the instrumented
botstream modules. Each input goes to both decoders and is judged by
:mod:`reliability.oracle`: an exception other than ``InvalidRecord``, or a
verdict the oracle does not share, is a crash, and libFuzzer saves the input
(``crash-<sha1>``) and exits non-zero. ``python -m reliability fuzz`` runs
this in a subprocess and reads libFuzzer's final statistics.
"""

from __future__ import annotations

import sys

import atheris

# Instrument botstream's domain before anything else imports it uninstrumented.
with atheris.instrument_imports(include=["botstream.domain", "botstream.errors"]):
    import botstream.domain.events
    import botstream.domain.plans
    import botstream.domain.timefmt  # noqa: F401 - instrumented for its branches

from reliability.strategies import check_event, check_plan


def test_one_input(data: bytes) -> None:
    """One libFuzzer input: through both decoders, judged by the oracle."""
    check_event(data)
    check_plan(data)


def main() -> None:
    """Run libFuzzer with the command line's flags (``-runs``, ``-seed``, corpus...)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
