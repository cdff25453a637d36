"""The ceiling: a plain aiokafka exactly-once loop, as a process of its own.

A ``read_committed`` consumer in a group; each batch of ``getmany`` becomes
one transaction: its input offsets (added first, as botstream's stages do:
see ``tests/integration/test_stage_transactions.py``), then one small record
per input, each value parsed with orjson. Nothing else: no state, no
changelog, no second stage. Runs until SIGTERM.

    python benchmarks/peers/ceiling.py --bootstrap HOST:PORT --group G --input T --output T
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def run(args: argparse.Namespace) -> None:
    """Consume, parse, produce transactionally until SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    consumer = AIOKafkaConsumer(
        args.input,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap,
        transactional_id=f"{args.group}-ceiling",
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        # As botstream's stages: a transaction's AddOffsetsToTxn that meets the
        # previous one's markers being written is retried after this, not 100 ms.
        retry_backoff_ms=10,
    )
    await consumer.start()
    await producer.start()
    output, group, loads, dumps = args.output, args.group, orjson.loads, orjson.dumps
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=args.max_batch)
            if not batches:
                continue
            async with producer.transaction():
                offsets = {tp: records[-1].offset + 1 for tp, records in batches.items()}
                await producer.send_offsets_to_transaction(offsets, group)
                send = producer.send
                for records in batches.values():
                    for record in records:
                        try:
                            event = loads(record.value)
                            ok = type(event) is dict
                        except orjson.JSONDecodeError:
                            ok = False
                        await send(
                            output, dumps({"offset": record.offset, "ok": ok}), key=record.key
                        )
    finally:
        await producer.stop()
        await consumer.stop()


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-batch", type=int, default=5000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
