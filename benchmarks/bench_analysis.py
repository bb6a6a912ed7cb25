"""Benchmark: analyse 100k × 384 vectors (UMAP 2-D + HDBSCAN on UMAP-10 + metrics + novelty).

Synthetic blobs on the unit sphere (with planted outliers and a planted far cluster) are
imported with ``ingest-vectors`` into a temporary database, then one ``analyze`` run is timed
stage by stage. What does not scale is sampled, and the output says so: silhouette on a seeded
5 000-row sample, kNN candidates from PCA-64 above 20 000 rows (distances exact), UMAP on the
PCA-50 of the vectors. Peak memory is the process's maximum resident set size.

    python -m benchmarks.bench_analysis [--quick] [--only base|neardup|scale|allrows]   # --quick: 5k rows

Every row of the *base* run is fitted (no sample): one kNN graph is shared by both UMAPs and
novelty. The *neardup* part (20k rows quick, 100k full, 1,000 planted pairs) times the exact
range search over every pair (``analysis/near_pairs.py``) against the old way (10 nearest
neighbours of every row, then the threshold) and faiss IVF256,Flat range search (nprobe 4), with
recall of the planted pairs, in the same run.

The *allrows* part (full tier only; ``--only allrows``, ``EMBEDSCOPE_BENCH_ALLROWS`` rows, default
100k) analyses 30 planted blobs on every row (``--fit-sample 0``) in a process of its own (wall,
CPU, peak RSS), then fits the reference on the same vectors (umap-learn 10-D with its own kNN +
hdbscan on every row): ARI against it and against the truth, k-means auto-k's k and ARI, and
hdbscan vs fast_hdbscan on the reference's UMAP-10 (time, ARI of their labels).

The *scale* part (issue 9) measures the sample-then-place path: N × 384 vectors (1M; quick:
100k) written in chunks and imported with ``ingest-vectors``, then ``embedscope analyze
--fit-sample F`` (200k; quick: 20k) in a subprocess of its own (so its peak RSS is its own):
fit seconds, streaming placement rows/s, peak RSS. At a size where a full fit is affordable
(100k; quick: 30k) it also runs a full fit and a sampled fit of the same rows, and reports the
time ratio and the ARI of the sampled labels against the full-fit labels. The 10M cost is
extrapolated (an estimate: the fit on the same sample size, plus 10M rows at the measured
placement rate).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._stream import Rows


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


PARTS = ("base", "neardup", "scale", "allrows")


def run(quick: bool = False, only: str | None = None) -> list[dict]:
    """Run the benchmark; one dict per measurement ``{"name", "value", "unit", "settings"}``.
    ``only``: one of :data:`PARTS`; default all (the quick tier skips *scale*: its subprocesses
    and 100k-row ingest alone take minutes, which the quick tier's three do not allow)."""
    parts = [only] if only else [p for p in PARTS if not (quick and p in ("scale", "allrows"))]
    results: list[dict] = []
    for part in parts:
        results += {"base": run_base, "neardup": run_neardup, "scale": run_scale, "allrows": run_allrows}[part](quick)
    return results


# -- near-duplicates over every row ---------------------------------------------------------

def planted_pairs(n: int, n_pairs: int = 1000, dim: int = 384, seed: int = 0):
    """``n`` clustered rows (30 blobs, 0.5 % outliers) of which ``n_pairs`` are copies of other
    rows at cosine distances spread over 0.0006..0.026: (X, the planted pairs as a set)."""
    import numpy as np

    from embedscope.analysis.synthetic import make_blobs, more_points

    base = make_blobs(n_per_blob=10, n_blobs=30, dim=dim, n_planted=0, n_outliers=0, n_dups=0, seed=seed)
    _, X, _ = more_points(base, n - n_pairs - n // 200, n // 200, seed=seed + 1)
    rng = np.random.default_rng(seed + 3)
    src = rng.choice(len(X), n_pairs, replace=False)
    noise = rng.normal(size=(n_pairs, dim))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    D = X[src] + rng.uniform(0.05, 0.23, n_pairs)[:, None] * noise
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    X = np.concatenate([X, D.astype(np.float32)])
    return X, {(int(s), len(X) - n_pairs + i) for i, s in enumerate(src)}


def _cpu_timed(fn):
    t, w = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - t, time.perf_counter() - w


def run_neardup(quick: bool = False) -> list[dict]:
    """Every near-duplicate pair (cosine <= 0.03) of N × 384 rows with 1,000 planted pairs: the
    range search of ``analysis/near_pairs.py`` against the old way (10 nearest neighbours of
    every row, PCA-64 candidates, then the threshold) and faiss IVF-flat range search, same run."""
    import numpy as np

    from embedscope.analysis.duplicates import embedding_pairs
    from embedscope.analysis.near_pairs import near_pairs
    from embedscope.analysis.neighbors import knn

    n = 20_000 if quick else 100_000
    thr = 0.03
    X, planted = planted_pairs(n)
    settings = {"rows": n, "dim": 384, "planted_pairs": len(planted), "threshold": thr, "cores": __import__("os").cpu_count(),
                "load_avg_1m": round(__import__("os").getloadavg()[0], 2)}
    results = Rows()

    def add(name: str, value: float, unit: str, **extra) -> None:
        results.append({"name": name, "value": round(float(value), 3), "unit": unit, "settings": {**settings, **extra}})

    def recall(pairs) -> float:
        return len(planted & {(int(a), int(b)) for a, b in pairs}) / len(planted)

    (pairs, _), cpu_new, wall_new = _cpu_timed(lambda: near_pairs(X, thr))
    add("neardup_range_search_cpu_seconds", cpu_new, "CPU-s", how="exact IVF range search, PCA-96 + residual")
    add("neardup_range_search_wall_seconds", wall_new, "s")
    add("neardup_range_search_recall", recall(pairs), "fraction")

    def old():
        nb = knn(X, X, 10, exclude_self=True, search_dims=64)
        return embedding_pairs(nb.idx, nb.dist, thr)

    old_pairs, cpu_old, wall_old = _cpu_timed(old)
    add("neardup_old_knn10_cpu_seconds", cpu_old, "CPU-s", how="knn k=10 (PCA-64 candidates) + threshold")
    add("neardup_old_knn10_recall", recall(old_pairs), "fraction")
    add("neardup_range_over_old_cpu", cpu_new / max(cpu_old, 1e-9), "x (lower is better)")
    try:
        import faiss
    except ImportError:
        return results
    def with_faiss():
        q = faiss.IndexFlatIP(X.shape[1])
        index = faiss.IndexIVFFlat(q, X.shape[1], 256, faiss.METRIC_INNER_PRODUCT)
        index.train(X[np.random.default_rng(0).choice(len(X), min(len(X), 256 * 64), replace=False)])
        index.add(X)
        index.nprobe = 4
        lims, _, ids = index.range_search(X, 1.0 - thr)
        rows = np.repeat(np.arange(len(X)), np.diff(lims.astype(np.int64)))
        keep = ids > rows
        return np.stack([rows[keep], ids[keep]], axis=1)

    f_pairs, cpu_f, _ = _cpu_timed(with_faiss)
    add("neardup_faiss_ivf256_nprobe4_cpu_seconds", cpu_f, "CPU-s", how="faiss IVF256,Flat range_search nprobe 4")
    add("neardup_faiss_recall", recall(f_pairs), "fraction")
    add("neardup_range_over_faiss_cpu", cpu_new / max(cpu_f, 1e-9), "x (lower is better)")
    return results


def run_base(quick: bool = False) -> list[dict]:
    """The all-rows analysis of 100k (quick: 10k) vectors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedscope.analysis.jobs import AnalysisParams, run_analysis
    from embedscope.analysis.synthetic import make_blobs
    from embedscope.analysis.vectors_import import import_vectors
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    n_blobs, per_blob = (10, 480) if quick else (10, 9_900)
    syn = make_blobs(n_per_blob=per_blob, n_blobs=n_blobs, dim=384, n_planted=100 if quick else 500,
                     n_outliers=100 if quick else 500, n_dups=50, seed=0)
    n = len(syn.ids)
    params = AnalysisParams(project=("umap",), dims=(2,), cluster=("hdbscan",))
    settings = {"rows": n, "dim": 384, "projection": "umap 2-D (cosine, on PCA-50)", "clustering": "hdbscan on umap 10-D",
                "silhouette_sample": params.silhouette_sample,
                "knn": f"exact <= {params.knn_exact_max} rows, else PCA-{params.knn_search_dims} candidates + exact distances",
                "cores": __import__("os").cpu_count()}
    results = Rows()  # each row is printed as it is added
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


# -- scale: fit on a sample, place the rest ---------------------------------------------------

SCALE_ARGS = ["--project", "umap", "--dims", "2", "--cluster", "hdbscan,kmeans", "--k", "10"]


def _write_chunked(path: Path, n: int, seed: int = 0, chunk: int = 100_000) -> None:
    """``n`` × 384 blob vectors (10 blobs, 0.5 % outliers) written chunk by chunk (bounded memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from embedscope.analysis.synthetic import make_blobs, more_points

    base = make_blobs(n_per_blob=10, n_blobs=10, dim=384, n_planted=0, n_outliers=0, n_dups=0, seed=seed)
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), 384))])
    with pq.ParquetWriter(path, schema) as w:
        for j, start in enumerate(range(0, n, chunk)):
            size = min(chunk, n - start)
            n_out = size // 200
            ids, X, _ = more_points(base, size - n_out, n_out, seed=seed + 1 + j, prefix=f"c{j:04d}-")
            vec = pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(X, np.float32).ravel()), 384)
            w.write_table(pa.table({"id": ids, "vector": vec}, schema=schema))


def _cli_measured(*args: str) -> tuple[dict, float, float, float]:
    """Run ``embedscope ARGS`` in its own process: (its JSON, wall seconds, its peak RSS MiB, its CPU seconds)."""
    import os
    import subprocess

    code = ("import resource, sys; from embedscope.cli import main; rc = main(sys.argv[1:]); "
            "u = resource.getrusage(resource.RUSAGE_SELF); "
            "print('PEAK_RSS_KIB', u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"embedscope {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    usage = [line.split()[1:] for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_KIB")]
    out = json.loads(proc.stdout.strip().splitlines()[-1]) if "--json" in args else {}
    rss, cpu = (int(usage[-1][0]) / 1024.0, float(usage[-1][1])) if usage else (float("nan"), float("nan"))
    return out, wall, rss, cpu


def _labels(db_dir: Path, run_id: str, method: str) -> dict:
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    t = Database(db_dir).read(S.CLUSTERS, ["sha256", "cluster"], where=f"run_id = '{run_id}' AND method = '{method}'")
    return dict(zip(t.column("sha256").to_pylist(), t.column("cluster").to_pylist()))


def run_scale(quick: bool = False) -> list[dict]:
    """Sample-then-place at N rows, and sampled vs full fit at an affordable size."""
    from sklearn.metrics import adjusted_rand_score

    from embedscope.store import schema as S
    from embedscope.store.db import Database

    n, fit = (100_000, 20_000) if quick else (1_000_000, 200_000)
    n_cmp, fit_cmp = (30_000, 6_000) if quick else (100_000, 20_000)
    settings = {"rows": n, "fit_sample": fit, "dim": 384, "analysis": " ".join(SCALE_ARGS), "cores": __import__("os").cpu_count(),
                "compare_rows": n_cmp, "compare_fit_sample": fit_cmp}
    results = Rows()  # each row is printed as it is added

    def add(name: str, value: float, unit: str) -> None:
        results.append({"name": name, "value": round(float(value), 3), "unit": unit, "settings": settings})

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        tmp_p = Path(tmp)
        # 1) N rows, fitted on a sample of F
        _write_chunked(tmp_p / "big.parquet", n)
        db_dir = tmp_p / "big"
        _, wall, _, _ = _cli_measured("ingest-vectors", str(tmp_p / "big.parquet"), "--db", str(db_dir), "--model", "bench")
        (tmp_p / "big.parquet").unlink()
        add("scale_ingest_vectors_seconds", wall, "s")
        out, wall, rss, cpu = _cli_measured("analyze", "--db", str(db_dir), *SCALE_ARGS, "--fit-sample", str(fit),
                                            "--backend", "auto", "--json")
        p = json.loads(Database(db_dir).read(S.RUNS, where=f"run_id = '{out['run_id']}'").to_pylist()[0]["params"])
        stages = p["timings_s"]
        place = stages.get("place (streaming)", 0.0)
        fit_s = sum(v for k, v in stages.items() if k not in ("place (streaming)", "duplicates + write sample",
                                                               "read sample"))
        placed = p["sampling"]["n_placed"]
        add("scale_read_sample_seconds", stages.get("read sample", 0.0), "s")
        add("scale_fit_seconds", fit_s, "s")
        add("scale_place_seconds", place, "s")
        add("scale_place_rows_per_second", placed / max(place, 1e-9), "rows/s")
        add("scale_analyze_wall_seconds", wall, "s")
        add("scale_analyze_cpu_seconds", cpu, "CPU-s")
        add("scale_analyze_peak_rss", rss, "MiB")
        est_10m = fit_s + stages.get("read sample", 0.0) + (10_000_000 - fit) / max(placed / max(place, 1e-9), 1e-9)
        add("scale_estimate_10M_fit_sample_seconds", est_10m, "s (estimate)")
        settings["statement"] = p["sampling"]["statement"]
        settings["backend"] = p["backend_resolved"]
        shutil.rmtree(db_dir, ignore_errors=True)

        # 2) at an affordable size: full fit vs sampled fit of the same rows
        _write_chunked(tmp_p / "cmp.parquet", n_cmp, seed=7)
        cmp_dir = tmp_p / "cmp"
        _cli_measured("ingest-vectors", str(tmp_p / "cmp.parquet"), "--db", str(cmp_dir), "--model", "bench")
        full, wall_full, rss_full, cpu_full = _cli_measured("analyze", "--db", str(cmp_dir), *SCALE_ARGS, "--fit-sample", "0",
                                                  "--backend", "auto", "--json")
        samp, wall_samp, rss_samp, cpu_samp = _cli_measured("analyze", "--db", str(cmp_dir), *SCALE_ARGS, "--fit-sample",
                                                  str(fit_cmp), "--backend", "auto", "--json")
        add("compare_full_fit_wall_seconds", wall_full, "s")
        add("compare_sampled_wall_seconds", wall_samp, "s")
        add("compare_full_fit_cpu_seconds", cpu_full, "CPU-s")
        add("compare_sampled_cpu_seconds", cpu_samp, "CPU-s")
        add("compare_full_over_sampled_time", wall_full / max(wall_samp, 1e-9), "x (wall)")
        add("compare_full_over_sampled_cpu", cpu_full / max(cpu_samp, 1e-9), "x (CPU)")
        add("compare_full_fit_peak_rss", rss_full, "MiB")
        add("compare_sampled_peak_rss", rss_samp, "MiB")
        for method in ("kmeans", "hdbscan"):
            a, b = _labels(cmp_dir, full["run_id"], method), _labels(cmp_dir, samp["run_id"], method)
            keys = sorted(a)
            add(f"compare_ari_sampled_vs_full_{method}", adjusted_rand_score([a[k] for k in keys], [b[k] for k in keys]),
                "ARI")
    return results


# -- all rows at 100k against umap-learn + hdbscan with their own searches ---------------------

ALLROWS_ARGS = ["--project", "umap", "--dims", "2", "--cluster", "hdbscan,kmeans", "--fit-sample", "0"]


def run_allrows(quick: bool = False) -> list[dict]:
    """100k × 384 (quick: 20k; ``EMBEDSCOPE_BENCH_ALLROWS`` sets it), 30 planted blobs, analysed on every row in its own process (wall,
    CPU, peak RSS), then the reference on the same vectors: umap-learn 10-D with its own kNN +
    hdbscan fitted on every row; ARI of our HDBSCAN and k-means labels against it and the truth.
    On the reference's UMAP-10, hdbscan and fast_hdbscan are timed side by side (labels' ARI)."""
    import os

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.metrics import adjusted_rand_score as ari

    from embedscope.analysis.synthetic import make_blobs
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    rows = int(os.environ.get("EMBEDSCOPE_BENCH_ALLROWS", 20_000 if quick else 100_000))
    per_blob = max(10, (rows - 1_000) // 30)
    syn = make_blobs(n_per_blob=per_blob, n_blobs=30, dim=384, n_planted=500, n_outliers=500, n_dups=0, seed=0)
    n = len(syn.ids)
    settings = {"rows": n, "dim": 384, "blobs": 30, "analysis": " ".join(ALLROWS_ARGS), "cores": os.cpu_count(),
                "load_avg_1m": round(os.getloadavg()[0], 2)}
    results = Rows()

    def add(name: str, value: float, unit: str, **extra) -> None:
        results.append({"name": name, "value": round(float(value), 3), "unit": unit, "settings": {**settings, **extra}})

    truth = dict(zip(syn.ids, syn.truth.tolist()))
    with tempfile.TemporaryDirectory(prefix="bench-allrows-") as tmp:
        path = Path(tmp) / "vectors.parquet"
        vec = pa.FixedSizeListArray.from_arrays(pa.array(syn.X.ravel(), pa.float32()), 384)
        pq.write_table(pa.table({"id": syn.ids, "vector": vec}), path)
        db_dir = Path(tmp) / "db"
        _cli_measured("ingest-vectors", str(path), "--db", str(db_dir), "--model", "bench")
        out, wall, rss, cpu = _cli_measured("analyze", "--db", str(db_dir), *ALLROWS_ARGS, "--json")
        p = json.loads(Database(db_dir).read(S.RUNS, where=f"run_id = '{out['run_id']}'").to_pylist()[0]["params"])
        info = p["methods_info"]
        add("allrows_analyze_wall_seconds", wall, "s", target="<= 300 on 2 quiet cores",
            load_avg_1m_after=round(os.getloadavg()[0], 2), load_avg_5m_after=round(os.getloadavg()[1], 2))
        add("allrows_analyze_cpu_seconds", cpu, "CPU-s")
        add("allrows_analyze_peak_rss", rss, "MiB", target="<= 4096")
        for stage, sec in p["timings_s"].items():
            add(f"allrows_stage_{stage.replace(' ', '_')}_seconds", sec, "s")
        knn_info = info.get("knn", {})
        add("allrows_knn_graph_recall", knn_info.get("recall_at_k", 1.0), "recall@k", how=knn_info.get("how", ""))
        add("allrows_hdbscan_fit_rows", info.get("hdbscan", {}).get("n_fit", 0), "rows",
            statement=p["sampling"]["statement"])
        ours = {m: _labels(db_dir, out["run_id"], m) for m in ("hdbscan", "kmeans")}
        order = sorted(ours["hdbscan"])  # imported rows: sha256 is the id they were imported with
        true = [truth[s] for s in order]
        km = ours["kmeans"]
        add("allrows_kmeans_auto_k", len(set(km.values())), "k", info=json.dumps(info.get("k_auto", ""))[:300])
        add("allrows_ari_kmeans_vs_truth", ari(true, [km[s] for s in order]), "ARI")
        ours_h = [ours["hdbscan"][s] for s in order]
        add("allrows_ari_hdbscan_vs_truth", ari(true, ours_h), "ARI")

        import hdbscan
        import umap

        pos = {k: i for i, k in enumerate(syn.ids)}
        X = syn.X[[pos[s] for s in order]]
        # the reference as a user would run it for speed: unseeded, so umap-learn and its
        # pynndescent use every core (seeded, it is single-threaded and did not finish at 100k
        # on a loaded 2-core machine)
        (Z, t_umap, c_umap) = _cpu_timed_wall(lambda: umap.UMAP(n_components=10, n_neighbors=15, min_dist=0.1,
                                                                 metric="cosine", n_jobs=-1).fit_transform(X))
        add("allrows_reference_umap10_seconds", t_umap, "s", cpu_s=round(c_umap, 1),
            how="umap-learn 10-D, its own pynndescent kNN, cosine, every row, unseeded (every core)",
            load_avg_1m_after=round(os.getloadavg()[0], 2))
        mcs = max(5, min(50, n // 100))
        ref, t_h = _timed(lambda: hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=5,
                                                  core_dist_n_jobs=-1).fit_predict(Z))
        add("allrows_reference_hdbscan_seconds", t_h, "s", how=f"hdbscan on every row, min_cluster_size {mcs}")
        add("allrows_ari_hdbscan_vs_reference", ari(ref, ours_h), "ARI", target=">= 0.95")
        add("allrows_ari_reference_vs_truth", ari(true, ref), "ARI")
        try:
            import fast_hdbscan
        except ImportError:
            return results
        fast_hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=5).fit_predict(Z[:2000])  # numba compiles here
        fast, t_f = _timed(lambda: fast_hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=5).fit_predict(Z))
        add("allrows_fast_hdbscan_seconds", t_f, "s", how="fast_hdbscan on the same UMAP-10 (compiled beforehand)")
        add("allrows_ari_fast_hdbscan_vs_hdbscan", ari(ref, fast), "ARI")
        add("allrows_fast_over_hdbscan_time", t_f / max(t_h, 1e-9), "x (lower is better)")
    return results


def _cpu_timed_wall(fn):
    """(fn(), wall seconds, CPU seconds of this process, every thread)."""
    out, cpu, wall = _cpu_timed(fn)
    return out, wall, cpu


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="5k rows instead of 100k, near-dups at 20k, no scale or allrows part")
    ap.add_argument("--only", choices=list(PARTS), help="run one part only")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    results = run(quick=args.quick, only=args.only)
    print(f"{'measurement':42} {'value':>12}  unit")
    for r in results:
        print(f"{r['name']:42} {r['value']:>12}  {r['unit']}")
    s = results[0]["settings"]
    if "projection" in s:
        print(f"\n{s['rows']} x {s['dim']} vectors, {s['cores']} cores; {s['projection']}; {s['clustering']}")
        print(f"sampled / approximated: silhouette on {s['silhouette_sample']} rows; kNN {s['knn']}")
        for k, v in s["sampling"].items():
            print(f"  {k}: {v}")
    scale = [r for r in results if r["name"].startswith(("scale_", "compare_"))]
    if scale:
        st = scale[0]["settings"]
        print(f"\nscale: {st['rows']} x {st['dim']}, --fit-sample {st['fit_sample']} ({st.get('statement', '')}); "
              f"compared at {st['compare_rows']} rows (fit sample {st['compare_fit_sample']}); {st['analysis']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
