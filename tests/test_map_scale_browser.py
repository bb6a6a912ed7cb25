"""Browser tier at scale: a real `embedscope dashboard` on a generated 1,000,000-point database
(tests/map_scale_db.py: imported vectors + a stored projection, built once per session, ~45 s
on 2 busy cores), driven by real headless Chromium.

Zooms go through ``Plotly.relayout`` (the event a wheel or box zoom emits); hovers and the
lasso are real pointer events. Screenshots go to /tmp/shots/map/ (and the test's tmp dir).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from embedscope.dashboard.plotly_bundle import read_bundle
from tests.map_scale_db import CLUSTERS, blob_centres, cached_scale_db, ids, layout, wait_until_warm
from tests.test_dashboard_browser import (CARDS_JS, CHROMEDRIVER, CHROMIUM, POINTS_JS, _gallery_cards, _js, _pointer,  # noqa: F401
                                         _wait, browser)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

N = 1_000_000
SHOTS = Path("/tmp/shots/map")
GRAPH = "document.querySelector('#map-graph .js-plotly-plot')"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    from tests.dashboard_db import running_dashboard

    db, seconds = cached_scale_db(tmp_path_factory, N)
    print(f"1M-point database built in {seconds:.0f}s" if seconds else "1M-point database reused")
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_dashboard(db, log, start_timeout=120) as url:
        wait_until_warm(log)
        yield {"url": url, "db": db}


@pytest.fixture(scope="module")
def points():
    x, y, blob = layout(N)
    return {"x": x, "y": y, "blob": blob}


def _shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def _state(driver) -> dict:
    """What the map shows: its mode (density image or points), images and points drawn."""
    return _js(driver, f"""const g = {GRAPH}; if (!g || !g._fullLayout) return null;
        const imgs = (g.layout.images || []).map(i => i.name || '');
        const pts = g._fullData.filter(t => t.type === 'scattergl' && t.x).reduce((a, t) => a + t.x.filter(v => v !== null).length, 0);
        return {{density: imgs.includes('density'), thumbs: imgs.filter(n => n.startsWith('thumb:')).length,
                 reps: imgs.filter(n => n.startsWith('rep:')).length, points: pts,
                 notice: document.getElementById('map-notice').innerText,
                 x: g._fullLayout.xaxis.range, y: g._fullLayout.yaxis.range}};""")


def _open(driver, server) -> dict:
    driver.get(server["url"] + "/")
    return _wait(driver, lambda d: (s := _state(d)) and s["density"] and "Density" in s["notice"] and s, "the density map")


def _zoom(driver, cx: float, cy: float, half: float, want: str) -> dict:
    _js(driver, f"Plotly.relayout({GRAPH}, {{'xaxis.range': [{cx - half}, {cx + half}], "
                f"'yaxis.range': [{cy - half}, {cy + half}]}})")
    return _wait(driver, lambda d: (s := _state(d)) and want in s["notice"] and s, f"the map zoomed to ±{half}")


def _plot_area(driver) -> list[float]:
    """[left, right, top, bottom] of the plot area in viewport pixels."""
    return _js(driver, f"""const g={GRAPH}, xa=g._fullLayout.xaxis, ya=g._fullLayout.yaxis, r=g.getBoundingClientRect();
        return [r.left + xa._offset, r.left + xa._offset + xa._length, r.top + ya._offset, r.top + ya._offset + ya._length]""")


def test_density_layer_appears_for_a_million_points(browser, server):
    state = _open(browser, server)
    assert state["density"] and state["points"] == 0
    assert "1,000,000 points in view" in state["notice"]
    legend = _js(browser, f"return {GRAPH}._fullData.filter(t => t.showlegend).map(t => t.name)")
    assert len(legend) == CLUSTERS and sum(int(n.split("(")[1].rstrip(")").replace(",", "")) for n in legend) == N
    ours, other = ("_embedscope/plotly-", "plotly.min.js") if read_bundle() else ("plotly.min.js", "_embedscope/plotly-")
    loads = _js(browser, f"const r = performance.getEntriesByType('resource').map(e => e.name);"
                         f"return [document.querySelectorAll('script[src*=\"{ours}\"]').length,"
                         f" r.filter(n => n.includes('{ours}')).length, r.filter(n => n.includes('{other}')).length]")
    assert loads == [1, 1, 0]  # one plotly.js (the trimmed one when built), started with the page's HTML, fetched once
    time.sleep(1)
    _shot(browser, "01-density-1M")


def test_zooming_into_a_cluster_switches_to_points(browser, server, points):
    _open(browser, server)
    cx, cy = blob_centres()[0]
    state = _zoom(browser, float(cx), float(cy), 1.0, "Showing the")  # ~45k points: below the 50k default
    inside = ((np.abs(points["x"] - cx) <= 1.0) & (np.abs(points["y"] - cy) <= 1.0)).sum()
    assert not state["density"] and state["points"] >= inside
    assert f"Showing the {inside:,} points in view" in state["notice"]
    _shot(browser, "02-zoomed-points")


def test_close_zoom_draws_thumbnails_and_hover_names_the_point(browser, server, points):
    _open(browser, server)
    cx, cy = (float(v) for v in blob_centres()[3])
    state = _zoom(browser, cx, cy, 0.12, "Showing the")
    assert 20 <= state["thumbs"] <= 49
    _wait(browser, lambda d: _js(d, "return [...document.querySelectorAll('#map-graph image')].length") >= state["thumbs"],
          "thumbnails on the map")
    time.sleep(1.5)
    _shot(browser, "03-close-zoom-thumbnails")
    drawn = [p for p in _js(browser, POINTS_JS) if p["index"] is not None]
    x0, x1, y0, y1 = _plot_area(browser)
    view = [p for p in drawn if x0 + 30 < p["px"] < x1 - 30 and y0 + 30 < p["py"] < y1 - 30]
    target = max(view, key=lambda p: min(((p["px"] - q["px"]) ** 2 + (p["py"] - q["py"]) ** 2 for q in drawn if q is not p)))
    _pointer(browser, [(target["px"] + 1, target["py"] + 1), (target["px"], target["py"])])
    tip = _wait(browser, lambda d: _js(d, "const t=document.getElementById('map-tooltip-content');"
                                          "return t && t.offsetParent !== null ? t : null"), "the hover tooltip")
    assert tip.get_attribute("data-sha256") == ids(target["index"] + 1)[target["index"]]
    src = _js(browser, "return document.querySelector('#map-tooltip-content img').getAttribute('src')")
    assert src == f"/map-thumb/{ids(target['index'] + 1)[target['index']]}"
    _wait(browser, lambda d: _js(d, "const i=document.querySelector('#map-tooltip-content img');"
                                    "return i && i.complete && i.naturalWidth > 0"), "the tooltip picture")


def test_hover_on_the_density_image_answers_with_the_nearest_point(browser, server, points):
    _open(browser, server)
    cx, cy = (float(v) for v in blob_centres()[6])
    px = _js(browser, f"""const g={GRAPH}, xa=g._fullLayout.xaxis, ya=g._fullLayout.yaxis, r=g.getBoundingClientRect();
                         return [r.left + xa._offset + xa.l2p({cx}), r.top + ya._offset + ya.l2p({cy})]""")
    _pointer(browser, [(px[0] + 3, px[1] + 3), (px[0], px[1])])
    tip = _wait(browser, lambda d: _js(d, "const t=document.getElementById('map-tooltip-content');"
                                          "return t && t.offsetParent !== null ? t : null"), "the density hover")
    hx, hy = _js(browser, f"const h={GRAPH}._hoverdata[0]; return [h.x, h.y]")
    nearest = int(np.argmin((points["x"] - hx) ** 2 + (points["y"] - hy) ** 2))
    assert tip.get_attribute("data-sha256") == ids(nearest + 1)[nearest]
    _shot(browser, "04-density-hover")


def _lasso(driver, corners_px: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """A real lasso drag along ``corners_px``; returns the polygon Plotly reported (data units)."""
    _js(driver, f"window.__sel = null; {GRAPH}.on('plotly_selected', e => {{ window.__sel = e; }})")
    path = []
    for (ax, ay), (bx, by) in zip(corners_px, corners_px[1:] + corners_px[:1]):
        path += [(ax + (bx - ax) * t / 10, ay + (by - ay) * t / 10) for t in range(10)]
    _pointer(driver, path + [corners_px[0]], down_up=True)
    sel = _wait(driver, lambda d: _js(d, "return window.__sel && window.__sel.lassoPoints"), "the lasso event")
    return sel["x"], sel["y"]


def _expected(points, xs, ys) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    return np.flatnonzero(MplPath(np.column_stack([xs, ys])).contains_points(np.column_stack([points["x"], points["y"]])))


def test_server_side_lasso_returns_exactly_the_points_inside(browser, server, points):
    _open(browser, server)
    cx, cy = (float(v) for v in blob_centres()[9])
    px = _js(browser, f"""const g={GRAPH}, xa=g._fullLayout.xaxis, ya=g._fullLayout.yaxis, r=g.getBoundingClientRect();
                         return [r.left + xa._offset + xa.l2p({cx}), r.top + ya._offset + ya.l2p({cy})]""")
    tri = [(px[0] - 6, px[1] - 2), (px[0] + 7, px[1] - 5), (px[0] + 2, px[1] + 8)]  # a small triangle: an inline selection
    xs, ys = _lasso(browser, tri)
    want = _expected(points, xs, ys)
    assert 0 < len(want) <= 10_000
    _wait(browser, lambda d: d.find_element("id", "map-gallery-title").text.startswith(f"Selection: {len(want):,} images"),
          f"a selection of {len(want)}")
    stored = _js(browser, "return JSON.parse(window.sessionStorage.getItem('es-selection'))")
    assert sorted(stored["sha256"]) == [f"{i:064x}" for i in want]
    _shot(browser, "05-lasso-small")


def test_large_lasso_counts_at_once_and_pages_the_gallery(browser, server, points):
    _open(browser, server)
    box = _js(browser, f"const r={GRAPH}.querySelector('.nsewdrag').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]")
    left, top, w, h = box
    quad = [(left + 0.5 * w, top + 0.1 * h), (left + 0.98 * w, top + 0.1 * h), (left + 0.98 * w, top + 0.6 * h),
            (left + 0.5 * w, top + 0.6 * h)]
    xs, ys = _lasso(browser, quad)
    want = _expected(points, xs, ys)
    assert len(want) > 10_000
    _wait(browser, lambda d: d.find_element("id", "map-gallery-title").text.startswith(f"Selection: {len(want):,} images"),
          f"a selection of {len(want):,}")
    first = _gallery_cards(browser, 60)
    browser.find_element("id", "map-gallery-next").click()
    _wait(browser, lambda d: "page 2 of" in d.find_element("id", "map-gallery-title").text, "the second page")
    second = _wait(browser, lambda d: (lambda c: c if len(c) == 60 and c != first else None)(_js(d, CARDS_JS)),
                   "the second page's cards")
    assert not set(first) & set(second)
    _shot(browser, "06-lasso-large")


def test_representatives_layer_shows_one_image_per_cluster(browser, server):
    _open(browser, server)
    browser.find_element("css selector", "#map-representatives input").click()
    state = _wait(browser, lambda d: (s := _state(d)) and s["reps"] and s, "the representatives layer")
    assert state["reps"] == CLUSTERS
    notes = _js(browser, f"return ({GRAPH}.layout.annotations || []).map(a => a.text)")
    assert len(notes) == CLUSTERS and all("·" in t for t in notes)
    assert sum(int(t.split("· ")[1].replace(",", "")) for t in notes) == N
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#map-graph image').length") >= CLUSTERS + 1,
          "the pictures")
    time.sleep(1.5)
    _shot(browser, "07-representatives")
