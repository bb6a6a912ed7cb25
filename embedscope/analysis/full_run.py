"""The analyze run: read the embeddings, fit every method, write the results.

A run reads one fixed Lance version of ``embeddings_<model>`` (recorded as ``table_version``),
writes its per-image rows (``clusters``, ``projections``, ``flags``), its ``metrics`` and its
fitted model of the data (``run_models``), and writes its ``runs`` row **last**, so a run that
is listed is complete. Old runs are kept. Analysis never writes the ingest tables, so it needs
no writer lock and can run beside an ingest or the daemon.

``runs.params`` (JSON) holds every method parameter, threshold and seed, plus
``primary_cluster`` / ``primary_projection`` / ``primary_dims`` (which clustering and projection
are "the" cluster and x, y of an image), ``methods_info`` (what each method actually did,
e.g. sampling) and, for agglomerative runs, ``dendrogram``: ``{"method": "ward", "sha256":
[...], "linkage": scipy linkage matrix (n-1 × 4), "labels": [...]}`` of a seeded sample.

Up to ``--fit-sample`` fit rows, every row is read at once and fitted (here); above it the run
is :func:`embedscope.analysis.sampled_run.run_sampled`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from embedscope.analysis.backend import resolve_backend
from embedscope.analysis.duplicates import groups_from_pairs, phash_pairs
from embedscope.analysis.fitting import fit_mask, fit_methods, run_params_of, sampling_info, written_projections
from embedscope.analysis.near_pairs import all_near_duplicates
from embedscope.analysis.neighbors import knn
from embedscope.analysis.novelty import score_new
from embedscope.analysis.params import AnalysisParams, new_run_id
from embedscope.analysis.projection import place_by_neighbors
from embedscope.analysis.reading import embeddings_filter, image_columns, read_embeddings
from embedscope.analysis.recording import Recorder, Timer
from embedscope.analysis.rows import (
    cluster_rows, fitted_cluster_rows, flag_rows, projection_rows, write_metrics_and_model, write_run,
)
from embedscope.analysis.sampled_run import run_sampled
from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.runs import resolve_model_variant

log = logging.getLogger(__name__)


def run_analysis(db: Database, params: AnalysisParams) -> str:
    """Run one full analysis as ``params`` says and store it; returns the new ``run_id``.

    When more rows than ``params.fit_sample`` would be fitted, every method is fitted on one
    seeded sample of that many rows and the other rows are placed by a streaming pass over the
    embeddings (see :mod:`embedscope.analysis.sampled_run`); otherwise every row is fitted."""
    timer = Timer()
    model, variant = resolve_model_variant(db, params.model, params.variant)
    backend = resolve_backend(params.backend)
    ds = db.dataset(S.embeddings_table_name(model))
    n_rows = int(ds.count_rows(filter=embeddings_filter(model, variant)))
    n_candidates = n_rows - (int(round(params.holdout * n_rows)) if params.holdout > 0 else 0)
    if params.fit_sample and n_candidates > params.fit_sample:
        return run_sampled(db, params, backend, model, variant, ds, timer)
    log.info("analyze: reading %s %s/%s rows, to fit every one of them", f"{n_rows:,}", model, variant)
    data = read_embeddings(db, model, variant, ds=ds)
    n = len(data.sha)
    if n < 3:
        raise ConfigError(f"only {n} {model}/{variant} embeddings: too few to analyse", "ingest more images first")
    run_id = new_run_id()
    log.info("analyze %s: %d %s/%s vectors of dim %d (table version %d)", run_id, n, model, variant, data.X.shape[1], data.version)
    truth, phash = image_columns(db, data.sha)
    has_labels = any(truth)

    # split: fit on one part, score the held-out part against it
    fitted = fit_mask(n, params)
    fit_idx, hold_idx = np.nonzero(fitted)[0], np.nonzero(~fitted)[0]
    Xf = data.X[fit_idx]
    truth_f = [truth[i] for i in fit_idx]
    nf = len(fit_idx)
    rec = Recorder(run_id, timer)
    fit = fit_methods(Xf, truth_f, has_labels, params, backend, rec, placeable=False)
    nb, projections, dmodel, fit_scores = fit.nb, fit.projections, fit.dmodel, fit.fit_scores
    primary = params.primary_cluster
    dendrogram = None
    if fit.dendrogram is not None:
        dendrogram = {**fit.dendrogram, "sha256": [data.sha[fit_idx[i]] for i in fit.dendrogram.pop("rows")]}
    t = time.perf_counter()
    hold_scores = score_new(data.X[hold_idx], Xf, dmodel, batch_size=params.batch_size) if len(hold_idx) else None
    timer.stage("holdout scoring", t)

    # near-duplicates over all images (fit + held out): every pair within the threshold
    t = timer.begin("near-duplicates", f"{n:,} rows")
    dup_group, dup_info = all_near_duplicates(data.X, params.duplicates, seed=params.seed)
    rec.methods_info["near_duplicates"] = dup_info
    phash_group = np.full(n, -1, np.int64)
    if phash is not None:
        have = np.nonzero(phash != np.iinfo(np.int64).min)[0]
        if len(have) <= params.duplicates.phash_max_rows:
            pairs = phash_pairs(phash[have], params.duplicates.hamming_threshold)
            phash_group = np.full(n, -1, np.int64)
            g = groups_from_pairs(len(have), pairs)
            phash_group[have] = g
        else:
            rec.methods_info["phash_duplicates"] = f"skipped: {len(have)} hashes > phash_max_rows {params.duplicates.phash_max_rows}"
    timer.stage("near-duplicates", t)

    # held-out images: placed in the fitted projections by their nearest fitted neighbours
    hold_nb = knn(data.X[hold_idx], Xf, 10) if len(hold_idx) else None

    # -- write: per-image tables, metrics, model; the runs row last -----------------------
    t = time.perf_counter()
    sha_arr = np.array(data.sha, dtype=object)
    rows_c = [fitted_cluster_rows(run_id, sha_arr[fit_idx].tolist(), fit)]
    if hold_scores is not None:
        rows_c.append(cluster_rows(run_id, sha_arr[hold_idx].tolist(), primary, hold_scores.cluster, None))
    db.upsert(S.CLUSTERS, pa.concat_tables(rows_c))

    rows_p = []
    for (pm, pd) in written_projections(fit, params):
        coords = projections[(pm, pd)]
        all_coords = np.zeros((n, pd), np.float32)
        all_coords[fit_idx] = coords
        if hold_nb is not None:
            all_coords[hold_idx] = place_by_neighbors(hold_nb.idx, hold_nb.dist, coords)
        rows_p.append(projection_rows(run_id, data.sha, pm, pd, all_coords))
    if rows_p:
        db.upsert(S.PROJECTIONS, pa.concat_tables(rows_p))

    flags = [flag_rows(run_id, sha_arr[fit_idx].tolist(), fit_scores, True, dup_group[fit_idx], phash_group[fit_idx])]
    if hold_scores is not None:
        flags.append(flag_rows(run_id, sha_arr[hold_idx].tolist(), hold_scores, False, dup_group[hold_idx],
                               phash_group[hold_idx]))
    db.upsert(S.FLAGS, pa.concat_tables(flags))
    n_novel = int(fit_scores.is_novel.sum() + (hold_scores.is_novel.sum() if hold_scores is not None else 0))
    n_cont = int(fit_scores.is_contaminated.sum() + (hold_scores.is_contaminated.sum() if hold_scores is not None else 0))
    n_dup_groups = len(set(dup_group.tolist()) - {-1})
    rec.totals(n=n, novel=n_novel, contaminated=n_cont, dup_groups=n_dup_groups,
               phash_groups=len(set(phash_group.tolist()) - {-1}))
    write_metrics_and_model(db, rec, dmodel)
    timer.stage("write", t)

    run_params = run_params_of(params, fit, rec, backend, model=model, variant=variant, n_fit=nf,
                               n_holdout=int(len(hold_idx)), has_labels=has_labels,
                               sampling=sampling_info(params, fit, rec, n_rows=n, n_fit=nf, sampled=False))
    if dendrogram is not None:
        run_params["dendrogram"] = dendrogram
    write_run(db, run_id, "analyze", model, variant, run_params, data.version, n)
    log.info("analyze %s: %d images, %d novel, %d contaminated, %d dup groups in %.1fs", run_id, n, n_novel, n_cont,
             n_dup_groups, time.perf_counter() - timer.t0)
    return run_id
