"""Choosing a graph's search ``ef`` by the recall it measurably gives, not by a fixed setting.

How many candidates an HNSW search must visit for a given recall depends on the data and
grows with the number of rows: with one fixed ``ef`` (100), recall@10 was 1.0 on 100k clustered
vectors and 0.785 on 1M (docs/benchmarks.md). So each graph measures it: a sample of the rows
it holds is searched (each row asking for its neighbours, as ``similar <sha>`` does) and
compared with the exact answer over every row; ``ef`` is raised along a ladder until the
recall reaches the target. The result is kept with the graph and re-drawn when the graph has
grown by a tenth since.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_QUERIES = 200
K = 10
MAX_EF = 1024
REDRAW_GROWTH = 0.10  # re-measure once the graph holds this much more than when measured
_CHUNK = 50_000


def ef_ladder(start: int) -> list[int]:
    """``start``, then ×1.5 steps up to :data:`MAX_EF`."""
    out = [max(K, start)]
    while out[-1] < MAX_EF:
        out.append(min(MAX_EF, int(out[-1] * 1.5)))
    return out


def needs_redraw(calibration: dict[str, Any] | None, rows: int) -> bool:
    return calibration is None or rows > calibration["rows"] * (1 + REDRAW_GROWTH)


def exact_neighbours(index: Any, rows: int, queries: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The cosine similarity of each query's ``k``-th nearest other row, over every row of
    ``index`` (read back from hnswlib, which keeps them normalised), ``_CHUNK`` at a time."""
    best = np.full((len(queries), 0), -np.inf, np.float32)
    for start in range(0, rows, _CHUNK):
        ids = np.arange(start, min(rows, start + _CHUNK))
        sims = queries @ index.get_items(ids).T
        own = (labels >= start) & (labels < start + len(ids))
        sims[np.flatnonzero(own), labels[own] - start] = -np.inf  # a row is not its own neighbour
        both = np.concatenate([best, sims], axis=1)
        keep = min(k, both.shape[1])
        best = -np.sort(-np.partition(both, both.shape[1] - keep, axis=1)[:, -keep:], axis=1)
    return best[:, k - 1] if best.shape[1] >= k else np.full(len(queries), -np.inf, np.float32)


def recall_at(index: Any, queries: np.ndarray, labels: np.ndarray, kth: np.ndarray, ef: int, k: int) -> float:
    """Share of the true ``k`` nearest found at ``ef``: a result counts when it is the query's
    own row's neighbour at least as near as the true ``k``-th (ties and copies count as found)."""
    index.set_ef(max(ef, k + 1))
    found, dist = index.knn_query(queries, k=k + 1)
    hits = (1.0 - dist >= kth[:, None] - 1e-5) & (found != labels[:, None])
    return float(np.minimum(hits.sum(axis=1), k).sum() / (k * len(queries)))


def choose_ef(index: Any, rows: int, start_ef: int, target: float, seed: int = 0) -> dict[str, Any]:
    """The smallest ``ef`` on :func:`ef_ladder` whose measured recall@:data:`K` reaches ``target``
    (or the ladder's top, with the recall it gives): ``{ef, recall, target, queries, rows, seconds}``."""
    t0 = time.monotonic()
    if rows <= K:
        return {"ef": max(start_ef, K), "recall": 1.0, "target": target, "queries": 0, "rows": rows, "seconds": 0.0}
    labels = np.sort(np.random.default_rng(seed).choice(rows, min(SAMPLE_QUERIES, rows), replace=False))
    queries = np.asarray(index.get_items(labels), dtype=np.float32)
    kth = exact_neighbours(index, rows, queries, labels, K)
    for ef in ef_ladder(start_ef):
        recall = recall_at(index, queries, labels, kth, ef, K)
        if recall >= target:
            break
    else:
        log.warning("the graph index reaches recall@%d %.3f at ef %d, below the target %.2f", K, recall, ef, target)
    return {"ef": ef, "recall": round(recall, 4), "target": target, "queries": len(labels), "rows": rows,
            "seconds": round(time.monotonic() - t0, 2)}
