"""Analysis jobs on real LanceDB databases: holdout, novelty-only, model/variant choice,
ingest-vectors, and analyze on a database made by the real image ingest. PCA-only (no UMAP)
so these stay fast; the UMAP path is covered by test_analysis_acceptance."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from embedscope.analysis.clustering import (
    ClusterConfig, ClusterMethod, ClusterResult, nearest_center_placer, register_method, unregister_method,
)
from embedscope.analysis.jobs import AnalysisParams, run_analysis, run_novelty_only
from embedscope.analysis.synthetic import make_blobs, more_points
from embedscope.analysis.vectors_import import import_vectors
from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.runs import UnknownRunError, run_by_id
from tests.conftest import vectors_parquet, make_photo, run_cli, save_jpeg

FAST = dict(project=("pca",), cluster=("kmeans", "hdbscan"), hdbscan_space="pca", k_max=8)



@pytest.fixture
def syn_db(tmp_path):
    syn = make_blobs(n_per_blob=80, n_blobs=4, n_planted=15, n_outliers=20, n_dups=4, seed=7)
    db = Database(tmp_path / "db", create=True)
    import_vectors(db, vectors_parquet(tmp_path / "v.parquet", syn.ids, syn.X, syn.labels), model="syn")
    return syn, db, tmp_path


def test_holdout_scores_the_held_out_images_against_the_fit(syn_db):
    syn, db, _ = syn_db
    run_id = run_analysis(db, AnalysisParams(**FAST, holdout=0.25, k=5))
    flags = {r["sha256"]: r for r in db.read(S.FLAGS, where=f"run_id = '{run_id}'").to_pylist()}
    assert len(flags) == len(syn.ids)
    held = [s for s, r in flags.items() if not r["in_fit"]]
    assert abs(len(held) - 0.25 * len(syn.ids)) <= 1
    kind = dict(zip(syn.ids, syn.kind))
    held_out = [s for s in held if kind[s] == "outlier"]
    assert held_out and all(flags[s]["is_novel"] for s in held_out)
    held_in = [s for s in held if kind[s] in ("blob", "dup")]
    assert np.mean([flags[s]["is_novel"] for s in held_in]) < 0.1
    assert all(flags[s]["glosh_score"] is None for s in held)  # GLOSH only for fitted images
    # every image has a primary cluster and a projection; metrics and labels metrics exist
    clusters = db.read(S.CLUSTERS, where=f"run_id = '{run_id}' AND method = 'kmeans'").num_rows
    assert clusters == len(syn.ids)
    assert db.count(S.PROJECTIONS, where=f"run_id = '{run_id}'") == len(syn.ids)
    names = {r["name"] for r in db.read(S.METRICS, where=f"run_id = '{run_id}'").to_pylist()}
    assert {"ari", "nmi", "knn_acc_5", "knn_acc_10", "silhouette"} <= names
    params = json.loads(db.read(S.RUNS, where=f"run_id = '{run_id}'").to_pylist()[0]["params"])
    assert params["holdout"] == 0.25 and params["n_holdout"] == len(held) and params["k_resolved"] == 5
    assert "silhouette_vs_k" not in names  # k was given


def test_novelty_only_since_timestamp_and_run(syn_db):
    syn, db, tmp = syn_db
    with pytest.raises(NotFoundError, match="no analyze run"):
        run_novelty_only(db, since=None)
    parent = run_analysis(db, AnalysisParams(**FAST, k=5))
    assert run_novelty_only(db, since=None) is None  # everything was scored by the analyze run
    cut = dt.datetime.now(dt.timezone.utc).isoformat()
    ids, X, is_out = more_points(syn, 20, 5, seed=11)
    import_vectors(db, vectors_parquet(tmp / "new.parquet", ids, X), model="syn")
    by_time = run_novelty_only(db, since=cut)
    by_run = run_novelty_only(db, since=parent)
    for rid in (by_time, by_run):
        run = db.read(S.RUNS, where=f"run_id = '{rid}'").to_pylist()[0]
        assert run["kind"] == "novelty" and run["n_images"] == len(ids)
        flags = {r["sha256"]: r["is_novel"] for r in db.read(S.FLAGS, where=f"run_id = '{rid}'").to_pylist()}
        assert [flags[s] for s in ids] == is_out.tolist()
        assert db.count(S.PROJECTIONS, where=f"run_id = '{rid}' AND method = 'pca' AND dims = 2") == len(ids)
    with pytest.raises(UnknownRunError, match="neither a run id nor") as unknown:
        run_novelty_only(db, since="yesterday-ish")
    assert parent in unknown.value.hint and by_run in unknown.value.hint  # the known run ids are named


def test_model_and_variant_choice(syn_db, tmp_path):
    syn, db, tmp = syn_db
    import_vectors(db, vectors_parquet(tmp / "other.parquet", syn.ids[:50], syn.X[:50, :64]), model="other")
    with pytest.raises(ConfigError, match="several models: other, syn"):
        run_analysis(db, AnalysisParams(**FAST))
    with pytest.raises(NotFoundError, match="no 'sam2_masked' embeddings") as err:
        run_analysis(db, AnalysisParams(**FAST, model="syn", variant="sam2_masked"))
    assert "variants present: full" in err.value.one_line()
    proc = run_cli("analyze", "--db", str(db.uri), "--model", "nope", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no embeddings for model 'nope'" in lines[0] and "other, syn" in lines[0]
    bad = run_cli("analyze", "--db", str(db.uri), "--model", "syn", "--cluster", "spectral", check=False)
    assert bad.returncode == 2 and "unknown clustering 'spectral'" in bad.stderr


@pytest.mark.slow
def test_ingest_vectors_npy_with_ids_and_refusals(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 16)).astype(np.float32) * 5
    np.save(tmp_path / "v.npy", X)
    (tmp_path / "ids.txt").write_text("\n".join(f"item-{i}" for i in range(30)) + "\n")
    db_dir = tmp_path / "db"
    for _ in range(2):  # re-importing is an upsert, not a duplicate
        out = run_cli("ingest-vectors", str(tmp_path / "v.npy"), "--ids", str(tmp_path / "ids.txt"), "--db", str(db_dir),
                      "--model", "my-model", "--json")
        assert json.loads(out.stdout)["rows"] == 30
    db = Database(db_dir)
    assert db.count(S.IMAGES) == 30
    emb = db.read_embeddings("my-model", "full", ["sha256", "vector", "weights"]).to_pylist()
    assert len(emb) == 30 and {e["weights"] for e in emb} == {"import:v.npy"}
    np.testing.assert_allclose(np.linalg.norm([e["vector"] for e in emb], axis=1), 1.0, atol=1e-5)
    img = db.read(S.IMAGES, where="sha256 = 'item-3'").to_pylist()[0]
    assert img["path"] == "item-3" and img["thumbnail"] is None
    (tmp_path / "short.txt").write_text("a\nb\n")
    bad = run_cli("ingest-vectors", str(tmp_path / "v.npy"), "--ids", str(tmp_path / "short.txt"), "--db", str(db_dir),
                  "--model", "m", check=False)
    assert bad.returncode == 2 and "30 vectors but 2 ids" in bad.stderr
    # analyze the imported vectors through the CLI (tiny, PCA only), then a report
    res = run_cli("analyze", "--db", str(db_dir), "--project", "pca", "--dims", "2,3", "--cluster", "kmeans,agglomerative",
                  "--k", "3", "--json")
    run_id = json.loads(res.stdout)["run_id"]
    assert {(r["method"], r["dims"]) for r in db.read(S.PROJECTIONS, ["method", "dims"]).to_pylist()} == {("pca", 2), ("pca", 3)}
    assert db.read(S.RUNS).to_pylist()[0]["run_id"] == run_id
    run_cli("report", "--db", str(db_dir), "--out", str(tmp_path / "r.html"))
    assert "Dendrogram" in (tmp_path / "r.html").read_text()


@pytest.mark.slow
def test_analyze_on_a_database_made_by_the_real_image_ingest(tmp_path):
    drop = tmp_path / "drop"
    for i in range(6):
        save_jpeg(make_photo(i, (96, 72)), drop / "a" / f"a{i}.jpg")
        save_jpeg(make_photo(50 + i, (96, 72)), drop / "b" / f"b{i}.jpg")
    make_photo(0, (96, 72)).resize((80, 60)).save(drop / "b" / "a0_small.png")  # a phash near-duplicate
    db_dir = tmp_path / "db"
    run_cli("ingest", str(drop), "--db", str(db_dir), "--weights", "random", "--image-size", "56", "--batch-size", "8",
            "--label-from-folder")
    out = run_cli("analyze", "--db", str(db_dir), "--project", "pca", "--cluster", "kmeans,hdbscan", "--hdbscan-space",
                  "pca", "--k-max", "4", "--json")
    summary = json.loads(out.stdout)
    db = Database(db_dir)
    run = db.read(S.RUNS, where=f"run_id = '{summary['run_id']}'").to_pylist()[0]
    assert run["model"] == "dinov2_vits14" and run["variant"] == "full" and run["n_images"] == 13
    assert run["table_version"] == db.version(S.embeddings_table_name("dinov2_vits14"))
    flags = db.read(S.FLAGS, where=f"run_id = '{summary['run_id']}'").to_pylist()
    paths = {r["sha256"]: Path(r["path"]).name for r in db.read(S.IMAGES, ["sha256", "path"]).to_pylist()}
    group = {paths[r["sha256"]]: r["phash_group"] for r in flags}
    assert group["a0.jpg"] is not None and group["a0.jpg"] == group["a0_small.png"]
    names = {r["name"] for r in db.read(S.METRICS, where=f"run_id = '{summary['run_id']}'").to_pylist()}
    assert {"ari", "nmi", "knn_acc_5", "silhouette_vs_k", "inertia"} <= names  # labels came from the folders
    # vectors of another model imported for the same images leave the images rows alone
    shas = sorted(paths)
    np.save(tmp_path / "other.npy", np.random.default_rng(0).normal(size=(len(shas), 8)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("\n".join(shas))
    import_vectors(db, tmp_path / "other.npy", model="other", ids_file=tmp_path / "ids.txt")
    after = {r["sha256"]: r for r in db.read(S.IMAGES).to_pylist()}
    assert all(Path(after[s]["path"]).name == paths[s] and after[s]["thumbnail"] for s in shas)
    assert db.embedding_models() == ["dinov2_vits14", "other"]


def test_report_compares_full_and_sam2_masked_runs(syn_db):
    syn, db, tmp = syn_db
    from embedscope.analysis.report import write_report
    from embedscope.store.db import utc_now

    # a second variant of the same model (as SAM2-masked ingest would write it)
    masked = syn.X + 0.2 / np.sqrt(syn.X.shape[1]) * np.random.default_rng(1).normal(size=syn.X.shape)
    masked = (masked / np.linalg.norm(masked, axis=1, keepdims=True)).astype(np.float32)
    n = len(syn.ids)
    db.upsert(S.embeddings_table_name("syn"), pa.table({
        "sha256": syn.ids, "model": ["syn"] * n, "variant": ["sam2_masked"] * n, "dim": pa.array([384] * n, pa.int32()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(masked.ravel()), 384), "weights": ["random"] * n,
        "created_at": pa.array([utc_now()] * n, pa.timestamp("us", tz="UTC"))}))
    from embedscope.store.runs import resolve_model_variant

    assert resolve_model_variant(db, None, None) == ("syn", "full")  # 'full' stays the default
    full = run_analysis(db, AnalysisParams(**FAST, k=5))
    sam = run_analysis(db, AnalysisParams(**FAST, k=5, variant="sam2_masked"))
    assert [r["variant"] for r in db.read(S.RUNS, ["variant"]).to_pylist()].count("sam2_masked") == 1
    text = write_report(db, run_id=full, out=tmp / "cmp.html").read_text()
    assert "Variants compared" in text and sam in text and full in text


def _halves(X: np.ndarray, cfg: ClusterConfig) -> ClusterResult:
    """A toy clustering: the sign of the first coordinate; unseen rows go to the nearest half's centre."""
    labels = (X[:, 0] > 0).astype(np.int32)
    centres = np.stack([X[labels == c].mean(0) for c in (0, 1)])
    return ClusterResult(labels, place=nearest_center_placer(centres))


@pytest.fixture
def halves_method():
    register_method(ClusterMethod("halves", _halves, "nearest half centre"))
    yield "halves"
    unregister_method("halves")


def test_a_registered_clustering_method_runs_sampled_through_analyze(tmp_path, halves_method, capsys):
    """A method added with register_method runs through `embedscope analyze` (cli.main, in-process:
    a subprocess would not see a method registered by the test) with --fit-sample below the table
    size, so most rows are placed by the method's own `place`."""
    from embedscope.cli import main

    rng = np.random.default_rng(3)
    n = 240
    side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    X = (0.3 * rng.normal(size=(n, 16)) + np.outer(side, np.eye(16)[0])).astype(np.float32)
    ids = [f"row-{i:03d}" for i in range(n)]
    db = Database(tmp_path / "db", create=True)
    import_vectors(db, vectors_parquet(tmp_path / "v.parquet", ids, X), model="toy")
    rc = main(["analyze", "--db", str(db.uri), "--cluster", halves_method, "--project", "pca", "--fit-sample", "60",
               "--json"])
    assert rc == 0
    run_id = json.loads(capsys.readouterr().out)["run_id"]
    db.refresh()
    run = run_by_id(db, run_id)
    assert run.params["sampling"]["sampled"] and run.params["sampling"]["n_fit"] == 60
    assert run.params["methods_info"]["placement"]["how"][halves_method] == "nearest half centre"
    clusters = {r["sha256"]: r["cluster"] for r in db.read(S.CLUSTERS, where=f"run_id = '{run_id}' AND method = 'halves'").to_pylist()}
    assert set(clusters) == set(ids)  # every row has a cluster
    in_fit = {r["sha256"]: r["in_fit"] for r in db.read(S.FLAGS, ["sha256", "in_fit"], where=f"run_id = '{run_id}'").to_pylist()}
    placed = [s for s in ids if not in_fit[s]]
    assert len(placed) == n - 60
    want = {s: int(X[i, 0] > 0) for i, s in enumerate(ids)}
    assert all(clusters[s] == want[s] for s in placed)  # placed rows got the label of their half


@pytest.mark.slow
def test_refresh_novelty_fits_once_then_scores_only_new_images(syn_db):
    from embedscope.analysis.jobs import refresh_novelty

    syn, db, tmp = syn_db
    first = refresh_novelty(db, model="syn")  # no analyze run yet: one is fitted (analyze defaults)
    assert run_by_id(db, first).kind == "analyze"
    assert refresh_novelty(db, model="syn") is None  # nothing new
    ids, X, _ = more_points(syn, 10, 2, seed=5)
    import_vectors(db, vectors_parquet(tmp / "new.parquet", ids, X), model="syn")
    later = run_by_id(db, refresh_novelty(db, model="syn"))
    assert later.kind == "novelty" and later.parent_run == first and later.n_images == len(ids)
