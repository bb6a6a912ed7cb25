"""Analysis at scale (issue 9): fit on a seeded sample, place the rest in a streaming pass.

On synthetic blobs, a run fitted on a sample and placed by transform / predict /
approximate_predict agrees with a run fitted on every row (ARI >= 0.9 per clustering); the
streamed placement does not depend on the batch size; runs at or below ``--fit-sample`` are
unchanged; the real CLI on an ``ingest-vectors`` database writes results for every row and
records the sampling; the cuML backend falls back with a log line, or fails clearly when forced.
Projections are PCA (UMAP's compile is paid once, in the UMAP test) to keep these fast.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embedscope.analysis.backend import resolve_backend
from embedscope.analysis.jobs import AnalysisParams, run_analysis, run_novelty_only
from embedscope.analysis.neighbors import KnnIndex, knn
from embedscope.analysis.novelty import NoveltyConfig, fit_model, score_new
from embedscope.analysis.synthetic import make_blobs, more_points
from embedscope.analysis.vectors_import import import_vectors
from embedscope.errors import DependencyError
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import vectors_parquet, run_cli

FAST = dict(project=("pca",), hdbscan_space="pca", k=5)
METHODS = ("hdbscan", "kmeans", "agglomerative", "kmedoids", "dbscan")



@pytest.fixture(scope="module")
def blobs_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    syn = make_blobs(n_per_blob=500, n_blobs=5, dim=64, n_planted=30, n_outliers=30, n_dups=10, seed=11)
    db = Database(tmp / "db", create=True)
    import_vectors(db, vectors_parquet(tmp / "v.parquet", syn.ids, syn.X, syn.labels), model="syn")
    return syn, db


def _by_sha(db: Database, table: str, run_id: str, where: str = "") -> dict:
    rows = db.read(table, where=f"run_id = '{run_id}'{where}").to_pylist()
    return {r["sha256"]: r for r in rows}


def _params(db: Database, run_id: str) -> dict:
    return json.loads(db.read(S.RUNS, where=f"run_id = '{run_id}'").to_pylist()[0]["params"])


def test_sample_then_place_agrees_with_full_fit(blobs_db):
    syn, db = blobs_db
    full = run_analysis(db, AnalysisParams(**FAST, cluster=METHODS, fit_sample=0))
    sampled = run_analysis(db, AnalysisParams(**FAST, cluster=METHODS, fit_sample=600, batch_size=700))
    n = len(syn.ids)
    p = _params(db, sampled)
    assert p["sampling"]["sampled"] and p["sampling"]["n_fit"] == 600 and p["sampling"]["n_placed"] == n - 600
    assert f"fitted on 600 of {n:,} rows" in p["sampling"]["statement"]
    assert p["methods_info"]["placement"]["rows"] == n - 600
    assert not _params(db, full)["sampling"]["sampled"]
    for method in METHODS:
        a = _by_sha(db, S.CLUSTERS, full, f" AND method = '{method}'")
        b = _by_sha(db, S.CLUSTERS, sampled, f" AND method = '{method}'")
        assert set(a) == set(b) == set(syn.ids)
        ari = adjusted_rand_score([a[s]["cluster"] for s in syn.ids], [b[s]["cluster"] for s in syn.ids])
        assert ari >= 0.9, (method, ari)
    # every row has a projection and flags; the placed ones are marked as not fitted
    flags = _by_sha(db, S.FLAGS, sampled)
    assert len(flags) == n and sum(r["in_fit"] for r in flags.values()) == 600
    assert len(_by_sha(db, S.PROJECTIONS, sampled)) == n
    # novelty on placed rows is judged on the sample's scale: the planted outliers are found
    kind = dict(zip(syn.ids, syn.kind))
    outliers = [s for s in syn.ids if kind[s] == "outlier"]
    inliers = [s for s in syn.ids if kind[s] == "blob"]
    placed_out = [s for s in outliers if not flags[s]["in_fit"]]
    assert placed_out and np.mean([flags[s]["is_novel"] for s in placed_out]) >= 0.9
    assert np.mean([flags[s]["is_novel"] for s in inliers]) < 0.05
    assert all(flags[s]["glosh_score"] is not None for s in placed_out)  # GLOSH via approximate_predict_scores
    # every planted near-duplicate pair is found, wherever its two rows are (sample, batches)
    dup = {s: r["dup_group"] for s, r in flags.items()}
    assert all(dup[a] is not None and dup[a] >= 0 and dup[a] == dup[b] for a, b in syn.dup_pairs)


def test_streamed_placement_does_not_depend_on_batch_size(blobs_db):
    _, db = blobs_db
    small = run_analysis(db, AnalysisParams(**FAST, cluster=("hdbscan", "kmeans"), fit_sample=500, batch_size=97))
    big = run_analysis(db, AnalysisParams(**FAST, cluster=("hdbscan", "kmeans"), fit_sample=500, batch_size=100_000))
    for table in (S.CLUSTERS, S.FLAGS):
        a, b = db.read(table, where=f"run_id = '{small}'"), db.read(table, where=f"run_id = '{big}'")
        key = ["sha256", "method"] if table == S.CLUSTERS else ["sha256"]
        a, b = a.sort_by([(k, "ascending") for k in key]), b.sort_by([(k, "ascending") for k in key])
        for col in ("cluster", "probability", "novelty_score", "is_novel", "knn_score", "glosh_score"):
            if col in a.column_names:
                x, y = a.column(col).to_pylist(), b.column(col).to_pylist()
                assert all((u is None and v is None) or u == pytest.approx(v, abs=1e-5) for u, v in zip(x, y)), col


def test_runs_at_or_below_fit_sample_are_unchanged(blobs_db):
    syn, db = blobs_db
    a = run_analysis(db, AnalysisParams(**FAST, cluster=("kmeans",), fit_sample=0))
    b = run_analysis(db, AnalysisParams(**FAST, cluster=("kmeans",), fit_sample=len(syn.ids)))
    assert not _params(db, b)["sampling"]["sampled"]
    for table, cols in ((S.CLUSTERS, ["cluster"]), (S.FLAGS, ["novelty_score", "is_novel", "dup_group"]),
                        (S.PROJECTIONS, ["x", "y"])):
        ta = db.read(table, where=f"run_id = '{a}'").sort_by("sha256")
        tb = db.read(table, where=f"run_id = '{b}'").sort_by("sha256")
        for c in cols:
            assert ta.column(c).to_pylist() == tb.column(c).to_pylist(), (table, c)


def test_novelty_scoring_in_batches_gives_the_same_numbers():
    syn = make_blobs(n_per_blob=120, n_blobs=4, dim=48, seed=5)
    X = syn.X
    fit_rows, new_rows = X[:350], X[350:]
    labels = np.maximum(syn.truth[:350], 0)
    model, _ = fit_model(fit_rows, labels, NoveltyConfig())
    whole = score_new(new_rows, fit_rows, model)
    batched = score_new(new_rows, KnnIndex(fit_rows), model, batch_size=17)
    # the same up to float32 rounding: BLAS rounds a matrix product differently for different row counts
    np.testing.assert_allclose(whole.novelty_score, batched.novelty_score, rtol=1e-5, atol=1e-5)
    assert whole.novelty_reason == batched.novelty_reason and (whole.cluster == batched.cluster).all()
    # the prepared index (PCA candidates) is the same search as knn() with search_dims
    a = knn(new_rows, fit_rows, 5, search_dims=16)
    b = KnnIndex(fit_rows, search_dims=16).search(new_rows, 5)
    assert (a.idx == b.idx).all() and np.allclose(a.dist, b.dist)


def test_novelty_only_streams_against_a_sampled_run(tmp_path):
    syn = make_blobs(n_per_blob=200, n_blobs=4, dim=48, n_planted=0, n_outliers=10, n_dups=0, seed=9)
    db = Database(tmp_path / "db", create=True)
    import_vectors(db, vectors_parquet(tmp_path / "v.parquet", syn.ids, syn.X), model="syn")
    parent = run_analysis(db, AnalysisParams(**FAST, cluster=("kmeans",), fit_sample=300, batch_size=128))
    ids, X, is_out = more_points(syn, 150, 12, seed=3)
    import_vectors(db, vectors_parquet(tmp_path / "new.parquet", ids, X), model="syn")
    a = run_novelty_only(db, since=parent, batch_size=37)
    b = run_novelty_only(db, since=parent, batch_size=10_000)
    fa, fb = _by_sha(db, S.FLAGS, a), _by_sha(db, S.FLAGS, b)
    assert set(fa) == set(fb) == set(ids)
    for s in ids:
        assert fa[s]["novelty_score"] == pytest.approx(fb[s]["novelty_score"], abs=1e-4)  # BLAS blocking
        assert fa[s]["cluster"] == fb[s]["cluster"]
    assert np.mean([fa[s]["is_novel"] for s, o in zip(ids, is_out) if o]) >= 0.9
    assert np.mean([fa[s]["is_novel"] for s, o in zip(ids, is_out) if not o]) < 0.1
    assert _params(db, a)["n_reference"] == 300  # the reference set is the parent's fit sample
    assert db.count(S.PROJECTIONS, where=f"run_id = '{a}'") == len(ids)


@pytest.mark.slow
def test_umap_transform_places_points_as_well_as_the_fit():
    from sklearn.cluster import KMeans
    from sklearn.manifold import trustworthiness

    from embedscope.analysis.projection import ProjectionConfig, fit_projection

    syn = make_blobs(n_per_blob=300, n_blobs=5, dim=64, n_planted=0, n_outliers=0, n_dups=0, seed=2)
    X, truth = syn.X, syn.truth
    idx = np.sort(np.random.default_rng(0).choice(len(X), 400, replace=False))
    rest = np.setdiff1d(np.arange(len(X)), idx)
    proj = fit_projection(X[idx], ProjectionConfig("umap", 2, seed=0))
    coords = np.zeros((len(X), 2), np.float32)
    coords[idx], coords[rest] = proj.coords, proj.transform(X[rest])
    labels = KMeans(5, n_init=5, random_state=0).fit_predict(coords)
    assert adjusted_rand_score(truth, labels) >= 0.9
    t_fit = trustworthiness(X[idx], coords[idx], n_neighbors=10)
    t_placed = trustworthiness(X[rest], coords[rest], n_neighbors=10)
    assert t_placed >= t_fit - 0.05, (t_fit, t_placed)


@pytest.mark.slow
def test_cli_analyze_fit_sample_places_every_row(tmp_path):
    syn = make_blobs(n_per_blob=580, n_blobs=5, dim=96, n_planted=40, n_outliers=40, n_dups=10, seed=4)
    db_dir = tmp_path / "db"
    run_cli("ingest-vectors", str(vectors_parquet(tmp_path / "v.parquet", syn.ids, syn.X, syn.labels)), "--db", str(db_dir),
            "--model", "syn")
    proc = run_cli("analyze", "--db", str(db_dir), "--fit-sample", "500", "--batch-size", "1000", "--project", "pca",
                   "--cluster", "hdbscan,kmeans,agglomerative", "--hdbscan-space", "pca", "--k", "5", "--backend", "auto",
                   "--json")
    out = json.loads(proc.stdout)
    n = len(syn.ids)
    assert out["n_images"] == n and out["sampling"]["n_fit"] == 500
    assert f"fitted on 500 of {n:,} rows" in proc.stderr and "backend cpu" in proc.stderr
    assert "cuML not available" in proc.stderr
    db = Database(db_dir)
    rid = out["run_id"]
    for method in ("hdbscan", "kmeans", "agglomerative"):
        assert db.count(S.CLUSTERS, where=f"run_id = '{rid}' AND method = '{method}'") == n
    assert db.count(S.PROJECTIONS, where=f"run_id = '{rid}'") == n
    assert db.count(S.FLAGS, where=f"run_id = '{rid}'") == n
    p = _params(db, rid)
    assert p["fit_sample"] == 500 and p["sampling"]["sampled"] and p["backend_resolved"]["name"] == "cpu"
    assert set(p["sampling"]["methods_sampled"]) >= {"pca2d", "hdbscan", "kmeans", "agglomerative"}
    # the kmeans labels of all rows recover the blobs
    cl = _by_sha(db, S.CLUSTERS, rid, " AND method = 'kmeans'")
    blob = [s for s, k in zip(syn.ids, syn.kind) if k == "blob"]
    truth = dict(zip(syn.ids, syn.truth))
    assert adjusted_rand_score([truth[s] for s in blob], [cl[s]["cluster"] for s in blob]) >= 0.9
    # the report states the sampling
    report = tmp_path / "r.html"
    run_cli("report", "--db", str(db_dir), "--out", str(report))
    assert f"fitted on 500 of {n:,} rows" in report.read_text()
    # forcing cuML where it cannot run is a clear one-line error
    bad = run_cli("analyze", "--db", str(db_dir), "--backend", "cuml", check=False)
    assert bad.returncode != 0 and "cuML" in bad.stderr and "--backend cpu" in bad.stderr


def test_backend_auto_falls_back_to_cpu_with_one_log_line(caplog):
    try:
        import cuml  # noqa: F401
        pytest.skip("cuML is installed: the fallback is not what happens here")
    except ImportError:
        pass
    with caplog.at_level(logging.INFO, logger="embedscope.analysis.backend"):
        b = resolve_backend("auto")
    assert b.name == "cpu" and "cuML not available" in b.reason
    lines = [r.getMessage() for r in caplog.records if "cuML not available" in r.getMessage()]
    assert len(lines) == 1 and "using CPU umap-learn/hdbscan/scikit-learn" in lines[0]
    assert resolve_backend("cpu").name == "cpu"
    with pytest.raises(DependencyError) as exc:
        resolve_backend("cuml")
    assert "cuml" in exc.value.one_line().lower() and "--backend cpu" in exc.value.one_line()


@pytest.mark.gpu
def test_cuml_backend_sample_then_place(blobs_db):
    pytest.importorskip("cuml")
    syn, db = blobs_db
    rid = run_analysis(db, AnalysisParams(project=("umap",), cluster=("hdbscan", "kmeans"), k=5, fit_sample=600,
                                          backend="cuml"))
    p = _params(db, rid)
    assert p["backend_resolved"]["name"] == "cuml"
    assert db.count(S.CLUSTERS, where=f"run_id = '{rid}' AND method = 'kmeans'") == len(syn.ids)
