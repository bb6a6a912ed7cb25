"""Search: the stored images nearest to an uploaded image, in the stored model the user picks
(DINOv2 for look-alikes, CLIP for matches by concept). The upload stays in memory (it is never
written, and no path from the browser is read); it is decoded by the safe decoder and embedded
with that model's recorded weights and preprocessing."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, ids, text_search

UPLOAD_STYLE = {"width": "560px", "height": "90px", "lineHeight": "90px", "borderWidth": "2px", "borderStyle": "dashed",
                "borderRadius": "6px", "textAlign": "center", "background": "#fafafa", "cursor": "pointer", "margin": "6px 0"}


def layout(**_: Any) -> Any:
    db = context.current().db()
    options, default = model_options(db)
    return html.Div([
        html.H3("Search by an uploaded image"),
        html.Div("The image is embedded on the server with the chosen model's weights and preprocessing (the first "
                 "search with a model loads it: a few seconds), then compared by cosine similarity with that model's "
                 "stored vectors. DINOv2 finds look-alikes (same object, layout, texture); CLIP finds images of the "
                 "same kind of thing. The upload is kept in memory only: nothing is stored.",
                 style={"fontSize": "13px", "color": "#555"}),
        html.Div([html.Span("model ", style={"fontSize": "13px"}),
                  dcc.Dropdown(id=ids.SEARCH_MODEL, options=options, value=default, clearable=False,
                               style={"width": "420px", "display": "inline-block", "verticalAlign": "middle"})]),
        dcc.Upload(id=ids.SEARCH_UPLOAD, children=html.Div(["Drop an image here, or ", html.A("choose a file")]),
                   multiple=False, accept="image/*", style=UPLOAD_STYLE),
        html.Div([html.Span("neighbours ", style={"fontSize": "13px"}),
                  dcc.Input(id=ids.SEARCH_K, type="number", min=1, max=100, step=1, value=12, style={"width": "70px"})]),
        dcc.Loading(html.Div([html.Div(id=ids.SEARCH_STATUS), html.Div(id=ids.SEARCH_RESULTS)])),
        text_search.search_section(db),
    ])


def model_options(db: Any) -> tuple[list[dict[str, str]], str | None]:
    """The stored models as dropdown options, each with what it is good for, and the default:
    the latest analyze run's model (else the first)."""
    from embedscope.ingest.embed_text import has_text_tower
    from embedscope.store.runs import latest_run
    from embedscope.store.search import stored_models

    models = stored_models(db)
    options = [{"label": f"{m} — {'by concept (CLIP)' if has_text_tower(m) else 'look-alikes'}", "value": m}
               for m in models]
    run = latest_run(db)
    return options, (run.model if run is not None and run.model in models else (models[0] if models else None))


def render(result: Any, filename: str | None) -> tuple[Any, Any]:
    """(status, gallery) children for a :class:`embedscope.dashboard.search.UploadResult`."""
    if result.error:
        return C.notice(result.error, kind="error", id=ids.SEARCH_ERROR), None
    query = html.Img(src=result.query_thumb, id=ids.SEARCH_QUERY_THUMB, title=filename or "upload",
                     style={"maxHeight": "120px", "maxWidth": "160px", "float": "left", "marginRight": "12px",
                            "border": "2px solid #1f77b4"}) if result.query_thumb else None
    status = [query, html.Div(f"{filename or 'upload'}: embedded with {result.model}/{result.variant} · weights {result.weights} · "
                       f"image size {result.image_size} · preprocess {result.preprocess}", id=ids.SEARCH_DONE,
                       style={"fontSize": "13px"})]
    if result.weights == "random":
        status.append(C.notice("RANDOM WEIGHTS: the query and the stored images were embedded by an untrained network; "
                               "these neighbours reflect colours and layout at best.", kind="warn"))
    if result.check_failed:
        status.append(C.notice(
            f"These settings do not reproduce the stored vectors: re-embedding stored image {result.check_sha[:12]}… gives "
            f"cosine similarity {result.check_similarity:.4f} to its stored vector (expected ~1). Restart the dashboard with "
            "the ingest's --image-size / --preprocess (or --config); until then these neighbours are meaningless.",
            kind="error", id=ids.SEARCH_CHECK_FAILED))
    if result.stored_sha:
        status.append(html.Div(["This exact file is in the database: ", dcc.Link(result.stored_sha[:16] + "…",
                                                                              href=C.detail_href(result.stored_sha))],
                               style={"fontSize": "13px"}))
    cards = [C.thumb_card(n["sha256"], [n.get("label"), C.similarity_text(n["similarity"])], path=n.get("path"),
                          class_name="es-thumb es-search-hit") for n in result.neighbours]
    status.append(html.Div(style={"clear": "both"}))
    return status, [html.H4(f"{len(cards)} nearest stored images in {result.model} (cosine similarity)"),
                    C.gallery(cards, gallery_id=ids.SEARCH_GALLERY, empty="no stored embeddings to compare with")]


def register_callbacks(app: Any, ctx: Any) -> None:
    text_search.register_search_callbacks(app, ctx)

    @app.callback(Output(ids.SEARCH_STATUS, "children"), Output(ids.SEARCH_RESULTS, "children"),
                  Input(ids.SEARCH_UPLOAD, "contents"), Input(ids.SEARCH_K, "value"), Input(ids.SEARCH_MODEL, "value"),
                  State(ids.SEARCH_UPLOAD, "filename"), prevent_initial_call=True)
    def _search(contents: str | None, k: int | None, model: str | None, filename: str | None) -> tuple:
        from embedscope.dashboard.search import search_upload
        from embedscope.store.runs import latest_run

        if not contents:
            return None, None
        db = ctx.db()
        result = search_upload(db, ctx.encoders, contents, filename, k=max(1, min(int(k or 12), 100)),
                               run=latest_run(db), model=model, max_pixels=ctx.max_upload_pixels, search_cache=ctx.search)
        return render(result, filename)
