"""Analysis jobs: read embeddings, run the pure methods, write the results back. The only writer
of analysis results.

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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from embedscope.analysis.clustering import (
    CLUSTER_METHODS, NEEDS_K, REDUCED_SPACE, ClusterConfig, best_k, fit_clusters, sweep_k,
)
from embedscope.analysis.duplicates import DuplicateConfig, embedding_pairs, groups_from_pairs, phash_pairs
from embedscope.analysis.metrics import external_metrics, internal_metrics, knn_accuracy
from embedscope.analysis.backend import BACKENDS, Backend, resolve_backend
from embedscope.analysis.neighbors import KnnIndex, knn, normalize
from embedscope.analysis.novelty import DataModel, NoveltyConfig, Scores, fit_model, score_new
from embedscope.analysis.projection import PROJECTION_METHODS, ProjectionConfig, fit_projection, pca_fit, place_by_neighbors
from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now

log = logging.getLogger(__name__)

MODEL_FORMAT = "npz-v1"


@dataclass(frozen=True)
class AnalysisParams:
    """Everything an analyze run does, with explicit defaults (all stored in ``runs.params``)."""

    model: str | None = None  # None: the only model in the database
    variant: str | None = None  # None: 'full' if present, else the only one
    project: tuple[str, ...] = ("umap",)
    dims: tuple[int, ...] = (2,)
    cluster: tuple[str, ...] = ("hdbscan", "kmeans")  # the first is the primary clustering
    k: int | None = None  # None = auto: best silhouette over k_min..k_max (k-means sweep)
    k_min: int = 2
    k_max: int = 15
    hdbscan_space: str = "umap"  # 'umap' | 'pca': the reduced space HDBSCAN / DBSCAN run in
    hdbscan_dims: int = 10
    min_cluster_size: int | None = None
    min_samples: int = 5
    eps: float | None = None
    max_fit: int = 5_000
    hdbscan_max_fit: int = 20_000
    seed: int = 0
    holdout: float = 0.0  # fraction of images left out of fitting and scored against the model
    silhouette_sample: int = 5_000
    knn_exact_max: int = 20_000  # above this many rows, kNN candidates come from PCA-knn_search_dims
    knn_search_dims: int = 64
    n_neighbors: int = 15
    min_dist: float = 0.1
    perplexity: float = 30.0
    tsne_max_fit: int = 20_000
    fit_sample: int = 200_000  # above this many fit rows: fit on a seeded sample, place the rest (0 = never)
    batch_size: int = 16_384  # rows per batch of the streaming placement / scoring pass
    backend: str = "auto"  # 'auto' | 'cpu' | 'cuml' (UMAP, HDBSCAN, k-means on the GPU)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)

    def __post_init__(self) -> None:
        for m in self.project:
            if m not in PROJECTION_METHODS:
                raise ConfigError(f"unknown projection {m!r}", f"--project takes {','.join(PROJECTION_METHODS)}")
        for m in self.cluster:
            if m not in CLUSTER_METHODS:
                raise ConfigError(f"unknown clustering {m!r}", f"--cluster takes {','.join(CLUSTER_METHODS)}")
        if not self.cluster:
            raise ConfigError("no clustering method given", "pass --cluster hdbscan (or kmeans, ...)")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.hdbscan_space not in ("umap", "pca"):
            raise ConfigError(f"unknown --hdbscan-space {self.hdbscan_space!r}", "use umap or pca")
        if any(d not in (2, 3) for d in self.dims):
            raise ConfigError(f"--dims takes 2 and/or 3, got {self.dims}")
        if self.fit_sample < 0 or 0 < self.fit_sample < 50:
            raise ConfigError(f"--fit-sample must be 0 (always fit every row) or >= 50, got {self.fit_sample}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}", f"--backend takes {', '.join(BACKENDS)}")

    @property
    def primary_cluster(self) -> str:
        return self.cluster[0]

    @property
    def primary_projection(self) -> str | None:
        return self.project[0] if self.project else None

    @property
    def primary_dims(self) -> int:
        return 2 if 2 in self.dims else self.dims[0]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["project"], d["dims"], d["cluster"] = list(self.project), list(self.dims), list(self.cluster)
        return d


# -- helpers shared by both jobs --------------------------------------------------------------


def new_run_id() -> str:
    """Sortable and unique: ``20260101T120000Z-1a2b3c``."""
    return utc_now().strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def resolve_model_variant(db: Database, model: str | None, variant: str | None) -> tuple[str, str]:
    """The model (the only one, or the one named) and variant ('full' if present, else the only one)."""
    models = db.embedding_models()
    if not models:
        raise NotFoundError(f"no embeddings in {db.uri}", "run `embedscope ingest` or `embedscope ingest-vectors` first")
    if model is None:
        if len(models) > 1:
            raise ConfigError(f"the database has several models: {', '.join(models)}", "pick one with --model NAME")
        model = models[0]
    elif model not in models:
        raise NotFoundError(f"no embeddings for model {model!r}", f"models in this database: {', '.join(models)}")
    variants = sorted({k.split("/", 1)[1] for k in db.embedding_counts() if k.split("/", 1)[0] == model})
    if variant is None:
        if S.VARIANT_FULL in variants or not variants:
            variant = S.VARIANT_FULL
        elif len(variants) == 1:
            variant = variants[0]
        else:
            raise ConfigError(f"model {model} has variants {', '.join(variants)}", "pick one with --variant")
    elif variant not in variants:
        raise NotFoundError(f"no {variant!r} embeddings for model {model}", f"variants present: {', '.join(variants) or 'none'}")
    return model, variant


@dataclass
class _Data:
    sha: list[str]
    X: np.ndarray
    created_at: np.ndarray
    version: int


def _read_embeddings(db: Database, model: str, variant: str, ds: Any = None) -> _Data:
    if ds is None:
        ds = db.dataset(S.embeddings_table_name(model))
    version = int(ds.version)
    tbl = ds.to_table(columns=["sha256", "vector", "created_at"], filter=_embeddings_filter(model, variant))
    sha = tbl.column("sha256").to_pylist()
    vec = tbl.column("vector").combine_chunks()
    dim = vec.type.list_size
    X = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(sha), dim)
    created = tbl.column("created_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.argsort(np.array(sha, dtype=object), kind="stable")  # deterministic row order
    return _Data([sha[i] for i in order], normalize(X[order]), created[order], version)


def _image_columns(db: Database, sha: list[str]) -> tuple[list[str | None], np.ndarray | None]:
    """Labels and phashes aligned with ``sha`` (None / null where absent)."""
    imgs = db.read(S.IMAGES, ["sha256", "label", "phash"])
    by = {s: (l, p) for s, l, p in zip(imgs.column("sha256").to_pylist(), imgs.column("label").to_pylist(),
                                        imgs.column("phash").to_pylist())}
    labels = [by.get(s, (None, None))[0] or None for s in sha]
    ph = [by.get(s, (None, None))[1] for s in sha]
    return labels, np.array([p if p is not None else np.iinfo(np.int64).min for p in ph], np.int64) if any(p is not None for p in ph) else None


class _Timer:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.stages: dict[str, float] = {}

    def stage(self, name: str, start: float) -> None:
        self.stages[name] = round(time.perf_counter() - start, 3)
        log.info("analyze: %s done in %.1fs", name, self.stages[name])


class _Recorder:
    """What a run accumulates while it fits: metric rows, ``methods_info`` and stage timings."""

    def __init__(self, run_id: str, timer: _Timer) -> None:
        self.run_id, self.timer = run_id, timer
        self.metric_rows: list[dict[str, Any]] = []
        self.methods_info: dict[str, Any] = {}

    def metric(self, name: str, value: float, method: str = "", space: str = "embedding", k: int | None = None) -> None:
        if value is not None and np.isfinite(value):
            self.metric_rows.append({"run_id": self.run_id, "name": name, "method": method, "space": space, "k": k,
                                     "value": float(value)})


@dataclass
class _Fit:
    """Everything fitted on the fit rows, with what places new rows in it."""

    index: KnnIndex  # the fit rows as the kNN reference set
    nb: Any  # leave-one-out neighbours of the fit rows
    k: int | None
    projections: dict[tuple[str, int], np.ndarray]
    transforms: dict[tuple[str, int], Any]
    spaces: dict[str, tuple[str, int] | None]  # cluster method -> the projection it runs in (None: embedding)
    pca_spaces: dict[int, tuple[np.ndarray, Any]]
    labels_by: dict[str, np.ndarray]
    prob_by: dict[str, np.ndarray | None]
    placers: dict[str, Any]
    glosh: np.ndarray | None
    glosh_method: str | None
    dendrogram: dict[str, Any] | None  # with "rows" (fit-row positions) still in it
    dmodel: DataModel
    fit_scores: Scores


def _fit(Xf: np.ndarray, truth_f: list[str | None], has_labels: bool, params: AnalysisParams, backend: Backend,
         rec: _Recorder, *, placeable: bool) -> _Fit:
    """Fit every method on the fit rows ``Xf`` and compute their metrics (the same for an
    all-rows fit and a sample fit). ``placeable`` keeps what placing other rows needs."""
    nf = len(Xf)
    metric, methods_info, timer = rec.metric, rec.methods_info, rec.timer

    # neighbours (leave-one-out inside the fit set), used by novelty, kNN accuracy and duplicates
    t = time.perf_counter()
    k_nb = max(params.novelty.knn_k, 10)
    search = params.knn_search_dims if nf > params.knn_exact_max else None
    index = KnnIndex(Xf, search_dims=search, seed=params.seed)
    nb = index.search(Xf, k_nb, exclude_self=True)
    if nb.approximate:
        methods_info["knn"] = (f"{nf} rows > {params.knn_exact_max}: neighbour candidates from PCA-{search}, "
                               "distances exact")
    timer.stage("neighbours", t)

    # projections (shared cache: HDBSCAN's UMAP space reuses a projection of the same dims)
    projections: dict[tuple[str, int], np.ndarray] = {}
    transforms: dict[tuple[str, int], Any] = {}

    def project(method: str, dims: int) -> np.ndarray:
        if (method, dims) not in projections:
            t0 = time.perf_counter()
            cfg = ProjectionConfig(method, dims, params.seed, params.n_neighbors, params.min_dist, params.perplexity,
                                   tsne_max_fit=params.tsne_max_fit, backend=backend.name if method == "umap" else "cpu")
            res = fit_projection(Xf, cfg)
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
    if any(m in NEEDS_K for m in params.cluster) and k is None:
        t = time.perf_counter()
        ks = list(range(max(2, params.k_min), max(params.k_min, min(params.k_max, nf - 1)) + 1))
        sweep = sweep_k(Xf, ks, seed=params.seed, sample=min(params.silhouette_sample, 3000))
        for s in sweep:
            metric("silhouette_vs_k", s["silhouette"], "kmeans", "embedding", s["k"])
            metric("inertia", s["inertia"], "kmeans", "embedding", s["k"])
        k = best_k(sweep)
        methods_info["k_auto"] = {"chosen": k, "range": [ks[0], ks[-1]], "by": "silhouette (cosine-normalised k-means)"}
        timer.stage("k sweep", t)
    labels_by: dict[str, np.ndarray] = {}
    prob_by: dict[str, np.ndarray | None] = {}
    placers: dict[str, Any] = {}
    spaces: dict[str, tuple[str, int] | None] = {}
    pca_spaces: dict[int, tuple[np.ndarray, Any]] = {}
    glosh, glosh_method = None, None
    dendrogram = None
    for method in params.cluster:
        if method in REDUCED_SPACE:
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
        t = time.perf_counter()  # after the reduced space, which is timed on its own
        cfg = ClusterConfig(method, k or 8, params.seed, params.min_cluster_size, params.min_samples, params.eps,
                            params.max_fit, params.hdbscan_max_fit, placeable=placeable,
                            backend=backend.name if method in ("hdbscan", "kmeans") else "cpu")
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
    t = time.perf_counter()
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
    t = time.perf_counter()
    dmodel, fit_scores = fit_model(Xf, labels_by[params.primary_cluster], params.novelty, glosh=glosh,
                                   truth=truth_f if has_labels else None, neighbors_dist=nb.dist)
    timer.stage("novelty", t)
    return _Fit(index, nb, k, projections, transforms, spaces, pca_spaces, labels_by, prob_by, placers, glosh,
                glosh_method, dendrogram, dmodel, fit_scores)


def _written_projections(fit: _Fit, params: AnalysisParams) -> list[tuple[str, int]]:
    """The projections that are results (not only a reduced space for clustering)."""
    return [(pm, pd) for (pm, pd) in fit.projections if pm in params.project and pd in params.dims]


def _fit_rows_by_method(fit: _Fit, params: AnalysisParams, rec: _Recorder, n_fit: int) -> dict[str, int]:
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


# -- the full analysis ------------------------------------------------------------------------


def _embeddings_filter(model: str, variant: str) -> str:
    return f"variant = '{variant}' AND model = '{model.replace(chr(39), chr(39) * 2)}'"


def run_analysis(db: Database, params: AnalysisParams) -> str:
    """Run one full analysis as ``params`` says and store it; returns the new ``run_id``.

    When more rows than ``params.fit_sample`` would be fitted, every method is fitted on one
    seeded sample of that many rows and the other rows are placed by a streaming pass over the
    embeddings (see :mod:`embedscope.analysis.placement`); otherwise every row is fitted."""
    timer = _Timer()
    model, variant = resolve_model_variant(db, params.model, params.variant)
    backend = resolve_backend(params.backend)
    ds = db.dataset(S.embeddings_table_name(model))
    n_rows = int(ds.count_rows(filter=_embeddings_filter(model, variant)))
    n_candidates = n_rows - (int(round(params.holdout * n_rows)) if params.holdout > 0 else 0)
    if params.fit_sample and n_candidates > params.fit_sample:
        from embedscope.analysis.placement import run_sampled

        return run_sampled(db, params, backend, model, variant, ds, timer)
    data = _read_embeddings(db, model, variant, ds=ds)
    n = len(data.sha)
    if n < 3:
        raise ConfigError(f"only {n} {model}/{variant} embeddings: too few to analyse", "ingest more images first")
    run_id = new_run_id()
    log.info("analyze %s: %d %s/%s vectors of dim %d (table version %d)", run_id, n, model, variant, data.X.shape[1], data.version)
    truth, phash = _image_columns(db, data.sha)
    has_labels = any(truth)

    # split: fit on one part, score the held-out part against it
    rng = np.random.default_rng(params.seed)
    fit_mask = np.ones(n, bool)
    if params.holdout > 0:
        n_hold = int(round(params.holdout * n))
        fit_mask[rng.choice(n, n_hold, replace=False)] = False
    fit_idx, hold_idx = np.nonzero(fit_mask)[0], np.nonzero(~fit_mask)[0]
    Xf = data.X[fit_idx]
    truth_f = [truth[i] for i in fit_idx]
    nf = len(fit_idx)
    rec = _Recorder(run_id, timer)
    metric, methods_info = rec.metric, rec.methods_info
    fit = _fit(Xf, truth_f, has_labels, params, backend, rec, placeable=False)
    nb, projections, labels_by, prob_by = fit.nb, fit.projections, fit.labels_by, fit.prob_by
    dmodel, fit_scores = fit.dmodel, fit.fit_scores
    primary = params.primary_cluster
    dendrogram = None
    if fit.dendrogram is not None:
        dendrogram = {**fit.dendrogram, "sha256": [data.sha[fit_idx[i]] for i in fit.dendrogram.pop("rows")]}
    t = time.perf_counter()
    hold_scores = score_new(data.X[hold_idx], Xf, dmodel, batch_size=params.batch_size) if len(hold_idx) else None
    timer.stage("holdout scoring", t)

    # near-duplicates over all images (fit + held out)
    t = time.perf_counter()
    search = params.knn_search_dims if nf > params.knn_exact_max else None
    if len(hold_idx):
        nb_all = knn(data.X, data.X, 10, exclude_self=True, search_dims=search, seed=params.seed)
        idx_all, dist_all = nb_all.idx, nb_all.dist
    else:
        idx_all, dist_all = fit_idx[nb.idx], nb.dist
    dup_group = groups_from_pairs(n, embedding_pairs(idx_all, dist_all, params.duplicates.cosine_threshold))
    phash_group = np.full(n, -1, np.int64)
    if phash is not None:
        have = np.nonzero(phash != np.iinfo(np.int64).min)[0]
        if len(have) <= params.duplicates.phash_max_rows:
            pairs = phash_pairs(phash[have], params.duplicates.hamming_threshold)
            phash_group = np.full(n, -1, np.int64)
            g = groups_from_pairs(len(have), pairs)
            phash_group[have] = g
        else:
            methods_info["phash_duplicates"] = f"skipped: {len(have)} hashes > phash_max_rows {params.duplicates.phash_max_rows}"
    timer.stage("duplicates", t)

    # held-out images: placed in the fitted projections by their nearest fitted neighbours
    hold_nb = knn(data.X[hold_idx], Xf, 10) if len(hold_idx) else None

    # -- write: per-image tables, metrics, model; the runs row last -----------------------
    t = time.perf_counter()
    sha_arr = np.array(data.sha, dtype=object)
    rows_c = []
    for method, labels in labels_by.items():
        prob = prob_by[method]
        rows_c.append(pa.table({
            "run_id": [run_id] * nf, "sha256": sha_arr[fit_idx].tolist(), "method": [method] * nf,
            "cluster": pa.array(labels, pa.int32()),
            "probability": pa.array(prob if prob is not None else np.ones(nf, np.float32), pa.float32()),
        }))
    if hold_scores is not None:
        rows_c.append(pa.table({
            "run_id": [run_id] * len(hold_idx), "sha256": sha_arr[hold_idx].tolist(), "method": [primary] * len(hold_idx),
            "cluster": pa.array(hold_scores.cluster, pa.int32()),
            "probability": pa.nulls(len(hold_idx), pa.float32()),
        }))
    db.upsert(S.CLUSTERS, pa.concat_tables(rows_c))

    rows_p = []
    for (pm, pd) in _written_projections(fit, params):
        coords = projections[(pm, pd)]
        all_coords = np.zeros((n, pd), np.float32)
        all_coords[fit_idx] = coords
        if hold_nb is not None:
            all_coords[hold_idx] = place_by_neighbors(hold_nb.idx, hold_nb.dist, coords)
        rows_p.append(_projection_rows(run_id, data.sha, pm, pd, all_coords))
    if rows_p:
        db.upsert(S.PROJECTIONS, pa.concat_tables(rows_p))

    flags = [_flag_rows(run_id, sha_arr[fit_idx].tolist(), fit_scores, True, dup_group[fit_idx], phash_group[fit_idx])]
    if hold_scores is not None:
        flags.append(_flag_rows(run_id, sha_arr[hold_idx].tolist(), hold_scores, False, dup_group[hold_idx],
                                phash_group[hold_idx]))
    db.upsert(S.FLAGS, pa.concat_tables(flags))
    n_novel = int(fit_scores.is_novel.sum() + (hold_scores.is_novel.sum() if hold_scores is not None else 0))
    n_cont = int(fit_scores.is_contaminated.sum() + (hold_scores.is_contaminated.sum() if hold_scores is not None else 0))
    metric("novel_fraction", n_novel / n)
    metric("contaminated_fraction", n_cont / n)
    metric("dup_groups", float(len(set(dup_group.tolist()) - {-1})))
    metric("phash_groups", float(len(set(phash_group.tolist()) - {-1})))
    db.upsert(S.METRICS, pa.Table.from_pylist(rec.metric_rows, schema=S.METRICS_SCHEMA))
    db.upsert(S.RUN_MODELS, pa.table({"run_id": [run_id], "format": [MODEL_FORMAT], "blob": [dmodel.to_bytes()],
                                      "created_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC"))}))
    timer.stage("write", t)

    run_params = run_params_of(params, fit, rec, backend, model=model, variant=variant, n_fit=nf,
                               n_holdout=int(len(hold_idx)), has_labels=has_labels,
                               sampling=sampling_info(params, fit, rec, n_rows=n, n_fit=nf, sampled=False))
    if dendrogram is not None:
        run_params["dendrogram"] = dendrogram
    _write_run(db, run_id, "analyze", model, variant, run_params, data.version, n)
    log.info("analyze %s: %d images, %d novel, %d contaminated, %d dup groups in %.1fs", run_id, n, n_novel, n_cont,
             len(set(dup_group.tolist()) - {-1}), time.perf_counter() - timer.t0)
    return run_id


def sampling_info(params: AnalysisParams, fit: _Fit, rec: _Recorder, *, n_rows: int, n_fit: int,
                  sampled: bool) -> dict[str, Any]:
    """The stated sampling policy of a run (``runs.params["sampling"]``)."""
    by_method = _fit_rows_by_method(fit, params, rec, n_fit)
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


def run_params_of(params: AnalysisParams, fit: _Fit, rec: _Recorder, backend: Backend, **extra: Any) -> dict[str, Any]:
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


def _projection_rows(run_id: str, sha: list[str], method: str, dims: int, coords: np.ndarray) -> pa.Table:
    n = len(sha)
    z = coords[:, 2] if dims >= 3 else None
    return pa.table({
        "run_id": [run_id] * n, "sha256": sha, "method": [method] * n, "dims": pa.array([dims] * n, pa.int32()),
        "x": pa.array(coords[:, 0], pa.float32()), "y": pa.array(coords[:, 1] if dims >= 2 else np.zeros(n), pa.float32()),
        "z": pa.array(z, pa.float32()) if z is not None else pa.nulls(n, pa.float32()),
    })


def _flag_rows(run_id: str, sha: list[str], s: Scores, in_fit: bool, dup: np.ndarray | None,
               phash_group: np.ndarray | None) -> pa.Table:
    n = len(sha)

    def group(g: np.ndarray | None) -> pa.Array:
        if g is None:
            return pa.nulls(n, pa.int64())
        return pa.array(g, pa.int64(), mask=g < 0)

    return pa.table({
        "run_id": [run_id] * n, "sha256": sha,
        "novelty_score": pa.array(s.novelty_score, pa.float32()), "is_novel": pa.array(s.is_novel, pa.bool_()),
        "surprise": pa.array(s.surprise, pa.float32()), "centroid_score": pa.array(s.centroid_score, pa.float32()),
        "knn_score": pa.array(s.knn_score, pa.float32()),
        "glosh_score": pa.array(s.glosh_score, pa.float32()) if s.glosh_score is not None else pa.nulls(n, pa.float32()),
        "novelty_reason": pa.array(s.novelty_reason, pa.string()),
        "is_contaminated": pa.array(s.is_contaminated, pa.bool_()),
        "contamination_reason": pa.array(s.contamination_reason, pa.string()),
        "dup_group": group(dup), "phash_group": group(phash_group),
        "in_fit": pa.array([in_fit] * n, pa.bool_()), "cluster": pa.array(s.cluster, pa.int32()),
    })


def _write_run(db: Database, run_id: str, kind: str, model: str, variant: str, params: dict[str, Any],
               version: int, n: int) -> None:
    db.upsert(S.RUNS, pa.table({
        "run_id": [run_id], "kind": [kind], "model": [model], "variant": [variant],
        "params": [json.dumps(params, default=_json_default)],
        "created_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC")),
        "table_version": pa.array([version], pa.int64()), "n_images": pa.array([n], pa.int64()),
    }))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


# -- novelty only -----------------------------------------------------------------------------


def latest_run(db: Database, *, kind: str | None = "analyze", model: str | None = None,
               variant: str | None = None) -> dict[str, Any] | None:
    """The newest ``runs`` row (as a dict, params parsed) matching the filters, or None."""
    runs = db.read(S.RUNS).to_pylist()
    runs = [r for r in runs if (kind is None or r["kind"] == kind) and (model is None or r["model"] == model)
            and (variant is None or r["variant"] == variant)]
    if not runs:
        return None
    run = max(runs, key=lambda r: (r["created_at"], r["run_id"]))
    return {**run, "params": json.loads(run["params"] or "{}")}


def get_run(db: Database, run_id: str) -> dict[str, Any]:
    rows = db.read(S.RUNS, where=f"run_id = '{run_id.replace(chr(39), '')}'").to_pylist()
    if not rows:
        raise NotFoundError(f"no run {run_id!r}", "list runs with `embedscope report --db DIR` or SQL on `runs`")
    return {**rows[0], "params": json.loads(rows[0]["params"] or "{}")}


def _since_micros(db: Database, since: str) -> int:
    try:
        created = get_run(db, since)["created_at"]
    except NotFoundError:
        try:
            created = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since {since!r} is neither a run id nor an ISO timestamp",
                              "pass a run_id from `runs` or e.g. 2026-01-01T12:00:00Z") from None
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
    import pyarrow.compute as pc

    t0 = time.perf_counter()
    model, variant = resolve_model_variant(db, model, variant)
    parent = latest_run(db, kind="analyze", model=model, variant=variant)
    if parent is None:
        raise NotFoundError(f"no analyze run for {model}/{variant} to score against",
                            f"run `embedscope analyze --db {db.uri} --model {model} --variant {variant}` first")
    blob = db.read(S.RUN_MODELS, where=f"run_id = '{parent['run_id']}'").to_pylist()
    if not blob:
        raise NotFoundError(f"analyze run {parent['run_id']} has no stored model of the data", "re-run `embedscope analyze`")
    dmodel = DataModel.from_bytes(blob[0]["blob"])
    ds = db.dataset(S.embeddings_table_name(model))
    flt = _embeddings_filter(model, variant)
    keys = ds.to_table(columns=["sha256", "created_at"], filter=flt)
    all_sha = keys.column("sha256").combine_chunks()
    parent_flags = db.read(S.FLAGS, ["sha256", "in_fit"], where=f"run_id = '{parent['run_id']}'")
    ref = parent_flags.filter(pc.and_(parent_flags.column("in_fit"), pc.is_in(parent_flags.column("sha256"),
                                                                              value_set=all_sha)))
    ref_sha = ref.column("sha256").combine_chunks()
    if since is None:
        later = [r["run_id"] for r in db.read(S.RUNS, ["run_id", "kind", "params"]).to_pylist()
                 if r["kind"] == "novelty" and json.loads(r["params"] or "{}").get("parent_run") == parent["run_id"]]
        scored = [parent_flags.column("sha256")] + [db.read(S.FLAGS, ["sha256"], where=f"run_id = '{rid}'").column("sha256")
                                                    for rid in later]
        scored_sha = pa.chunked_array([c for s in scored for c in s.chunks], pa.string()).combine_chunks()
        todo_sha = keys.filter(pc.invert(pc.is_in(all_sha, value_set=scored_sha))).column("sha256")
    else:
        cutoff = _since_micros(db, since)
        todo_sha = keys.filter(pc.greater(keys.column("created_at").cast(pa.int64()), cutoff)).column("sha256")
    todo_sha = todo_sha.combine_chunks()
    if len(todo_sha) == 0:
        log.info("novelty: nothing new to score against %s", parent["run_id"])
        return None
    run_id = new_run_id()
    version = int(ds.version)
    pp = parent["params"]
    primary, proj, pdims = pp.get("primary_cluster"), pp.get("primary_projection"), int(pp.get("primary_dims") or 2)

    # the reference rows (the parent's fit rows) and their coordinates in its primary projection
    Xr = np.zeros((len(ref_sha), 0), np.float32)
    for b in ds.to_batches(columns=["sha256", "vector"], filter=flt, batch_size=batch_size):
        pos = pc.index_in(b.column("sha256"), value_set=ref_sha)
        have = pa.array(np.nonzero(pc.is_valid(pos).to_numpy(zero_copy_only=False))[0])
        if len(have):
            V = _batch_vectors(b.take(have))
            if Xr.shape[1] == 0:
                Xr = np.zeros((len(ref_sha), V.shape[1]), np.float32)
            Xr[pos.take(have).to_numpy(zero_copy_only=False).astype(np.int64)] = V
    Xr = normalize(Xr)
    index = KnnIndex(Xr)
    place_index, coords_ref = None, None
    if proj:
        prow = db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                       where=f"run_id = '{parent['run_id']}' AND method = '{proj}' AND dims = {pdims}")
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
        Xb = normalize(_batch_vectors(b))
        scores = score_new(Xb, index, dmodel)
        db.append(S.CLUSTERS, pa.table({
            "run_id": [run_id] * len(sha_new), "sha256": sha_new, "method": [primary] * len(sha_new),
            "cluster": pa.array(scores.cluster, pa.int32()), "probability": pa.nulls(len(sha_new), pa.float32()),
        }))
        if place_index is not None:
            nb = place_index.search(Xb, 10)
            db.append(S.PROJECTIONS, _projection_rows(run_id, sha_new, proj, pdims,
                                                      place_by_neighbors(nb.idx, nb.dist, coords_ref)))
        db.append(S.FLAGS, _flag_rows(run_id, sha_new, scores, False, None, None))
        n_done += len(sha_new)
        n_novel += int(scores.is_novel.sum())
    params = {"parent_run": parent["run_id"], "since": since, "primary_cluster": primary, "primary_projection": proj,
              "primary_dims": pdims, "novelty_threshold": dmodel.threshold, "knn_k": dmodel.knn_k,
              "novelty": pp.get("novelty"), "placement": "projection coords = inverse-distance mean of 10 nearest fitted images",
              "components": "centroid, knn (no GLOSH for images scored later)", "n_reference": len(ref_sha),
              "batch_size": batch_size}
    _write_run(db, run_id, "novelty", model, variant, params, version, n_done)
    log.info("novelty %s: %d images scored against %s, %d novel in %.1fs", run_id, n_done, parent["run_id"],
             n_novel, time.perf_counter() - t0)
    return run_id


def _batch_vectors(batch: Any) -> np.ndarray:
    col = batch.column("vector")
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(len(col), col.type.list_size)
