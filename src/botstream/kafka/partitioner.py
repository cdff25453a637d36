"""Kafka's default partitioner, for code that must know where a keyed record lands.

Written out here rather than taken from aiokafka so that the offline replay,
which routes conversations by it (``botstream replay --partitions``), does not
load a Kafka client to start.
"""

from __future__ import annotations

import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


_WORDS: dict[int, struct.Struct] = {}


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data``, as Kafka's ``Utils.murmur2`` (unsigned here)."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    words = length // 4
    unpack = _WORDS.get(words)
    if unpack is None:  # keys of a topic mostly have one length
        unpack = _WORDS[words] = struct.Struct(f"<{words}I")
    for k in unpack.unpack_from(data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    end = words * 4
    rest = length - end
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def default_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's and aiokafka's default partitioner give ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
