"""The arrival check of a large table, served by its HNSW graph (docs/verdicts.md, "Scale").

At or above the cache's ``min_rows`` (:data:`GRAPH_MIN_ROWS` by default) the new images'
neighbours come from the persisted hnswlib graph of the model/variant
(:mod:`embedscope.store.graph_index`, loaded or built once, then topped up with each drop's new
rows), and only the rows of the arrivals and of those neighbours are read, so a drop costs
about the same at 20k or 1M stored vectors. A fresh calibration samples rows from the graph.
Below it, or when no graph can be had, the exact kNN over the whole table serves.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from embedscope.analysis.arrival_data import Arrival, embeddings_of
from embedscope.analysis.neighbors import Neighbors
from embedscope.analysis.verdicts import VerdictConfig, distinct_nn
from embedscope.store.graph_index import GraphIndex
from embedscope.store.search_cache import SearchIndexCache

log = logging.getLogger(__name__)

GRAPH_MIN_ROWS = 20_000  # stored rows of the model/variant from which a drop is served by the graph

Search = Callable[[np.ndarray, int], Neighbors]


def verdict_index_cache(min_rows: int = GRAPH_MIN_ROWS) -> SearchIndexCache:
    """The graph cache a check uses; a long-running process (the watch daemon) keeps one across
    drops so the graph stays in memory. Table versions are re-read before every check, so the
    rows a drop just wrote are always in the graph."""
    return SearchIndexCache(min_rows=min_rows, recheck_s=0.0)


def graph_for(db: object, model: str, variant: str, cache: SearchIndexCache) -> GraphIndex | None:
    """The current graph of ``model``/``variant``, or None (too few rows, no table, or no graph
    to be had: then the exact path serves, and a warning says why)."""
    try:
        return cache.graph_for(db, model, variant)  # type: ignore[arg-type]
    except (ImportError, RuntimeError, OSError) as exc:
        log.warning("verdicts: no graph index for %s/%s (%s); using the exact search", model, variant, exc)
        return None


def neighbourhood(db: object, graph: GraphIndex, model: str, variant: str, arrivals: Sequence[Arrival],
                  k: int) -> list[str]:
    """The contents a drop's check must read: the arrivals and their ``k + 1`` nearest stored
    rows by the graph."""
    shas = sorted({s for s, _ in arrivals if s})
    found, X = embeddings_of(db, model, variant, shas)  # type: ignore[arg-type]
    near = {s for row in graph.search(X, k + 1) for s, _ in row} if len(found) else set()
    return sorted(set(shas) | near)


def graph_search(graph: GraphIndex, sha: Sequence[str]) -> Search:
    """``search(queries, k)`` through ``graph``, as :class:`Neighbors` over the rows ``sha``
    (every neighbour must be among them: the whole table, or :func:`neighbourhood`)."""
    keys = np.asarray(sha, dtype="S64")
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]

    def search(queries: np.ndarray, k: int) -> Neighbors:
        labels, dist, graph_keys = graph.search_labels(queries, k)
        found = graph_keys[labels]
        at = np.minimum(np.searchsorted(sorted_keys, found), max(len(sorted_keys) - 1, 0))
        missing = found != sorted_keys[at] if len(sorted_keys) else np.ones(found.shape, bool)
        if missing.any():
            raise RuntimeError(f"the graph index returned {len(set(found[missing].tolist()))} rows the check did not read")
        return Neighbors(order[at].astype(np.int64), dist.astype(np.float32), approximate=True)

    return search


def sampled_nn_distances(graph: GraphIndex, cfg: VerdictConfig) -> np.ndarray:
    """Each sampled row's distance to its nearest distinct row (as the exact path's
    calibration), the sample drawn from the graph's rows and searched in it."""
    n = len(graph)
    if n < 2:
        return np.zeros(0)
    rows = np.arange(n)
    if n > cfg.calibration_sample:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.calibration_sample, replace=False))
    V = np.asarray(graph.index.get_items(rows.tolist()), np.float32)
    k = min(cfg.k + 1, n)
    found = graph.search(V, k)
    own = [key.decode() for key in graph.keys[rows]]
    dist = np.array([[d for s, d in row if s != me][:k - 1] for row, me in zip(found, own)], np.float64)
    return distinct_nn(dist.reshape(len(rows), -1), cfg.distinct_ratio)[1]
