"""Where the conversation stage keeps its conversations: in memory, or in RocksDB.

Both stores give the partition processor the same view (a state by
conversation id, as an object or in its compact encoded form) and tell the
stage task which conversations changed, so that their new states go to the
changelog. They differ in what a worker holds in memory and in how it comes
back after a restart:

* :class:`MemoryStore` holds every conversation in memory, encoded between
  batches (about 460 bytes each with its timer). After a restart it is rebuilt
  from the changelog.
* :class:`RocksStore` holds only the batch in flight in memory; everything
  else is in a RocksDB database in the worker's data directory, written after
  each transaction commits, together with that transaction's commit token.
  After a restart, if the group's committed offsets still carry that token,
  the database is exactly the committed state and the changelog need not be
  read; otherwise the database is wiped and rebuilt from the changelog.
"""

from __future__ import annotations

import asyncio
import functools
import shutil
from collections.abc import Iterator
from pathlib import Path

from botstream.domain.conversation import (
    Conversation,
    encode_conversation,
    encoded_last_at_and_ended,
)
from botstream.errors import ConfigError

#: Store kinds a worker can use (``--store``).
STORE_KINDS = ("memory", "rocksdb")

_META = b"\x00"  # prefix of the RocksDB keys that are not conversations
_TOKEN_KEY = _META + b"token"
_WATERMARK_KEY = _META + b"watermark"
_RESTORE_BATCH = 10_000


class MemoryStore(dict):
    """Every conversation in memory; changed ones remembered until :meth:`take_changes`.

    Between batches every conversation is held in its compact encoded form
    (the changelog's), about 460 bytes of memory each with its timer, against
    about 1.3 KB as an object; the processor decodes one when it is touched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dirty: set[str] = set()

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Store a state (ended ones encoded at once; open ones when the batch is done)."""
        self[conversation_id] = encode_conversation(state) if state.ended else state
        self.dirty.add(conversation_id)

    def delete(self, conversation_id: str) -> None:
        """Forget a conversation."""
        self.pop(conversation_id, None)
        self.dirty.add(conversation_id)

    def restore(self, conversation_id: str, value: bytes | None) -> None:
        """Load one changelog entry."""
        if value is None:
            self.pop(conversation_id, None)
        else:
            self[conversation_id] = value

    def take_changes(self) -> dict[str, bytes | None]:
        """The changed conversations, encoded (None when dropped); forgets that they changed."""
        changes: dict[str, bytes | None] = {}
        for conversation_id in self.dirty:
            state = dict.get(self, conversation_id)
            if state is not None and type(state) is not bytes:
                state = encode_conversation(state)
                # Held encoded between batches too: a worker may hold a million open
                # conversations, and the encoding is needed for the changelog anyway.
                self[conversation_id] = state
            changes[conversation_id] = state
        self.dirty.clear()
        return changes

    def committed(self, token: str, watermark: int | None) -> None:
        """Nothing to write: memory is lost with the process."""

    async def resume(self, token: str, deadline) -> tuple[dict[str, int], int | None] | None:
        """Never: a memory store starts empty."""
        return None

    def close(self) -> None:
        """Nothing to release."""


class RocksStore:
    """Conversations in a RocksDB database; only the batch in flight in memory."""

    def __init__(self, path: Path) -> None:
        # Imported here: a worker with the memory store never loads RocksDB.
        from rocksdict import BlockBasedOptions, Options, Rdict, WriteBatch

        self.path = path
        self._write_batch = WriteBatch
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        table = BlockBasedOptions()
        table.set_block_cache(shared_block_cache())
        # Most reads are of conversations not stored yet: a filter answers those
        # without reading (and caching) a data block of every level.
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        options.set_write_buffer_size(4 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        self._options = options
        self._rdict = Rdict
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = Rdict(str(path), options)
        #: States changed by the batch in flight (None: dropped), until committed.
        self.hot: dict[str, Conversation | bytes | None] = {}
        self.dirty: set[str] = set()
        self._restoring = None

    # -- what the partition processor uses ------------------------------------------

    def get(self, conversation_id: str) -> Conversation | bytes | None:
        """The state of a conversation: from the batch in flight, else from RocksDB."""
        hot = self.hot
        if conversation_id in hot:
            return hot[conversation_id]
        return self.db.get(conversation_id.encode())

    def put(self, conversation_id: str, state: Conversation) -> None:
        """Keep a changed state until the batch's transaction commits."""
        self.hot[conversation_id] = state
        self.dirty.add(conversation_id)

    def delete(self, conversation_id: str) -> None:
        """Drop a conversation (when the batch's transaction commits)."""
        self.hot[conversation_id] = None
        self.dirty.add(conversation_id)

    def items(self) -> Iterator[tuple[str, bytes]]:
        """Every stored conversation (encoded)."""
        for key, value in self.db.items():
            if not key.startswith(_META):
                yield key.decode(), value

    # -- what the stage task uses ---------------------------------------------------

    def restore(self, conversation_id: str, value: bytes | None) -> None:
        """Load one changelog entry (written to RocksDB in batches)."""
        if self._restoring is None:
            self._restoring = self._write_batch(raw_mode=True)
        key = conversation_id.encode()
        if value is None:
            self._restoring.delete(key)
        else:
            self._restoring.put(key, value)
        if len(self._restoring) >= _RESTORE_BATCH:
            self.db.write(self._restoring)
            self._restoring = None

    def take_changes(self) -> dict[str, bytes | None]:
        """The changed conversations, encoded (None when dropped); forgets that they changed."""
        if self._restoring is not None:
            self.db.write(self._restoring)
            self._restoring = None
        hot = self.hot
        changes: dict[str, bytes | None] = {}
        for conversation_id in self.dirty:
            state = hot[conversation_id]
            if state is not None and type(state) is not bytes:
                state = hot[conversation_id] = encode_conversation(state)
            changes[conversation_id] = state
        self.dirty.clear()
        return changes

    def committed(self, token: str, watermark: int | None) -> None:
        """Write what the committed transaction changed, with its token, in one batch."""
        if self._restoring is not None:
            self.db.write(self._restoring)
            self._restoring = None
        batch = self._write_batch(raw_mode=True)
        for conversation_id, state in self.hot.items():
            if state is None:
                batch.delete(conversation_id.encode())
            else:
                if type(state) is not bytes:  # changed after take_changes: not committed
                    continue
                batch.put(conversation_id.encode(), state)
        if watermark is not None:
            batch.put(_WATERMARK_KEY, str(watermark).encode())
        batch.put(_TOKEN_KEY, token.encode())
        self.db.write(batch)
        self.hot.clear()

    async def resume(self, token: str, deadline) -> tuple[dict[str, int], int | None] | None:
        """``(timers, watermark)`` of the local state if it is the one ``token`` committed.

        Otherwise the database is wiped (the changelog will rebuild it) and None
        is returned. ``deadline(last_at, ended)`` gives a conversation's timer.
        """
        db = self.db
        if not token or db.get(_TOKEN_KEY) != token.encode():
            self._wipe()
            return None
        raw_watermark = db.get(_WATERMARK_KEY)
        deadlines: dict[str, int] = {}
        for count, (key, value) in enumerate(db.items(), 1):
            if not key.startswith(_META):
                last_at, ended = encoded_last_at_and_ended(value)
                deadlines[key.decode()] = deadline(last_at, ended)
            if count % _RESTORE_BATCH == 0:
                await asyncio.sleep(0)  # a large database must not block the event loop
        return deadlines, None if raw_watermark is None else int(raw_watermark)

    def _wipe(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self.db = self._rdict(str(self.path), self._options)
        self.hot.clear()
        self.dirty.clear()

    def close(self) -> None:
        """Close the database (its files stay, for the next start)."""
        self.db.close()


#: The block cache all RocksDB stores of a process share, in MiB.
BLOCK_CACHE_MB = 32


@functools.cache
def shared_block_cache():
    """The process's one RocksDB block cache (one per store grew with the partitions)."""
    from rocksdict import Cache

    return Cache(BLOCK_CACHE_MB * 1024 * 1024)


def open_store(kind: str, path: Path) -> MemoryStore | RocksStore:
    """A conversation store of ``kind`` (``memory`` or ``rocksdb``, files under ``path``)."""
    if kind == "memory":
        return MemoryStore()
    if kind == "rocksdb":
        return RocksStore(path)
    raise ConfigError(f"--store: {kind!r} is not one of {', '.join(STORE_KINDS)}")
