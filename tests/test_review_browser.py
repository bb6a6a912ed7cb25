"""Browser tier for the Review page: in real Chromium, keep the right side of a near-duplicate
pair (the tags table gets exclude on the left, keep on the right, reviewed on both, and the real
`embedscope export` then leaves the left out with the reason); the planted label conflict is
listed with the count SQL gives, and relabelled from the page."""

from __future__ import annotations

import csv

import pytest

from embedscope.store.db import Database
from embedscope.store.sql import run_sql
from embedscope.store.tags import current_tags, tag_log
from tests.conftest import run_cli
from tests.test_curation_browser import server  # noqa: F401  (a private copy of the dashboard db, per module)
from tests.test_dashboard_browser import _js, _wait
from tests.test_dashboard_browser import browser, shots  # noqa: F401  (fixtures; `browser` uses this module's `server`)

pytestmark = pytest.mark.browser


def _open(driver, server, queue: str) -> None:
    driver.get(server["url"] + f"/review?queue={queue}")
    _wait(driver, lambda d: d.find_element("id", "review-page-text").text.strip() != "", f"the {queue} queue")


def _n(db: Database, sql: str) -> int:
    return run_sql(db, sql).column("n")[0].as_py()


def test_keep_right_of_a_near_duplicate_pair(browser, server, shots, tmp_path):  # noqa: F811
    db = Database(server["db"])
    n_pairs = _n(db, "SELECT count(*) AS n FROM (SELECT DISTINCT sha_a, sha_b FROM pairs WHERE kind = 'near')")
    _open(browser, server, "pairs")
    cards = _wait(browser, lambda d: d.find_elements("css selector", ".es-pair"), "a pair card")
    assert len(cards) == n_pairs
    assert browser.find_element("id", "review-page-text").text.startswith(f"1–{n_pairs} of {n_pairs}")
    assert len(cards[0].find_elements("css selector", "img")) == 2
    left, right = cards[0].get_attribute("data-left"), cards[0].get_attribute("data-right")
    assert "labels differ" in cards[0].text and "cosine distance" in cards[0].text and "phash Hamming" in cards[0].text
    shots(browser, "review-01-pairs", full_page=True)

    cards[0].find_element("css selector", ".es-pair-keep_right").click()
    _wait(browser, lambda d: d.find_element("id", "review-status").text.startswith("keep right:"), "the status line")
    _wait(browser, lambda d: "nothing to review here" in d.find_element("id", "review-content").text,
          "the pair to leave the queue")
    tags = {(r["sha256"], r["tag"]): r["note"] for r in current_tags(db).to_pylist()}
    assert set(tags) == {(left, "exclude"), (right, "keep"), (left, "reviewed"), (right, "reviewed")}
    assert tags[(left, "exclude")].startswith(f"near-duplicate of {right}, cosine distance")
    assert {r["source"] for r in tag_log(db).to_pylist()} == {"dashboard"}
    shots(browser, "review-02-pair-decided")

    out = tmp_path / "export"
    run_cli("export", "--db", str(server["db"]), "--out", str(out), "--exclude-flags", "near_dup")
    excluded = list(csv.DictReader((out / "excluded.csv").open(newline="")))
    assert [(r["sha256"], r["reason"]) for r in excluded] == [(left, "tag:exclude")]
    assert excluded[0]["detail"].startswith(f"near-duplicate of {right}")
    assert right in {r["sha256"] for r in csv.DictReader((out / "kept.csv").open(newline=""))}


def test_label_conflict_listed_and_relabelled(browser, server, shots):  # noqa: F811
    db = Database(server["db"])
    n_conflicts = _n(db, "SELECT count(*) AS n FROM label_conflicts")
    assert n_conflicts == 1
    _open(browser, server, "conflicts")
    cards = _wait(browser, lambda d: d.find_elements("css selector", ".es-conflict"), "a conflict card")
    assert len(cards) == n_conflicts and "label conflicts: 1" in browser.find_element("id", "review-counts").text
    sha = cards[0].get_attribute("data-sha256")
    assert "cats" in cards[0].text and "dogs" in cards[0].text
    shots(browser, "review-03-label-conflicts", full_page=True)
    # choose "dogs" in the card's dropdown, then relabel
    cards[0].find_element("css selector", ".Select, .dash-dropdown").click()
    option = _wait(browser, lambda d: [o for o in d.find_elements("css selector", "[role=option], .VirtualizedSelectOption")
                                      if o.text.strip() == "dogs"], "the dogs option")
    option[0].click()
    cards[0].find_element("css selector", ".es-relabel").click()
    _wait(browser, lambda d: d.find_element("id", "review-status").text.startswith("relabel:dogs"), "the status line")
    tags = {(r["sha256"], r["tag"]) for r in current_tags(db).to_pylist()}
    assert {(sha, "relabel:dogs"), (sha, "reviewed")} <= tags
    _js(browser, "window.scrollTo(0, 0)")


def test_novel_queue_count_and_bulk_tag_of_the_page(browser, server, shots):  # noqa: F811
    from tests.test_dashboard_browser import _type

    db = Database(server["db"])
    novel = set(run_sql(db, "SELECT sha256 FROM images_latest WHERE is_novel").column("sha256").to_pylist())
    _open(browser, server, "novel")
    cards = _wait(browser, lambda d: d.find_elements("css selector", ".es-flagged") if novel else [True], "novel cards")
    assert {c.get_attribute("data-sha256") for c in cards} == novel
    assert f"novel: {len(novel)}" in browser.find_element("id", "review-counts").text
    assert all("novelty" in c.text for c in cards)
    shots(browser, "review-04-novel", full_page=True)
    _type(browser.find_element("id", "review-bulk-tag"), "odd-ones")
    browser.find_element("id", "review-bulk-add").click()
    _wait(browser, lambda d: d.find_element("id", "review-status").text.startswith("every image on this page"),
          "the status line")
    assert {r["sha256"] for r in current_tags(db).to_pylist() if r["tag"] == "odd-ones"} == novel
