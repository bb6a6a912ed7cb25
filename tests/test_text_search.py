"""Text search over a CLIP table ingested with random open_clip weights (the real
architecture): ``search-text``, SQL's ``similar_to_text`` / ``text_vector`` and
``es.search_text`` return exactly the top k of the brute-force image·text ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest

import embedscope
from embedscope.models.factory import create_encoder
from embedscope.store.db import Database
from tests.conftest import make_photo, run_cli, save_jpeg, vectors_parquet

MODEL = "openclip_mobileclip2_s0"  # 256 px: ingested with no --image-size (it follows the model)
TEXT = "a chest x-ray with a pacemaker"
K = 5


@pytest.fixture(scope="module")
def clip_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text")
    for i in range(14):
        save_jpeg(make_photo(i, (160 + 7 * i, 120)), tmp / "drop" / ("cats" if i % 2 else "dogs") / f"{i}.jpg")
    run_cli("ingest", str(tmp / "drop"), "--db", str(tmp / "db"), "--model", MODEL, "--weights", "random",
            "--label-from-folder", "--batch-size", "8", "--json")
    return tmp / "db"


def brute_force(db_dir, text: str, k: int, keep=None) -> list[str]:
    """sha256 of the top k by image·text cosine, in NumPy over the stored vectors."""
    es = embedscope.open(db_dir)
    ids, X = es.embeddings(MODEL)
    t = create_encoder(MODEL, weights="random", device="cpu", precision="fp32").text.embed_texts([text])[0]
    order = np.argsort(-(X @ t), kind="stable")
    ranked = [ids[i] for i in order]
    if keep is not None:
        ranked = [s for s in ranked if s in keep]
    return ranked[:k]


def test_search_text_cli_is_the_brute_force_top_k(clip_db):
    out = run_cli("search-text", "--db", str(clip_db), TEXT, "--k", str(K), "--format", "json")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if len(rows) == 1 and isinstance(rows[0], list):
        rows = rows[0]
    assert [r["sha256"] for r in rows] == brute_force(clip_db, TEXT, K)
    assert MODEL in out.stderr  # which table was searched


def test_sql_similar_to_text_and_text_vector_are_the_brute_force_top_k(clip_db):
    from embedscope.ingest.embed_text import TextVectors
    from embedscope.store.sql import run_sql

    db = Database(clip_db)
    tv = TextVectors(device="cpu")
    fns = tv.sql_functions(db)
    expected = brute_force(clip_db, TEXT, K)
    got = run_sql(db, f"SELECT sha256 FROM similar_to_text('{TEXT}', {K})", functions=fns)
    assert got.column("sha256").to_pylist() == expected
    by_vector = run_sql(db, f"""SELECT e.sha256 FROM embeddings e JOIN images i USING (sha256)
                                WHERE i.label = 'cats'
                                ORDER BY cosine_distance(e.vector, text_vector('{TEXT}')) LIMIT {K}""",
                        functions=fns)
    cats = set(run_sql(db, "SELECT sha256 FROM images WHERE label = 'cats'").column("sha256").to_pylist())
    assert by_vector.column("sha256").to_pylist() == brute_force(clip_db, TEXT, K, keep=cats)
    assert tv.forwards == 1  # one text, embedded once, then served from the cache


def test_query_command_runs_text_functions_and_loads_no_model_without_them(clip_db):
    out = run_cli("query", "--db", str(clip_db), f"SELECT sha256 FROM similar_to_text('{TEXT}', {K})",
                  "--format", "csv")
    assert out.stdout.split()[1:] == brute_force(clip_db, TEXT, K)
    plain = run_cli("query", "--db", str(clip_db), "SELECT 1 AS x", "--format", "csv")
    assert plain.stdout.split() == ["x", "1"]


def test_api_search_text_with_where(clip_db):
    es = embedscope.open(clip_db)
    got = es.search_text(TEXT, k=3, where="label = 'dogs'")
    dogs = set(es.sql("SELECT sha256 FROM images WHERE label = 'dogs'")["sha256"])
    assert list(got["sha256"]) == brute_force(clip_db, TEXT, 3, keep=dogs)
    assert set(got["label"]) == {"dogs"}


def test_a_dinov2_only_database_says_to_ingest_with_an_openclip_model(tmp_path):
    X = np.random.default_rng(0).normal(size=(4, 384)).astype(np.float32)
    run_cli("ingest-vectors", str(vectors_parquet(tmp_path / "v.parquet", [f"i{i}" for i in range(4)], X)),
            "--db", str(tmp_path / "db"), "--model", "dinov2_vits14")
    out = run_cli("search-text", "--db", str(tmp_path / "db"), "a dog", check=False)
    assert out.returncode != 0
    error = out.stderr.strip().splitlines()[-1]
    assert "openclip" in error and "no CLIP-family embeddings" in error


def test_zero_shot_tags_are_the_argmax_of_the_brute_force_softmax(clip_db):
    tags = ["cat", "dogs", "x-ray", "document"]
    out = run_cli("analyze", "--db", str(clip_db), "--zero-shot", ",".join(tags), "--prompt", "a picture of {}",
                  "--json")
    run_id = json.loads(out.stdout)["run_id"]
    es = embedscope.open(clip_db)
    ids, X = es.embeddings(MODEL)
    enc = create_encoder(MODEL, weights="random", device="cpu", precision="fp32")
    T = enc.text.embed_texts([f"a picture of {t}" for t in tags])
    logits = 100.0 * (X @ T.T)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    rows = es.sql(f"SELECT * FROM zero_shot WHERE run_id = '{run_id}'").set_index("sha256").loc[ids]
    assert list(rows["tag"]) == [tags[i] for i in p.argmax(axis=1)]
    np.testing.assert_allclose(rows["probability"], p.max(axis=1), atol=1e-4)
    top2 = np.sort(p, axis=1)[:, -2:]
    np.testing.assert_allclose(rows["margin"], top2[:, 1] - top2[:, 0], atol=1e-4)
    latest = es.sql("SELECT sha256, zero_shot_tag FROM images_latest").set_index("sha256").loc[ids]
    assert list(latest["zero_shot_tag"]) == list(rows["tag"])
    run = es.sql(f"SELECT kind, model FROM runs WHERE run_id = '{run_id}'").iloc[0]
    assert (run["kind"], run["model"]) == ("zero_shot", MODEL)
    from embedscope.store import views  # the map can be coloured by the tag

    db = Database(clip_db)
    assert ("zero_shot_tag", "zero-shot tag") in views.color_options(db, None)
    assert views.point_colors(db, "", ids, "zero_shot_tag") == (list(rows["tag"]), False)


def test_label_disagreement_needs_a_label_naming_another_tag_and_confidence():
    from embedscope.analysis.zero_shot import label_disagreements, tag_key, zero_shot_tags

    assert tag_key("Cats") == tag_key("cat") and tag_key("x_ray") == tag_key("X-Ray")
    T = np.eye(3, 8, dtype=np.float32)  # tags: cat, dog, x-ray
    X = np.array([T[1], T[1], T[0] * 0.6 + T[1] * 0.8, T[2]], np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    result = zero_shot_tags(X, T)
    labels = ["cats", "dogs", "Cats", "radiograph"]
    marked = label_disagreements(labels, ["cat", "dog", "x-ray"], result)
    # 0: labelled cat, confidently a dog; 1: agrees; 2: a dog at cosine 0.8 vs 0.6 (×100: confident);
    # 3: the label names no tag, never marked
    assert list(result.best) == [1, 1, 1, 2]
    assert list(marked) == [True, False, True, False]
    assert not label_disagreements(labels, ["cat", "dog", "x-ray"], result, min_probability=1.01).any()


def test_api_sql_runs_the_text_functions_and_loads_no_model_without_them(clip_db):
    es = embedscope.open(clip_db)
    assert list(es.sql("SELECT count(*) AS n FROM images")["n"]) == [14]
    assert es._text_vectors is None or not es._text_vectors._encoders  # no model for plain SQL
    got = es.sql(f"SELECT sha256 FROM similar_to_text('{TEXT}', {K})")
    assert list(got["sha256"]) == brute_force(clip_db, TEXT, K)
    cats = set(es.sql("SELECT sha256 FROM images WHERE label = 'cats'")["sha256"])
    by_vector = es.sql(f"""SELECT sha256 FROM images_latest WHERE label = 'cats'
                           ORDER BY cosine_distance((SELECT vector FROM embeddings e WHERE e.sha256 = images_latest.sha256),
                                                    text_vector('{TEXT}')) LIMIT 3""")
    assert list(by_vector["sha256"]) == brute_force(clip_db, TEXT, 3, keep=cats)
    es.search_text(TEXT, k=2)
    assert es._text_vectors.forwards == 1  # the SQL's text vector served search_text from the cache
