"""``embedscope watch``: ingest drops continuously, survive crashes, lose nothing.

One code path: the daemon loads the encoders once and feeds settled files, a bounded batch at
a time, to the same :class:`~embedscope.ingest.pipeline.IngestRun` that ``embedscope ingest``
uses. What it adds is *when* a file is read and *who* may write:

- **Polling.** Every ``interval`` seconds the drops are walked (no file is opened); an
  object-store prefix (``s3://bucket/incoming/``) is listed the same way (no notifications). A file
  whose (path, size, mtime) is already in ``sources`` is skipped without hashing; the
  pipeline records a path there only after its content is stored or quarantined, so after a
  crash exactly the unfinished files are hashed again.
- **Settling** (:mod:`embedscope.ingest.stability`): a file still being written is not read.
- **Crash safety** comes from the pipeline's write order (embeddings → images → quarantine →
  sources, each one atomic Lance commit, each an idempotent upsert): after ``kill -9`` at any
  moment, the next start redoes the unfinished batch and nothing is duplicated or lost.
- **Failures.** A batch that fails for the disk, the lock or the store is retried with
  back-off; one that may be a file's fault is retried a file at a time, and a file that fails
  twice is quarantined (:mod:`embedscope.ingest.strikes`).
- **Locks.** The database's watch lock (:meth:`Database.watch_lock
  <embedscope.store.db.Database.watch_lock>`) is held for the daemon's lifetime: a second
  ``watch`` on the same database exits with a message naming the first (or, with
  ``--wait-lock SECONDS``/``inf``, waits as a standby). The database's writer lock is taken
  per batch only, waiting as long as needed, so a one-shot ``ingest`` or an analysis job can
  write between batches. How they are held (a file lock the kernel frees when a process dies,
  an S3 lease that runs out) is the store's business (:mod:`embedscope.store.locks`).
- **Analysis** after batches (``--on-batch-analyze N``) is a callback the caller hands in
  (``analyze``; the CLI's refreshes novelty flags): ingest does not depend on analysis.
- **Stopping.** SIGTERM/SIGINT finish the current batch (already hashed and decoded files are
  embedded and written; the rest is left for next time), then exit 0. A second signal exits
  at once, which is also safe.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from embedscope.config import IngestSettings, WatchSettings
from embedscope.errors import ConfigError, EmbedscopeError
from embedscope.ingest.commit import storage_errors
from embedscope.ingest.progress import WatchTotals
from embedscope.ingest.scan import FileEntry, scan_drops
from embedscope.ingest.signals import install_stop_handlers
from embedscope.ingest.stability import SettleTracker, entry_key
from embedscope.ingest.strikes import Strikes, not_a_files_fault, one_line, quarantine_failed
from embedscope.store import schema as S
from embedscope.store.compaction import compact_tables
from embedscope.store.db import Database

log = logging.getLogger("embedscope.watch")

Analyze = Callable[[Database, str], "str | None"]
"""``analyze(db, model) -> run id or None``: what ``--on-batch-analyze`` runs (without the writer lock)."""
OnBatch = Callable[[Database, str, "list[str]"], "dict[str, Any]"]
"""``on_batch(db, model, paths) -> event fields``: run after each batch with its paths (the CLI's
judges the arrivals, docs/verdicts.md); a failure is logged and the daemon goes on."""


class Watcher:
    """The daemon's loop. Build it, then :meth:`run` until ``stop`` is set.

    ``emit`` receives one dict per batch (the CLI prints them as JSON lines with ``--json``).
    """

    def __init__(
        self,
        settings: IngestSettings,
        watch: WatchSettings,
        *,
        stop: threading.Event,
        wait_lock: float = 0.0,
        emit: Callable[[dict[str, Any]], None] | None = None,
        analyze: Analyze | None = None,
        on_batch: OnBatch | None = None,
    ) -> None:
        if watch.on_batch_analyze and analyze is None:
            raise ConfigError("--on-batch-analyze needs an analysis to run (none was given to the daemon)")
        from embedscope.ingest.encoders import with_model_image_size

        self.settings = with_model_image_size(dataclasses.replace(settings, progress=False))  # one log line per batch
        self.watch = watch
        self.stop = stop
        self.wait_lock = wait_lock
        self.emit = emit
        self.analyze = analyze
        self.on_batch = on_batch
        self.totals = WatchTotals()
        self.tracker = SettleTracker(watch.settle, incomplete_grace=watch.incomplete_grace)
        self.known: set[tuple[str, int, int]] = set()
        self.db: Any = None  # the Database, opened by run()
        self.encoders: Any = None
        self._run: Any = None  # the reused IngestRun (its KnownState stays current while we write alone)
        self._snapshot: tuple | None = None  # table versions after our last write
        self._missing_drops: set[str] = set()
        self._failures = 0  # consecutive failed batches (for the retry back-off)
        self._strikes = Strikes()  # failures per file version: the retry policy
        self._new_since_analyze = 0
        self._last_optimize = time.monotonic()
        self._wrote_since_optimize = False

    # -- lifecycle ------------------------------------------------------------------------

    def run(self) -> WatchTotals:
        from embedscope.objectstore import is_uri, list_objects, resolve_options

        options = self.settings.storage_option_dict()
        for drop in self.settings.drops:
            if is_uri(drop):  # an object-store prefix: polled by listing; reachable now, or fail now
                list_objects(drop, resolve_options(drop, options))
            elif not Path(drop).expanduser().exists():
                raise ConfigError(f"drop folder not found: {drop}", "create it, or check the path")
        with storage_errors(self.settings.db):
            self.db = Database(self.settings.db, create=True, storage_options=options)
            with self.db.watch_lock(wait=self.wait_lock, stop=self.stop) as held:
                if not held:  # stopped while waiting for another daemon
                    return self.totals
                self._serve()
        log.info(self.totals.one_line())
        return self.totals

    def _serve(self) -> None:
        from embedscope.ingest.encoders import load_encoders

        self.encoders = load_encoders(self.settings)  # weights resolved now: fail before any work
        self.encoders.encoder.load()  # build the network now, so the first batch is not the slow one
        if not self._prepare_tables():
            return
        self.known = self._load_known()
        log.info("watching %s into %s (every %ss, settle %ss; %d paths already recorded)",
                 ", ".join(self.settings.drops), self.db.uri, _fmt(self.watch.interval),
                 _fmt(self.watch.settle), len(self.known))
        next_heartbeat = time.monotonic() + self.watch.heartbeat
        while not self.stop.is_set():
            poll_started = time.monotonic()
            candidates = [e for e in self._scan() if entry_key(e) not in self.known]
            ready = self.tracker.observe(candidates)
            for chunk in _chunks(ready, self.watch.max_files_per_batch):
                if self.stop.is_set():
                    break
                self._ingest(chunk)
                if self.watch.heartbeat and time.monotonic() >= next_heartbeat:
                    next_heartbeat = time.monotonic() + self.watch.heartbeat
                    self._heartbeat()
            if not self.stop.is_set():
                self._maybe_optimize()
            if self.watch.heartbeat and time.monotonic() >= next_heartbeat:
                next_heartbeat = time.monotonic() + self.watch.heartbeat
                self._heartbeat()
            self.stop.wait(max(0.0, self.watch.interval - (time.monotonic() - poll_started)))

    def _prepare_tables(self) -> bool:
        """Create the tables the daemon writes (repairing one whose creation a kill cut off),
        so that no batch ever creates a table. False if stopped while waiting for the lock."""
        encoder = self.encoders.encoder
        tables = {S.IMAGES: S.IMAGES_SCHEMA, S.SOURCES: S.SOURCES_SCHEMA, S.QUARANTINE: S.QUARANTINE_SCHEMA,
                  S.embeddings_table_name(encoder.name): S.embeddings_schema(encoder.dim)}
        if self.settings.sam2:
            tables[S.MASKS] = S.MASKS_SCHEMA
        with self._writer_lock() as locked:
            if not locked:
                return False
            self.db.refresh()
            for name, schema in tables.items():
                self.db.ensure_table(name, schema)
            self._repair()
        return True

    def _repair(self) -> None:
        """What a kill left behind (orphan rows, stale quarantine rows) goes before the first
        batch; `embedscope check --repair` is the same. A failure here never stops the daemon."""
        from embedscope.store.check import repair

        try:
            log.info("start-up check: %s", repair(self.db, lock_held=True).summary())
        except (EmbedscopeError, OSError) as exc:
            log.warning("start-up check failed (%s); watching anyway", exc)

    # -- one poll -------------------------------------------------------------------------

    def _scan(self) -> Iterator[FileEntry]:
        for drop in self.settings.drops:
            try:
                yield from scan_drops([drop], storage_options=self.settings.storage_option_dict())
            except ConfigError as exc:
                if drop not in self._missing_drops:
                    log.warning("drop %s has disappeared (%s); still watching for it", drop, exc.message)
                    self._missing_drops.add(drop)
                continue
            if drop in self._missing_drops:
                log.info("drop %s is back", drop)
                self._missing_drops.discard(drop)

    def _load_known(self) -> set[tuple[str, int, int]]:
        import pyarrow as pa

        table = self.db.read(S.SOURCES, ["path", "size_bytes", "mtime"])
        paths = table.column("path").to_pylist()
        sizes = table.column("size_bytes").to_pylist()
        mtimes = table.column("mtime").cast(pa.int64()).to_pylist()
        return {(p, s, m) for p, s, m in zip(paths, sizes, mtimes) if s is not None and m is not None}

    def _ingest(self, chunk: list[FileEntry]) -> None:
        from embedscope.ingest.pipeline import make_run

        suspects: list[FileEntry] = []
        with self._writer_lock() as locked:
            if not locked:
                return
            try:
                self.db.refresh()
                snapshot = self._versions()
                if self._run is None or snapshot != self._snapshot:
                    if self._snapshot is not None and snapshot != self._snapshot:
                        log.info("the database was written by another process; reloading what it holds")
                        self.known = self._load_known()
                        chunk = [e for e in chunk if entry_key(e) not in self.known]
                    self._run = make_run(self.db, self.settings, self.encoders)
                summary = self._run.run(chunk, should_stop=self.stop.is_set)
                if summary.new or summary.completed:
                    self._keep_index_current()
                self._snapshot = self._versions()
            except Exception as exc:  # the daemon logs and goes on; the batch is redone later
                self.totals.failed_batches += 1
                self._run, self._snapshot = None, None
                suspects = [] if self._environmental(exc) else self._strike(chunk, exc)
                if suspects:
                    log.error("batch of %d file(s) failed (%s); trying its files one at a time",
                              len(chunk), one_line(exc))
                    failed, backoff = True, 0.0
                else:
                    self._failures += 1
                    backoff = min(300.0, self.watch.interval * 2 ** self._failures)
                    log.error("batch failed: %s (retrying in %.0fs)", one_line(exc), backoff)
                    failed = True
            else:
                failed = False
                self._failures = 0
                self._strikes.clear(chunk)
        if suspects:  # outside the writer lock; each file alone, so one bad file blocks nothing
            for entry in suspects:
                if not self.stop.is_set():
                    self._ingest([entry])
            return
        if failed:
            self.stop.wait(backoff)  # outside the writer lock, so other writers can go on
            return
        stopped = self.stop.is_set() and summary.scanned < len(chunk)
        if not stopped:
            self.known.update(entry_key(e) for e in chunk)
        self._record(summary, len(chunk), stopped)
        if self.on_batch is not None and summary.scanned:
            self._after_batch("arrivals", lambda: self.on_batch(self.db, self.encoders.encoder.name,
                                                                [e.path for e in chunk[:summary.scanned]]))
        if summary.new and self.watch.on_batch_analyze:
            self._new_since_analyze += summary.new
            if self._new_since_analyze >= self.watch.on_batch_analyze and not self.stop.is_set():
                self._new_since_analyze = 0
                self._analyze()

    def _environmental(self, exc: BaseException) -> bool:
        return not_a_files_fault(exc, self.db.uri)

    def _strike(self, chunk: list[FileEntry], exc: BaseException) -> list[FileEntry]:
        """Count a failure against ``chunk``'s files (:mod:`embedscope.ingest.strikes`);
        quarantine those that have failed twice; return those to try one at a time."""
        retry, given_up = self._strikes.strike(chunk)
        for entry in given_up:
            try:
                reason = quarantine_failed(self.db, entry, exc)
            except Exception as write_exc:
                log.error("could not quarantine %s: %s (it is tried again)", entry.path, one_line(write_exc))
                continue
            self._strikes.clear([entry])
            self.known.add(entry_key(entry))
            self.totals.quarantined += 1
            log.warning("%s: %s — quarantined", entry.path, reason)
        return retry

    def _writer_lock(self) -> ContextManager[bool]:
        """The writer lock for one step, waiting as long as another writer holds it; yields
        False if the daemon is stopped first."""
        return self.db.writer_lock(wait=float("inf"), owner="watch", stop=self.stop)

    def _keep_index_current(self) -> None:
        """Build the ANN index once the table is large enough, fold new rows in, retrain on growth."""
        from embedscope.store.index import maybe_optimize

        action = maybe_optimize(self.db, self.encoders.encoder.name)
        if action != "none":
            log.info("vector index of %s: %s", self.encoders.encoder.name, action)

    def _versions(self) -> tuple:
        names = (S.IMAGES, S.SOURCES, S.QUARANTINE, S.embeddings_table_name(self.encoders.encoder.name))
        return tuple(self.db.version(n) for n in names)

    def _record(self, summary: Any, files: int, stopped: bool) -> None:
        if summary.new or summary.completed or summary.quarantined:
            self._wrote_since_optimize = True
        self.totals.add_batch(summary, files, stopped, self.emit)

    def _heartbeat(self) -> None:
        self.totals.heartbeat(len(self.known), self.tracker.waiting, self.tracker.held_incomplete, self.emit)

    # -- after batches --------------------------------------------------------------------

    def _analyze(self) -> None:
        """Run the ``analyze`` callback, once per ``on_batch_analyze`` new images; a failure is
        logged and the daemon goes on. Called without the writer lock held: analysis jobs
        write only result tables."""
        try:
            self.db.refresh()
            run_id = self.analyze(self.db, self.encoders.encoder.name)
        except EmbedscopeError as exc:
            log.warning("novelty refresh failed: %s (the daemon goes on)", exc.one_line())
            return
        except Exception:
            log.exception("novelty refresh failed (the daemon goes on)")
            return
        self.totals.analyses += 1
        log.info("novelty flags refreshed: %s", f"run {run_id}" if run_id else "nothing to score")
        if self.emit is not None:
            self.emit({"event": "analyze", "run_id": run_id})

    def _after_batch(self, event: str, work: Callable[[], dict[str, Any]]) -> None:
        """Run one after-batch callback; a failure is logged and the daemon goes on."""
        try:
            with self._writer_lock() as locked:
                fields = work() if locked else None
        except Exception as exc:  # noqa: BLE001 - the daemon goes on
            log.warning("%s failed: %s (the daemon goes on)", event, exc)
            return
        if fields is not None:
            log.info("%s: %s", event, fields)
            if self.emit is not None:
                self.emit({"event": event, **fields})

    def _maybe_optimize(self) -> None:
        """Compact the tables the daemon appends to (many small commits → few fragments)."""
        every = self.watch.optimize_every
        if not every or not self._wrote_since_optimize or time.monotonic() - self._last_optimize < every:
            return
        with self._writer_lock() as locked:
            if not locked:
                return
            names = [S.IMAGES, S.SOURCES, S.QUARANTINE, S.embeddings_table_name(self.encoders.encoder.name)]
            t0 = time.monotonic()
            try:
                self.db.refresh()
                # keep an hour of old versions for readers that are still on one
                compact_tables(self.db, names, keep_versions_for=dt.timedelta(hours=1))
            except Exception:
                log.exception("compacting the tables failed (the daemon goes on)")
            else:
                log.info("compacted %s in %.1fs", ", ".join(names), time.monotonic() - t0)
            finally:
                self.db.refresh()
                self._snapshot = self._versions()  # our own commits: the run's state is still right
        self._last_optimize = time.monotonic()
        self._wrote_since_optimize = False


def _chunks(items: list[FileEntry], size: int) -> Iterator[list[FileEntry]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _fmt(seconds: float) -> str:
    return f"{seconds:g}"


def run_watch(
    settings: IngestSettings,
    watch: WatchSettings,
    *,
    wait_lock: float = 0.0,
    json_lines: bool = False,
    stop: threading.Event | None = None,
    analyze: Analyze | None = None,
    on_batch: OnBatch | None = None,
) -> WatchTotals:
    """The ``embedscope watch`` command: run until SIGTERM/SIGINT (or ``stop``), then return.
    ``analyze`` is what ``watch.on_batch_analyze`` runs (needed when that is set)."""
    own_handlers = stop is None
    if stop is None:
        stop = threading.Event()
        install_stop_handlers(stop)

    def emit(record: dict[str, Any]) -> None:  # stdout carries only these; logs go to stderr
        print(json.dumps(record, default=str), flush=True)

    watcher = Watcher(settings, watch, stop=stop, wait_lock=wait_lock, emit=emit if json_lines else None,
                      analyze=analyze, on_batch=on_batch)
    try:
        return watcher.run()
    finally:
        if own_handlers:  # stopped cleanly: a late duplicate signal must not turn exit 0 into 130
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)


__all__ = ["Analyze", "OnBatch", "WatchTotals", "Watcher", "run_watch"]
