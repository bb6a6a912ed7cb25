"""The commit stage: a :class:`~embedscope.ingest.writer.WriteJob` → database commits, in the
order crash safety relies on. Shared by every executor (run on one writer thread)."""

from __future__ import annotations

import contextlib
import errno
import logging
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from embedscope.errors import DatabaseError
from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.rows import image_rows, quality_rows, quarantine_row, source_row
from embedscope.ingest.triage import KnownState
from embedscope.ingest.writer import WriteJob
from embedscope.store import filters
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now

log = logging.getLogger(__name__)

_ROW_ERRORS = (pa.ArrowException, UnicodeError, ValueError, TypeError, OverflowError)


class Committer:
    """The write stage, shared by every executor: one job at a time, on one writer thread.

    Order per job: embeddings (and masks) → images → quarantine → sources. Every write is a
    merge_insert on the table's key, so writing a row twice (a retried batch) leaves one row.
    A path is recorded only once its content is settled (stored or quarantined), so a crash can
    never leave a path in ``sources`` whose image was lost.

    Failures, kept apart:

    - every table of the job is built *before* the first write, so a row that cannot be stored
      (a value Arrow refuses) fails before anything is written; that file alone is quarantined
      (by path) and the rest of the job is written;
    - a write that fails (disk full, permission denied, ...) after the embeddings were committed
      deletes the embeddings and masks of this job's new images again, in the same run, so no
      embedding is left without its image; the error is raised as one line
      (:class:`DatabaseError`) and the job is redone by the next run. Should that clean-up
      fail too (a disk that stays full), the next run's upserts complete the images;
    - a path whose content is now stored (or is a duplicate of a stored one) **supersedes** its
      earlier quarantine rows under other contents (e.g. a half-written file quarantined
      before it was complete): those quarantine rows, and the ``sources`` rows of the same
      (sha256, path), are deleted.
    """

    def __init__(self, db: Database, known: KnownState, *, label_from_folder: bool) -> None:
        self.db = db
        self.known = known
        self.label_from_folder = label_from_folder
        self.waiting: list[dict[str, Any]] = []  # path rows whose sha is not settled yet

    def commit(self, job: WriteJob) -> None:
        with storage_errors(self.db.uri):
            self._commit(job)

    def _commit(self, job: WriteJob) -> None:
        embeddings, images, quarantine = self._build(job)
        new_shas = [it.sha256 for it in job.items if it.sha256 not in self.known.images]
        written: list[str] = []
        try:
            for name, rows in embeddings.items():
                written.append(name)
                self.db.upsert(name, rows)
            if images is not None:
                self.db.upsert(S.IMAGES, images, update_existing=False)
                stored = set(images.column("sha256").to_pylist())
                self.db.upsert(S.QUALITY, quality_rows([it for it in job.items if it.sha256 in stored]),
                               update_existing=False)
            if quarantine is not None:
                self.db.upsert(S.QUARANTINE, quarantine)
        except BaseException:
            if written and new_shas:
                self._delete_orphans(written, new_shas)
            raise
        for it in job.items:
            self.known.images.add(it.sha256)
            for v in it.variants:
                self.known.embedded[v].add(it.sha256)
        for row in job.quarantine:
            self.known.quarantined_paths.setdefault(row["path"], set()).add(row["sha256"])
        settled, waiting = [], []
        for row in self.waiting + job.sources:
            sha = row["sha256"]
            done = not sha or sha in self.known.images or sha in self.known.quarantined
            (settled if done else waiting).append(row)
        if settled:
            self.db.upsert(S.SOURCES, _table(settled, S.SOURCES_SCHEMA, self._drop_row))
            self._supersede(settled)
        self.waiting = waiting

    def _build(self, job: WriteJob) -> tuple[dict[str, pa.Table], pa.Table | None, pa.Table | None]:
        """Every table the job writes, built before any is written; a file whose rows Arrow
        refuses leaves the job and is quarantined by path (if even that row fails: logged)."""
        refused: list[tuple[Any, str]] = []  # (DecodedItem, reason)
        new_items = [it for it in job.items if it.sha256 not in self.known.images]
        try:
            images = image_rows(new_items, label_from_folder=self.label_from_folder) if new_items else None
        except _ROW_ERRORS:
            kept = []
            for it in new_items:
                try:
                    image_rows([it], label_from_folder=self.label_from_folder)
                    kept.append(it)
                except _ROW_ERRORS as exc:
                    refused.append((it, f"cannot be stored: {_first_line(exc)}"))
            images = image_rows(kept, label_from_folder=self.label_from_folder) if kept else None
        if refused:
            gone = {id(it) for it, _ in refused}
            bad = pa.array([it.sha256 for it, _ in refused], pa.string())
            job.items[:] = [it for it in job.items if id(it) not in gone]
            job.tables = {name: [t.filter(pc.invert(pc.is_in(t.column("sha256"), value_set=bad)))
                                 for t in parts] for name, parts in job.tables.items()}
            now = utc_now()
            for it, reason in refused:
                log.warning("%s: %s (quarantined)", it.entry.path, reason)
                path = _stored_or_none(it.entry.path)
                job.sources[:] = [r for r in job.sources if not (r["sha256"] == it.sha256 and r["path"] == path)]
                job.quarantine.append(quarantine_row(it.entry, "", reason, now))
                job.sources.append(source_row(it.entry, "", now))
        embeddings = {name: pa.concat_tables(parts) if len(parts) > 1 else parts[0]
                      for name, parts in job.tables.items()}
        quarantine = (_table(job.quarantine, S.QUARANTINE_SCHEMA, self._drop_row)
                      if job.quarantine else None)
        job.sources[:] = _valid_rows(job.sources, S.SOURCES_SCHEMA, self._drop_row)
        return embeddings, images, quarantine

    def _drop_row(self, row: dict[str, Any]) -> None:
        log.warning("a row for %r cannot be stored and is left out: %s", row.get("path"), row.get("reason", ""))

    def _delete_orphans(self, tables: list[str], shas: list[str]) -> None:
        """Remove this job's embeddings (and masks) of images that were not written."""
        where = filters.isin("sha256", shas)
        for name in tables:
            try:
                self.db.delete(name, where)
            except Exception as exc:  # e.g. the disk is still full
                log.warning("could not remove %d embeddings of images that were not written from %s (%s); "
                            "the next ingest completes those images", len(shas), name, _first_line(exc))

    def _supersede(self, settled: list[dict[str, Any]]) -> None:
        """Delete the quarantine (and path) rows a cleanly stored path replaces."""
        known = self.known
        stale: dict[str, list[str]] = {}
        for row in settled:
            sha, path = row["sha256"], row["path"]
            if not sha or sha in known.quarantined or path not in known.quarantined_paths:
                continue
            old = [q for q in known.quarantined_paths[path] if q != sha]
            if old:
                stale[path] = old
        if not stale:
            return
        where = filters.either(*(filters.both(filters.eq("path", p), filters.isin("sha256", shas))
                                 for p, shas in stale.items()))
        for name in (S.QUARANTINE, S.SOURCES):
            self.db.delete(name, where)
        for path, shas in stale.items():
            known.quarantined_paths[path].difference_update(shas)
        log.info("%d path(s) now stored replace their earlier quarantine rows", len(stale))


def _stored_or_none(path: str) -> str | None:
    try:
        return stored_path(path)
    except Exception:
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _valid_rows(rows: list[dict[str, Any]], schema: pa.Schema, drop: Callable[[dict[str, Any]], None]
                ) -> list[dict[str, Any]]:
    """``rows`` without those Arrow cannot store in ``schema`` (each passed to ``drop``)."""
    try:
        pa.Table.from_pylist(rows, schema)
        return rows
    except _ROW_ERRORS:
        kept = []
        for row in rows:
            try:
                pa.Table.from_pylist([row], schema)
                kept.append(row)
            except _ROW_ERRORS:
                drop(row)
        return kept


def _table(rows: list[dict[str, Any]], schema: pa.Schema, drop: Callable[[dict[str, Any]], None]) -> pa.Table:
    return pa.Table.from_pylist(_valid_rows(rows, schema, drop), schema)


_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_NO_ACCESS = (errno.EACCES, errno.EPERM, errno.EROFS)


@contextlib.contextmanager
def storage_errors(uri: str) -> Iterator[None]:
    """Turn a disk-full or permission failure while opening or writing the database ``uri``
    into one :class:`DatabaseError` line (anything else passes through)."""
    try:
        yield
    except DatabaseError:
        raise
    except Exception as exc:
        error = storage_error(exc, uri)
        if error is None:
            raise
        raise error from exc


def storage_error(exc: BaseException, uri: str) -> DatabaseError | None:
    """A one-line :class:`DatabaseError` for a write that failed because of the disk (full,
    not writable), or ``None`` for anything else. Lance reports these as ``OSError`` or in
    the text of its own errors, so both are looked at."""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in _DISK_FULL or "no space left" in text or "disk quota" in text:
        return DatabaseError(f"disk full while writing the database {uri}",
                             "free space on that disk and run the same command again: nothing already "
                             "written is lost, and the files of the failed batch are done then")
    if code in _NO_ACCESS or "permission denied" in text or "read-only file system" in text:
        return DatabaseError(f"no permission to write the database {uri}",
                             "make that folder writable by this user (or use another --db), then run again")
    return None


def under_writer_lock(db: Database, work: Callable[[], Any], *, wait_lock: float,
                      on_locked: Callable[[Database], None] | None = None,
                      on_done: Callable[[Database], None] | None = None) -> Any:
    """``work()`` under the database's writer lock (an ingest), with the caller's ``on_locked``
    before it and ``on_done`` after it inside the same hold (the CLI reads ``sources`` there)."""
    with db.writer_lock(wait=wait_lock, owner="ingest"):
        if on_locked is not None:
            on_locked(db)
        result = work()
        if on_done is not None:
            on_done(db)
        return result
