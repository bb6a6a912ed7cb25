"""The dashboard on a database made by ``ingest-vectors`` (ids like ``vec_000123``, no files,
no thumbnails) with two analyze runs of one day: every page and route answers without a
server error, images get a placeholder, and the two runs stay distinct everywhere. The same
database in a real browser is in test_dashboard_browser.py."""

from __future__ import annotations

import importlib
import json

import pytest

from tests.dashboard_db import IMPORTED_N, cached_imported_db

pytestmark = pytest.mark.slow  # one ingest-vectors and two analyze runs per session


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from embedscope.dashboard.app import create_app

    path = cached_imported_db(tmp_path_factory)
    app = create_app(str(path))
    client = app.server.test_client()
    client.get("/")  # Dash sets up its routes on the first request
    return {"path": path, "app": app, "client": client}


def _callback(client, outputs, inputs, state=()):
    """POST one Dash callback as the browser would (outputs: (id, prop); inputs/state: (id, prop, value))."""
    many = len(outputs) > 1
    payload = {
        "output": (".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..") if many else f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": [{"id": i, "property": p} for i, p in outputs] if many else {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
    }
    resp = client.post("/_dash-update-component", json=payload)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:800]
    body = json.loads(resp.get_data(as_text=True))
    assert "es-callback-error" not in json.dumps(body.get("sideUpdate") or {}), body["sideUpdate"]
    return body["response"]


def test_routes_serve_a_placeholder_for_imported_ids_and_refuse_the_rest(imported):
    c = imported["client"]
    for route in ("/thumb/vec_000001", "/image/vec_000001"):
        r = c.get(route)
        assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.headers["X-Embedscope-Source"] == "placeholder"
    for bad in ("/thumb/vec_999999", "/image/nope", "/thumb/..%2F..%2Fetc%2Fpasswd", "/overlay/vec_000001"):
        assert c.get(bad).status_code == 404, bad


@pytest.mark.parametrize("page,query", [("map", {}), ("clusters", {}), ("flags", {}), ("metrics", {}), ("embeddings", {}),
                                        ("embeddings", {"sha": "vec_000007"}), ("patches", {"sha": "vec_000007"}),
                                        ("sql", {}), ("search", {}), ("detail", {"sha": "vec_000007"})])
def test_every_page_lays_out_on_imported_ids(imported, page, query):
    from embedscope.dashboard import ids

    with imported["app"].server.test_request_context("/"):
        text = str(importlib.import_module(f"embedscope.dashboard.pages.{page}").layout(**query))
    assert ids.RUN_ERROR not in text and ids.DETAIL_ERROR not in text and "is not a" not in text
    if "sha" in query:
        assert query["sha"] in text


def test_clusters_flags_and_point_panel_callbacks_work_on_imported_ids(imported):
    from embedscope.dashboard import ids
    from embedscope.dashboard.sidebar import INPUTS, sidebar_context
    from embedscope.store.db import Database
    from embedscope.store.runs import latest_run

    db = Database(str(imported["path"]))
    run = latest_run(db)
    c = imported["client"]
    context = sidebar_context(db, run)
    out = _callback(c, [(ids.CLUSTERS_SIZES, "figure"), (ids.CLUSTERS_GALLERIES, "children"), (ids.CLUSTERS_PAGE, "data"),
                        (ids.CLUSTERS_PAGE_LABEL, "children"), ("clusters-filter-note", "children")],
                    [(ids.CLUSTERS_METHOD, "value", "kmeans"), (ids.CLUSTERS_PREV, "n_clicks", 0), (ids.CLUSTERS_NEXT, "n_clicks", 0),
                     *[(i, "value", None) for i in INPUTS], (ids.SIDEBAR_CONTEXT, "data", context)],
                    [(ids.CLUSTERS_RUN, "data", run.run_id), (ids.CLUSTERS_PAGE, "data", 0)])
    galleries = json.dumps(out[ids.CLUSTERS_GALLERIES]["children"])
    assert galleries.count("/thumb/vec_") >= 4 * 6  # k=4 clusters, 6 typical members each
    assert "/detail?sha=vec_" in galleries
    out = _callback(c, [(ids.FLAGS_GALLERY, "children"), (ids.FLAGS_COUNT, "children"), (ids.FLAGS_PAGE, "data"),
                        (ids.FLAGS_PAGE_LABEL, "children")],
                    [(ids.FLAGS_KIND, "value", "novel"), (ids.FLAGS_PREV, "n_clicks", 0), (ids.FLAGS_NEXT, "n_clicks", 0),
                     *[(i, "value", None) for i in INPUTS], (ids.SIDEBAR_CONTEXT, "data", context)],
                    [(ids.FLAGS_PAGE, "data", 0)])
    assert "novel:" in json.dumps(out[ids.FLAGS_COUNT])
    out = _callback(c, [(ids.EMB_VECTOR, "figure"), (ids.EMB_HIST, "figure"), (ids.EMB_TOPDIMS, "data")],
                    [(ids.EMB_SHA, "value", "vec_000003")], [(ids.EMB_MODEL, "data", {"model": "imported", "variant": "full"})])
    assert "vec_000003 (32 dims)" in json.dumps(out[ids.EMB_VECTOR]["figure"]["layout"]["title"])
    options = _callback(c, [(ids.EMB_SHA, "options")], [(ids.EMB_SHA, "search_value", "vec_00004")],
                        [(ids.EMB_SHA, "value", None), (ids.EMB_SHA, "options", [])])[ids.EMB_SHA]["options"]
    assert [o["value"] for o in options] == [f"vec_0000{i}" for i in range(40, 50)]


def test_two_runs_of_one_day_are_distinct_everywhere(imported):
    from embedscope.dashboard import figures, shaping
    from embedscope.dashboard.run_picker import run_options, with_run
    from embedscope.store import views
    from embedscope.store.db import Database
    from embedscope.store.runs import list_runs

    db = Database(str(imported["path"]))
    runs = list_runs(db)
    assert len(runs) == 2 and runs[0].run_id[:8] == runs[1].run_id[:8]  # the same day
    labels = [o["label"] for o in run_options(runs)]
    assert len(set(labels)) == 2 and all(r.run_id in label for r, label in zip(runs, labels))
    df = views.metrics_frame(db)
    cols, _ = shaping.metrics_pivot(df)
    assert len(set(cols)) == len(cols) == 3
    ccols, crows = shaping.metrics_compare(df, [r.run_id for r in runs])
    groups = {c["name"][0] for c in ccols[1:]}
    assert all(any(r.run_id in g for g in groups) for r in runs)
    assert {r["method"] for r in crows} == {"kmeans", "agglomerative"}
    assert with_run("?sha=vec_1&run=old", runs[0].run_id) == f"?sha=vec_1&run={runs[0].run_id}"
    # each page shows the run it was asked for, under its full title
    for run in runs:
        for page in ("clusters", "flags", "detail"):
            with imported["app"].server.test_request_context("/"):
                text = str(importlib.import_module(f"embedscope.dashboard.pages.{page}").layout(run=run.run_id, sha="vec_000001"))
            assert f"value='{run.run_id}'" in text, page
    assert IMPORTED_N == db.count("images")
    fig = figures.sweep_figure(df.assign(k=3), "silhouette", "t", "y")  # a legend entry per run, never merged
    assert len({t.name for t in fig.data}) == len(fig.data) >= 2
