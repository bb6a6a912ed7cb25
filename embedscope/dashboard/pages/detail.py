"""Image detail (/detail?sha=<key>, a sha256 or an imported id; ?run= picks the run): the image, metadata, every source path, masks,
clusters, novelty/contamination with reasons, embeddings, and the nearest neighbours."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dash import Input, Output, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, curation, ids, run_picker, shaping


def layout(sha: str | None = None, run: str | None = None, **_: Any) -> Any:
    from embedscope.errors import EmbedscopeError
    from embedscope.store import views
    from embedscope.store.runs import run_or_latest

    ctx = context.current()
    if not sha:
        return html.Div([html.H3("Image"), C.notice("Open an image from the map, a gallery or a SQL result "
                                                    "(this page takes ?sha=<image id>).", kind="warn")], id=ids.DETAIL_ROOT)
    db = ctx.db()
    try:
        r = run_or_latest(db, run)
        d = views.image_detail(db, sha, r.run_id if r else None)
    except EmbedscopeError as exc:
        return html.Div([html.H3("Image"), C.notice(exc.one_line(), kind="error", id=ids.DETAIL_ERROR)], id=ids.DETAIL_ROOT)
    img, flags = d["image"], d["flags"] or {}
    has_mask = any(not m.get("fallback") for m in d["masks"])
    try:
        near = views.neighbours(db, sha, k=max(12, ctx.neighbours_k), model=r.model if r else None,
                                variant=(r.variant if r else None) or "full", cache=ctx.search)
        near_note = None
    except EmbedscopeError as exc:
        near, near_note = [], exc.one_line()
    why = shaping.flag_reasons(flags)

    def fmt(v: Any) -> Any:
        return f"{v:.4f}" if isinstance(v, float) else v

    return html.Div([
        html.H3(f"Image {shaping.image_name(sha, img.get('path'))}"),
        run_picker.run_picker(db, r, page="/detail") if r else None,
        html.Div([
            html.Div([
                html.Img(id=ids.DETAIL_IMAGE, src=C.image_url(sha), style={"width": "100%", "maxWidth": "640px", "height": "auto"}),
                dcc.Checklist(id=ids.DETAIL_OVERLAY, options=[{"label": " show SAM2 mask overlay", "value": "mask"}],
                              value=[]) if has_mask else html.Div("no SAM2 mask stored", style={"fontSize": "12px", "color": "#777"}),
                dcc.Store(id=ids.DETAIL_SHA, data=sha),
            ], style={"flex": "0 0 45%"}),
            html.Div([
                html.H4("Metadata"),
                C.kv_table([("sha256", sha), ("label", img.get("label")), ("size", f"{img.get('width')}×{img.get('height')} px"),
                            ("format", img.get("format")), ("bytes", img.get("size_bytes")),
                            ("ingested", img.get("ingested_at")), ("perceptual hash", img.get("phash"))]),
                html.H4("Source paths"),
                html.Ul([html.Li(f"{s['path']}  (drop {s.get('drop')}, seen {s.get('seen_at')})") for s in d["sources"]],
                        id=ids.DETAIL_SOURCES, style={"fontSize": "13px"}),
                html.H4("Tags"),
                curation.image_tag_panel(db, sha),
                html.H4("Embeddings"),
                html.Ul([html.Li(f"{e['model']}/{e['variant']} · dim {e['dim']} · weights {e['weights']}") for e in d["embeddings"]],
                        style={"fontSize": "13px"}),
                dcc.Link("open in the Embeddings view →", href=f"/embeddings?sha={quote(sha, safe='')}"),
                html.Span(" · "),
                dcc.Link("within-image patches →", href=f"/patches?sha={quote(sha, safe='')}"),
                html.H4("Masks"),
                html.Ul([html.Li(f"{m['model']} · area {fmt(m.get('area_fraction'))} · score {fmt(m.get('score'))}"
                                 f"{' · fallback: ' + (m.get('reason') or '') if m.get('fallback') else ''}") for m in d["masks"]]
                        or [html.Li("none")], style={"fontSize": "13px"}),
                html.H4("Analysis" + (f" (run {r.title()})" if r else "")),
                C.kv_table([("clusters", ", ".join(f"{c['method']} {c['cluster']}" for c in d["clusters"]) or None),
                            ("novelty score", fmt(flags.get("novelty_score"))), ("surprise", fmt(flags.get("surprise"))),
                            ("centroid / kNN / GLOSH", " / ".join(str(fmt(flags.get(k))) for k in
                                                                  ("centroid_score", "knn_score", "glosh_score"))
                             if flags else None),
                            ("why flagged", "; ".join(why) if why else ("not flagged" if flags else "no analysis"))]),
            ], style={"flex": "1 1 55%", "paddingLeft": "16px"}),
        ], style={"display": "flex"}),
        html.H4(f"{len(near)} nearest neighbours (cosine similarity)"),
        C.notice(near_note, kind="error") if near_note else None,
        C.neighbour_gallery(near, gallery_id=ids.DETAIL_NEIGHBOURS, empty="nothing to show"),
        html.Div(dcc.Link("search similar by an uploaded image →", href="/search", id=ids.DETAIL_SEARCH_UPLOAD),
                 style={"fontSize": "13px", "marginTop": "8px"}),
    ], id=ids.DETAIL_ROOT)


def register_callbacks(app: Any, ctx: Any) -> None:
    curation.register_image_callbacks(app, ctx)

    @app.callback(Output(ids.DETAIL_IMAGE, "src"), Input(ids.DETAIL_OVERLAY, "value"), Input(ids.DETAIL_SHA, "data"),
                  prevent_initial_call=True)
    def _overlay(value: list[str] | None, sha: str) -> str:
        return f"/overlay/{quote(sha, safe='')}" if value and "mask" in value else C.image_url(sha)
