"""The Drops page's pieces (no data access): the drop table with its counts per verdict, the
verdict tabs of one drop and its gallery — a duplicate shown beside the earlier image it
duplicates, with the distance and the rule. Every link carries row ids (drop id, verdict,
page), so a page is a URL; the page's ids live here (the page is one module with its helper)."""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import urlencode

from dash import dcc, html

from embedscope.dashboard import components as C

DROPS_TABLE = "drops-table"
DROPS_PAGER = "drops-pager"
DROP_TABS = "drop-verdict-tabs"
DROP_GALLERY = "drop-gallery"
DROP_SUMMARY = "drop-summary"

PAIRED = ("exact_dup", "near_dup", "label_conflict", "leak")  # shown beside their earlier partner
_CELL = {"border": "1px solid #ddd", "padding": "3px 8px", "fontSize": "13px", "textAlign": "right"}
_HEAD = {**_CELL, "background": "#f3f3f3", "textAlign": "center"}


def href(**params: Any) -> str:
    """``/drops`` with the given query parameters (None ones left out)."""
    kept = {k: v for k, v in params.items() if v is not None}
    return "/drops" + (f"?{urlencode(kept)}" if kept else "")


def drops_table(drops: Sequence[dict[str, Any]], verdicts: Sequence[str]) -> html.Table:
    """One row per drop (newest first): id (opens the drop), kind, start, paths, then the paths
    per verdict, each count opening that verdict's gallery."""
    head = html.Tr([html.Th(t, style=_HEAD) for t in ("drop", "kind", "started", "paths", *verdicts)])
    rows = []
    for d in drops:
        counts = d["counts"]
        cells = [html.Td(dcc.Link(d["drop_id"], href=href(drop=d["drop_id"])), style={**_CELL, "textAlign": "left"}),
                 html.Td(d["kind"], style={**_CELL, "textAlign": "left"}),
                 html.Td(_when(d["started_at"]), style={**_CELL, "textAlign": "left"}),
                 html.Td(f"{d['n_images']:,}", style=_CELL)]
        for v in verdicts:
            n = counts.get(v, 0)
            cells.append(html.Td(dcc.Link(f"{n:,}", href=href(drop=d["drop_id"], verdict=v)) if n else "·",
                                 style=_CELL, className=f"es-count es-count-{v}"))
        rows.append(html.Tr(cells, className="es-drop-row", **{"data-drop-id": d["drop_id"]}))
    return html.Table([head, *rows], id=DROPS_TABLE, style={"borderCollapse": "collapse", "margin": "8px 0"})


def pager(prev_href: str | None, next_href: str | None, text: str, *, prev: str = "← newer",
          next: str = "older →") -> html.Div:
    links = [dcc.Link(prev, href=prev_href, className="es-prev") if prev_href else html.Span(prev, style={"color": "#aaa"}),
             html.Span(text, style={"margin": "0 14px"}),
             dcc.Link(next, href=next_href, className="es-next") if next_href else html.Span(next, style={"color": "#aaa"})]
    return html.Div(links, id=DROPS_PAGER, style={"fontSize": "13px", "margin": "6px 0"})


def drop_summary(d: dict[str, Any]) -> html.Div:
    sources = ", ".join(d["sources"]) or "—"
    calib = (d["params"] or {}).get("calibration") or {}
    near = f"; near-duplicate threshold {calib['near']:.4g} ({calib.get('source')})" if calib.get("near") else ""
    return html.Div(f"{d['kind']} of {sources}: {d['n_images']:,} paths checked against {d['model']}/{d['variant']}, "
                    f"{_when(d['started_at'])} → {_when(d['finished_at'])}{near}",
                    id=DROP_SUMMARY, style={"fontSize": "13px", "margin": "4px 0"})


def verdict_tabs(drop_id: str, counts: dict[str, int], order: Sequence[str], current: str) -> html.Div:
    tabs = []
    for v in order:
        n = counts.get(v, 0)
        label = f"{v} ({n:,})"
        style = {"marginRight": "14px", "fontWeight": "bold" if v == current else "normal"}
        tabs.append(dcc.Link(label, href=href(drop=drop_id, verdict=v), style=style, className=f"es-tab es-tab-{v}")
                    if n else html.Span(label, style={**style, "color": "#aaa"}))
    return html.Div(tabs, id=DROP_TABS, style={"margin": "8px 0"})


def verdict_gallery(rows: Sequence[dict[str, Any]], verdict: str, known: set[str]) -> html.Div:
    """The gallery of one verdict; ``known``: the sha256s with a stored thumbnail."""
    items = [_pair(r, known) if verdict in PAIRED and r.get("partner_sha256") else _single(r, known) for r in rows]
    return html.Div(items or [html.Em("nothing with this verdict")], id=DROP_GALLERY)


def _pair(r: dict[str, Any], known: set[str]) -> html.Div:
    facts = [f"cosine distance {r['cosine']:.4f}" if r.get("cosine") is not None else None,
             f"phash {r['hamming']} bits" if r.get("hamming") is not None else None,
             f"rule {r['rule']}" if r.get("rule") else None]
    return html.Div([
        html.Div([_card(r["sha256"], r["path"], ["arrived", r.get("label"), r.get("split")], known),
                  html.Div("≈" if r["verdict"] != "exact_dup" else "=", style={"fontSize": "28px", "padding": "50px 6px"}),
                  _card(r["partner_sha256"], r["partner_path"], ["earlier"], known)],
                 style={"display": "flex", "alignItems": "flex-start"}),
        html.Div(" · ".join(f for f in facts if f), className="es-pair-facts", style={"fontWeight": "bold"}),
        _reason(r)],
        className="es-pair", **{"data-path": r["path"], "data-sha256": r["sha256"]},
        style={"display": "inline-block", "verticalAlign": "top", "width": "322px", "margin": "6px",
               "padding": "4px", "border": "1px solid #ccc", "borderRadius": "4px", "fontSize": "11px"})


def _single(r: dict[str, Any], known: set[str]) -> html.Div:
    return html.Div([_card(r["sha256"], r["path"], [r.get("label"), r.get("split")], known), _reason(r)],
                    className="es-single", **{"data-path": r["path"], "data-sha256": r["sha256"]},
                    style={"display": "inline-block", "verticalAlign": "top", "width": "150px", "margin": "6px",
                           "fontSize": "11px"})


def _card(sha: str | None, path: str | None, caption: Sequence[str | None], known: set[str]) -> html.Div:
    if sha and sha in known:
        return C.thumb_card(sha, [c for c in caption if c], path=path)
    return html.Div([html.Em("no image"), html.Div(path or "", style={"fontWeight": "bold"}),
                     *[html.Div(c) for c in caption if c]], style=C.CARD_STYLE)


def _reason(r: dict[str, Any]) -> html.Div:
    also = f" (also: {', '.join(r['also'])})" if r.get("also") else ""
    return html.Div((r.get("reason") or "") + also, style={"overflowWrap": "anywhere", "color": "#444"})


def _when(ts: Any) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S") if hasattr(ts, "strftime") else str(ts or "—")
