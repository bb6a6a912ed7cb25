"""One-shot ingest end to end, through the real CLI, into a real LanceDB on tmp_path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import REPO, run_cli

FAST = ["--weights", "random", "--image-size", "56", "--batch-size", "8", "--json"]


def ingest_json(*args: str) -> dict:
    return json.loads(run_cli("ingest", *args).stdout)


def versions(db: Database) -> dict[str, int | None]:
    return {name: db.version(name) for name in db.table_names()}


@pytest.mark.slow
def test_mixed_drop_exact_counts_then_reingest_is_a_noop(mixed_drop, tmp_path):
    dbdir = tmp_path / "db"
    first = ingest_json(str(mixed_drop["drop"]), "--db", str(dbdir), "--label-from-folder", *FAST)
    assert first["scanned"] == mixed_drop["files"]
    assert first["new"] == mixed_drop["images"]
    assert first["duplicates"] == mixed_drop["duplicates"]
    assert first["quarantined"] == mixed_drop["quarantined"]
    assert first["weights"] == "random"

    stats = json.loads(run_cli("stats", "--db", str(dbdir), "--json").stdout)
    assert stats["images"] == mixed_drop["images"]
    assert stats["sources"] == mixed_drop["files"]
    assert stats["quarantined"] == mixed_drop["quarantined"]
    assert stats["embeddings"] == {"dinov2_vits14/full": mixed_drop["images"]}

    db = Database(dbdir)
    images = db.read(S.IMAGES).to_pylist()
    by_name = {Path(r["path"]).name: r for r in images}
    # the first path (scan order) of the duplicated content is the one kept on the image
    assert "img0.jpg" in by_name and "copy of img0.jpg" not in by_name
    assert by_name["rotated.jpg"]["width"] == 240 and by_name["rotated.jpg"]["height"] == 320
    assert by_name["deep16.png"]["format"] == "PNG"
    assert by_name["img3.jpg"]["label"] == "cats" and by_name["pic.gif"]["label"] == "dogs"
    assert all(r["thumbnail"][:2] == b"\xff\xd8" for r in images)  # JPEG thumbnails
    dup_sha = by_name["img0.jpg"]["sha256"]
    dup_paths = {Path(r["path"]).name for r in db.read(S.SOURCES).to_pylist() if r["sha256"] == dup_sha}
    assert dup_paths == {"img0.jpg", "copy of img0.jpg", "ünïcødé façade 猫.jpg"}

    reasons = {Path(r["path"]).name: r["reason"] for r in db.read(S.QUARANTINE).to_pylist()}
    assert set(reasons) == {"truncated.jpg", "empty.jpg", "notes.png"}
    assert "empty" in reasons["empty.jpg"] and "not a recognised" in reasons["notes.png"]
    assert "truncated" in reasons["truncated.jpg"]

    emb = db.read_embeddings("dinov2_vits14", "full", ["sha256", "vector", "weights", "dim"]).to_pylist()
    vectors = np.array([r["vector"] for r in emb], dtype=np.float32)
    assert vectors.shape == (mixed_drop["images"], 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert {r["weights"] for r in emb} == {"random"} and {r["dim"] for r in emb} == {384}
    assert {r["sha256"] for r in emb} == {r["sha256"] for r in images}

    before = versions(db)
    second = ingest_json(str(mixed_drop["drop"]), "--db", str(dbdir), *FAST)
    assert (second["new"], second["embedded"]) == (0, {})
    assert second["duplicates"] == mixed_drop["images"] + mixed_drop["duplicates"]
    db.refresh()
    after = versions(db)
    for name in (S.IMAGES, S.embeddings_table_name("dinov2_vits14")):
        assert after[name] == before[name], f"{name} was written on a re-ingest"
    stats2 = json.loads(run_cli("stats", "--db", str(dbdir), "--json").stdout)
    assert stats2 == stats


@pytest.mark.slow
def test_new_file_in_drop_is_the_only_work(mixed_drop, tmp_path, photo):
    from tests.conftest import save_jpeg

    dbdir = tmp_path / "db"
    ingest_json(str(mixed_drop["drop"]), "--db", str(dbdir), *FAST)
    save_jpeg(photo(999), mixed_drop["drop"] / "late" / "new.jpg")
    out = ingest_json(str(mixed_drop["drop"]), "--db", str(dbdir), *FAST)
    assert out["new"] == 1 and out["embedded"] == {"full": 1}
    assert Database(dbdir).count(S.IMAGES) == mixed_drop["images"] + 1


def test_hub_weights_offline_fails_before_touching_the_db(tmp_path, photo):
    from tests.conftest import save_jpeg

    save_jpeg(photo(1), tmp_path / "drop" / "a.jpg")
    proc = run_cli("ingest", str(tmp_path / "drop"), "--db", str(tmp_path / "db"), check=False,
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "--weights PATH" in lines[0] and "random" in lines[0]
    assert not (tmp_path / "db").exists()


def test_missing_drop_is_one_readable_line(tmp_path):
    proc = run_cli("ingest", str(tmp_path / "nope"), "--db", str(tmp_path / "db"), "--weights", "random", check=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr


def test_help_and_import_do_not_import_torch():
    code = (
        "import sys, runpy\n"
        "sys.argv = ['embedscope', '--help']\n"
        "try:\n    runpy.run_module('embedscope', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "import embedscope\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert "ingest" in out.stdout and "stats" in out.stdout
    assert out.stdout.strip().endswith("NO-TORCH")


@pytest.mark.slow
@pytest.mark.dataset
def test_chest_xray_exact_duplicates_match_known_list(shared_datasets, tmp_path):
    drop = shared_datasets / "chest_xray_224"
    known = [
        r for r in csv.DictReader(open(shared_datasets / "KNOWN_DUPLICATES.csv"))
        if r["kind"] == "exact" and r["path_a"].startswith("chest_xray_224/")
    ]
    assert known, "the dataset lists exact duplicates"
    dbdir = tmp_path / "db"
    out = ingest_json(str(drop), "--db", str(dbdir), "--preprocess", "xray", "--label-from-folder",
                      "--weights", "random", "--image-size", "56", "--batch-size", "64", "--json")
    files = sum(1 for p in drop.rglob("*") if p.is_file())
    assert out["scanned"] == files
    assert out["duplicates"] == len(known) and out["new"] == files - len(known)
    db = Database(dbdir)
    sources = db.read(S.SOURCES, ["sha256", "path"]).to_pylist()
    assert len(sources) == files  # every path kept
    by_sha: dict[str, set[str]] = {}
    for r in sources:
        by_sha.setdefault(r["sha256"], set()).add(str(Path(r["path"]).relative_to(shared_datasets)))
    groups = {frozenset(v) for v in by_sha.values() if len(v) > 1}
    assert groups == {frozenset({r["path_a"], r["path_b"]}) for r in known}
    labels = set(db.read(S.IMAGES, ["label"]).column("label").to_pylist())
    assert labels == {"normal", "pneumonia"}


def test_second_writer_is_refused_with_the_holder_named(tmp_path, photo):
    from tests.conftest import save_jpeg

    save_jpeg(photo(1), tmp_path / "drop" / "a.jpg")
    db = Database(tmp_path / "db", create=True)
    with db.writer_lock(owner="test-holder"):
        proc = run_cli("ingest", str(tmp_path / "drop"), "--db", str(tmp_path / "db"), "--weights", "random",
                       check=False)
    assert proc.returncode == 3
    assert "test-holder" in proc.stderr and "--wait-lock" in proc.stderr
    assert Database(tmp_path / "db").count(S.IMAGES) == 0
