"""The worker's pace of cyclic garbage collection."""

from __future__ import annotations

import gc

import pytest

from botstream.stream.memory import YOUNG_COLLECTION_THRESHOLD, pace_garbage_collector


@pytest.fixture
def restored_collector():
    """Put the collector back as the test found it."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_pacing_collects_the_young_generation_rarely_and_never_walks_startup_objects(
    restored_collector,
) -> None:
    gc.unfreeze()
    pace_garbage_collector()

    assert gc.get_threshold()[0] == YOUNG_COLLECTION_THRESHOLD
    assert gc.get_threshold()[0] >= 10 * 700  # Python's default, ten times over
    assert gc.get_freeze_count() > 0
    # A batch's worth of short-lived containers goes by without a collection.
    collections_before = sum(stats["collections"] for stats in gc.get_stats())
    batch = [{"record": index} for index in range(5_000)]
    del batch
    assert sum(stats["collections"] for stats in gc.get_stats()) == collections_before
