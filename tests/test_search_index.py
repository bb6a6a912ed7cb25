"""Every search path against numpy brute force (recall, never timings), and the in-memory graph
index kept current: incremental top-ups, a restart that loads the saved file, a stale file."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from conftest import run_cli
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq
from embedscope.store.graph_index import GraphIndex, graph_folder, open_graph
from embedscope.store.index import build_index, index_info
from embedscope.store.search import similar, similar_many
from embedscope.store.search_cache import SearchIndexCache

from test_queries_ann import DIM, MODEL, _clustered
from test_queries_ann import _write as _write_vectors

N, QUERIES = 3000, 40


def _write(db: Database, start: int, vectors: np.ndarray) -> list[str]:
    """Embeddings rows plus ``images`` rows labelled ``even``/``odd`` by their number."""
    shas = _write_vectors(db, start, vectors)
    db.upsert(S.IMAGES, pa.Table.from_pylist(
        [{"sha256": s, "path": f"/d/{start + i}.jpg", "label": "even" if (start + i) % 2 == 0 else "odd"}
         for i, s in enumerate(shas)], S.IMAGES_SCHEMA))
    return shas


@pytest.fixture
def world(tmp_path):
    rng = np.random.default_rng(11)
    centres = rng.standard_normal((30, DIM), dtype=np.float32)
    X, queries = _clustered(rng, N, centres), _clustered(rng, QUERIES, centres)
    db = Database(tmp_path / "db", create=True)
    return {"db": db, "X": X, "shas": _write(db, 0, X), "queries": queries, "centres": centres, "rng": rng}


def _truth(X: np.ndarray, q: np.ndarray, k: int = 10, among: np.ndarray | None = None) -> set[int]:
    d = 1.0 - X @ (q / np.linalg.norm(q))
    if among is not None:
        d = np.where(among, d, np.inf)
    return set(np.argsort(d, kind="stable")[:k].tolist())


def _recall(results: list[pa.Table], truths: list[set[int]]) -> float:
    got = [{int(s, 16) for s in t.column("sha256").to_pylist()} for t in results]
    return float(np.mean([len(g & t) / len(t) for g, t in zip(got, truths)]))


def test_every_search_path_recalls_the_brute_force_neighbours(world):
    db, X, Q = world["db"], world["X"], world["queries"]
    truths = [_truth(X, q) for q in Q]
    # exact (no index, no cache): Lance's flat scan
    assert _recall([similar(db, q, k=10) for q in Q], truths) == 1.0
    # the in-memory graph, one query at a time and as one batch: the same answers
    cache = SearchIndexCache(min_rows=0)
    single = [similar(db, q, k=10, cache=cache) for q in Q]
    batch = similar_many(db, Q, k=10, cache=cache)
    assert _recall(single, truths) >= 0.95
    assert [t.column("sha256").to_pylist() for t in batch] == [t.column("sha256").to_pylist() for t in single]
    assert batch[0].column("path").to_pylist()[0].startswith("/d/") and batch[0].column("label")[0].as_py()
    np.testing.assert_allclose(batch[0].column("distance").to_numpy(),
                               np.sort(1.0 - X @ (Q[0] / np.linalg.norm(Q[0])))[:10], atol=2e-3)
    # a WHERE falls back to the exact DuckDB path: recall 1.0 on the filtered rows
    even = np.arange(N) % 2 == 0
    filtered = similar_many(db, Q, k=10, where="label = 'even'", cache=cache)
    assert _recall(filtered, [_truth(X, q, among=even) for q in Q]) == 1.0
    assert all(set(t.column("label").to_pylist()) == {"even"} for t in filtered)
    # Lance's ANN index (the durable path: no cache), both kinds
    for kind in ("IVF_PQ", "IVF_HNSW_SQ"):
        assert build_index(db, MODEL, force=True, index_type=kind)["action"] == "built"
        db.refresh()
        assert index_info(db, S.embeddings_table_name(MODEL))["type"].upper().startswith(kind.split("_")[0])
        assert _recall(similar_many(db, Q, k=10), truths) >= 0.9, kind


def test_a_stored_image_comes_first_on_the_graph_path(world):
    db, shas = world["db"], world["shas"]
    cache = SearchIndexCache(min_rows=0)
    for i in (0, 17, 2999):
        hits = similar(db, shas[i], k=5, cache=cache)
        assert hits.column("sha256")[0].as_py() == shas[i] and hits.column("distance")[0].as_py() == 0.0
        assert len(set(hits.column("sha256").to_pylist())) == 5


def test_the_graph_fast_path_builds_what_the_general_path_builds(world, monkeypatch):
    """Array-built graph results (a take by graph label) equal the general path's (dict lookups
    per hit) on the same graph: every column, the query image first, a missing ``images`` row."""
    from embedscope.store import search

    db, shas, Q = world["db"], world["shas"], world["queries"]
    db.delete(S.IMAGES, eq("sha256", shas[3]))  # a hit without an images row: null path/label
    cache = SearchIndexCache(min_rows=0, recheck_s=0.0)
    queries = [Q[0], shas[3], shas[5], Q[1], shas[2999]]
    fast = similar_many(db, queries, k=7, cache=cache) + [similar(db, shas[3], k=1, cache=cache)]
    monkeypatch.setattr(search, "_similar_on_graph", lambda *a, **kw: None)
    general = similar_many(db, queries, k=7, cache=cache) + [similar(db, shas[3], k=1, cache=cache)]
    assert [t.schema for t in fast] == [search.RESULT_SCHEMA] * len(fast)
    assert [t.to_pylist() for t in fast] == [t.to_pylist() for t in general]
    assert fast[1].column("sha256")[0].as_py() == shas[3] and fast[1].column("path")[0].as_py() is None
    assert fast[2].column("path")[0].as_py() == "/d/5.jpg" and fast[2].column("distance")[0].as_py() == 0.0


def test_graph_tops_up_new_rows_and_a_restart_loads_the_saved_file(world, tmp_path):
    db, X, rng = world["db"], world["X"], world["rng"]
    cache = SearchIndexCache(min_rows=0, recheck_s=0.0)
    similar(db, X[0], k=5, cache=cache)
    graph = cache.graph_for(db, MODEL, "full")
    assert len(graph) == N and graph.bytes_per_vector() > DIM * 4

    Y = _clustered(rng, 500, world["centres"])
    new = _write(db, N, Y)
    hits = similar_many(db, Y[:20], k=3, cache=cache)
    assert [t.column("sha256")[0].as_py() for t in hits] == new[:20]  # found at distance ~0
    assert len(cache.graph_for(db, MODEL, "full")) == N + 500  # topped up, not rebuilt
    XY = np.vstack([X, Y])
    truths = [_truth(XY, q) for q in world["queries"]]
    before = similar_many(db, world["queries"], k=10, cache=cache)
    assert _recall(before, truths) >= 0.95

    # a restart: a new Database and cache load the saved file, find it current, answer the same
    graph.save(graph_folder(db))
    db2 = Database(tmp_path / "db")
    loaded, action = open_graph(db2, MODEL, "full")
    assert action == "loaded" and len(loaded) == N + 500
    after = similar_many(db2, world["queries"], k=10, cache=SearchIndexCache(min_rows=0))
    assert [t.to_pylist() for t in after] == [t.to_pylist() for t in before]


def test_a_stale_saved_file_is_topped_up_or_rebuilt(world):
    db, X, rng, shas = world["db"], world["X"], world["rng"], world["shas"]
    one_shot = SearchIndexCache(min_rows=0, build=False)  # the CLI's: uses a saved graph, never builds one
    assert one_shot.graph_for(db, MODEL, "full") is None
    _, action = open_graph(db, MODEL, "full")
    assert action == "built"
    assert len(SearchIndexCache(min_rows=0, build=False).graph_for(db, MODEL, "full")) == N
    Y = _clustered(rng, 200, world["centres"])
    new = _write(db, N, Y)  # rows added behind the saved file
    graph, action = open_graph(db, MODEL, "full")
    assert action == "topped-up" and len(graph) == N + 200
    assert graph.search(Y[:5], 1) == [[(s, pytest.approx(0.0, abs=1e-5))] for s in new[:5]]
    assert open_graph(db, MODEL, "full")[1] == "loaded"  # the top-up was saved

    # an existing row changed behind the file: its old row id is gone, so the graph is rebuilt
    from embedscope.ingest.rows import embedding_rows

    moved = -X[7]
    db.upsert(S.embeddings_table_name(MODEL), embedding_rows([shas[7]], moved[None], model=MODEL, variant="full",
                                                             weights="random"))
    graph, action = open_graph(db, MODEL, "full")
    assert action == "rebuilt" and len(graph) == N + 200
    assert graph.search(moved[None], 1)[0][0][0] == shas[7]
    assert isinstance(GraphIndex.load(graph_folder(db), MODEL, "full"), GraphIndex)

    # the version the file covers cleaned up: the new rows are found by comparing every row id instead
    import datetime as dt

    Z = _clustered(rng, 50, world["centres"])
    added = _write(db, N + 200, Z)
    db.dataset(S.embeddings_table_name(MODEL)).cleanup_old_versions(older_than=dt.timedelta(0))
    graph, action = open_graph(db, MODEL, "full")
    assert action == "topped-up" and len(graph) == N + 250
    assert graph.search(Z[:3], 1) == [[(s, pytest.approx(0.0, abs=1e-5))] for s in added[:3]]


def test_api_similar_many_and_cli_index_report_memory(world, tmp_path):
    import embedscope
    from embedscope.store.search_cache import SearchIndexCache as Cache

    es = embedscope.open(tmp_path / "db")
    es.search_cache = Cache(min_rows=0)
    frames = es.similar_many(world["queries"][:3], k=4)
    assert len(frames) == 3 and all(len(f) == 4 for f in frames)
    assert es.similar(world["shas"][5], k=2)["sha256"].iloc[0] == world["shas"][5]

    (r,) = json.loads(run_cli("index", "--db", str(tmp_path / "db"), "--force", "--json").stdout)
    (g,) = r["graph"]
    assert g["variant"] == "full" and g["rows"] == N and g["bytes_per_vector"] > DIM * 4
    assert g["action"] in {"built", "loaded", "topped-up", "rebuilt", "calibrated"}
    assert g["calibration"]["recall"] >= 0.95 and g["ef"] == g["calibration"]["ef"]


def test_the_graph_raises_ef_until_its_measured_recall_reaches_the_target(world, tmp_path):
    """A graph too sparse for its data (M 4, ef_construction 16) needs a larger ef than the
    floor for recall@10 ≥ 0.95: it measures that on held-out rows (added after) and searches
    with it, the measurement agrees with brute force, and the choice survives a restart, is
    re-drawn after 10% growth and is drawn for a graph saved before graphs measured their recall."""
    from embedscope.store.graph_index import GraphParams
    from embedscope.store.graph_recall import exact_neighbours, recall_at

    db, X = world["db"], world["X"]
    sparse = GraphParams(m=4, ef_construction=16, ef_search=10, target_recall=0.95)
    graph = GraphIndex.build(db, MODEL, "full", sparse)
    cal = graph.calibration
    assert cal["ef"] > 10 and cal["recall"] >= 0.95 and cal["queries"] == 200
    assert cal["held_out"] and cal["rows"] == N - 200 and len(graph) == N  # the last 200 rows read were the queries
    queries, labels, kth = _sample(graph, X)
    assert exact_neighbours(graph.index, len(graph), queries, labels, 10) == pytest.approx(kth, abs=1e-5)
    assert recall_at(graph.index, queries, labels, kth, ef=10, k=10) < 0.95  # the floor alone would not have done
    assert recall_at(graph.index, queries, labels, kth, ef=cal["ef"], k=10) >= 0.93  # another sample agrees

    Q = world["queries"]
    truths = [_truth(X, q) for q in Q]
    found = [{int(s, 16) for s, _ in hits} for hits in graph.search(Q, 10)]
    assert np.mean([len(f & t) / 10 for f, t in zip(found, truths)]) >= 0.9  # held-out queries, not the sample

    graph.save(graph_folder(db))
    loaded = GraphIndex.load(graph_folder(db), MODEL, "full")
    assert loaded.calibration == cal and loaded.index.ef == cal["ef"]

    _write(db, N, _clustered(world["rng"], N // 5, world["centres"]))  # 20% more rows
    assert graph.sync(db) == "topped-up" and graph.calibration["rows"] == N + N // 5 - 200
    assert graph.calibration["held_out"] and len(graph) == N + N // 5
    graph.save(graph_folder(db))

    note_path = graph_folder(db) / f"{S.embeddings_table_name(MODEL)}__full.json"
    note = json.loads(note_path.read_text())
    note.pop("calibration")  # as written before this change
    note_path.write_text(json.dumps(note))
    again, action = open_graph(db, MODEL, "full", sparse)
    assert action == "calibrated" and again.calibration["recall"] >= 0.95
    assert json.loads(note_path.read_text())["calibration"] == again.calibration  # and saved


def _sample(graph: GraphIndex, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """200 held rows as queries, their labels, and the brute-force 10th-neighbour similarity."""
    labels = np.arange(0, len(graph), len(graph) // 200)[:200]
    queries = np.asarray(graph.index.get_items(labels), np.float32)
    sims = queries @ (X / np.linalg.norm(X, axis=1, keepdims=True))[[int(k, 16) for k in graph.keys.astype(str)]].T
    sims[np.arange(len(labels)), labels] = -np.inf
    return queries, labels, -np.sort(-sims, axis=1)[:, 9]
