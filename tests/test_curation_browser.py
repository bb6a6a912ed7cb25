"""Browser tier for curation: lasso points on the real map in real Chromium, tag them
``exclude`` with the dashboard's Tag selection button, then the real `embedscope export` leaves
exactly those images out and lists each with its reason."""

from __future__ import annotations

import csv
import shutil

import pytest

from tests.conftest import run_cli
from tests.dashboard_db import N_IMAGES, cached_dashboard_db, running_dashboard
from tests.test_dashboard_browser import (CHROMEDRIVER, CHROMIUM, _choose, _gallery_cards, _js, _open_map, _pointer, _type,
                                         _wait)
from tests.test_dashboard_browser import browser, shots  # noqa: F401  (fixtures; `browser` uses this module's `server`)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    db = tmp_path_factory.mktemp("curation") / "db"  # a private copy: this test writes tags
    shutil.copytree(cached_dashboard_db(tmp_path_factory), db)
    with running_dashboard(db, tmp_path_factory.mktemp("server") / "server.log", start_timeout=90) as url:
        yield {"url": url, "db": db}


def _lasso(driver, points: list[dict]) -> list[dict]:
    """Lasso (a real pointer drag) around the first cluster's points; the points inside."""
    cluster = [p for p in points if p["trace"] == 0]
    x0, x1 = min(p["px"] for p in cluster) - 10, max(p["px"] for p in cluster) + 10
    y0, y1 = min(p["py"] for p in cluster) - 10, max(p["py"] for p in cluster) + 10
    inside = [p for p in points if x0 < p["px"] < x1 and y0 < p["py"] < y1]
    path = []
    for (ax, ay), (bx, by) in zip([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]):
        path += [(ax + (bx - ax) * t / 8, ay + (by - ay) * t / 8) for t in range(8)]
    _pointer(driver, path + [(x0, y0 + 1)], down_up=True)
    return inside


def test_lasso_tag_exclude_then_export_leaves_them_out(browser, server, shots, tmp_path):  # noqa: F811
    points = _open_map(browser, server)
    inside = _lasso(browser, points)
    assert 0 < len(inside) < N_IMAGES
    _wait(browser, lambda d: d.find_element("id", "map-gallery-title").text.startswith(f"Selection: {len(inside)} images"),
          f"a gallery of {len(inside)}")
    selected = set(_gallery_cards(browser, len(inside)))
    assert len(selected) == len(inside)
    _type(browser.find_element("id", "tag-name"), "exclude")
    _type(browser.find_element("id", "tag-note"), "lasso in the browser")
    browser.find_element("id", "tag-add").click()
    _wait(browser, lambda d: d.find_element("id", "tag-status").text == f"tagged {len(inside)} image(s) 'exclude'",
          "the tag status line")
    shots(browser, "curation-01-map-tagged-selection")

    out = tmp_path / "export"
    run_cli("export", "--db", str(server["db"]), "--out", str(out))
    with (out / "excluded.csv").open(newline="") as fh:
        excluded = list(csv.DictReader(fh))
    with (out / "kept.csv").open(newline="") as fh:
        kept = {r["sha256"] for r in csv.DictReader(fh)}
    assert {r["sha256"] for r in excluded} == selected
    assert all((r["reason"], r["detail"]) == ("tag:exclude", "lasso in the browser") for r in excluded)
    assert not kept & selected and len(kept) + len(selected) == N_IMAGES


def test_map_colours_by_a_tag(browser, server, shots):  # noqa: F811
    """After the tagging above (module order), the map can be coloured by the tag."""
    _open_map(browser, server)
    _choose(browser, "map-color", "tag exclude")
    names = _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                            "const t=g && g._fullData; const n=t && t.map(x => x.name);"
                                            "return n && n.some(x => x.startsWith('exclude')) ? n : null"),
                  "an exclude-coloured map")
    assert {n.split(" (")[0] for n in names} >= {"exclude", "untagged"}
    shots(browser, "curation-02-map-coloured-by-tag")
