"""Benchmark: analyse 100k × 384 vectors (UMAP 2-D + HDBSCAN on UMAP-10 + metrics + novelty).

Synthetic blobs on the unit sphere (with planted outliers and a planted far cluster) are
imported with ``ingest-vectors`` into a temporary database, then one ``analyze`` run is timed
stage by stage. What does not scale is sampled, and the output says so: silhouette on a seeded
5 000-row sample, kNN candidates from PCA-64 above 20 000 rows (distances exact), UMAP on the
PCA-50 of the vectors. Peak memory is the process's maximum resident set size.

    python -m benchmarks.bench_analysis [--quick]      # --quick: 10k rows
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def run(quick: bool = False) -> list[dict]:
    """Run the benchmark; one dict per measurement ``{"name", "value", "unit", "settings"}``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedscope.analysis.jobs import AnalysisParams, run_analysis
    from embedscope.analysis.synthetic import make_blobs
    from embedscope.analysis.vectors_import import import_vectors
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    n_blobs, per_blob = (10, 980) if quick else (10, 9_900)
    syn = make_blobs(n_per_blob=per_blob, n_blobs=n_blobs, dim=384, n_planted=100 if quick else 500,
                     n_outliers=100 if quick else 500, n_dups=50, seed=0)
    n = len(syn.ids)
    params = AnalysisParams(project=("umap",), dims=(2,), cluster=("hdbscan",))
    settings = {"rows": n, "dim": 384, "projection": "umap 2-D (cosine, on PCA-50)", "clustering": "hdbscan on umap 10-D",
                "silhouette_sample": params.silhouette_sample,
                "knn": f"exact <= {params.knn_exact_max} rows, else PCA-{params.knn_search_dims} candidates + exact distances",
                "cores": __import__("os").cpu_count()}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-analysis-") as tmp:
        vec = pa.FixedSizeListArray.from_arrays(pa.array(syn.X.ravel(), pa.float32()), 384)
        path = Path(tmp) / "vectors.parquet"
        pq.write_table(pa.table({"id": syn.ids, "vector": vec}), path)
        db = Database(Path(tmp) / "db", create=True)
        t = time.perf_counter()
        import_vectors(db, path, model="bench")
        results.append({"name": "ingest_vectors_seconds", "value": round(time.perf_counter() - t, 2), "unit": "s",
                        "settings": settings})
        t = time.perf_counter()
        run_id = run_analysis(db, params)
        total = time.perf_counter() - t
        run = db.read(S.RUNS, where=f"run_id = '{run_id}'").to_pylist()[0]
        p = json.loads(run["params"])
        for stage, sec in p["timings_s"].items():
            results.append({"name": f"analyze_{stage.replace(' ', '_')}_seconds", "value": sec, "unit": "s",
                            "settings": settings})
        results.append({"name": "analyze_total_seconds", "value": round(total, 2), "unit": "s", "settings": settings})
        results.append({"name": "analyze_rows_per_second", "value": round(n / total, 1), "unit": "rows/s",
                        "settings": settings})
        results.append({"name": "peak_rss", "value": round(_peak_rss_mb(), 1), "unit": "MiB", "settings": settings})
        flags = db.read(S.FLAGS, ["sha256", "is_novel"], where=f"run_id = '{run_id}'").to_pylist()
        novel = {r["sha256"] for r in flags if r["is_novel"]}
        outliers = {s for s, k in zip(syn.ids, syn.kind) if k == "outlier"}
        results.append({"name": "novelty_recall_planted_outliers", "value": round(len(novel & outliers) / len(outliers), 3),
                        "unit": "fraction", "settings": settings})
        results.append({"name": "novelty_precision_planted_outliers",
                        "value": round(len(novel & outliers) / max(1, len(novel)), 3), "unit": "fraction", "settings": settings})
        sampled = {k: v for k, v in p["methods_info"].items() if isinstance(v, (str, dict))
                   and any(w in json.dumps(v) for w in ("sample", "PCA", "pca_first"))}
        for r in results:
            r["settings"] = {**r["settings"], "sampling": sampled}
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10k rows instead of 100k")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    results = run(quick=args.quick)
    print(f"{'measurement':42} {'value':>12}  unit")
    for r in results:
        print(f"{r['name']:42} {r['value']:>12}  {r['unit']}")
    s = results[0]["settings"]
    print(f"\n{s['rows']} x {s['dim']} vectors, {s['cores']} cores; {s['projection']}; {s['clustering']}")
    print(f"sampled / approximated: silhouette on {s['silhouette_sample']} rows; kNN {s['knn']}")
    for k, v in s["sampling"].items():
        print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
