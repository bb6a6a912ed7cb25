"""Analysis at scale: fit on one seeded sample, place every other row in a streaming pass.

When an analyze run would fit more rows than ``AnalysisParams.fit_sample``, it reads only the
``sha256`` column of the embeddings, draws one seeded sample of ``fit_sample`` rows (from the
rows not held out), reads those vectors in one pass, and fits every method on them exactly as
an all-rows run fits all rows (:func:`embedscope.analysis.fitting.fit_methods`). A second pass then reads
the embeddings in batches of ``batch_size`` rows (Lance ``to_batches``) and, per batch:

- projections: the fitted ``transform`` (UMAP / PCA / openTSNE ``transform``);
- clusterings: the fitted ``place`` (k-means ``predict``, HDBSCAN ``approximate_predict`` in the
  transformed reduced space, nearest medoid / centroid / core point);
- novelty: kNN distances against the sample (the fitted reference set, prepared once),
  the nearest centroid, and GLOSH from ``approximate_predict_scores``, combined with the
  sample's robust statistics, so placed rows are judged on the same scale as fitted ones;
- near-duplicates: the batch's coordinates in the pair space (PCA fitted on the sample, see
  :mod:`embedscope.analysis.near_pairs`) are kept;

and appends the batch's ``clusters``, ``projections`` and ``flags`` rows. Memory is bounded by
the sample, one batch, the result columns of one batch and the pair-space coordinates of every
row (97 floats a row), not by the vectors of every row. Placed rows have ``in_fit = false``.
After the pass one exact range search finds every near-duplicate pair over all rows (sample and
placed alike; the candidates' vectors are read again for the exact re-rank), and the group ids
of placed rows are written by updating the few ``flags`` rows concerned. The ``runs`` row is
still written last.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.analysis.backend import Backend
from embedscope.analysis.duplicates import groups_from_pairs, phash_pairs
from embedscope.analysis.near_pairs import groups_in_space, pair_space
from embedscope.analysis.progress import Progress as ProgressLog
from embedscope.analysis.clustering import cluster_method
from embedscope.analysis.fitting import fit_mask, fit_methods, run_params_of, sampling_info, written_projections
from embedscope.analysis.neighbors import normalize
from embedscope.analysis.novelty import score_with_neighbors
from embedscope.analysis.params import AnalysisParams, new_run_id
from embedscope.analysis.reading import embeddings_filter, gather_vectors, streamed_labels
from embedscope.analysis.recording import Recorder, Timer
from embedscope.analysis.rows import (
    cluster_rows, fitted_cluster_rows, flag_rows, projection_rows, write_metrics_and_model, write_run,
)
from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, isin
from embedscope.store.vectors import vectors_to_numpy

log = logging.getLogger(__name__)


def choose_sample(sha_sorted: pa.Array, params: AnalysisParams) -> tuple[np.ndarray, int]:
    """Positions (into the sha-sorted rows) of the seeded fit sample, and the number held out.
    The holdout is drawn exactly as an all-rows run draws it; the sample from the rest."""
    fitted = fit_mask(len(sha_sorted), params)
    candidates = np.nonzero(fitted)[0]
    sample = np.sort(np.random.default_rng(params.seed + 1).choice(candidates, params.fit_sample, replace=False))
    return sample, int((~fitted).sum())


def _phash_groups(db: Database, sha_sorted: pa.Array, params: AnalysisParams, info: dict[str, Any]) -> dict[str, int]:
    """``{sha: phash group}`` over the analysed rows when few enough have a hash, else {} (stated)."""
    if not db.has_table(S.IMAGES):
        return {}
    n_hash = db.count(S.IMAGES, where="phash IS NOT NULL")
    if n_hash == 0:
        return {}
    if n_hash > params.duplicates.phash_max_rows:
        info["phash_duplicates"] = f"skipped: {n_hash} hashes > phash_max_rows {params.duplicates.phash_max_rows}"
        return {}
    tbl = db.read(S.IMAGES, ["sha256", "phash"], where="phash IS NOT NULL")
    tbl = tbl.filter(pc.is_in(tbl.column("sha256"), value_set=sha_sorted))
    sha = tbl.column("sha256").to_pylist()
    order = np.argsort(np.array(sha, dtype=object), kind="stable")
    sha = [sha[i] for i in order]
    h = tbl.column("phash").to_numpy(zero_copy_only=False)[order]
    g = groups_from_pairs(len(sha), phash_pairs(h, params.duplicates.hamming_threshold))
    return {s: int(x) for s, x in zip(sha, g) if x >= 0}


def _vectors_of(Xf: np.ndarray, sha_all: list[str], ds: Any, flt: str, batch_size: int) -> Any:
    """``vectors(rows)`` for the near-duplicate re-rank: rows of the sample (the first ``len(Xf)``)
    from memory, the others read in one streaming pass over the embeddings per call."""
    m = len(Xf)

    def vectors(rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), Xf.shape[1]), np.float32)
        mine = rows < m
        out[mine] = Xf[rows[mine]]
        if (~mine).any():
            wanted = pa.array([sha_all[r] for r in rows[~mine]])
            out[~mine] = gather_vectors(ds, flt, wanted, batch_size)
        return out

    return vectors


def run_sampled(db: Database, params: AnalysisParams, backend: Backend, model: str, variant: str, ds: Any,
                timer: Timer) -> str:
    """The analyze run when rows > ``params.fit_sample`` (see the module docstring); returns its run_id."""
    flt = embeddings_filter(model, variant)
    version = int(ds.version)
    run_id = new_run_id()
    rec = Recorder(run_id, timer)
    t = time.perf_counter()
    keys = ds.to_table(columns=["sha256"], filter=flt).column("sha256").combine_chunks()
    sha_sorted = keys.take(pc.sort_indices(keys))
    n = len(sha_sorted)
    sample_pos, n_hold = choose_sample(sha_sorted, params)
    sample_sha = sha_sorted.take(pa.array(sample_pos))
    m = len(sample_pos)
    log.info("analyze %s: %d %s/%s rows > --fit-sample %d: fitting on a seeded sample of %d, placing the other %d "
             "in batches of %d (table version %d)", run_id, n, model, variant, params.fit_sample, m, n - m,
             params.batch_size, version)

    # pass 1: the sample's vectors, in sha order
    Xf = normalize(gather_vectors(ds, flt, sample_sha, params.batch_size))
    truth_f = streamed_labels(db, sample_sha, params.batch_size)
    has_labels = any(truth_f)
    timer.stage("read sample", t)

    fit = fit_methods(Xf, truth_f, has_labels, params, backend, rec, placeable=True)
    info = rec.methods_info
    missing = [mth for mth, p in fit.placers.items() if p is None]
    if missing:
        raise ConfigError(f"clustering {', '.join(missing)} cannot place rows it was not fitted on",
                          "its fit must return a ClusterResult with place=..., or run with --fit-sample 0")
    phash_of = _phash_groups(db, sha_sorted, params, info)

    sha_f = sample_sha.to_pylist()
    # near-duplicates: every row's coordinates in the pair space, searched once all are known
    pspace = pair_space(Xf, params.duplicates.search_dims, seed=params.seed)
    z_parts, sha_all = [pspace(Xf)], list(sha_f)

    # pass 2: place every other row, batch by batch
    t = time.perf_counter()
    proj_keys = written_projections(fit, params)
    primary = params.primary_cluster
    k_nb = max(params.novelty.knn_k, 10)
    placed = n_novel = n_cont = 0
    progress = ProgressLog("place", n - m)
    for b in ds.to_batches(columns=["sha256", "vector"], filter=flt, batch_size=params.batch_size):
        keep = np.nonzero(~pc.is_in(b.column("sha256"), value_set=sample_sha).to_numpy(zero_copy_only=False))[0]
        if not len(keep):
            continue
        b = b.take(pa.array(keep))
        sha_b = b.column("sha256").to_pylist()
        Xb = normalize(vectors_to_numpy(b))
        nb_ = len(sha_b)
        coords_b: dict[tuple[str, int], np.ndarray] = {}

        def space(key: tuple[str, int]) -> np.ndarray:
            if key not in coords_b:
                if key[0] == "pca-space":
                    coords_b[key] = fit.pca_spaces[key[1]][1](Xb)
                else:
                    coords_b[key] = np.asarray(fit.transforms[key](Xb), np.float32)
            return coords_b[key]

        rows_c, glosh_b, primary_labels = [], None, None
        for method, place in fit.placers.items():
            key = fit.spaces[method]
            lab, prob, gl = place(Xb if key is None else space(key))
            if method == fit.glosh_method:
                glosh_b = gl
            if method == primary:
                primary_labels = lab
            rows_c.append(cluster_rows(run_id, sha_b, method, lab, prob))
        db.append(S.CLUSTERS, pa.concat_tables(rows_c))
        if proj_keys:
            db.append(S.PROJECTIONS, pa.concat_tables([projection_rows(run_id, sha_b, pm, pd, space((pm, pd)))
                                                       for pm, pd in proj_keys]))
        nbr = fit.index.search(Xb, k_nb)
        scores = score_with_neighbors(Xb, nbr.dist, fit.dmodel, cluster=primary_labels, glosh=glosh_b)
        ph = np.array([phash_of.get(s, -1) for s in sha_b], np.int64)
        db.append(S.FLAGS, flag_rows(run_id, sha_b, scores, False, np.full(nb_, -1, np.int64), ph))
        n_novel += int(scores.is_novel.sum())
        n_cont += int(scores.is_contaminated.sum())
        placed += nb_
        z_parts.append(pspace(Xb))
        sha_all.extend(sha_b)
        progress.update(nb_)
    progress.close()
    place_s = time.perf_counter() - t
    timer.stage("place (streaming)", t)
    info["placement"] = {
        "rows": placed, "batch_size": params.batch_size, "seconds": round(place_s, 3),
        "rows_per_second": round(placed / max(place_s, 1e-9), 1),
        "how": {**{f"{pm}{pd}d": "transform" for pm, pd in proj_keys},
                **{mth: cluster_method(mth).placement for mth in fit.placers},
                "novelty": "kNN against the fit sample + nearest centroid (+ GLOSH), the sample's robust z-scores"},
    }

    # near-duplicate groups over every pair of rows, sample and placed alike
    t = timer.begin("near-duplicates", f"{len(sha_all):,} rows")
    Z = np.concatenate(z_parts)
    del z_parts
    g, info["near_duplicates"] = groups_in_space(Z, _vectors_of(Xf, sha_all, ds, flt, params.batch_size),
                                                 params.duplicates, seed=params.seed)
    group_of = {sha_all[i]: int(g[i]) for i in np.nonzero(g >= 0)[0]}
    placed_in_groups = [sha_all[i] for i in np.nonzero(g[m:] >= 0)[0] + m]

    # the sample's own rows
    db.append(S.CLUSTERS, fitted_cluster_rows(run_id, sha_f, fit))
    if proj_keys:
        db.append(S.PROJECTIONS, pa.concat_tables([projection_rows(run_id, sha_f, pm, pd, fit.projections[(pm, pd)])
                                                   for pm, pd in proj_keys]))
    dup_f = np.array([group_of.get(s, -1) for s in sha_f], np.int64)
    ph_f = np.array([phash_of.get(s, -1) for s in sha_f], np.int64)
    db.append(S.FLAGS, flag_rows(run_id, sha_f, fit.fit_scores, True, dup_f, ph_f))
    n_novel += int(fit.fit_scores.is_novel.sum())
    n_cont += int(fit.fit_scores.is_contaminated.sum())
    # placed rows that turned out to be in a near-duplicate group: set their dup_group
    for i in range(0, len(placed_in_groups), 500):
        chunk = placed_in_groups[i:i + 500]
        old = db.read(S.FLAGS, where=both(eq("run_id", run_id), isin("sha256", chunk)))
        new = pa.array([group_of[s] for s in old.column("sha256").to_pylist()], pa.int64())
        db.upsert(S.FLAGS, old.set_column(old.schema.get_field_index("dup_group"), "dup_group", new))
    n_groups = len(set(group_of.values()))
    timer.stage("near-duplicates + write sample", t)

    rec.totals(n=n, novel=n_novel, contaminated=n_cont, dup_groups=n_groups, phash_groups=len(set(phash_of.values())))
    write_metrics_and_model(db, rec, fit.dmodel)
    sampling = sampling_info(params, fit, rec, n_rows=n, n_fit=m, sampled=True)
    info["metrics"] = f"cluster-quality metrics, the k sweep and kNN accuracy are computed on the {m:,}-row fit sample"
    run_params = run_params_of(params, fit, rec, backend, model=model, variant=variant, n_fit=m, n_holdout=n_hold,
                               has_labels=has_labels, sampling=sampling)
    if fit.dendrogram is not None:
        run_params["dendrogram"] = {**fit.dendrogram, "sha256": [sha_f[i] for i in fit.dendrogram.pop("rows")]}
    write_run(db, run_id, "analyze", model, variant, run_params, version, n)
    log.info("analyze %s: %s", run_id, sampling["statement"])
    log.info("analyze %s: %d images, %d novel, %d contaminated, %d dup groups in %.1fs", run_id, n, n_novel, n_cont,
             n_groups, time.perf_counter() - timer.t0)
    return run_id
