"""Who wrote what: the record batches of a local broker's log segments, read from disk.

A consumer sees records, not who produced them. The segment files of the
broker's data directory keep every batch as written, with the producer id
and epoch of the transactional producer that wrote it and the commit or
abort markers of its transactions. Reading them after a run shows whether a
fenced producer (a zombie's) ever wrote after it was fenced: a transactional
id keeps its producer id, and every ``init_transactions`` (a new owner of the
partition) raises its epoch, so a batch of an older epoch after a newer one,
or of a fenced epoch stamped after the fencing, is a zombie's write.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aiokafka.record.memory_records import MemoryRecords

#: Control record types (the second int16 of a control record's key).
ABORT, COMMIT = 0, 1
#: A batch's transaction fate: committed, aborted, or still open at the end of the log.
COMMITTED, ABORTED, OPEN = "committed", "aborted", "open"


@dataclass(slots=True)
class Batch:
    """One record batch of a topic partition's log."""

    topic: str
    partition: int
    base_offset: int
    producer_id: int
    producer_epoch: int
    #: The producer's clock when the batch's first record was appended (epoch ms).
    first_timestamp: int
    records: int
    transactional: bool
    #: None for a data batch; ABORT or COMMIT for a transaction marker.
    control: int | None
    #: COMMITTED, ABORTED or OPEN for a transactional data batch; COMMITTED otherwise.
    fate: str = COMMITTED


def read_batches(data_dir: Path, topic: str) -> list[Batch]:
    """Every batch of every partition of ``topic`` under ``data_dir``, in log order."""
    batches: list[Batch] = []
    for directory in sorted(data_dir.glob(f"{topic}-*")):
        number = directory.name[len(topic) + 1 :]
        if not number.isdigit():
            continue  # another topic whose name starts with this one
        partition = int(number)
        found: list[Batch] = []
        for segment in sorted(directory.glob("*.log")):
            records = MemoryRecords(segment.read_bytes())
            while (batch := records.next_batch()) is not None:
                control = None
                if batch.is_control_batch:
                    for record in batch:
                        _, control = struct.unpack(">hh", bytes(record.key)[:4])
                        break
                count = sum(1 for _ in batch) if control is None else 0
                found.append(
                    Batch(
                        topic,
                        partition,
                        batch.base_offset,
                        batch.producer_id,
                        batch.producer_epoch,
                        batch.first_timestamp,
                        count,
                        batch.is_transactional,
                        control,
                    )
                )
        _settle_fates(found)
        batches += found
    return batches


def _settle_fates(batches: list[Batch]) -> None:
    """Mark each transactional data batch of one partition committed, aborted or open."""
    pending: dict[int, list[Batch]] = defaultdict(list)
    for batch in batches:
        if batch.control is not None:
            fate = COMMITTED if batch.control == COMMIT else ABORTED
            for waiting in pending.pop(batch.producer_id, ()):
                waiting.fate = fate
        elif batch.transactional:
            batch.fate = OPEN
            pending[batch.producer_id].append(batch)


def epoch_order_problems(batches: Iterable[Batch]) -> list[str]:
    """Batches of a producer id whose epoch is lower than an earlier batch's in the same log.

    A transactional id keeps its producer id; each new owner raises the epoch,
    and the broker refuses the writes of an older one. A lower epoch after a
    higher one would be a fenced producer's write that got through.
    """
    highest: dict[tuple[str, int, int], int] = {}
    problems = []
    for batch in batches:
        key = (batch.topic, batch.partition, batch.producer_id)
        if batch.producer_id < 0:
            continue  # not an idempotent producer: no epoch
        if batch.producer_epoch < highest.get(key, -1):
            problems.append(
                f"{batch.topic}-{batch.partition} offset {batch.base_offset}: producer "
                f"{batch.producer_id} epoch {batch.producer_epoch} after epoch {highest[key]}"
            )
        highest[key] = max(highest.get(key, -1), batch.producer_epoch)
    return problems


def producers_by_partition(batches: Iterable[Batch], changelog: str) -> dict[int, int]:
    """Producer id -> partition, from the batches of a stage's changelog topic.

    A stage writes partition ``p`` of its changelog only with the producers of
    its input partition ``p`` (transactional ids ``<app>-<stage>-<p>`` and
    ``<app>-<stage>-<p>-b``, used in turn), and a transactional id keeps its
    producer id: so the changelog names the producers of every partition that
    wrote state.
    """
    return {
        b.producer_id: b.partition
        for b in batches
        if b.topic == changelog and b.control is None and b.producer_id >= 0
    }


@dataclass
class ZombieWrites:
    """What a paused worker's transactional producers did after the pause."""

    #: The paused worker's producer ids whose epoch was raised while it stood still.
    fenced: set[int]
    #: Data batches of such a producer's old epoch stamped after the worker resumed.
    after_resume: list[Batch]
    #: ...of which committed (must be none: the broker refuses a fenced epoch).
    committed_after_resume: list[Batch]


def zombie_writes(
    batches: list[Batch], zombie_pids: set[int], stop_ms: int, resume_ms: int
) -> ZombieWrites:
    """The paused worker's producers that were fenced, and anything they wrote once resumed.

    ``zombie_pids`` are the producers of the partitions the worker owned when
    it was paused (see :func:`producers_by_partition`). A producer was fenced
    when a batch of a higher epoch than its last one before ``stop_ms``
    appears between ``stop_ms`` and ``resume_ms`` (the new owner's first
    write, or the marker that aborted the zombie's open transaction; markers
    carry the broker's time, on the same clock here).
    """
    before: dict[int, int] = {}
    for batch in batches:
        pid = batch.producer_id
        if pid in zombie_pids and batch.control is None and batch.first_timestamp < stop_ms:
            before[pid] = max(before.get(pid, -1), batch.producer_epoch)
    fenced = {
        b.producer_id
        for b in batches
        if b.producer_id in before
        and b.producer_epoch > before[b.producer_id]
        and stop_ms <= b.first_timestamp <= resume_ms
    }
    after = [
        b
        for b in batches
        if b.producer_id in before
        and b.control is None
        and b.producer_epoch <= before[b.producer_id]
        and b.first_timestamp >= resume_ms
    ]
    return ZombieWrites(fenced, after, [b for b in after if b.fate == COMMITTED])
