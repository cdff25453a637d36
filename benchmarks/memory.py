"""Memory and recovery: a worker holding a million open conversations, then SIGKILLed.

For each store (``memory``, and ``rocksdb`` when ``botstream worker --help``
offers ``--store``), a fresh worker with topics of its own reads events that
open ``--conversations`` conversations and keep them open: each conversation
gets a ``conversation.started`` and a ``chatbot.triggered``, dated in the last
minutes, with an idle timeout of a day, so none ends. Once every input offset
is committed (and everything it wrote is visible), the worker's peak RSS
(VmHWM) and the conversations it holds (``botstream_conversations_held``) are
read, and the worker is SIGKILLed. Then a fresh worker is started and timed
from launch until it owns every partition of every stage again, which is when
it has rebuilt its state and resumed:

* ``changelog``: a new data directory, so the state comes from the changelog;
* ``local files`` (RocksDB only): the same data directory as the killed worker.

The time includes the consumer groups' wait for the killed member to expire
(the stages' session timeout, 10 s), as a real restart after SIGKILL would.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from benchmarks import kit
from botstream.domain.timefmt import format_timestamp
from botstream.stream.metrics import metric_total

EVENTS_PER_CONVERSATION = 2


def open_conversations(count: int, accounts: int = 1000) -> list[kit.Record]:
    """Two events each for ``count`` conversations, dated within the last minutes."""
    now_ms = int(time.time() * 1000)
    start = now_ms - 5 * 60_000
    step = max(1, (4 * 60_000) // max(count, 1))
    records = []
    dumps = orjson.dumps
    for number in range(count):
        conversation_id = f"c-open-{number:08x}"
        key = conversation_id.encode()
        at = start + (number * step) % (4 * 60_000)
        account = f"acc-{number % accounts}"
        records.append(
            (
                key,
                dumps(
                    {
                        "event_id": f"e-{number:08x}-s",
                        "type": "conversation.started",
                        "occurred_at": format_timestamp(at),
                        "account_id": account,
                        "conversation_id": conversation_id,
                        "visitor_id": f"v-{number:08x}",
                        "data": {"initiator": "visitor"},
                    }
                ),
            )
        )
        records.append(
            (
                key,
                dumps(
                    {
                        "event_id": f"e-{number:08x}-t",
                        "type": "chatbot.triggered",
                        "occurred_at": format_timestamp(at + 1000),
                        "account_id": account,
                        "conversation_id": conversation_id,
                        "visitor_id": f"v-{number:08x}",
                        "data": {"chatbot_id": "bot-1"},
                    }
                ),
            )
        )
    return records


async def conversations_held(port: int) -> float | None:
    """``botstream_conversations_held`` summed over partitions, from the worker's /metrics."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            return metric_total((await response.read()).decode(), "botstream_conversations_held")
    except Exception:
        return None


async def one_store(
    bootstrap: str, log_dir: Path, store: str, records: list[kit.Record], pass_store: bool
) -> dict:
    """Fill a worker using ``store``, read its memory, kill it and time its recoveries."""
    from botstream.kafka.topics import ensure_topics

    tag = f"bench-mem-{store}"
    settings = kit.botstream_settings(bootstrap, f"{tag}-")
    await ensure_topics(settings)
    seconds = await kit.produce(bootstrap, settings.topics.events, records)
    kit.log(f"memory ({store}): produced {len(records):,} events in {seconds:.0f} s")
    args = ["--store", store] if pass_store else []
    env = {"BOTSTREAM_IDLE_TIMEOUT": "1d"}
    data_dir = Path(tempfile.mkdtemp(prefix=f"{tag}-"))
    worker = kit.BotstreamWorker(settings, log_dir, args, env, data_dir=data_dir)
    result: dict = {"store": store, "events": len(records), "recoveries": []}
    try:
        started = worker.start(f"{tag}-fill")
        async with kit.CompletionWatcher(bootstrap, worker.hops(), worker.outputs()) as watcher:
            result["fill_s"] = await watcher.wait(
                started, 3600, alive=worker.child.alive, poll_s=0.5
            )
        await asyncio.sleep(2)  # a last idle tick, so the figures settle
        result["peak_rss_mb"] = worker.child.peak_rss_kib() / 1024
        result["rss_mb"] = worker.child.rss_kib() / 1024
        result["conversations_held"] = await conversations_held(worker.port)
        kit.log(
            f"  holding {result['conversations_held']} conversations: peak RSS "
            f"{result['peak_rss_mb']:,.0f} MB (now {result['rss_mb']:,.0f} MB), "
            f"filled in {result['fill_s']:.0f} s"
        )
        worker.child.kill()
        sources = [("changelog", None)]
        if store == "rocksdb":
            sources.append(("local files", data_dir))
        for source, keep in sources:
            fresh = kit.BotstreamWorker(
                settings,
                log_dir,
                args,
                env,
                data_dir=keep or Path(tempfile.mkdtemp(prefix=f"{tag}-fresh-")),
            )
            try:
                fresh.start(f"{tag}-recover-{source.replace(' ', '-')}")
                ready_s = await fresh.wait_ready(timeout_s=600)
                held = await conversations_held(fresh.port)
                result["recoveries"].append(
                    {
                        "from": source,
                        "ready_s": ready_s,
                        "conversations_held": held,
                        "rss_mb_when_ready": fresh.child.rss_kib() / 1024,
                    }
                )
                kit.log(f"  ready again from the {source} in {ready_s:.1f} s, holding {held}")
            finally:
                fresh.child.kill()  # SIGKILL again: the next source recovers from this state
                if keep is None:
                    fresh.stop()
        return result
    finally:
        worker.stop()
        await kit.delete_topics_containing(bootstrap, tag)


async def measure(bootstrap: str, log_dir: Path, *, conversations: int, stores: list[str]) -> dict:
    """Every store in turn; the section of the results."""
    has_store = kit.worker_has_store_option()
    records = open_conversations(conversations)
    results = []
    for store in stores:
        if not has_store and store != "memory":
            note = "botstream worker has no --store option yet"
            kit.log(f"memory ({store}): skipped, {note}")
            results.append({"store": store, "skipped": note})
            continue
        results.append(await one_store(bootstrap, log_dir, store, records, has_store))
    return {
        "conversations": conversations,
        "events_per_conversation": EVENTS_PER_CONVERSATION,
        "stores": results,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
