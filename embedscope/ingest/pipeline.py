"""The ingest pipeline: scan → SHA-256 → skip known → decode → encode → write.

Stages are plain functions and small classes so each can be tested alone and swapped
(tests pass a fake encoder through ``build_stages``). The runner keeps the encoder busy:
hashing and decoding run in a thread pool (hashlib and Pillow release the GIL) with a
bounded number of images in flight, so memory stays flat whatever the drop's size; the
encoder runs on the calling thread; writes happen on a background :class:`BatchWriter`
that coalesces batches into few, larger commits, off the encoder's critical path.

Write order per commit (see :mod:`embedscope.store.db`): embeddings (and masks) → images →
quarantine → sources, commits in batch order. A sha256 is "done" once its ``images`` row
exists and every requested variant has an embedding, so a crash between commits is repaired
by simply running again; a path goes to ``sources`` only once its sha256 is settled.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import pyarrow as pa

from embedscope.config import IngestSettings
from embedscope.errors import DecodeError
from embedscope.ingest.decode import decode_bytes, decode_image, perceptual_hash, read_file_bytes, thumbnail_jpeg
from embedscope.hashing import sha256_file
from embedscope.ingest.scan import FileEntry, scan_drops
from embedscope.ingest.writer import BatchWriter, WriteJob
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now

log = logging.getLogger(__name__)

CPU_BATCH_SIZE = 32  # when no encoder chooses (measured: bs 32 ~1.6x the per-image rate of bs 8 on CPU)
SOURCE_ROWS_PER_JOB = 4096


# -- data travelling between stages --------------------------------------------------------


@dataclass
class DecodedItem:
    entry: FileEntry
    sha256: str
    width: int
    height: int
    format: str
    phash: int
    thumbnail: bytes
    pixels: np.ndarray | None  # the encoder's preprocessed CHW input (dropped once encoded)
    image: Any = None  # the decoded RGB image, kept only when a stage needs it (SAM2)
    variants: tuple[str, ...] = (S.VARIANT_FULL,)  # variants still missing for this sha
    deferred: Any = None  # --decode gpu: a jpeg_batch.Prepared whose pixels decode with the batch


@dataclass
class StageTimes:
    hash: float = 0.0
    decode: float = 0.0
    encode: float = 0.0
    write: float = 0.0
    load: float = 0.0  # building the model (overlaps hashing and the first decodes)
    decode_batch: float = 0.0  # --decode gpu: the batched full-size JPEG decode (encoder's thread)
    load_wait: float = 0.0  # the part of ``load`` the encoder had to wait for

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in vars(self).items()}


@dataclass
class IngestSummary:
    db: str
    model: str
    weights: str
    scanned: int = 0
    new: int = 0
    completed: int = 0  # already-known images that got a missing variant (e.g. --sam2 later)
    duplicates: int = 0
    quarantined: int = 0
    embedded: dict[str, int] = field(default_factory=dict)  # variant -> vectors written
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    device: str = "cpu"
    precision: str = "fp32"
    decode: str = "cpu"  # where JPEG pixels were decoded: cpu (Pillow) or batched:<device>

    @property
    def images_per_s(self) -> float:
        work = self.new + self.completed
        return work / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["images_per_s"] = round(self.images_per_s, 2)
        d["seconds"] = round(self.seconds, 3)
        return d

    def one_line(self) -> str:
        extra = f", {self.completed} completed" if self.completed else ""
        if "sam2" in self.stage_seconds:
            extra += f" (SAM2 {self.stage_seconds['sam2']:.1f}s)"
        return (
            f"ingest: {self.new} new{extra}, {self.duplicates} duplicates, "
            f"{self.quarantined} quarantined of {self.scanned} files in {self.seconds:.1f}s "
            f"({self.images_per_s:.1f} images/s, {self.model}, weights {self.weights})"
        )


class VariantStage(Protocol):
    """Turns a batch of decoded images into rows for one embedding variant."""

    variant: str
    needs_image: bool  # keep the decoded RGB image on the item (costs memory)

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        """Rows to write, by table name (an embeddings table, and maybe ``masks``)."""
        ...


# -- stages ---------------------------------------------------------------------------------


class FullImageStage:
    """DINOv2 on the whole image: the ``full`` variant."""

    variant = S.VARIANT_FULL
    needs_image = False

    def __init__(self, encoder: Any, *, store_patch_mean: bool = False) -> None:
        self.encoder = encoder
        self.store_patch_mean = store_patch_mean

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        stack = getattr(self.encoder, "stack", None)  # pinned memory on CUDA
        pixels = [it.pixels for it in items]
        batch = stack(pixels) if stack is not None else np.stack(pixels)
        out = self.encoder.embed(batch, patch_mean=self.store_patch_mean)
        shas = [it.sha256 for it in items]
        kw = {"model": self.encoder.name, "weights": self.encoder.weights.label}
        rows = embedding_rows(shas, out.cls, variant=self.variant, **kw)
        if out.patch_mean is not None:
            extra = embedding_rows(shas, out.patch_mean, variant=S.VARIANT_PATCH_MEAN, **kw)
            rows = pa.concat_tables([rows, extra])
        return {S.embeddings_table_name(self.encoder.name): rows}


def embedding_rows(
    shas: Sequence[str],
    vectors: np.ndarray,
    *,
    model: str,
    variant: str,
    weights: str,
) -> pa.Table:
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    cols: dict[str, Any] = {
        "sha256": pa.array(list(shas), pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "variant": pa.array([variant] * n, pa.string()),
        "dim": pa.array([dim] * n, pa.int32()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        "weights": pa.array([weights] * n, pa.string()),
        "created_at": pa.array([utc_now()] * n, pa.timestamp("us", tz="UTC")),
    }
    return pa.table(cols)


def decode_entry(
    entry: FileEntry,
    sha256: str,
    *,
    preprocessor: Callable[[Any], np.ndarray],
    settings: IngestSettings,
    keep_image: bool,
    draft_to: int,
    variants: tuple[str, ...],
    data: bytes | None = None,
) -> DecodedItem:
    """Decode one file and compute everything per-image that is not the model. Raises
    :class:`DecodeError` for anything that cannot be an image.

    ``data``: the file's bytes, already in memory (an upload); ``entry.path`` is then only a
    label and is never opened."""
    if data is not None:
        decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=draft_to)
    else:
        decoded = decode_image(entry.path, max_pixels=settings.max_pixels, draft_to=draft_to,
                               storage_options=entry.storage_options)
    image = decoded.image
    return _decoded_item(entry, sha256, decoded, image, settings, pixels=preprocessor(image),
                         keep=image if keep_image else None, variants=variants)


def _decoded_item(entry: FileEntry, sha256: str, decoded: Any, small: Any, settings: IngestSettings, *,
                  pixels: Any, variants: tuple[str, ...], keep: Any = None, deferred: Any = None) -> DecodedItem:
    """A :class:`DecodedItem`: sizes from ``decoded``, phash and thumbnail from ``small``."""
    return DecodedItem(
        entry=entry,
        sha256=sha256,
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        phash=perceptual_hash(small),
        thumbnail=thumbnail_jpeg(small, settings.thumbnail_size),
        pixels=pixels,
        image=keep,
        variants=variants,
        deferred=deferred,
    )


def hash_entry(entry: FileEntry) -> str | None:
    """The SHA-256 of ``entry``'s bytes, or ``None`` if it vanished or cannot be read since the scan."""
    try:
        return sha256_file(entry.path, storage_options=entry.storage_options)
    except OSError:
        return None


def decode_or_error(entry: FileEntry, sha256: str, **kwargs: Any) -> DecodedItem | DecodeError:
    """:func:`decode_entry`, with a :class:`DecodeError` returned instead of raised (a result
    that can travel back from a worker)."""
    try:
        return decode_entry(entry, sha256, **kwargs)
    except DecodeError as exc:
        return exc


def encode_batch(stages: Sequence[VariantStage], items: Sequence[DecodedItem]) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """Run every stage on the items that miss its variant, then drop their pixels and images.

    Returns the rows to write by table name and the number of vectors per variant."""
    tables: dict[str, list[pa.Table]] = {}
    embedded: dict[str, int] = {}
    for stage in stages:
        todo = [it for it in items if stage.variant in it.variants]
        if not todo:
            continue
        for name, rows in stage.process(todo).items():
            tables.setdefault(name, []).append(rows)
        embedded[stage.variant] = embedded.get(stage.variant, 0) + len(todo)
    for it in items:
        it.pixels = None
        it.image = None
    return {name: pa.concat_tables(parts) if len(parts) > 1 else parts[0] for name, parts in tables.items()}, embedded


def source_row(entry: FileEntry, sha256: str, seen_at: Any) -> dict[str, Any]:
    """One ``sources`` row: where a file with this content was seen."""
    return {"sha256": sha256, "path": entry.path, "drop": entry.drop, "size_bytes": entry.size_bytes,
            "mtime": entry.mtime, "seen_at": seen_at}


def quarantine_row(entry: FileEntry, sha256: str, reason: str, seen_at: Any) -> dict[str, Any]:
    """One ``quarantine`` row: a file that cannot be an image, and why."""
    return {"sha256": sha256, "path": entry.path, "size_bytes": entry.size_bytes, "reason": reason,
            "seen_at": seen_at}


def image_rows(items: Sequence[DecodedItem], *, label_from_folder: bool) -> pa.Table:
    """The ``images`` rows of decoded items (first path seen, size, format, phash, thumbnail)."""
    now = utc_now()
    return pa.Table.from_pylist(
        [
            {"sha256": it.sha256, "path": it.entry.path, "size_bytes": it.entry.size_bytes,
             "width": it.width, "height": it.height, "format": it.format,
             "label": it.entry.folder_label if label_from_folder else None, "phash": it.phash,
             "ingested_at": now, "thumbnail": it.thumbnail}
            for it in items
        ],
        S.IMAGES_SCHEMA,
    )


def decode_entry_deferred(
    entry: FileEntry,
    sha256: str,
    *,
    preprocessor: Callable[[Any], np.ndarray],
    settings: IngestSettings,
    draft_to: int,
    variants: tuple[str, ...],
) -> DecodedItem:
    """``--decode gpu``'s CPU side: for an RGB/grayscale JPEG, the header checks and a small
    draft-mode decode (phash, thumbnail, and the truncation check), its pixels left to the
    batch decoder; any other file is decoded here as by :func:`decode_entry`."""
    from embedscope.ingest.jpeg_batch import prepare_jpeg

    data = read_file_bytes(entry.path, entry.storage_options)
    prepared = prepare_jpeg(data, max_pixels=settings.max_pixels, small_side=settings.thumbnail_size)
    if prepared is None:
        decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=draft_to)
        image, pixels = decoded.image, preprocessor(decoded.image)
    else:
        decoded, image, pixels = prepared.small, prepared.small.image, None
    return _decoded_item(entry, sha256, decoded, image, settings, pixels=pixels, variants=variants,
                         deferred=prepared)


# -- the runner -----------------------------------------------------------------------------


@dataclass
class KnownState:
    """What the database already holds, loaded once per run (and kept current by the run)."""

    images: set[str]
    quarantined: dict[str, str]  # sha256 -> reason
    embedded: dict[str, set[str]]  # variant -> sha256s with that variant for this model

    @classmethod
    def load(cls, db: Database, model: str, variants: Iterable[str]) -> "KnownState":
        images = set(db.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist())
        q = db.read(S.QUARANTINE, ["sha256", "reason"])
        quarantined = dict(zip(q.column("sha256").to_pylist(), q.column("reason").to_pylist()))
        embedded: dict[str, set[str]] = {}
        table = S.embeddings_table_name(model)
        for variant in variants:
            if db.has_table(table):
                col = db.read(table, ["sha256"], where=f"variant = '{variant}' AND model = '{model}'")
                embedded[variant] = set(col.column("sha256").to_pylist())
            else:
                embedded[variant] = set()
        return cls(images, quarantined, embedded)

    def missing_variants(self, sha: str, variants: Sequence[str]) -> tuple[str, ...]:
        return tuple(v for v in variants if sha not in self.embedded[v])


class Progress:
    """A tqdm bar on a terminal, a log line every ``every`` seconds otherwise."""

    def __init__(self, enabled: bool, every: float = 10.0) -> None:
        self.enabled = enabled
        self.every = every
        self.bar = None
        self.done = 0
        self.last = time.monotonic()
        self.counts: dict[str, int] = {}
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(unit="file", desc="ingest", file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int = 1, **counts: int) -> None:
        self.done += n
        self.counts = counts
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(counts, refresh=False)
        elif self.enabled and time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            log.info("ingest progress: %d files, %s", self.done, ", ".join(f"{k} {v}" for k, v in counts.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Triage:
    """The "skip known" step, shared by every executor: what to do with one hashed file.

    Counts into ``summary`` and puts the rows a file needs into the given :class:`WriteJob`.
    Files must be offered in scan order so the first path of a content is the one stored.
    """

    def __init__(self, known: KnownState, variants: Sequence[str], summary: IngestSummary, seen_at: Any) -> None:
        self.known = known
        self.variants = tuple(variants)
        self.summary = summary
        self.seen_at = seen_at
        self.claimed: set[str] = set()  # shas being stored by this run (first path wins)

    def admit(self, entry: FileEntry, sha: str | None, job: WriteJob) -> tuple[str, ...] | None:
        """The variants to compute for this file (it must be decoded and encoded), or ``None``
        when it is a duplicate or is quarantined (its rows are already in ``job``)."""
        summary, known = self.summary, self.known
        summary.scanned += 1
        if sha is None:  # vanished or unreadable between scan and hash
            self._quarantine(entry, "", "cannot read file", job)
        elif sha in known.quarantined:
            self._quarantine(entry, sha, known.quarantined[sha], job)
        elif sha in self.claimed or (sha in known.images and not known.missing_variants(sha, self.variants)):
            summary.duplicates += 1
            job.sources.append(source_row(entry, sha, self.seen_at))
        elif entry.size_bytes == 0:
            known.quarantined[sha] = "empty file (0 bytes)"
            self._quarantine(entry, sha, "empty file (0 bytes)", job)
        else:
            self.claimed.add(sha)
            if sha in known.images:
                summary.completed += 1
            else:
                summary.new += 1
            return known.missing_variants(sha, self.variants)
        return None

    def decoded(self, item: DecodedItem, job: WriteJob) -> None:
        """An admitted file decoded: its path is recorded with its batch."""
        job.sources.append(source_row(item.entry, item.sha256, self.seen_at))

    def rejected(self, entry: FileEntry, sha: str, reason: str, job: WriteJob, *, record_path: bool = True) -> None:
        """An admitted file failed to decode: quarantine it instead (``record_path=False``: its
        path row is already in the job, as for a file refused by the batched decode)."""
        if sha in self.known.images:
            self.summary.completed -= 1
        else:
            self.summary.new -= 1
        self.known.quarantined[sha] = reason
        self._quarantine(entry, sha, reason, job, record_path=record_path)

    def _quarantine(self, entry: FileEntry, sha: str, reason: str, job: WriteJob, *, record_path: bool = True) -> None:
        self.summary.quarantined += 1
        job.quarantine.append(quarantine_row(entry, sha, reason, self.seen_at))
        if record_path:
            job.sources.append(source_row(entry, sha, self.seen_at))


class Committer:
    """The write stage, shared by every executor: one job at a time, on one writer thread.

    Order per job: embeddings (and masks) → images → quarantine → sources. Every write is a
    merge_insert on the table's key, so writing a row twice (a retried batch) leaves one row.
    A path is recorded only once its content is settled (stored or quarantined), so a crash can
    never leave a path in ``sources`` whose image was lost.
    """

    def __init__(self, db: Database, known: KnownState, *, label_from_folder: bool) -> None:
        self.db = db
        self.known = known
        self.label_from_folder = label_from_folder
        self.waiting: list[dict[str, Any]] = []  # path rows whose sha is not settled yet

    def commit(self, job: WriteJob) -> None:
        for name, parts in job.tables.items():
            self.db.upsert(name, pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        if job.items:
            new_images = [it for it in job.items if it.sha256 not in self.known.images]
            if new_images:
                self.db.upsert(S.IMAGES, image_rows(new_images, label_from_folder=self.label_from_folder),
                               update_existing=False)
        if job.quarantine:
            self.db.upsert(S.QUARANTINE, pa.Table.from_pylist(job.quarantine, S.QUARANTINE_SCHEMA))
        for it in job.items:
            self.known.images.add(it.sha256)
            for v in it.variants:
                self.known.embedded[v].add(it.sha256)
        settled, waiting = [], []
        for row in self.waiting + job.sources:
            sha = row["sha256"]
            done = not sha or sha in self.known.images or sha in self.known.quarantined
            (settled if done else waiting).append(row)
        if settled:
            self.db.upsert(S.SOURCES, pa.Table.from_pylist(settled, S.SOURCES_SCHEMA))
        self.waiting = waiting


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
        self.draft_to = max(settings.image_size, settings.thumbnail_size)
        if self.keep_image:
            self.draft_to = max(self.draft_to, settings.sam2_max_side)
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
                self._decode_deferred(batch, reject)
                times.decode_batch += time.monotonic() - t0
            if batch:
                if model_ready is not None and model_ready.running():
                    log.info("waiting for the model to load")
                if model_ready is not None:
                    t0 = time.monotonic()
                    batch_size = model_ready.result()
                    times.load_wait += time.monotonic() - t0
                t0 = time.monotonic()
                tables, embedded = encode_batch(self.stages, batch)
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
                    triage.rejected(entry, sha, item.message, job)
                else:
                    batch.append(item)
                    triage.decoded(item, job)
                    if len(batch) >= batch_size:
                        hand_over()
                tick()

        try:
            with ThreadPoolExecutor(max_workers=s.worker_count, thread_name_prefix="ingest") as pool, \
                    ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest-load") as loader:
                hashed = _bounded_map(pool, _timed_hash, entries, lookahead=4 * s.worker_count)
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
        for stage in self.stages:  # sub-steps a stage times itself, e.g. 'sam2' (part of 'encode')
            summary.stage_seconds.update(getattr(stage, "take_timings", dict)())
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

    def _decode_deferred(self, batch: list[DecodedItem], reject: Callable[[DecodedItem, str], None]) -> None:
        """Decode the batch's deferred JPEGs together on the batch decoder's device (in place:
        ``pixels`` becomes a device tensor). A file the batch decoder refuses is decoded on the
        CPU instead; one that fails there too is rejected (quarantined) and leaves the batch."""
        todo = [it for it in batch if it.deferred is not None and it.pixels is None]
        if not todo:
            return
        failed: list[DecodedItem] = []
        for it, out in zip(todo, self.batch_decoder.decode([it.deferred for it in todo])):
            if isinstance(out, Exception):
                log.info("batched JPEG decode refused %s (%s); decoding it on the CPU", it.entry.path, out)
                try:
                    decoded = decode_bytes(it.deferred.data, max_pixels=self.settings.max_pixels,
                                           draft_to=self.draft_to)
                    it.pixels = self.preprocessor(decoded.image)
                except DecodeError as exc:
                    failed.append(it)
                    reject(it, exc.message)
            else:
                it.pixels = out
            it.deferred = None
        if failed:
            batch[:] = [it for it in batch if all(it is not f for f in failed)]


def _timed_hash(entry: FileEntry) -> tuple[FileEntry, str | None, float]:
    t0 = time.monotonic()
    sha = hash_entry(entry)
    return entry, sha, time.monotonic() - t0


def _bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, *, lookahead: int) -> Iterator:
    """``pool.map`` in order, with at most ``lookahead`` calls submitted ahead of the consumer."""
    queue: deque[Future] = deque()
    for item in items:
        queue.append(pool.submit(fn, item))
        if len(queue) >= lookahead:
            yield queue.popleft().result()
    while queue:
        yield queue.popleft().result()


# -- builders -------------------------------------------------------------------------------


@dataclass
class Encoders:
    """The loaded models of one ingest configuration (load once, reuse across runs)."""

    encoder: Any  # builds its network on first use
    stages: list[VariantStage]


def load_encoders(settings: IngestSettings, *, announce: bool = True) -> Encoders:
    """Resolve weights (failing before any database work), load DINOv2 (and SAM2).

    ``announce=False`` skips the random-weights warning (Ray actors: the driver has said it)."""
    from embedscope.models.factory import create_encoder

    encoder = create_encoder(settings.model, weights=settings.weights, device=settings.device,
                             precision=settings.precision, image_size=settings.image_size,
                             preprocess=settings.preprocess, compile=settings.compile,
                             torch_threads=settings.torch_threads)
    sam2_weights = None
    if settings.sam2:
        from embedscope.models.sam2 import resolve_sam2_weights

        sam2_weights = resolve_sam2_weights(settings.sam2_model, settings.sam2_weights)
    batched_decode(settings)  # --decode gpu without CUDA: fail now, before any database work
    if encoder.weights.is_random and announce:
        warn_random(f"{encoder.name}: using RANDOM weights (--weights random); embeddings are not meaningful")
    stages: list[VariantStage] = [FullImageStage(encoder, store_patch_mean=settings.store_patch_mean)]
    if settings.sam2:
        from embedscope.models.sam2 import Sam2MaskedStage

        stages.append(Sam2MaskedStage.build(settings, encoder, sam2_weights))
    return Encoders(encoder, stages)


def warn_random(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def make_run(db: Database, settings: IngestSettings, encoders: Encoders, *,
             decode_device: str | None = None) -> IngestRun:
    """An :class:`IngestRun` for loaded encoders. ``decode_device`` overrides where the
    batched JPEG decode runs (internal: the tests run the GPU path's code with ``"cpu"``)."""
    enc = encoders.encoder
    if decode_device is None and batched_decode(settings) == "gpu":
        decode_device = "cuda"
    batch_decoder = None
    if decode_device is not None:
        from embedscope.ingest.jpeg_batch import JpegBatchDecoder

        pre = enc.preprocessor
        batch_decoder = JpegBatchDecoder(decode_device, pre.size, pre.mean, pre.std)
    return IngestRun(db, settings, encoders.stages, enc.preprocessor, model=enc.name,
                     weights=enc.weights.label, describe_device=lambda: (enc.device_name, enc.precision),
                     choose_batch_size=getattr(enc, "choose_batch_size", None),
                     warm_up=enc.load, batch_decoder=batch_decoder)


def batched_decode(settings: IngestSettings) -> str:
    """Where JPEG pixels are decoded for these settings: ``cpu`` or ``gpu`` (raises a
    :class:`~embedscope.errors.ConfigError` for ``--decode gpu`` without CUDA)."""
    if settings.decode == "cpu":
        return "cpu"
    from embedscope.ingest.jpeg_batch import resolve_decode
    from embedscope.models.device import choose_device

    return resolve_decode(settings.decode, choose_device(settings.device))


def run_ingest(settings: IngestSettings, *, wait_lock: float = 0.0) -> IngestSummary:
    """The one-shot ``embedscope ingest``: everything from the settings to a summary
    (``settings.executor == "ray"``: the same stages on a Ray cluster)."""
    if settings.executor == "ray":
        from embedscope.ingest.ray_executor import run_ingest_ray

        return run_ingest_ray(settings, wait_lock=wait_lock)
    options = settings.storage_option_dict()
    entries = list(scan_drops(settings.drops, storage_options=options))  # fail on a missing drop before loading models
    encoders = load_encoders(settings)
    db = Database(settings.db, create=True, storage_options=options)
    with db.writer_lock(wait=wait_lock, owner="ingest"):
        return make_run(db, settings, encoders).run(entries)
