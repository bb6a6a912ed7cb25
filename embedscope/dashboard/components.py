"""Small reusable pieces of page layout (thumbnail cards, galleries, key/value tables)."""

from __future__ import annotations

from typing import Any, Sequence
from urllib.parse import quote

from dash import html

from embedscope.dashboard.shaping import cluster_name, image_name

CARD_STYLE = {"display": "inline-block", "width": "132px", "margin": "4px", "verticalAlign": "top",
              "fontSize": "11px", "border": "1px solid #ddd", "borderRadius": "4px", "padding": "3px",
              "background": "white", "overflowWrap": "anywhere"}
THUMB_STYLE = {"maxWidth": "124px", "maxHeight": "124px", "display": "block", "margin": "auto"}


def detail_href(sha256: str, run_id: str | None = None) -> str:
    """The image page of a stored key (a sha256 or an imported id), for a run when given."""
    return f"/detail?sha={quote(sha256, safe='')}" + (f"&run={quote(run_id, safe='')}" if run_id else "")


def thumb_url(sha256: str) -> str:
    """/thumb/<key>: the thumbnail, or a placeholder for an image that has none."""
    return f"/thumb/{quote(sha256, safe='')}"


def image_url(sha256: str) -> str:
    return f"/image/{quote(sha256, safe='')}"


def thumb_card(sha256: str, caption: Sequence[str] = (), *, path: str | None = None, class_name: str = "es-thumb",
               run_id: str | None = None) -> html.Div:
    """A thumbnail (loaded from /thumb/<key>, i.e. on demand) linking to the image's detail page
    (for ``run_id`` when given)."""
    name = image_name(sha256, path)
    return html.Div(
        [html.A(html.Img(src=thumb_url(sha256), style=THUMB_STYLE, title=path or sha256, alt=name),
                href=detail_href(sha256, run_id)),
         html.Div(name, style={"fontWeight": "bold"}),
         *[html.Div(c) for c in caption if c]],
        className=class_name, style=CARD_STYLE, **{"data-sha256": sha256})


def _css(style: dict[str, str]) -> str:
    return ";".join(f"{''.join('-' + c.lower() if c.isupper() else c for c in k)}:{v}" for k, v in style.items())


def thumb_cards_html(cards: Sequence[tuple[str, str, Sequence[str], str | None]], *, gallery_id: str,
                     empty: str = "nothing to show") -> Any:
    """A gallery of ``(sha256, picture url, caption, path)`` cards, like :func:`thumb_card`'s,
    as one block of markup: one Dash component, not five per card (Dash's renderer takes ~1 s
    for the 300 components of a 60-card page on 2 cores). ``dcc.Markdown`` renders it with a
    JSX parser, so every value is escaped for HTML and for JSX's braces."""
    from dash import dcc

    if not cards:
        return gallery([], gallery_id=gallery_id, empty=empty)
    card, img = _css(CARD_STYLE), _css(THUMB_STYLE)
    parts = []
    for sha, src, caption, path in cards:
        name = _markup(image_name(sha, path))
        lines = "".join(f"<div>{_markup(c)}</div>" for c in caption if c)
        parts.append(f'<div className="es-thumb" style="{card}" data-sha256="{_markup(sha)}">'
                     f'<a href="{_markup(detail_href(sha))}"><img src="{_markup(src)}" style="{img}" '
                     f'title="{_markup(path or sha)}" alt="{name}" /></a>'
                     f'<div style="font-weight:bold">{name}</div>{lines}</div>')
    return dcc.Markdown(f'<div id="{_markup(gallery_id)}">{"".join(parts)}</div>', dangerously_allow_html=True)


def _markup(text: str) -> str:
    """``text`` safe inside HTML/JSX text and quoted attributes."""
    from html import escape

    return escape(str(text), quote=True).replace("{", "&#123;").replace("}", "&#125;")


def similarity_text(value: float) -> str:
    """``similarity 0.8734``; too close to 1 to tell apart at 4 digits (as with random-weight
    embeddings), the cosine distance instead: ``distance 2.4e-07``."""
    return f"distance {max(0.0, 1.0 - value):.1e}" if value > 0.9995 else f"similarity {value:.4f}"


def gallery(cards: Sequence[Any], *, gallery_id: str | None = None, empty: str = "nothing to show") -> html.Div:
    kwargs = {"id": gallery_id} if gallery_id else {}
    return html.Div(list(cards) if cards else [html.Em(empty)], **kwargs)


def kv_table(rows: Sequence[tuple[str, Any]]) -> html.Table:
    return html.Table([html.Tr([html.Th(k, style={"textAlign": "left", "paddingRight": "12px", "verticalAlign": "top"}),
                                html.Td(str(v) if v is not None else "—")]) for k, v in rows],
                      style={"fontSize": "13px", "borderCollapse": "collapse"})


def notice(text: str, *, kind: str = "info", **kwargs: Any) -> html.Div:
    colours = {"info": ("#eef5ff", "#9cc3ff"), "warn": ("#fff4e5", "#ffb74d"), "error": ("#fdecea", "#ef9a9a")}
    bg, border = colours.get(kind, colours["info"])
    return html.Div(text, style={"background": bg, "border": f"1px solid {border}", "padding": "6px 10px",
                                 "borderRadius": "4px", "margin": "6px 0", "fontSize": "13px"}, **kwargs)


def message_page(title: str, text: str, *, kind: str = "warn", **kwargs: Any) -> html.Div:
    """A page that only says why it has nothing to show (e.g. an unknown ``?run=`` id)."""
    return html.Div([html.H3(title), notice(text, kind=kind, **kwargs)])


def neighbour_gallery(near: Sequence[dict[str, Any]], *, gallery_id: str, empty: str = "no neighbours") -> html.Div:
    """Thumbnail cards of nearest neighbours (``sha256``, ``path``, ``label``, ``similarity``)."""
    return gallery([thumb_card(n["sha256"], [n.get("label"), similarity_text(n["similarity"])], path=n.get("path"),
                               class_name="es-thumb es-neighbour") for n in near], gallery_id=gallery_id, empty=empty)


def map_tooltip(sha256: str, row: dict[str, Any] | None) -> html.Div:
    """The map's hover card: thumbnail, file name and label of one image."""
    from embedscope.dashboard import ids

    row = row or {}
    return html.Div([html.Img(src=thumb_url(sha256), style={"maxWidth": "160px", "maxHeight": "160px"}),
                     html.Div(image_name(sha256, row.get("path")), style={"fontSize": "12px"}),
                     html.Div(row.get("label") or "", style={"fontSize": "11px", "color": "#666"}) if row else None],
                    id=ids.MAP_TOOLTIP_CONTENT, **{"data-sha256": sha256})


def point_panel(sha256: str, detail: dict[str, Any], near: Sequence[dict[str, Any]]) -> html.Div:
    """Thumbnail, file name, clusters and novelty of one image (``views.image_detail``), with
    its nearest neighbours."""
    from dash import dcc

    from embedscope.dashboard import ids

    img = detail["image"]
    clusters = ", ".join(f"{c['method']} {c['cluster']}" for c in detail["clusters"]) or "—"
    flags = detail["flags"] or {}
    return html.Div([
        html.A(html.Img(src=thumb_url(sha256), style={"maxWidth": "200px", "maxHeight": "200px"}),
               href=detail_href(sha256)),
        html.Div(image_name(sha256, img.get("path")) if img.get("path") else "", style={"fontWeight": "bold"},
                 id=ids.MAP_POINT_NAME),
        kv_table([("label", img.get("label")), ("clusters", clusters),
                  ("novelty", f"{flags['novelty_score']:.3f}" if flags.get("novelty_score") is not None else None)]),
        dcc.Link("open image detail →", href=detail_href(sha256), id=ids.MAP_OPEN_DETAIL),
        html.H5(f"{len(near)} nearest neighbours", style={"margin": "8px 0 2px"}),
        neighbour_gallery(near, gallery_id=ids.MAP_NEIGHBOURS),
    ], **{"data-sha256": sha256})


def cluster_block(summary: Any, rows: dict[str, dict[str, Any]], *, run_id: str | None = None) -> html.Div:
    """One cluster (``views.ClusterSummary``): size and purity, its typical and its most
    atypical members as thumbnails; ``rows``: image rows by sha256."""
    s = summary
    purity = f" · {s.majority_label} {s.purity:.0%} pure" if s.purity is not None else ""

    def card(sha: str, tag: str) -> html.Div:
        row = rows.get(sha, {})
        return thumb_card(sha, [row.get("label"), tag], path=row.get("path"), run_id=run_id)

    caption = {"fontSize": "12px", "color": "#555"}
    # one row per cluster: the typical members, then (after a rule) the most atypical ones
    return html.Div([
        html.H4(f"{cluster_name(s.cluster)} · {s.size} images{purity}", style={"margin": "10px 0 2px"}),
        html.Div([
            html.Div([html.Div("nearest the centroid", style=caption),
                      gallery([card(x, "typical") for x in s.representatives])]),
            html.Div([html.Div("most atypical", style=caption), gallery([card(x, "atypical") for x in s.atypical])],
                     style={"borderLeft": "2px solid #ddd", "marginLeft": "8px", "paddingLeft": "8px"}) if s.atypical else None,
        ], style={"display": "flex", "flexWrap": "wrap"}),
    ], className="es-cluster")


def flag_gallery(rows: Sequence[dict[str, Any]], kind: str, *, run_id: str | None = None) -> html.Div:
    """Thumbnail cards of flagged images (``shaping.flag_card_rows``) with reason, and the
    novelty score where it is what flagged them."""
    from embedscope.dashboard import ids

    scored = kind in ("novel", "contaminated")
    cards = [thumb_card(r["sha256"], [r.get("label"), f"novelty {r['score']:.3f}" if scored and r.get("score") is not None
                                      else None, r.get("reason")], path=r.get("path"), class_name="es-thumb es-flag",
                        run_id=run_id) for r in rows]
    return gallery(cards, gallery_id=ids.FLAGS_CARDS, empty=f"no {kind} images")


def _png_data_uri(pixels: Any, scale: int = 4) -> str:
    """A uint8 RGB array as an enlarged PNG ``data:`` URI (nearest-neighbour, so pixels stay sharp)."""
    import base64
    import io

    from PIL import Image

    img = Image.fromarray(pixels)
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def patch_examples(result: Any) -> list[html.Div]:
    """Per patch cluster (``patches.PatchClusters``): its size and example patches, framed in its colour."""
    from embedscope.dashboard.figures import PALETTE
    from embedscope.dashboard.patches import example_patches

    blocks = []
    for lab, crops in example_patches(result.crop, result.labels, result.patch).items():
        colour = PALETTE[lab % len(PALETTE)]
        size = int((result.labels == lab).sum())
        blocks.append(html.Div([
            html.Span(f"cluster {lab} · {size} patches ", style={"fontSize": "12px", "borderLeft": f"12px solid {colour}",
                                                                 "paddingLeft": "4px"}),
            *[html.Img(src=_png_data_uri(c), style={"margin": "2px", "border": f"2px solid {colour}"}) for c in crops],
        ], className="es-patch-cluster", style={"margin": "4px 0"}))
    return blocks


def patch_status(result: Any, model: str, source: str | None) -> list[html.Div]:
    """What the patch clusters were computed with (model, weights, grid), and warnings."""
    from embedscope.dashboard import ids

    notes = [f"{model} · weights {result.weights} · {result.labels.size} patches of {result.patch}px"]
    if source == "thumbnail":
        notes.append("the stored file is unavailable: computed on the thumbnail")
    status = [html.Div(" · ".join(notes), id=ids.PATCH_DONE, style={"fontSize": "13px"})]
    if result.weights == "random":
        status.append(notice("RANDOM WEIGHTS: these patch clusters come from an untrained network and mean nothing.",
                             kind="warn"))
    return status


def pager(prev_id: str, next_id: str, label_id: str) -> html.Div:
    """‹ previous · "images 1–60 of 333 (page 1 of 6)" · next ›: the controls of a paged gallery."""
    button = {"fontSize": "12px", "margin": "0 6px"}
    return html.Div([html.Button("‹ previous", id=prev_id, n_clicks=0, style=button),
                     html.Span(id=label_id, style={"fontSize": "13px"}),
                     html.Button("next ›", id=next_id, n_clicks=0, style=button)],
                    style={"margin": "6px 0"}, className="es-pager")
