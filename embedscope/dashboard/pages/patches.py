"""Within-image: the DINOv2 patch tokens of one image clustered into k groups (k chosen by
the user), as a coloured overlay with example patches per cluster. Computed on demand with
the stored model and weights; with random weights it still runs, and says so."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import cluster_figures, context, ids, image_picker


def layout(sha: str | None = None, **_: Any) -> Any:
    db = context.current().db()
    return html.Div([
        html.H3("Within-image patch clusters"),
        html.Div("The image's DINOv2 patch tokens (one per 14×14 patch of the model input), clustered with k-means. "
                 "Computed on request with the model and weights its stored embedding came from.",
                 style={"fontSize": "13px", "color": "#555"}),
        html.Div([html.Label("image ", style={"marginRight": "6px"}), image_picker.image_picker(db, ids.PATCH_SHA, sha)],
                 style={"display": "flex", "alignItems": "center"}),
        html.Div([html.Span("k ", style={"fontSize": "13px"}),
                  html.Div(dcc.Slider(id=ids.PATCH_K, min=2, max=10, step=1, value=4), style={"width": "320px", "display": "inline-block"}),
                  html.Button("Cluster patches", id=ids.PATCH_RUN, n_clicks=0)], style={"margin": "6px 0"}),
        dcc.Loading(html.Div([html.Div(id=ids.PATCH_STATUS), dcc.Graph(id=ids.PATCH_FIGURE, style={"display": "none"}),
                              html.Div(id=ids.PATCH_EXAMPLES)])),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    image_picker.register_search(app, ctx, ids.PATCH_SHA)

    @app.callback(Output(ids.PATCH_FIGURE, "figure"), Output(ids.PATCH_FIGURE, "style"), Output(ids.PATCH_EXAMPLES, "children"),
                  Output(ids.PATCH_STATUS, "children"),
                  Input(ids.PATCH_RUN, "n_clicks"), State(ids.PATCH_SHA, "value"), State(ids.PATCH_K, "value"),
                  prevent_initial_call=True)
    def _run(_n: int, sha: str | None, k: int) -> tuple:
        from embedscope.dashboard.patches import patch_clusters
        from embedscope.dashboard.routes import load_stored_image
        from embedscope.errors import EmbedscopeError
        from embedscope.ingest.embed_file import table_weights_label
        from embedscope.store import schema as S
        from embedscope.store import views

        hidden = {"display": "none"}
        if not views.is_image_key(sha):
            return no_update, hidden, None, C.notice("choose an image (type part of its file name)", kind="warn")
        db = ctx.db()
        try:
            models = sorted({e["model"] for e in views.image_detail(db, sha)["embeddings"]})
            if not models:
                return no_update, hidden, None, C.notice("this image has no stored embedding", kind="warn")
            image, source = load_stored_image(db, sha)
            if image is None:
                return no_update, hidden, None, C.notice("the image file and thumbnail are both unavailable", kind="error")
            # the patch tokens come from the encoder alone: the full-image variant's encoder serves every variant
            loaded = ctx.encoders.get(db, models[0], S.VARIANT_FULL, table_weights_label(db, models[0], S.VARIANT_FULL))
            result = patch_clusters(loaded, image, int(k))
        except EmbedscopeError as exc:
            return no_update, hidden, None, C.notice(exc.one_line(), kind="error", id=ids.PATCH_ERROR)
        fig = cluster_figures.patch_overlay_figure(result.crop, result.labels, result.patch)
        return fig, {"display": "block"}, C.patch_examples(result), C.patch_status(result, models[0], source)
