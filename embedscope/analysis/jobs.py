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
from embedscope.analysis.neighbors import knn, normalize
from embedscope.analysis.novelty import DataModel, NoveltyConfig, Scores, fit_model, score_new
from embedscope.analysis.projection import PROJECTION_METHODS, ProjectionConfig, fit_projection, pca, place_by_neighbors
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


def _read_embeddings(db: Database, model: str, variant: str) -> _Data:
    name = S.embeddings_table_name(model)
    ds = db.dataset(name)
    version = int(ds.version)
    tbl = ds.to_table(columns=["sha256", "vector", "created_at"],
                      filter=f"variant = '{variant}' AND model = '{model.replace(chr(39), chr(39) * 2)}'")
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


# -- the full analysis ------------------------------------------------------------------------


def run_analysis(db: Database, params: AnalysisParams) -> str:
    """Run one full analysis as ``params`` says and store it; returns the new ``run_id``."""
    timer = _Timer()
    model, variant = resolve_model_variant(db, params.model, params.variant)
    data = _read_embeddings(db, model, variant)
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
    methods_info: dict[str, Any] = {}
    metric_rows: list[dict[str, Any]] = []

    def metric(name: str, value: float, method: str = "", space: str = "embedding", k: int | None = None) -> None:
        if value is not None and np.isfinite(value):
            metric_rows.append({"run_id": run_id, "name": name, "method": method, "space": space, "k": k, "value": float(value)})

    # neighbours (leave-one-out inside the fit set), used by novelty, kNN accuracy and duplicates
    t = time.perf_counter()
    k_nb = max(params.novelty.knn_k, 10)
    search = params.knn_search_dims if nf > params.knn_exact_max else None
    nb = knn(Xf, Xf, k_nb, exclude_self=True, search_dims=search, seed=params.seed)
    if nb.approximate:
        methods_info["knn"] = (f"{nf} rows > {params.knn_exact_max}: neighbour candidates from PCA-{search}, "
                               "distances exact")
    timer.stage("neighbours", t)

    # projections (shared cache: HDBSCAN's UMAP space reuses a projection of the same dims)
    projections: dict[tuple[str, int], np.ndarray] = {}

    def project(method: str, dims: int) -> np.ndarray:
        if (method, dims) not in projections:
            t0 = time.perf_counter()
            cfg = ProjectionConfig(method, dims, params.seed, params.n_neighbors, params.min_dist, params.perplexity,
                                   tsne_max_fit=params.tsne_max_fit)
            res = fit_projection(Xf, cfg)
            projections[(method, dims)] = res.coords
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
    glosh = None
    dendrogram = None
    for method in params.cluster:
        if method in REDUCED_SPACE:
            if params.hdbscan_space == "umap":
                Z = project("umap", params.hdbscan_dims)
            else:
                Z = pca(Xf, params.hdbscan_dims, params.seed)
            space = f"{params.hdbscan_space}{params.hdbscan_dims}d"
        else:
            Z, space = Xf, "embedding"
        t = time.perf_counter()  # after the reduced space, which is timed on its own
        cfg = ClusterConfig(method, k or 8, params.seed, params.min_cluster_size, params.min_samples, params.eps,
                            params.max_fit, params.hdbscan_max_fit)
        res = fit_clusters(Z, cfg)
        labels_by[method], prob_by[method] = res.labels, res.probabilities
        methods_info[method] = {**res.info, "space": space}
        if res.outlier_scores is not None and glosh is None:
            glosh = res.outlier_scores
        if res.dendrogram is not None:
            dendrogram = {**res.dendrogram, "sha256": [data.sha[fit_idx[i]] for i in res.dendrogram.pop("rows")]}
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
    primary = params.primary_cluster
    dmodel, fit_scores = fit_model(Xf, labels_by[primary], params.novelty, glosh=glosh,
                                   truth=truth_f if has_labels else None, neighbors_dist=nb.dist)
    hold_scores = score_new(data.X[hold_idx], Xf, dmodel) if len(hold_idx) else None
    timer.stage("novelty", t)

    # near-duplicates over all images (fit + held out)
    t = time.perf_counter()
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
    for (pm, pd), coords in projections.items():
        if pm not in params.project or pd not in params.dims:
            continue  # a reduced space used only for clustering
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
    db.upsert(S.METRICS, pa.Table.from_pylist(metric_rows, schema=S.METRICS_SCHEMA))
    db.upsert(S.RUN_MODELS, pa.table({"run_id": [run_id], "format": [MODEL_FORMAT], "blob": [dmodel.to_bytes()],
                                      "created_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC"))}))
    timer.stage("write", t)

    run_params = params.as_dict()
    run_params.update(
        model=model, variant=variant, k_resolved=k, primary_cluster=primary,
        primary_projection=params.primary_projection, primary_dims=params.primary_dims,
        novelty_threshold=dmodel.threshold, novelty_stats=dmodel.stats,
        contaminated_clusters={str(c): r for c, r in dmodel.contaminated.items()},
        n_fit=nf, n_holdout=int(len(hold_idx)), methods_info=methods_info, timings_s=timer.stages,
        has_labels=has_labels, run_model_format=MODEL_FORMAT,
    )
    if dendrogram is not None:
        run_params["dendrogram"] = dendrogram
    _write_run(db, run_id, "analyze", model, variant, run_params, data.version, n)
    log.info("analyze %s: %d images, %d novel, %d contaminated, %d dup groups in %.1fs", run_id, n, n_novel, n_cont,
             len(set(dup_group.tolist()) - {-1}), time.perf_counter() - timer.t0)
    return run_id


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
                     variant: str = S.VARIANT_FULL) -> str | None:
    """Score images newer than ``since`` (a run_id or ISO timestamp; None = images that no run
    since the latest analyze run has scored) against the latest analyze run's model of the
    data, without refitting. Writes a ``kind='novelty'`` run; returns its id, or None when
    there was nothing to score."""
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
    data = _read_embeddings(db, model, variant)
    pos = {s: i for i, s in enumerate(data.sha)}
    parent_flags = db.read(S.FLAGS, ["sha256", "in_fit"], where=f"run_id = '{parent['run_id']}'")
    ref_sha = [s for s, f in zip(parent_flags.column("sha256").to_pylist(), parent_flags.column("in_fit").to_pylist())
               if f and s in pos]
    if since is None:
        later = [r["run_id"] for r in db.read(S.RUNS, ["run_id", "kind", "params"]).to_pylist()
                 if r["kind"] == "novelty" and json.loads(r["params"] or "{}").get("parent_run") == parent["run_id"]]
        scored = set(parent_flags.column("sha256").to_pylist())
        for rid in later:
            scored.update(db.read(S.FLAGS, ["sha256"], where=f"run_id = '{rid}'").column("sha256").to_pylist())
        todo = [i for i, s in enumerate(data.sha) if s not in scored]
    else:
        cutoff = _since_micros(db, since)
        todo = np.nonzero(data.created_at > cutoff)[0].tolist()
    if not todo:
        log.info("novelty: nothing new to score against %s", parent["run_id"])
        return None
    run_id = new_run_id()
    todo_idx = np.array(todo, np.int64)
    ref_idx = np.array([pos[s] for s in ref_sha], np.int64)
    Xr = data.X[ref_idx]
    scores = score_new(data.X[todo_idx], Xr, dmodel)
    sha_new = [data.sha[i] for i in todo_idx]
    pp = parent["params"]
    primary, proj, pdims = pp.get("primary_cluster"), pp.get("primary_projection"), int(pp.get("primary_dims") or 2)
    db.upsert(S.CLUSTERS, pa.table({
        "run_id": [run_id] * len(sha_new), "sha256": sha_new, "method": [primary] * len(sha_new),
        "cluster": pa.array(scores.cluster, pa.int32()), "probability": pa.nulls(len(sha_new), pa.float32()),
    }))
    if proj:
        prow = db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                       where=f"run_id = '{parent['run_id']}' AND method = '{proj}' AND dims = {pdims}")
        ppos = {s: i for i, s in enumerate(prow.column("sha256").to_pylist())}
        have = [i for i, s in enumerate(ref_sha) if s in ppos]
        if have:
            cols = ["x", "y", "z"][:pdims]
            P = np.stack([prow.column(c).to_numpy(zero_copy_only=False) for c in cols], 1).astype(np.float32)
            coords_ref = P[[ppos[ref_sha[i]] for i in have]]
            nb = knn(data.X[todo_idx], Xr[have], 10)
            coords = place_by_neighbors(nb.idx, nb.dist, coords_ref)
            db.upsert(S.PROJECTIONS, _projection_rows(run_id, sha_new, proj, pdims, coords))
    db.upsert(S.FLAGS, _flag_rows(run_id, sha_new, scores, False, None, None))
    params = {"parent_run": parent["run_id"], "since": since, "primary_cluster": primary, "primary_projection": proj,
              "primary_dims": pdims, "novelty_threshold": dmodel.threshold, "knn_k": dmodel.knn_k,
              "novelty": pp.get("novelty"), "placement": "projection coords = inverse-distance mean of 10 nearest fitted images",
              "components": "centroid, knn (no GLOSH for images scored later)", "n_reference": len(ref_sha)}
    _write_run(db, run_id, "novelty", model, variant, params, data.version, len(sha_new))
    log.info("novelty %s: %d images scored against %s, %d novel in %.1fs", run_id, len(sha_new), parent["run_id"],
             int(scores.is_novel.sum()), time.perf_counter() - t0)
    return run_id
