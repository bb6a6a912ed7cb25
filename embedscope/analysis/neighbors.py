"""Exact k-nearest neighbours by cosine distance, in chunks so memory stays bounded.

Vectors are L2-normalised, so cosine distance is ``1 - a·b``. For wide vectors and many rows
the candidates are found in a PCA space (``search_dims``) and their distances then recomputed
exactly in the full space, which keeps a 100k × 384 search to seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Neighbors:
    """``idx[i]`` are the k nearest reference rows of query row i, ``dist[i]`` their cosine distances."""

    idx: np.ndarray  # (n, k) int64
    dist: np.ndarray  # (n, k) float32
    approximate: bool = False


def normalize(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def knn(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    chunk: int | None = None,
    search_dims: int | None = None,
    seed: int = 0,
) -> Neighbors:
    """The ``k`` nearest ``reference`` rows of each ``queries`` row (cosine).

    With ``exclude_self`` (queries *are* the reference), row i never lists itself. With
    ``search_dims``, candidates (3k of them) come from a PCA projection and are re-ranked by
    exact distance in the full space.
    """
    Q = normalize(queries)
    R = normalize(reference)
    n, m = Q.shape[0], R.shape[0]
    k = max(0, min(k, m - (1 if exclude_self else 0)))
    if n == 0 or k == 0:
        return Neighbors(np.zeros((n, k), np.int64), np.zeros((n, k), np.float32))
    if chunk is None:  # keep one chunk's similarity block near 50M floats (200 MB)
        chunk = int(min(1024, max(64, 50_000_000 // m)))
    approximate = False
    Qs, Rs, kc = Q, R, k
    if search_dims and Q.shape[1] > search_dims and m > search_dims:
        from sklearn.decomposition import PCA

        p = PCA(n_components=search_dims, random_state=seed).fit(R if m <= 50_000 else R[np.random.default_rng(seed).choice(m, 50_000, replace=False)])
        Qs, Rs = p.transform(Q).astype(np.float32), p.transform(R).astype(np.float32)
        kc = min(3 * k + 5, m - (1 if exclude_self else 0))
        approximate = True
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        if approximate:
            # squared euclidean in the PCA space as the candidate score
            sims = Qs[start:stop] @ Rs.T
            sims -= 0.5 * (Rs * Rs).sum(1)[None, :]
        else:
            sims = Qs[start:stop] @ Rs.T
        if exclude_self:
            sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf
        cand = np.argpartition(-sims, kc - 1, axis=1)[:, :kc]
        if approximate:
            exact = np.einsum("nd,nkd->nk", Q[start:stop], R[cand])
        else:
            exact = np.take_along_axis(sims, cand, axis=1)
        order = np.argsort(-exact, axis=1)[:, :k]
        idx[start:stop] = np.take_along_axis(cand, order, axis=1)
        dist[start:stop] = 1.0 - np.take_along_axis(exact, order, axis=1)
    np.clip(dist, 0.0, 2.0, out=dist)
    return Neighbors(idx, dist, approximate)
