"""The threaded ingest runner: scan → hash → triage → decode → encode → commit, on one machine.

The stages are modules of their own (:mod:`~embedscope.ingest.hash_stage`,
:mod:`~embedscope.ingest.triage`, :mod:`~embedscope.ingest.decode_stage`,
:mod:`~embedscope.ingest.encode_stage`, :mod:`~embedscope.ingest.commit`), shared with the Ray
executor (:mod:`embedscope.ingest.ray_executor`); this module only schedules them. It keeps the
encoder busy: hashing and decoding run in a thread pool (hashlib and Pillow release the GIL)
with a bounded number of images in flight, so memory stays flat whatever the drop's size; the
encoder runs on the calling thread; writes happen on a background :class:`BatchWriter` that
coalesces batches into few, larger commits, off the encoder's critical path.

Write order per commit (see :mod:`embedscope.store.db`): embeddings (and masks) → images →
quarantine → sources, commits in batch order. A sha256 is "done" once its ``images`` row
exists and every requested variant has an embedding, so a crash between commits is repaired
by simply running again; a path goes to ``sources`` only once its sha256 is settled.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from embedscope.config import IngestSettings
from embedscope.errors import DecodeError
from embedscope.ingest.commit import Committer, storage_errors, under_writer_lock
from embedscope.ingest.decode_stage import (
    DecodedItem,
    batch_decoder_for,
    decode_deferred,
    decode_entry,
    decode_entry_deferred,
    draft_size,
)
from embedscope.ingest.encode_stage import CPU_BATCH_SIZE, VariantStage, encode_isolated, stage_timings
from embedscope.ingest.encoders import Encoders, load_encoders, with_model_image_size
from embedscope.ingest.hash_stage import timed_hash
from embedscope.ingest.reading import UnreadableFile
from embedscope.ingest.progress import IngestSummary, Progress, StageTimes
from embedscope.ingest.scan import FileEntry, scan_drops
from embedscope.ingest.triage import KnownState, Triage
from embedscope.ingest.writer import BatchWriter, WriteJob
from embedscope.store.db import Database, utc_now

log = logging.getLogger(__name__)

SOURCE_ROWS_PER_JOB = 4096


class IngestRun:
    """One pass over a list of files into a database.

    The caller holds the writer lock. ``stages`` embed; ``preprocessor`` is the encoder's
    input transform. Use :func:`run_ingest` unless you are composing your own pipeline
    (the daemon reuses one ``IngestRun`` so the model loads once).
    """

    def __init__(
        self,
        db: Database,
        settings: IngestSettings,
        stages: Sequence[VariantStage],
        preprocessor: Callable[[Any], np.ndarray],
        *,
        model: str,
        weights: str,
        describe_device: Callable[[], tuple[str, str]] = lambda: ("cpu", "fp32"),
        choose_batch_size: Callable[[int], int] | None = None,
        warm_up: Callable[[], Any] | None = None,
        batch_decoder: Any = None,
    ) -> None:
        self.db = db
        self.choose_batch_size = choose_batch_size
        self.warm_up = warm_up  # builds the model: run in the background once there is work
        self.settings = settings
        self.stages = list(stages)
        self.preprocessor = preprocessor
        self.model = model
        self.weights = weights
        self.describe_device = describe_device
        self.variants = tuple(s.variant for s in self.stages)
        self.known = KnownState.load(db, model, self.variants)
        self.keep_image = any(s.needs_image for s in self.stages)
        self.draft_to = draft_size(settings, keep_image=self.keep_image)
        # --decode gpu: a jpeg_batch.JpegBatchDecoder (None = every file decoded on the CPU)
        self.batch_decoder = batch_decoder
        if batch_decoder is not None and (self.keep_image or settings.preprocess != "default"):
            why = "SAM2 needs the full image on the CPU" if self.keep_image else f"--preprocess {settings.preprocess}"
            log.info("JPEG decode on the CPU (%s)", why)
            self.batch_decoder = None

    def run(self, entries: Iterable[FileEntry], *, should_stop: Callable[[], bool] = lambda: False) -> IngestSummary:
        """Ingest ``entries``; ``should_stop`` is polled per file: on True, what is in flight
        is finished and written (the database stays consistent) and the run returns."""
        s = self.settings
        summary = IngestSummary(self.db.uri, self.model, self.weights)
        times = StageTimes()
        started = time.monotonic()
        progress = Progress(s.progress)
        triage = Triage(self.known, self.variants, summary, utc_now())
        committer = Committer(self.db, self.known, label_from_folder=s.label_from_folder)
        batch: list[DecodedItem] = []
        job = WriteJob()  # rows gathered since the last hand-over to the writer
        in_flight: deque[tuple[FileEntry, str, Future]] = deque()
        batch_size = s.batch_size or CPU_BATCH_SIZE  # the real one is chosen with the model
        model_ready: Future | None = None  # the model's build, overlapping the first decodes
        writer = BatchWriter(committer.commit, min_images=s.write_images, max_delay=s.write_seconds)

        def reject(item: DecodedItem, reason: str) -> None:
            # a file that passed the worker but failed its batched decode: its path row is
            # already in the job (it settles once the quarantine row is written)
            triage.rejected(item.entry, item.sha256, reason, job, record_path=False)

        def tick() -> None:
            progress.update(new=summary.new, dup=summary.duplicates, bad=summary.quarantined)

        def prepare_model() -> int:
            t0 = time.monotonic()
            if self.warm_up is not None:
                self.warm_up()
            chosen = self.choose_batch_size(s.batch_size) if self.choose_batch_size is not None else batch_size
            times.load = time.monotonic() - t0
            return chosen

        def hand_over() -> None:
            nonlocal job, batch_size
            if batch and self.batch_decoder is not None:
                t0 = time.monotonic()
                decode_deferred(batch, self.batch_decoder, preprocessor=self.preprocessor,
                                max_pixels=s.max_pixels, draft_to=self.draft_to, reject=reject)
                times.decode_batch += time.monotonic() - t0
            if batch:
                if model_ready is not None and model_ready.running():
                    log.info("waiting for the model to load")
                if model_ready is not None:
                    t0 = time.monotonic()
                    batch_size = model_ready.result()
                    times.load_wait += time.monotonic() - t0
                t0 = time.monotonic()
                tables, embedded, failed = encode_isolated(self.stages, batch)
                for item, reason in failed:  # the rest of the batch goes on without it
                    triage.unembedded(item, reason, job)
                batch[:] = [it for it in batch if all(it is not f for f, _ in failed)]
                for name, rows in tables.items():
                    job.tables.setdefault(name, []).append(rows)
                for variant, n in embedded.items():
                    summary.embedded[variant] = summary.embedded.get(variant, 0) + n
                times.encode += time.monotonic() - t0
                job.items.extend(batch)
                batch.clear()
            if not job.empty():
                writer.submit(job)
                job = WriteJob()

        def drain(block_until: int) -> None:
            while in_flight and (len(in_flight) > block_until or in_flight[0][2].done()):
                entry, sha, fut = in_flight.popleft()
                item, seconds = fut.result()
                times.decode += seconds
                if isinstance(item, DecodeError):
                    triage.rejected(entry, sha, item.message, job, path_only=isinstance(item, UnreadableFile))
                else:
                    batch.append(item)
                    triage.decoded(item, job)
                    if len(batch) >= batch_size:
                        hand_over()
                tick()

        try:
            with ThreadPoolExecutor(max_workers=s.worker_count, thread_name_prefix="ingest") as pool, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-load") as loader:
                hash_one = functools.partial(timed_hash, max_bytes=s.max_file_bytes)
                hashed = bounded_map(pool, hash_one, entries, lookahead=4 * s.worker_count)
                for entry, sha, hash_seconds in hashed:
                    if should_stop():
                        break
                    times.hash += hash_seconds
                    missing = triage.admit(entry, sha, job)
                    if missing is not None:
                        if model_ready is None:  # first real work: now it is worth building the model
                            model_ready = loader.submit(prepare_model)
                        in_flight.append((entry, sha, pool.submit(self._decode_timed, entry, sha, missing)))
                        drain(batch_size * s.prefetch_batches)
                        continue
                    if len(job.sources) >= SOURCE_ROWS_PER_JOB:  # all-duplicate drops: flat memory
                        writer.submit(job)
                        job = WriteJob()
                    tick()
                drain(0)
            hand_over()
        except BaseException as exc:
            # what was handed over is still committed (each job is consistent on its own);
            # the error in flight wins over a writer error
            try:
                writer.close()
            except Exception as writer_exc:
                if writer_exc is not exc:
                    log.exception("ingest writer failed while stopping after an error")
            progress.close()
            raise
        writer.close()  # raises the writer's error, if any
        times.write = writer.seconds
        progress.close()
        summary.seconds = time.monotonic() - started
        summary.stage_seconds = times.as_dict()
        summary.stage_seconds.update(stage_timings(self.stages))  # e.g. 'sam2' (part of 'encode')
        summary.device, summary.precision = self.describe_device()
        if self.batch_decoder is not None:
            summary.decode = f"batched:{self.batch_decoder.device.type}"
        return summary

    def _decode_timed(self, entry: FileEntry, sha: str, missing: tuple[str, ...]) -> tuple[DecodedItem | DecodeError, float]:
        t0 = time.monotonic()
        try:
            if self.batch_decoder is not None:
                item: DecodedItem | DecodeError = decode_entry_deferred(
                    entry, sha, preprocessor=self.preprocessor, settings=self.settings,
                    draft_to=self.draft_to, variants=missing)
            else:
                item = decode_entry(
                    entry, sha, preprocessor=self.preprocessor, settings=self.settings,
                    keep_image=self.keep_image, draft_to=self.draft_to, variants=missing)
        except DecodeError as exc:
            item = exc
        return item, time.monotonic() - t0


def bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, *, lookahead: int) -> Iterator:
    """``pool.map`` in order, with at most ``lookahead`` calls submitted ahead of the consumer."""
    queue: deque[Future] = deque()
    for item in items:
        queue.append(pool.submit(fn, item))
        if len(queue) >= lookahead:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


def make_run(db: Database, settings: IngestSettings, encoders: Encoders, *,
             decode_device: str | None = None) -> IngestRun:
    """An :class:`IngestRun` for loaded encoders. ``decode_device`` overrides where the
    batched JPEG decode runs (internal: the tests run the GPU path's code with ``"cpu"``)."""
    enc = encoders.encoder
    settings = with_model_image_size(settings)
    batch_decoder = batch_decoder_for(settings, enc.preprocessor, device=decode_device)
    return IngestRun(db, settings, encoders.stages, enc.preprocessor, model=enc.name,
                     weights=enc.weights.label, describe_device=lambda: (enc.device_name, enc.precision),
                     choose_batch_size=getattr(enc, "choose_batch_size", None),
                     warm_up=enc.load, batch_decoder=batch_decoder)


def run_ingest(settings: IngestSettings, *, wait_lock: float = 0.0,
               on_locked: Callable[[Database], None] | None = None,
               on_done: Callable[[Database], None] | None = None) -> IngestSummary:
    """The one-shot ``embedscope ingest``: everything from the settings to a summary
    (``settings.executor == "ray"``: the same stages on a Ray cluster). ``on_locked(db)`` runs
    once the writer lock is held, before anything is written, and ``on_done(db)`` after the run,
    still under the lock (the CLI notes what ``sources`` held before and after, so what another
    writer adds around this run is never counted as this run's)."""
    if settings.executor == "ray":
        from embedscope.ingest.ray_executor import run_ingest_ray

        return run_ingest_ray(settings, wait_lock=wait_lock, on_locked=on_locked, on_done=on_done)
    settings = with_model_image_size(settings)
    options = settings.storage_option_dict()
    entries = list(scan_drops(settings.drops, storage_options=options))  # fail on a missing drop before loading models
    encoders = load_encoders(settings)
    with storage_errors(settings.db):  # disk full, no permission: one line, not a traceback
        db = Database(settings.db, create=True, storage_options=options)
        return under_writer_lock(db, lambda: make_run(db, settings, encoders).run(entries), wait_lock=wait_lock,
                                 on_locked=on_locked, on_done=on_done)
