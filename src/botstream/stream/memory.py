"""The worker's memory: the cyclic garbage collector's pace, freed memory given back."""

from __future__ import annotations

import functools
import gc

#: Allocations of container objects, net of deallocations, between two collections of
#: the youngest generation (Python's default is 700).
YOUNG_COLLECTION_THRESHOLD = 10_000


def pace_garbage_collector() -> None:
    """Set the cyclic garbage collector to a batch processor's pace; call once started.

    The worker and ``botstream replay`` call it. (In a replay of 1,000,000
    events the collector took 0.09 s at Python's pace, 0.02 s at this one.)

    A stage holds a batch of up to 5,000 records and everything decoded from
    them while it works on it. At Python's default pace (a collection every
    700 new container objects) the youngest generation was collected every few
    records, found the batch alive each time, and promoted it, generation by
    generation, until full collections ran over everything the process holds:
    1.85 s of a 500,000-event run went to the collector, 18 full collections
    among them. Collected every 10,000 objects instead, most of a batch is gone
    before the collector looks at it: 0.31 s. (Every 50,000: 0.23 s, but the
    cyclic garbage of aiokafka's requests, fetched buffers included, then
    waited longer to be freed: a worker holding a million conversations peaked
    20 to 30 MB higher.) The objects made while starting (modules, the app, the
    web server) live as long as the process; frozen, no collection walks them
    again.

    Nothing here relies on the collector for memory: states, records and
    outputs are freed by reference counting, and none of them form cycles.
    """
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 10, 10)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS)."""
    import ctypes  # here, not at the top: ctypes.util costs a replay 10 ms to import
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Return the C allocator's free memory to the system; whether it could.

    Python hands large freed blocks back to ``malloc``, which keeps them for
    later: after a bulk deletion (a month of account history expiring) the
    process would stay as large as before. ``malloc_trim(0)`` releases them.
    It takes a few milliseconds, so it is for rare bulk deletions only.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
