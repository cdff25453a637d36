"""Kafka's default partitioner, for code that must know where a keyed record lands."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def default_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's and aiokafka's default partitioner give ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
