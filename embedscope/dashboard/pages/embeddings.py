"""Embeddings: one image's vector (line, histogram, top/bottom dimensions), the PCA
explained variance of the set, the pairwise cosine heatmap of the current selection, and
downloads of the selection's vectors as .npy or Parquet."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids, image_picker, run_picker, shaping

PCA_MAX_ROWS = 20_000  # a fixed random sample beyond this, for the explained variance
HEATMAP_MAX = 300


def layout(sha: str | None = None, run: str | None = None, **_: Any) -> Any:
    from embedscope.analysis.iterations import sample_rows
    from embedscope.store import views
    from embedscope.store.runs import UnknownRunError, run_or_latest

    db = context.current().db()
    try:
        current = run_or_latest(db, run)
    except UnknownRunError as exc:
        return C.message_page("Embeddings", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    model = (current.model if current else None) or views.default_model(db)
    if model is None:
        return C.message_page("Embeddings", "No embeddings stored yet.")
    variant = (current.variant if current else None) or "full"
    shas, X = views.embeddings_table(db, None, model=model, variant=variant)
    ratios = shaping.explained_variance(X[sample_rows(len(shas), PCA_MAX_ROWS)]) if len(shas) else []
    return html.Div([
        html.H3(f"Embeddings ({model}/{variant}, {len(shas):,} vectors)"),
        dcc.Store(id=ids.EMB_MODEL, data={"model": model, "variant": variant}),
        run_picker.run_picker(db, current, page="/embeddings") if current else None,
        html.Div([html.Label("image ", style={"marginRight": "6px"}),
                  image_picker.image_picker(db, ids.EMB_SHA, sha if sha else (shas[0] if shas else None))],
                 style={"display": "flex", "alignItems": "center"}),
        html.Div([dcc.Graph(id=ids.EMB_VECTOR, style={"flex": "2"}), dcc.Graph(id=ids.EMB_HIST, style={"flex": "1"})],
                 style={"display": "flex"}),
        html.Div([
            html.Div(dash_table.DataTable(id=ids.EMB_TOPDIMS, columns=[{"name": c, "id": c} for c in ("which", "rank", "dim", "value")],
                                          page_size=20, style_cell={"fontSize": "12px"}), style={"flex": "0 0 380px"}),
            dcc.Graph(id=ids.EMB_PCA, figure=figures.pca_variance_figure(ratios) if len(ratios) else {},
                      style={"flex": "1", "paddingLeft": "12px"}),
        ], style={"display": "flex"}),
        html.H4("Current selection (lasso on the map, or a SQL result)"),
        html.Div([html.Button("Download .npy", id=ids.EMB_DOWNLOAD_NPY, n_clicks=0),
                  html.Button("Download Parquet", id=ids.EMB_DOWNLOAD_PARQUET, n_clicks=0, style={"marginLeft": "6px"}),
                  dcc.Download(id=ids.EMB_DOWNLOAD)]),
        dcc.Graph(id=ids.EMB_HEATMAP),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    from embedscope.store import views

    image_picker.register_search(app, ctx, ids.EMB_SHA)

    @app.callback(Output(ids.EMB_VECTOR, "figure"), Output(ids.EMB_HIST, "figure"), Output(ids.EMB_TOPDIMS, "data"),
                  Input(ids.EMB_SHA, "value"), State(ids.EMB_MODEL, "data"))
    def _vector(sha: str, mv: dict) -> tuple:
        from embedscope.errors import EmbedscopeError

        if not views.is_image_key(sha):
            return {}, {}, []
        try:
            vec = views.embedding_matrix(ctx.db(), [sha], model=mv["model"], variant=mv["variant"])[0]
        except EmbedscopeError:
            return {}, {}, []
        return figures.vector_figure(vec, f"{shaping.image_name(sha, None)} ({len(vec)} dims)"), figures.histogram_figure(vec), shaping.top_dims(vec)

    @app.callback(Output(ids.EMB_HEATMAP, "figure"), Input(ids.SELECTION, "data"), State(ids.EMB_MODEL, "data"))
    def _heatmap(selection: dict | None, mv: dict) -> Any:
        shas = ((selection or {}).get("sha256") or [])[:HEATMAP_MAX]
        if len(shas) < 2 or not mv:
            return figures.empty_figure("select at least 2 images on the map (lasso) or with SQL")
        db = ctx.db()
        rows = views.image_rows(db, shas)
        X = views.embedding_matrix(db, [r["sha256"] for r in rows], model=mv["model"], variant=mv["variant"])
        return figures.cosine_heatmap_figure(X, [shaping.image_name(r["sha256"], r.get("path")) for r in rows])

    @app.callback(Output(ids.EMB_DOWNLOAD, "data"), Input(ids.EMB_DOWNLOAD_NPY, "n_clicks"),
                  Input(ids.EMB_DOWNLOAD_PARQUET, "n_clicks"), State(ids.SELECTION, "data"), State(ids.EMB_MODEL, "data"),
                  prevent_initial_call=True)
    def _download(_a: int, _b: int, selection: dict | None, mv: dict) -> Any:
        shas = (selection or {}).get("sha256") or []
        if not shas:
            return no_update
        got, X = views.embeddings_table(ctx.db(), shas, model=mv["model"], variant=mv["variant"])
        if callback_context.triggered_id == ids.EMB_DOWNLOAD_NPY:
            return dcc.send_bytes(shaping.npy_bytes(X), f"embeddings-{len(got)}.npy")
        return dcc.send_bytes(shaping.vectors_parquet_bytes(got, X), f"embeddings-{len(got)}.parquet")
