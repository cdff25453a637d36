"""Produce records at a fixed rate and write down when each was sent (for ``latency.py``).

    python benchmarks/paced_producer.py --bootstrap HOST:PORT --topic T --rate 2000 \
        --records RECORDS.pickle --times TIMES.bin

``RECORDS.pickle`` is a pickled list of ``(key, value)``. Record ``i`` is due
at ``start + i / rate``; it is handed to the producer when due, and the wall
clock (``time.time()``) at that moment is written as the ``i``-th float64 of
``TIMES.bin``. The producer is an ordinary upstream one: idempotent,
``acks=all``, a 5 ms linger. A separate process, so that pacing does not
compete with the consumers that measure.

Records due together are handed over as one batch per partition (the
partition Kafka's default partitioner picks for the key), not one ``send``
each: at 30,000 records/s, ``send`` alone took most of a core that the worker
being measured shares, on the 2-core machine.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import pickle
import time

from aiokafka import AIOKafkaProducer

from botstream.kafka.partitioner import default_partition


async def run(args: argparse.Namespace) -> None:
    """Send every record at its due time; write the send times."""
    with open(args.records, "rb") as handle:
        records = pickle.load(handle)
    producer = AIOKafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", linger_ms=5, enable_idempotence=True
    )
    await producer.start()
    times = array.array("d", bytes(8 * len(records)))
    try:
        count = len(await producer.partitions_for(args.topic))
        # A record without a key goes anywhere: spread by its position.
        partitions = [
            index % count if key is None else default_partition(key, count)
            for index, (key, _) in enumerate(records)
        ]
        wall, clock = time.time, time.perf_counter
        started = clock()
        rate = args.rate
        sent = 0
        total = len(records)
        while sent < total:
            due = min(total, int((clock() - started) * rate) + 1)
            batches: dict[int, object] = {}
            now = wall()
            for index in range(sent, due):
                key, value = records[index]
                partition = partitions[index]
                batch = batches.get(partition)
                if batch is None:
                    batch = batches[partition] = producer.create_batch()
                if batch.append(key=key, value=value, timestamp=None) is None:
                    await producer.send_batch(batch, args.topic, partition=partition)
                    batch = batches[partition] = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
                times[index] = now
            for partition, batch in batches.items():
                await producer.send_batch(batch, args.topic, partition=partition)
            sent = due
            if sent < total:
                pause = started + sent / rate - clock()
                await asyncio.sleep(max(pause, 0.0005))
        await producer.flush()
    finally:
        await producer.stop()
    with open(args.times, "wb") as handle:
        times.tofile(handle)


def main() -> None:
    """Parse the flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--records", required=True)
    parser.add_argument("--times", required=True)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
