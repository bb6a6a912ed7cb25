"""The report's zero-shot section: the latest ``analyze --zero-shot`` run (the one
``images_latest`` shows) — how many images each tag got, the label disagreements (images whose
folder label names another tag, with the picture, the path and the probability), and per tag
the images it fits best."""

from __future__ import annotations

import html
from typing import Any

from embedscope.analysis.report_html import image_cards, table
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq
from embedscope.store.runs import KIND_ZERO_SHOT, latest_run

DISAGREEMENTS_SHOWN = 60  # most confident first
TOP_PER_TAG = 8


def zero_shot_section(db: Database) -> list[str]:
    """HTML parts (empty when there is no zero-shot run)."""
    run = latest_run(db, kind=KIND_ZERO_SHOT)
    if run is None:
        return []
    p = run.params
    rows = db.read(S.ZERO_SHOT, ["sha256", "tag", "probability", "margin", "label_disagreement"],
                   where=eq("run_id", run.run_id)).to_pandas()
    tags = list(p.get("tags") or sorted(set(rows["tag"])))
    parts = [f"<h2 id=zero-shot>Zero-shot tags</h2><p>Run {html.escape(run.run_id)} over "
             f"<b>{html.escape(str(run.model))}</b>: each image's most probable of {len(tags)} tags, prompt "
             f"<code>{html.escape(str(p.get('prompt')))}</code>, softmax of {p.get('logit_scale')} × cosine. "
             "Only as good as the prompts: a tag that no prompt describes well collects whatever is left.</p>"]
    counts = []
    for tag in tags:
        mine = rows[rows["tag"] == tag]
        counts.append([tag, len(mine), f"{len(mine) / max(len(rows), 1):.1%}",
                       float(mine["probability"].mean()) if len(mine) else None,
                       int(mine["label_disagreement"].fillna(False).sum())])
    parts.append(table(["tag", "images", "share", "mean probability", "label disagreements"], counts))
    parts += _disagreements(db, rows, p)
    parts.append("<h3>Best images per tag</h3>")
    for i, tag in enumerate(tags):
        best = rows[rows["tag"] == tag].sort_values(["probability", "sha256"], ascending=[False, True]).head(TOP_PER_TAG)
        parts.append(f"<h4>{html.escape(tag)}</h4>")
        parts.append(image_cards(db, [(r.sha256, f"p {r.probability:.3f}, margin {r.margin:.3f}")
                                      for r in best.itertuples()], grid_id=f"zero-shot-best-{i}",
                                  empty="no image got this tag"))
    return parts


def _disagreements(db: Database, rows: Any, p: dict[str, Any]) -> list[str]:
    marked = rows[rows["label_disagreement"].fillna(False).astype(bool)]
    marked = marked.sort_values(["probability", "sha256"], ascending=[False, True])
    shown = marked.head(DISAGREEMENTS_SHOWN)
    head = (f"<h3 id=label-disagreements>Label disagreements ({len(marked)})</h3><p>The folder label names one tag, "
            f"the image is another with probability ≥ {p.get('disagreement_min_probability')}: a hint at a wrong label"
            + (f"; the {len(shown)} most confident are shown" if len(marked) > len(shown) else "") + ".</p>")
    return [head, image_cards(db, [(r.sha256, f"zero-shot: {r.tag} (p {r.probability:.3f})")
                                   for r in shown.itertuples()], grid_id="label-disagreement-images")]
