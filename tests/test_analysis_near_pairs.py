"""Near-duplicates over every row (issue 20, item 4), and analyze's progress lines (issue 18, item 4).

The range search must return exactly the pairs a brute-force comparison of every pair returns:
planted pairs are placed at cosine distances spread up to the threshold (and decoys just above
it), and a sampled run (fit sample far smaller than N, small batches) must group every planted
pair, wherever its two rows fall.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from embedscope.analysis.duplicates import DuplicateConfig
from embedscope.analysis.jobs import AnalysisParams, run_analysis
from embedscope.analysis.near_pairs import all_near_duplicates, candidate_pairs, near_pairs, pair_space, radius_sq
from embedscope.analysis.neighbors import normalize
from embedscope.analysis.progress import Progress
from embedscope.analysis.synthetic import make_blobs
from embedscope.analysis.vectors_import import import_vectors
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import vectors_parquet

THR = 0.03


def _planted(n_blob: int = 1000, n_pairs: int = 60, dim: int = 64, seed: int = 0):
    """Blob rows plus copies at exact cosine distances: ``n_pairs`` within THR, as many decoys in (THR, 1.5·THR]."""
    syn = make_blobs(n_per_blob=n_blob, n_blobs=5, dim=dim, n_planted=0, n_outliers=0, n_dups=0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    X = syn.X
    src = rng.choice(len(X), 2 * n_pairs, replace=False)
    dist = np.concatenate([rng.uniform(0.0005, THR * 0.999, n_pairs), rng.uniform(THR * 1.01, THR * 1.5, n_pairs)])
    u = rng.normal(size=(2 * n_pairs, dim))
    u -= (u * X[src]).sum(1, keepdims=True) * X[src]  # orthogonal to the source row
    u = normalize(u)
    cos = 1.0 - dist
    copies = cos[:, None] * X[src] + np.sqrt(1 - cos ** 2)[:, None] * u
    Y = normalize(np.concatenate([X, copies]))
    within = {(int(s), len(X) + i) for i, s in enumerate(src[:n_pairs])}
    return Y, within


def _brute(X: np.ndarray, thr: float) -> set[tuple[int, int]]:
    X = normalize(X)
    d = 1.0 - X @ X.T
    a, b = np.nonzero(np.triu(d <= thr, 1))
    return set(zip(a.tolist(), b.tolist()))


def test_range_search_equals_brute_force():
    X, within = _planted()
    truth = _brute(X, THR)
    assert within <= truth
    pairs, dist = near_pairs(X, THR)
    assert set(map(tuple, pairs.tolist())) == truth
    assert (dist <= THR).all()


def test_cells_with_exact_probes_equal_one_block():
    """The IVF cells (forced many) lose no pair of the PCA space."""
    X, _ = _planted(n_blob=900, dim=48, seed=3)
    Z = pair_space(X, 16)(X)
    r = radius_sq(0.03)  # in PCA-16: tens of thousands of pairs, many across cells
    one = candidate_pairs(Z, r, cells=1)
    many = candidate_pairs(Z, r, cells=40)
    sq = (Z.astype(np.float64) ** 2).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * Z.astype(np.float64) @ Z.T.astype(np.float64)
    a, b = np.nonzero(np.triu(d <= r, 1))
    truth = set(zip(a.tolist(), b.tolist()))
    assert len(truth) > 1000
    assert set(map(tuple, one.tolist())) == truth
    assert set(map(tuple, many.tolist())) == truth


def test_groups_are_connected_components_of_the_pairs():
    X, within = _planted(n_blob=300, n_pairs=20)
    group, statement = all_near_duplicates(X, DuplicateConfig(cosine_threshold=THR))
    assert all(group[a] >= 0 and group[a] == group[b] for a, b in within)
    assert "every pair" in statement and "exact" in statement


@pytest.fixture(scope="module")
def planted_db(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("near")
    X, within = _planted()
    ids = [f"r{i:05d}" for i in range(len(X))]
    db = Database(tmp / "db", create=True)
    import_vectors(db, vectors_parquet(tmp / "v.parquet", ids, X), model="syn")
    return db, ids, X, within


FAST = dict(project=("pca",), hdbscan_space="pca", cluster=("kmeans",), k=5)


def _groups(db: Database, run_id: str) -> dict[str, int | None]:
    t = db.read(S.FLAGS, ["sha256", "dup_group"], where=f"run_id = '{run_id}'")
    return dict(zip(t.column("sha256").to_pylist(), t.column("dup_group").to_pylist()))


@pytest.mark.slow
@pytest.mark.parametrize("fit_sample", [0, 800])
def test_every_planted_pair_is_found_in_full_and_sampled_runs(planted_db, fit_sample, caplog):
    db, ids, X, within = planted_db
    with caplog.at_level(logging.INFO, logger="embedscope"):
        run_id = run_analysis(db, AnalysisParams(**FAST, fit_sample=fit_sample, batch_size=700))
    g = _groups(db, run_id)
    truth = _brute(X, THR)
    assert all(g[ids[a]] is not None and g[ids[a]] >= 0 and g[ids[a]] == g[ids[b]] for a, b in truth)
    in_pairs = {ids[i] for p in truth for i in p}
    assert all(v is None or v < 0 for s, v in g.items() if s not in in_pairs)  # decoys and the rest: no group
    # progress: a line as the run starts, and rows done / total for the long passes
    text = caplog.text
    first_stage = next(i for i, r in enumerate(caplog.records) if " done in " in r.getMessage())
    assert any("rows" in r.getMessage() for r in caplog.records[:first_stage])  # said before any work
    assert f"near-duplicates: 0 / {len(ids):,} rows" in text
    assert "near-duplicates: " in text and " rows in " in text
    if fit_sample:
        assert f"place: 0 / {len(ids) - fit_sample:,} rows" in text


def test_progress_lines_say_done_total_rate_and_eta(caplog):
    with caplog.at_level(logging.INFO, logger="embedscope"):
        p = Progress("place", 1000, every=0.0, bar=False)
        p.update(250)
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "place: 0 / 1,000 rows"
    assert lines[1].startswith("place: 250 / 1,000 rows (25%), ") and "rows/s, ETA " in lines[1]
    assert lines[2].startswith("place: 250 rows in ")
