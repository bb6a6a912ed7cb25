"""Fitting every method of a run on its fit rows, and what the run states about that fit.

:func:`fit_methods` is the same for an all-rows run (the fit rows are every row not held out)
and a sampled run (the fit rows are the seeded sample): neighbours, projections, clusterings
(looked up in the :mod:`~embedscope.analysis.clustering` registry), metrics, and the novelty
model of the data. :func:`run_params_of` and :func:`sampling_info` make ``runs.params``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedscope.analysis.backend import Backend
from embedscope.analysis.clustering import (
    ClusterConfig, Placer, best_k, cluster_method, edge_note, fit_clusters, k_grid, k_refinement, sweep_k,
)
from embedscope.analysis.metrics import external_metrics, internal_metrics, knn_accuracy
from embedscope.analysis.neighbors import GraphKnnConfig, KnnIndex, graph_knn
from embedscope.analysis.novelty import DataModel, Scores, fit_model
from embedscope.analysis.params import AnalysisParams
from embedscope.analysis.progress import Progress
from embedscope.analysis.projection import ProjectionConfig, fit_projection, pca_fit, umap_graph
from embedscope.analysis.recording import Recorder

log = logging.getLogger(__name__)

MODEL_FORMAT = "npz-v1"  # how ``run_models.blob`` is encoded (DataModel.to_bytes)


@dataclass
class Fit:
    """Everything fitted on the fit rows, with what places new rows in it."""

    index: KnnIndex | None  # the fit rows as the kNN reference set (None: no row will be searched in it)
    nb: Any  # leave-one-out neighbours of the fit rows
    k: int | None
    projections: dict[tuple[str, int], np.ndarray]
    transforms: dict[tuple[str, int], Any]
    spaces: dict[str, tuple[str, int] | None]  # cluster method -> the projection it runs in (None: embedding)
    pca_spaces: dict[int, tuple[np.ndarray, Any]]
    labels_by: dict[str, np.ndarray]
    prob_by: dict[str, np.ndarray | None]
    placers: dict[str, Placer | None]  # cluster method -> its ``place`` (see clustering.ClusterResult)
    glosh: np.ndarray | None
    glosh_method: str | None
    dendrogram: dict[str, Any] | None  # with "rows" (fit-row positions) still in it
    dmodel: DataModel
    fit_scores: Scores


def fit_methods(Xf: np.ndarray, truth_f: list[str | None], has_labels: bool, params: AnalysisParams, backend: Backend,
                rec: Recorder, *, placeable: bool) -> Fit:
    """Fit every method on the fit rows ``Xf`` and compute their metrics (the same for an
    all-rows fit and a sample fit). ``placeable`` keeps what placing other rows needs."""
    nf = len(Xf)
    metric, methods_info, timer = rec.metric, rec.methods_info, rec.timer

    # neighbours (leave-one-out inside the fit set), used by novelty, kNN accuracy and UMAP
    # wide enough to be UMAP's graph too, so no UMAP searches again (an all-rows fit only: a
    # sampled run's UMAP needs its own search index to transform the placed rows)
    k_nb = max(params.novelty.knn_k, 10, params.n_neighbors - 1)
    # above knn_exact_max rows the fit rows' graph comes from HNSW on every core (its recall on
    # a sample is stated); the index (PCA candidates, exact distances) places other rows
    search = params.knn_search_dims if nf > params.knn_exact_max else None
    parallel = nf > params.reproducible_max
    t = timer.begin("neighbours", f"{nf:,} rows, k={k_nb}")
    # a normalised copy of the fit rows: only for an exact graph, or for placing other rows
    index = None
    if placeable or not search:
        index = KnnIndex(Xf, search_dims=search if placeable else None, seed=params.seed)
    with Progress("neighbours", nf) as progress:
        if search:
            threads = 0 if parallel else 1  # one thread: the same graph every run
            nb, graph_info = graph_knn(Xf, k_nb, GraphKnnConfig(threads=threads), seed=params.seed,
                                       progress=progress.update)
            methods_info["knn"] = {"rows": nf, "exact_max": params.knn_exact_max, **graph_info}
            log.info("analyze: kNN graph recall@%d %.4f on %d rows", k_nb, graph_info["recall_at_k"],
                     graph_info["recall_rows"])
        else:
            nb = index.search(Xf, k_nb, exclude_self=True, progress=progress.update)
            methods_info["knn"] = {"rows": nf, "exact_max": params.knn_exact_max, "how": "exact (brute force)",
                                   "k": k_nb}
    graph = None if placeable else umap_graph(nb.idx, nb.dist, params.n_neighbors)
    timer.stage("neighbours", t)

    # projections (shared cache: HDBSCAN's UMAP space reuses a projection of the same dims)
    projections: dict[tuple[str, int], np.ndarray] = {}
    transforms: dict[tuple[str, int], Any] = {}

    # the UMAP that only feeds HDBSCAN (not a result) may run fewer epochs
    epochs = {params.hdbscan_dims: params.hdbscan_umap_epochs} if params.hdbscan_dims not in params.dims else {}

    def project(method: str, dims: int) -> np.ndarray:
        if (method, dims) not in projections:
            t0 = timer.begin(f"{method}{dims}d", f"{nf:,} rows")
            cfg = ProjectionConfig(method, dims, params.seed, params.n_neighbors, params.min_dist, params.perplexity,
                                   tsne_max_fit=params.tsne_max_fit, backend=backend.name if method == "umap" else "cpu",
                                   parallel=parallel, n_epochs=epochs.get(dims) if method == "umap" else None)
            res = fit_projection(Xf, cfg, knn=graph if method == "umap" else None)
            projections[(method, dims)] = res.coords
            transforms[(method, dims)] = res.transform
            methods_info[f"{method}{dims}d"] = res.info
            timer.stage(f"{method}{dims}d", t0)
        return projections[(method, dims)]

    for method in params.project:
        for dims in params.dims:
            project(method, dims)

    # clusterings
    k = params.k
    if any(cluster_method(m).needs_k for m in params.cluster) and k is None:
        t = timer.begin("k sweep", f"{nf:,} rows")
        ks = k_grid(nf, params.k_min, params.k_max)
        sample = min(params.silhouette_sample, 3000)
        sweep = sweep_k(Xf, ks, seed=params.seed, sample=sample)
        k = best_k(sweep)
        finer = k_refinement(ks, k)
        if finer:
            sweep = sorted(sweep + sweep_k(Xf, finer, seed=params.seed, sample=sample), key=lambda s: s["k"])
            k = best_k(sweep)
        for s in sweep:
            metric("silhouette_vs_k", s["silhouette"], "kmeans", "embedding", s["k"])
            metric("inertia", s["inertia"], "kmeans", "embedding", s["k"])
        tried = [int(s["k"]) for s in sweep]
        methods_info["k_auto"] = {"chosen": k, "range": [ks[0], ks[-1]], "tried": tried,
                                  "by": "silhouette (cosine-normalised k-means)"}
        note = edge_note(ks, k, nf)
        if note:
            methods_info["k_auto"]["note"] = note
            log.warning("analyze: %s", note)
        timer.stage("k sweep", t)
    labels_by: dict[str, np.ndarray] = {}
    prob_by: dict[str, np.ndarray | None] = {}
    placers: dict[str, Placer | None] = {}
    spaces: dict[str, tuple[str, int] | None] = {}
    pca_spaces: dict[int, tuple[np.ndarray, Any]] = {}
    glosh, glosh_method = None, None
    dendrogram = None
    for method in params.cluster:
        if cluster_method(method).reduced_space:
            if params.hdbscan_space == "umap":
                Z = project("umap", params.hdbscan_dims)
                spaces[method] = ("umap", params.hdbscan_dims)
            else:
                if params.hdbscan_dims not in pca_spaces:
                    pca_spaces[params.hdbscan_dims] = pca_fit(Xf, params.hdbscan_dims, params.seed)
                Z = pca_spaces[params.hdbscan_dims][0]
                spaces[method] = ("pca-space", params.hdbscan_dims)
            space = f"{params.hdbscan_space}{params.hdbscan_dims}d"
        else:
            Z, space = Xf, "embedding"
            spaces[method] = None
        t = timer.begin(f"cluster {method}", f"{len(Z):,} rows in {space}")  # after the reduced space
        # an all-rows run fits HDBSCAN on every row; a sampled run caps it inside its sample
        cfg = ClusterConfig(method, k or 8, params.seed, params.min_cluster_size, params.min_samples, params.eps,
                            params.max_fit, params.hdbscan_max_fit if placeable else nf, placeable=placeable,
                            backend=backend.name if cluster_method(method).gpu else "cpu")
        res = fit_clusters(Z, cfg)
        labels_by[method], prob_by[method], placers[method] = res.labels, res.probabilities, res.place
        methods_info[method] = {**res.info, "space": space}
        if res.outlier_scores is not None and glosh is None:
            glosh, glosh_method = res.outlier_scores, method
        if res.dendrogram is not None:
            dendrogram = res.dendrogram
        n_clusters = len(set(res.labels.tolist()) - {-1})
        metric("n_clusters", n_clusters, method)
        metric("noise_fraction", float((res.labels < 0).mean()), method)
        timer.stage(f"cluster {method}", t)

    # metrics: embedding space (cosine silhouette), each projection (Euclidean), labels
    t = timer.begin("metrics")
    for method, labels in labels_by.items():
        for name, value in internal_metrics(Xf, labels, metric="cosine", silhouette_sample=params.silhouette_sample,
                                            seed=params.seed).items():
            metric(name, value, method, "embedding")
        for (pm, pd), coords in projections.items():
            if pd in params.dims and pm in params.project:
                for name, value in internal_metrics(coords, labels, silhouette_sample=params.silhouette_sample,
                                                    seed=params.seed).items():
                    metric(name, value, method, f"{pm}{pd}d")
        if has_labels:
            for name, value in external_metrics(labels, truth_f).items():
                metric(name, value, method)
    if has_labels:
        for name, value in knn_accuracy(nb.idx, truth_f).items():
            metric(name, value)
    timer.stage("metrics", t)

    # novelty + contamination on the primary clustering, fitted on the fit set
    t = timer.begin("novelty", f"{nf:,} rows")
    dmodel, fit_scores = fit_model(Xf, labels_by[params.primary_cluster], params.novelty, glosh=glosh,
                                   truth=truth_f if has_labels else None, neighbors_dist=nb.dist)
    timer.stage("novelty", t)
    return Fit(index, nb, k, projections, transforms, spaces, pca_spaces, labels_by, prob_by, placers, glosh,
                glosh_method, dendrogram, dmodel, fit_scores)


def fit_mask(n: int, params: AnalysisParams) -> np.ndarray:
    """True for the rows a run may fit on, False for the seeded holdout (drawn the same way by
    every run, so a sampled run holds out exactly the rows an all-rows run would)."""
    mask = np.ones(n, bool)
    if params.holdout > 0:
        rng = np.random.default_rng(params.seed)
        mask[rng.choice(n, int(round(params.holdout * n)), replace=False)] = False
    return mask


def written_projections(fit: Fit, params: AnalysisParams) -> list[tuple[str, int]]:
    """The projections that are results (not only a reduced space for clustering)."""
    return [(pm, pd) for (pm, pd) in fit.projections if pm in params.project and pd in params.dims]


def fit_rows_by_method(fit: Fit, params: AnalysisParams, rec: Recorder, n_fit: int) -> dict[str, int]:
    """How many rows each method was actually fitted on (the inner caps of the O(n²) methods,
    HDBSCAN and t-SNE included), for the stated sampling policy."""
    out: dict[str, int] = {}
    for key, info in rec.methods_info.items():
        if isinstance(info, dict) and "method" in info:
            rows = info.get("n_fit", n_fit)
            if info.get("method") == "tsne" and n_fit > params.tsne_max_fit:
                rows = params.tsne_max_fit
            out[key] = int(rows)
    return out


def sampling_info(params: AnalysisParams, fit: Fit, rec: Recorder, *, n_rows: int, n_fit: int,
                  sampled: bool) -> dict[str, Any]:
    """The stated sampling policy of a run (``runs.params["sampling"]``)."""
    by_method = fit_rows_by_method(fit, params, rec, n_fit)
    if sampled:
        statement = (f"fitted on {n_fit:,} of {n_rows:,} rows (seeded sample, --fit-sample {params.fit_sample:,}); "
                     "the rest placed by transform / predict / approximate_predict in a streaming pass")
    else:
        statement = f"fitted on all {n_fit:,} rows" + (f" ({n_rows - n_fit:,} held out)" if n_rows > n_fit else "")
    inner = {m: r for m, r in by_method.items() if r < n_fit}
    if inner:
        statement += "; inner caps: " + ", ".join(f"{m} on {r:,}" for m, r in inner.items())
    return {"fit_sample": params.fit_sample, "sampled": sampled, "n_rows": n_rows, "n_fit": n_fit,
            "n_placed": n_rows - n_fit if sampled else 0, "fit_rows_by_method": by_method,
            "methods_sampled": sorted(m for m, r in by_method.items() if r < n_rows), "statement": statement}


def run_params_of(params: AnalysisParams, fit: Fit, rec: Recorder, backend: Backend, **extra: Any) -> dict[str, Any]:
    """``runs.params`` of an analyze run."""
    out = params.as_dict()
    out.update(
        k_resolved=fit.k, primary_cluster=params.primary_cluster,
        primary_projection=params.primary_projection, primary_dims=params.primary_dims,
        novelty_threshold=fit.dmodel.threshold, novelty_stats=fit.dmodel.stats,
        contaminated_clusters={str(c): r for c, r in fit.dmodel.contaminated.items()},
        methods_info=rec.methods_info, timings_s=rec.timer.stages, run_model_format=MODEL_FORMAT,
        backend_resolved=backend.as_dict(), **extra,
    )
    return out
