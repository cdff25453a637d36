"""Settings helpers that the CLI, the tests and the benchmarks share."""

from __future__ import annotations

from dataclasses import fields

from botstream.config import TopicNames, load_settings


def test_with_prefix_isolates_every_topic_and_the_app_id() -> None:
    settings = load_settings(env={"BOTSTREAM_PARTITIONS": "8"})
    isolated = settings.with_prefix("t1-")
    for f in fields(TopicNames):
        assert getattr(isolated.topics, f.name) == "t1-" + getattr(settings.topics, f.name)
    assert isolated.app_id == "t1-botstream"
    assert isolated.partitions == 8
    assert isolated.domain == settings.domain
