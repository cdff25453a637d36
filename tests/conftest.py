"""Fixtures shared by every test: the session's Kafka broker.

``kafka_bootstrap`` starts one real local broker (:class:`LocalKafka`) the
first time a test asks for it and stops it when the session ends, however it
ends. ``BOTSTREAM_TEST_BOOTSTRAP=host:port`` uses an existing broker instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

_TIMINGS = pytest.StashKey[dict[str, float]]()


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """Bootstrap address of a Kafka broker for this test session."""
    existing = os.environ.get("BOTSTREAM_TEST_BOOTSTRAP")
    if existing:
        yield existing
        return
    from botstream.errors import BrokerSetupError
    from botstream.kafka.local_broker import LocalKafka

    broker = LocalKafka()
    try:
        try:
            broker.start()
        except BrokerSetupError as exc:
            pytest.fail(f"local Kafka broker: {exc}", pytrace=False)
        request.config.stash[_TIMINGS] = {"version": broker.version, **broker.timings}
        yield broker.bootstrap
    finally:
        # Also on failures and Ctrl-C: pytest tears session fixtures down then.
        broker.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say how long the session's broker took to start, when one was started."""
    timings = terminalreporter.config.stash.get(_TIMINGS, None)
    if timings:
        terminalreporter.write_line(
            f"local Kafka {timings['version']}: jars ready in {timings['resolve_s']:.2f} s, "
            f"broker answered after {timings['start_s']:.2f} s more"
        )
