"""Reading a stored image's original file for the browser, safely.

A stored path is only a hint: since the ingest the file may have gone, changed, grown to
gigabytes, or been replaced by a symlink, a FIFO or a device. A local path is therefore opened
with ``O_NOFOLLOW | O_NONBLOCK`` (no symlink at the last component, never a blocking open),
``fstat`` must say regular file of at most ``max_bytes``, and the bytes must still hash to the
sha256. Decodes (large images cost memory) run at most :data:`DECODE_SLOTS` at a time across
the app. Whatever is refused comes back as a reason, and the caller falls back to the stored
thumbnail.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

MAX_ORIGINAL_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 200_000_000
DECODE_SLOTS = 2  # decodes of originals and uploads at once, app-wide
DECODE_WAIT_S = 5.0  # how long an original's decode waits for a slot (an upload does not wait)
_DECODES = threading.BoundedSemaphore(DECODE_SLOTS)


class Refused(Exception):
    """An original that is not served; the message says why (one line, safe to show)."""


@contextmanager
def decode_slot(wait: float = DECODE_WAIT_S) -> Iterator[None]:
    """Hold one of the app's decode slots; :class:`Refused` ("busy") when none frees in ``wait``."""
    acquired = _DECODES.acquire(timeout=wait) if wait > 0 else _DECODES.acquire(blocking=False)
    if not acquired:
        raise Refused(f"busy: {DECODE_SLOTS} images are being decoded — retry in a moment")
    try:
        yield
    finally:
        _DECODES.release()


def read_local(path: str, max_bytes: int = MAX_ORIGINAL_BYTES) -> bytes:
    """The bytes of a regular file at ``path`` (not a symlink), at most ``max_bytes``; never blocks."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise Refused(f"original unavailable ({exc.strerror.lower() if exc.strerror else 'cannot open'})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused("original refused (not a regular file)")
        if st.st_size > max_bytes:
            raise Refused(f"original refused ({st.st_size / 2**20:.0f} MiB > the {max_bytes / 2**20:.0f} MiB cap)")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # grew since fstat
                raise Refused(f"original refused (more than the {max_bytes / 2**20:.0f} MiB cap)")
        return b"".join(chunks)
    except OSError as exc:
        raise Refused(f"original unavailable ({exc.strerror.lower() if exc.strerror else 'read error'})") from None
    finally:
        os.close(fd)


@dataclass
class Original:
    """The decoded original (``image``), or None with ``note`` saying why not."""

    image: Any = None
    note: str | None = None


def read_remote(uri: str, options: Any, max_bytes: int = MAX_ORIGINAL_BYTES) -> bytes:
    """The bytes of an object-store original (``s3://...``), refused by its listed size before any
    read, and never more than ``max_bytes`` read even if the listing lied."""
    from embedscope.ingest.reading import human_size
    from embedscope.objectstore import filesystem

    pafs, path = filesystem(uri, options)
    size = pafs.get_file_info(path).size
    if size is not None and size > max_bytes:
        raise Refused(f"original refused ({human_size(size)} > the {human_size(max_bytes)} cap)")
    with pafs.open_input_stream(path) as stream:
        data = stream.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise Refused(f"original refused (more than the {human_size(max_bytes)} cap)")
    return data


def load_original(db: Any, sha256: str, *, max_bytes: int = MAX_ORIGINAL_BYTES,
                  draft_longest: int | None = None) -> Original:
    """The decoded image of the first stored path whose bytes still hash to ``sha256``."""
    from embedscope.errors import DecodeError, EmbedscopeError
    from embedscope.ingest.decode import decode_bytes
    from embedscope.objectstore import is_uri
    from embedscope.store import views

    if not views.is_sha256(sha256):  # an imported vector's id: no file ever hashed to it
        return Original(note="no original: an imported vector")
    note = "original unavailable (no stored path)"
    for path in views.stored_paths(db, sha256):
        try:
            # an object-store source (s3://...): same credentials as the database
            data = read_remote(path, db.storage_options, max_bytes) if is_uri(path) else read_local(path, max_bytes)
        except Refused as exc:
            note = str(exc)
            continue
        except (OSError, EmbedscopeError):
            note = "original unavailable"
            continue
        if hashlib.sha256(data).hexdigest() != sha256:
            note = "original changed since ingest"
            continue
        try:
            with decode_slot():
                return Original(decode_bytes(data, max_pixels=MAX_PIXELS, draft_longest=draft_longest).image)
        except Refused as exc:
            return Original(note=str(exc))
        except DecodeError:
            note = "original no longer decodes"
    return Original(note=note)
