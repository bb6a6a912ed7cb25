"""Small reusable pieces of page layout (thumbnail cards, galleries, key/value tables)."""

from __future__ import annotations

import os
from typing import Any, Sequence
from urllib.parse import quote

from dash import html

CARD_STYLE = {"display": "inline-block", "width": "132px", "margin": "4px", "verticalAlign": "top",
              "fontSize": "11px", "border": "1px solid #ddd", "borderRadius": "4px", "padding": "3px",
              "background": "white", "overflowWrap": "anywhere"}


def detail_href(sha256: str) -> str:
    return f"/detail?sha={quote(sha256)}"


def thumb_url(sha256: str) -> str:
    return f"/thumb/{sha256}"


def thumb_card(sha256: str, caption: Sequence[str] = (), *, path: str | None = None, class_name: str = "es-thumb") -> html.Div:
    """A thumbnail (loaded from /thumb/<sha256>, i.e. on demand) linking to the image's detail page."""
    name = os.path.basename(path) if path else sha256[:12]
    return html.Div(
        [html.A(html.Img(src=thumb_url(sha256), style={"maxWidth": "124px", "maxHeight": "124px", "display": "block",
                                                       "margin": "auto"}, title=path or sha256, alt=name),
                href=detail_href(sha256)),
         html.Div(name, style={"fontWeight": "bold"}),
         *[html.Div(c) for c in caption if c]],
        className=class_name, style=CARD_STYLE, **{"data-sha256": sha256})


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
