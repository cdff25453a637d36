"""The Faust app under test: eos-in -> eos-out re-keyed by account, plus a counter table.

Run as ``python experiments/faust_eos/app.py worker -l warning``; configured by
environment variables (run_kills.py and take_partition.py set them):

EOS_BOOTSTRAP   broker address
EOS_APP_ID      Faust app id (also the consumer group and transactional id prefix)
EOS_GUARANTEE   exactly_once (default) or at_least_once
EOS_PATCH       1: pick the transaction by the source partition (see patch.py)
EOS_TAKE        1: process the stream in batches, stream.take(100, within=1)
EOS_CONSUME_OUT 1: also consume eos-out (a no-op agent), see README
EOS_DATADIR     Faust's data directory
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import faust

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import IN_TOPIC, OUT_TOPIC, PARTITIONS, account

if os.environ.get("EOS_PATCH") == "1":
    import patch

    patch.install()

app = faust.App(
    os.environ.get("EOS_APP_ID", "faust-eos"),
    broker=f"kafka://{os.environ.get('EOS_BOOTSTRAP', '127.0.0.1:9092')}",
    processing_guarantee=os.environ.get("EOS_GUARANTEE", "exactly_once"),
    store="memory://",
    web_enabled=False,
    datadir=os.environ.get("EOS_DATADIR", "/tmp/faust-eos-data"),
    topic_partitions=PARTITIONS,
    topic_replication_factor=1,
    # A SIGKILLed member leaves the group only when its session times out;
    # Faust's default (60 s) would make every restart wait a minute.
    broker_session_timeout=10.0,
)

source = app.topic(IN_TOPIC, key_type=bytes, key_serializer="raw", value_serializer="json")
sink = app.topic(OUT_TOPIC, key_type=bytes, key_serializer="raw", value_serializer="json")
counts = app.Table("counts", default=int, partitions=PARTITIONS)
# Experiment 5 only: which changelog partition a write inside a take() batch goes to.
origin = app.Table("origin", default=dict, partitions=PARTITIONS)


async def handle(event: faust.types.EventT) -> None:
    seq = event.value["seq"]
    acct = account(seq)
    await sink.send(key=acct.encode(), value={"seq": seq})
    counts[acct] += 1


if os.environ.get("EOS_CONSUME_OUT") == "1":

    @app.agent(sink)
    async def ignore(stream: faust.Stream) -> None:
        async for _ in stream:
            pass


@app.agent(source)
async def process(stream: faust.Stream) -> None:
    if os.environ.get("EOS_TAKE") == "1":
        async for batch in stream.take(100, within=1):
            ctx = faust.current_event()  # what the table uses to pick a partition
            for seq in (value["seq"] for value in batch):
                counts[account(seq)] += 1
                origin[str(seq)] = {
                    "context_event_partition": ctx.message.partition if ctx else None,
                    "stream_current_event_partition": stream.current_event.message.partition,
                }
        return
    async for event in stream.events():
        await handle(event)


if __name__ == "__main__":
    app.main()
