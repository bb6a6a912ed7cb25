"""Exact k-nearest neighbours by cosine distance, in chunks so memory stays bounded.

Vectors are L2-normalised, so cosine distance is ``1 - a·b``. For wide vectors and many rows
the candidates are found in a PCA space (``search_dims``) and their distances then recomputed
exactly in the full space, which keeps a 100k × 384 search to seconds on two cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

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


class KnnIndex:
    """A prepared reference set: normalised once (and PCA-reduced once, with ``search_dims``),
    so a stream of query batches is searched without redoing that work per batch.
    ``KnnIndex(R).search(Q, k)`` returns exactly what ``knn(Q, R, k)`` does."""

    def __init__(self, reference: np.ndarray, *, search_dims: int | None = None, seed: int = 0) -> None:
        self.R = normalize(reference)
        self.pca = None
        self.Rs = self.R
        m = self.R.shape[0]
        if search_dims and self.R.shape[1] > search_dims and m > search_dims:
            from sklearn.decomposition import PCA

            fit_rows = self.R if m <= 50_000 else self.R[np.random.default_rng(seed).choice(m, 50_000, replace=False)]
            self.pca = PCA(n_components=search_dims, random_state=seed).fit(fit_rows)
            self.Rs = self.pca.transform(self.R).astype(np.float32)
            self._half_sq = 0.5 * (self.Rs * self.Rs).sum(1)[None, :]

    def search(self, queries: np.ndarray, k: int, *, exclude_self: bool = False, chunk: int | None = None,
               progress: Callable[[int], None] | None = None) -> Neighbors:
        """The ``k`` nearest reference rows of each query row (see :func:`knn`); ``progress(rows)``
        is called after each chunk of queries."""
        Q = normalize(queries)
        R = self.R
        n, m = Q.shape[0], R.shape[0]
        k = max(0, min(k, m - (1 if exclude_self else 0)))
        if n == 0 or k == 0:
            return Neighbors(np.zeros((n, k), np.int64), np.zeros((n, k), np.float32))
        if chunk is None:  # keep one chunk's similarity block near 50M floats (200 MB)
            chunk = int(min(1024, max(64, 50_000_000 // m)))
        approximate = self.pca is not None
        Qs, Rs, kc = Q, R, k
        if approximate:
            Qs, Rs = self.pca.transform(Q).astype(np.float32), self.Rs
            kc = min(3 * k + 5, m - (1 if exclude_self else 0))
        idx = np.empty((n, k), np.int64)
        dist = np.empty((n, k), np.float32)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            sims = Qs[start:stop] @ Rs.T
            if approximate:  # squared euclidean in the PCA space as the candidate score
                sims -= self._half_sq
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
            if progress:
                progress(stop - start)
        np.clip(dist, 0.0, 2.0, out=dist)
        return Neighbors(idx, dist, approximate)


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
    return KnnIndex(reference, search_dims=search_dims, seed=seed).search(queries, k, exclude_self=exclude_self,
                                                                         chunk=chunk)
