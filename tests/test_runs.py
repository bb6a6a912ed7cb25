"""store.runs, the one source of runs: the latest run by kind/model/variant, one run by id (an
unknown id is an error naming the known ones, never a fallback), the overlay order of
novelty-only runs, model/variant resolution, and the CLI commands that take a run id.

The ``runs`` rows are written to real tmp_path LanceDB databases; nothing is mocked."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyarrow as pa
import pytest

from conftest import run_cli
from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import runs as R
from embedscope.store import schema as S
from embedscope.store.db import Database

T0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)


def _run(run_id: str, kind: str = "analyze", *, hours: float = 0, model: str = "m", variant: str = "full",
         **params) -> dict:
    return {"run_id": run_id, "kind": kind, "model": model, "variant": variant, "params": json.dumps(params),
            "created_at": T0 + dt.timedelta(hours=hours), "n_images": 10}


def _db_with_runs(path, rows: list[dict]) -> Database:
    db = Database(path, create=True)
    db.upsert(S.RUNS, pa.Table.from_pylist(rows, S.RUNS_SCHEMA))
    return db


@pytest.fixture
def db(tmp_path) -> Database:
    return _db_with_runs(tmp_path / "db", [
        _run("a-old", hours=0, primary_cluster="kmeans"),
        _run("a-new", hours=2, primary_cluster="hdbscan", primary_projection="umap", primary_dims=3),
        _run("a-other-model", hours=5, model="other"),
        _run("a-masked", hours=4, variant="sam2_masked"),
        _run("n-late", "novelty", hours=3, parent_run="a-new"),
        _run("n-early", "novelty", hours=2.5, parent_run="a-new"),
        _run("n-of-old", "novelty", hours=1, parent_run="a-old"),
        _run("n-newest", "novelty", hours=9, parent_run="a-other-model"),
    ])


def test_latest_by_kind_model_and_variant(db):
    assert R.latest_run(db).run_id == "a-other-model"  # analyze, any model/variant
    assert R.latest_run(db, model="m").run_id == "a-masked"
    assert R.latest_run(db, model="m", variant="full").run_id == "a-new"
    assert R.latest_run(db, kind="novelty").run_id == "n-newest"
    assert R.latest_run(db, kind=None).run_id == "n-newest"
    assert R.latest_run(db, model="absent") is None
    assert [r.run_id for r in R.list_runs(db, model="m", variant="full")] == ["a-new", "a-old"]
    assert len(R.list_runs(db, kind=None)) == 8


def test_run_fields_and_params(db):
    run = R.run_by_id(db, "a-new")
    assert (run.kind, run.model, run.variant, run.n_images) == ("analyze", "m", "full", 10)
    assert (run.primary_cluster, run.primary_projection, run.primary_dims) == ("hdbscan", "umap", 3)
    assert R.run_by_id(db, "a-old").primary_dims == 2  # the default
    assert R.run_by_id(db, "n-late").parent_run == "a-new"
    assert run.title().endswith("· 10 images · a-new") and "m/full" in run.title()


def test_ties_on_created_at_are_broken_by_run_id(tmp_path):
    db = _db_with_runs(tmp_path / "db", [_run("b", hours=1), _run("c", hours=1), _run("a", hours=1)])
    assert R.latest_run(db).run_id == "c"
    assert [r.run_id for r in R.list_runs(db)] == ["c", "b", "a"]


def test_unknown_run_id_raises_naming_the_known_ids(db, tmp_path):
    with pytest.raises(R.UnknownRunError) as err:
        R.run_by_id(db, "nope")
    assert isinstance(err.value, NotFoundError)
    line = err.value.one_line()
    assert "'nope'" in line and "\n" not in line
    for rid in ("a-old", "a-new", "n-late", "n-newest"):
        assert rid in err.value.hint
    # an explicit id never falls back to the latest run; None means "the latest"
    with pytest.raises(R.UnknownRunError):
        R.run_or_latest(db, "nope")
    assert R.run_or_latest(db, None).run_id == "a-other-model"
    assert R.run_or_latest(db, None, model="m", variant="full").run_id == "a-new"
    assert R.run_or_latest(db, "n-late").run_id == "n-late"  # any kind by id
    # a quote in the id is a value, not SQL
    with pytest.raises(R.UnknownRunError):
        R.run_by_id(db, "x' OR '1'='1")
    empty = Database(tmp_path / "empty", create=True)
    with pytest.raises(R.UnknownRunError) as err:
        R.run_by_id(empty, "nope")
    assert "no runs yet" in err.value.hint
    assert R.latest_run(empty) is None and R.list_runs(empty) == []


def test_overlay_runs_are_the_parent_then_its_novelty_runs_oldest_first(db):
    parent = R.run_by_id(db, "a-new")
    assert [r.run_id for r in R.scoring_runs(db, parent)] == ["n-early", "n-late"]
    assert [r.run_id for r in R.overlay_runs(db, parent)] == ["a-new", "n-early", "n-late"]
    assert [r.run_id for r in R.overlay_runs(db, R.run_by_id(db, "a-masked"))] == ["a-masked"]


def _embeddings(db: Database, model: str, dim: int, variants=("full",)) -> None:
    X = np.random.default_rng(0).normal(size=(6, dim)).astype(np.float32)
    rows = [{"sha256": f"{i:064x}", "model": model, "variant": v, "dim": dim, "vector": X[i].tolist()}
            for v in variants for i in range(len(X))]
    db.upsert(S.embeddings_table_name(model), pa.Table.from_pylist(rows, S.embeddings_schema(dim)))


def test_resolve_model_variant(tmp_path):
    db = Database(tmp_path / "db", create=True)
    with pytest.raises(NotFoundError, match="no embeddings"):
        R.resolve_model_variant(db, None, None)
    _embeddings(db, "syn", 8, variants=("full", "patch_mean"))
    assert R.resolve_model_variant(db, None, None) == ("syn", "full")
    assert R.resolve_model_variant(db, None, "patch_mean") == ("syn", "patch_mean")
    _embeddings(db, "other", 4, variants=("sam2_masked",))
    with pytest.raises(ConfigError, match="several models: other, syn"):
        R.resolve_model_variant(db, None, None)
    assert R.resolve_model_variant(db, "other", None) == ("other", "sam2_masked")  # the only variant
    with pytest.raises(NotFoundError, match="no 'full' embeddings for model other"):
        R.resolve_model_variant(db, "other", "full")
    with pytest.raises(NotFoundError) as err:
        R.resolve_model_variant(db, "nope", None)
    assert "models in this database: other, syn" in err.value.one_line()


def test_cli_unknown_run_id_fails_in_one_line_naming_the_known_ids(db):
    """``report --run`` and ``analyze --novelty-only --since`` through the real entry point."""
    proc = run_cli("report", "--db", db.uri, "--run", "nope", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no run 'nope'" in lines[0]
    assert "known runs:" in lines[0] and "a-new" in lines[0] and "n-late" in lines[0]
    proc = run_cli("analyze", "--db", db.uri, "--novelty-only", "--since", "nope", check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--since 'nope' is neither a run id nor an ISO timestamp" in lines[0]
    assert "a-new" in lines[0]


def test_cli_run_ids_that_exist_are_used(tmp_path, capsys):
    """A real (PCA, k-means) analyze run; its id works for ``report --run`` and ``--since``."""
    from embedscope import cli

    db = Database(tmp_path / "db", create=True)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(3, 8)) * 5
    X = np.concatenate([c + rng.normal(size=(20, 8)) for c in centres]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    rows = [{"sha256": f"{i:064x}", "model": "syn", "variant": "full", "dim": 8, "vector": v.tolist(),
             "created_at": T0} for i, v in enumerate(X)]
    db.upsert(S.embeddings_table_name("syn"), pa.Table.from_pylist(rows, S.embeddings_schema(8)))
    db.upsert(S.IMAGES, pa.Table.from_pylist([{"sha256": r["sha256"], "path": f"/x/{i}.jpg"}
                                              for i, r in enumerate(rows)], S.IMAGES_SCHEMA))
    capsys.readouterr()
    args = ["--db", db.uri, "--project", "pca", "--cluster", "kmeans", "--k", "3", "--json"]
    assert cli.main(["analyze", *args]) == 0
    out = json.loads(capsys.readouterr().out)
    run = R.latest_run(db)
    assert out["run_id"] == run.run_id and out["kind"] == "analyze" and out["n_images"] == len(X)
    assert cli.main(["analyze", "--db", db.uri, "--novelty-only", "--since", run.run_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"run_id": None, "n_images": 0}  # nothing newer than the run
    report = tmp_path / "r.html"
    assert cli.main(["report", "--db", db.uri, "--run", run.run_id, "--out", str(report)]) == 0
    assert run.run_id in report.read_text()
