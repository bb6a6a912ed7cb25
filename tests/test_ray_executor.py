"""``--executor ray`` on a real local Ray cluster (2 CPUs, started once for the module): the
same rows and vectors as the local executor, a killed encoder actor retried without a
duplicate or a hole, a re-run that is all duplicates, and a clear error without Ray."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from embedscope.config import IngestSettings
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import REPO, exif_with_orientation, make_photo, run_cli, save_jpeg

TINY = ["--weights", "random", "--image-size", "56", "--batch-size", "8", "--precision", "fp32", "--no-progress"]
MODEL = "dinov2_vits14"


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the whole module (start-up is the slow part)."""
    ray = pytest.importorskip("ray")
    saved = os.environ.get("PYTHONPATH")
    # workers import embedscope (and this module, for the crashing actor) from the checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), str(Path(__file__).parent), saved) if p)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture(scope="module")
def drop(tmp_path_factory) -> dict:
    """40 files: 34 distinct photos + 1 EXIF-rotated, 3 duplicates, 2 that are not images."""
    root = tmp_path_factory.mktemp("raydrop") / "drop"
    for i in range(34):
        save_jpeg(make_photo(i, (80, 60)), root / ("a" if i % 2 else "b") / f"img{i:02d}.jpg")
    save_jpeg(make_photo(99, (80, 60)), root / "b" / "rotated.jpg", exif=exif_with_orientation(6))
    for name in ("a/zz copy 1.jpg", "b/zz copy 2.jpg", "c/zz copy 3.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((root / "b" / "img00.jpg").read_bytes())
    good = (root / "a" / "img01.jpg").read_bytes()
    (root / "c" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "c" / "notes.png").write_text("not a png")
    return {"drop": root, "files": 40, "images": 35, "duplicates": 3, "quarantined": 2}


@pytest.fixture(scope="module")
def local_db(drop, tmp_path_factory) -> Path:
    """The reference: the same drop through the local executor."""
    db = tmp_path_factory.mktemp("local") / "db"
    out = json.loads(run_cli("ingest", str(drop["drop"]), "--db", str(db), *TINY, "--json").stdout)
    assert out["new"] == drop["images"] and out["quarantined"] == drop["quarantined"]
    return db


def _rows(dbdir: Path) -> dict:
    db = Database(dbdir)
    images = db.read(S.IMAGES).drop_columns(["ingested_at"]).to_pylist()
    sources = db.read(S.SOURCES, ["sha256", "path", "drop", "size_bytes", "mtime"]).to_pylist()
    quarantine = db.read(S.QUARANTINE, ["sha256", "path", "size_bytes", "reason"]).to_pylist()
    emb = db.read_embeddings(MODEL, "full", ["sha256", "model", "variant", "weights", "vector"])
    key = lambda r: (r["sha256"], r["path"])  # noqa: E731
    return {
        "images": sorted(images, key=key),
        "sources": sorted(sources, key=key),
        "quarantine": sorted(quarantine, key=key),
        "embedded": sorted((r["sha256"], r["model"], r["variant"], r["weights"])
                           for r in emb.drop_columns(["vector"]).to_pylist()),
        "vectors": dict(zip(emb.column("sha256").to_pylist(), np.asarray(emb.column("vector").to_pylist()))),
    }


def _assert_same(ray_db: Path, local_db: Path, drop: dict) -> None:
    ours, ref = _rows(ray_db), _rows(local_db)
    assert len(ours["images"]) == drop["images"] and len(ours["sources"]) == drop["files"]
    assert len(ours["quarantine"]) == drop["quarantined"] and len(ours["embedded"]) == drop["images"]
    for table in ("images", "sources", "quarantine", "embedded"):
        assert ours[table] == ref[table], f"{table} differs from the local executor's"
    assert ours["vectors"].keys() == ref["vectors"].keys()
    for sha, vec in ref["vectors"].items():
        np.testing.assert_allclose(ours["vectors"][sha], vec, atol=1e-4)
    rotated = next(r for r in ours["images"] if r["path"].endswith("rotated.jpg"))
    assert (rotated["width"], rotated["height"]) == (60, 80)


@pytest.mark.slow
def test_ray_gives_the_rows_and_vectors_of_the_local_executor_then_a_rerun_is_all_duplicates(
        ray_cluster, drop, local_db, tmp_path):
    db = tmp_path / "db"
    args = ["ingest", str(drop["drop"]), "--db", str(db), *TINY, "--executor", "ray", "--ray-address", ray_cluster]
    first = run_cli(*args, "--json")
    out = json.loads(first.stdout)
    assert (out["scanned"], out["new"], out["duplicates"], out["quarantined"]) == (40, 35, 3, 2)
    assert out["weights"] == "random" and out["embedded"] == {"full": 35}
    assert "RANDOM weights" in first.stderr
    assert "ingest: 35 new, 3 duplicates, 2 quarantined of 40 files in" in first.stderr  # the local summary line
    assert "ray actors" in out["device"]
    _assert_same(db, local_db, drop)
    from embedscope.store.drops import verdict_totals  # judged as the local ingest was (#17)
    assert out["verdicts"]["counts"] == verdict_totals(Database(local_db)) and out["verdicts"]["counts"]["new"] == 35

    again = json.loads(run_cli(*args, "--json").stdout)
    assert (again["new"], again["duplicates"], again["quarantined"], again["embedded"]) == (0, 38, 2, {})
    _assert_same(db, local_db, drop)


class CrashOnceEncoder:
    """The real encoder actor, except that its process dies on its first batch while a marker
    file exists beside the database (removed first, so the restarted actor goes on)."""

    def __init__(self, settings: IngestSettings) -> None:
        from embedscope.ingest.ray_executor import EncoderActor

        self.inner = EncoderActor(settings)
        self.marker = os.path.join(os.path.dirname(settings.db), "crash-next-batch")

    def __call__(self, batch):
        if os.path.exists(self.marker):
            os.unlink(self.marker)
            os._exit(1)  # no cleanup, no exception: the worker process is gone mid-batch
        return self.inner(batch)


@pytest.mark.slow
def test_a_killed_encoder_actor_is_retried_without_duplicate_or_hole(ray_cluster, drop, local_db, tmp_path):
    from embedscope.ingest.encoders import load_encoders
    from embedscope.ingest.ray_executor import RayIngest

    marker = tmp_path / "crash-next-batch"
    marker.write_text("1")
    settings = IngestSettings(drops=(str(drop["drop"]),), db=str(tmp_path / "db"), weights="random",
                              image_size=56, batch_size=8, precision="fp32", progress=False, executor="ray",
                              ray_workers=1)
    db = Database(settings.db, create=True)
    from embedscope.ingest.scan import scan_drops

    with db.writer_lock(owner="test"):
        summary = RayIngest(db, settings, load_encoders(settings), encoder_cls=CrashOnceEncoder).run(list(scan_drops(settings.drops)))
    assert not marker.exists(), "the encoder actor never crashed: the test proved nothing"
    assert (summary.new, summary.duplicates, summary.quarantined) == (35, 3, 2)
    assert summary.embedded == {"full": 35}
    _assert_same(Path(settings.db), local_db, drop)


@pytest.mark.slow
def test_gpu_actors_on_a_cluster_without_gpus_fail_fast(ray_cluster, drop, tmp_path):
    from embedscope.errors import ConfigError
    from embedscope.ingest.encoders import load_encoders
    from embedscope.ingest.ray_executor import RayIngest

    settings = IngestSettings(drops=(str(drop["drop"]),), db=str(tmp_path / "db"), weights="random", image_size=56,
                              progress=False, executor="ray", num_gpus_per_worker=1)
    db = Database(settings.db, create=True)
    with pytest.raises(ConfigError, match="has no GPU"):
        RayIngest(db, settings, load_encoders(settings, announce=False)).run([])


def test_executor_ray_without_ray_is_a_dependency_error_with_the_fix(tmp_path, drop):
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    proc = run_cli("ingest", str(drop["drop"]), "--db", str(tmp_path / "db"), *TINY, "--executor", "ray",
                   env={"PYTHONPATH": os.pathsep.join([str(fake.parent), str(REPO)])}, check=False)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "--executor ray needs Ray Data" in proc.stderr and "pip install 'ray[data]'" in proc.stderr
    assert not (tmp_path / "db").exists()


def test_a_result_delivered_twice_is_written_once():
    """The driver's guard behind "exactly once": a retried task's second delivery adds nothing."""
    import datetime as dt

    from embedscope.ingest.decode_stage import DecodedItem
    from embedscope.ingest.progress import IngestSummary
    from embedscope.ingest.rows import embedding_rows
    from embedscope.ingest.triage import KnownState, Triage
    from embedscope.ingest.ray_executor import BatchResult, take_result
    from embedscope.ingest.scan import FileEntry
    from embedscope.ingest.writer import WriteJob

    def entry(name: str) -> FileEntry:
        return FileEntry(f"/drop/{name}", "/drop", 10, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))

    shas = [f"{i:064x}" for i in range(4)]
    items = [DecodedItem(entry(f"{i}.jpg"), shas[i], 4, 3, "JPEG", 0, b"", None) for i in range(3)]
    rows = embedding_rows(shas[:3], np.eye(3, 8, dtype=np.float32), model=MODEL, variant="full", weights="random")
    result = BatchResult(items=items, failed=[(entry("bad.jpg"), shas[3], "corrupt", False)],
                         tables={S.embeddings_table_name(MODEL): rows})
    summary = IngestSummary("db", MODEL, "random")
    triage = Triage(KnownState(set(), {}, {"full": set()}), ("full",), summary, None)
    for i in range(3):
        assert triage.admit(items[i].entry, shas[i], WriteJob()) == ("full",)
    assert triage.admit(entry("bad.jpg"), shas[3], WriteJob()) == ("full",)
    pending = set(shas)

    first = take_result(result, pending, triage)
    assert [it.sha256 for it in first.items] == shas[:3] and len(first.quarantine) == 1
    assert first.tables[S.embeddings_table_name(MODEL)][0].num_rows == 3 and len(first.sources) == 4
    assert not pending and (summary.new, summary.quarantined, summary.embedded) == (3, 1, {"full": 3})

    pending.add(shas[1])  # e.g. only one of them was still outstanding
    second = take_result(result, pending, triage)
    assert [it.sha256 for it in second.items] == [shas[1]] and not second.quarantine
    assert second.tables[S.embeddings_table_name(MODEL)][0].column("sha256").to_pylist() == [shas[1]]
    assert take_result(result, set(), triage).empty()


@pytest.mark.slow
def test_ray_ingests_an_s3_drop_into_an_s3_database_like_the_local_executor(ray_cluster, drop, local_db, s3):
    """The README's worked example in small: drop and database on object storage, Ray workers
    reading the objects with the credentials that travel with each listed entry."""
    root = Path(drop["drop"])
    prefix, db = s3.prefix("ray-incoming"), s3.prefix("ray-db")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        s3.upload(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
    out = json.loads(run_cli("ingest", prefix + "/", "--db", db, *TINY, "--executor", "ray",
                             "--ray-address", ray_cluster, "--json", env=s3.subprocess_env()).stdout)
    assert (out["scanned"], out["new"], out["duplicates"], out["quarantined"]) == (40, 35, 3, 2)

    ours, ref = Database(db), _rows(local_db)
    sources = ours.read(S.SOURCES, ["sha256", "path"]).to_pylist()
    assert sorted(r["path"] for r in sources) == sorted(
        f"{prefix}/{Path(r['path']).relative_to(root).as_posix()}" for r in ref["sources"])
    assert {r["sha256"] for r in sources} == {r["sha256"] for r in ref["sources"]}
    emb = ours.read_embeddings(MODEL, "full", ["sha256", "vector"])
    vectors = dict(zip(emb.column("sha256").to_pylist(), np.asarray(emb.column("vector").to_pylist())))
    assert vectors.keys() == ref["vectors"].keys()
    for sha, vec in ref["vectors"].items():
        np.testing.assert_allclose(vectors[sha], vec, atol=1e-4)
    q = ours.read(S.QUARANTINE, ["path", "reason"]).to_pylist()
    assert sorted(r["reason"] for r in q) == sorted(r["reason"] for r in ref["quarantine"])
