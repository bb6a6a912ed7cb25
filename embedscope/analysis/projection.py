"""Projections of embeddings to 2-D/3-D (or a few dims for clustering): UMAP, t-SNE, PCA.

Each method is a config object with explicit defaults and a pure ``fit(X) -> array``; the
caller keeps the ids beside the rows. Inputs are L2-normalised vectors, so cosine is the
metric for UMAP and t-SNE. What scales: above ``pca_first_above`` input dims, UMAP and t-SNE
see the PCA-``pca_dims`` of the data (stated in ``info``); t-SNE above ``tsne_max_fit`` rows
is fitted on a seeded sample and the other rows are placed with openTSNE's ``transform``.
Every fitted projection also carries ``transform``, which places new rows in it without
refitting (PCA / UMAP / openTSNE ``transform``): the job's sample-then-place pass uses it.
UMAP runs on cuML when the config's ``backend`` is 'cuml' (see :mod:`embedscope.analysis.backend`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from embedscope.errors import ConfigError

log = logging.getLogger(__name__)

PROJECTION_METHODS = ("umap", "tsne", "pca")


@dataclass(frozen=True)
class ProjectionConfig:
    """How to project. ``method`` is umap | tsne | pca; ``dims`` the output dimensions."""

    method: str = "umap"
    dims: int = 2
    seed: int = 0
    n_neighbors: int = 15  # UMAP
    min_dist: float = 0.1  # UMAP
    perplexity: float = 30.0  # t-SNE
    pca_dims: int = 50  # UMAP/t-SNE see PCA-50 of wider inputs ...
    pca_first_above: int = 64  # ... when the input has more dims than this
    tsne_max_fit: int = 20_000  # t-SNE fits on a sample this big, transforms the rest
    backend: str = "cpu"  # 'cpu' | 'cuml' (UMAP only), resolved by analysis.backend
    parallel: bool = False  # UMAP on every core, unseeded (umap-learn is single-threaded when seeded)
    n_epochs: int | None = None  # UMAP; None: umap-learn's own (200 above 10k rows, else 500)

    def __post_init__(self) -> None:
        if self.method not in PROJECTION_METHODS:
            raise ConfigError(f"unknown projection {self.method!r}", f"use one of {', '.join(PROJECTION_METHODS)}")
        if self.dims < 1:
            raise ConfigError(f"projection dims must be >= 1, got {self.dims}")

    @property
    def space(self) -> str:
        """The name this projection has as a metric space, e.g. ``umap2d``."""
        return f"{self.method}{self.dims}d"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Projection:
    """The projected coordinates (rows in the order of the input) and how they were made."""

    coords: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    transform: Callable[[np.ndarray], np.ndarray] | None = None  # places new rows (L2-normalised)


def pca(X: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` (at most the input's), float32."""
    from sklearn.decomposition import PCA

    dims = min(dims, X.shape[1], X.shape[0])
    return PCA(n_components=dims, random_state=seed).fit_transform(X).astype(np.float32)


def pca_fit(X: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """:func:`pca` plus the fitted transform, to place new rows in the same space."""
    from sklearn.decomposition import PCA

    dims = min(dims, X.shape[1], X.shape[0])
    model = PCA(n_components=dims, random_state=seed)
    coords = model.fit_transform(X).astype(np.float32)
    return coords, lambda Q: model.transform(np.asarray(Q, np.float32)).astype(np.float32)


def fit_projection(X: np.ndarray, cfg: ProjectionConfig, *, knn: tuple[np.ndarray, np.ndarray] | None = None) -> Projection:
    """Project the rows of ``X`` (N × D, L2-normalised) as ``cfg`` says.

    ``knn``: the rows' cosine kNN graph ``(idx, dist)``, each row's own index first at distance 0
    (see :func:`umap_graph`); UMAP then builds its fuzzy graph from it instead of searching again
    (its ``transform`` is then unavailable: pass it only when no row will be placed later).

    >>> fit_projection(np.eye(4, dtype=np.float32), ProjectionConfig("pca", 2)).coords.shape
    (4, 2)
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    info: dict[str, Any] = {"method": cfg.method, "dims": cfg.dims, "n": n}
    if n == 0:
        return Projection(np.zeros((0, cfg.dims), np.float32), info)
    if cfg.method == "pca":
        Y, tf = pca_fit(X, cfg.dims, cfg.seed)
        pad = cfg.dims - Y.shape[1]
        if pad > 0:  # fewer rows/dims than asked: pad with zeros

            def tf_pad(Q: np.ndarray, _tf: Callable = tf) -> np.ndarray:
                P = _tf(Q)
                return np.hstack([P, np.zeros((len(P), pad), np.float32)])

            Y, tf = np.hstack([Y, np.zeros((n, pad), np.float32)]), tf_pad
        return Projection(Y, info, tf)
    Z, first = X, None
    if X.shape[1] > cfg.pca_first_above and n > cfg.pca_dims:
        Z, first = pca_fit(X, cfg.pca_dims, cfg.seed)
        info["pca_first"] = cfg.pca_dims
    if cfg.method == "umap":
        Y, inner = _umap(Z, cfg, info, knn)
    else:
        Y, inner = _tsne(Z, cfg, info)

    def transform(Q: np.ndarray) -> np.ndarray:
        Q = np.asarray(Q, np.float32)
        return np.asarray(inner(first(Q) if first is not None else Q), np.float32)

    return Projection(np.asarray(Y, np.float32), info, transform)


def umap_graph(idx: np.ndarray, dist: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """umap-learn's ``precomputed_knn`` from leave-one-out neighbours (``idx``/``dist`` without
    the row itself): each row first, at distance 0, then its ``n_neighbors - 1`` nearest."""
    n = len(idx)
    k = max(1, min(n_neighbors, n) - 1)
    own = np.arange(n, dtype=np.int64)[:, None]
    return (np.hstack([own, idx[:, :k]]).astype(np.int64),
            np.hstack([np.zeros((n, 1), np.float32), dist[:, :k]]).astype(np.float32))


def _umap(Z: np.ndarray, cfg: ProjectionConfig, info: dict[str, Any],
          knn: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, Callable]:
    n = Z.shape[0]
    if n <= cfg.dims + 2:
        info["fallback"] = "too few rows for UMAP: PCA"
        p = fit_projection(Z, ProjectionConfig("pca", cfg.dims, cfg.seed))
        return p.coords, p.transform
    n_neighbors = max(2, min(cfg.n_neighbors, n - 1))
    if cfg.backend == "cuml":
        return _umap_cuml(Z, cfg, info, n_neighbors)
    import umap

    small = n < SMALL_UMAP
    reducer = umap.UMAP(
        n_components=cfg.dims,
        n_neighbors=n_neighbors,
        min_dist=cfg.min_dist,
        metric="precomputed" if small else "cosine",
        random_state=None if cfg.parallel else cfg.seed,
        init="spectral" if n > cfg.dims + 1 else "random",
        n_jobs=-1 if cfg.parallel else 1,  # a fixed seed makes umap-learn single-threaded anyway
        n_epochs=cfg.n_epochs,
    )
    info.update(metric="cosine", n_neighbors=n_neighbors, min_dist=cfg.min_dist, seed=cfg.seed)
    if cfg.n_epochs:
        info["n_epochs"] = cfg.n_epochs
    if cfg.parallel:
        info["reproducible"] = "no: unseeded, on every core (above --reproducible-max rows); the layout differs run to run"
    if not small and knn is not None and knn[0].shape[1] >= n_neighbors:
        import warnings

        reducer.precomputed_knn = (knn[0][:, :n_neighbors], knn[1][:, :n_neighbors], None)
        info["knn_graph"] = "the run's one cosine kNN graph (see methods_info.knn), shared by every UMAP and novelty"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            Y = reducer.fit_transform(Z)

        def no_transform(Q: np.ndarray) -> np.ndarray:
            raise ConfigError("this UMAP was fitted on a precomputed kNN graph and cannot place new rows")

        return Y, no_transform
    if not small:
        return reducer.fit_transform(Z), reducer.transform
    # below 4096 rows umap-learn computes all pairwise distances with a per-pair Python call
    # (minutes for a few thousand rows, and again for every transformed batch); the same
    # cosine distances from one matrix product give the same embedding in a fraction of that
    import warnings

    U = _unit(Z)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precomputed.*")
        Y = reducer.fit_transform(_cosine_distances(U, U))

    def transform(Q: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*precomputed.*")
            return reducer.transform(_cosine_distances(_unit(Q), U))

    return Y, transform


SMALL_UMAP = 4096  # umap-learn's own "small data" threshold (exact all-pairs distances below it)


def _unit(Z: np.ndarray) -> np.ndarray:
    Z = np.asarray(Z, np.float64)
    return Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12)


def _cosine_distances(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    D = 1.0 - A @ B.T
    np.clip(D, 0.0, 2.0, out=D)
    if A is B:
        np.fill_diagonal(D, 0.0)
    return D


def _umap_cuml(Z: np.ndarray, cfg: ProjectionConfig, info: dict[str, Any], n_neighbors: int) -> tuple[np.ndarray, Callable]:
    """UMAP on the GPU (cuML). Inputs are L2-normalised, so Euclidean ranks neighbours as cosine does."""
    from cuml.manifold import UMAP

    from embedscope.analysis.backend import to_host

    reducer = UMAP(n_components=cfg.dims, n_neighbors=n_neighbors, min_dist=cfg.min_dist, metric="euclidean",
                   random_state=cfg.seed, init="spectral")
    info.update(metric="euclidean on unit vectors (cuML)", n_neighbors=n_neighbors, min_dist=cfg.min_dist,
                seed=cfg.seed, backend="cuml")
    Y = to_host(reducer.fit_transform(np.ascontiguousarray(Z, np.float32)))
    return Y, lambda Q: to_host(reducer.transform(np.ascontiguousarray(Q, np.float32)))


def _tsne(Z: np.ndarray, cfg: ProjectionConfig, info: dict[str, Any]) -> tuple[np.ndarray, Callable]:
    from openTSNE import TSNE

    n = Z.shape[0]
    perplexity = min(cfg.perplexity, max(2.0, (n - 1) / 3.0))
    info.update(metric="cosine", perplexity=perplexity, seed=cfg.seed, implementation="openTSNE")
    if n < 8:
        info["fallback"] = "too few rows for t-SNE: PCA"
        p = fit_projection(Z, ProjectionConfig("pca", cfg.dims, cfg.seed))
        return p.coords, p.transform
    tsne = TSNE(n_components=cfg.dims, perplexity=perplexity, metric="cosine", random_state=cfg.seed,
                n_jobs=1, negative_gradient_method="fft" if cfg.dims <= 2 and n >= 10_000 else "bh", verbose=False)
    info["gradient"] = tsne.negative_gradient_method  # FFT pays off only for large N
    if n <= cfg.tsne_max_fit:
        emb = tsne.fit(Z)
        return np.asarray(emb), lambda Q: np.asarray(emb.transform(np.asarray(Q, np.float64)))
    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.choice(n, cfg.tsne_max_fit, replace=False))
    info["sampled"] = f"t-SNE fitted on a seeded sample of {cfg.tsne_max_fit} of {n} rows; the rest placed by transform"
    log.info(info["sampled"])
    emb = tsne.fit(Z[idx])
    out = np.zeros((n, cfg.dims), np.float32)
    mask = np.ones(n, bool)
    mask[idx] = False
    out[idx] = np.asarray(emb)
    out[mask] = np.asarray(emb.transform(Z[mask]))
    return out, lambda Q: np.asarray(emb.transform(np.asarray(Q, np.float64)))


def place_by_neighbors(neighbor_idx: np.ndarray, neighbor_dist: np.ndarray, ref_coords: np.ndarray) -> np.ndarray:
    """Coordinates for new points: the inverse-distance-weighted mean of their reference
    neighbours' coordinates (used to put held-out / later images into a fitted projection
    without refitting it)."""
    w = 1.0 / np.maximum(neighbor_dist, 1e-6)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, ref_coords[neighbor_idx]).astype(np.float32)
