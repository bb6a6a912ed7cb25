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


@dataclass(frozen=True)
class GraphKnnConfig:
    """The approximate kNN graph of an all-rows fit above ``knn_exact_max`` rows (hnswlib HNSW
    on the full vectors, inner product of unit vectors = cosine)."""

    m: int = 16
    ef_construction: int = 100
    ef_search: int = 64  # at least k + 1 is used
    recall_sample: int = 500  # rows whose neighbours are checked against brute force
    threads: int = 0  # 0: every core this process may use


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def graph_knn(X: np.ndarray, k: int, cfg: GraphKnnConfig = GraphKnnConfig(), *, seed: int = 0,
              progress: Callable[[int], None] | None = None) -> tuple[Neighbors, dict]:
    """Leave-one-out ``k`` nearest neighbours of every row of ``X`` (cosine) from an HNSW graph
    built on all cores: approximate, with its recall@k against brute force on a seeded sample of
    rows. Returns the neighbours and ``info`` (settings, recall, seconds) for ``methods_info``.
    Built with several threads, the graph (so a few neighbours) may differ run to run."""
    import time

    import hnswlib

    U = normalize(X)
    n = U.shape[0]
    k = max(0, min(k, n - 1))
    threads = cfg.threads or usable_cores()
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=U.shape[1])
    index.init_index(max_elements=n, M=cfg.m, ef_construction=cfg.ef_construction, random_seed=seed)
    index.set_num_threads(threads)
    step = max(10_000, n // 20)
    for start in range(0, n, step):  # in steps, so progress moves while the graph grows
        stop = min(n, start + step)
        index.add_items(U[start:stop], np.arange(start, stop))
        if progress:
            progress((stop - start) // 2)
    build_s = time.perf_counter() - t
    index.set_ef(max(cfg.ef_search, k + 1))
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    for start in range(0, n, step):
        stop = min(n, start + step)
        lab, d = index.knn_query(U[start:stop], k=k + 1)
        idx[start:stop], dist[start:stop] = _drop_self(lab.astype(np.int64), d, np.arange(start, stop), k)
        if progress:
            progress(stop - start - (stop - start) // 2)
    np.clip(dist, 0.0, 2.0, out=dist)
    nb = Neighbors(idx, dist, approximate=True)
    info = {"how": f"hnswlib HNSW (M {cfg.m}, ef_construction {cfg.ef_construction}, ef {max(cfg.ef_search, k + 1)}) "
                   f"on all {U.shape[1]} dims, {threads} threads; not bit-reproducible run to run",
            "k": k, "build_seconds": round(build_s, 2), "seconds": round(time.perf_counter() - t, 2)}
    info.update(graph_recall(U, nb, sample=cfg.recall_sample, seed=seed))
    return nb, info


def _drop_self(lab: np.ndarray, d: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k + 1`` neighbours per row -> the ``k`` that are not the row itself (the row is usually
    first, but a duplicate at distance 0 may come before it, or it may be missed)."""
    keep = lab != rows[:, None]
    keep[keep.sum(1) > k, -1] = False  # the row was not found: drop the farthest instead
    return lab[keep].reshape(-1, k), d[keep].reshape(-1, k).astype(np.float32)  # hnswlib 'ip': 1 - a·b


def graph_recall(U: np.ndarray, nb: Neighbors, *, sample: int = 500, seed: int = 0) -> dict:
    """recall@k of ``nb`` (leave-one-out neighbours of the unit rows ``U``) against brute force
    on a seeded sample of rows: the share of the true k nearest that ``nb`` lists."""
    n, k = nb.idx.shape
    if n == 0 or k == 0:
        return {"recall_at_k": 1.0, "recall_rows": 0}
    rows = np.sort(np.random.default_rng(seed).choice(n, min(sample, n), replace=False))
    found = 0
    for start in range(0, len(rows), 256):
        r = rows[start:start + 256]
        sims = U[r] @ U.T
        sims[np.arange(len(r)), r] = -np.inf
        exact = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(sims, exact, axis=1).min(1, keepdims=True)
        # ties at the k-th distance: any of the tied rows counts as a true neighbour
        got = np.take_along_axis(sims, nb.idx[r], axis=1)
        found += int((got >= kth - 1e-6).sum())
    return {"recall_at_k": round(found / (len(rows) * k), 4), "recall_rows": int(len(rows))}
