"""``embedscope report --drop latest|ID``: what arrived in one drop and the verdict on each
image, as one self-contained HTML file (thumbnails side by side for every pair, counts per
verdict, the reasons, the calibration used) or as JSON."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from embedscope.analysis.verdicts import VERDICTS
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.drops import drop_arrivals, drop_or_latest
from embedscope.store.filters import isin

REPORT_ORDER = (  # the report's and the Drops page's order: what needs action first
    "leak", "label_conflict", "exact_dup", "near_dup", "low_quality", "quarantined", "novel", "new")
_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1150px}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}th{background:#f3f3f3}"
          "img{max-width:150px;max-height:150px;display:block}.p{font-size:11px;color:#555;word-break:break-all;"
          "max-width:220px}.v{font-weight:bold}pre{font-size:11px}")


def drop_report_data(db: Database, drop: str | None = None) -> dict[str, Any]:
    """The drop row, its ``arrivals`` grouped by path (each path with all its verdicts) and its
    group sizes (images sharing one earlier partner: a star)."""
    d = drop_or_latest(db, drop)
    rows = drop_arrivals(db, d["drop_id"])
    images: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = images.setdefault(r["path"], {"path": r["path"], "sha256": r["sha256"], "label": r["label"],
                                              "split": r["split"], "verdicts": []})
        entry["verdicts"].append({k: r[k] for k in ("verdict", "reason", "partner_sha256", "partner_path",
                                                    "cosine", "hamming")})
    stars: dict[str, int] = {}
    for r in rows:
        if r["verdict"] in ("exact_dup", "near_dup") and r["partner_path"]:
            stars[r["partner_path"]] = stars.get(r["partner_path"], 0) + 1
    return {"drop": {k: v for k, v in d.items()}, "counts": d["counts"], "images": list(images.values()),
            "largest_group": 1 + max(stars.values(), default=0) if stars else 0}


def write_drop_report(db: Database, *, drop: str | None = None, out: str | Path = "drop-report.html",
                      as_json: bool = False) -> Path:
    """Write the report of ``drop`` (default the latest) to ``out`` (HTML, or JSON)."""
    data = drop_report_data(db, drop)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if as_json:
        return _write_whole(out, json.dumps(data, indent=1, default=str))
    shas = {i["sha256"] for i in data["images"]} | {v["partner_sha256"] for i in data["images"]
                                                    for v in i["verdicts"] if v["partner_sha256"]}
    thumbs = _thumbnails(db, shas)
    d = data["drop"]
    parts = [f"<h1>Drop {html.escape(d['drop_id'])}</h1>",
             f"<p>{html.escape(str(d['kind']))} of {html.escape(', '.join(d['sources']) or '—')}: "
             f"<b>{d['n_images']}</b> paths checked against <b>{html.escape(str(d['model']))}/"
             f"{html.escape(str(d['variant']))}</b>, {d['started_at']} → {d['finished_at']}. "
             f"Largest duplicate group (a star around one earlier image): {data['largest_group']}.</p>",
             _counts_table(data["counts"])]
    for verdict in REPORT_ORDER:
        chosen = [i for i in data["images"] if any(v["verdict"] == verdict for v in i["verdicts"])]
        if chosen:
            parts.append(f"<h2 id='{verdict}'>{verdict} ({len(chosen)})</h2>")
            parts.append(_verdict_table(verdict, chosen, thumbs))
    parts.append("<h2>Calibration and rules</h2><pre>" + html.escape(json.dumps(d["params"], indent=1, default=str))
                 + "</pre>")
    return _write_whole(out, f"<!doctype html><html><head><meta charset='utf-8'><title>embedscope drop "
                             f"{html.escape(d['drop_id'])}</title><style>{_STYLE}</style></head><body>"
                             f"{''.join(parts)}</body></html>")


def _write_whole(out: Path, text: str) -> Path:
    """Write ``out`` under a temporary name, then rename it: a reader (``watch --report-dir``'s
    consumers) sees the whole file or none."""
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    return out


def _counts_table(counts: dict[str, int]) -> str:
    cells = "".join(f"<tr><td class='v'><a href='#{v}'>{v}</a></td><td>{counts.get(v, 0)}</td></tr>"
                    for v in VERDICTS)
    return f"<table><tr><th>verdict</th><th>paths</th></tr>{cells}</table>"


def _verdict_table(verdict: str, images: list[dict[str, Any]], thumbs: dict[str, str]) -> str:
    paired = verdict in ("exact_dup", "near_dup", "label_conflict", "leak")
    head = "<tr><th>arrived</th>" + ("<th>earlier image</th>" if paired else "") + "<th>why</th></tr>"
    body = []
    for img in images:
        v = next(v for v in img["verdicts"] if v["verdict"] == verdict)
        others = ", ".join(x["verdict"] for x in img["verdicts"] if x["verdict"] != verdict)
        cell = _image_cell(thumbs.get(img["sha256"]), img["path"], img["label"], img["split"])
        partner = (_image_cell(thumbs.get(v["partner_sha256"] or ""), v["partner_path"] or "", None, None)
                   if paired else "")
        why = html.escape(v["reason"] or "") + (f"<br><i>also: {html.escape(others)}</i>" if others else "")
        body.append(f"<tr>{cell}{partner}<td>{why}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def _image_cell(thumb: str | None, path: str, label: str | None, split: str | None) -> str:
    img = f"<img alt='thumbnail' src='data:image/jpeg;base64,{thumb}'>" if thumb else "<i>no thumbnail</i>"
    tags = " · ".join(t for t in (f"label {label}" if label else "", f"split {split}" if split else "") if t)
    return f"<td>{img}<div class='p'>{html.escape(path)}</div><div class='p'>{html.escape(tags)}</div></td>"


def _thumbnails(db: Database, shas: set[str]) -> dict[str, str]:
    shas = {s for s in shas if s}
    if not shas:
        return {}
    t = db.read(S.IMAGES, ["sha256", "thumbnail"], where=isin("sha256", sorted(shas)))
    return {s: base64.b64encode(b).decode() for s, b in zip(t.column("sha256").to_pylist(),
                                                             t.column("thumbnail").to_pylist()) if b}
