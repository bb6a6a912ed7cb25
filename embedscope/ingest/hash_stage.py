"""The hash stage: the SHA-256 of each listed file, the key everything else is stored under."""

from __future__ import annotations

import time

from embedscope.hashing import sha256_file
from embedscope.ingest.scan import FileEntry


def hash_entry(entry: FileEntry) -> str | None:
    """The SHA-256 of ``entry``'s bytes, or ``None`` if it vanished or cannot be read since the scan."""
    try:
        return sha256_file(entry.path, storage_options=entry.storage_options)
    except OSError:
        return None


def timed_hash(entry: FileEntry) -> tuple[FileEntry, str | None, float]:
    """``(entry, sha256 or None, seconds spent)``: :func:`hash_entry` for a worker pool."""
    t0 = time.monotonic()
    sha = hash_entry(entry)
    return entry, sha, time.monotonic() - t0
