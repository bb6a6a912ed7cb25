"""Synthetic embeddings with known structure, for tests and benchmarks.

Gaussian blobs on the unit sphere whose centres share a common direction (so they are near
each other, like the classes of one dataset), plus a small planted cluster far from all of
them (the "contamination"), plus planted outliers (uniform on the sphere), plus near-duplicate
copies of a few blob points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Synthetic:
    ids: list[str]
    X: np.ndarray  # (N, D) float32, L2-normalised
    truth: np.ndarray  # blob index 0..n_blobs-1, n_blobs = planted cluster, -1 = outlier
    kind: np.ndarray  # 'blob' | 'planted' | 'outlier' | 'dup'
    dup_pairs: list[tuple[str, str]]
    labels: list[str]  # 'blob<i>' / 'planted' / 'outlier' (usable as image labels)
    centers: np.ndarray  # (n_blobs, D) the blob centres, to draw more points from them later
    spread: float


def more_points(syn: Synthetic, n_inliers: int, n_outliers: int, seed: int = 1,
                prefix: str = "new") -> tuple[list[str], np.ndarray, np.ndarray]:
    """New points from the same blobs plus new outliers: (ids, X, is_outlier)."""
    rng = np.random.default_rng(seed)
    dim = syn.centers.shape[1]
    which = rng.integers(0, len(syn.centers), n_inliers)
    inl = syn.centers[which] + syn.spread / np.sqrt(dim) * rng.normal(size=(n_inliers, dim))
    X = np.concatenate([inl, rng.normal(size=(n_outliers, dim))])
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    ids = [f"{prefix}{i:05d}" for i in range(len(X))]
    return ids, X, np.array([False] * n_inliers + [True] * n_outliers)


def make_blobs(n_per_blob: int = 150, n_blobs: int = 5, dim: int = 384, n_planted: int = 20, n_outliers: int = 30,
               n_dups: int = 8, seed: int = 0, spread: float = 0.5, planted_spread: float = 0.3) -> Synthetic:
    """Blobs, a planted far cluster, outliers and near-duplicate pairs, shuffled."""
    rng = np.random.default_rng(seed)

    def unit(v: np.ndarray) -> np.ndarray:
        return v / np.linalg.norm(v, axis=-1, keepdims=True)

    base = unit(rng.normal(size=dim))
    centers = unit(base + 0.8 * unit(rng.normal(size=(n_blobs, dim))))
    planted_center = unit(-base + 0.3 * unit(rng.normal(size=dim)))
    parts, truth, kind = [], [], []
    for b in range(n_blobs):
        parts.append(unit(centers[b] + spread / np.sqrt(dim) * rng.normal(size=(n_per_blob, dim))))
        truth += [b] * n_per_blob
        kind += ["blob"] * n_per_blob
    parts.append(unit(planted_center + planted_spread / np.sqrt(dim) * rng.normal(size=(n_planted, dim))))
    truth += [n_blobs] * n_planted
    kind += ["planted"] * n_planted
    parts.append(unit(rng.normal(size=(n_outliers, dim))))
    truth += [-1] * n_outliers
    kind += ["outlier"] * n_outliers
    X = np.concatenate(parts)
    src = rng.choice(n_blobs * n_per_blob, n_dups, replace=False)
    dups = unit(X[src] + 0.05 / np.sqrt(dim) * rng.normal(size=(n_dups, dim)))
    X = np.concatenate([X, dups]).astype(np.float32)
    truth += [truth[i] for i in src]
    kind += ["dup"] * n_dups
    ids = [f"v{i:06d}" for i in range(len(X))]
    dup_pairs = [(ids[s], ids[n_blobs * n_per_blob + n_planted + n_outliers + j]) for j, s in enumerate(src)]
    perm = rng.permutation(len(X))
    truth_arr, kind_arr = np.array(truth)[perm], np.array(kind)[perm]
    labels = [f"blob{t}" if 0 <= t < n_blobs else ("planted" if t == n_blobs else "outlier") for t in truth_arr]
    return Synthetic([ids[i] for i in perm], X[perm], truth_arr, kind_arr, dup_pairs, labels, centers, spread)
