"""Issue 5's acceptance tests, through the real CLI on a real LanceDB.

Synthetic vectors with known structure (Gaussian blobs on the unit sphere in 384-d, planted
outliers, a planted small far cluster, near-duplicate copies) are imported with
`ingest-vectors` and analysed with the default projection (UMAP, cosine) and HDBSCAN on UMAP-10
plus k-means (k auto), agglomerative and k-medoids. This is the one place the tests pay for
UMAP's first-call compile.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embedscope.analysis.synthetic import make_blobs, more_points
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import vectors_parquet, run_cli

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("acceptance")
    syn = make_blobs(seed=0)
    db_dir = tmp / "db"
    run_cli("ingest-vectors", str(vectors_parquet(tmp / "vectors.parquet", syn.ids, syn.X)), "--db", str(db_dir),
            "--model", "synthetic")
    proc = run_cli("analyze", "--db", str(db_dir), "--cluster", "hdbscan,kmeans,agglomerative,kmedoids", "--json")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"syn": syn, "db_dir": db_dir, "tmp": tmp, "summary": summary, "run_id": summary["run_id"],
            "stderr": proc.stderr}


def _rows(db: Database, table: str, run_id: str, where: str = "") -> list[dict]:
    return db.read(table, where=f"run_id = '{run_id}'" + (f" AND {where}" if where else "")).to_pylist()


@pytest.mark.parametrize("method", ["hdbscan", "kmeans", "agglomerative", "kmedoids"])
def test_good_clusterers_recover_the_blobs(analyzed, method):
    syn, db = analyzed["syn"], Database(analyzed["db_dir"])
    got = {r["sha256"]: r["cluster"] for r in _rows(db, S.CLUSTERS, analyzed["run_id"], f"method = '{method}'")}
    assert len(got) == len(syn.ids)
    keep = [i for i, t in enumerate(syn.truth) if t >= 0]  # planted outliers have no true cluster
    ari = adjusted_rand_score(syn.truth[keep], [got[syn.ids[i]] for i in keep])
    assert ari >= 0.9, f"{method}: ARI {ari:.3f}"


def test_planted_outliers_are_flagged_novel(analyzed):
    syn, db = analyzed["syn"], Database(analyzed["db_dir"])
    flags = {r["sha256"]: r for r in _rows(db, S.FLAGS, analyzed["run_id"])}
    outlier = {s for s, k in zip(syn.ids, syn.kind) if k == "outlier"}
    novel = {s for s, r in flags.items() if r["is_novel"]}
    precision = len(novel & outlier) / max(1, len(novel))
    recall = len(novel & outlier) / len(outlier)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    some = flags[next(iter(novel & outlier))]
    assert some["novelty_reason"] and "knn z=" in some["novelty_reason"]
    assert some["surprise"] > np.median([r["surprise"] for r in flags.values()])
    assert analyzed["summary"]["novel"] == len(novel)


def test_planted_cluster_is_flagged_contaminated(analyzed):
    syn, db = analyzed["syn"], Database(analyzed["db_dir"])
    flags = {r["sha256"]: r for r in _rows(db, S.FLAGS, analyzed["run_id"])}
    planted = [s for s, k in zip(syn.ids, syn.kind) if k == "planted"]
    blob = [s for s, k in zip(syn.ids, syn.kind) if k == "blob"]
    assert all(flags[s]["is_contaminated"] for s in planted)
    assert "small and far" in flags[planted[0]]["contamination_reason"]
    assert sum(flags[s]["is_contaminated"] for s in blob) == 0
    params = json.loads(_rows(db, S.RUNS, analyzed["run_id"])[0]["params"])
    assert params["contaminated_clusters"]


def test_near_duplicate_pairs_are_grouped(analyzed):
    syn, db = analyzed["syn"], Database(analyzed["db_dir"])
    group = {r["sha256"]: r["dup_group"] for r in _rows(db, S.FLAGS, analyzed["run_id"])}
    for a, b in syn.dup_pairs:
        assert group[a] is not None and group[a] == group[b]
    grouped = [s for s, g in group.items() if g is not None]
    assert len(grouped) == 2 * len(syn.dup_pairs)  # nothing else is a near-duplicate


def test_run_is_recorded_with_params_metrics_and_model(analyzed):
    db = Database(analyzed["db_dir"])
    run = _rows(db, S.RUNS, analyzed["run_id"])[0]
    assert run["kind"] == "analyze" and run["model"] == "synthetic" and run["variant"] == "full"
    assert run["table_version"] == db.version(S.embeddings_table_name("synthetic"))
    assert run["n_images"] == len(analyzed["syn"].ids)
    p = json.loads(run["params"])
    assert (p["primary_cluster"], p["primary_projection"], p["primary_dims"]) == ("hdbscan", "umap", 2)
    assert p["seed"] == 0 and p["novelty"]["z_threshold"] == 3.0 and p["duplicates"]["cosine_threshold"] == 0.03
    assert p["methods_info"]["hdbscan"]["space"] == "umap10d"
    assert p["methods_info"]["umap2d"]["metric"] == "cosine"
    assert p["k_resolved"] == 6  # five blobs + the planted cluster
    assert len(p["dendrogram"]["linkage"]) == len(p["dendrogram"]["sha256"]) - 1
    metrics = _rows(db, S.METRICS, analyzed["run_id"])
    names = {(m["name"], m["method"], m["space"]) for m in metrics}
    for method in ("hdbscan", "kmeans"):
        for name in ("silhouette", "davies_bouldin", "calinski_harabasz"):
            assert (name, method, "embedding") in names and (name, method, "umap2d") in names
    sweep = {m["k"]: m["value"] for m in metrics if m["name"] == "silhouette_vs_k"}
    assert max(sweep, key=sweep.get) == 6 and {m["k"] for m in metrics if m["name"] == "inertia"} == set(sweep)
    assert db.count(S.RUN_MODELS, where=f"run_id = '{analyzed['run_id']}'") == 1
    proj = _rows(db, S.PROJECTIONS, analyzed["run_id"])
    assert {(r["method"], r["dims"]) for r in proj} == {("umap", 2)}  # UMAP-10 is not a projection
    assert len(proj) == len(analyzed["syn"].ids) and all(np.isfinite([r["x"] for r in proj]))
    probs = [r["probability"] for r in _rows(db, S.CLUSTERS, analyzed["run_id"], "method = 'hdbscan'")]
    assert all(0.0 <= p <= 1.0 for p in probs) and min(probs) < 1.0


def test_report_has_tables_curves_dendrogram_and_plots(analyzed):
    out = analyzed["tmp"] / "report.html"
    run_cli("report", "--db", str(analyzed["db_dir"]), "--out", str(out))
    text = out.read_text()
    for needle in ("Clustering × metric", "Projection × clustering", "Choosing k", "Dendrogram", "umap 2-D",
                   "small and far", analyzed["run_id"]):
        assert needle in text, needle
    assert text.count("data:image/png;base64,") >= 3


def test_novelty_only_scores_new_images_without_refitting(analyzed):
    db_dir = analyzed["tmp"] / "db_novelty"
    shutil.copytree(analyzed["db_dir"], db_dir)
    ids, X, is_out = more_points(analyzed["syn"], 40, 8, seed=5)
    run_cli("ingest-vectors", str(vectors_parquet(analyzed["tmp"] / "new.parquet", ids, X)), "--db", str(db_dir),
            "--model", "synthetic")
    proc = run_cli("analyze", "--db", str(db_dir), "--novelty-only", "--json")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kind"] == "novelty" and out["n_images"] == len(ids)
    db = Database(db_dir)
    run = _rows(db, S.RUNS, out["run_id"])[0]
    assert json.loads(run["params"])["parent_run"] == analyzed["run_id"]
    flags = {r["sha256"]: r for r in _rows(db, S.FLAGS, out["run_id"])}
    assert set(flags) == set(ids) and not any(r["in_fit"] for r in flags.values())
    novel = {s for s, r in flags.items() if r["is_novel"]}
    outliers = {s for s, o in zip(ids, is_out) if o}
    assert len(novel & outliers) / len(outliers) >= 0.8 and len(novel & outliers) / max(1, len(novel)) >= 0.8
    # no refit: the analyze run's rows are untouched and there is still one analyze run
    assert sum(r["kind"] == "analyze" for r in db.read(S.RUNS).to_pylist()) == 1
    # nothing left to score: a second call says so
    again = run_cli("analyze", "--db", str(db_dir), "--novelty-only", "--json")
    assert json.loads(again.stdout.strip().splitlines()[-1])["run_id"] is None
    # the latest values joined onto images include the new images, placed in the projection
    from embedscope.analysis.results import image_results

    res = {r["sha256"]: r for r in image_results(db).to_pylist()}
    assert len(res) == len(analyzed["syn"].ids) + len(ids)
    assert all(res[s]["x"] is not None and res[s]["cluster"] is not None for s in ids)
    assert res[ids[-1]]["run_id"] == out["run_id"]
    # ... and so does SQL's images_latest, with the novelty-only run's scores
    from embedscope.store.queries import run_sql

    latest = {r["sha256"]: r for r in run_sql(db, "SELECT sha256, cluster, x, novelty_score, is_novel "
                                                  "FROM images_latest").to_pylist()}
    assert all(latest[s]["x"] is not None and latest[s]["cluster"] == res[s]["cluster"] for s in ids)
    assert {s for s in ids if latest[s]["is_novel"]} == novel
    assert [latest[s]["novelty_score"] for s in ids] == pytest.approx([flags[s]["novelty_score"] for s in ids])
