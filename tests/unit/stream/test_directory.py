"""The read API's directory: the newest generation's claim wins, whatever the arrival order."""

from __future__ import annotations

import itertools

import orjson
import pytest

from botstream.stream.directory import Directory, announcement

A, B, C = "http://a:6066", "http://b:6066", "http://c:6066"


def directory_of(*records: tuple[bytes, bytes]) -> Directory:
    directory = Directory()
    for key, value in records:
        directory.apply(key, value)
    return directory


MOVE = [  # partition 3 moves from A (generation 5) to B (generation 6)
    announcement(3, A, 5, True),
    announcement(3, A, 5, False),  # A's revoke
    announcement(3, B, 6, True),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_newest_owner_wins_in_any_arrival_order(order) -> None:
    records = [MOVE[i] for i in order]
    # A's own claim and retraction share a key: the later of the two in the log is A's word.
    assert directory_of(*records).owner(3) == B


@pytest.mark.parametrize(
    ("records", "owner"),
    [
        ([], None),
        ([announcement(0, A, 1, True)], A),
        ([announcement(0, A, 1, True), announcement(0, A, 1, False)], None),  # retracted
        ([announcement(0, A, 4, True), announcement(0, B, 2, True)], A),  # B's is stale
        ([announcement(0, B, 7, False), announcement(0, A, 7, True)], A),  # same generation
        # The earlier format (key = partition, no generation) loses to any announcement.
        ([announcement(0, A, 0, True), (b"0", orjson.dumps({"url": C, "at": 1.0}))], A),
        ([(b"0", orjson.dumps({"url": C, "at": 1.0}))], C),
        # Malformed records are ignored.
        ([announcement(0, A, 1, True), (b"0@x", b"not json"), (None, b"{}")], A),
    ],
)
def test_owner(records, owner) -> None:
    assert directory_of(*records).owner(0) == owner


def test_owners_lists_partitions_with_a_known_owner() -> None:
    directory = directory_of(
        announcement(0, A, 1, True), announcement(1, B, 1, True), announcement(1, B, 1, False)
    )
    assert directory.owners() == {0: A}
