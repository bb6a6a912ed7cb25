"""Metrics: runs side by side (silhouette, Davies-Bouldin, Calinski-Harabasz, ARI/NMI, kNN
accuracy per method and space), and the elbow / silhouette-vs-k curves."""

from __future__ import annotations

from typing import Any

from dash import dash_table, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids, shaping


def layout(**_: Any) -> Any:
    from embedscope.store import views

    df = views.metrics_frame(context.current().db())
    if len(df) == 0:
        return C.message_page("Metrics", "No metrics stored yet: run `embedscope analyze --db DIR`.")
    columns, rows = shaping.metrics_pivot(df)
    return html.Div([
        html.H3("Metrics"),
        html.Div("Rows: metric · clustering method · space; columns: runs (id, model/variant).",
                 style={"fontSize": "13px", "color": "#555"}),
        dash_table.DataTable(id=ids.METRICS_TABLE, columns=[{"name": c, "id": c} for c in columns], data=rows,
                             sort_action="native", style_cell={"fontSize": "12px", "textAlign": "left"}),
        html.Div([
            dcc.Graph(id=ids.METRICS_ELBOW, figure=figures.sweep_figure(df, "inertia", "elbow (k-means inertia)", "inertia"),
                      style={"flex": "1"}),
            dcc.Graph(id=ids.METRICS_SILHOUETTE,
                      figure=figures.sweep_figure(df, "silhouette_vs_k", "silhouette vs k", "silhouette"), style={"flex": "1"}),
        ], style={"display": "flex"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    """No callbacks: the page is computed when requested."""
