"""When is a file in a drop finished? The daemon's answer, kept apart so it can be tested alone.

A file is handed to the pipeline only once it is *settled*:

1. its (size, mtime) has been seen unchanged on at least two polls in a row, and
2. for at least ``settle`` seconds (by our own clock, not the file's mtime), and
3. its tail does not look like an unfinished JPEG or PNG (a JPEG that starts with the SOI
   marker but has no EOI marker near its end, a PNG with no ``IEND`` chunk). Such a file is
   held back until its mtime is ``incomplete_grace`` seconds old, so a copy that stalls longer
   than the settle time is still not read half-written; a file that really is truncated is
   then handed over and quarantined by the pipeline as usual.

Nothing here decodes images; rule 3 reads at most the first and last kilobyte of a file.
Writers that can should still write to a dot-name (``.x.jpg.part``; dot-files are never
scanned) and rename when done: a rename is atomic and needs no waiting at all.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.scan import FileEntry

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_TAIL = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def mtime_us(value: dt.datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch (exact, as Arrow stores it)."""
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def entry_key(entry: FileEntry) -> tuple[str, int, int]:
    """What identifies one version of one file cheaply: (path, size, mtime in µs)."""
    return stored_path(entry.path), entry.size_bytes, mtime_us(entry.mtime)


def looks_incomplete(path: str) -> bool:
    """True if ``path`` is a JPEG or PNG whose end has not been written yet.

    Only formats whose end is marked are checked; anything else (or an unreadable file) is
    left for the decoder to judge.

    An object-store URI is never incomplete: an object becomes visible only once its upload
    (single or multipart) has completed.

    >>> looks_incomplete("/dev/null")
    False
    """
    if "://" in path and not path.startswith("file://"):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - _TAIL))
            tail = fh.read(_TAIL)
    except OSError:
        return False
    if head[:2] == b"\xff\xd8":  # JPEG: EOI, possibly followed by a little padding
        return b"\xff\xd9" not in tail
    if head == _PNG_SIGNATURE:
        return b"IEND" not in tail[-64:]
    return False


@dataclass
class _Seen:
    size: int
    mtime: int
    since: float  # our clock when this (size, mtime) was first seen
    polls: int  # consecutive polls that saw it unchanged


class SettleTracker:
    """Follows candidate files across polls and says which are ready to ingest.

    >>> tracker = SettleTracker(settle=0.0)          # doctest: +SKIP
    >>> tracker.observe(entries)   # first sight: nothing is ready yet
    []
    >>> tracker.observe(entries)   # unchanged on the next poll: ready
    [FileEntry(...), ...]
    """

    def __init__(
        self,
        settle: float,
        *,
        incomplete_grace: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        is_incomplete: Callable[[str], bool] = looks_incomplete,
    ) -> None:
        self.settle = settle
        self.incomplete_grace = incomplete_grace
        self.clock = clock
        self.wall_clock = wall_clock
        self.is_incomplete = is_incomplete
        self._seen: dict[str, _Seen] = {}
        self.held_incomplete = 0  # files held back by rule 3 on the last poll

    @property
    def waiting(self) -> int:
        """Files seen but not yet ready."""
        return len(self._seen)

    def observe(self, candidates: Iterable[FileEntry]) -> list[FileEntry]:
        """Record one poll's candidates (files not yet ingested); return the settled ones.

        Returned files are forgotten (the caller ingests them); files missing from this poll
        are forgotten too (deleted, renamed, or ingested meanwhile).
        """
        now = self.clock()
        ready: list[FileEntry] = []
        current: dict[str, _Seen] = {}
        held = 0
        for entry in candidates:
            _, size, mtime = entry_key(entry)
            seen = self._seen.get(entry.path)
            if seen is None or (seen.size, seen.mtime) != (size, mtime):
                current[entry.path] = _Seen(size, mtime, now, 1)
                continue
            seen.polls += 1
            if seen.polls < 2 or now - seen.since < self.settle:
                current[entry.path] = seen
            elif self._still_writing(entry):
                held += 1
                current[entry.path] = seen
            else:
                ready.append(entry)
        self._seen = current
        self.held_incomplete = held
        return ready

    def _still_writing(self, entry: FileEntry) -> bool:
        age = self.wall_clock() - mtime_us(entry.mtime) / 1e6
        return age < self.incomplete_grace and self.is_incomplete(entry.path)
