"""Where simulated records go: JSONL files or the Kafka topics.

:class:`FileSink` writes one raw record per line (the generator guarantees no
record contains a newline). :class:`KafkaSink` produces to the
``widget-events`` and ``account-plans`` topics, keyed by conversation and
account id, so each conversation stays on one partition in order.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from botstream.config import Settings
from botstream.errors import InputFileError, KafkaUnavailableError
from botstream.sim.generator import Record

#: Bytes buffered before a file write; large buffers make the file path fast.
FILE_BUFFER = 1 << 20


class FileSink:
    """Writes event records to ``events_path`` and plan records to ``plans_path``, as JSONL.

    ``"-"`` as a path means standard output. Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, events_path: str | Path, plans_path: str | Path | None = None) -> None:
        self.events_path = str(events_path)
        self.plans_path = None if plans_path is None else str(plans_path)
        self._events = self._open(self.events_path)
        self._plans = None if self.plans_path is None else self._open(self.plans_path)

    @staticmethod
    def _open(path: str) -> IO[bytes]:
        if path == "-":
            return sys.stdout.buffer
        try:
            return open(path, "wb", buffering=FILE_BUFFER)  # closed in close()
        except OSError as exc:
            raise InputFileError(f"cannot write {path}: {exc.strerror}") from None

    def write_plans(self, records: Iterable[Record]) -> int:
        """Write plan records (nothing when no plans file was given); return how many."""
        if self._plans is None:
            return 0
        lines = [record.value for record in records]
        self._write(self._plans, self.plans_path, lines)
        return len(lines)

    def write(self, record: Record) -> None:
        """Write one event record as a line."""
        try:
            self._events.write(record[1] + b"\n")
        except BrokenPipeError:
            raise  # the reader of a pipe went away: the caller decides
        except OSError as exc:
            raise InputFileError(f"cannot write {self.events_path}: {exc.strerror}") from None

    def write_many(self, records: Iterable[Record]) -> None:
        """Write event records, one line each."""
        self._write(self._events, self.events_path, [record.value for record in records])

    def _write(self, handle: IO[bytes], path: str | None, lines: list[bytes]) -> None:
        if not lines:
            return
        try:
            handle.write(b"\n".join(lines) + b"\n")
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise InputFileError(f"cannot write {path}: {exc.strerror}") from None

    def flush(self) -> None:
        """Push buffered lines to the files (for readers following them)."""
        for handle in (self._events, self._plans):
            if handle is not None:
                handle.flush()

    def close(self) -> None:
        """Flush and close the files (standard output is only flushed)."""
        for handle in (self._events, self._plans):
            if handle is None:
                continue
            try:
                if handle is sys.stdout.buffer:
                    handle.flush()
                else:
                    handle.close()
            except BrokenPipeError:
                raise
            except OSError as exc:
                raise InputFileError(f"cannot write output: {exc.strerror}") from None

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class KafkaSink:
    """Produces records to the events and plans topics with an idempotent producer.

    ``acks=all`` and idempotence make a retried batch land once and in order;
    a short linger lets records batch up, which is what makes a fast run fast.
    Record timestamps are left to the producer (wall clock), not the simulated
    event time: a broker would delete records dated weeks ago at once under
    its time-based retention. ``producer_factory`` exists for tests.
    """

    #: Records in flight before waiting for their acknowledgements.
    MAX_PENDING = 20_000

    def __init__(
        self, settings: Settings, producer_factory: Callable[..., Any] | None = None
    ) -> None:
        self.settings = settings
        self.topics = {"events": settings.topics.events, "plans": settings.topics.plans}
        self._factory = producer_factory
        self._producer: Any = None
        self._pending: list[asyncio.Future] = []
        self.sent = 0

    async def start(self) -> None:
        """Connect to Kafka; raise :class:`KafkaUnavailableError` when it cannot be reached."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        from botstream.kafka.topics import kafka_client_kwargs

        factory = self._factory or AIOKafkaProducer
        producer = factory(
            **kafka_client_kwargs(self.settings),
            client_id=f"{self.settings.app_id}-simulate",
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_batch_size=256 * 1024,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            from botstream.kafka.topics import connection_error

            await _quietly(producer.stop())
            raise await connection_error(self.settings, exc) from None
        self._producer = producer

    async def send(self, record: Record) -> None:
        """Queue one record for its topic (waits only when many are in flight)."""
        from aiokafka.errors import KafkaError

        topic = self.topics[record.topic_kind]
        try:
            future = await self._producer.send(topic, value=record.value, key=record.key)
        except KafkaError as exc:
            # Typically a topic that does not exist on a broker that does not
            # create topics on demand: the metadata request times out.
            raise KafkaUnavailableError(
                f"cannot produce to topic {topic} at {self.settings.bootstrap_servers}: "
                f"{exc} (does the topic exist? botstream topics create makes it)"
            ) from None
        self._pending.append(future)
        self.sent += 1
        if len(self._pending) >= self.MAX_PENDING:
            await self._settle()

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged."""
        await self._producer.flush()
        await self._settle()

    async def _settle(self) -> None:
        from aiokafka.errors import KafkaError

        pending, self._pending = self._pending, []
        try:
            await asyncio.gather(*pending)
        except KafkaError as exc:
            raise KafkaUnavailableError(
                f"producing to {self.settings.bootstrap_servers} failed: {exc}"
            ) from None

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        if self._producer is None:
            return
        producer, self._producer = self._producer, None
        try:
            await producer.flush()
        finally:
            await producer.stop()

    async def __aenter__(self) -> KafkaSink:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:  # already failing: the first error is the one to report
        return
