"""The hash stage: the SHA-256 of each listed file, the key everything else is stored under."""

from __future__ import annotations

import time

from embedscope.ingest.reading import UnreadableFile, hash_entry_file
from embedscope.ingest.scan import FileEntry


def hash_entry(entry: FileEntry, max_bytes: int) -> str | UnreadableFile:
    """The SHA-256 of ``entry``'s bytes, or the :class:`UnreadableFile` saying why it cannot be
    read (outside the drop, vanished, not a regular file, over ``max_bytes``, ...)."""
    try:
        return hash_entry_file(entry, max_bytes)
    except UnreadableFile as exc:
        return exc


def timed_hash(entry: FileEntry, max_bytes: int) -> tuple[FileEntry, str | UnreadableFile, float]:
    """``(entry, sha256 or UnreadableFile, seconds spent)``: :func:`hash_entry` for a worker pool."""
    t0 = time.monotonic()
    sha = hash_entry(entry, max_bytes)
    return entry, sha, time.monotonic() - t0
