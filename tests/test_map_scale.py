"""The large map's pure parts: the 2-D index (views, nearest point, lasso, representatives,
the memory-bounded cache), the density image, the figure builders and the event helpers;
and the array reads of a real (small) LanceDB database."""

from __future__ import annotations

import base64

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pytest
from matplotlib.path import Path as MplPath

from embedscope.dashboard import map_density, map_layers, map_view
from embedscope.dashboard.map_index import MapIndex, MapIndexCache, View
from embedscope.dashboard.map_state import INLINE_MAX, MapState


def _index(n: int = 20_000, seed: int = 0) -> MapIndex:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    return MapIndex.build(pa.array([f"{i:064x}" for i in range(n)]), x, y)


def test_in_view_is_exactly_the_points_in_the_rectangle():
    idx = _index()
    for view in (View(-0.5, 0.3, -1.2, 0.1), View(-9, 9, -9, 9), View(2.5, 2.6, -3, 3), View(50, 60, 50, 60)):
        want = np.flatnonzero((idx.x >= view.x0) & (idx.x <= view.x1) & (idx.y >= view.y0) & (idx.y <= view.y1))
        assert idx.in_view(view).tolist() == want.tolist()


def test_nearest_matches_brute_force():
    idx = _index()
    for px, py in ((0.1, -0.2), (3.0, 3.0), (-1.5, 0.7)):
        brute = np.argsort((idx.x - px) ** 2 + (idx.y - py) ** 2, kind="stable")[:3]
        assert idx.nearest(px, py, k=3).tolist() == brute.tolist()


def test_lasso_matches_matplotlib_point_in_polygon():
    idx = _index()
    xs, ys = [-1.0, 0.8, 1.2, 0.0, -0.9], [-1.1, -0.9, 0.6, 1.4, 0.4]
    want = np.flatnonzero(MplPath(np.column_stack([xs, ys])).contains_points(np.column_stack([idx.x, idx.y])))
    got = idx.in_polygon(xs, ys)
    assert got.tolist() == want.tolist() and len(got) > 1000
    assert idx.in_polygon([0, 1], [0, 1]).size == 0  # not a polygon


def test_shas_and_index_of_round_trip():
    idx = _index(100)
    assert idx.shas([3, 1, 500, -1]) == [f"{3:064x}", f"{1:064x}"]  # out of range: skipped
    assert idx.index_of([f"{7:064x}", "f" * 64, f"{2:064x}"]).tolist() == [2, 7]


def test_representatives_are_members_nearest_each_centroid():
    x = np.array([0, 1, 2, 10, 11, 12, 50], np.float32)
    idx = MapIndex.build(pa.array([f"{i:064x}" for i in range(7)]), x, np.zeros(7, np.float32))
    reps = idx.representatives(np.array([0, 0, 0, 1, 1, 1, 2], np.int32), ["cluster 0", "cluster 1", "noise"])
    assert [(r["category"], r["index"], r["size"]) for r in reps] == [("cluster 0", 1, 3), ("cluster 1", 4, 3)]


def test_cache_drops_the_least_recently_used_beyond_its_budget():
    one = _index(5_000)
    cache = MapIndexCache(max_bytes=int(one.nbytes * 2.5))
    for key in "abc":
        cache.get((key,), lambda: _index(5_000))
    assert len(cache) == 2
    built = []
    cache.get(("a",), lambda: built.append(1) or _index(5_000))
    assert built == [1]  # "a" was the oldest: dropped, rebuilt


@pytest.mark.slow  # datashader compiles its kernels (numba) on first use
def test_density_image_has_the_view_aspect_and_colours_by_category():
    x = np.array([0.1, 0.1, 0.9], np.float32)
    y = np.array([0.1, 0.1, 0.4], np.float32)
    rgba = map_density.render(x, y, View(0, 1, 0, 0.5), codes=np.array([0, 0, 1], np.int32),
                              colours=["#ff0000", "#0000ff"], max_side=100)
    assert rgba.shape == (50, 100, 4)
    painted = rgba[..., 3] > 0
    assert 2 <= painted.sum() <= 20  # two pixels, spread by nothing
    reds = rgba[painted & (rgba[..., 0] > 200)]
    blues = rgba[painted & (rgba[..., 2] > 200)]
    assert len(reds) and len(blues)
    # rows run top to bottom: the point at y=0.4 (near the top) lies in the upper rows
    assert np.argwhere(painted & (rgba[..., 2] > 200))[0][0] < 10
    assert map_density.png_data_uri(rgba).startswith("data:image/png;base64,")


@pytest.mark.slow
def test_density_image_by_mean_value():
    x = np.array([0.2, 0.8], np.float32)
    rgba = map_density.render(x, x, View(0, 1, 0, 1), values=np.array([0.0, 1.0], np.float32), max_side=20)
    painted = np.argwhere(rgba[..., 3] > 0)
    assert len(painted) == 2


def test_points_figure_sends_float32_positions_and_only_what_is_in_view():
    idx = _index(1000)
    rows = idx.in_view(View(-1, 1, -1, 1))
    codes = (np.arange(1000) % 3).astype(np.int32)
    fig = map_layers.points_figure(View(-1, 1, -1, 1), rows, idx.x, idx.y, codes=codes,
                                   categories=["cluster 0", "cluster 1", "noise"])
    go_fig = go.Figure(fig)  # what the dict builds is a valid figure
    assert sum(len(base64.b64decode(t["x"]["bdata"])) // 4 for t in fig["data"]) == len(rows)
    assert [t.name.split(" (")[0] for t in go_fig.data] == ["cluster 0", "cluster 1", "noise"]
    payload = fig["data"][0]
    assert payload["x"]["dtype"] == "f4" and "bdata" in payload["x"]  # a typed array, base64
    assert go_fig.layout.xaxis.range == (-1, 1)


def test_density_figure_has_the_image_a_hover_surface_and_a_legend():
    fig = map_layers.density_figure(View(0, 2, 0, 1), "data:image/png;base64,AAAA", categories=["b", "a"],
                                    colours=["#111111", "#222222"], counts=[5, 7])
    fig = go.Figure(fig)  # what the dict builds is a valid figure
    assert fig.layout.images[0].source.startswith("data:image/png") and fig.layout.images[0].sizex == 2
    assert fig.data[0].type == "heatmap" and fig.data[0].opacity == 0
    assert [t.name for t in fig.data[1:]] == ["a (7)", "b (5)", map_layers.WEBGL_KEEPER]
    # the legend is SVG; one empty WebGL trace keeps the graph's context for the points view
    assert [t.type for t in fig.data[1:]] == ["scatter", "scatter", "scattergl"] and fig.data[-1].x == (None,)


def test_event_indices_from_customdata_or_the_nearest_point():
    idx = _index(2000)
    assert map_view.event_indices(idx, {"points": [{"customdata": 17, "x": 0, "y": 0}]}, None) == [17]
    i = 123
    event = {"points": [{"x": float(idx.x[i]) + 1e-4, "y": float(idx.y[i])}]}
    assert map_view.event_indices(idx, event, {"mode": "points"}) == [i]
    far = {"points": [{"x": 40.0, "y": 40.0}]}
    assert map_view.event_indices(idx, far, {"mode": "density", "view": [-5, 5, -5, 5]}) == []


def test_selection_polygon_of_lasso_and_box():
    assert map_view.selection_polygon({"lassoPoints": {"x": [0, 1, 1], "y": [0, 0, 1]}}) == ([0, 1, 1], [0, 0, 1])
    assert map_view.selection_polygon({"range": {"x": [0, 2], "y": [1, 3]}}) == ([0, 2, 2, 0], [1, 1, 3, 3])
    assert map_view.selection_polygon({"points": []}) is None


def test_moved_ignores_a_redraw_of_the_same_view():
    assert map_view.moved([0, 1, 0, 1], [0, 1, 0, 1]) is None
    assert map_view.moved([0, 0.5, 0, 0.5], [0, 1, 0, 1]) == View(0, 0.5, 0, 0.5)
    assert map_view.moved(None, [0, 1, 0, 1]) is None


def test_large_selections_stay_on_the_server():
    state = MapState()
    small = state.selection_store(["a" * 64] * 3)
    assert small == {"source": "map", "sha256": ["a" * 64] * 3}
    big = [f"{i:064x}" for i in range(INLINE_MAX + 1)]
    stored = state.selection_store(big)
    assert stored["sha256"] == [] and stored["count"] == len(big)
    assert state.resolve(stored) == big
    from embedscope.errors import NotFoundError

    with pytest.raises(NotFoundError):
        state.resolve({"ref": "gone"})


def test_projection_columns_and_colours_from_a_real_database(tmp_path):
    import datetime as dt

    from embedscope.store import map_columns
    from embedscope.store import schema as S
    from embedscope.store.db import Database

    db = Database(str(tmp_path / "db"), create=True)
    shas = [f"{i:064x}" for i in (5, 1, 3, 2)]
    db.upsert(S.PROJECTIONS, pa.table({"run_id": ["r"] * 4, "sha256": shas, "method": ["umap"] * 4,
                                       "dims": pa.array([2] * 4, pa.int32()), "x": [5.0, 1.0, 3.0, 2.0],
                                       "y": [0.0] * 4, "z": pa.nulls(4, pa.float32())}))
    db.upsert(S.CLUSTERS, pa.table({"run_id": ["r"] * 3, "sha256": shas[:3], "method": ["kmeans"] * 3,
                                    "cluster": pa.array([0, -1, 1], pa.int32())}))
    db.upsert(S.IMAGES, pa.table({"sha256": shas, "label": ["a", None, "b", "a"],
                                  "ingested_at": [dt.datetime.now(dt.timezone.utc)] * 4}))
    cols = map_columns.projection_columns(db, "r", "umap", 2)
    assert cols.sha256.to_pylist() == sorted(shas) and cols.x.tolist() == [1.0, 2.0, 3.0, 5.0]
    c = map_columns.point_colours(db, "r", cols.sha256, "cluster:kmeans")
    assert [c.categories[k] for k in c.codes] == ["noise", "unknown", "cluster 1", "cluster 0"]
    lab = map_columns.point_colours(db, "r", cols.sha256, "label")
    assert [lab.categories[k] for k in lab.codes] == ["unknown", "a", "b", "a"]


def test_contact_sheet_puts_one_picture_per_cell_nearest_its_centre():
    view = View(0, 2, 0, 2)
    x = np.array([0.5, 0.45, 1.5, 1.9, 0.1], np.float32)
    y = np.array([0.5, 0.5, 1.5, 1.9, 1.9], np.float32)
    picked = map_view.contact_sheet(x, y, view, side=2)
    assert sorted(picked.tolist()) == [0, 2, 4]  # per cell the point nearest its centre; (1.9, 1.9) loses to (1.5, 1.5)


def test_a_large_sidebar_or_sql_selection_held_by_the_server_is_still_ringed():
    import flask

    from embedscope.dashboard import map_state
    from embedscope.dashboard.pages import map as map_page

    server = flask.Flask(__name__)
    state = map_state.install(server)
    shas = [f"{i:064x}" for i in range(INLINE_MAX + 5)]
    with server.test_request_context():
        held = state.selection_store(shas, source="filter")
        assert held["ref"] and held["sha256"] == [] and held["count"] == len(shas)  # the session store stays small
        assert map_page._highlight(held) == shas
        assert map_page._highlight(state.selection_store(shas, source="map")) == []  # a lasso is not ringed
        assert map_page._highlight({**held, "ref": "gone"}) == []  # no longer held: drawn without rings
