"""Clusterers as a registry: HDBSCAN, k-means, k-medoids, agglomerative (Ward), DBSCAN, and any
method a caller adds with :func:`register_method`.

A :class:`ClusterMethod` declares what the analysis job needs to know about a method: its name,
whether it needs ``k`` and whether it runs in a reduced space (UMAP/PCA) rather than on the
embeddings, whether it honours ``backend='cuml'``, its ``fit(X, cfg) -> ClusterResult`` and, in
words, how it places rows it was not fitted on. Every method reads its settings from the one
:class:`ClusterConfig` (explicit defaults); :func:`fit_clusters` ``(X, cfg) -> ClusterResult``
runs the method named by ``cfg.method`` — labels in row order, ``-1`` = noise. The job and the
sampled run look methods up here and nowhere else.

HDBSCAN and DBSCAN are meant for a reduced space (the job gives them UMAP-10 or PCA, never the
raw 384/768-d vectors); the others work on the L2-normalised embeddings, where Euclidean
distance is a monotone function of cosine distance. Methods that are quadratic in N
(k-medoids, agglomerative) are fitted on a seeded sample of ``max_fit`` rows and the other
rows are assigned to the nearest medoid / cluster centroid; HDBSCAN above ``hdbscan_max_fit``
rows is fitted on a sample and the rest placed by its approximate prediction; ``info`` says so.

Every result also carries ``place(Z) -> (labels, probabilities | None, glosh | None)``, which
assigns new rows without refitting — k-means ``predict``, HDBSCAN ``approximate_predict`` (+
``approximate_predict_scores`` for GLOSH), the nearest medoid (k-medoids), the nearest cluster
centroid (agglomerative), the nearest core point within ``eps`` (DBSCAN, else noise) — so the
analysis job can fit on a sample and stream the other rows through it. HDBSCAN and k-means run
on cuML when ``backend`` is 'cuml' (no GLOSH for placed rows there: cuML has no
``approximate_predict_scores``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from embedscope.errors import ConfigError

log = logging.getLogger(__name__)

# rows the fit did not see -> (labels, membership probabilities or None, GLOSH outlier scores or None)
Placer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


@dataclass(frozen=True)
class ClusterConfig:
    """How to cluster. ``k`` is used by the methods that declare ``needs_k``."""

    method: str = "hdbscan"
    k: int = 8
    seed: int = 0
    min_cluster_size: int | None = None  # HDBSCAN; None = max(5, min(50, N // 100))
    min_samples: int = 5  # HDBSCAN and DBSCAN
    eps: float | None = None  # DBSCAN; None = 90th percentile of the min_samples-NN distance
    max_fit: int = 5_000  # k-medoids / agglomerative fit on a sample this big
    hdbscan_max_fit: int = 20_000  # HDBSCAN fits on a sample this big, predicts the rest
    dendrogram_max: int = 300  # rows in the stored dendrogram (a seeded sample)
    placeable: bool = False  # keep what ``place`` needs even when every row is fitted (HDBSCAN prediction data)
    backend: str = "cpu"  # 'cpu' | 'cuml' (methods that declare ``gpu`` only)

    def __post_init__(self) -> None:
        if cluster_method(self.method).needs_k and self.k < 2:
            raise ConfigError(f"{self.method} needs k >= 2, got {self.k}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ClusterResult:
    labels: np.ndarray  # int32, -1 = noise
    probabilities: np.ndarray | None = None  # membership strength (HDBSCAN), else None
    outlier_scores: np.ndarray | None = None  # GLOSH (HDBSCAN)
    info: dict[str, Any] = field(default_factory=dict)
    dendrogram: dict[str, Any] | None = None  # agglomerative: scipy linkage of a sample
    place: Placer | None = None  # labels (, probabilities, GLOSH) of rows the fit did not see


@dataclass(frozen=True)
class ClusterMethod:
    """One clustering method, as the analysis job sees it."""

    name: str
    fit: Callable[[np.ndarray, ClusterConfig], ClusterResult]  # its result's ``place`` places unseen rows
    placement: str  # how ``place`` assigns unseen rows, in words (stated in ``methods_info``)
    needs_k: bool = False  # reads ``cfg.k``; ``analyze --k auto`` sweeps k when any such method runs
    reduced_space: bool = False  # fitted in the UMAP / PCA space of ``--hdbscan-space``, not the embeddings
    gpu: bool = False  # honours ``cfg.backend == 'cuml'``


_METHODS: dict[str, ClusterMethod] = {}


def register_method(method: ClusterMethod, *, replace: bool = False) -> ClusterMethod:
    """Make ``method`` available to ``analyze --cluster`` (and every lookup here)."""
    if method.name in _METHODS and not replace:
        raise ConfigError(f"clustering {method.name!r} is already registered", "pass replace=True to swap it")
    _METHODS[method.name] = method
    return method


def unregister_method(name: str) -> None:
    """Remove a method added by :func:`register_method` (no error when it is not there)."""
    _METHODS.pop(name, None)


def cluster_method_names() -> tuple[str, ...]:
    """The registered methods, in registration order (the built-in ones first)."""
    return tuple(_METHODS)


def cluster_method(name: str) -> ClusterMethod:
    """The registered method ``name``; :class:`ConfigError` naming the known ones otherwise."""
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown clustering {name!r}", f"--cluster takes {','.join(_METHODS)}") from None


def fit_clusters(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    """Cluster the rows of ``X`` with the method ``cfg.method``."""
    method = cluster_method(cfg.method)
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if n == 0:
        return ClusterResult(np.zeros(0, np.int32))
    if method.needs_k and n <= cfg.k:
        return ClusterResult(np.arange(n, dtype=np.int32), info={"fallback": f"{n} rows <= k: one cluster each"},
                             place=nearest_center_placer(X))
    result = method.fit(X, cfg)
    result.labels = np.asarray(result.labels, np.int32)
    result.info.setdefault("method", cfg.method)
    result.info.setdefault("n_fit", n)
    return result


def nearest_center_placer(centers: np.ndarray, cosine: bool = False) -> Placer:
    """A ``place`` that gives each row the label of its nearest centre (the centre's row number);
    by cosine when ``cosine``, else Euclidean."""
    centers = np.asarray(centers, np.float32)

    def place(Z: np.ndarray) -> tuple[np.ndarray, None, None]:
        Z = np.asarray(Z, np.float32)
        lab = np.argmax(Z @ centers.T, axis=1) if cosine else _assign_nearest(Z, centers)
        return lab.astype(np.int32), None, None

    return place


def _hdbscan(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    if cfg.backend == "cuml":
        return _hdbscan_cuml(X, cfg)
    import hdbscan

    n = X.shape[0]
    idx = _sample(n, cfg.hdbscan_max_fit, cfg.seed)
    m = len(idx)
    mcs = cfg.min_cluster_size or max(5, min(50, n // 100))
    mcs = max(2, min(int(round(mcs * m / n)) if m < n else mcs, m))
    ms = max(1, min(cfg.min_samples, m - 1))
    from embedscope.analysis.neighbors import usable_cores

    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=ms, core_dist_n_jobs=usable_cores(),
                            prediction_data=m < n or cfg.placeable)
    fit_labels = model.fit_predict(X[idx])
    info: dict[str, Any] = {"min_cluster_size": mcs, "min_samples": ms, "n_fit": m}

    def place(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        Z = np.asarray(Z, np.float32)
        lab, prob = hdbscan.approximate_predict(model, Z)
        gl = np.nan_to_num(np.asarray(hdbscan.approximate_predict_scores(model, Z), np.float32), nan=0.0)
        return np.asarray(lab, np.int32), np.asarray(prob, np.float32), gl

    placer = place if model.prediction_data else None
    if m == n:
        glosh = np.nan_to_num(np.asarray(model.outlier_scores_, np.float32), nan=0.0)
        return ClusterResult(fit_labels, np.asarray(model.probabilities_, np.float32), glosh, info, place=placer)
    # fit on a sample, then place the other rows with HDBSCAN's own approximate prediction
    labels = np.empty(n, np.int32)
    probs = np.empty(n, np.float32)
    glosh = np.empty(n, np.float32)
    rest = np.setdiff1d(np.arange(n), idx)
    labels[idx], probs[idx] = fit_labels, model.probabilities_
    glosh[idx] = np.nan_to_num(model.outlier_scores_, nan=0.0)
    labels[rest], probs[rest] = hdbscan.approximate_predict(model, X[rest])
    glosh[rest] = np.nan_to_num(hdbscan.approximate_predict_scores(model, X[rest]), nan=0.0)
    info["sampled"] = (f"HDBSCAN fitted on a seeded sample of {m} of {n} rows (min_cluster_size scaled to {mcs}); "
                       "the rest placed by approximate_predict / approximate_predict_scores")
    log.info(info["sampled"])
    return ClusterResult(labels, probs, glosh, info, place=placer)


def _hdbscan_cuml(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    """HDBSCAN on the GPU (cuML): fits every row it is given (no inner sample), places new rows
    with cuML's approximate_predict; GLOSH only for the fitted rows."""
    from cuml.cluster import HDBSCAN
    from cuml.cluster.hdbscan import approximate_predict

    from embedscope.analysis.backend import to_host

    n = X.shape[0]
    mcs = max(2, min(cfg.min_cluster_size or max(5, min(50, n // 100)), n))
    ms = max(1, min(cfg.min_samples, n - 1))
    model = HDBSCAN(min_cluster_size=mcs, min_samples=ms, prediction_data=True)
    labels = np.asarray(to_host(model.fit_predict(np.ascontiguousarray(X, np.float32))), np.int32)

    def place(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        lab, prob = approximate_predict(model, np.ascontiguousarray(Z, np.float32))
        return np.asarray(to_host(lab), np.int32), np.asarray(to_host(prob), np.float32), None

    glosh = np.nan_to_num(np.asarray(to_host(model.outlier_scores_), np.float32), nan=0.0)
    return ClusterResult(labels, np.asarray(to_host(model.probabilities_), np.float32), glosh,
                         {"min_cluster_size": mcs, "min_samples": ms, "n_fit": n, "backend": "cuml"}, place=place)


def kmeans_model(X: np.ndarray, k: int, seed: int, n_init: int = 3, backend: str = "cpu") -> Any:
    """A fitted k-means (MiniBatch above 50k rows, which is what scales; cuML's on the GPU)."""
    if backend == "cuml":
        from cuml.cluster import KMeans as CuKMeans

        return CuKMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(np.ascontiguousarray(X, np.float32))
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if X.shape[0] > 50_000:
        return MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init, batch_size=4096).fit(X)
    return KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(X)


def _kmeans(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    from embedscope.analysis.backend import to_host

    model = kmeans_model(X, cfg.k, cfg.seed, backend=cfg.backend)

    def place(Z: np.ndarray) -> tuple[np.ndarray, None, None]:
        return np.asarray(to_host(model.predict(np.ascontiguousarray(Z, np.float32))), np.int32), None, None

    info = {"k": cfg.k, "inertia": float(model.inertia_)}
    if cfg.backend == "cuml":
        info["backend"] = "cuml"
    return ClusterResult(np.asarray(to_host(model.labels_)), info=info, place=place)


def _sample(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def _assign_nearest(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    d = (X * X).sum(1)[:, None] - 2 * X @ centers.T + (centers * centers).sum(1)[None, :]
    return np.argmin(d, axis=1)


def _kmedoids(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    import kmedoids

    n = X.shape[0]
    idx = _sample(n, cfg.max_fit, cfg.seed)
    S = X[idx]
    D = np.clip(1.0 - S @ S.T, 0.0, None).astype(np.float64)  # cosine distance
    res = kmedoids.fasterpam(D, cfg.k, random_state=cfg.seed)
    medoids = S[np.asarray(res.medoids)]
    labels = np.argmax(X @ medoids.T, axis=1)  # nearest medoid by cosine
    info = {"k": cfg.k, "medoid_rows": idx[np.asarray(res.medoids)].tolist(), "n_fit": len(idx)}
    if len(idx) < n:
        info["sampled"] = f"k-medoids fitted on a seeded sample of {len(idx)} of {n} rows; the rest assigned to the nearest medoid"
    return ClusterResult(labels, info=info, place=nearest_center_placer(medoids, cosine=True))


def _agglomerative(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    from scipy.cluster.hierarchy import linkage
    from sklearn.cluster import AgglomerativeClustering

    n = X.shape[0]
    idx = _sample(n, cfg.max_fit, cfg.seed)
    fit_labels = AgglomerativeClustering(n_clusters=cfg.k, linkage="ward").fit_predict(X[idx])
    info: dict[str, Any] = {"k": cfg.k, "linkage": "ward", "n_fit": len(idx)}
    centers = np.stack([X[idx][fit_labels == c].mean(0) for c in range(cfg.k)])
    if len(idx) < n:
        labels = _assign_nearest(X, centers)
        labels[idx] = fit_labels
        info["sampled"] = f"agglomerative fitted on a seeded sample of {len(idx)} of {n} rows; the rest assigned to the nearest cluster centroid"
    else:
        labels = fit_labels
    didx = _sample(n, cfg.dendrogram_max, cfg.seed + 1)
    Z = linkage(X[didx].astype(np.float64), method="ward")
    dendro = {"method": "ward", "rows": didx.tolist(), "linkage": np.round(Z, 6).tolist(),
              "labels": [int(labels[i]) for i in didx]}
    return ClusterResult(labels, info=info, dendrogram=dendro, place=nearest_center_placer(centers))


def _dbscan(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    from sklearn.cluster import DBSCAN
    from sklearn.neighbors import NearestNeighbors

    n = X.shape[0]
    ms = max(2, min(cfg.min_samples, n))
    eps = cfg.eps
    if eps is None:
        nn = NearestNeighbors(n_neighbors=ms).fit(X)
        kd = nn.kneighbors(X)[0][:, -1]
        eps = float(np.quantile(kd, 0.9)) or 1e-6
    model = DBSCAN(eps=eps, min_samples=ms).fit(X)
    labels = model.labels_
    core_labels = labels[model.core_sample_indices_]
    core_nn = NearestNeighbors(n_neighbors=1).fit(X[model.core_sample_indices_]) if len(core_labels) else None

    def place(Z: np.ndarray) -> tuple[np.ndarray, None, None]:
        """The label of the nearest core point when it is within ``eps``, else noise."""
        Z = np.asarray(Z, np.float32)
        if core_nn is None:
            return np.full(len(Z), -1, np.int32), None, None
        dist, j = core_nn.kneighbors(Z)
        return np.where(dist[:, 0] <= eps, core_labels[j[:, 0]], -1).astype(np.int32), None, None

    return ClusterResult(labels, info={"eps": eps, "min_samples": ms}, place=place)


def sweep_k(X: np.ndarray, k_values: list[int], *, seed: int = 0, sample: int = 3_000) -> list[dict[str, float]]:
    """k-means for each k: inertia (the elbow curve) and silhouette on a seeded sample.

    Returns ``[{"k", "inertia", "silhouette"}]``; :func:`best_k` picks the highest silhouette.
    """
    from sklearn.metrics import silhouette_score

    n = X.shape[0]
    fit_idx = _sample(n, SWEEP_FIT_ROWS, seed)
    sil_idx = _sample(len(fit_idx), sample, seed + 1)
    out = []
    for k in k_values:
        if k >= len(fit_idx):
            break
        model = kmeans_model(X[fit_idx], k, seed, n_init=2)
        lab = model.labels_[sil_idx]
        sil = float(silhouette_score(X[fit_idx][sil_idx], lab)) if len(set(lab.tolist())) > 1 else float("nan")
        out.append({"k": k, "inertia": float(model.inertia_), "silhouette": sil})
        log.info("k sweep: k=%d silhouette=%.3f", k, sil)
    return out


SWEEP_FIT_ROWS = 5_000  # each k of the sweep fits k-means (2 inits) on a seeded sample this big
K_AUTO_CAP = 60  # the auto range's top when --k-max is not given: min(this, max(15, sqrt(N)/2))


def k_grid(n: int, k_min: int = 2, k_max: int | None = None, points: int = 12) -> list[int]:
    """The k values an auto-k sweep tries first: every k up to ``points`` values, else a
    geometric grid. The top is ``k_max``, or by default grows with N (``√N/2``, at least 15,
    at most :data:`K_AUTO_CAP`); never above N - 1."""
    top = k_max if k_max is not None else int(min(K_AUTO_CAP, max(15, round(np.sqrt(n) / 2))))
    lo = max(2, k_min)
    top = max(lo, min(top, n - 1))
    if top - lo + 1 <= points:
        return list(range(lo, top + 1))
    return sorted({int(k) for k in np.round(np.geomspace(lo, top, points))})


def k_refinement(grid: list[int], best: int, most: int = 6) -> list[int]:
    """The untried k values between ``best``'s neighbours on ``grid`` (at most ``most``, evenly spread)."""
    i = grid.index(best)
    lo, hi = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    between = [k for k in range(lo + 1, hi) if k not in grid]
    if len(between) > most:
        between = [between[int(j)] for j in np.linspace(0, len(between) - 1, most).round()]
    return sorted(set(between))


def edge_note(ks: list[int], best: int, n: int) -> str | None:
    """A warning when the chosen k sits at an end of the tried range (the true best may lie beyond)."""
    if best == ks[-1] and best < n - 1:
        return (f"the best k ({best}) is the top of the range tried ({ks[0]}..{ks[-1]}): there may be more "
                f"clusters; try --k-max {2 * best} or --k N")
    if best == ks[0] and best > 2:
        return f"the best k ({best}) is the bottom of the range tried; try --k-min 2"
    return None


def best_k(sweep: list[dict[str, float]]) -> int:
    valid = [s for s in sweep if np.isfinite(s["silhouette"])]
    if not valid:
        raise ConfigError("could not choose k: no k gave two or more clusters", "pass --k N")
    return int(max(valid, key=lambda s: s["silhouette"])["k"])


for _builtin in (
    ClusterMethod("hdbscan", _hdbscan, "approximate_predict (+ approximate_predict_scores for GLOSH)",
                  reduced_space=True, gpu=True),
    ClusterMethod("kmeans", _kmeans, "predict", needs_k=True, gpu=True),
    ClusterMethod("kmedoids", _kmedoids, "nearest medoid", needs_k=True),
    ClusterMethod("agglomerative", _agglomerative, "nearest cluster centroid", needs_k=True),
    ClusterMethod("dbscan", _dbscan, "nearest core point within eps, else noise", reduced_space=True),
):
    register_method(_builtin)
