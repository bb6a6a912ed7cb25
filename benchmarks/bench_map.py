"""The map at scale, as a user meets it: a real `embedscope dashboard` on a generated database
(imported vectors + a stored projection, tests/map_scale_db.py) driven by headless Chromium
(selenium, software GL). Per size: navigation to the first drawn map (first visit: Dash's
scripts cached by an earlier page, plotly.js fetched and compiled, the median of several, each
beside one on a second server with plotly.py's full plotly.js as the baseline; and a returning
visit, with plotly.js cached), a zoom step, hover to a loaded thumbnail, a lasso of ~20% of the
points (from the button's release) to its counts, and the bytes the first view sent (Chrome's
performance log). The server is measured after it warmed its map (it indexes the latest run's
map and compiles the density renderer in the background at start). The first map's target is
the issue's 3 s at both sizes: it is a page load, not one of the 100k map's interactions (≤ 0.5 s).

    python -m benchmarks.run --only map [--quick]
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._stream import Rows

GRAPH = "document.querySelector('#map-graph .js-plotly-plot')"
DRAWN = f"""const g = {GRAPH}; if (!g || !g.layout || !g.layout.meta) return null;
    const n = document.getElementById('map-notice').innerText; return n ? [n, (g.layout.images || []).length] : null;"""
# A zoom step on the page's own clock: from the relayout call to the map drawn with the server's
# answer (the first plotly_afterplot after the notice changed; the notice when nothing redraws).
# Seen through selenium's polling it reads 0.1-0.25 s later (each poll is a round trip that waits
# for the busy main thread), which is reported beside it.
STEP_CLOCK = f"""window.__step = {{call: performance.now(), notice: null, drawn: null}};
    if (!window.__stepHooks) {{ window.__stepHooks = true;
        new MutationObserver(() => {{ const s = window.__step; if (s.notice === null) s.notice = performance.now(); }})
            .observe(document.getElementById('map-notice'), {{childList: true, subtree: true, characterData: true}});
        {GRAPH}.on('plotly_afterplot', () => {{ const s = window.__step;
            if (s.notice !== null && s.drawn === null) s.drawn = performance.now(); }}); }}
    """
STEP_TIME = """const s = window.__step; if (s.notice === null) return null;
    if (s.drawn === null && performance.now() - s.notice < 1000) return null;
    return (s.drawn === null ? s.notice : s.drawn) - s.call;"""
TARGETS = {1_000_000: {"first map": 3.0, "first map, returning": 3.0, "zoom step": 1.0, "hover": 0.3, "lasso": 2.0,
                       "first view MB": 5.0},
           100_000: {"first map": 3.0, "first map, returning": 3.0, "zoom step": 0.5, "hover": 0.5, "lasso": 0.5,
                     "first view MB": None}}


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--window-size=1500,1100"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def _until(driver, script: str, timeout: float = 120.0, poll: float = 0.02):
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        try:
            value = driver.execute_script(script)
        except Exception:  # mid re-render
            value = None
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(script[:80])


def _bytes_received(driver) -> tuple[int, int]:
    """(bytes of data: callbacks and pictures, bytes of everything incl. the JS bundles)."""
    urls, data, total = {}, 0, 0
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls[msg["params"]["requestId"]] = msg["params"]["request"]["url"]
        elif msg["method"] == "Network.loadingFinished":
            size = int(msg["params"].get("encodedDataLength", 0))
            total += size
            url = urls.get(msg["params"]["requestId"], "")
            if "_dash-update-component" in url or "/map-thumb/" in url or url.startswith("data:"):
                data += size
    return data, total


def _pointer(driver, moves, *, down: bool = False) -> None:
    """Move the pointer along ``moves`` (25 ms a move), pressing the button at the first when
    ``down`` (and leaving it pressed: :func:`_release`)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    ab = ActionBuilder(driver, duration=25)
    ab.pointer_action.move_to_location(int(moves[0][0]), int(moves[0][1]))
    if down:
        ab.pointer_action.pointer_down()
    for x, y in moves[1:]:
        ab.pointer_action.move_to_location(int(x), int(y))
    ab.perform()


def _release(driver) -> None:
    from selenium.webdriver.common.actions.action_builder import ActionBuilder

    ab = ActionBuilder(driver)
    ab.pointer_action.pointer_up()
    ab.perform()


def _first_visit(driver, url: str) -> tuple[float, str]:
    """Seconds from navigating to ``/`` to the drawn map, and its notice, in a fresh browser:
    Dash's scripts cached by the ``/sql`` page, plotly.js not (only pages with a graph load it)."""
    driver.get(url + "/sql")
    _until(driver, "return document.getElementById('sql-input')")
    driver.get_log("performance")
    t0 = time.perf_counter()
    driver.get(url + "/")
    notice = _until(driver, DRAWN)[0]
    return time.perf_counter() - t0, notice


def first_visits(url: str, full_url: str, visits: int) -> tuple[list[float], list[float]]:
    """``visits`` first visits each with the trimmed plotly.js (``url``) and plotly.py's full
    bundle (``full_url``, the baseline), taken in turn, each in a fresh browser."""
    trimmed, full = [], []
    for _ in range(visits):
        for server, times in ((url, trimmed), (full_url, full)):
            driver = _driver()
            try:
                times.append(_first_visit(driver, server)[0])
            finally:
                driver.quit()
    return trimmed, full


def measure(url: str, n: int) -> dict[str, float]:
    from tests.map_scale_db import blob_centres

    driver = _driver()
    try:
        first, notice = _first_visit(driver, url)
        sent, sent_all = _bytes_received(driver)
        time.sleep(1.0)
        cx, cy = (float(v) for v in blob_centres()[0])
        steps, observed = [], []
        for half in (6.0, 3.0, 1.5):  # scroll-zoom-sized steps toward one cluster
            before = driver.execute_script("return document.getElementById('map-notice').innerText")
            t0 = time.perf_counter()
            driver.execute_script(STEP_CLOCK + f"Plotly.relayout({GRAPH}, {{'xaxis.range': [{cx - half}, {cx + half}], "
                                  f"'yaxis.range': [{cy - half}, {cy + half}]}})")
            _until(driver, f"const n = document.getElementById('map-notice').innerText; return n !== {json.dumps(before)}")
            observed.append(time.perf_counter() - t0)
            steps.append(_until(driver, STEP_TIME, timeout=5.0) / 1000)
            time.sleep(0.5)
        driver.execute_script(f"Plotly.relayout({GRAPH}, {{'xaxis.autorange': true, 'yaxis.autorange': true}})")
        t0 = time.perf_counter()
        driver.get(url + "/")  # a returning visit: plotly.js now in the browser's cache
        _until(driver, DRAWN)
        again = time.perf_counter() - t0
        time.sleep(1.0)
        px = driver.execute_script(f"""const g={GRAPH}, xa=g._fullLayout.xaxis, ya=g._fullLayout.yaxis, r=g.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p({cx}), r.top + ya._offset + ya.l2p({cy}), r.left + xa._offset,
                    r.top + ya._offset, xa._length, ya._length]""")
        t0 = time.perf_counter()
        _pointer(driver, [(px[0] + 2, px[1] + 2)])
        _until(driver, "const i = document.querySelector('#map-tooltip-content img'); return i && i.complete && i.naturalWidth > 0")
        hover = time.perf_counter() - t0
        _pointer(driver, [(px[2] + 5, px[3] + 5)])
        time.sleep(0.5)
        # a lasso around the right-hand fifth of the ring of clusters (~20% of the points)
        left, top, w, h = px[2], px[3], px[4], px[5]
        quad = [(left + 0.72 * w, top + 0.02 * h), (left + 0.99 * w, top + 0.02 * h), (left + 0.99 * w, top + 0.98 * h),
                (left + 0.72 * w, top + 0.98 * h)]
        path = []
        for (ax, ay), (bx, by) in zip(quad, quad[1:] + quad[:1]):
            path += [(ax + (bx - ax) * t / 6, ay + (by - ay) * t / 6) for t in range(6)]
        # the lasso's clock starts when the button is released: drawing it (37 moves, 25 ms each)
        # is the user's own hand, ≥ 0.93 s by construction; it is reported beside ("incl. drawing")
        t0 = time.perf_counter()
        _pointer(driver, path + [quad[0]], down=True)
        t1 = time.perf_counter()
        _release(driver)
        title = _until(driver, "const t = document.getElementById('map-gallery-title').innerText;"
                               "return t.startsWith('Selection: ') && !t.startsWith('Selection: 0 ') ? t : null")
        t2 = time.perf_counter()
        lasso, drawing = t2 - t1, t2 - t0
        selected = int(title.split(" ")[1].replace(",", ""))
        return {"first map": first, "first map, returning": again, "zoom step": max(steps),
                "zoom steps": steps, "zoom steps observed": observed, "hover": hover,
                "lasso": lasso, "lasso incl. drawing": drawing, "lasso points": selected, "first view MB": sent / 1e6,
                "first view MB incl. scripts": sent_all / 1e6, "first notice": notice[:60]}
    finally:
        driver.quit()


def run(quick: bool = False) -> list[dict]:
    from tests.dashboard_db import running_dashboard
    from tests.map_scale_db import build_scale_db, wait_until_warm

    results = Rows()
    for n in ([100_000] if quick else [100_000, 1_000_000]):
        with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
            t0 = time.perf_counter()
            db = build_scale_db(Path(tmp), n)
            built = time.perf_counter() - t0
            log, full_log = Path(tmp) / "server.log", Path(tmp) / "server-full-plotly.log"
            t0 = time.perf_counter()
            with running_dashboard(db, log, start_timeout=180) as url, \
                    running_dashboard(db, full_log, "--plotly", "full", start_timeout=180) as full_url:
                wait_until_warm(log)
                wait_until_warm(full_log)
                warm = time.perf_counter() - t0
                m = measure(url, n)
                trimmed, full = first_visits(url, full_url, 1 if quick else 3)
            trimmed.insert(0, m["first map"])
            m["first map"] = statistics.median(trimmed)
            settings = {"points": n, "db build s": round(built, 1), "server warm-up s": round(warm, 1),
                        "first view": m["first notice"]}
            for name, unit in (("first map", "s"), ("first map, returning", "s"), ("zoom step", "s"), ("hover", "s"), ("lasso", "s"),
                               ("first view MB", "MB")):
                extra = {"target": TARGETS[n][name]}
                if name == "first map":
                    extra.update({"of visits": [round(t, 3) for t in trimmed],
                                  "full plotly.js (baseline, same run) s": round(statistics.median(full), 3),
                                  "baseline visits": [round(t, 3) for t in full],
                                  "ratio to baseline": round(m["first map"] / statistics.median(full), 2)})
                if name == "zoom step":
                    extra.update({"of steps": [round(s, 3) for s in m["zoom steps"]],
                                  "seen by selenium's polling s": [round(s, 3) for s in m["zoom steps observed"]]})
                if name == "first view MB":
                    extra["incl. scripts (plotly.js gzipped)"] = round(m["first view MB incl. scripts"], 2)
                if name == "lasso":
                    extra.update({"selected": m["lasso points"], "from": "button release",
                                  "incl. drawing it s": round(m["lasso incl. drawing"], 3)})
                results.append({"name": f"map {n // 1000}k: {name}", "value": round(m[name], 3), "unit": unit,
                                "settings": {**settings, **extra}})
    return results

