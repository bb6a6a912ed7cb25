"""Browser tier: the Map page's text box, in real headless Chromium against a real
`embedscope dashboard` on a DINOv2 + CLIP (random weights) database: typing a query rings
exactly the brute-force top k of the image·text ranking and fills the gallery; an image
uploaded on the Search page is searched in the model picked there, equal to the brute-force
top k of that model's table."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import make_photo, run_cli, save_jpeg
from tests.dashboard_db import running_dashboard
from tests.test_dashboard_browser import CHROMEDRIVER, CHROMIUM, _choose, _js, _type, _wait
from tests.test_dashboard_browser import browser  # noqa: F401  (the fixture, on this module's server)

pytestmark = pytest.mark.browser

MODEL = "openclip_vitb32"
DINO = "dinov2_vits14"
DINO_SIZE = 56  # the DINOv2 side of the ingest and the dashboard (the CLIP model keeps its 224)
TEXT = "a red bicycle"
N = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed")
    tmp = tmp_path_factory.mktemp("textmap")
    for i in range(N):
        save_jpeg(make_photo(i, (120 + 3 * i, 96)), tmp / "drop" / ("cats" if i % 2 else "dogs") / f"{i}.jpg")
    db = tmp / "db"
    run_cli("ingest", str(tmp / "drop"), "--db", str(db), "--model", f"{DINO},{MODEL}", "--weights", "random",
            "--label-from-folder", "--batch-size", "16", "--image-size", str(DINO_SIZE))
    run_cli("analyze", "--db", str(db), "--model", MODEL, "--project", "pca", "--cluster", "kmeans", "--k", "2")
    with running_dashboard(db, tmp / "server.log", "--image-size", str(DINO_SIZE), start_timeout=90) as url:
        yield {"url": url, "db": db}


def brute_force_top(db_dir, k: int) -> list[str]:
    import embedscope
    from embedscope.models.factory import create_encoder

    ids, X = embedscope.open(db_dir).embeddings(MODEL)
    t = create_encoder(MODEL, weights="random", device="cpu", precision="fp32").text.embed_texts([TEXT])[0]
    return [ids[i] for i in np.argsort(-(X @ t), kind="stable")[:k]]


def test_map_text_box_rings_the_brute_force_top_k(browser, server, tmp_path):
    from selenium.webdriver.common.keys import Keys

    from embedscope.dashboard.text_search import TEXT_K
    from embedscope.store.db import Database
    from embedscope.store.runs import latest_run
    from embedscope.store.views import map_coordinates

    browser.get(server["url"] + "/")
    _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                    "return g && g._fullData && g._fullData.length > 0"), "the map")
    box = browser.find_element("id", "map-text")
    _type(box, TEXT)
    box.send_keys(Keys.ENTER)
    _wait(browser, lambda d: _js(d, "return !!document.getElementById('map-text-status-done')"), "the text hits")
    _wait(browser, lambda d: _js(d, "const g=document.querySelector('#map-graph .js-plotly-plot');"
                                    "return g._fullData.some(t => t.name.startsWith('selection ('))"), "the rings")
    ringed = _js(browser, "return document.querySelector('#map-graph .js-plotly-plot')._fullData"
                          ".find(t => t.name.startsWith('selection (')).customdata")
    db = Database(server["db"])
    run = latest_run(db)
    points = map_coordinates(db, run.run_id, run.primary_projection, run.primary_dims, max_points=10**6)
    expected = brute_force_top(server["db"], min(TEXT_K, N))
    assert sorted(points.sha256[int(i)] for i in ringed) == sorted(expected)
    hits = _js(browser, "return document.getElementById('map-text-status-done').dataset.hits").split(",")
    assert hits == expected  # nearest first
    title = browser.find_element("id", "map-gallery-title").text
    assert title.startswith(f"Selection: {len(expected)} images (text search)")
    cards = _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#map-gallery-cards img').length") or None,
                  "the gallery")
    assert cards == len(expected)
    browser.save_screenshot(str(tmp_path / "map-text-search.png"))


def test_search_page_text_section_lists_the_brute_force_top_k_in_order(browser, server):
    from selenium.webdriver.common.keys import Keys

    browser.get(server["url"] + "/search")
    box = _wait(browser, lambda d: d.find_element("id", "search-text"), "the text box")
    _type(box, TEXT)
    box.send_keys(Keys.ENTER)
    _wait(browser, lambda d: _js(d, "const r = document.getElementById('search-text-results');"
                                    f"return !!r && r.textContent.includes(\"'{TEXT}' in {MODEL}\")"),
          "the hits of the whole text")  # not of a text typed halfway
    shas = _js(browser, "return [...document.querySelectorAll('#search-text-gallery [data-sha256]')]"
                        ".map(e => e.dataset.sha256)")
    assert shas == brute_force_top(server["db"], 12)  # the page's k (12), nearest first


def brute_force_upload(db_dir, model: str, path, k: int) -> list[str]:
    """The top k of ``model``'s table by cosine with the file embedded directly by the encoder."""
    from PIL import Image

    import embedscope
    from embedscope.models.factory import create_encoder

    ids, X = embedscope.open(db_dir).embeddings(model)
    enc = create_encoder(model, weights="random", device="cpu", precision="fp32",
                         image_size=DINO_SIZE if model == DINO else None)
    q = enc.embed_images([enc.preprocessor(Image.open(path).convert("RGB"))])[0]
    return [ids[i] for i in np.argsort(-(X @ q), kind="stable")[:k]]


@pytest.mark.parametrize("model", [MODEL, DINO])
def test_search_page_upload_is_searched_in_the_picked_model(browser, server, tmp_path, model):
    from selenium.webdriver.support.ui import WebDriverWait

    path = save_jpeg(make_photo(1000, (200, 150)), tmp_path / "query.jpg")  # not in the database
    browser.get(server["url"] + "/search")
    _wait(browser, lambda d: d.find_element("id", "search-model"), "the model picker")
    _choose(browser, "search-model", model)
    browser.find_element("css selector", "#search-upload input[type=file]").send_keys(str(path))
    WebDriverWait(browser, 240, poll_frequency=0.5).until(  # the first upload per model loads it
        lambda d: _js(d, "const e = document.getElementById('search-done');"
                         f"return !!document.getElementById('search-error') || !!(e && e.textContent.includes('{model}/'))"),
        message="the search result")
    assert not _js(browser, "return !!document.getElementById('search-error')")
    assert not _js(browser, "return !!document.getElementById('search-check-failed')")  # the CLIP side kept its 224
    hits = _js(browser, "return [...document.querySelectorAll('#search-gallery .es-search-hit')].map(e => e.dataset.sha256)")
    assert hits == brute_force_upload(server["db"], model, path, 12)
    browser.save_screenshot(str(tmp_path / f"search-upload-{model}.png"))
