"""Input records as aiokafka's record reader decodes them, without a ``ConsumerRecord`` each.

For every fetched record aiokafka builds a ``ConsumerRecord`` dataclass of
eleven fields, copied one by one from the record its C extension has already
decoded, behind two more Python calls per record. In the worker's profile that
was 13 % of its time, more than the whole conversation logic. The stages only
read a record's ``offset``, ``key`` and ``value`` (they know the topic and the
partition they asked for), and the decoded record has all three.

A consumer opts in by passing ``value_deserializer=raw_values``: its fetches
then yield the decoded records themselves (:class:`InputRecord`). Every other
consumer of the process is untouched. Should a future aiokafka build its
records differently, the hook does nothing and ``raw_values`` is the identity
deserializer: the consumer gets ``ConsumerRecord`` objects, which have the same
three attributes, and works as before, only slower
(``tests/integration/test_lean_records.py`` tells which one runs).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class InputRecord(Protocol):
    """What the stages read of an input record (both kinds of record have it)."""

    offset: int
    key: bytes | None
    value: bytes | None


def raw_values(value: bytes | None) -> bytes | None:
    """The value as it is: the deserializer that asks for records without a wrapper."""
    return value


def _as_decoded(topic_partition: object, record: object) -> object:
    return record


def _install() -> bool:
    """Teach aiokafka's fetcher to hand opted-in consumers their records unwrapped."""
    try:
        from aiokafka.consumer import fetcher

        base = fetcher.PartitionRecords
        if not callable(getattr(base, "_consumer_record", None)):
            raise AttributeError("PartitionRecords._consumer_record")
    except (ImportError, AttributeError) as exc:
        log.info("aiokafka records are wrapped as usual (%s)", exc)
        return False
    if getattr(base, "botstream_lean", False):  # installed already
        return True

    class LeanPartitionRecords(base):
        """aiokafka's partition records, unwrapped for a consumer that asked."""

        botstream_lean = True

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self._lean = self._value_deserializer is raw_values and not self._key_deserializer
            if self._lean:
                # An instance attribute wins over the method: one call, no wrapper.
                self._consumer_record = _as_decoded

        def __iter__(self):
            # ``getall`` iterates this object: hand it the generator itself and
            # spare a Python-level ``__next__`` per record.
            iterator = self._records_iterator
            if self._lean and iterator is not None:
                return iterator
            return self

    fetcher.PartitionRecords = LeanPartitionRecords
    return True


#: Whether opted-in consumers get unwrapped records (False: ConsumerRecord objects).
LEAN = _install()
