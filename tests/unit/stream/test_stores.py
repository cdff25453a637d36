"""The conversation stores: memory and RocksDB give the same results; RocksDB resumes locally."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import orjson
import pytest

from botstream.config import load_settings
from botstream.stream.engine import Output
from botstream.stream.stores import MemoryStore, RocksStore
from botstream.stream.tasks import ConversationTask
from tests.unit.stream.test_tasks import widget

EVENTS = [
    widget("e1", "chatbot.triggered", "2026-11-24T20:00:00Z", "c-1"),
    widget("e2", "chatbot.button_clicked", "2026-11-24T20:00:10Z", "c-1"),
    widget("e3", "chatbot.triggered", "2026-11-24T20:00:11Z", "c-2"),
    widget("e4", "visitor.left", "2026-11-24T20:00:20Z", "c-1"),
    widget("e5", "visitor.message", "2026-11-24T20:40:00Z", "c-3"),  # c-2 idles out
]
NOW_MS = 1_795_560_000_000  # 22:40Z: no event is capped by the clock


def task_with(store: str, tmp_path, partition: int = 0) -> ConversationTask:
    settings = replace(load_settings(env={}), store=store, data_dir=str(tmp_path))
    return ConversationTask(partition, settings=settings)


def run(task: ConversationTask, batches: list[list]) -> tuple[list, list]:
    """Process ``batches`` as the engine does; the outputs and changelog entries of each."""
    outputs, changelog = [], []
    for number, records in enumerate(batches):
        out: list[Output] = []
        task.process(records, NOW_MS, out)
        outputs.append([(o.topic, o.key, o.value) for o in out])
        changelog.append(sorted(task.changes().items()))
        task.committed(f"t:{number}")
    return outputs, changelog


def test_rocksdb_and_memory_give_the_same_outputs_and_changelog(tmp_path) -> None:
    batches = [EVENTS[:2], EVENTS[2:4], EVENTS[4:]]
    results = {}
    for kind in ("memory", "rocksdb"):
        task = task_with(kind, tmp_path / kind)
        task.restored()
        results[kind] = run(task, batches)
        task.close()
    assert results["memory"] == results["rocksdb"]
    assert any(results["memory"][0])  # something was published


def test_a_rocksdb_store_resumes_from_its_files_when_the_token_matches(tmp_path) -> None:
    task = task_with("rocksdb", tmp_path)
    task.restored()
    run(task, [EVENTS[:3]])  # c-1 and c-2 open
    held = task.processor.open_conversations
    watermark = task.processor.watermark
    task.close()

    again = task_with("rocksdb", tmp_path)
    assert asyncio.run(again.resume_local("t:0"))
    again.restored()
    assert again.processor.open_conversations == held == 2
    assert again.processor.watermark == watermark
    # It carries on exactly as the first one would have.
    out: list[Output] = []
    again.process(EVENTS[3:], NOW_MS, out)
    outcome = [orjson.loads(o.value) for o in out if o.topic.endswith("outcomes")]
    assert [o["conversation_id"] for o in outcome] == ["c-1", "c-2"]
    again.close()


def test_a_rocksdb_store_with_another_token_is_wiped(tmp_path) -> None:
    task = task_with("rocksdb", tmp_path)
    task.restored()
    run(task, [EVENTS[:3]])
    task.close()
    # Another worker committed since (or this one was killed between its commit and
    # the write to its files): the files are not the committed state.
    again = task_with("rocksdb", tmp_path)
    assert not asyncio.run(again.resume_local("someone-else:7"))
    again.restored()
    assert again.processor.open_conversations == 0
    again.close()


def test_an_uncommitted_batch_never_reaches_the_files(tmp_path) -> None:
    store = RocksStore(tmp_path / "db")
    store.put("c-1", b"x")  # bytes stand in for an encoded state here
    store.take_changes()
    store.close()  # killed before the transaction committed
    reopened = RocksStore(tmp_path / "db")
    assert reopened.get("c-1") is None
    reopened.close()


@pytest.mark.parametrize("kind", [MemoryStore, "rocksdb"])
def test_restore_then_changes_is_empty(kind, tmp_path) -> None:
    store = kind() if kind is MemoryStore else RocksStore(tmp_path / "db")
    store.restore("c-1", b"[1]")
    store.restore("c-2", b"[2]")
    store.restore("c-1", None)
    assert store.take_changes() == {}
    assert store.get("c-1") is None
    assert store.get("c-2") == b"[2]"
    store.close()
