"""Exact vs ANN similarity search: latency (p50/p95) and recall@10, at 100k and 1M × 384.

Vectors are generated on the fly (clustered random unit vectors, like real embeddings) and
written with the real store (``Database.upsert``); the index is the real one
(:func:`embedscope.store.index.build_index`), searches go through
:func:`embedscope.store.queries.similar`, so the numbers are what users get.
``--quick`` runs 20k vectors only.

    python -m benchmarks.bench_queries [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

DIM = 384
MODEL = "dinov2_vits14"


def _vectors(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, len(centres), m)] + 0.7 * rng.standard_normal((m, DIM), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _latencies(fn, queries) -> tuple[list[float], list]:
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(fn(q))
        times.append((time.perf_counter() - t0) * 1000)
    return times, results


def bench_size(n: int, n_queries: int = 50, seed: int = 0) -> list[dict]:
    from embedscope.ingest.rows import embedding_rows
    from embedscope.store import schema as S
    from embedscope.store.db import Database
    from embedscope.store.index import build_index, choose_params, search_params
    from embedscope.store.queries import similar

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(50, n // 200), DIM), dtype=np.float32)
    settings = {"n": n, "dim": DIM, "queries": n_queries}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="es-bench-") as tmp:
        db = Database(tmp, create=True)
        t0 = time.perf_counter()
        X = _vectors(rng, n, centres)
        gen_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = S.embeddings_table_name(MODEL)
        for start in range(0, n, 200_000):
            part = X[start:start + 200_000]
            shas = [f"{i:064x}" for i in range(start, start + len(part))]
            db.upsert(table, embedding_rows(shas, part, model=MODEL, variant="full", weights="random"))
        write_s = time.perf_counter() - t0
        rows.append({"name": "generate vectors", "value": round(gen_s, 2), "unit": "s", "settings": settings})
        rows.append({"name": "write vectors", "value": round(write_s, 2), "unit": "s", "settings": settings})

        qidx = rng.choice(n, n_queries, replace=False)
        queries = [X[i] + 0.05 * rng.standard_normal(DIM).astype(np.float32) for i in qidx]
        truth = [set(np.argpartition(-(X @ q), 10)[:10].tolist()) for q in queries]

        def ids(t):
            return {int(s, 16) for s in t.column("sha256").to_pylist()}

        exact_ms, exact_res = _latencies(lambda q: similar(db, q, k=10), queries)
        built = build_index(db, MODEL, force=True)
        p = choose_params(n, DIM)
        sp = search_params(p.num_partitions)
        ann_settings = {**settings, "index": p.index_type, "partitions": p.num_partitions,
                        "sub_vectors": p.num_sub_vectors, "bits": p.num_bits, "nprobes": sp.nprobes,
                        "refine_factor": sp.refine_factor}
        db.refresh()
        ann_ms, ann_res = _latencies(lambda q: similar(db, q, k=10), queries)
        rec_exact = np.mean([len(ids(r) & t) / 10 for r, t in zip(exact_res, truth)])
        rec_ann = np.mean([len(ids(r) & t) / 10 for r, t in zip(ann_res, truth)])
        rows += [
            {"name": "build index", "value": built["seconds"], "unit": "s", "settings": ann_settings},
            {"name": "exact p50", "value": round(float(np.percentile(exact_ms, 50)), 2), "unit": "ms", "settings": settings},
            {"name": "exact p95", "value": round(float(np.percentile(exact_ms, 95)), 2), "unit": "ms", "settings": settings},
            {"name": "exact recall@10", "value": round(float(rec_exact), 4), "unit": "", "settings": settings},
            {"name": "ANN p50", "value": round(float(np.percentile(ann_ms, 50)), 2), "unit": "ms", "settings": ann_settings},
            {"name": "ANN p95", "value": round(float(np.percentile(ann_ms, 95)), 2), "unit": "ms", "settings": ann_settings},
            {"name": "ANN recall@10", "value": round(float(rec_ann), 4), "unit": "", "settings": ann_settings},
            {"name": "ANN speed-up (p50)", "value": round(float(np.percentile(exact_ms, 50) / np.percentile(ann_ms, 50)), 1),
             "unit": "x", "settings": ann_settings},
        ]
    return rows


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows for ``make bench``: 20k vectors with ``quick``, else 100k and 1M."""
    sizes = [20_000] if quick else [100_000, 1_000_000]
    out: list[dict] = []
    for n in sizes:
        out += [{**r, "name": f"similar {n // 1000}k: {r['name']}"} for r in bench_size(n, 20 if quick else 50)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rows = run(quick=args.quick)
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['value']:>10} {r['unit']}")


if __name__ == "__main__":
    main()
