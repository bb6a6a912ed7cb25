"""When is a file in a drop finished? The daemon's answer, kept apart so it can be tested alone.

A file is handed to the pipeline only once it is *settled*:

1. its (size, mtime) has been seen unchanged on at least two polls in a row, and
2. for at least ``settle`` seconds (by our own clock, not the file's mtime), and
3. it does not look unfinished for its format (:func:`looks_incomplete`: a JPEG with no EOI
   marker near its end, a PNG with no ``IEND`` chunk, a GIF with no trailer byte, a BMP or WebP
   shorter than its header says, a TIFF whose IFDs, strips or tiles reach past its end). Such
   a file is held back until its mtime is ``incomplete_grace`` seconds old, so a copy that
   stalls longer than the settle time is still not read half-written; a file that really is
   truncated is then handed over and quarantined by the pipeline as usual (and if its whole
   content arrives later, the stored file supersedes that quarantine row).

Nothing here decodes images; rule 3 reads the header, the last kilobyte and (for TIFF) the
IFDs and their offset tables of a file.
Writers that can should still write to a dot-name (``.x.jpg.part``; dot-files are never
scanned) and rename when done: a rename is atomic and needs no waiting at all.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import struct
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.scan import FileEntry

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_TAIL = 1024
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"  # the IEND chunk's type and CRC (it has no data)


def mtime_us(value: dt.datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch (exact, as Arrow stores it)."""
    return (value - _EPOCH) // dt.timedelta(microseconds=1)


def entry_key(entry: FileEntry) -> tuple[str, int, int]:
    """What identifies one version of one file cheaply: (path, size, mtime in µs)."""
    return stored_path(entry.path), entry.size_bytes, mtime_us(entry.mtime)


def looks_incomplete(path: str) -> bool:
    """True if ``path`` is an image file whose end has not been written yet.

    Checked per format, from the header and the tail only: JPEG (EOI marker near the end),
    PNG (``IEND`` chunk), GIF (the ``;`` trailer byte), BMP (the header's file size), WebP (the
    RIFF size + 8), TIFF (every IFD, and every strip or tile it points at, lies within the
    file). Anything else (or an unreadable file) is left for the decoder to judge.

    An object-store URI is never incomplete: an object becomes visible only once its upload
    (single or multipart) has completed.

    >>> looks_incomplete("/dev/null")
    False
    """
    if "://" in path and not path.startswith("file://"):
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return False
        with open(fd, "rb", closefd=False) as fh:
            return _incomplete(fh, st.st_size)
    except (OSError, struct.error, ValueError):
        return False
    finally:
        os.close(fd)


def _incomplete(fh: BinaryIO, size: int) -> bool:
    head = fh.read(16)
    fh.seek(max(0, size - _TAIL))
    tail = fh.read(_TAIL)
    if head[:2] == b"\xff\xd8":  # JPEG: EOI, possibly followed by a little padding
        return b"\xff\xd9" not in tail
    if head[:8] == _PNG_SIGNATURE:
        return _PNG_END not in tail[-64:]
    if head[:6] in (b"GIF87a", b"GIF89a"):  # the trailer byte, possibly followed by padding
        return not tail.rstrip(b"\x00").endswith(b";")
    if head[:2] == b"BM" and len(head) >= 6:  # the header's file size (0 = not given)
        declared = struct.unpack_from("<I", head, 2)[0]
        return declared > size
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return struct.unpack_from("<I", head, 4)[0] + 8 > size
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_incomplete(fh, size, "<" if head[:2] == b"II" else ">")
    return False


_TIFF_TYPE_SIZES = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8 (offsets and byte counts)
_TIFF_WIDTHS = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}
_TIFF_PAIRS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_TIFF_MAX_IFDS = 64
_TIFF_MAX_VALUES = 1 << 16


def _tiff_incomplete(fh: BinaryIO, size: int, order: str) -> bool:
    """A (classic) TIFF is incomplete if an IFD, or a strip or tile one points at, ends past
    the end of the file. At most 64 IFDs and 65536 strips each are looked at."""
    fh.seek(4)
    offset = struct.unpack(order + "I", fh.read(4))[0]
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < _TIFF_MAX_IFDS:
        seen.add(offset)
        if offset + 2 > size:
            return True
        fh.seek(offset)
        count = struct.unpack(order + "H", fh.read(2))[0]
        if offset + 2 + 12 * count + 4 > size:
            return True
        entries = {}
        for _ in range(count):
            tag, kind, n, value = struct.unpack(order + "HHI4s", fh.read(12))
            entries[tag] = (kind, n, value)
            width = _TIFF_WIDTHS.get(kind, 1) * n
            if width > 4 and struct.unpack(order + "I", value)[0] + width > size:  # a value stored elsewhere
                return True
        next_offset = struct.unpack(order + "I", fh.read(4))[0]
        for offsets_tag, counts_tag in _TIFF_PAIRS:
            if offsets_tag in entries and counts_tag in entries:
                starts = _tiff_values(fh, size, order, *entries[offsets_tag])
                lengths = _tiff_values(fh, size, order, *entries[counts_tag])
                if starts is None or lengths is None:
                    return True
                if any(a + b > size for a, b in zip(starts, lengths)):
                    return True
        offset = next_offset
    return False


def _tiff_values(fh: BinaryIO, size: int, order: str, kind: int, n: int, value: bytes) -> list[int] | None:
    """An IFD entry's integer values; ``None`` if they lie (partly) past the end of the file."""
    width = _TIFF_TYPE_SIZES.get(kind)
    if width is None or n > _TIFF_MAX_VALUES:
        return []
    code = {2: "H", 4: "I", 8: "Q"}[width]
    if width * n <= 4:
        raw = value[: width * n]
    else:
        at = struct.unpack(order + "I", value)[0]
        if at + width * n > size:
            return None
        fh.seek(at)
        raw = fh.read(width * n)
    return list(struct.unpack(f"{order}{n}{code}", raw))


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
        return age < self.incomplete_grace and not entry.problem and self.is_incomplete(entry.path)
