"""Browser tier: a real `embedscope dashboard` process on an ingested + analysed database,
driven by real headless Chromium (Debian chromium + chromedriver; skipped when absent).

Hover, click and the lasso are real pointer events at the pixel positions of the points
(computed from Plotly's axes in the page); nothing calls Dash callbacks directly.
Screenshots of every page go to the test's tmp dir, and also to $EMBEDSCOPE_SCREENSHOT_DIR
when that is set.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.dashboard_db import N_IMAGES, PER_GROUP, cached_dashboard_db, cached_imported_db, running_dashboard

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT = 45  # seconds for a page/callback, generous for 2 busy cores

# pixel positions (viewport coordinates) of every drawn point of the map
POINTS_JS = """
const gd = document.querySelector('#map-graph .js-plotly-plot');
const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis, r = gd.getBoundingClientRect();
const out = [];
gd._fullData.forEach((t, c) => { if (t.visible !== true) return;
  for (let i = 0; i < t.x.length; i++) out.push({trace: c, name: t.name, index: t.customdata[i],
    px: r.left + xa._offset + xa.l2p(t.x[i]), py: r.top + ya._offset + ya.l2p(t.y[i])}); });
return out;
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    db = cached_dashboard_db(tmp_path_factory)
    # --image-size: the test ingest's, so an uploaded image is embedded as the stored ones were
    with running_dashboard(db, tmp_path_factory.mktemp("server") / "server.log", "--image-size", "56",
                           start_timeout=90) as url:
        yield {"url": url, "db": db}


@pytest.fixture(scope="module")
def browser(server):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--window-size=1500,1100"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    out = tmp_path_factory.mktemp("screenshots")
    extra = os.environ.get("EMBEDSCOPE_SCREENSHOT_DIR")

    def save(driver, name: str, full_page: bool = False) -> Path:
        path = out / f"{name}.png"
        if full_page:  # grow the window to the document so the screenshot shows all of it
            height = _js(driver, "return document.documentElement.scrollHeight")
            driver.set_window_size(1500, min(max(1100, height + 140), 4000))
            time.sleep(0.5)
        driver.save_screenshot(str(path))
        if full_page:
            driver.set_window_size(1500, 1100)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return save


def _wait(driver, predicate, what: str):
    from selenium.common.exceptions import JavascriptException
    from selenium.webdriver.support.ui import WebDriverWait

    # a script can throw while Dash/Plotly re-render mid-poll: that is "not yet", not a failure
    return WebDriverWait(driver, WAIT, poll_frequency=0.2, ignored_exceptions=(JavascriptException,)).until(
        lambda d: predicate(d), message=f"waiting for {what}")


def _js(driver, script: str, *args):
    return driver.execute_script(script, *args)


CARDS_JS = "return [...document.querySelectorAll('#map-gallery-cards .es-thumb')].map(e => e.dataset.sha256)"


def _gallery_cards(driver, n: int) -> list[str]:
    """The sha256 of the map gallery's cards once ``n`` of them are on screen (the gallery page
    follows the selection's count in a second callback)."""
    return _wait(driver, lambda d: (lambda c: c if len(c) == n else None)(_js(d, CARDS_JS)), f"{n} gallery cards")


def _open_map(driver, server) -> list[dict]:
    driver.get(server["url"] + "/")
    _wait(driver, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                   "return g && g._fullData && g._fullData.length > 0"), "the map")
    time.sleep(0.5)  # let the WebGL canvas settle before pointer events
    return [p for p in _js(driver, POINTS_JS) if not p["name"].startswith("selection (")]  # not the SQL rings


def _pointer(driver, moves, *, down_up: bool = False, click: bool = False):
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    ab = ActionBuilder(driver, duration=25)  # ms per pointer move (default 250)
    pa = ab.pointer_action
    pa.move_to_location(int(moves[0][0]), int(moves[0][1]))
    if down_up:
        pa.pointer_down()
        for x, y in moves[1:]:
            pa.move_to_location(int(x), int(y))
        pa.pointer_up()
    if click:
        pa.click()
    ab.perform()


def _type(element, text: str) -> None:
    """Replace a React-controlled input's text (element.clear() does not reach React's state)."""
    from selenium.webdriver.common.keys import Keys

    element.send_keys(Keys.CONTROL, "a")
    element.send_keys(Keys.DELETE)
    element.send_keys(text)


def _isolated(points: list[dict]) -> dict:
    """The point farthest from its nearest neighbour on screen (so the pointer hits only it)."""
    def gap(p):
        return min(((p["px"] - q["px"]) ** 2 + (p["py"] - q["py"]) ** 2 for q in points if q is not p), default=1e9)

    return max(points, key=gap)


def test_map_renders_every_point_with_banner(browser, server, shots):
    points = _open_map(browser, server)
    assert len(points) == N_IMAGES
    assert sorted(p["index"] for p in points) == list(range(N_IMAGES))
    names = sorted({p["name"] for p in points})
    assert [n.split(" (")[0] for n in names] == ["cluster 0", "cluster 1", "cluster 2"]
    assert sum(int(n.split("(")[1].rstrip(")")) for n in names) == N_IMAGES  # legend counts add up
    banner = browser.find_element("id", "es-random-weights-banner")
    assert banner.is_displayed() and "RANDOM WEIGHTS" in banner.text and "dinov2_vits14/full" in banner.text
    assert f"Showing all {N_IMAGES} points" in browser.find_element("id", "map-notice").text
    shots(browser, "01-map")


def test_hover_shows_thumbnail_and_click_shows_neighbours(browser, server, shots):
    points = _open_map(browser, server)
    target = _isolated(points)
    _pointer(browser, [(target["px"], target["py"])])
    tip = _wait(browser, lambda d: _js(d, "const t=document.getElementById('map-tooltip-content');"
                                          "return t && t.offsetParent !== null ? t : null"), "the hover tooltip")
    sha = tip.get_attribute("data-sha256")
    assert len(sha) == 64 and ".jpg" in tip.text
    _wait(browser, lambda d: _js(d, "const i=document.querySelector('#map-tooltip-content img');"
                                    "return i && i.complete && i.naturalWidth > 0"), "the tooltip thumbnail to load")
    shots(browser, "02-map-hover")

    _pointer(browser, [(target["px"], target["py"])], click=True)
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#map-neighbours .es-neighbour').length") == 8,
          "8 neighbour cards")
    panel_sha = _js(browser, "return document.querySelector('#map-point-panel [data-sha256]').dataset.sha256")
    assert panel_sha == sha  # the clicked point is the hovered point
    neighbours = _js(browser, "return [...document.querySelectorAll('#map-neighbours .es-neighbour')].map(e => e.dataset.sha256)")
    assert sha not in neighbours and len(set(neighbours)) == 8
    _wait(browser, lambda d: _js(d, "return [...document.querySelectorAll('#map-point-panel img')]"
                                    ".every(i => i.complete && i.naturalWidth > 0)"), "neighbour thumbnails")
    text = browser.find_element("id", "map-neighbours").text
    assert "similarity" in text or "distance" in text
    shots(browser, "03-map-click-neighbours")


def test_lasso_selection_fills_gallery(browser, server, shots):
    points = _open_map(browser, server)
    cluster = [p for p in points if p["trace"] == 0]
    x0, x1 = min(p["px"] for p in cluster) - 10, max(p["px"] for p in cluster) + 10
    y0, y1 = min(p["py"] for p in cluster) - 10, max(p["py"] for p in cluster) + 10
    inside = [p for p in points if x0 < p["px"] < x1 and y0 < p["py"] < y1]
    assert PER_GROUP <= len(inside) < N_IMAGES
    # a real lasso drag (the map's default drag mode) along the rectangle, in small steps
    path = []
    for (ax, ay), (bx, by) in zip([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]):
        path += [(ax + (bx - ax) * t / 8, ay + (by - ay) * t / 8) for t in range(8)]
    _pointer(browser, path + [(x0, y0 + 1)], down_up=True)
    _wait(browser, lambda d: d.find_element("id", "map-gallery-title").text.startswith(f"Selection: {len(inside)} images"),
          f"a gallery of {len(inside)}")
    cards = _gallery_cards(browser, len(inside))
    assert len(cards) == len(set(cards)) == len(inside)
    shots(browser, "04-map-lasso-gallery")


def _choose(driver, dropdown_id: str, text: str) -> None:
    """Pick the option containing ``text`` in a Dash 4 dropdown, as a user would."""
    driver.find_element("id", dropdown_id).click()
    option = _wait(driver, lambda d: next((o for o in d.find_elements("css selector", "[role=option]") if text in o.text), None),
                   f"option {text!r}")
    option.click()


def test_map_switches_to_3d_and_continuous_colour(browser, server, shots):
    _open_map(browser, server)
    _choose(browser, "map-projection", "pca 3-D")
    _choose(browser, "map-color", "novelty")
    traces = _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                             "const t=g && g._fullData; return t && t.length === 1 && t[0].type === 'scatter3d'"
                                             " ? t.map(x => [x.x.length, x.marker.showscale]) : null"), "a 3-D novelty map")
    assert traces == [[N_IMAGES, True]]
    shots(browser, "04b-map-3d-novelty")


def test_sql_box_returns_rows_and_shows_them_on_the_map(browser, server, shots):
    browser.get(server["url"] + "/sql")
    box = _wait(browser, lambda d: d.find_element("id", "sql-input"), "the SQL box")
    _type(box, "SELECT sha256, path, label FROM images WHERE label = 'dogs' ORDER BY path")
    browser.find_element("id", "sql-run").click()
    count = _wait(browser, lambda d: _js(d, "const e=document.getElementById('sql-rowcount'); return e && e.dataset.rows"),
                  "the row count")
    assert int(count) == PER_GROUP
    rows = _js(browser, "return document.querySelectorAll('#sql-table tbody tr td[data-dash-column=\"label\"]').length")
    assert rows == PER_GROUP
    shots(browser, "05-sql")

    _type(box, "DELETE FROM images")
    browser.find_element("id", "sql-run").click()
    err = _wait(browser, lambda d: _js(d, "const e=document.getElementById('sql-error'); return e && e.innerText"), "the refusal")
    assert "read-only" in err

    _type(box, "SELECT sha256 FROM images WHERE label = 'dogs'")
    browser.find_element("id", "sql-run").click()
    _wait(browser, lambda d: _js(d, "const e=document.getElementById('sql-rowcount'); return e && e.dataset.rows") == str(PER_GROUP),
          "the second result")
    _wait(browser, lambda d: d.find_element("id", "sql-show-on-map").is_enabled(), "Show on map")
    browser.find_element("id", "sql-show-on-map").click()
    _wait(browser, lambda d: "(from SQL)" in _js(d, "const e=document.getElementById('map-gallery-title'); return e ? e.innerText : ''"),
          "the SQL selection on the map")
    assert browser.find_element("id", "map-gallery-title").text.startswith(f"Selection: {PER_GROUP} images")
    assert len(_gallery_cards(browser, PER_GROUP)) == PER_GROUP
    _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                    "return g && g._fullData && g._fullData.some(t => t.name.startsWith('selection ('))"),
          "the ringed selection trace")
    ringed = _js(browser, "return document.querySelector('#map-graph .js-plotly-plot')._fullData"
                          ".find(t => t.name.startsWith('selection (')).x.length")
    assert ringed == PER_GROUP
    shots(browser, "06-map-sql-selection")


def test_detail_page_shows_image_sources_and_neighbours(browser, server, shots):
    from embedscope.store.db import Database

    src = Database(str(server["db"])).read("sources", ["sha256", "path"]).to_pandas()
    sha = src.groupby("sha256").filter(lambda g: len(g) == 2)["sha256"].iloc[0]
    browser.get(server["url"] + f"/detail?sha={sha}")
    _wait(browser, lambda d: _js(d, "const i=document.getElementById('detail-image');"
                                    "return i && i.complete && i.naturalWidth > 0"), "the full image")
    sources = browser.find_element("id", "detail-sources").text
    assert "cats_00.jpg" in sources and "copy of cats_00.jpg" in sources
    n = _js(browser, "return document.querySelectorAll('#detail-neighbours .es-neighbour').length")
    assert n == 12
    shots(browser, "07-detail", full_page=True)


def test_within_image_patch_clusters_run_with_random_weights(browser, server, shots):
    from embedscope.store.db import Database

    sha = Database(str(server["db"])).read("images", ["sha256"], where="label = 'birds'").column("sha256")[0].as_py()
    browser.get(server["url"] + f"/patches?sha={sha}")
    _wait(browser, lambda d: d.find_element("id", "patch-run"), "the page").click()
    from selenium.webdriver.support.ui import WebDriverWait

    # builds the encoder on first use (seconds on a busy CPU), then one forward pass
    WebDriverWait(browser, 180, poll_frequency=0.5).until(
        lambda d: _js(d, "return !!(document.getElementById('patch-done') || document.getElementById('patch-error'))"),
        message="patch clustering")
    assert not _js(browser, "return !!document.getElementById('patch-error')")
    assert "weights random" in browser.find_element("id", "patch-done").text
    assert _js(browser, "return document.getElementsByClassName('es-patch-cluster').length") == 4  # k = 4
    assert "RANDOM WEIGHTS" in browser.find_element("id", "patch-status").text
    time.sleep(1.0)
    shots(browser, "09-within-image", full_page=True)


@pytest.mark.parametrize("page,query,marker", [("clusters", "", "es-cluster"),
                                               ("flags", "?kind=duplicate", "es-flag"),  # random weights: no novelty
                                               ("metrics", "", None), ("embeddings", "", None)])
def test_other_pages_render(browser, server, shots, page, query, marker):
    browser.get(server["url"] + f"/{page}{query}")
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('.js-plotly-plot, .es-flag').length > 0"), page)
    if marker:
        _wait(browser, lambda d: _js(d, f"return document.getElementsByClassName('{marker}').length") > 0, marker)
    time.sleep(1.0)
    assert browser.find_element("id", "es-random-weights-banner").is_displayed()
    shots(browser, f"08-{page}", full_page=True)


def test_search_by_uploaded_image_shows_the_stored_image_first(browser, server, shots, tmp_path):
    """The browser reads the file (a real <input type=file>); the server gets bytes only."""
    import hashlib

    from selenium.webdriver.support.ui import WebDriverWait

    path = Path(server["db"]).parent / "drop" / "dogs" / "dogs_03.jpg"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    browser.get(server["url"] + "/search")
    upload = _wait(browser, lambda d: d.find_element("css selector", "#search-upload input[type=file]"), "the upload input")
    upload.send_keys(str(path))
    # the first upload builds the encoder (seconds on a busy CPU), then one forward pass
    WebDriverWait(browser, 180, poll_frequency=0.5).until(
        lambda d: _js(d, "return !!(document.getElementById('search-done') || document.getElementById('search-error'))"),
        message="the search result")
    assert not _js(browser, "return !!document.getElementById('search-error')")
    hits = _js(browser, "return [...document.querySelectorAll('#search-gallery .es-search-hit')].map(e => e.dataset.sha256)")
    assert len(hits) == 12 and hits[0] == sha and len(set(hits)) == 12
    first = browser.find_element("css selector", "#search-gallery .es-search-hit").text
    assert "dogs_03.jpg" in first and "distance" in first  # identical vector: shown as a cosine distance ~0
    status = browser.find_element("id", "search-status").text
    assert "weights random" in status and "image size 56" in status and "RANDOM WEIGHTS" in status
    assert "This exact file is in the database" in status and not _js(browser, "return !!document.getElementById('search-check-failed')")
    assert browser.find_element("id", "es-random-weights-banner").is_displayed()
    _wait(browser, lambda d: _js(d, "return [...document.querySelectorAll('#search-gallery img, #search-query-thumb')]"
                                    ".every(i => i.complete && i.naturalWidth > 0)"), "the gallery thumbnails")
    shots(browser, "10-search-upload", full_page=True)
    browser.find_element("css selector", "#search-gallery .es-search-hit a").click()  # the card links to the detail page
    _wait(browser, lambda d: f"sha={sha}" in d.current_url, "the detail page of the top hit")

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(path.read_bytes()[:1500])  # a truncated JPEG
    browser.get(server["url"] + "/search")
    _wait(browser, lambda d: d.find_element("css selector", "#search-upload input[type=file]"), "the upload input").send_keys(str(broken))
    err = _wait(browser, lambda d: _js(d, "const e=document.getElementById('search-error'); return e && e.innerText"), "the error")
    assert err.startswith("broken.jpg: ") and "truncated" in err
    assert not _js(browser, "return document.querySelectorAll('.es-search-hit').length")
    shots(browser, "11-search-upload-corrupt")


DENDRO_JS = """
const gd = document.querySelector('#clusters-dendrogram .js-plotly-plot');
if (!gd || !gd._fullData || !gd.offsetParent) return null;
const lines = gd._fullData.filter(t => t.mode === 'lines'), leaves = gd._fullData.filter(t => t.mode === 'markers');
return {merges: lines.reduce((n, t) => n + t.x.filter(v => v === null).length, 0),
        leaves: leaves.reduce((n, t) => n + t.x.length, 0), clusters: leaves.map(t => t.name).sort(),
        paths: gd.querySelectorAll('svg .scatterlayer path.js-line').length};
"""


def test_clusters_page_shows_the_dendrogram_only_for_agglomerative(browser, server, shots):
    browser.get(server["url"] + "/clusters")
    _wait(browser, lambda d: _js(d, "return document.getElementsByClassName('es-cluster').length") > 0, "the k-means clusters")
    assert _js(browser, DENDRO_JS) is None  # k-means: no dendrogram
    _choose(browser, "clusters-method", "agglomerative")
    d = _wait(browser, lambda dr: _js(dr, DENDRO_JS), "the dendrogram")
    assert d["merges"] == N_IMAGES - 1 and d["leaves"] == N_IMAGES and d["paths"] >= 2  # drawn as SVG paths
    assert [c.split(" (")[0] for c in d["clusters"]] == ["cluster 0", "cluster 1", "cluster 2"]
    assert f"Dendrogram of the {N_IMAGES} images" in browser.find_element("id", "clusters-dendrogram-text").text
    time.sleep(0.5)
    browser.execute_script("document.getElementById('clusters-dendrogram').scrollIntoView()")
    shots(browser, "12-clusters-dendrogram")


ANIM_JS = """
const gd = document.querySelector('#anim-graph .js-plotly-plot');
// null until Plotly has drawn the animated figure (the page first holds an empty placeholder)
if (!gd || !gd._transitionData || !gd._transitionData._frames || !gd._fullLayout
    || !gd._fullLayout.sliders || !gd._fullLayout.sliders.length || !gd._fullData
    || !gd._fullData[1] || !gd._fullData[1].x) return null;
return {frames: gd._transitionData._frames.length, active: gd._fullLayout.sliders[0].active,
        title: gd._fullLayout.title.text, x: gd._fullData[1].x.slice()};
"""


def test_kmeans_animation_has_frames_and_play_advances_them(browser, server, shots):
    browser.get(server["url"] + "/clusters")
    a = _wait(browser, lambda d: _js(d, ANIM_JS), "the animation")
    assert a["frames"] > 1 and a["active"] == 0 and "iteration 0/" in a["title"] and "k=3" in a["title"]
    note = _wait(browser, lambda d: d.find_elements("id", "anim-note-text"), "the animation's note")[0]
    assert f"all {N_IMAGES} points" in note.text and int(note.get_attribute("data-frames")) == a["frames"]
    browser.execute_script("document.getElementById('anim-graph').scrollIntoView()")
    time.sleep(0.5)
    shots(browser, "13-clusters-animation-start")
    browser.find_element("css selector", "#anim-graph g.updatemenu-button").click()  # ▶ play
    b = _wait(browser, lambda d: (lambda s: s if s and s["active"] > 0 else None)(_js(d, ANIM_JS)), "a later frame")
    assert "iteration 0/" not in b["title"] and b["x"] != a["x"]  # the centroids moved
    _wait(browser, lambda d: (_js(d, ANIM_JS) or {}).get("active") == a["frames"] - 1, "the last frame")
    time.sleep(0.5)
    shots(browser, "14-clusters-animation-end")

    browser.find_element("css selector", "#anim-method input[value=kmedoids]").click()
    m = _wait(browser, lambda d: (lambda s: s if s and "k-medoids" in s["title"] else None)(_js(d, ANIM_JS)), "k-medoids")
    assert m["frames"] > 1 and m["active"] == 0


# -- the filter sidebar, Flags, and a database of imported vectors ------------------------------


ALL_IMAGES_LOADED = ("return [...document.images].every(i => i.complete && i.naturalWidth > 0)"
                     " && document.images.length")


def test_map_sidebar_selects_matching_images(browser, server, shots):
    _open_map(browser, server)
    _choose(browser, "sidebar-label", "dogs")
    browser.find_element("id", "sidebar-apply").click()
    _wait(browser, lambda d: "(sidebar filter)" in _js(d, "const e=document.getElementById('map-gallery-title');"
                                                          "return e ? e.innerText : ''"), "the filtered selection")
    assert browser.find_element("id", "map-gallery-title").text.startswith(f"Selection: {PER_GROUP} images")
    ringed = _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                             "const t=g && g._fullData && g._fullData.find(t => t.name.startsWith('selection ('));"
                                             "return t ? t.x.length : null"), "the ringed selection")
    assert ringed == PER_GROUP
    assert "dogs" in browser.find_element("id", "sidebar-label").text  # the filter survives the map's rebuild
    _wait(browser, lambda d: _js(d, ALL_IMAGES_LOADED), "the gallery thumbnails")
    shots(browser, "15-map-sidebar")
    browser.execute_script("window.sessionStorage.clear()")  # the next tests start unfiltered


def test_flags_counts_match_sql_and_the_gallery_pages(browser, server, shots):
    from embedscope.store.db import Database
    from embedscope.store.queries import run_sql
    from embedscope.store.runs import latest_run

    db = Database(str(server["db"]))
    run = latest_run(db)
    want = run_sql(db, "SELECT count(*) FILTER (WHERE dup_group IS NOT NULL OR phash_group IS NOT NULL) AS d, "
                       f"count(*) FILTER (WHERE is_novel) AS n FROM flags WHERE run_id = '{run.run_id}'").to_pylist()[0]
    browser.get(server["url"] + "/flags?kind=duplicate")
    counts = _wait(browser, lambda d: d.find_element("id", "flags-counts"), "the counts")
    assert int(counts.get_attribute("data-duplicate")) == want["d"] > 0
    assert int(counts.get_attribute("data-novel")) == want["n"]
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#flags-cards .es-flag').length") == want["d"],
          "a card per near-duplicate")
    assert browser.find_element("id", "flags-page-label").text.endswith("(page 1 of 1)")
    marks = browser.find_element("id", "sidebar").text
    assert "novelty score" in marks
    _wait(browser, lambda d: _js(d, ALL_IMAGES_LOADED), "the flag thumbnails")
    shots(browser, "16-flags", full_page=True)


@pytest.fixture(scope="module")
def imported_server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    db = cached_imported_db(tmp_path_factory)
    log = tmp_path_factory.mktemp("imported-server") / "server.log"
    with running_dashboard(db, log, start_timeout=90) as url:
        yield {"url": url, "db": db, "log": log}


@pytest.mark.parametrize("page,marker", [("/", "#map-graph .js-plotly-plot"), ("/clusters", ".es-cluster"),
                                         ("/flags", "#flags-counts"), ("/metrics", "#metrics-compare td"),
                                         ("/embeddings", "#emb-vector .js-plotly-plot"), ("/sql", "#sql-input"),
                                         ("/patches?sha=vec_000004", "#patch-sha"), ("/detail?sha=vec_000004", "#detail-image"),
                                         ("/search", "#search-upload")])
def test_imported_vectors_every_page_renders_with_placeholders(browser, imported_server, shots, page, marker):
    browser.get(imported_server["url"] + page)
    _wait(browser, lambda d: _js(d, f"return !!document.querySelector({marker!r})"), page)
    time.sleep(1.0)  # let the page's callbacks answer
    _wait(browser, lambda d: _js(d, "return [...document.images].every(i => i.complete && i.naturalWidth > 0)"),
          "every image (placeholders) to load")
    assert not browser.find_element("id", "es-callback-error").text
    assert not _js(browser, "return !!document.getElementById('run-error') || !!document.getElementById('detail-error')")
    log = imported_server["log"].read_text()
    assert "Traceback" not in log, log[-2000:]
    if page == "/metrics":  # two analyze runs of one day: two column groups, two full run ids
        head = browser.find_element("id", "metrics-compare").text
        from embedscope.store.db import Database
        from embedscope.store.runs import list_runs

        assert all(r.run_id in head for r in list_runs(Database(str(imported_server["db"]))))
    name = page.strip("/").split("?")[0] or "map"
    shots(browser, f"20-imported-{name}", full_page=page in ("/clusters", "/metrics"))


def test_imported_vectors_click_and_lasso(browser, imported_server, shots):
    points = _open_map(browser, imported_server)
    target = _isolated(points)
    _pointer(browser, [(target["px"], target["py"])], click=True)
    name = _wait(browser, lambda d: _js(d, "const e=document.getElementById('map-point-name'); return e && e.innerText"),
                 "the clicked point's panel")
    assert name.startswith("vec_")
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#map-neighbours .es-neighbour').length") == 8,
          "8 neighbours")
    xs, ys = [p["px"] for p in points], [p["py"] for p in points]
    x0, x1, y0, y1 = min(xs) - 10, max(xs) + 10, min(ys) - 10, max(ys) + 10
    path = []
    for (ax, ay), (bx, by) in zip([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)]):
        path += [(ax + (bx - ax) * t / 8, ay + (by - ay) * t / 8) for t in range(8)]
    _pointer(browser, path + [(x0, y0 + 1)], down_up=True)
    _wait(browser, lambda d: d.find_element("id", "map-gallery-title").text.startswith(f"Selection: {len(points)} images"),
          "every point selected")
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#map-gallery-cards img').length > 0"), "the gallery")
    assert "nothing selected" not in browser.find_element("id", "map-gallery").text
    _wait(browser, lambda d: _js(d, "return [...document.querySelectorAll('#map-gallery-cards img')]"
                                    ".every(i => i.complete && i.naturalWidth > 0)"), "placeholder thumbnails")
    shots(browser, "21-imported-map-lasso")
    browser.execute_script("window.sessionStorage.clear()")
