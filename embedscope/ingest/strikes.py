"""The daemon's retry policy: whose fault is a failed batch, and when a file is given up on.

- A failure that is **not any file's** (disk full, no permission, the lock, the object store:
  a :class:`~embedscope.errors.EmbedscopeError` or an ``OSError``) blames no file: the daemon
  retries the whole batch with back-off.
- Any other failure **may be a file's**: every file of the batch gets a strike and is tried
  again alone; a file that fails alone after that has failed twice and is quarantined by path
  (``ingest failed twice: <error>``, empty sha256), so it no longer blocks the daemon. A new
  version of the file (new size or mtime) starts again from zero strikes.
"""

from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from embedscope.errors import EmbedscopeError
from embedscope.ingest.rows import quarantine_row, source_row
from embedscope.ingest.scan import FileEntry
from embedscope.ingest.stability import entry_key
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now


def not_a_files_fault(exc: BaseException, db_uri: str) -> bool:
    """True for a failure of the disk, the lock, the store or the model, not of a file."""
    from embedscope.ingest.commit import storage_error

    return isinstance(exc, (EmbedscopeError, OSError, MemoryError)) or storage_error(exc, db_uri) is not None


def one_line(exc: BaseException) -> str:
    """An exception as one log line."""
    if isinstance(exc, EmbedscopeError):
        return exc.one_line()
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


class Strikes:
    """Failures per file version (its :func:`~embedscope.ingest.stability.entry_key`)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int, int], int] = {}

    def strike(self, chunk: list[FileEntry]) -> tuple[list[FileEntry], list[FileEntry]]:
        """Count one failure of ``chunk``: ``(files to try again one at a time, files that have
        now failed twice and are to be quarantined)``. A failed single file is retried by
        the next poll (its first strike) or given up on (its second)."""
        given_up = []
        for entry in chunk:
            key = entry_key(entry)
            self.counts[key] = self.counts.get(key, 0) + 1
            if len(chunk) == 1 and self.counts[key] >= 2:
                given_up.append(entry)
        return (chunk if len(chunk) > 1 else []), given_up

    def clear(self, entries: Iterable[FileEntry]) -> None:
        for entry in entries:
            self.counts.pop(entry_key(entry), None)


def quarantine_failed(db: Database, entry: FileEntry, exc: BaseException) -> str:
    """Record ``entry`` as quarantined by path because the pipeline failed on it twice; the
    reason written. Raises if the database cannot be written."""
    reason = f"ingest failed twice: {one_line(exc)}"
    now = utc_now()
    db.upsert(S.QUARANTINE, pa.Table.from_pylist([quarantine_row(entry, "", reason, now)], S.QUARANTINE_SCHEMA))
    db.upsert(S.SOURCES, pa.Table.from_pylist([source_row(entry, "", now)], S.SOURCES_SCHEMA))
    return reason
