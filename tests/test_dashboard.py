"""Dashboard without a browser: pure figure builders, the read-side views on a real ingested
database, the sha256-only image routes and basic auth through Flask's test client, and the
`dashboard` command's refusal to bind off loopback without --auth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO, run_cli
from tests.dashboard_db import GROUPS, N_IMAGES, PER_GROUP, cached_dashboard_db

from embedscope.dashboard import cluster_figures, figures, shaping
from embedscope.store.runs import run_or_latest
from embedscope.store.views import MapPoints


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    return cached_dashboard_db(tmp_path_factory)


@pytest.fixture(scope="module")
def db(db_path):
    from embedscope.store.db import Database

    return Database(str(db_path))


def _points(n=6, z=False):
    rng = np.random.default_rng(0)
    return MapPoints([f"{i:064x}" for i in range(n)], rng.random(n, dtype=np.float32), rng.random(n, dtype=np.float32),
                     rng.random(n, dtype=np.float32) if z else None, total=n)


# -- pure builders ----------------------------------------------------------------------------


def test_map_figure_categorical_one_trace_per_category_and_only_indices_sent():
    p = _points(6)
    p.color = ["cluster 1", "cluster 0", "cluster 1", None, "noise", "cluster 0"]
    fig = figures.map_figure(p, color_title="cluster")
    names = [t.name for t in fig.data]
    assert names == ["cluster 0 (2)", "cluster 1 (2)", "noise (1)", "unknown (1)"]
    assert all(t.type == "scattergl" for t in fig.data)
    assert sorted(i for t in fig.data for i in t.customdata) == list(range(6))
    # thumbnails and sha256 are fetched on demand: neither is embedded in the figure
    payload = fig.to_json()
    assert p.sha256[1] not in payload and "/thumb/" not in payload


def test_map_figure_continuous_colorbar_highlight_and_3d():
    p = _points(5, z=True)
    p.color, p.continuous = [0.1, None, 0.5, 0.9, 0.2], True
    fig = figures.map_figure(p, color_title="novelty", highlight=[p.sha256[2], p.sha256[4]])
    assert [t.type for t in fig.data] == ["scatter3d", "scatter3d"]
    assert fig.data[0].marker.showscale is True and np.isnan(fig.data[0].marker.color[1])
    assert list(fig.data[1].customdata) == [2, 4] and fig.data[1].name == "selection (2)"


def test_map_figure_folds_too_many_categories():
    p = _points(60)
    p.color = [f"c{i}" for i in range(60)]
    fig = figures.map_figure(p)
    assert len(fig.data) == figures.MAX_CATEGORIES
    assert fig.data[-1].name.startswith("other (")


def test_point_events_resolve_to_sha256():
    shas = ["a" * 64, "b" * 64, "c" * 64]
    event = {"points": [{"customdata": 2}, {"customdata": [0]}, {"customdata": 2}, {"x": 1}, {"customdata": 9}]}
    assert shaping.point_indices(event) == [2, 0, 9]
    assert shaping.shas_for(shaping.point_indices(event), shas) == ["c" * 64, "a" * 64]
    assert shaping.point_indices(None) == [] and shaping.point_indices({"points": []}) == []


def test_downsample_notice_says_when_sampled():
    p = _points(10)
    assert figures.downsample_notice(p, 100) == "Showing all 10 points."
    p.total = 1000
    assert "random sample of 10 of 1,000 points" in figures.downsample_notice(p, 10)


def test_rows_csv_and_top_dims_and_cosine():
    text = shaping.rows_csv([{"sha256": "s", "path": "/a b/ç,1.jpg", "label": None, "x": 1}])
    assert text == 'sha256,path,label\ns,"/a b/ç,1.jpg",\n'
    dims = shaping.top_dims(np.array([0.1, -2.0, 3.0, 0.0]), n=2)
    assert [(d["which"], d["dim"]) for d in dims] == [("top", 2), ("top", 0), ("bottom", 1), ("bottom", 3)]
    c = shaping.cosine_matrix(np.array([[1.0, 0], [0, 2.0], [3.0, 3.0]]))
    assert np.allclose(np.diag(c), 1) and abs(c[0, 1]) < 1e-9 and abs(c[0, 2] - 2**-0.5) < 1e-9
    ratios = shaping.explained_variance(np.random.default_rng(0).normal(size=(50, 8)) * np.arange(1, 9))
    assert abs(ratios.sum() - 1) < 1e-9 and ratios[0] >= ratios[-1]


def test_flag_card_rows_give_reasons_and_only_novelty_scores():
    recs = [{"sha256": "a", "path": "A", "label": "x", "novelty_score": 4.5, "novelty_reason": "r-a",
             "contamination_reason": None, "dup_group": None, "phash_group": 7, "zero_shot_tag": "dog"},
            {"sha256": "b", "path": "B", "label": "y", "novelty_score": float("nan"), "novelty_reason": None,
             "contamination_reason": "c-b", "dup_group": 3, "phash_group": None, "zero_shot_tag": None}]
    assert [r["reason"] for r in shaping.flag_card_rows("novel", recs)] == ["r-a", None]
    assert [r["reason"] for r in shaping.flag_card_rows("contaminated", recs)] == [None, "c-b"]
    dups = shaping.flag_card_rows("duplicate", recs)
    assert [r["reason"] for r in dups] == ["perceptual-hash group 7", "embedding near-duplicate group 3"]
    assert [r["group"] for r in dups] == [7, 3] and dups[1]["score"] is None
    assert "'dog'" in shaping.flag_card_rows("label_disagreement", recs)[0]["reason"]
    with pytest.raises(ValueError):
        shaping.flag_card_rows("bogus", recs)


def test_sidebar_where_clause_quotes_values_and_ignores_an_untouched_score_range():
    from embedscope.dashboard.sidebar import filter_where, score_marks, threshold_note

    assert filter_where(None) is None and filter_where({"label": [], "flag": []}) is None
    w = filter_where({"label": ["it's"], "cluster": ["2"], "flag": ["novel", "contaminated"], "folder": ["cats"],
                      "tag": ["exclude"], "score": [0.0, 5.0], "score_bounds": [-1.0, 5.0]})
    assert "label IN ('it''s')" in w and "cluster IN (2)" in w and "(is_novel) OR (is_contaminated)" in w
    assert "folder IN ('cats')" in w and "tag IN ('exclude')" in w and "novelty_score BETWEEN 0.0 AND 5.0" in w
    untouched = {"score": [-1.0, 5.0], "score_bounds": [-1.0, 5.0]}
    assert filter_where(untouched) is None
    assert filter_where({"score": [1.0, 2.0], "score_bounds": [-1.0, 5.0]}, use_score=False) is None
    with pytest.raises(ValueError):  # malformed input is refused, never pasted into SQL
        filter_where({"score": ["1; DROP", 2.0], "score_bounds": [0, 3]})
    marks = score_marks([-0.8, 25.0], 12.0)
    assert set(marks) == {-0.8, 25.0, 12.0} and "threshold" in marks[12.0]["label"]
    assert set(score_marks([-0.8, 25.0], 3.0)) == {3.0, 25.0}  # the minimum's label would overlap the threshold's
    assert set(score_marks([-1.1, 3.7], 3.6)) == {-1.1, 3.6}  # the maximum's label would overlap the threshold's
    assert threshold_note([-1.4, 2.3], 3.0) == "novelty threshold 3.00: no score reaches it"
    assert threshold_note([-1.0, 25.0], 3.0) is None


def test_paging_turns_and_clamps():
    assert shaping.page_label(1, 333, 60) == "images 61–120 of 333 (page 2 of 6)"
    assert shaping.page_label(0, 0, 60) == "nothing to show"
    assert shaping.turn_page(0, "next", "prev", "next", 333, 60) == 1
    assert shaping.turn_page(5, "next", "prev", "next", 333, 60) == 5  # the last page stays
    assert shaping.turn_page(0, "prev", "prev", "next", 333, 60) == 0
    assert shaping.turn_page(3, "a-filter", "prev", "next", 333, 60) == 0  # a new filter starts at page 1


def test_palette_has_no_near_identical_colours_and_novelty_is_clipped_at_the_threshold():
    def lab(h):  # sRGB → CIELAB (D65), where a distance of ~2 is just noticeable
        c = np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)]) / 255.0
        c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
        xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
        f = np.cbrt(np.maximum(xyz / [0.95047, 1.0, 1.08883], 0.008856))
        return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])

    cols = [lab(c) for c in figures.PALETTE]
    assert len(set(figures.PALETTE)) == len(figures.PALETTE) >= 40
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(cols) for b in cols[i + 1:])
    assert closest > 20, closest  # no two categories look alike (cluster 1 and 18 were both red-orange)
    assert min(np.linalg.norm(c - lab("#bbbbbb")) for c in cols) > 20  # nor like noise / unknown
    assert figures.MAX_CATEGORIES <= len(figures.PALETTE) + 1  # folded into "other" before a colour repeats
    pts = MapPoints(list("abcd"), np.zeros(4, np.float32), np.zeros(4, np.float32), None,
                    color=[-0.8, 0.5, 2.9, 25.0], continuous=True, total=4)
    marker = figures.map_figure(pts, color_title="novelty", clip_at=3.0).data[0].marker
    assert marker.cmax == 3.0 and marker.cmin == pytest.approx(-0.8) and marker.colorscale[-1][1] == "#d62728"
    assert figures.map_figure(pts, color_title="x").data[0].marker.cmax is None  # other scales follow the data
    three_d = figures.map_figure(MapPoints(list("ab"), np.zeros(2), np.zeros(2), np.zeros(2), color=["p", "q"], total=2))
    assert three_d.layout.dragmode == "orbit" and "lasso2d" in three_d.layout.modebar.remove


def test_image_keys_accept_imported_ids_and_refuse_garbage():
    from embedscope.store.views import folder_under_drop, is_image_key

    for good in ("a" * 64, "vec_000123", "img-7.jpg", "batch/42"):
        assert is_image_key(good), good
    for bad in (None, "", "x" * 513, "../../etc/passwd", "a/../b", "..", "line\nbreak", "nul\x00", 42):
        assert not is_image_key(bad), bad
    assert folder_under_drop("/d/drop/cats/a.jpg", "/d/drop") == "cats"
    assert folder_under_drop("/d/drop/cats/sub/a.jpg", "/d/drop/") == "cats"
    assert folder_under_drop("/d/drop/a.jpg", "/d/drop") == "."
    assert folder_under_drop("vec_1", None) is None and folder_under_drop("/elsewhere/a.jpg", "/d/drop") is None


def test_image_names_are_file_names_or_keys_that_stay_apart():
    sha = "ab" * 32
    assert shaping.image_name(sha, "/drop/cats/a.jpg") == "a.jpg"
    assert shaping.image_name("vec_000123", "vec_000123") == "vec_000123"  # an imported id, whole
    one, two = "0" * 63 + "1", "0" * 63 + "2"  # long sequential ids (their path is the id)
    assert shaping.image_name(one, one) != shaping.image_name(two, two) and len(shaping.image_name(one, one)) == 13
    assert shaping.image_name(sha, None) == "ababab…ababab"


def test_sql_cells_link_thumbnails_to_the_image_page():
    assert shaping.image_markdown("vec 1/x") == "[![vec%201%2Fx](/thumb/vec%201%2Fx)](/detail?sha=vec%201%2Fx)"
    assert shaping.image_markdown(None) == "" and shaping.image_markdown("../x") == ""


def test_metrics_pivot_and_sweeps():
    df = pd.DataFrame({"run_id": ["r1", "r1", "r2", "r1", "r1"], "name": ["silhouette", "ari", "silhouette", "inertia", "inertia"],
                       "method": ["kmeans"] * 5, "space": ["embedding"] * 5, "k": [None, None, None, 3, 2],
                       "value": [0.5, 0.7, 0.25, 10.0, 20.0], "model": ["m"] * 5, "variant": ["full", "full", "sam2_masked", "full", "full"]})
    cols, rows = shaping.metrics_pivot(df)
    assert cols == ["metric", "r1 m/full", "r2 m/sam2_masked"]
    ccols, crows = shaping.metrics_compare(df, ["r2", "r1"])  # the chosen order: r2's group first
    assert [c["name"] for c in ccols] == [["", "method"], ["r2 (m/sam2_masked) · embedding", "silhouette ↑"],
                                          ["r2 (m/sam2_masked) · embedding", "Davies-Bouldin ↓"],
                                          ["r1 (m/full) · embedding", "silhouette ↑"], ["r1 (m/full) · embedding", "Davies-Bouldin ↓"]]
    assert crows == [{"method": "kmeans", "g0:silhouette": 0.25, "g1:silhouette": 0.5}]
    sil = next(r for r in rows if r["metric"].startswith("silhouette"))
    assert sil["r1 m/full"] == 0.5 and sil["r2 m/sam2_masked"] == 0.25
    fig = figures.sweep_figure(df, "inertia", "elbow", "inertia")
    assert list(fig.data[0].x) == [2, 3] and list(fig.data[0].y) == [20.0, 10.0]
    assert not figures.sweep_figure(df, "silhouette_vs_k", "s", "s").data  # nothing stored → annotation only


# -- views on a real database -----------------------------------------------------------------


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_views_map_points_colours_and_downsampling(db):
    from embedscope.store import views

    run = run_or_latest(db, None)
    run_id = run.run_id
    assert run.primary_cluster == "kmeans"
    assert ("umap", 2) in views.projection_options(db, run_id) and ("pca", 3) in views.projection_options(db, run_id)
    full = views.map_coordinates(db, run_id, "umap", 2, max_points=10_000)
    assert full.total == full.shown == N_IMAGES and full.sha256 == sorted(full.sha256)
    sample = views.map_coordinates(db, run_id, "umap", 2, max_points=10)
    assert sample.shown == 10 and sample.total == N_IMAGES and sample.downsampled
    assert views.map_coordinates(db, run_id, "umap", 2, max_points=10).sha256 == sample.sha256  # fixed sample
    assert views.map_coordinates(db, run_id, "pca", 3, max_points=100).z is not None
    labels, cont = views.point_colors(db, run_id, full.sha256, views.COLOR_LABEL)
    assert not cont and sorted(set(labels)) == sorted(GROUPS) and labels.count("cats") == PER_GROUP
    clusters, _ = views.point_colors(db, run_id, full.sha256, "cluster:kmeans")
    assert len(set(clusters)) == 3
    novelty, cont = views.point_colors(db, run_id, full.sha256, views.COLOR_NOVELTY)
    flags = db.read("flags", ["sha256", "novelty_score"], where=f"run_id = '{run_id}'").to_pylist()
    by_sha = {r["sha256"]: r["novelty_score"] for r in flags}
    assert cont and novelty == pytest.approx([by_sha[s] for s in full.sha256])
    for option in (views.COLOR_CONTAMINATION, views.COLOR_DROP, views.COLOR_DATE):
        values, _ = views.point_colors(db, run_id, full.sha256, option)
        assert None not in values


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_views_image_detail_lists_every_source_path_and_neighbours(db, db_path):
    from embedscope.store import views

    dup = db.read("sources", ["sha256", "path"]).to_pandas().groupby("sha256").filter(lambda g: len(g) == 2)
    sha = dup["sha256"].iloc[0]
    d = views.image_detail(db, sha)
    run_id = run_or_latest(db, None).run_id
    assert sorted(s["path"] for s in d["sources"]) == sorted(dup["path"])
    assert {c["method"] for c in d["clusters"]} == {"kmeans", "agglomerative"} and d["flags"]["run_id"] == run_id
    assert d["embeddings"][0]["weights"] == "random"
    near = views.neighbours(db, sha, k=5)
    assert len(near) == 5 and sha not in [n["sha256"] for n in near]
    assert all(-1.0001 <= n["similarity"] <= 1.0001 for n in near)
    assert views.random_weight_sets(db) == ["dinov2_vits14/full"]
    from embedscope.errors import NotFoundError

    with pytest.raises(NotFoundError):
        views.image_detail(db, "../../etc/passwd")
    with pytest.raises(NotFoundError):
        views.image_detail(db, "0" * 64)


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_views_cluster_summaries_purity_and_typical_members(db):
    from embedscope.store import views

    run = run_or_latest(db, None)
    summaries = views.cluster_summaries(db, run, "kmeans", n_rep=4, n_atypical=3)
    assert sum(s.size for s in summaries) == N_IMAGES
    for s in summaries:
        assert len(s.representatives) == 4 and len(s.atypical) == 3
        assert not set(s.representatives) & set(s.atypical)
        assert s.majority_label in GROUPS and 0 < s.purity <= 1


# -- the app: routes, pages, auth ---------------------------------------------------------------


@pytest.fixture(scope="module")
def client(db_path):
    from embedscope.dashboard.app import create_app

    return create_app(str(db_path)).server.test_client()


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_image_routes_serve_only_by_sha256(client, db, db_path, tmp_path):
    img = db.read("images", ["sha256", "path", "thumbnail"]).to_pylist()[0]
    r = client.get(f"/thumb/{img['sha256']}")
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.data == img["thumbnail"]
    r = client.get(f"/image/{img['sha256']}")
    assert r.status_code == 200 and r.headers["X-Embedscope-Source"] == "file" and r.data[:2] == b"\xff\xd8"
    for bad in ("/thumb/" + "0" * 64, "/image/" + "0" * 64, "/image/abc", "/image/" + img["sha256"].upper(),
                "/overlay/" + img["sha256"]):  # unknown, malformed, not lowercase, no mask stored
        assert client.get(bad).status_code == 404, bad
    # a path in the URL never reaches the file system: it is not even routed to the image handlers
    for bad in ("/image/..%2F..%2Fetc%2Fpasswd", "/thumb/%2Fetc%2Fpasswd", "/image/" + str(db_path / "x.jpg")):
        r = client.get(bad)
        assert r.mimetype != "image/jpeg" and b"root:" not in r.data, bad


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_image_route_falls_back_to_thumbnail_when_file_changed(db_path, tmp_path):
    """A stored path whose bytes no longer hash to the sha256 is never served."""
    from embedscope.dashboard.app import create_app
    from embedscope.store.db import Database

    copy = tmp_path / "db"
    shutil.copytree(db_path, copy)
    row = Database(str(copy)).read("images", ["sha256", "path"], where="label = 'birds'").to_pylist()[0]
    original = open(row["path"], "rb").read()
    try:
        with open(row["path"], "wb") as fh:
            fh.write(b"not the same content")
        r = create_app(str(copy)).server.test_client().get(f"/image/{row['sha256']}")
        assert r.status_code == 200 and r.headers["X-Embedscope-Source"] == "thumbnail"
    finally:
        with open(row["path"], "wb") as fh:
            fh.write(original)


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_pages_render_server_side(client):
    for path in ("/", "/clusters", "/flags", "/metrics", "/embeddings", "/sql", "/detail"):
        assert client.get(path).status_code == 200, path
    layout = json.dumps(client.get("/_dash-layout").get_json())
    assert "RANDOM WEIGHTS" in layout and "dinov2_vits14/full" in layout


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_unknown_run_in_url_is_one_line_on_the_page(db_path, db):
    """?run=<unknown id> names the known runs on the page: no silent fallback, no 500."""
    import importlib

    from embedscope.dashboard.app import create_app
    from embedscope.dashboard.context import CONFIG_KEY
    from embedscope.dashboard.encoders import EncoderCache
    from embedscope.store.runs import latest_run

    app = create_app(str(db_path), query_flags={"image_size": 56})
    assert isinstance(app.server.config[CONFIG_KEY].encoders, EncoderCache)  # the one cache, made by the factory
    known = latest_run(db)
    sha = db.read("images", ["sha256"]).column("sha256")[0].as_py()
    with app.server.app_context():
        for page in ("map", "clusters", "flags", "embeddings", "detail"):
            layout = importlib.import_module(f"embedscope.dashboard.pages.{page}").layout
            text = json.dumps(layout(run="no-such-run", sha=sha).to_plotly_json(), default=str)
            assert "no run 'no-such-run'" in text and known.run_id in text, page
            assert "no-such-run" not in json.dumps(layout(run=known.run_id, sha=sha).to_plotly_json(), default=str), page
        clusters = json.dumps(importlib.import_module("embedscope.dashboard.pages.clusters").layout().to_plotly_json(),
                              default=str, ensure_ascii=False)
        assert known.title() in clusters  # the full, unique run id, not a prefix
    assert app.server.test_client().get("/?run=no-such-run").status_code == 200


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_basic_auth_required_when_configured(db_path):
    from embedscope.dashboard.app import create_app

    c = create_app(str(db_path), auth="ann:s3cret").server.test_client()
    assert c.get("/").status_code == 401
    assert c.get("/", headers={"Authorization": "Basic YW5uOndyb25n"}).status_code == 401  # ann:wrong
    assert c.get("/", headers={"Authorization": "Basic YW5uOnMzY3JldA=="}).status_code == 200  # ann:s3cret


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_sql_table_payload_summarises_binary_and_vectors(db):
    from embedscope.dashboard.shaping import table_payload
    from embedscope.store.queries import run_sql

    cols, data, shas = table_payload(run_sql(db, "SELECT i.sha256, i.thumbnail, e.vector FROM images i "
                                                 "JOIN embeddings e USING (sha256) WHERE i.label = 'dogs'"), 5_000)
    assert [c["id"] for c in cols] == [shaping.IMAGE_COLUMN, "sha256", "thumbnail", "vector"]
    assert cols[0]["presentation"] == "markdown" and f"/thumb/{shas[0]}" in data[0][shaping.IMAGE_COLUMN]
    assert len(data) == len(shas) == PER_GROUP
    assert data[0]["thumbnail"].endswith("bytes>") and data[0]["vector"] == "[384 values]"


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_flags_counts_equal_sql_for_every_flag_and_filter(db):
    """What the Flags page counts and lists is what DuckDB says over the flags table."""
    from embedscope.dashboard import sidebar
    from embedscope.dashboard.pages.flags import KINDS, flag_counts, flag_where
    from embedscope.store.filters import eq
    from embedscope.store.queries import run_sql

    run = run_or_latest(db, None)
    context = sidebar.sidebar_context(db, run)
    lo, hi = context["score_bounds"]
    mid = (lo + hi) / 2
    truth = {"novel": "f.is_novel", "contaminated": "f.is_contaminated",
             "duplicate": "f.dup_group IS NOT NULL OR f.phash_group IS NOT NULL", "label_disagreement": "FALSE"}
    cases = [({}, "TRUE"), ({"label": ["cats"]}, "i.label = 'cats'"),
             ({"folder": ["birds"], "score": [mid, hi], "score_bounds": [lo, hi]}, "i.path LIKE '%/birds/%'")]
    for values, where in cases:
        got = flag_counts(db, context, values)
        for kind, _ in KINDS:
            score = f" AND f.novelty_score BETWEEN {mid!r} AND {hi!r}" if kind == "novel" and "score" in values else ""
            sql = (f"SELECT count(*) AS n FROM flags f JOIN images i USING (sha256) WHERE {eq('f.run_id', run.run_id)} "
                   f"AND ({truth[kind]}) AND {where}{score}")
            assert got[kind] == run_sql(db, sql).column("n")[0].as_py(), (kind, values)
            listed = sidebar.matching(db, context, flag_where(kind, values), columns="sha256")
            assert listed.num_rows == got[kind]
    assert got["duplicate"] > 0 and flag_counts(db, context, {})["duplicate"] >= 4  # the test drop's copies


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_cli_refuses_non_loopback_without_auth(db_path):
    proc = run_cli("dashboard", "--db", str(db_path), "--host", "0.0.0.0", check=False)
    assert proc.returncode != 0
    assert "without auth" in proc.stderr and "--auth-file FILE" in proc.stderr
    proc = run_cli("dashboard", "--db", str(db_path), "--host", "0.0.0.0", "--auth", "ann:pw", check=False)
    assert proc.returncode != 0 and "/proc" in proc.stderr and "--auth-file" in proc.stderr


def test_cli_import_does_not_load_dash():
    code = "import embedscope.cli, sys; print(json.dumps([m for m in ('dash', 'flask', 'plotly') if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO)}, check=True).stdout
    assert json.loads(out) == []


def test_similarity_text_stays_informative_near_one():
    from embedscope.dashboard.components import similarity_text

    assert similarity_text(0.87341) == "similarity 0.8734"
    assert similarity_text(1.0 - 2.4e-7) == "distance 2.4e-07"


@pytest.mark.slow  # needs the ingested test database (one real ingest per session)
def test_pages_explain_what_is_missing_before_analysis(db_path, tmp_path):
    """An ingested but not yet analysed database: every page says what to run, none fails."""
    import importlib

    from embedscope.dashboard.app import create_app
    from embedscope.dashboard.pages import PAGES

    copy = tmp_path / "db"
    shutil.copytree(db_path, copy)
    for table in ("runs", "clusters", "projections", "flags", "metrics"):
        shutil.rmtree(copy / f"{table}.lance")
    app = create_app(str(copy))
    with app.server.app_context():
        text = {m: json.dumps(importlib.import_module(f"embedscope.dashboard.pages.{m}").layout().to_plotly_json(),
                              default=str) for m, *_ in PAGES}
    for page in ("map", "flags", "clusters", "metrics"):
        assert "embedscope analyze --db DIR" in text[page], page
    assert "384" not in text["map"]  # no stale data
    assert "vectors" in text["embeddings"] and "SELECT" in text["sql"] and "?sha=" in text["detail"]


def test_patch_clustering_builders():
    from embedscope.dashboard.patches import cluster_patches, example_patches

    rng = np.random.default_rng(0)
    tokens = np.concatenate([rng.normal(size=(8, 16)) + 20 * np.eye(16)[0], rng.normal(size=(8, 16)) - 20 * np.eye(16)[0]])
    labels = cluster_patches(tokens, 2)
    assert len(set(labels[:8])) == 1 and len(set(labels[8:])) == 1 and labels[0] != labels[8]
    grid = labels.reshape(4, 4)
    crop = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)  # 4x4 patches of 2 px
    ex = example_patches(crop, grid, 2, per_cluster=3)
    assert sorted(ex) == [0, 1] and all(len(v) == 3 and v[0].shape == (2, 2, 3) for v in ex.values())
    overlay = cluster_figures.patch_overlay(crop, grid, 2, alpha=1.0)
    colour = cluster_figures._rgb(figures.PALETTE[int(grid[0, 0])])
    assert tuple(overlay[0, 0]) == colour and tuple(overlay[1, 1]) == colour


# -- dendrogram, k-means animation, search by an uploaded image ------------------------------------


def test_dendrogram_figure_draws_every_merge_and_colours_leaves_by_cluster():
    from scipy.cluster.hierarchy import fcluster, linkage

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=(9, 4)) for c in (0, 3, 6)])
    Z = linkage(X, "ward")
    labels = fcluster(Z, 3, "maxclust") - 1
    fig = cluster_figures.dendrogram_figure(Z, labels, names=[f"img{i}" for i in range(len(X))])
    links = [t for t in fig.data if t.mode == "lines"]
    leaves = [t for t in fig.data if t.mode == "markers"]
    assert sum(list(t.x).count(None) for t in links) == len(X) - 1  # one ⊓ per merge
    assert sum(len(t.x) for t in leaves) == len(X) and len(leaves) == 3
    assert sorted(x for t in leaves for x in t.x) == [5.0 + 10 * i for i in range(len(X))]  # scipy's leaf slots
    for t in leaves:  # a leaf trace holds exactly the images of its stored cluster
        c = int(t.name.split()[1])
        assert sorted(h.split(" · ")[0] for h in t.hovertext) == sorted(f"img{i}" for i in np.flatnonzero(labels == c))
        assert t.marker.color == figures.PALETTE[c]
    # the two top merges join clusters (grey); the merges inside a cluster take its colour
    grey = [t for t in links if t.line.color == "#888888"]
    assert len(grey) == 1 and list(grey[0].x).count(None) == 2
    assert "of 27 images" in fig.layout.title.text
    assert "a sample of 27 of 5,000 images" in cluster_figures.dendrogram_figure(Z, labels, total=5000).layout.title.text
    with pytest.raises(ValueError):
        cluster_figures.dendrogram_figure(Z[:-1], labels)


def test_iterations_figure_has_one_frame_per_step_with_play_and_slider():
    from embedscope.analysis.iterations import cluster_iterations

    rng = np.random.default_rng(2)
    xy = np.concatenate([rng.normal(c, 0.5, size=(40, 2)) for c in ((0, 0), (3, 0), (0, 3))])
    it = cluster_iterations(xy, 3, seed=1, init="random")
    fig = cluster_figures.iterations_figure(xy, it, title="k-means")
    assert len(fig.frames) == it.n_frames > 1
    assert all(len(f.data) == len(fig.data) == 2 + 3 for f in fig.frames)  # points, centres, one trail per centre
    last = fig.frames[-1]
    np.testing.assert_allclose(np.column_stack([last.data[1].x, last.data[1].y]), it.centers[-1])
    assert list(last.data[0].marker.color) == [figures.PALETTE[c] for c in it.labels[-1]]
    assert len(last.data[2].x) == it.n_frames  # the trail of centre 0 through every step
    assert [s.label for s in fig.layout.sliders[0].steps] == [f.name for f in fig.frames]
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["▶ play", "❚❚ pause"]
    assert f"iteration {it.n_frames - 1}/{it.n_frames - 1}" in last.layout.title.text


def test_upload_bytes_refuses_what_is_not_an_upload():
    import base64

    from embedscope.dashboard.search import upload_bytes
    from embedscope.errors import DecodeError

    assert upload_bytes("data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8abc").decode()) == b"\xff\xd8abc"
    for bad in (None, "", "no comma", "data:image/png,raw", "data:image/png;base64,***", "data:image/png;base64,"):
        with pytest.raises(DecodeError):
            upload_bytes(bad)
    with pytest.raises(DecodeError, match="larger than"):
        upload_bytes("data:image/png;base64," + "A" * 4000, max_bytes=1000)


@pytest.mark.slow  # loads the encoder twice (random weights)
def test_search_upload_finds_the_stored_image_and_refuses_corrupt_files(db, db_path):
    """A real JPEG of a stored image comes back as its own nearest neighbour at similarity ~1;
    a truncated file or a text file is one error line; settings that differ from the ingest
    are caught by the embedder's self-check."""
    import base64

    from embedscope.dashboard.encoders import EncoderCache
    from embedscope.dashboard.search import search_upload
    from embedscope.store.runs import latest_run

    def upload(data: bytes) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(data).decode()

    row = db.read("images", ["sha256", "path"], where="label = 'dogs'").sort_by("path").to_pylist()[3]
    data = open(row["path"], "rb").read()
    cache = EncoderCache({"image_size": 56})  # the test ingest's --image-size
    run = latest_run(db)
    res = search_upload(db, cache, upload(data), "dog.jpg", k=5, run=run)
    assert res.error is None and len(res.neighbours) == 5
    top = res.neighbours[0]
    assert top["sha256"] == row["sha256"] and top["similarity"] > 0.999 and top["label"] == "dogs"
    assert res.neighbours[1]["similarity"] < top["similarity"]
    assert res.weights == "random" and res.image_size == 56 and res.stored_sha == row["sha256"]
    assert res.check_similarity > 0.999 and not res.check_failed
    assert res.query_thumb.startswith("data:image/jpeg;base64,")  # what was searched, shown beside the results
    assert cache.get(db, res.model, res.variant, "random") is cache.get(db, res.model, res.variant, "random")  # loaded once

    bad = search_upload(db, cache, upload(data[: len(data) // 2]), "half.jpg", run=run)
    assert bad.neighbours == [] and bad.error.startswith("half.jpg: ") and "truncated" in bad.error
    bad = search_upload(db, cache, upload(b"just some text"), "notes.txt", run=run)
    assert bad.neighbours == [] and "not a recognised image" in bad.error

    wrong = search_upload(db, EncoderCache({"image_size": 224}), upload(data), "dog.jpg", k=3, run=run)
    assert wrong.error is None and wrong.check_failed and wrong.check_similarity < 0.9


def test_thumbnail_cards_as_html_escape_every_value_and_keep_the_card_shape():
    from embedscope.dashboard.components import thumb_cards_html

    sha = "ab" * 32
    block = thumb_cards_html([(sha, f"/map-thumb/{sha}", ['<b>"cats"</b> {x}'], "/d/<script>x.jpg")], gallery_id="g")
    markup = block.children
    assert block.dangerously_allow_html and markup.startswith('<div id="g">')
    assert 'className="es-thumb"' in markup and f'data-sha256="{sha}"' in markup and f'src="/map-thumb/{sha}"' in markup
    assert "<script>" not in markup and "&lt;script&gt;x.jpg" in markup
    assert "&lt;b&gt;&quot;cats&quot;&lt;/b&gt; &#123;x&#125;" in markup  # JSX's braces too: no expression is evaluated
    assert f'href="/detail?sha={sha}"' in markup and "max-width:124px" in markup and markup.count("/>") == 1
    assert thumb_cards_html([], gallery_id="g", empty="nothing selected").children[0].children == "nothing selected"
