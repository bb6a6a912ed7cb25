"""Browser tier: the Drops page (issue 17) of a real `embedscope dashboard` in real headless
Chromium, on a database with two real ingests (clean originals, then a planted drop): the
counts per verdict equal SQL's and `stats`', a drop opens its galleries, pairs show side by side
with their distance and rule, and both the drop list and a gallery page by row id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.dashboard_db import running_dashboard
from tests.test_dashboard_browser import CHROMEDRIVER, CHROMIUM, _js, _wait
from tests.test_dashboard_browser import browser, shots  # noqa: F401  (fixtures; `browser` uses this module's `server`)
from tests.test_verdicts import FAST, originals, plant

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    root = tmp_path_factory.mktemp("drops")
    db = root / "db"
    old = originals(root / "old", 12)
    run_cli("ingest", str(root / "old"), "--db", str(db), *FAST, "--label-from-folder")
    expected = plant(old, root / "new")
    run_cli("ingest", str(root / "new"), "--db", str(db), *FAST, "--label-from-folder")
    with running_dashboard(db, root / "server.log", start_timeout=90) as url:
        yield {"url": url, "db": db, "root": root, "expected": expected}


def _open(driver, url: str, selector: str) -> None:
    driver.get(url)
    _wait(driver, lambda d: _js(d, f"return document.querySelectorAll({selector!r}).length > 0"), selector)


def _table(driver) -> dict[str, dict[str, str]]:
    """drop id -> {column: cell text} of the drop table."""
    return _js(driver, """
        const heads = [...document.querySelectorAll('#drops-table th')].map(h => h.innerText.trim());
        const out = {};
        document.querySelectorAll('#drops-table tr.es-drop-row').forEach(tr => {
          const row = {}; [...tr.cells].forEach((td, i) => row[heads[i]] = td.innerText.trim());
          out[tr.dataset.dropId] = row; });
        return out;""")


def _sql(db: Path, query: str) -> list[dict]:
    return json.loads(run_cli("query", "--db", str(db), "--format", "json", query).stdout)


def test_drop_list_counts_equal_sql_and_stats_and_it_pages_by_drop_id(browser, server, shots):  # noqa: F811
    _open(browser, server["url"] + "/drops", "#drops-table tr.es-drop-row")
    table = _table(browser)
    shots(browser, "drops-list")
    sql = _sql(server["db"], "SELECT drop_id, verdict, count(DISTINCT path) AS n FROM arrivals GROUP BY ALL")
    from_sql: dict[str, dict[str, int]] = {}
    for r in sql:
        from_sql.setdefault(r["drop_id"], {})[r["verdict"]] = r["n"]
    assert set(table) == set(from_sql) and len(table) == 2
    verdicts = [h for h in next(iter(table.values())) if h not in ("drop", "kind", "started", "paths")]
    for drop_id, row in table.items():
        shown = {v: int(row[v].replace(",", "")) for v in verdicts if row[v] != "·"}
        assert shown == from_sql[drop_id]
    stats = json.loads(run_cli("stats", "--db", str(server["db"]), "--json").stdout)
    totals = {v: sum(int(row[v]) for row in table.values() if row[v] != "·") for v in verdicts}
    assert {v: n for v, n in totals.items() if n} == stats["verdicts"]
    newest, oldest = sorted(table, key=lambda d: table[d]["started"], reverse=True)
    # paged by drop id: one per page, newest first, "older" follows the cursor
    _open(browser, server["url"] + "/drops?per=1", "#drops-table tr.es-drop-row")
    assert list(_table(browser)) == [newest]
    browser.find_element("css selector", "#drops-pager a.es-next").click()
    _wait(browser, lambda d: list(_table(d)) == [oldest], "the older drop")
    assert f"older={newest}" in browser.current_url
    assert not _js(browser, "return document.querySelector('#drops-pager a.es-next')")


def test_a_drop_opens_its_galleries_with_pairs_side_by_side(browser, server, shots):  # noqa: F811
    _open(browser, server["url"] + "/drops", "#drops-table tr.es-drop-row")
    newest = _js(browser, "return document.querySelector('#drops-table tr.es-drop-row').dataset.dropId")
    browser.find_element("css selector", "#drops-table tr.es-drop-row td.es-count-near_dup a").click()
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#drop-gallery .es-pair').length > 0"),
          "the near-duplicate gallery")
    assert f"drop={newest}" in browser.current_url and "verdict=near_dup" in browser.current_url
    _wait(browser, lambda d: _js(d, "return [...document.querySelectorAll('#drop-gallery img')]"
                                    ".every(i => i.complete && i.naturalWidth > 0)"), "the thumbnails")
    pairs = _js(browser, """return [...document.querySelectorAll('#drop-gallery .es-pair')].map(p => ({
        path: p.dataset.path, imgs: p.querySelectorAll('img').length,
        facts: p.querySelector('.es-pair-facts').innerText}));""")
    root = server["root"] / "new"
    near = {str(root / p) for p, vs in server["expected"].items() if "near_dup" in vs}
    assert {p["path"] for p in pairs} == near
    assert all(p["imgs"] == 2 and "cosine distance" in p["facts"] and "rule " in p["facts"] for p in pairs), pairs
    shots(browser, "drops-near-dup-pairs", full_page=True)
    # the tabs open the other galleries: low quality, one card per image, each with its reason
    browser.find_element("css selector", "#drop-verdict-tabs a.es-tab-low_quality").click()
    _wait(browser, lambda d: _js(d, "return document.querySelectorAll('#drop-gallery .es-single').length > 0"),
          "the low-quality gallery")
    low = _js(browser, "return [...document.querySelectorAll('#drop-gallery .es-single')].map(s => s.dataset.path)")
    assert set(low) == {str(root / p) for p, vs in server["expected"].items() if "low_quality" in vs}
    # a gallery pages by row: two per page, no path twice, all of them in the end
    seen: list[str] = []
    _open(browser, server["url"] + f"/drops?drop={newest}&verdict=low_quality&per=2", "#drop-gallery .es-single")
    page_js = "return [...document.querySelectorAll('#drop-gallery .es-single')].map(s => s.dataset.path)"
    while True:
        shown = _js(browser, page_js)
        seen += shown
        nxt = _js(browser, "return document.querySelector('#drops-pager a.es-next')")
        if not nxt:
            break
        nxt.click()
        _wait(browser, lambda d: (_js(d, page_js) or shown) != shown, "the next gallery page")
    assert sorted(seen) == sorted(low) and len(seen) == len(set(seen))
    # a bad id is one line on the page
    _open(browser, server["url"] + "/drops?drop=no-such-drop", "h3")
    assert "no drop 'no-such-drop'" in browser.find_element("css selector", "body").text
