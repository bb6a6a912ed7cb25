"""Tags (the append-only log, the image_tags view, images_latest.tags) and the curated export,
through the store and through the real `embedscope tag` / `embedscope export` entry point."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.sql import run_sql
from embedscope.store.tags import current_tags, shas_where, tag_images, tag_log
from tests.conftest import run_cli
from tests.dashboard_db import cached_dashboard_db

pytestmark = pytest.mark.slow


@pytest.fixture
def db_dir(tmp_path_factory, tmp_path) -> Path:
    """A private copy of the session's small analysed database (tags write to it)."""
    copy = tmp_path / "db"
    shutil.copytree(cached_dashboard_db(tmp_path_factory), copy)
    return copy


def _sha_of(db: Database, name: str) -> str:
    rows = run_sql(db, f"SELECT sha256 FROM sources WHERE path LIKE '%/{name}'").column("sha256").to_pylist()
    assert rows, name
    return rows[0]


def _view_tags(db: Database) -> set[tuple[str, str]]:
    return {(r["sha256"], r["tag"]) for r in current_tags(db).to_pylist()}


def _latest_tags(db: Database) -> set[tuple[str, str]]:
    rows = run_sql(db, "SELECT sha256, unnest(tags) AS tag FROM images_latest").to_pylist()
    return {(r["sha256"], r["tag"]) for r in rows}


def _tags_from_log(db: Database) -> set[tuple[str, str]]:
    state: dict[tuple[str, str], str] = {}
    for r in tag_log(db).to_pylist():
        state[(r["sha256"], r["tag"])] = r["action"]
    return {k for k, action in state.items() if action == "add"}


def test_tag_log_latest_action_wins_and_views_agree(db_dir):
    db = Database(db_dir)
    a, b = _sha_of(db, "cats_02.jpg"), _sha_of(db, "dogs_03.jpg")
    assert tag_images(db, [a, b, a], "exclude", note="blurry", source="cli") == 2
    assert tag_images(db, [b], "exclude", remove=True, source="api") == 1
    assert _view_tags(db) == {(a, "exclude")}
    assert tag_images(db, [b], "exclude", note="again", source="dashboard") == 1  # re-add
    assert tag_images(db, [a], "relabel:dogs", source="sql-result") == 1
    expected = {(a, "exclude"), (b, "exclude"), (a, "relabel:dogs")}
    assert _view_tags(db) == _latest_tags(db) == _tags_from_log(db) == expected
    log = tag_log(db).to_pylist()
    assert [(r["tag"], r["action"], r["source"]) for r in log if r["sha256"] == b] == [
        ("exclude", "add", "cli"), ("exclude", "remove", "api"), ("exclude", "add", "dashboard")]
    notes = {(r["sha256"], r["tag"]): r["note"] for r in current_tags(db).to_pylist()}
    assert notes[(b, "exclude")] == "again" and notes[(a, "exclude")] == "blurry"
    untagged = run_sql(db, f"SELECT tags FROM images_latest WHERE sha256 NOT IN ('{a}', '{b}') LIMIT 1")
    assert untagged.column("tags").to_pylist() == [[]]


def test_bulk_tag_by_where_and_refusals(db_dir):
    db = Database(db_dir)
    cats = shas_where(db, "label = 'cats'")
    assert len(cats) >= 12
    assert tag_images(db, cats, "reviewed") == len(cats)
    assert {s for s, t in _view_tags(db) if t == "reviewed"} == set(cats)
    assert run_sql(db, "SELECT count(*) n FROM images_latest WHERE list_contains(tags, 'reviewed')").to_pylist() == [
        {"n": len(cats)}]
    with pytest.raises(NotFoundError):
        tag_images(db, ["0" * 64], "exclude")
    with pytest.raises(ConfigError):
        tag_images(db, cats[:1], "relabel:")
    with pytest.raises(ConfigError):
        tag_images(db, cats[:1], "exclude", source="somewhere")
    assert S.TAGS in db.table_names()


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_cli_tag_and_export_csv(db_dir, tmp_path):
    db = Database(db_dir)
    dogs_03, cats_04 = _sha_of(db, "dogs_03.jpg"), _sha_of(db, "cats_04.jpg")
    (tmp_path / "paths.txt").write_text(
        run_sql(db, f"SELECT path FROM sources WHERE sha256 = '{dogs_03}'").column("path")[0].as_py() + "\n")
    run_cli("tag", "--db", str(db_dir), "--tag", "exclude", "--note", "watermark", "--paths-file", str(tmp_path / "paths.txt"))
    run_cli("tag", "--db", str(db_dir), "--tag", "exclude", "--where", "label = 'birds'")
    run_cli("tag", "--db", str(db_dir), "--tag", "exclude", "--remove", "--from-sql",
            "SELECT sha256 FROM images_latest WHERE label = 'birds' AND path NOT LIKE '%birds_00.jpg'")
    run_cli("tag", "--db", str(db_dir), "--tag", "relabel:dogs", "--sha", cats_04)
    bad = run_cli("tag", "--db", str(db_dir), "--tag", "exclude", "--sha", "f" * 64, check=False)
    assert bad.returncode != 0 and "no stored image" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    sources = {r["source"] for r in tag_log(Database(db_dir)).to_pylist()}
    assert sources == {"cli", "sql-result"}

    out = tmp_path / "export"
    proc = run_cli("export", "--db", str(db_dir), "--out", str(out))
    assert "excluded" in proc.stdout
    kept, excluded = _read_csv(out / "kept.csv"), _read_csv(out / "excluded.csv")
    birds_00 = _sha_of(db, "birds_00.jpg")
    assert {r["sha256"] for r in excluded} == {dogs_03, birds_00}
    reasons = {r["sha256"]: (r["reason"], r["detail"]) for r in excluded}
    assert reasons[dogs_03] == ("tag:exclude", "watermark") and reasons[birds_00] == ("tag:exclude", "")
    total = run_sql(db, "SELECT count(*) n FROM images").column("n")[0].as_py()
    assert len(kept) == total - 2 and not {dogs_03, birds_00} & {r["sha256"] for r in kept}
    by_sha = {r["sha256"]: r for r in kept}
    assert by_sha[cats_04]["label"] == "dogs" and by_sha[cats_04]["original_label"] == "cats"
    # every source path: the exact duplicate 'copy of cats_00.jpg' is listed with cats_00
    cats_00 = by_sha[_sha_of(db, "cats_00.jpg")]
    names = sorted(Path(p).name for p in json.loads(cats_00["paths"]))
    assert names == ["cats_00.jpg", "copy of cats_00.jpg"] and cats_00["n_paths"] == "2"


def test_export_flags_parquet_and_keep_override(db_dir, tmp_path):
    db = Database(db_dir)
    flagged = run_sql(db, "SELECT sha256 FROM images_latest WHERE is_novel").column("sha256").to_pylist()
    out = tmp_path / "curated.parquet"
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--format", "parquet",
            "--exclude-flags", "novel,exact_dup,near_dup")
    excluded = pq.read_table(tmp_path / "curated.excluded.parquet").to_pylist()
    novel = {r["sha256"] for r in excluded if r["reason"] == "flag:novel"}
    assert novel == set(flagged)
    assert all(r["score"] is not None for r in excluded if r["reason"] == "flag:novel")
    for r in excluded:
        if r["reason"] in ("flag:exact_dup", "flag:near_dup"):
            assert r["partner"] and r["partner"] != r["sha256"]
        if r["reason"] == "flag:exact_dup":  # analyze's phash group
            assert r["group"] is not None
        if r["reason"] == "flag:near_dup":  # the pairs table: partner, distances and the rule in the detail
            assert r["distance"] is not None and r["hamming"] is not None and "cosine distance" in r["detail"]
    # the perceptual near-copy of cats_01 ('small cats_01.jpg') duplicates cats_01 or the other way round
    small, cats_01 = _sha_of(db, "small cats_01.jpg"), _sha_of(db, "cats_01.jpg")
    dup_pairs = {(r["sha256"], r["partner"]) for r in excluded if r["reason"] == "flag:exact_dup"}
    assert (small, cats_01) in dup_pairs or (cats_01, small) in dup_pairs
    kept = pq.read_table(out)
    assert not set(kept.column("sha256").to_pylist()) & {r["sha256"] for r in excluded}
    # keep overrides the flags
    loser = next(iter({r["sha256"] for r in excluded}))
    tag_images(db, [loser], "keep")
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--format", "parquet",
            "--exclude-flags", "novel,exact_dup,near_dup")
    assert loser in pq.read_table(out).column("sha256").to_pylist()


def test_export_imagefolder_hard_links(db_dir, tmp_path):
    db = Database(db_dir)
    tag_images(db, [_sha_of(db, "cats_05.jpg")], "relabel:birds")
    tag_images(db, [_sha_of(db, "dogs_05.jpg")], "exclude")
    out = tmp_path / "folder"
    run_cli("export", "--db", str(db_dir), "--out", str(out), "--format", "imagefolder")
    kept = _read_csv(out / "kept.csv")
    files = sorted(p for p in out.rglob("*.jpg"))
    assert len(files) == len(kept)
    assert {p.parent.name for p in files} == {"cats", "dogs", "birds"}
    assert (out / "birds" / "cats_05.jpg").exists() and not (out / "dogs" / "dogs_05.jpg").exists()
    for row in kept:
        target = Path(row["exported_path"])
        original = Path(json.loads(row["paths"])[0])
        assert os.path.samefile(target, original) and target.stat().st_nlink >= 2


def test_dashboard_refuses_to_write_off_loopback_without_auth(db_dir):
    from embedscope.dashboard.app import create_app
    from embedscope.dashboard.context import CONFIG_KEY

    db = Database(db_dir)
    sha = _sha_of(db, "cats_02.jpg")
    open_ctx = create_app(str(db_dir), host="10.11.12.13").server.config[CONFIG_KEY]
    assert not open_ctx.writes_allowed
    with pytest.raises(ConfigError, match="read-only"):
        open_ctx.tag([sha], "exclude")
    assert tag_log(db).num_rows == 0
    for ctx in (create_app(str(db_dir)).server.config[CONFIG_KEY],
                create_app(str(db_dir), host="10.11.12.13", auth="u:p").server.config[CONFIG_KEY]):
        assert ctx.writes_allowed
    assert create_app(str(db_dir)).server.config[CONFIG_KEY].tag([sha], "keep") == 1
    assert [(r["tag"], r["source"]) for r in tag_log(db).to_pylist()] == [("keep", "dashboard")]


def test_api_tag_and_tags(db_dir):
    import embedscope

    es = embedscope.open(db_dir)
    n = es.tag("label = 'dogs'", "sel-dogs", note="saved selection")
    assert n >= 12
    assert es.tag([_sha_of(es.db, "dogs_00.jpg")], "sel-dogs", remove=True) == 1
    tags = es.tags()
    assert len(tags) == n - 1 and set(tags["tag"]) == {"sel-dogs"}
    assert {r["source"] for r in tag_log(es.db).to_pylist()} == {"api"}


def test_map_can_colour_by_a_tag(db_dir):
    from embedscope.store import views
    from embedscope.store.runs import latest_run

    db = Database(db_dir)
    run = latest_run(db)
    assert not [v for v, _ in views.color_options(db, run) if v.startswith(views.COLOR_TAG_PREFIX)]
    a = _sha_of(db, "cats_02.jpg")
    tag_images(db, [a], "odd-lighting")
    assert ("tag:odd-lighting", "tag odd-lighting") in views.color_options(db, run)
    shas = shas_where(db, "TRUE")
    values, continuous = views.point_colors(db, run.run_id, shas, "tag:odd-lighting")
    assert not continuous and {s for s, v in zip(shas, values) if v == "odd-lighting"} == {a}
    assert set(values) == {"odd-lighting", "untagged"}


def test_export_latest_relabel_wins(db_dir, tmp_path):
    from embedscope.store.export import curated_lists

    db = Database(db_dir)
    a = _sha_of(db, "dogs_07.jpg")
    tag_images(db, [a], "relabel:zebras")
    tag_images(db, [a], "relabel:apes")  # later, though alphabetically first
    kept, excluded = curated_lists(db)
    row = next(r for r in kept.to_pylist() if r["sha256"] == a)
    assert (row["label"], row["original_label"]) == ("apes", "dogs") and excluded.num_rows == 0
