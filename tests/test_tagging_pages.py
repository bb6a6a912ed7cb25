"""Bulk tagging from the Flags page (every image the flag kind and sidebar filter match) and the
SQL page (the result's sha256), through the real Dash app's callback endpoint on a copy of the
shared dashboard database (real LanceDB; the tags checked with DuckDB over ``image_tags``)."""

from __future__ import annotations

import json
import shutil

import pytest

from embedscope.store.db import Database
from embedscope.store.filters import eq
from embedscope.store.sql import run_sql
from tests.dashboard_db import cached_dashboard_db

SIDEBAR_EMPTY = {"label": None, "cluster": None, "tag": None, "flag": None, "score": None, "folder": None,
                 "zero_shot_tag": None}


@pytest.fixture(scope="module")
def db_copy(tmp_path_factory):
    """A private copy of the shared dashboard database (these tests write tags)."""
    target = tmp_path_factory.mktemp("tagging") / "db"
    shutil.copytree(cached_dashboard_db(tmp_path_factory), target)
    return target


def _client(db_path, **kwargs):
    from embedscope.dashboard.app import create_app

    client = create_app(str(db_path), warm_map=False, **kwargs).server.test_client()
    client.get("/")  # Dash sets up its routes on the first request
    return client


@pytest.fixture(scope="module")
def client(db_copy):
    return _client(db_copy)


def _call(client, outputs, inputs, state, changed):
    """POST one callback to /_dash-update-component; the response's ``response`` dict."""
    payload = {
        "output": (".." + "...".join(f"{i}.{p}" for i, p in outputs) + "..") if len(outputs) > 1
        else f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1
        else {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        "changedPropIds": [changed],
    }
    resp = client.post("/_dash-update-component", json=payload)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return json.loads(resp.get_data(as_text=True))["response"]


def _sidebar(values: dict, context: dict) -> list[tuple]:
    from embedscope.dashboard import ids, sidebar

    names = ("label", "cluster", "tag", "flag", "score", "folder", "zero_shot_tag")
    return [(i, "value", values[n]) for i, n in zip(sidebar.INPUTS, names)] + [(ids.SIDEBAR_CONTEXT, "data", context)]


def _context(db_path) -> dict:
    from embedscope.dashboard import sidebar
    from embedscope.store.runs import latest_run

    db = Database(str(db_path))
    return sidebar.sidebar_context(db, latest_run(db))


def _tagged(db_path, tag: str) -> set[str]:
    return set(run_sql(Database(str(db_path)), f"SELECT sha256 FROM image_tags WHERE {eq('tag', tag)}")
               .column("sha256").to_pylist())


def _flags_tag(client, context, kind, values, tag, *, remove=False):
    from embedscope.dashboard import ids
    from embedscope.dashboard.pages.flags import TAGS

    button = TAGS.remove if remove else TAGS.add
    out = _call(client, [(TAGS.status, "children")],
                [(TAGS.add, "n_clicks", 0 if remove else 1), (TAGS.remove, "n_clicks", 1 if remove else 0)],
                [(ids.FLAGS_KIND, "value", kind), *_sidebar(values, context), (TAGS.name, "value", tag),
                 (TAGS.note, "value", "from the flags page")], f"{button}.n_clicks")
    return out[TAGS.status]["children"]


def test_flags_page_tags_exactly_the_images_its_kind_and_filter_match(client, db_copy):
    context = _context(db_copy)
    values = dict(SIDEBAR_EMPTY, label=["dogs", "birds"])
    expected = set(run_sql(Database(str(db_copy)), f"""
        SELECT f.sha256 FROM flags f JOIN images i USING (sha256)
        WHERE {eq('f.run_id', context['run_id'])} AND (f.dup_group IS NOT NULL OR f.phash_group IS NOT NULL)
          AND i.label IN ('dogs', 'birds')""").column("sha256").to_pylist())
    assert expected  # the drop has near-duplicates in dogs/ and birds/

    status = _flags_tag(client, context, "duplicate", values, "flagged-dup")
    assert status == f"tagged {len(expected)} image(s) 'flagged-dup'"
    assert _tagged(db_copy, "flagged-dup") == expected
    sources = run_sql(Database(str(db_copy)), "SELECT DISTINCT source, note FROM tags WHERE tag = 'flagged-dup'").to_pylist()
    assert sources == [{"source": "dashboard", "note": "from the flags page"}]

    status = _flags_tag(client, context, "duplicate", values, "flagged-dup", remove=True)
    assert status.startswith(f"untagged {len(expected)} image(s)")
    assert _tagged(db_copy, "flagged-dup") == set()


def test_flags_tag_button_names_how_many_the_filter_matches(client, db_copy):
    from embedscope.dashboard import ids
    from embedscope.dashboard.pages.flags import TAGS

    context = _context(db_copy)
    n = run_sql(Database(str(db_copy)), f"SELECT count(*) AS n FROM flags WHERE {eq('run_id', context['run_id'])} "
                "AND is_novel").column("n")[0].as_py()
    out = _call(client, [(TAGS.add, "children")], [(ids.FLAGS_KIND, "value", "novel"), *_sidebar(SIDEBAR_EMPTY, context)],
                [], f"{ids.FLAGS_KIND}.value")
    assert out[TAGS.add]["children"] == f"Tag all {n:,} shown by this filter"


def _sql_run(client, sql):
    from embedscope.dashboard import ids

    out = _call(client, [(ids.SQL_TABLE, "columns"), (ids.SQL_TABLE, "data"), (ids.SQL_STATUS, "children"),
                         (ids.SQL_SHAS, "data"), (ids.SQL_SHOW_ON_MAP, "disabled")],
                [(ids.SQL_RUN, "n_clicks", 1)], [(ids.SQL_INPUT, "value", sql)], f"{ids.SQL_RUN}.n_clicks")
    return out[ids.SQL_SHAS]["data"]


def _sql_tag(client, shas, tag):
    from embedscope.dashboard import ids
    from embedscope.dashboard.pages.sql import TAGS

    out = _call(client, [(TAGS.status, "children")], [(TAGS.add, "n_clicks", 1), (TAGS.remove, "n_clicks", 0)],
                [(ids.SQL_SHAS, "data", shas), (TAGS.name, "value", tag), (TAGS.note, "value", "")],
                f"{TAGS.add}.n_clicks")
    return out[TAGS.status]["children"]


def test_sql_page_tags_exactly_the_results_images_with_source_sql_result(client, db_copy):
    from embedscope.dashboard.pages.sql import TAGS

    sql = "SELECT sha256, path FROM images WHERE label = 'cats' ORDER BY path LIMIT 3"
    shas = _sql_run(client, sql)
    expected = run_sql(Database(str(db_copy)), sql).column("sha256").to_pylist()
    assert shas == expected and len(expected) == 3

    label = _call(client, [(TAGS.add, "children"), ("sql-tag-panel", "style")], [("sql-shas", "data", shas)], [],
                  "sql-shas.data")
    assert label[TAGS.add]["children"] == "Tag these 3 images"

    assert _sql_tag(client, shas, "from-sql") == "tagged 3 image(s) 'from-sql'"
    assert _tagged(db_copy, "from-sql") == set(expected)
    rows = run_sql(Database(str(db_copy)), "SELECT DISTINCT source FROM tags WHERE tag = 'from-sql'").to_pylist()
    assert rows == [{"source": "sql-result"}]


def test_tagging_on_a_read_only_dashboard_is_refused_in_one_line(db_copy):
    client = _client(db_copy, host="0.0.0.0")  # off-loopback without auth: read-only
    shas = _sql_run(client, "SELECT sha256 FROM images LIMIT 2")
    status = _sql_tag(client, shas, "refused")
    assert "read-only" in status and "\n" not in status
    assert _tagged(db_copy, "refused") == set()


def test_clusters_galleries_show_only_the_images_the_sidebar_matches(client, db_copy):
    from embedscope.dashboard import ids
    from embedscope.dashboard.pages.clusters import FILTER_NOTE

    context = _context(db_copy)
    outputs = [(ids.CLUSTERS_SIZES, "figure"), (ids.CLUSTERS_GALLERIES, "children"), (ids.CLUSTERS_PAGE, "data"),
               (ids.CLUSTERS_PAGE_LABEL, "children"), (FILTER_NOTE, "children")]

    def galleries(values):
        out = _call(client, outputs, [(ids.CLUSTERS_METHOD, "value", "kmeans"), (ids.CLUSTERS_PREV, "n_clicks", 0),
                                      (ids.CLUSTERS_NEXT, "n_clicks", 0), *_sidebar(values, context)],
                    [(ids.CLUSTERS_RUN, "data", context["run_id"]), (ids.CLUSTERS_PAGE, "data", 0)],
                    f"{ids.CLUSTERS_METHOD}.value")
        text = json.dumps(out[ids.CLUSTERS_GALLERIES]["children"])
        return {s for s in shas if f"/thumb/{s}" in text}, out[FILTER_NOTE]["children"]

    db = Database(str(db_copy))
    images = run_sql(db, "SELECT sha256, label FROM images").to_pylist()
    shas = [r["sha256"] for r in images]
    cats = {r["sha256"] for r in images if r["label"] == "cats"}
    everything, note = galleries(SIDEBAR_EMPTY)
    assert note is None and everything - cats  # unfiltered: other labels shown too
    only_cats, note = galleries(dict(SIDEBAR_EMPTY, label=["cats"]))
    assert only_cats and only_cats <= cats
    assert note["props"]["data-images"] == str(len(cats))
