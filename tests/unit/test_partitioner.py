"""botstream's murmur2 and default partitioner against aiokafka's (the client's own)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as client_murmur2

from botstream.kafka.partitioner import default_partition, murmur2

KEYS = [b"", b"a", b"ab", b"abc", b"abcd", b"acc-17", b"c-000adecd9816", "ünïcødé".encode()]
RANDOM = random.Random(5)
KEYS += [RANDOM.randbytes(RANDOM.randint(0, 64)) for _ in range(2000)]


@pytest.mark.parametrize("key", KEYS[:8])
def test_murmur2_of_known_keys(key: bytes) -> None:
    assert murmur2(key) == client_murmur2(key)


def test_murmur2_and_partitions_of_random_keys() -> None:
    for key in KEYS:
        assert murmur2(key) == client_murmur2(key), key
        for partitions in (1, 4, 7, 12):
            expected = DefaultPartitioner()(key, list(range(partitions)), None)
            assert default_partition(key, partitions) == expected, (key, partitions)
