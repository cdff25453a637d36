"""Giving freed memory back to the operating system."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where there is none (musl, macOS)."""
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
