"""The novelty-only run: score new images against the latest analyze run's model of the data,
without refitting (``embedscope analyze --novelty-only``, and the daemon after each batch)."""

from __future__ import annotations

import datetime as dt
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.analysis.neighbors import KnnIndex, normalize
from embedscope.analysis.novelty import DataModel, score_new
from embedscope.analysis.params import new_run_id
from embedscope.analysis.projection import place_by_neighbors
from embedscope.analysis.reading import embeddings_filter, gather_vectors
from embedscope.analysis.rows import cluster_rows, flag_rows, projection_rows, write_run
from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq
from embedscope.store.runs import (
    KIND_ANALYZE, KIND_NOVELTY, UnknownRunError, latest_run, resolve_model_variant, run_by_id, scoring_runs,
)
from embedscope.store.vectors import vectors_to_numpy

log = logging.getLogger(__name__)


def since_micros(db: Database, since: str) -> int:
    """``--since`` as microseconds since the epoch: the creation time of the run ``since``, or
    ``since`` read as an ISO timestamp (UTC when it names no zone). Neither: an
    :class:`UnknownRunError` naming the known run ids."""
    try:
        created = run_by_id(db, since).created_at
    except UnknownRunError as unknown:
        try:
            created = dt.datetime.fromisoformat(since)
        except ValueError:
            raise UnknownRunError(f"--since {since!r} is neither a run id nor an ISO timestamp",
                                  f"{unknown.hint}; or pass a time such as 2026-01-01T12:00:00Z") from None
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.timezone.utc)
    return int(created.timestamp() * 1_000_000)


def run_novelty_only(db: Database, *, since: str | None, model: str | None = None,
                     variant: str = S.VARIANT_FULL, batch_size: int = 16_384) -> str | None:
    """Score images newer than ``since`` (a run_id or ISO timestamp; None = images that no run
    since the latest analyze run has scored) against the latest analyze run's model of the
    data, without refitting. Writes a ``kind='novelty'`` run; returns its id, or None when
    there was nothing to score.

    Streams: only the keys are read whole; the reference rows (the parent run's fitted rows,
    i.e. its fit sample) are collected in one pass and the images to score are read, scored
    and written ``batch_size`` rows at a time, so memory is the reference plus one batch."""
    t0 = time.perf_counter()
    model, variant = resolve_model_variant(db, model, variant)
    parent = latest_run(db, kind=KIND_ANALYZE, model=model, variant=variant)
    if parent is None:
        raise NotFoundError(f"no analyze run for {model}/{variant} to score against",
                            f"run `embedscope analyze --db {db.uri} --model {model} --variant {variant}` first")
    of_parent = eq("run_id", parent.run_id)
    blob = db.read(S.RUN_MODELS, where=of_parent).to_pylist()
    if not blob:
        raise NotFoundError(f"analyze run {parent.run_id} has no stored model of the data", "re-run `embedscope analyze`")
    dmodel = DataModel.from_bytes(blob[0]["blob"])
    ds = db.dataset(S.embeddings_table_name(model))
    flt = embeddings_filter(model, variant)
    keys = ds.to_table(columns=["sha256", "created_at"], filter=flt)
    all_sha = keys.column("sha256").combine_chunks()
    parent_flags = db.read(S.FLAGS, ["sha256", "in_fit"], where=of_parent)
    ref = parent_flags.filter(pc.and_(parent_flags.column("in_fit"), pc.is_in(parent_flags.column("sha256"),
                                                                              value_set=all_sha)))
    ref_sha = ref.column("sha256").combine_chunks()
    if since is None:
        scored = [parent_flags.column("sha256")] + [db.read(S.FLAGS, ["sha256"], where=eq("run_id", r.run_id)).column("sha256")
                                                    for r in scoring_runs(db, parent)]
        scored_sha = pa.chunked_array([c for s in scored for c in s.chunks], pa.string()).combine_chunks()
        todo_sha = keys.filter(pc.invert(pc.is_in(all_sha, value_set=scored_sha))).column("sha256")
    else:
        cutoff = since_micros(db, since)
        todo_sha = keys.filter(pc.greater(keys.column("created_at").cast(pa.int64()), cutoff)).column("sha256")
    todo_sha = todo_sha.combine_chunks()
    if len(todo_sha) == 0:
        log.info("novelty: nothing new to score against %s", parent.run_id)
        return None
    run_id = new_run_id()
    version = int(ds.version)
    primary, proj, pdims = parent.primary_cluster, parent.primary_projection, parent.primary_dims

    # the reference rows (the parent's fit rows) and their coordinates in its primary projection
    Xr = normalize(gather_vectors(ds, flt, ref_sha, batch_size))
    index = KnnIndex(Xr)
    place_index, coords_ref = None, None
    if proj:
        prow = db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                       where=both(of_parent, eq("method", proj), eq("dims", pdims)))
        ppos = pc.index_in(ref_sha, value_set=prow.column("sha256").combine_chunks())
        have = np.nonzero(pc.is_valid(ppos).to_numpy(zero_copy_only=False))[0]
        if len(have):
            cols = ["x", "y", "z"][:pdims]
            P = np.stack([prow.column(c).to_numpy(zero_copy_only=False) for c in cols], 1).astype(np.float32)
            coords_ref = P[ppos.take(pa.array(have)).to_numpy(zero_copy_only=False).astype(np.int64)]
            place_index = KnnIndex(Xr[have])

    n_done = n_novel = 0
    for b in ds.to_batches(columns=["sha256", "vector"], filter=flt, batch_size=batch_size):
        keep = np.nonzero(pc.is_in(b.column("sha256"), value_set=todo_sha).to_numpy(zero_copy_only=False))[0]
        if not len(keep):
            continue
        b = b.take(pa.array(keep))
        sha_new = b.column("sha256").to_pylist()
        Xb = normalize(vectors_to_numpy(b))
        scores = score_new(Xb, index, dmodel)
        db.append(S.CLUSTERS, cluster_rows(run_id, sha_new, primary, scores.cluster, None))
        if place_index is not None:
            nb = place_index.search(Xb, 10)
            db.append(S.PROJECTIONS, projection_rows(run_id, sha_new, proj, pdims,
                                                     place_by_neighbors(nb.idx, nb.dist, coords_ref)))
        db.append(S.FLAGS, flag_rows(run_id, sha_new, scores, False, None, None))
        n_done += len(sha_new)
        n_novel += int(scores.is_novel.sum())
    params = {"parent_run": parent.run_id, "since": since, "primary_cluster": primary, "primary_projection": proj,
              "primary_dims": pdims, "novelty_threshold": dmodel.threshold, "knn_k": dmodel.knn_k,
              "novelty": parent.params.get("novelty"),
              "placement": "projection coords = inverse-distance mean of 10 nearest fitted images",
              "components": "centroid, knn (no GLOSH for images scored later)", "n_reference": len(ref_sha),
              "batch_size": batch_size}
    write_run(db, run_id, KIND_NOVELTY, model, variant, params, version, n_done)
    log.info("novelty %s: %d images scored against %s, %d novel in %.1fs", run_id, n_done, parent.run_id,
             n_novel, time.perf_counter() - t0)
    return run_id
