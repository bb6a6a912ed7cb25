"""SQL (read-only DuckDB), similarity search, the CLI commands and the Python API, on a real
ingested database (random weights, 56 px) and on small hand-built embeddings tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from conftest import REPO, make_photo, run_cli, save_jpeg
from embedscope.errors import NotFoundError, QueryError
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.queries import run_sql, similar

INGEST = ("--weights", "random", "--image-size", "56", "--batch-size", "8", "--no-progress")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict:
    """cats: 4 JPEGs; dogs: 3 JPEGs + a PNG + an exact copy of cats/c0.jpg; one corrupt file."""
    root = tmp_path_factory.mktemp("q")
    drop, db = root / "drop", root / "db"
    for i in range(4):
        save_jpeg(make_photo(i), drop / "cats" / f"c{i}.jpg")
    for i in range(3):
        save_jpeg(make_photo(10 + i), drop / "dogs" / f"d{i}.jpg")
    make_photo(20, (96, 80)).save(drop / "dogs" / "p.png")
    (drop / "dogs" / "copy of c0.jpg").write_bytes((drop / "cats" / "c0.jpg").read_bytes())
    (drop / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    run_cli("ingest", str(drop), "--db", str(db), "--label-from-folder", *INGEST)
    return {"drop": drop, "db": db}


def _versions(db: Database) -> dict[str, int | None]:
    db.refresh()
    return {name: db.version(name) for name in db.table_names()}


# -- SQL ---------------------------------------------------------------------------------------


def test_sql_exact_answers(ingested):
    db = Database(ingested["db"])
    by_label = run_sql(db, "SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label").to_pylist()
    assert by_label == [{"label": "cats", "n": 4}, {"label": "dogs", "n": 4}]
    # every path, duplicates and the quarantined file included
    assert run_sql(db, "SELECT count(*) AS n FROM sources").column("n")[0].as_py() == 10
    dup = run_sql(db, """SELECT s.path FROM sources s JOIN images i USING (sha256)
                         WHERE s.path <> i.path ORDER BY s.path""").column("path").to_pylist()
    assert [Path(p).name for p in dup] == ["copy of c0.jpg"]
    q = run_sql(db, "SELECT path, reason FROM quarantine").to_pylist()
    assert [Path(r["path"]).name for r in q] == ["broken.jpg"] and q[0]["reason"]
    fmt = run_sql(db, "SELECT format, count(*) n FROM images GROUP BY ALL ORDER BY format").to_pylist()
    assert fmt == [{"format": "JPEG", "n": 7}, {"format": "PNG", "n": 1}]
    emb = run_sql(db, """SELECT model, variant, count(*) n, min(len(vector)) d, any_value(typeof(vector)) t,
                                any_value(weights) w FROM embeddings GROUP BY ALL""").to_pylist()
    assert emb == [{"model": "dinov2_vits14", "variant": "full", "n": 8, "d": 384, "t": "FLOAT[]", "w": "random"}]
    # the per-model table is visible too, with its fixed-size vector
    assert run_sql(db, "SELECT typeof(vector) t FROM embeddings_dinov2_vits14 LIMIT 1").column("t")[0].as_py() == "FLOAT[384]"
    # tables that do not exist yet are empty, with their schema
    for name in ("masks", "runs", "clusters", "projections", "flags", "metrics"):
        t = run_sql(db, f"SELECT * FROM {name}")
        assert t.num_rows == 0 and t.column_names == S.FIXED_SCHEMAS[name].names
    latest = run_sql(db, "SELECT count(*) n, count(cluster) c, count(x) x FROM images_latest").to_pylist()
    assert latest == [{"n": 8, "c": 0, "x": 0}]
    # the row limit cuts and says so
    cut = run_sql(db, "SELECT * FROM range(50)", limit=7)
    assert cut.num_rows == 7 and cut.schema.metadata[b"embedscope.truncated"] == b"true"


def test_images_latest_uses_the_latest_analyze_runs_primary_methods(tmp_path, ingested):
    db = Database(ingested["db"])
    shas = sorted(run_sql(db, "SELECT sha256 FROM images").column("sha256").to_pylist())
    copy = tmp_path / "db"
    import shutil

    shutil.copytree(ingested["db"], copy)
    db = Database(copy)
    t0 = utc_now()
    import datetime as dt

    params_old = json.dumps({"primary_cluster": "kmeans", "primary_projection": "pca", "primary_dims": 2})
    params_new = json.dumps({"primary_cluster": "hdbscan", "primary_projection": "umap", "primary_dims": 2})
    db.upsert(S.RUNS, pa.Table.from_pylist([
        {"run_id": "old", "kind": "analyze", "params": params_old, "created_at": t0 - dt.timedelta(hours=1)},
        {"run_id": "new", "kind": "analyze", "params": params_new, "created_at": t0},
        {"run_id": "nov", "kind": "novelty", "params": "{}", "created_at": t0 + dt.timedelta(hours=1)},
    ], S.RUNS_SCHEMA))
    clusters, projections, flags = [], [], []
    for i, sha in enumerate(shas):
        for run in ("old", "new"):
            for method in ("kmeans", "hdbscan"):
                clusters.append({"run_id": run, "sha256": sha, "method": method,
                                 "cluster": i % 3 if (run, method) == ("new", "hdbscan") else 99})
            for method, dims in (("umap", 2), ("umap", 3), ("pca", 2)):
                good = (run, method, dims) == ("new", "umap", 2)
                projections.append({"run_id": run, "sha256": sha, "method": method, "dims": dims,
                                    "x": float(i) if good else -1.0, "y": float(-i) if good else -1.0})
        flags.append({"run_id": "new", "sha256": sha, "novelty_score": i / 10, "is_novel": i == 0,
                      "is_contaminated": False, "dup_group": 1 if i < 2 else None})
        flags.append({"run_id": "old", "sha256": sha, "is_novel": True})
    db.upsert(S.CLUSTERS, pa.Table.from_pylist(clusters, S.CLUSTERS_SCHEMA))
    db.upsert(S.PROJECTIONS, pa.Table.from_pylist(projections, S.PROJECTIONS_SCHEMA))
    db.upsert(S.FLAGS, pa.Table.from_pylist(flags, S.FLAGS_SCHEMA))

    rows = run_sql(db, "SELECT sha256, cluster, x, y, is_novel, dup_group FROM images_latest ORDER BY sha256").to_pylist()
    assert [r["sha256"] for r in rows] == shas
    assert [r["cluster"] for r in rows] == [i % 3 for i in range(len(shas))]
    assert [(r["x"], r["y"]) for r in rows] == [(float(i), float(-i)) for i in range(len(shas))]
    assert [r["is_novel"] for r in rows] == [i == 0 for i in range(len(shas))]
    assert sum(r["dup_group"] == 1 for r in rows) == 2
    novel_per_folder = run_sql(db, """
        SELECT split_part(s.path, '/', -2) AS folder, count(*) FILTER (WHERE l.is_novel) AS novel
        FROM sources s JOIN images_latest l USING (sha256) GROUP BY folder ORDER BY folder""").to_pylist()
    assert sum(r["novel"] for r in novel_per_folder) >= 1


FORBIDDEN = [
    ("DROP VIEW images", "only SELECT"),
    ("DROP TABLE images", "only SELECT"),
    ("DELETE FROM images", "only SELECT"),
    ("CREATE TABLE t AS SELECT * FROM images", "only SELECT"),
    ("INSERT INTO images SELECT * FROM images", "only SELECT"),
    ("UPDATE images SET label = 'x'", "only SELECT"),
    ("COPY images TO '{out}/leak.csv'", "only SELECT"),
    ("COPY (SELECT * FROM images) TO '{out}/leak.parquet' (FORMAT parquet)", "only SELECT"),
    ("ATTACH '{out}/other.duckdb' AS other", "only SELECT"),
    ("INSTALL httpfs", "only SELECT"),
    ("LOAD httpfs", "only SELECT"),
    ("SET enable_external_access = true", "only SELECT"),
    ("PRAGMA enable_profiling", "only SELECT"),
    ("SELECT 1; DROP TABLE images", "one statement"),
    ("SELECT * FROM read_csv('/etc/passwd')", "refused"),
    ("SELECT * FROM read_text('/etc/passwd')", "refused"),
    ("SELECT * FROM read_parquet('{out}/x.parquet')", "refused"),
    ("SELECT * FROM glob('/etc/*')", "refused"),
    ("SELECT * FROM read_json('https://example.com/x.json')", "refused"),
    ("SELECT * FROM query('DROP TABLE images')", "SQL error"),
]


def test_forbidden_statements_are_refused_and_change_nothing(tmp_path, ingested):
    db = Database(ingested["db"])
    before = _versions(db)
    files_before = sorted(p.relative_to(ingested["db"]) for p in Path(ingested["db"]).rglob("*"))
    for sql, expected in FORBIDDEN:
        sql = sql.format(out=tmp_path)
        with pytest.raises(QueryError) as err:
            run_sql(db, sql)
        assert expected in err.value.one_line(), (sql, err.value.one_line())
    assert list(tmp_path.iterdir()) == []
    assert _versions(db) == before
    assert sorted(p.relative_to(ingested["db"]) for p in Path(ingested["db"]).rglob("*")) == files_before
    # and the tables still answer
    assert run_sql(db, "SELECT count(*) n FROM images").column("n")[0].as_py() == 8


def test_cli_query_formats_and_refusal(tmp_path, ingested):
    db = str(ingested["db"])
    sql = "SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label"
    out = run_cli("query", "--db", db, sql, "--format", "table").stdout.splitlines()
    assert out[0].split() == ["label", "n"] and out[2].split() == ["cats", "4"] and out[-1] == "(2 rows)"
    assert run_cli("query", "--db", db, sql).stdout == "label,n\ncats,4\ndogs,4\n"  # a pipe: csv
    assert json.loads(run_cli("query", "--db", db, sql, "--format", "json").stdout) == [
        {"label": "cats", "n": 4}, {"label": "dogs", "n": 4}]
    run_cli("query", "--db", db, "SELECT sha256, path, thumbnail FROM images", "--out", str(tmp_path / "r.parquet"))
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "r.parquet").num_rows == 8
    bad = run_cli("query", "--db", db, "DROP TABLE images", check=False)
    assert bad.returncode != 0 and "only SELECT" in bad.stderr and "Traceback" not in bad.stderr


# -- similarity --------------------------------------------------------------------------------


def test_similar_returns_the_image_itself_first(ingested):
    db = Database(ingested["db"])
    images = run_sql(db, "SELECT sha256, path FROM images ORDER BY path").to_pylist()
    for img in images:
        hits = similar(db, img["sha256"], k=3)
        assert hits.column_names[:4] == ["rank", "sha256", "distance", "path"]
        assert hits.num_rows == 3
        assert hits.column("sha256")[0].as_py() == img["sha256"]
        assert hits.column("distance")[0].as_py() == 0.0
        d = hits.column("distance").to_pylist()
        assert d == sorted(d) and len(set(hits.column("sha256").to_pylist())) == 3
    # by a duplicate's path (recorded in sources): the stored content comes first
    c0 = next(i for i in images if i["path"].endswith("cats/c0.jpg"))
    copy = str(ingested["drop"] / "dogs" / "copy of c0.jpg")
    assert similar(db, copy, k=2).column("sha256")[0].as_py() == c0["sha256"]
    # a WHERE on images_latest columns combines with the vector condition
    hits = similar(db, c0["sha256"], k=10, where="label = 'dogs'")
    assert hits.num_rows == 4 and set(hits.column("label").to_pylist()) == {"dogs"}
    assert c0["sha256"] not in hits.column("sha256").to_pylist()
    with pytest.raises(NotFoundError):
        similar(db, "0" * 64)


def _vector_db(tmp_path: Path, vectors: np.ndarray, labels: list[str], model: str = "dinov2_vits14") -> tuple[Database, list[str]]:
    from embedscope.ingest.rows import embedding_rows

    db = Database(tmp_path / "vdb", create=True)
    shas = [f"{i:064x}" for i in range(len(vectors))]
    db.upsert(S.embeddings_table_name(model), embedding_rows(shas, vectors, model=model, variant="full", weights="random"))
    db.upsert(S.IMAGES, pa.Table.from_pylist(
        [{"sha256": s, "path": f"/data/{lab}/{i}.jpg", "label": lab} for i, (s, lab) in enumerate(zip(shas, labels))],
        S.IMAGES_SCHEMA))
    db.upsert(S.SOURCES, pa.Table.from_pylist(
        [{"sha256": s, "path": f"/data/{lab}/{i}.jpg"} for i, (s, lab) in enumerate(zip(shas, labels))],
        S.SOURCES_SCHEMA))
    return db, shas


def test_similar_matches_exact_cosine_and_the_sql_macros(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 384)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = ["a" if i % 3 else "b" for i in range(300)]
    db, shas = _vector_db(tmp_path, X, labels)

    q = 17
    exact = 1.0 - X @ X[q]
    order = np.argsort(exact, kind="stable")[:10]
    hits = similar(db, shas[q], k=10)
    assert hits.column("sha256").to_pylist() == [shas[i] for i in order]
    np.testing.assert_allclose(hits.column("distance").to_numpy()[1:], exact[order][1:], atol=1e-5)
    # a vector query (not in the table): no self row, same neighbours
    v = X[q] + 0.01 * rng.standard_normal(384).astype(np.float32)
    ex_v = 1.0 - (X @ v) / np.linalg.norm(v)
    assert similar(db, v, k=5).column("sha256").to_pylist() == [shas[i] for i in np.argsort(ex_v)[:5]]
    # WHERE: only label 'b', exact over that subset
    hits_b = similar(db, shas[q], k=5, where="label = 'b'")
    b_idx = [i for i in range(300) if labels[i] == "b" and i != q]
    want = sorted(b_idx, key=lambda i: exact[i])[:5]
    assert labels[q] == "a" and hits_b.column("sha256").to_pylist() == [shas[i] for i in want]
    # the same question in SQL with the similar_to() table macro, and with vector_of()
    sql = f"""SELECT s.sha256 FROM similar_to('{shas[q]}') s JOIN images i USING (sha256)
              WHERE i.label = 'b' ORDER BY s.distance LIMIT 5"""
    assert run_sql(db, sql).column("sha256").to_pylist() == [shas[i] for i in want]
    sql = f"""SELECT sha256, cosine_distance(vector, vector_of('/data/a/{q}.jpg')) AS d
              FROM embeddings ORDER BY d LIMIT 10"""
    got = run_sql(db, sql)
    assert got.column("sha256").to_pylist() == [shas[i] for i in order]
    with pytest.raises(QueryError, match="no image with sha256 or path"):
        run_sql(db, "SELECT * FROM similar_to('/no/such.jpg')")


def test_a_vector_query_picks_the_model_whose_table_has_its_size(tmp_path):
    """With several models, a vector query goes to the one table storing vectors of its size
    (read from the table's schema, so imported models count too); two of that size: an error."""
    rng = np.random.default_rng(2)
    small, large = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((5, 16)).astype(np.float32)
    db, _ = _vector_db(tmp_path, small, ["a"] * 5, model="imported_small")
    _vector_db(tmp_path, large, ["a"] * 5, model="imported_large")
    assert similar(db, large[0], k=2).column("model").to_pylist() == ["imported_large"] * 2
    assert similar(db, small[0], k=2).column("model").to_pylist() == ["imported_small"] * 2
    _vector_db(tmp_path, small, ["a"] * 5, model="imported_small2")
    with pytest.raises(QueryError, match="several models"):
        similar(db, small[0], k=2)


def test_api_open(ingested):
    import embedscope

    es = embedscope.open(ingested["db"])
    df = es.sql("SELECT label, count(*) AS n FROM images GROUP BY label ORDER BY label")
    assert list(df["label"]) == ["cats", "dogs"] and list(df["n"]) == [4, 4]
    assert es.sql("SELECT 1 AS one", arrow=True).to_pylist() == [{"one": 1}]
    assert len(es.images) == 8 and "thumbnail" not in es.images.columns
    ids, X = es.embeddings()
    assert len(ids) == 8 and X.shape == (8, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)
    hits = es.similar(ids[3], k=2)
    assert hits["sha256"].iloc[0] == ids[3] and hits["distance"].iloc[0] == 0.0


def test_import_embedscope_stays_light():
    code = ("import sys, embedscope; assert callable(embedscope.open); "
            "print(sorted(m for m in ('duckdb', 'lancedb', 'lance', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# -- CLI similar, with on-the-fly embedding ----------------------------------------------------


@pytest.mark.slow
def test_cli_similar_by_sha_path_and_new_file(tmp_path, ingested):
    db = str(ingested["db"])
    dbh = Database(db)
    p_sha = run_sql(dbh, "SELECT sha256 FROM images WHERE format = 'PNG'").column("sha256")[0].as_py()
    out = json.loads(run_cli("similar", "--db", db, p_sha, "--k", "3", "--format", "json").stdout)
    assert [r["rank"] for r in out] == [1, 2, 3] and out[0]["sha256"] == p_sha and out[0]["distance"] == 0.0

    # the same pixels in a file with different bytes (not in the database): embedded on the fly
    # with the table's model and weights; its vector equals the stored one of the original
    src = ingested["drop"] / "dogs" / "p.png"
    new = tmp_path / "p_again.png"
    Image.open(src).save(new, compress_level=1)
    assert new.read_bytes() != src.read_bytes()
    from embedscope.config import IngestSettings
    from embedscope.ingest.embed_file import embed_files

    settings = IngestSettings(weights="random", image_size=56)
    vecs = embed_files([str(new), str(ingested["drop"] / "cats" / "c1.jpg")], settings, variant="full",
                       expect_weights="random")
    stored = dict(zip(*Database(db).read_embeddings("dinov2_vits14").to_pydict().values()))
    assert np.abs(vecs[0] - np.asarray(stored[p_sha])).max() < 1e-5
    assert np.abs(vecs[1] - np.asarray(stored[p_sha])).max() > 1e-5  # a different image differs
    res = run_cli("similar", "--db", db, str(new), "--k", "8", "--image-size", "56", "--format", "csv")
    lines = res.stdout.splitlines()
    assert lines[0].startswith("rank,sha256,distance") and len(lines) == 9
    assert "embedding" in res.stderr and "random" in res.stderr

    # weights recorded as a file need --weights PATH, said in one line
    from embedscope.errors import WeightsNotFoundError
    from embedscope.ingest.embed_file import weights_spec_for

    with pytest.raises(WeightsNotFoundError) as err:
        weights_spec_for("file:" + "ab" * 32, None)
    assert "weights file" in err.value.one_line() and "--weights PATH" in err.value.one_line()
    assert weights_spec_for("hub:timm/x", None) == "hub" and weights_spec_for("random", None) == "random"


def test_cli_index_below_threshold_is_a_no_op(ingested):
    res = run_cli("index", "--db", str(ingested["db"]), "--json")
    (r,) = json.loads(res.stdout)
    assert r["action"] == "skipped" and r["rows"] == 8 and "exact search" in r["reason"]


def test_similar_finds_a_minority_variant_crowded_out_by_another(tmp_path):
    """Post-filtered search falls back to prefiltering when the other variant fills the top hits."""
    import numpy as np

    from embedscope.ingest.rows import embedding_rows
    from embedscope.store.queries import similar

    rng = np.random.default_rng(0)
    q = rng.standard_normal(16).astype(np.float32)
    q /= np.linalg.norm(q)
    near = q + 0.01 * rng.standard_normal((50, 16)).astype(np.float32)  # 'full': all very close to q
    far = rng.standard_normal((5, 16)).astype(np.float32)  # 'patch_mean': far from q
    db = Database(tmp_path / "db", create=True)
    table = S.embeddings_table_name("m")
    norm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    db.upsert(table, embedding_rows([f"{i:064x}" for i in range(50)], norm(near), model="m", variant="full", weights="random"))
    db.upsert(table, embedding_rows([f"{i:064x}" for i in range(100, 105)], norm(far), model="m", variant="patch_mean",
                                    weights="random"))
    hits = similar(db, q, k=5, model="m", variant="patch_mean")
    assert sorted(int(s, 16) for s in hits.column("sha256").to_pylist()) == list(range(100, 105))
