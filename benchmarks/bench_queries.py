"""Similarity search: our paths against hnswlib and faiss used directly, in one run.

For each size: recall@10 against numpy brute force, p50/p95 latency of one query, queries/s
in batches of 100, build time and memory per vector, for

- ours: the in-memory graph (``similar``/``similar_many`` with a ``SearchIndexCache``), Lance
  IVF_PQ and IVF_HNSW_SQ (``similar`` through Lance, settings cached), exact (no index);
- the references: hnswlib and faiss (``IndexHNSWFlat``) with the same M / ef settings.

Vectors are clustered random unit vectors written with the real store (embeddings and
``images`` rows, so results carry path and label as users get them); queries are stored
vectors plus a little noise. Every result row is printed as it is measured.
``--quick``: 10k vectors (hnswlib builds ~700 vectors/s on the loaded 2-core machine, so 300k
would take ~8 minutes to build alone, and the quick tier has 3 minutes in all); the full tier:
300k and 1M.

    python -m benchmarks.bench_queries [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any, Callable

import numpy as np

from benchmarks._stream import Rows

DIM = 384
MODEL = "dinov2_vits14"
K = 10
BATCH = 100


def _vectors(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)] + 0.7 * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _write(db: Any, X: np.ndarray) -> None:
    import pyarrow as pa

    from embedscope.ingest.rows import embedding_rows
    from embedscope.store import schema as S

    table = S.embeddings_table_name(MODEL)
    for start in range(0, len(X), 200_000):
        part = X[start:start + 200_000]
        shas = [f"{i:064x}" for i in range(start, start + len(part))]
        db.upsert(table, embedding_rows(shas, part, model=MODEL, variant="full", weights="random"))
        db.append(S.IMAGES, pa.table({"sha256": shas, "path": [f"/data/c{i % 50}/{i}.jpg" for i in range(start, start + len(part))],
                                      "label": [f"c{i % 50}" for i in range(start, start + len(part))]}))


class _Measure:
    """Runs one search path over the queries and records its rows."""

    def __init__(self, rows: Rows, prefix: str, queries: np.ndarray, truth: list[set[int]], settings: dict) -> None:
        self.rows, self.prefix, self.queries, self.truth, self.settings = rows, prefix, queries, truth, settings
        self.p50: dict[str, float] = {}
        self.qps: dict[str, float] = {}
        self.recall: dict[str, float] = {}

    def add(self, name: str, value: float, unit: str, **extra: Any) -> None:
        self.rows.append({"name": f"{self.prefix}{name}", "value": value, "unit": unit,
                          "settings": {**self.settings, **extra}})

    def path(self, label: str, one: Callable[[np.ndarray], list[int]], many: Callable[[np.ndarray], Any] | None,
             n_queries: int | None = None, **extra: Any) -> None:
        """Latency and recall of ``one`` (a query → ids), and batch q/s of ``many``."""
        qs = self.queries[:n_queries] if n_queries else self.queries
        one(qs[0])  # warm-up: first-use costs (loading, building) are measured apart
        times, recalls = [], []
        for q, t in zip(qs, self.truth):
            t0 = time.perf_counter()
            ids = one(q)
            times.append((time.perf_counter() - t0) * 1000)
            recalls.append(len(set(ids[:K]) & t) / K)
        self.p50[label] = float(np.percentile(times, 50))
        self.recall[label] = float(np.mean(recalls))
        self.add(f"{label} recall@10", round(self.recall[label], 4), "", **extra)
        self.add(f"{label} p50", round(self.p50[label], 3), "ms", **extra)
        self.add(f"{label} p95", round(float(np.percentile(times, 95)), 3), "ms", **extra)
        if many is not None:
            batch = np.resize(self.queries, (BATCH, DIM))
            t0 = time.perf_counter()
            many(batch)
            self.qps[label] = BATCH / (time.perf_counter() - t0)
            self.add(f"{label} q/s at batch {BATCH}", round(self.qps[label], 1), "q/s", **extra)


def bench_size(n: int, n_queries: int = 100, seed: int = 0, rows: Rows | None = None) -> list[dict]:
    import faiss
    import hnswlib

    from embedscope.store.db import Database
    from embedscope.store.graph_index import GraphParams
    from embedscope.store.index import build_index, choose_params, search_params
    from embedscope.store.search import similar, similar_many
    from embedscope.store.search_cache import SearchIndexCache

    rows = rows if rows is not None else Rows()
    gp = GraphParams()
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(50, n // 200), DIM), dtype=np.float32)
    settings = {"n": n, "dim": DIM, "queries": n_queries, "M": gp.m, "ef_construction": gp.ef_construction,
                "ef_search": gp.ef_search}
    m = _Measure(rows, f"similar {n // 1000}k: ", np.empty(0), [], settings)
    t0 = time.perf_counter()
    X = _vectors(rng, n, centres)
    queries = X[rng.choice(n, n_queries, replace=False)] + 0.05 * rng.standard_normal((n_queries, DIM)).astype(np.float32)
    m.queries = queries
    m.truth = [set(np.argpartition(-(X @ q), K)[:K].tolist()) for q in queries]
    m.add("generate vectors + brute-force truth", round(time.perf_counter() - t0, 2), "s")

    def ids(table: Any) -> list[int]:
        return [int(s, 16) for s in table.column("sha256").to_pylist()]

    # -- the references, used directly ----------------------------------------------------------
    t0 = time.perf_counter()
    h = hnswlib.Index(space="cosine", dim=DIM)
    h.init_index(max_elements=n, M=gp.m, ef_construction=gp.ef_construction)
    h.add_items(X, np.arange(n))
    h.set_ef(gp.ef_search)
    m.add("hnswlib build", round(time.perf_counter() - t0, 2), "s")
    m.add("hnswlib memory per vector", round(h.index_file_size() / n, 1), "B")
    m.path("hnswlib", lambda q: h.knn_query(q, k=K)[0][0].tolist(), lambda b: h.knn_query(b, k=K))
    h = None  # free the reference index before building the next

    t0 = time.perf_counter()
    f = faiss.IndexHNSWFlat(DIM, gp.m, faiss.METRIC_INNER_PRODUCT)
    f.hnsw.efConstruction = gp.ef_construction
    f.add(X)
    f.hnsw.efSearch = gp.ef_search
    m.add("faiss HNSW build", round(time.perf_counter() - t0, 2), "s")
    m.add("faiss HNSW memory per vector", round(faiss.serialize_index(f).nbytes / n, 1), "B")
    m.path("faiss HNSW", lambda q: f.search(q[None] / np.linalg.norm(q), K)[1][0].tolist(),
           lambda b: f.search(b / np.linalg.norm(b, axis=1, keepdims=True), K))
    f = None

    with tempfile.TemporaryDirectory(prefix="es-bench-") as tmp:
        db = Database(tmp, create=True)
        t0 = time.perf_counter()
        _write(db, X)
        m.add("write vectors + images rows", round(time.perf_counter() - t0, 2), "s")
        del X

        # -- ours: the in-memory graph ------------------------------------------------------------
        cache = SearchIndexCache(min_rows=0)
        t0 = time.perf_counter()
        graph = cache.graph_for(db, MODEL, "full")
        m.add("ours graph build + save", round(time.perf_counter() - t0, 2), "s")
        m.add("ours graph memory per vector", graph.bytes_per_vector(), "B")
        t0 = time.perf_counter()
        SearchIndexCache(min_rows=0).graph_for(db, MODEL, "full")
        m.add("ours graph load (a restart)", round(time.perf_counter() - t0, 2), "s")
        m.path("ours graph", lambda q: ids(similar(db, q, k=K, cache=cache)),
               lambda b: similar_many(db, b, k=K, cache=cache))

        # -- ours: exact, then Lance's two index kinds (settings cached, no graph) ---------------
        m.path("ours exact (Lance scan)", lambda q: ids(similar(db, q, k=K)), None, n_queries=min(20, n_queries))
        lance = SearchIndexCache(graph=False)
        for kind in ("IVF_PQ", "IVF_HNSW_SQ"):
            built = build_index(db, MODEL, force=True, index_type=kind)
            db.refresh()
            p = choose_params(n, DIM, kind)
            sp = search_params(p.num_partitions, kind)
            extra = {"partitions": p.num_partitions, "nprobes": sp.nprobes, "refine_factor": sp.refine_factor,
                     "ef": sp.ef}
            m.add(f"Lance {kind} build", built["seconds"], "s", **extra)
            m.path(f"Lance {kind}", lambda q: ids(similar(db, q, k=K, cache=lance)),
                   lambda b: similar_many(db, b, k=K, cache=lance), **extra)

    _targets(m)
    return rows


def _targets(m: _Measure) -> None:
    """The issue's targets, as ratios within this run."""
    peers = [p for p in ("hnswlib", "faiss HNSW") if m.recall.get(p, 0) >= 0.95] or ["hnswlib", "faiss HNSW"]
    best = min(peers, key=lambda p: m.p50[p])
    m.add(f"target: ours graph p50 / {best} p50 (≤ 2)", round(m.p50["ours graph"] / m.p50[best], 2), "x")
    m.add("target: ours graph p50 (≤ 1 ms)", round(m.p50["ours graph"], 3), "ms")
    m.add("target: hnswlib q/s / ours graph q/s at batch 100 (≤ 2)",
          round(m.qps["hnswlib"] / m.qps["ours graph"], 2), "x")


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows for ``make bench``: 10k vectors with ``quick``, else 300k and 1M."""
    rows = Rows()
    for n in ([10_000] if quick else [300_000, 1_000_000]):
        bench_size(n, 100, rows=rows)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, help="one size instead of the tier's")
    args = ap.parse_args()
    if args.n:
        bench_size(args.n, 100)
    else:
        run(quick=args.quick)


if __name__ == "__main__":
    main()
