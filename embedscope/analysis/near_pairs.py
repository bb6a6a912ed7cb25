"""Every near-duplicate pair over all rows: an exact range search (cosine distance ≤ threshold).

The pairs are found in two steps, neither of which can miss a pair:

1. **Candidates in a PCA space.** The rows are L2-normalised, so ``‖a − b‖² = 2 · cosine
   distance``. PCA to ``search_dims`` is a projection onto orthonormal axes, which never
   lengthens a difference, so every pair within the threshold is within ``√(2·threshold)`` in
   the PCA space too. The PCA space is cut into cells (k-means); a row is compared with the
   rows of another cell only when its distance to the hyperplane that bisects the two cell
   centres is within that radius (beyond it, every row of the other cell is farther), so the
   search is an IVF-flat range search with an exact probe rule instead of a fixed ``nprobe``.
2. **Exact distances** of the candidates in the full space (a re-rank), keeping those within
   the threshold.

Measured against faiss IVF-flat and the old kNN-then-threshold pass in
``benchmarks/bench_analysis.py``. The search needs only the PCA coordinates of every row
(``n × search_dims`` floats), so a sampled run collects them batch by batch and re-ranks the
few candidates by reading their vectors afterwards (:func:`rerank`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from embedscope.analysis.duplicates import DuplicateConfig, groups_from_pairs
from embedscope.analysis.neighbors import normalize
from embedscope.analysis.progress import Progress as ProgressLog

Progress = Callable[[int], None]  # called with the number of rows (cell members) just searched


@dataclass
class PairSpace:
    """The PCA map rows are searched in (fitted once, e.g. on a fit sample)."""

    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (D, d) orthonormal columns

    def __call__(self, X: np.ndarray) -> np.ndarray:
        """The PCA coordinates plus one more: the length of what PCA leaves out. A pair's
        squared distance here is still a lower bound of its true one (Pythagoras, and the reverse
        triangle inequality on the left-out parts), and a much tighter one."""
        C = normalize(X) - self.mean
        P = C @ self.axes
        rest = np.sqrt(np.maximum((C * C).sum(1) - (P * P).sum(1), 0.0))
        return np.hstack([P, rest[:, None]]).astype(np.float32)


def pair_space(X: np.ndarray, dims: int = 96, *, seed: int = 0, max_fit: int = 50_000) -> PairSpace:
    """A PCA map to ``dims`` fitted on (a seeded sample of at most ``max_fit`` of) the rows of ``X``."""
    from sklearn.decomposition import PCA

    X = normalize(X)
    n, d = X.shape
    if n > max_fit:
        X = X[np.random.default_rng(seed).choice(n, max_fit, replace=False)]
    dims = min(dims, d, len(X))
    if dims >= d:  # nothing to gain: the identity (still exact)
        return PairSpace(np.zeros(d, np.float32), np.eye(d, dtype=np.float32))
    p = PCA(n_components=dims, random_state=seed).fit(X)
    return PairSpace(p.mean_.astype(np.float32), p.components_.T.astype(np.float32))


def radius_sq(threshold: float) -> float:
    """The squared Euclidean radius of a cosine-distance threshold (unit vectors), with a margin
    for float32 rounding so a pair at the threshold is never lost to it."""
    return 2.0 * threshold * (1 + 1e-4) + 1e-5


def candidate_pairs(Z: np.ndarray, r_sq: float, *, seed: int = 0, cells: int | None = None,
                    progress: Progress | None = None) -> np.ndarray:
    """Every pair (i, j), i < j, of rows of ``Z`` with ``‖Z_i − Z_j‖² ≤ r_sq`` (exact; int64 m × 2)."""
    Z = np.ascontiguousarray(Z, np.float32)
    n = len(Z)
    if n < 2:
        return np.zeros((0, 2), np.int64)
    # few cells: in many dimensions a row is near the bisector of most cell pairs, so many small
    # cells mean many probes (measured: sqrt(n)/10 was the fastest of 15..350 cells at 30k-100k rows)
    cells = cells or int(min(128, max(8, round(math.sqrt(n) / 10))))
    if n < 4096 or cells < 2:
        out = _block_pairs(Z, np.arange(n), np.arange(n), r_sq, upper=True)
        if progress:
            progress(n)
        return out
    from sklearn.cluster import MiniBatchKMeans

    rng = np.random.default_rng(seed)
    fit_rows = Z if n <= 100_000 else Z[rng.choice(n, 100_000, replace=False)]
    cent = MiniBatchKMeans(n_clusters=cells, random_state=seed, n_init=1, batch_size=8192,
                           max_iter=30).fit(fit_rows).cluster_centers_.astype(np.float32)
    c_sq = (cent * cent).sum(1)
    gap = np.sqrt(np.maximum(c_sq[:, None] + c_sq[None, :] - 2 * cent @ cent.T, 1e-12))  # ‖c_i − c_j‖
    r = math.sqrt(r_sq)
    own = np.empty(n, np.int64)
    probe_rows, probe_cells = [], []
    step = max(1024, 20_000_000 // cells)
    for s in range(0, n, step):
        z = Z[s:s + step]
        d = (z * z).sum(1)[:, None] + c_sq[None, :] - 2 * z @ cent.T  # squared distance to each centre
        o = np.argmin(d, axis=1)
        own[s:s + step] = o
        # distance to the bisecting hyperplane of (own cell, j); probe j when within r (j > own only:
        # the pair (a in i, b in j), i < j, is found once, from a's side)
        h = (d - d[np.arange(len(z)), o][:, None]) / (2 * gap[o])
        rr, cc = np.nonzero((h <= r) & (np.arange(cells)[None, :] > o[:, None]))
        probe_rows.append(rr + s)
        probe_cells.append(cc)
    pr, pc = np.concatenate(probe_rows), np.concatenate(probe_cells)
    members = _group(own, cells)
    probes = _group(pc, cells, pr)
    out = []
    for j in range(cells):
        m = members[j]
        if len(m):
            out.append(_block_pairs(Z, m, m, r_sq, upper=True))
            if len(probes[j]):
                out.append(_block_pairs(Z, probes[j], m, r_sq, upper=False))
        if progress:
            progress(len(m))
    out = [p for p in out if len(p)]
    if not out:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(out)
    return np.stack([pairs.min(1), pairs.max(1)], axis=1)


def _group(keys: np.ndarray, n_groups: int, values: np.ndarray | None = None) -> list[np.ndarray]:
    """``values`` (default: positions) split by ``keys`` into ``n_groups`` lists."""
    order = np.argsort(keys, kind="stable")
    vals = order if values is None else values[order]
    bounds = np.searchsorted(keys[order], np.arange(n_groups + 1))
    return [vals[bounds[g]:bounds[g + 1]] for g in range(n_groups)]


def _block_pairs(Z: np.ndarray, rows: np.ndarray, cols: np.ndarray, r_sq: float, *, upper: bool,
                 chunk: int = 2048) -> np.ndarray:
    """Pairs (rows[a], cols[b]) within ``r_sq``; with ``upper`` (rows is cols), only a < b."""
    C = Z[cols]
    c_sq = (C * C).sum(1)
    out = []
    for s in range(0, len(rows), chunk):
        R = Z[rows[s:s + chunk]]
        d = (R * R).sum(1)[:, None] + c_sq[None, :] - 2 * R @ C.T
        a, b = np.nonzero(d <= r_sq)
        if upper:
            keep = b > a + s
            a, b = a[keep], b[keep]
        out.append(np.stack([rows[a + s], cols[b]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def rerank(pairs: np.ndarray, vectors: Callable[[np.ndarray], np.ndarray], threshold: float,
           *, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine distances of candidate ``pairs``; returns those within ``threshold`` and
    their distances. ``vectors(rows)`` gives the (any-norm) vectors of the given row numbers."""
    if not len(pairs):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    keep, dist = [], []
    for s in range(0, len(pairs), chunk):
        p = pairs[s:s + chunk]
        rows, inv = np.unique(p.ravel(), return_inverse=True)
        V = normalize(vectors(rows))
        inv = inv.reshape(-1, 2)
        d = 1.0 - np.einsum("nd,nd->n", V[inv[:, 0]], V[inv[:, 1]])
        ok = d <= threshold
        keep.append(p[ok])
        dist.append(d[ok].astype(np.float32))
    return np.concatenate(keep), np.concatenate(dist)


def near_pairs(X: np.ndarray, threshold: float, *, search_dims: int = 96, seed: int = 0,
               progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, of rows of ``X`` within cosine distance ``threshold``, and
    their distances — exactly what comparing every pair would return (see the module docstring).

    >>> X = np.array([[1, 0], [1, 0.01], [0, 1]], np.float32)
    >>> near_pairs(X, 0.03)[0].tolist()
    [[0, 1]]
    """
    X = normalize(X)
    space = pair_space(X, search_dims, seed=seed)
    cand = candidate_pairs(space(X), radius_sq(threshold), seed=seed, progress=progress)
    return rerank(cand, lambda rows: X[rows], threshold)


def method_statement(cfg: DuplicateConfig, n: int, n_candidates: int, n_pairs: int) -> str:
    """What ``methods_info["near_duplicates"]`` says about the search."""
    return (f"every pair of the {n:,} rows within cosine distance {cfg.cosine_threshold}: exact range search "
            f"(candidates in PCA-{cfg.search_dims} + residual norm, a lower bound, then exact distances): "
            f"{n_candidates:,} candidates, {n_pairs:,} pairs")


def groups_in_space(Z: np.ndarray, vectors: Callable[[np.ndarray], np.ndarray], cfg: DuplicateConfig, *,
                    seed: int = 0) -> tuple[np.ndarray, str]:
    """Near-duplicate group of every row (-1 = none) from the rows' :class:`PairSpace`
    coordinates ``Z``, re-ranked with ``vectors(rows)``; and the statement for ``methods_info``."""
    with ProgressLog("near-duplicates", len(Z)) as p:
        cand = candidate_pairs(Z, radius_sq(cfg.cosine_threshold), seed=seed, progress=p.update)
        pairs, _ = rerank(cand, vectors, cfg.cosine_threshold)
    return groups_from_pairs(len(Z), pairs), method_statement(cfg, len(Z), len(cand), len(pairs))


def all_near_duplicates(X: np.ndarray, cfg: DuplicateConfig, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """Near-duplicate group of every row of ``X`` (-1 = none) over all pairs, and the statement."""
    X = normalize(X)
    return groups_in_space(pair_space(X, cfg.search_dims, seed=seed)(X), lambda rows: X[rows], cfg, seed=seed)
