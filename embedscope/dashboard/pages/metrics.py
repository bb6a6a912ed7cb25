"""Metrics: runs and variants side by side. First the seeds' table (per clustering method,
silhouette and Davies-Bouldin for each chosen run · variant · space), then every stored metric
(Calinski-Harabasz, ARI/NMI, kNN accuracy, ...), and the elbow / silhouette-vs-k curves with
one legend entry per run, method and space. ``?run=`` preselects a run."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, dash_table, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids, run_picker, shaping

DEFAULT_RUNS = 4  # the newest runs compared when none is chosen


def layout(run: str | None = None, **_: Any) -> Any:
    from embedscope.store import views
    from embedscope.store.runs import UnknownRunError, list_runs, run_or_latest

    db = context.current().db()
    try:
        chosen = run_or_latest(db, run) if run else None
    except UnknownRunError as exc:
        return C.message_page("Metrics", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    df = views.metrics_frame(db)
    if len(df) == 0:
        return C.message_page("Metrics", "No metrics stored yet: run `embedscope analyze --db DIR`.")
    with_metrics = set(df["run_id"])
    runs = [r for r in list_runs(db) if r.run_id in with_metrics]
    value = [chosen.run_id] if chosen else [r.run_id for r in runs[:DEFAULT_RUNS]]
    return html.Div([
        html.H3("Metrics"),
        html.Div([html.Span("compare runs ", style={"fontSize": "13px"}),
                  html.Div(dcc.Dropdown(id=ids.METRICS_RUNS, options=run_picker.run_options(runs, chosen), value=value,
                                        multi=True, style={"fontSize": "12px"}),
                           style={"display": "inline-block", "width": "900px", "verticalAlign": "middle"})]),
        html.H4("Clustering quality per method (silhouette: higher is better; Davies-Bouldin: lower is better)"),
        dash_table.DataTable(id=ids.METRICS_COMPARE, merge_duplicate_headers=True, sort_action="native",
                             style_cell={"fontSize": "12px", "textAlign": "left", "minWidth": "90px"},
                             style_header={"fontWeight": "bold", "whiteSpace": "normal"},
                             style_table={"overflowX": "auto"}),
        html.Div([
            dcc.Graph(id=ids.METRICS_ELBOW, style={"flex": "1"}),
            dcc.Graph(id=ids.METRICS_SILHOUETTE, style={"flex": "1"}),
        ], style={"display": "flex"}),
        html.H4("Every stored metric"),
        html.Div("Rows: metric · clustering method · space; columns: runs (id, model/variant).",
                 style={"fontSize": "13px", "color": "#555"}),
        dash_table.DataTable(id=ids.METRICS_TABLE, sort_action="native", page_size=20, style_table={"overflowX": "auto"},
                             style_cell={"fontSize": "12px", "textAlign": "left"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.METRICS_COMPARE, "columns"), Output(ids.METRICS_COMPARE, "data"),
                  Output(ids.METRICS_TABLE, "columns"), Output(ids.METRICS_TABLE, "data"),
                  Output(ids.METRICS_ELBOW, "figure"), Output(ids.METRICS_SILHOUETTE, "figure"),
                  Input(ids.METRICS_RUNS, "value"))
    def _compare(run_ids: list[str] | None) -> tuple:
        from embedscope.store import views

        run_ids = list(run_ids or [])
        df = views.metrics_frame(ctx.db())
        df = df[df["run_id"].isin(run_ids)]
        compare_cols, compare_rows = shaping.metrics_compare(df, run_ids)
        columns, rows = shaping.metrics_pivot(df)
        return (compare_cols, compare_rows, [{"name": c, "id": c} for c in columns], rows,
                figures.sweep_figure(df, "inertia", "elbow (k-means inertia)", "inertia"),
                figures.sweep_figure(df, "silhouette_vs_k", "silhouette vs k", "silhouette"))
