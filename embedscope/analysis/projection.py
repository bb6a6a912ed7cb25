"""Projections of embeddings to 2-D/3-D (or a few dims for clustering): UMAP, t-SNE, PCA.

Each method is a config object with explicit defaults and a pure ``fit(X) -> array``; the
caller keeps the ids beside the rows. Inputs are L2-normalised vectors, so cosine is the
metric for UMAP and t-SNE. What scales: above ``pca_first_above`` input dims, UMAP and t-SNE
see the PCA-``pca_dims`` of the data (stated in ``info``); t-SNE above ``tsne_max_fit`` rows
is fitted on a seeded sample and the other rows are placed with openTSNE's ``transform``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

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


def pca(X: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """PCA to ``dims`` (at most the input's), float32."""
    from sklearn.decomposition import PCA

    dims = min(dims, X.shape[1], X.shape[0])
    return PCA(n_components=dims, random_state=seed).fit_transform(X).astype(np.float32)


def fit_projection(X: np.ndarray, cfg: ProjectionConfig) -> Projection:
    """Project the rows of ``X`` (N × D, L2-normalised) as ``cfg`` says.

    >>> fit_projection(np.eye(4, dtype=np.float32), ProjectionConfig("pca", 2)).coords.shape
    (4, 2)
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    info: dict[str, Any] = {"method": cfg.method, "dims": cfg.dims, "n": n}
    if n == 0:
        return Projection(np.zeros((0, cfg.dims), np.float32), info)
    if cfg.method == "pca":
        Y = pca(X, cfg.dims, cfg.seed)
        if Y.shape[1] < cfg.dims:  # fewer rows/dims than asked: pad with zeros
            Y = np.hstack([Y, np.zeros((n, cfg.dims - Y.shape[1]), np.float32)])
        return Projection(Y, info)
    Z = X
    if X.shape[1] > cfg.pca_first_above and n > cfg.pca_dims:
        Z = pca(X, cfg.pca_dims, cfg.seed)
        info["pca_first"] = cfg.pca_dims
    if cfg.method == "umap":
        Y = _umap(Z, cfg, info)
    else:
        Y = _tsne(Z, cfg, info)
    return Projection(np.asarray(Y, np.float32), info)


def _umap(Z: np.ndarray, cfg: ProjectionConfig, info: dict[str, Any]) -> np.ndarray:
    import umap

    n = Z.shape[0]
    if n <= cfg.dims + 2:
        info["fallback"] = "too few rows for UMAP: PCA"
        return fit_projection(Z, ProjectionConfig("pca", cfg.dims, cfg.seed)).coords
    n_neighbors = max(2, min(cfg.n_neighbors, n - 1))
    reducer = umap.UMAP(
        n_components=cfg.dims,
        n_neighbors=n_neighbors,
        min_dist=cfg.min_dist,
        metric="cosine",
        random_state=cfg.seed,
        init="spectral" if n > cfg.dims + 1 else "random",
        n_jobs=1,  # a fixed seed makes UMAP single-threaded anyway; say so explicitly
    )
    info.update(metric="cosine", n_neighbors=n_neighbors, min_dist=cfg.min_dist, seed=cfg.seed)
    return reducer.fit_transform(Z)


def _tsne(Z: np.ndarray, cfg: ProjectionConfig, info: dict[str, Any]) -> np.ndarray:
    from openTSNE import TSNE

    n = Z.shape[0]
    perplexity = min(cfg.perplexity, max(2.0, (n - 1) / 3.0))
    info.update(metric="cosine", perplexity=perplexity, seed=cfg.seed, implementation="openTSNE")
    if n < 8:
        info["fallback"] = "too few rows for t-SNE: PCA"
        return fit_projection(Z, ProjectionConfig("pca", cfg.dims, cfg.seed)).coords
    tsne = TSNE(n_components=cfg.dims, perplexity=perplexity, metric="cosine", random_state=cfg.seed,
                n_jobs=1, negative_gradient_method="fft" if cfg.dims <= 2 and n >= 10_000 else "bh", verbose=False)
    info["gradient"] = tsne.negative_gradient_method  # FFT pays off only for large N
    if n <= cfg.tsne_max_fit:
        return np.asarray(tsne.fit(Z))
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
    return out


def place_by_neighbors(neighbor_idx: np.ndarray, neighbor_dist: np.ndarray, ref_coords: np.ndarray) -> np.ndarray:
    """Coordinates for new points: the inverse-distance-weighted mean of their reference
    neighbours' coordinates (used to put held-out / later images into a fitted projection
    without refitting it)."""
    w = 1.0 / np.maximum(neighbor_dist, 1e-6)
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", w, ref_coords[neighbor_idx]).astype(np.float32)
