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
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError, EmbedscopeError
from embedscope.ingest.scan import FileEntry, scan_drops
from embedscope.ingest.stability import SettleTracker, entry_key
from embedscope.store import schema as S
from embedscope.store.compaction import compact_tables
from embedscope.store.db import Database

log = logging.getLogger("embedscope.watch")

Analyze = Callable[[Database, str], "str | None"]
"""``analyze(db, model) -> run id or None``: what ``--on-batch-analyze`` runs (without the writer lock)."""


@dataclass(frozen=True)
class WatchSettings:
    """How the daemon polls, settles and batches (the ingest itself is :class:`IngestSettings`)."""

    interval: float = 2.0  # seconds between polls of the drops
    settle: float = 2.0  # a file must look unchanged this long (and across two polls)
    incomplete_grace: float = 300.0  # hold an unfinished-looking JPEG/PNG this long after its mtime
    heartbeat: float = 60.0  # seconds between "alive" log lines (0: never)
    max_files_per_batch: int = 256  # files handed to one pipeline run (and one writer-lock hold)
    on_batch_analyze: int = 0  # refresh novelty flags after every N new images (0: never)
    optimize_every: float = 3600.0  # compact the tables written at most this often (0: never)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ConfigError("--interval must be more than 0 seconds")
        for name in ("settle", "incomplete_grace", "heartbeat", "optimize_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        if self.max_files_per_batch < 1:
            raise ConfigError("--max-files-per-batch must be at least 1")
        if self.on_batch_analyze < 0:
            raise ConfigError("--on-batch-analyze must be 0 (off) or a number of new images")


@dataclass
class WatchTotals:
    batches: int = 0
    new: int = 0
    duplicates: int = 0
    quarantined: int = 0
    failed_batches: int = 0
    analyses: int = 0
    started: float = field(default_factory=time.monotonic)

    def one_line(self) -> str:
        return (f"watch stopped: {self.batches} batches, {self.new} new, {self.duplicates} duplicates, "
                f"{self.quarantined} quarantined in {time.monotonic() - self.started:.0f}s")


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` (finish the batch, exit 0); a second one exits at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now (the unfinished batch is redone on the next start)",
                        signal.Signals(signum).name)
            logging.shutdown()
            os._exit(130)
        log.info("%s: finishing the current batch, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


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
        self.totals = WatchTotals()
        self.tracker = SettleTracker(watch.settle, incomplete_grace=watch.incomplete_grace)
        self.known: set[tuple[str, int, int]] = set()
        self.db: Any = None  # the Database, opened by run()
        self.encoders: Any = None
        self._run: Any = None  # the reused IngestRun (its KnownState stays current while we write alone)
        self._snapshot: tuple | None = None  # table versions after our last write
        self._missing_drops: set[str] = set()
        self._failures = 0  # consecutive failed batches (for the retry back-off)
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
        return True

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
                self._failures += 1
                self._run, self._snapshot = None, None
                backoff = min(300.0, self.watch.interval * 2 ** self._failures)
                if isinstance(exc, EmbedscopeError):
                    log.error("batch failed: %s (retrying in %.0fs)", exc.one_line(), backoff)
                else:
                    log.exception("batch failed (retrying in %.0fs)", backoff)
                failed = True
            else:
                failed = False
                self._failures = 0
        if failed:
            self.stop.wait(backoff)  # outside the writer lock, so other writers can go on
            return
        stopped = self.stop.is_set() and summary.scanned < len(chunk)
        if not stopped:
            self.known.update(entry_key(e) for e in chunk)
        self._record(summary, len(chunk), stopped)
        if summary.new and self.watch.on_batch_analyze:
            self._new_since_analyze += summary.new
            if self._new_since_analyze >= self.watch.on_batch_analyze and not self.stop.is_set():
                self._new_since_analyze = 0
                self._analyze()

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
        t = self.totals
        t.batches += 1
        t.new += summary.new
        t.duplicates += summary.duplicates
        t.quarantined += summary.quarantined
        if summary.new or summary.completed or summary.quarantined:
            self._wrote_since_optimize = True
        extra = f", {summary.completed} completed" if summary.completed else ""
        tail = f" (stopped after {summary.scanned} of {files} files; the rest next start)" if stopped else ""
        log.info("batch %d: %d new%s, %d duplicates, %d quarantined of %d files in %.1fs (%.1f images/s)%s",
                 t.batches, summary.new, extra, summary.duplicates, summary.quarantined, summary.scanned,
                 summary.seconds, summary.images_per_s, tail)
        if self.emit is not None:
            self.emit({"event": "batch", "batch": t.batches, "files": files, "stopped": stopped,
                       **summary.as_dict()})

    def _heartbeat(self) -> None:
        t = self.totals
        held = f", {self.tracker.held_incomplete} look unfinished" if self.tracker.held_incomplete else ""
        log.info("alive: %d paths recorded, %d files settling%s; since start %d batches, %d new, "
                 "%d duplicates, %d quarantined", len(self.known), self.tracker.waiting, held, t.batches,
                 t.new, t.duplicates, t.quarantined)
        if self.emit is not None:
            self.emit({"event": "heartbeat", "recorded": len(self.known), "settling": self.tracker.waiting,
                       "held_unfinished": self.tracker.held_incomplete,
                       "batches": t.batches, "new": t.new, "duplicates": t.duplicates,
                       "quarantined": t.quarantined})

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
                      analyze=analyze)
    try:
        return watcher.run()
    finally:
        if own_handlers:  # stopped cleanly: a late duplicate signal must not turn exit 0 into 130
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)


__all__ = ["Analyze", "WatchSettings", "Watcher", "run_watch", "install_stop_handlers"]
