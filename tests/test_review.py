"""Review queues (store/review.py), pair decisions as tags, the label_conflicts view, `stats`'
label-conflict line, and the export's pairs/arrivals-based flags — through real ingests and the
real CLI entry point."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from embedscope.store import review as R
from embedscope.store.db import Database
from embedscope.store.sql import run_sql
from embedscope.store.tags import current_tags, tag_images
from tests.conftest import make_photo, run_cli, save_jpeg, vectors_parquet
from tests.test_curation import _sha_of, db_dir  # noqa: F401  (db_dir: a private copy of the dashboard db)

pytestmark = pytest.mark.slow

# each queue's count, written independently of store/review.py's queries
SQL_COUNTS = {
    "pairs": "SELECT count(*) AS n FROM (SELECT DISTINCT sha_a, sha_b FROM pairs WHERE kind = 'near' AND sha_a <> sha_b)",
    "exact": "SELECT count(*) AS n FROM (SELECT sha256 FROM sources GROUP BY sha256 HAVING count(DISTINCT path) > 1)",
    "conflicts": "SELECT count(*) AS n FROM (SELECT sha256 FROM labels GROUP BY sha256 HAVING count(*) > 1)",
    "novel": "SELECT count(*) AS n FROM images_latest WHERE is_novel",
    "contaminated": "SELECT count(*) AS n FROM images_latest WHERE is_contaminated",
}


def _tags(db: Database) -> dict[tuple[str, str], str | None]:
    return {(r["sha256"], r["tag"]): r["note"] for r in current_tags(db).to_pylist()}


def test_queue_counts_equal_sql_and_pages_sort(db_dir):  # noqa: F811
    db = Database(db_dir)
    counts = R.queue_counts(db)
    for queue, sql in SQL_COUNTS.items():
        assert counts[queue] == run_sql(db, sql).column("n")[0].as_py(), queue
    assert counts["pairs"] >= 1 and counts["exact"] >= 1 and counts["conflicts"] >= 1
    pair = R.queue_page(db, "pairs").rows[0]
    assert {pair["path_a"].rsplit("/", 1)[1], pair["path_b"].rsplit("/", 1)[1]} == {"cats_01.jpg", "small cats_01.jpg"}
    assert pair["labels_differ"] and pair["cosine"] is not None and pair["hamming"] is not None
    exact = R.queue_page(db, "exact").rows[0]
    assert sorted(Path(p).name for p in exact["paths"]) == ["cats_00.jpg", "copy of cats_00.jpg"]
    assert exact["labels"] == ["cats", "dogs"]
    novel = R.queue_page(db, "novel", sort="score", limit=100).rows
    scores = [r["novelty_score"] for r in novel]
    assert scores == sorted(scores, reverse=True) and all(r["reason"] for r in novel)
    page = R.queue_page(db, "novel", sort="label", offset=1, limit=1)
    assert page.offset == 1 and len(page.rows) == (1 if counts["novel"] > 1 else 0)


def test_pair_decisions_write_tags_and_leave_the_queue(db_dir, tmp_path):  # noqa: F811
    db = Database(db_dir)
    pair = R.queue_page(db, "pairs").rows[0]
    left, right = pair["sha_b"], pair["sha_a"]
    writes = R.pair_decision("keep_left", left, right, cosine=pair["cosine"], hamming=pair["hamming"])
    for w in writes:
        tag_images(db, w.shas, w.tag, note=w.note, source="api")
    tags = _tags(db)
    assert tags[(right, "exclude")].startswith(f"near-duplicate of {left}, cosine distance")
    assert (left, "keep") in tags and (left, "reviewed") in tags and (right, "reviewed") in tags
    assert R.queue_counts(db)["pairs"] == 0
    assert R.queue_page(db, "pairs", include_decided=True).rows[0]["decided"]
    # the dashboard's export button: the same lists, the decision's exclusion with its note
    import base64
    import io
    import zipfile

    from embedscope.dashboard.curation import curated_zip

    with zipfile.ZipFile(io.BytesIO(base64.b64decode(curated_zip(db)))) as zf:
        rows = list(csv.DictReader(io.TextIOWrapper(zf.open("excluded.csv"), encoding="utf-8")))
    assert [(r["sha256"], r["reason"], r["detail"]) for r in rows] == [(right, "tag:exclude", tags[(right, "exclude")])]

    # undo, then "not a duplicate": the export's near_dup flag no longer leaves the later image out
    for tag in ("exclude", "keep"):
        tag_images(db, [left, right], tag, remove=True)
    assert R.queue_counts(db)["pairs"] == 1
    out = tmp_path / "before"
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--exclude-flags", "near_dup")
    rows = list(csv.DictReader((out / "excluded.csv").open(newline="")))
    assert [(r["sha256"], r["reason"], r["partner"]) for r in rows] == [(right, "flag:near_dup", left)]
    assert "cosine distance" in rows[0]["detail"] and "phash" in rows[0]["detail"] and float(rows[0]["distance"]) >= 0
    for w in R.pair_decision("not_dup", left, right):
        tag_images(db, w.shas, w.tag, note=w.note)
    assert R.queue_counts(db)["pairs"] == 0 and _tags(db)[(right, "not_dup")] == f"not a duplicate of {left}"
    out = tmp_path / "after"
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--exclude-flags", "near_dup")
    assert not list(csv.DictReader((out / "excluded.csv").open(newline="")))


def test_export_arrival_flags_and_relabel_resolves_a_conflict(db_dir, tmp_path):  # noqa: F811
    db = Database(db_dir)
    conflict = _sha_of(db, "copy of cats_00.jpg")
    out = tmp_path / "x"
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--exclude-flags", "label_conflict,leak,low_quality")
    rows = list(csv.DictReader((out / "excluded.csv").open(newline="")))
    assert conflict in {r["sha256"] for r in rows if r["reason"] == "flag:label_conflict"}
    for w in R.relabel_decision(conflict, "dogs"):
        tag_images(db, w.shas, w.tag, note=w.note)
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--exclude-flags", "label_conflict")
    kept = {r["sha256"]: r for r in csv.DictReader((out / "kept.csv").open(newline=""))}
    assert kept[conflict]["label"] == "dogs"
    bad = run_cli("export", "--db", str(db_dir), "--out", str(out), "--exclude-flags", "bogus", check=False)
    assert bad.returncode != 0 and "label_conflict" in bad.stderr


def test_planted_label_conflict_in_sql_stats_and_queue(tmp_path):
    drop = tmp_path / "drop"
    for i in range(6):
        save_jpeg(make_photo(50 + i, (96, 72)), drop / ("shoes" if i % 2 else "dress") / f"img_{i}.jpg")
    (drop / "dress" / "misfiled.jpg").write_bytes((drop / "shoes" / "img_1.jpg").read_bytes())
    db_dir = tmp_path / "db"
    run_cli("ingest", str(drop), "--db", str(db_dir), "--weights", "random", "--image-size", "56",
            "--label-from-folder", "--no-progress")
    db = Database(db_dir)
    rows = run_sql(db, "SELECT * FROM label_conflicts").to_pylist()
    assert len(rows) == 1 and sorted(rows[0]["labels"]) == ["dress", "shoes"] and rows[0]["n_labels"] == 2
    assert sorted(Path(p).name for p in rows[0]["paths"]) == ["img_1.jpg", "misfiled.jpg"]
    page = R.queue_page(db, "conflicts")
    assert page.total == 1 and page.rows[0]["sha256"] == rows[0]["sha256"]
    stats = run_cli("stats", "--db", str(db_dir)).stdout
    assert "label conflicts: 1 images" in stats.splitlines()
    assert '"label_conflicts": 1' in run_cli("stats", "--db", str(db_dir), "--json").stdout


def test_imported_vectors_pairs_are_keyed_by_row_id_with_placeholders(tmp_path):
    from embedscope.dashboard import review_cards as RC
    from embedscope.dashboard.app import create_app
    from embedscope.dashboard.pages import review as page

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 16)).astype(np.float32)
    X[39] = X[3] + 1e-4 * rng.normal(size=16)  # a near copy of row 3
    ids = [f"vec_{i:04d}" for i in range(40)]
    db_dir = tmp_path / "db"
    run_cli("ingest-vectors", str(vectors_parquet(tmp_path / "v.parquet", ids, X)), "--db", str(db_dir),
            "--model", "imported")
    run_cli("verdicts", "--db", str(db_dir))
    db = Database(db_dir)
    rows = R.queue_page(db, "pairs").rows
    assert [(r["sha_a"], r["sha_b"]) for r in rows] == [("vec_0039", "vec_0003")]
    assert not rows[0]["has_thumb_a"] and not rows[0]["has_thumb_b"]
    card = str(RC.pair_card(rows[0]))
    assert "es-placeholder" in card and "/thumb/" not in card
    app = create_app(str(db_dir))
    with app.server.test_request_context("/review"):
        assert "near-duplicate pairs to review: 1" in str(page.layout())
