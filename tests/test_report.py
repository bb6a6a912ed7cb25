"""``embedscope report``: the random-weights warning on top, the novel, contaminated and
zero-shot images as cards with their thumbnail and path (equal to what SQL says), and the
parameters as tables, not a JSON dump."""

from __future__ import annotations

import re

import pytest

import embedscope
from tests.conftest import make_photo, run_cli, save_jpeg, vectors_parquet

MODEL = "openclip_vitb32"


def cards(text: str, grid_id: str) -> list[dict[str, str]]:
    """The cards of one grid of the report: sha256, path, whether it has a thumbnail."""
    start = text.index(f"id={grid_id}>")
    end = text.find("<h", start)
    grid = text[start:end if end > 0 else len(text)]
    found = re.findall(r'<div class=card data-sha256="([0-9a-z_]+)">(<img[^>]*>|<div class=none>[^<]*</div>)'
                       r'<div class=path[^>]*>([^<]*)</div>', grid)
    return [{"sha256": s, "thumb": img.startswith("<img") and "data:image/jpeg;base64," in img, "path": p}
            for s, img, p in found]


@pytest.fixture(scope="module")
def clip_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    for i in range(16):
        save_jpeg(make_photo(i, (150 + 5 * i, 110)), tmp / "drop" / ("cats" if i % 2 else "dogs") / f"{i}.jpg")
    db = tmp / "db"
    run_cli("ingest", str(tmp / "drop"), "--db", str(db), "--model", MODEL, "--weights", "random",
            "--label-from-folder", "--batch-size", "8")
    run_cli("analyze", "--db", str(db), "--project", "pca", "--cluster", "kmeans", "--k", "2")
    run_cli("analyze", "--db", str(db), "--zero-shot", "cat,dog,x-ray")
    out = tmp / "report.html"
    run_cli("report", "--db", str(db), "--out", str(out))
    return {"db": db, "text": out.read_text(), "es": embedscope.open(db)}


def test_random_weights_warning_comes_first(clip_report):
    text = clip_report["text"]
    assert "id=random-weights-warning" in text
    assert text.index("id=random-weights-warning") < text.index("<h2")
    assert MODEL in text[text.index("id=random-weights-warning"):text.index("<h2")]


def test_novel_images_are_cards_with_thumbnail_and_path(clip_report):
    es = clip_report["es"]
    got = cards(clip_report["text"], "novel-images")
    top = es.sql("""SELECT f.sha256, i.path FROM flags f JOIN images i USING (sha256)
                    WHERE run_id = (SELECT run_id FROM runs WHERE kind = 'analyze')
                    ORDER BY novelty_score DESC, sha256 LIMIT 12""")
    assert [c["sha256"] for c in got] == list(top["sha256"])
    assert [c["path"] for c in got] == list(top["path"]) and all(c["thumb"] for c in got)


def test_zero_shot_counts_disagreements_and_best_images_equal_sql(clip_report):
    es, text = clip_report["es"], clip_report["text"]
    rows = es.sql("SELECT z.*, i.path FROM zero_shot z JOIN images i USING (sha256)")
    for tag in ("cat", "dog", "x-ray"):
        n = int((rows["tag"] == tag).sum())
        assert re.search(rf"<tr><td class=k>{re.escape(tag)}</td><td>{n}</td>", text), (tag, n)
    marked = rows[rows["label_disagreement"]].sort_values(["probability", "sha256"], ascending=[False, True])
    assert len(marked) > 0  # random weights: one tag wins nearly everything, so half the labels disagree
    got = cards(text, "label-disagreement-images")
    assert [c["sha256"] for c in got] == list(marked["sha256"])
    assert [c["path"] for c in got] == list(marked["path"]) and all(c["thumb"] for c in got)
    for i, tag in enumerate(("cat", "dog", "x-ray")):
        best = rows[rows["tag"] == tag].sort_values(["probability", "sha256"], ascending=[False, True]).head(8)
        assert [c["sha256"] for c in cards(text, f"zero-shot-best-{i}")] == list(best["sha256"])


def test_parameters_are_tables_not_json(clip_report):
    text = clip_report["text"]
    params = text[text.index("id=parameters"):]
    assert "<pre>" not in text and '{"model"' not in params
    assert re.search(r"<td class=k>k_resolved</td><td>2</td>", params)
    assert re.search(r"<h3>novelty</h3><table class=params>.*<td class=k>rule</td><td>zscore</td>", params)
    assert re.search(r"<h3>methods info</h3><table class=params><tr><th class=k></th><th>method</th>", params)


def test_contaminated_images_are_listed_with_a_placeholder_without_thumbnails(tmp_path):
    from embedscope.analysis.synthetic import make_blobs

    syn = make_blobs(n_per_blob=60, n_blobs=4, n_planted=12, n_outliers=10, n_dups=2, seed=7)
    db = tmp_path / "db"
    run_cli("ingest-vectors", str(vectors_parquet(tmp_path / "v.parquet", syn.ids, syn.X, syn.labels)),
            "--db", str(db), "--model", "syn")
    run_cli("analyze", "--db", str(db), "--project", "pca", "--cluster", "kmeans", "--k", "4")
    run_cli("report", "--db", str(db), "--out", str(tmp_path / "r.html"))
    text = (tmp_path / "r.html").read_text()
    assert "random-weights-warning" not in text  # imported vectors
    contaminated = embedscope.open(db).sql("SELECT sha256 FROM flags WHERE is_contaminated")["sha256"]
    assert 0 < len(contaminated) <= 24
    got = cards(text, "contaminated-images")
    assert sorted(c["sha256"] for c in got) == sorted(contaminated)
    assert not any(c["thumb"] for c in got) and "no thumbnail" in text


def test_flags_zero_shot_filters_equal_sql(clip_report):
    """The Flags page's zero-shot parts (the disagreement gallery, the sidebar's zero-shot tag
    filter and its options) against images_latest."""
    from embedscope.dashboard import shaping, sidebar
    from embedscope.dashboard.pages import flags
    from embedscope.store.db import Database
    from embedscope.store.runs import latest_run

    db, es = Database(clip_report["db"]), clip_report["es"]
    latest = es.sql("SELECT sha256, path, label, zero_shot_tag, zero_shot_probability, label_disagreement "
                    "FROM images_latest")
    marked = latest[latest["label_disagreement"]].sort_values(["zero_shot_probability", "sha256"],
                                                              ascending=[False, True])
    context = sidebar.sidebar_context(db, latest_run(db))

    def gallery(kind: str, **values) -> list[dict]:
        records = sidebar.matching(db, context, flags.flag_where(kind, values),
                                   order_by=shaping.FLAG_ORDER[kind]).to_pylist()
        return shaping.flag_card_rows(kind, records)

    rows = gallery("label_disagreement")
    assert [r["sha256"] for r in rows] == list(marked["sha256"]) and len(rows) > 0
    assert [r["path"] for r in rows] == list(marked["path"])
    assert all("contradicts the label" in r["reason"] for r in rows)
    dogs = gallery("label_disagreement", label=["dogs"])
    assert [r["sha256"] for r in dogs] == list(marked[marked["label"] == "dogs"]["sha256"])
    for tag in ("cat", "dog"):
        kept = sidebar.matching(db, context, sidebar.filter_where({"zero_shot_tag": [tag]}), columns="sha256")
        assert set(kept.column("sha256").to_pylist()) == set(latest[latest["zero_shot_tag"] == tag]["sha256"])

    options = sidebar.zero_shot_tag_options(db, context)
    counts = latest["zero_shot_tag"].value_counts()
    assert [(o["value"], o["label"]) for o in options] == [(t, f"{t} ({int(counts.get(t, 0))})")
                                                            for t in ("cat", "dog", "x-ray")]
