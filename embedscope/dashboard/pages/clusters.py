"""Clusters: per cluster its size, label purity, the members nearest the centroid and the
most atypical ones."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids


def layout(method: str | None = None, **_: Any) -> Any:
    from embedscope.store import views

    db = context.current().db()
    run = views.run_by_id(db, None)
    methods = views.cluster_methods(db, run.run_id) if run else []
    if not methods:
        return html.Div([html.H3("Clusters"), C.notice("No clusters stored yet: run `embedscope analyze --db DIR`.", kind="warn")])
    value = method if method in methods else (run.primary_cluster if run.primary_cluster in methods else methods[0])
    return html.Div([
        html.H3(f"Clusters (run {run.run_id[:8]})"),
        html.Div(dcc.Dropdown(id=ids.CLUSTERS_METHOD, options=methods, value=value, clearable=False), style={"width": "300px"}),
        dcc.Store(id="clusters-run", data=run.run_id),
        dcc.Graph(id=ids.CLUSTERS_SIZES),
        html.Div(id=ids.CLUSTERS_GALLERIES),
        html.Div("Dendrograms and the k-means iteration animation are not shown: the analysis tables do not store "
                 "linkage or iterations.", style={"fontSize": "12px", "color": "#777"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.CLUSTERS_SIZES, "figure"), Output(ids.CLUSTERS_GALLERIES, "children"),
                  Input(ids.CLUSTERS_METHOD, "value"), State("clusters-run", "data"))
    def _clusters(method: str, run_id: str) -> tuple:
        from embedscope.store import views

        db = ctx.db()
        run = views.run_by_id(db, run_id)
        summaries = views.cluster_summaries(db, run, method)
        rows = {r["sha256"]: r for r in views.image_rows(db, [s for c in summaries for s in c.representatives + c.atypical])}
        blocks = []
        for s in summaries:
            name = "noise" if s.cluster == -1 else f"cluster {s.cluster}"
            purity = f" · {s.majority_label} {s.purity:.0%} pure" if s.purity is not None else ""
            card = lambda sha, tag: C.thumb_card(sha, [rows.get(sha, {}).get("label"), tag], path=rows.get(sha, {}).get("path"))
            blocks.append(html.Div([
                html.H4(f"{name} · {s.size} images{purity}", style={"margin": "10px 0 2px"}),
                html.Div("nearest the centroid", style={"fontSize": "12px", "color": "#555"}),
                C.gallery([card(x, "typical") for x in s.representatives]),
                html.Div("most atypical", style={"fontSize": "12px", "color": "#555"}) if s.atypical else None,
                C.gallery([card(x, "atypical") for x in s.atypical]) if s.atypical else None,
            ], className="es-cluster"))
        return figures.cluster_sizes_figure(summaries), blocks
