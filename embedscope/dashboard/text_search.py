"""Text search in the dashboard: the Map page's text box (the top hits of a CLIP table ringed
on the map and shown in the selection gallery).

The text is embedded by the server's one :class:`~embedscope.ingest.embed_text.TextVectors`
(``DashboardContext.text_vectors``: the table's recorded weights, vectors cached per
(model, weights, text)); the hits are :func:`embedscope.store.search.similar` with that vector.
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from embedscope.dashboard import ids

TEXT_K = 20  # hits ringed and shown per text query


def text_box() -> Any:
    """The Map page's text query row."""
    return html.Div([
        dcc.Input(id=ids.MAP_TEXT, type="text", debounce=True, placeholder="find by text (a CLIP table), e.g. a dog on a beach",
                  style={"width": "420px", "marginRight": "6px"}),
        html.Button("Find", id=ids.MAP_TEXT_GO, n_clicks=0),
        html.Span(id=ids.MAP_TEXT_STATUS, style={"marginLeft": "8px", "fontSize": "13px"}),
    ], style={"margin": "6px 0"})


def text_hits(ctx: Any, text: str, *, k: int = TEXT_K, model: str | None = None) -> tuple[list[str], str]:
    """sha256 of the top ``k`` images for ``text`` (nearest first) and the CLIP model searched."""
    from embedscope.ingest.embed_text import pick_text_model
    from embedscope.store.search import similar

    db = ctx.db()
    model = pick_text_model(db, model)
    vector = ctx.text_vectors().vector(db, text, model)
    return similar(db, vector, k=k, model=model).column("sha256").to_pylist(), model
