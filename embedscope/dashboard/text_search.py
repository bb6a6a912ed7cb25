"""Text search in the dashboard: the Map page's text box (the top hits of a CLIP table ringed
on the map and shown in the selection gallery) and the Search page's text section (pick the
CLIP table; DINOv2 tables hold no text space, so they are not offered).

The text is embedded by the server's one :class:`~embedscope.ingest.embed_text.TextVectors`
(``DashboardContext.text_vectors``: the table's recorded weights, vectors cached per
(model, weights, text)); the hits are :func:`embedscope.store.search.similar` with that vector.
"""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html

from embedscope.dashboard import components as C
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


def search_section(db: Any) -> Any:
    """The Search page's "by text" section: a text box and the CLIP table to search."""
    from embedscope.ingest.embed_text import text_models

    models = text_models(db)
    note = ("Matches by concept through a CLIP table (for look-alikes of an image, upload it above with a "
            "DINOv2 model picked)." if models else
            "No CLIP table in this database: ingest with --model openclip_vitb32 to search by text.")
    return html.Div([
        html.H3("Search by text"),
        html.Div(note, style={"fontSize": "13px", "color": "#555"}),
        html.Div([
            dcc.Input(id=ids.SEARCH_TEXT, type="text", debounce=True, disabled=not models,
                      placeholder="e.g. a chest x-ray with a pacemaker", style={"width": "420px", "marginRight": "6px"}),
            dcc.Dropdown(id=ids.SEARCH_TEXT_MODEL, options=models, value=models[0] if models else None,
                         clearable=False, style={"width": "260px", "display": "inline-block", "verticalAlign": "middle"}),
        ], style={"margin": "6px 0"}),
        dcc.Loading(html.Div(id=ids.SEARCH_TEXT_RESULTS)),
    ], style={"marginTop": "18px"})


def register_search_callbacks(app: Any, ctx: Any) -> None:
    """The Search page's text section: results for the text in the chosen CLIP table."""
    @app.callback(Output(ids.SEARCH_TEXT_RESULTS, "children"), Input(ids.SEARCH_TEXT, "value"),
                  Input(ids.SEARCH_K, "value"), State(ids.SEARCH_TEXT_MODEL, "value"), prevent_initial_call=True)
    def _search_text(text: str | None, k: int | None, model: str | None) -> Any:
        from embedscope.errors import EmbedscopeError
        from embedscope.store import views

        if not (text or "").strip():
            return None
        try:
            shas, model = text_hits(ctx, text.strip(), k=max(1, min(int(k or 12), 100)), model=model)
        except EmbedscopeError as exc:
            return C.notice(exc.one_line(), kind="error")
        by_sha = {r["sha256"]: r for r in views.image_rows(ctx.db(), shas)}
        cards = [C.thumb_card(s, [by_sha.get(s, {}).get("label")], path=by_sha.get(s, {}).get("path"),
                              class_name="es-thumb es-search-hit") for s in shas]
        return [html.H4(f"{len(cards)} images nearest to {text.strip()!r} in {model}"),
                C.gallery(cards, gallery_id=ids.SEARCH_TEXT_GALLERY, empty="no matches")]
