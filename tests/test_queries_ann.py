"""The ANN index: recall@10 against exact search on 50k random vectors, and upkeep as data grows."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.index import INDEX_MIN_ROWS, build_index, choose_params, index_info, maybe_optimize
from embedscope.store.queries import similar

MODEL = "dinov2_vits14"
N, DIM, QUERIES = 50_000, 384, 100


def _clustered(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    """Random unit vectors around random centres: structure like real embeddings have."""
    x = centres[rng.integers(0, len(centres), n)] + 0.7 * rng.standard_normal((n, DIM), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _write(db: Database, start: int, vectors: np.ndarray) -> list[str]:
    from embedscope.ingest.rows import embedding_rows

    shas = [f"{i:064x}" for i in range(start, start + len(vectors))]
    db.upsert(S.embeddings_table_name(MODEL), embedding_rows(shas, vectors, model=MODEL, variant="full", weights="random"))
    return shas


@pytest.mark.slow
def test_ann_recall_at_10_against_exact_search(tmp_path):
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((500, DIM), dtype=np.float32)
    X = _clustered(rng, N, centres)
    db = Database(tmp_path / "db", create=True)
    shas = _write(db, 0, X)
    assert N >= INDEX_MIN_ROWS

    assert maybe_optimize(db, MODEL) == "built"
    info = index_info(db, S.embeddings_table_name(MODEL))
    assert info["type"] == "IVF_PQ" and info["indexed_rows"] == N and info["unindexed_rows"] == 0
    assert info["num_partitions"] == choose_params(N, DIM).num_partitions

    queries = rng.choice(N, QUERIES, replace=False)
    recalls = []
    for q in queries:
        exact = np.argsort(-(X @ X[q]), kind="stable")[:10]
        got = similar(db, shas[q], k=10)
        assert got.column("sha256")[0].as_py() == shas[q] and got.column("distance")[0].as_py() == 0.0
        recalls.append(len(set(got.column("sha256").to_pylist()) & {shas[i] for i in exact}) / 10)
    recall = float(np.mean(recalls))
    print(f"recall@10 = {recall:.3f} over {QUERIES} queries, N={N}, dim={DIM}")
    assert recall >= 0.95

    # growth: 10 % new rows are searched (un-indexed, exactly) at once, then folded into the index
    Y = _clustered(rng, N // 10, centres)
    new = _write(db, N, Y)
    db.refresh()
    assert index_info(db, S.embeddings_table_name(MODEL))["unindexed_rows"] == len(Y)
    assert similar(db, new[5], k=1).column("sha256")[0].as_py() == new[5]
    assert maybe_optimize(db, MODEL) == "optimized"
    info = index_info(db, S.embeddings_table_name(MODEL))
    assert info["unindexed_rows"] == 0 and info["indexed_rows"] == N + len(Y)
    assert maybe_optimize(db, MODEL) == "none"
    XY = np.vstack([X, Y])
    recalls = []
    for q in rng.choice(len(XY), 30, replace=False):
        exact = {f"{i:064x}" for i in np.argsort(-(XY @ XY[q]))[:10]}
        recalls.append(len(set(similar(db, XY[q], k=10).column("sha256").to_pylist()) & exact) / 10)
    assert float(np.mean(recalls)) >= 0.95


def test_small_tables_get_no_index(tmp_path):
    rng = np.random.default_rng(0)
    db = Database(tmp_path / "db", create=True)
    _write(db, 0, _clustered(rng, 500, rng.standard_normal((5, DIM), dtype=np.float32)))
    assert maybe_optimize(db, MODEL) == "none"
    assert build_index(db, MODEL)["action"] == "skipped"
    assert index_info(db, S.embeddings_table_name(MODEL)) is None


def test_choose_params_scale_with_n_and_dim():
    small, big = choose_params(50_000, 384), choose_params(1_000_000, 384)
    assert small.index_type == big.index_type == "IVF_PQ"
    assert small.num_partitions < big.num_partitions and 384 % small.num_sub_vectors == 0
    assert choose_params(100_000, 768).num_sub_vectors == 96


def test_maybe_optimize_retrains_after_fourfold_growth(tmp_path):
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((20, DIM), dtype=np.float32)
    db = Database(tmp_path / "db", create=True)
    _write(db, 0, _clustered(rng, 2_000, centres))
    assert build_index(db, MODEL, force=True)["action"] == "built"
    table = S.embeddings_table_name(MODEL)
    assert index_info(db, table)["trained_rows"] == 2_000
    _write(db, 2_000, _clustered(rng, 6_000, centres))  # ×4: twice the partitions would be chosen
    db.refresh()
    assert maybe_optimize(db, MODEL) == "rebuilt"
    info = index_info(db, table)
    assert info["trained_rows"] == 8_000 and info["unindexed_rows"] == 0
    assert info["num_partitions"] == choose_params(8_000, DIM).num_partitions
