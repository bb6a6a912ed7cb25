"""``--executor ray``: the local pipeline's stages as Ray Data operations.

What runs where:

- **driver** (the ``embedscope ingest`` process): lists the drops (:func:`scan_drops`), holds
  the writer lock, decides per file what to do (the shared :class:`Triage`: skip known,
  quarantine, first path of a content wins), and writes every row through the shared
  :class:`Committer` on one :class:`BatchWriter` thread — one writer, ordered commits,
  embeddings → images → quarantine → sources, all ``merge_insert`` on the table keys;
- **CPU tasks**: SHA-256 of every listed file (:func:`hash_entry`), then decoding and
  preprocessing of the files the driver admitted (:func:`decode_or_error`);
- **encoder actors**: each builds the model once in its constructor and runs
  :func:`encode_batch` with the same variant stages as the local executor. GPU actors
  (``--num-gpus-per-worker``) ask 1 CPU + their GPU share, and decoding runs in separate CPU
  tasks on the other CPUs. CPU actors ask as many CPUs as their torch threads, and the decode
  step asks the same, so Ray Data fuses it into the actor (decode → encode in one process, no
  pixels through the object store; decoding is a few percent of a CPU forward pass) — with
  different requests the actors could hold every CPU and starve the decode tasks.

Two Ray datasets run one after the other: hashing, then decode → encode. The barrier between
them is where duplicates are removed: the driver must see every sha anyway (it records every
path in ``sources``, in scan order), so a set lookup there is cheaper than a shuffle, and two
files with the same content are decoded and encoded once.

Exactly once: a batch is written only by the driver, after its task succeeded; a retried
task (a dead actor is restarted and its task re-run) delivers its result once, and a result
seen twice is dropped by sha before it is written — and would still be one row, since every
write is a merge on the table key. A file admitted but never answered is an error at the end
(its path is not recorded, so re-running completes it).

Values travel between stages as pickled :class:`DecodedItem` s (the same objects the local
executor passes between its threads), so no stage has a second, column-shaped version.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pickle
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError, DependencyError, EmbedscopeError
from embedscope.ingest.commit import Committer, under_writer_lock
from embedscope.ingest.decode_stage import DecodedItem, decode_or_error, draft_size
from embedscope.ingest.encode_stage import CPU_BATCH_SIZE, encode_batch, stage_timings
from embedscope.ingest.encoders import load_encoders, with_model_image_size
from embedscope.ingest.hash_stage import hash_entry
from embedscope.ingest.reading import UnreadableFile
from embedscope.ingest.progress import IngestSummary, Progress, StageTimes
from embedscope.ingest.scan import FileEntry, scan_drops
from embedscope.ingest.triage import KnownState, Triage
from embedscope.ingest.writer import BatchWriter, WriteJob
from embedscope.store.db import Database, utc_now

log = logging.getLogger(__name__)

GPU_BATCH_SIZE = 128  # when no --batch-size is given and the encoders are GPU actors
HASH_BATCH = 64  # files per hashing call
MAX_BLOCKS = 2048  # input partitions per dataset (tasks are scheduled per block)


class IngestIncompleteError(EmbedscopeError):
    """Files were admitted but no result came back from the cluster."""


def require_ray() -> Any:
    """``import ray`` or a :class:`DependencyError` with the fix."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise DependencyError(
            f"--executor ray needs Ray Data, which is not installed ({exc})",
            "pip install 'ray[data]' (the same version on every node of the cluster), or use --executor local",
        ) from None
    return ray


# -- the work done on the cluster (module-level, so Ray pickles them by reference) ------------


def hash_batch(batch: dict[str, Any], *, max_bytes: int) -> dict[str, list[Any]]:
    """Ray task: the SHA-256 of each entry in the batch (``""`` and the reason when unreadable)."""
    out: dict[str, list[Any]] = {"i": [], "sha256": [], "problem": [], "seconds": []}
    for i, blob in zip(batch["i"], batch["entry"]):
        t0 = time.monotonic()
        sha = hash_entry(pickle.loads(blob), max_bytes)
        out["i"].append(int(i))
        out["sha256"].append(sha if isinstance(sha, str) else "")
        out["problem"].append("" if isinstance(sha, str) else sha.message)
        out["seconds"].append(time.monotonic() - t0)
    return out


def decode_batch(batch: dict[str, Any], *, preprocessor: Any, settings: IngestSettings, keep_image: bool,
                 draft_to: int) -> dict[str, list[Any]]:
    """Ray task: decode and preprocess each admitted file (a failure travels as its message)."""
    out: dict[str, list[Any]] = {"item": [], "seconds": []}
    for blob in batch["work"]:
        entry, sha, variants = pickle.loads(blob)
        t0 = time.monotonic()
        item = decode_or_error(entry, sha, preprocessor=preprocessor, settings=settings, keep_image=keep_image,
                               draft_to=draft_to, variants=tuple(variants))
        result = item if isinstance(item, DecodedItem) else (entry, sha, item.message,
                                                             isinstance(item, UnreadableFile))
        out["item"].append(pickle.dumps(result, protocol=5))
        out["seconds"].append(time.monotonic() - t0)
    return out


class EncoderActor:
    """Ray actor: builds the encoder (and its variant stages) once, then embeds batches.

    Returns one row per batch: the pickled :class:`BatchResult` the driver writes.
    """

    def __init__(self, settings: IngestSettings) -> None:
        t0 = time.monotonic()
        self.encoders = load_encoders(settings, announce=False)
        self.encoders.encoder.load()  # build the network now, once per actor
        self.load_seconds = time.monotonic() - t0

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        result = BatchResult(load=self.load_seconds)
        self.load_seconds = 0.0  # reported once
        items: list[DecodedItem] = []
        for blob, seconds in zip(batch["item"], batch["seconds"]):
            value = pickle.loads(blob)
            result.decode += float(seconds)
            if isinstance(value, DecodedItem):
                items.append(value)
            else:
                result.failed.append(value)
        if items:
            t0 = time.monotonic()
            result.tables, _ = encode_batch(self.encoders.stages, items)  # counted by the driver
            result.encode = time.monotonic() - t0
        result.items = items
        enc = self.encoders.encoder
        result.device, result.precision = str(enc.device_name), str(enc.precision)
        result.stage_seconds.update(stage_timings(self.encoders.stages))
        return {"result": [pickle.dumps(result, protocol=5)]}


@dataclass
class BatchResult:
    """What one encoder call sends back to the driver."""

    items: list[DecodedItem] = field(default_factory=list)  # pixels dropped
    failed: list[tuple[FileEntry, str, str, bool]] = field(default_factory=list)  # (entry, sha, reason, path_only)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    decode: float = 0.0
    encode: float = 0.0
    load: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    device: str = ""
    precision: str = ""


# -- the driver ---------------------------------------------------------------------------------


def run_ingest_ray(settings: IngestSettings, *, wait_lock: float = 0.0,
                   on_locked: Callable[[Database], None] | None = None,
                   on_done: Callable[[Database], None] | None = None) -> IngestSummary:
    """``embedscope ingest --executor ray``: list, then hash / decode / encode on the cluster,
    writing from this process. Joins ``settings.ray_address`` (or the Ray already initialised
    in this process, or starts a local one). ``on_locked``/``on_done``: as for ``run_ingest``."""
    ray = require_ray()
    settings = with_model_image_size(settings)
    options = settings.storage_option_dict()
    entries = list(scan_drops(settings.drops, storage_options=options))  # fail on a missing drop before anything else
    encoders = load_encoders(settings)  # weights resolved (and announced) here; no network built
    with _connected(ray, settings):  # before the database: Ray forks its daemons from this process
        db = Database(settings.db, create=True, storage_options=options)
        return under_writer_lock(db, lambda: RayIngest(db, settings, encoders).run(entries), wait_lock=wait_lock,
                                 on_locked=on_locked, on_done=on_done)


@contextlib.contextmanager
def _connected(ray: Any, settings: IngestSettings) -> Iterator[None]:
    """Use the Ray already initialised here, or join/start one for this run only."""
    if ray.is_initialized():
        yield
        return
    address = settings.ray_address or None
    log.info("ray: %s", f"joining {address}" if address else "starting a local cluster")
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=True, configure_logging=True)
    try:
        yield
    finally:
        ray.shutdown()


class RayIngest:
    """One ingest of a list of files through Ray Data; the caller holds the writer lock and
    has connected to Ray. ``encoder_cls`` is the actor class (tests subclass it to crash one)."""

    def __init__(self, db: Database, settings: IngestSettings, encoders: Any, *,
                 encoder_cls: type = EncoderActor) -> None:
        self.db = db
        self.settings = settings
        self.encoder = encoders.encoder
        self.stages = encoders.stages
        self.encoder_cls = encoder_cls
        self.variants = tuple(s.variant for s in self.stages)
        self.keep_image = any(s.needs_image for s in self.stages)
        self.draft_to = draft_size(settings, keep_image=self.keep_image)

    def run(self, entries: Sequence[FileEntry]) -> IngestSummary:
        import ray

        s = self.settings
        if s.num_gpus_per_worker and not ray.cluster_resources().get("GPU"):
            raise ConfigError(  # Ray would otherwise wait forever for a GPU to appear
                f"--num-gpus-per-worker {s.num_gpus_per_worker:g}, but the Ray cluster has no GPU",
                "leave it out for CPU encoder actors, or add GPU nodes to the cluster")
        summary = IngestSummary(self.db.uri, self.encoder.name, self.encoder.weights.label)
        times = StageTimes()
        started = time.monotonic()
        known = KnownState.load(self.db, self.encoder.name, self.variants)
        triage = Triage(known, self.variants, summary, utc_now())
        committer = Committer(self.db, known, label_from_folder=s.label_from_folder)
        writer = BatchWriter(committer.commit, min_images=s.write_images, max_delay=s.write_seconds)
        progress = Progress(s.progress)
        _quiet_ray_data()
        devices: set[tuple[str, str]] = set()
        try:
            # 1. SHA-256 on CPU tasks; the driver triages in scan order (first path wins)
            t0 = time.monotonic()
            shas, times.hash = self._hash_all(ray, entries)
            job, work = WriteJob(), []
            for i, entry in enumerate(entries):
                missing = triage.admit(entry, shas[i], job)
                if missing is not None:
                    work.append((entry, shas[i], missing))
                else:  # settled now; an admitted file counts once its result is back
                    progress.update(new=summary.new, dup=summary.duplicates, bad=summary.quarantined)
            writer.submit(job)  # duplicates and quarantines: their paths wait for their content
            log.info("ray: hashed %d files in %.1fs; %d to decode and embed", len(entries),
                     time.monotonic() - t0, len(work))
            # 2. decode on CPU tasks → encode on actors → write here
            pending = {sha for _, sha, _ in work}
            for result in self._encode_all(ray, work):
                before = len(pending)
                job = take_result(result, pending, triage)
                times.decode += result.decode
                times.encode += result.encode
                times.load += result.load
                for key, value in result.stage_seconds.items():
                    summary.stage_seconds[key] = summary.stage_seconds.get(key, 0.0) + value
                devices.add((result.device, result.precision))
                if not job.empty():
                    writer.submit(job)
                progress.update(before - len(pending), new=summary.new, dup=summary.duplicates,
                                bad=summary.quarantined)
        except BaseException as exc:
            try:
                writer.close()  # what was handed over is committed; each job is consistent alone
            except Exception as writer_exc:
                if writer_exc is not exc:
                    log.exception("ingest writer failed while stopping after an error")
            progress.close()
            raise
        writer.close()
        progress.close()
        if pending:
            raise IngestIncompleteError(
                f"{len(pending)} admitted file(s) got no result from the Ray cluster (their paths were not recorded)",
                "run the same ingest again: what was written is kept and the rest is completed")
        times.write = writer.seconds
        summary.seconds = time.monotonic() - started
        summary.stage_seconds = {**times.as_dict(), **{k: round(v, 3) for k, v in summary.stage_seconds.items()}}
        if devices:
            summary.device = "/".join(sorted({d for d, _ in devices})) + f" x{self.actor_count(ray)} ray actors"
            summary.precision = "/".join(sorted({p for _, p in devices}))
        else:
            summary.device = "ray"
        return summary

    # -- the datasets -----------------------------------------------------------------------

    def _hash_all(self, ray: Any, entries: Sequence[FileEntry]) -> tuple[list[str | UnreadableFile | None], float]:
        shas: list[str | UnreadableFile | None] = [None] * len(entries)
        if not entries:
            return shas, 0.0
        items = [{"i": i, "entry": pickle.dumps(e, protocol=5)} for i, e in enumerate(entries)]
        ds = ray.data.from_items(items, override_num_blocks=_blocks(len(items), HASH_BATCH))
        ds = ds.map_batches(hash_batch, batch_size=HASH_BATCH, batch_format="numpy", num_cpus=1,
                            fn_kwargs={"max_bytes": self.settings.max_file_bytes})
        seconds = 0.0
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for i, sha, problem, sec in zip(batch["i"], batch["sha256"], batch["problem"], batch["seconds"]):
                shas[int(i)] = str(sha) if sha else UnreadableFile(str(problem) or "cannot read file")
                seconds += float(sec)
        return shas, seconds

    def _encode_all(self, ray: Any, work: list[tuple[FileEntry, str, tuple[str, ...]]]) -> Iterator[BatchResult]:
        if not work:
            return
        from ray.data import ActorPoolStrategy

        s = self.settings
        batch_size = self.batch_size()
        items = [{"work": pickle.dumps(w, protocol=5)} for w in work]
        ds = ray.data.from_items(items, override_num_blocks=_blocks(len(items), batch_size))
        gpus = s.num_gpus_per_worker
        actor_settings = replace(s, torch_threads=s.torch_threads or 1, progress=False,
                                 batch_size=batch_size, device=s.device if not gpus else "cuda")
        actor_cpus = 1 if gpus else actor_settings.torch_threads
        ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="numpy",
                            num_cpus=1 if gpus else actor_cpus,  # CPU actors: the same request, fused
                            fn_kwargs={"preprocessor": self.encoder.preprocessor, "settings": s,
                                       "keep_image": self.keep_image, "draft_to": self.draft_to})
        ds = ds.map_batches(
            self.encoder_cls, batch_size=batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=self.actor_count(ray)),
            fn_constructor_kwargs={"settings": actor_settings},
            num_cpus=actor_cpus, num_gpus=gpus or None,
        )  # Ray Data restarts a dead pool actor and re-runs its batch (max_restarts / max_task_retries -1)
        for row in ds.iter_rows():
            yield pickle.loads(row["result"])

    def batch_size(self) -> int:
        return self.settings.batch_size or (GPU_BATCH_SIZE if self.settings.num_gpus_per_worker else CPU_BATCH_SIZE)

    def actor_count(self, ray: Any) -> int:
        """``--ray-workers``, or: one per GPU share for GPU actors, else as many CPU actors as
        the cluster's CPUs allow at ``--torch-threads`` (default 1) each."""
        s = self.settings
        if s.ray_workers:
            return s.ray_workers
        resources = ray.cluster_resources()
        if s.num_gpus_per_worker:
            return max(1, int(resources.get("GPU", 0) / s.num_gpus_per_worker))
        return max(1, int(resources.get("CPU", 1) // (s.torch_threads or 1)))


def take_result(result: BatchResult, pending: set[str], triage: Triage) -> WriteJob:
    """The rows to write for one encoder result, counted into ``triage.summary``.

    Only shas still in ``pending`` are taken (and removed from it): a result delivered twice
    (a retried task) adds nothing the second time."""
    summary, job = triage.summary, WriteJob()
    for entry, sha, reason, path_only in result.failed:
        if sha in pending:
            pending.discard(sha)
            triage.rejected(entry, sha, reason, job, path_only=path_only)
    fresh = [it for it in result.items if it.sha256 in pending]
    keep = pa.array([it.sha256 for it in fresh], pa.string())
    for name, rows in result.tables.items():
        if len(fresh) < len(result.items):
            rows = rows.filter(pc.is_in(rows.column("sha256"), value_set=keep))
        if rows.num_rows:
            job.tables.setdefault(name, []).append(rows)
    for it in fresh:
        pending.discard(it.sha256)
        triage.decoded(it, job)
        job.items.append(it)
        for variant in it.variants:
            summary.embedded[variant] = summary.embedded.get(variant, 0) + 1
    return job


def _blocks(n: int, per_block: int) -> int:
    return max(1, min(MAX_BLOCKS, math.ceil(n / per_block)))


def _quiet_ray_data() -> None:
    """Our own progress line replaces Ray Data's bars (which would interleave with it)."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    ctx.verbose_stats_logs = False
