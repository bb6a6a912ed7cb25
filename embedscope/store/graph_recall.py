"""Choosing a graph's search ``ef`` by the recall it measurably gives, not by a fixed setting.

How many candidates an HNSW search must visit for a given recall depends on the data and
grows with the number of rows: with one fixed ``ef`` (100), recall@10 was 1.0 on 100k clustered
vectors and about 0.8 on 1M (docs/benchmarks.md). So each graph measures it, with queries it
does not hold: the last rows read when the graph is built (or topped up) wait while the rest
are added, are searched, and are compared with the exact answer over every row held; ``ef``
is raised along a ladder until recall@10 reaches the target, then they are added too. (Rows
the graph already holds are easier queries, since their own links lead to their neighbours:
they are only the fallback when too few new rows arrive.) The result is kept with the graph
and re-drawn when the graph has grown by a tenth since.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_QUERIES = 200
MIN_HELD_OUT = 50  # fewer new rows than this: sample rows the graph holds instead
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


def describe(calibration: dict[str, Any]) -> str:
    """``ef 150 gives recall@10 0.986 on 200 held-out rows``: for logs and the CLI."""
    kind = "held-out" if calibration.get("held_out") else "sampled"
    return f"ef {calibration['ef']} gives recall@{K} {calibration['recall']:.3f} on {calibration['queries']} {kind} rows"


def exact_neighbours(index: Any, rows: int, queries: np.ndarray, labels: np.ndarray | None, k: int) -> np.ndarray:
    """The cosine similarity of each query's ``k``-th nearest row over every row of ``index``
    (read back from hnswlib, which keeps them normalised), ``_CHUNK`` at a time; ``labels``:
    the queries' own rows when the graph holds them (a row is not its own neighbour)."""
    best = np.full((len(queries), 0), -np.inf, np.float32)
    for start in range(0, rows, _CHUNK):
        ids = np.arange(start, min(rows, start + _CHUNK))
        sims = queries @ index.get_items(ids).T
        if labels is not None:
            own = (labels >= start) & (labels < start + len(ids))
            sims[np.flatnonzero(own), labels[own] - start] = -np.inf
        both = np.concatenate([best, sims], axis=1)
        keep = min(k, both.shape[1])
        best = -np.sort(-np.partition(both, both.shape[1] - keep, axis=1)[:, -keep:], axis=1)
    return best[:, k - 1] if best.shape[1] >= k else np.full(len(queries), -np.inf, np.float32)


def recall_at(index: Any, queries: np.ndarray, labels: np.ndarray | None, kth: np.ndarray, ef: int, k: int) -> float:
    """Share of the true ``k`` nearest found at ``ef``: a result counts when it is at least as
    near as the true ``k``-th (ties and copies count as found) and is not the query's own row."""
    own = 0 if labels is None else 1
    index.set_ef(max(ef, k + own))
    found, dist = index.knn_query(queries, k=k + own)
    hits = 1.0 - dist >= kth[:, None] - 1e-5
    if labels is not None:
        hits &= found != labels[:, None]
    return float(np.minimum(hits.sum(axis=1), k).sum() / (k * len(queries)))


def choose_ef(index: Any, rows: int, start_ef: int, target: float, held_out: np.ndarray | None = None,
              seed: int = 0) -> dict[str, Any]:
    """The smallest ``ef`` on :func:`ef_ladder` whose measured recall@:data:`K` reaches ``target``
    (or the ladder's top, with the recall it gives): ``{ef, recall, target, queries, held_out,
    rows, seconds}``. Queries: ``held_out`` (unit vectors the graph does not hold), else a
    sample of the rows it holds."""
    t0 = time.monotonic()
    if rows <= K:
        return {"ef": max(start_ef, K), "recall": 1.0, "target": target, "queries": 0, "held_out": False,
                "rows": rows, "seconds": 0.0}
    if held_out is not None and len(held_out) >= MIN_HELD_OUT:
        queries = np.asarray(held_out[-SAMPLE_QUERIES:], dtype=np.float32)
        labels, queries = None, queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    else:
        labels = np.sort(np.random.default_rng(seed).choice(rows, min(SAMPLE_QUERIES, rows), replace=False))
        queries = np.asarray(index.get_items(labels), dtype=np.float32)
    kth = exact_neighbours(index, rows, queries, labels, K)
    for ef in ef_ladder(start_ef):
        recall = recall_at(index, queries, labels, kth, ef, K)
        if recall >= target:
            break
    else:
        log.warning("the graph index reaches recall@%d %.3f at ef %d, below the target %.2f", K, recall, ef, target)
    return {"ef": ef, "recall": round(recall, 4), "target": target, "queries": len(queries),
            "held_out": labels is None, "rows": rows, "seconds": round(time.monotonic() - t0, 2)}
