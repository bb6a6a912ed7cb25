"""SQL: the same read-only SQL as `embedscope query`, results as a table; a result with a
sha256 column gets a thumbnail per row linking to the image page, and can be shown on the map
as a selection, or tagged (tags record the source ``sql-result``)."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback_context, dash_table, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import curation, ids, shaping

EXAMPLE = "SELECT sha256, path, label, width, height FROM images ORDER BY path LIMIT 100"
MAX_ROWS = 5_000  # rows sent to the table
TAGS = curation.tag_control_ids("sql-tag")


def layout(**_: Any) -> Any:
    return html.Div([
        html.H3("SQL (read-only)"),
        html.Div("Tables: images, sources, quarantine, embeddings (all models), masks, runs, clusters, projections, "
                 "flags, metrics. Only SELECT / WITH queries run.", style={"fontSize": "13px", "color": "#555"}),
        dcc.Textarea(id=ids.SQL_INPUT, value=EXAMPLE, style={"width": "100%", "height": "110px", "fontFamily": "monospace"}),
        html.Div([html.Button("Run", id=ids.SQL_RUN, n_clicks=0),
                  html.Button("Show on map", id=ids.SQL_SHOW_ON_MAP, n_clicks=0, disabled=True, style={"marginLeft": "8px"})]),
        html.Div(id=ids.SQL_STATUS, style={"margin": "6px 0", "fontSize": "13px"}),
        html.Div(curation.tag_controls("sql-tag", "Tag these images"), id="sql-tag-panel", style={"display": "none"}),
        dcc.Store(id=ids.SQL_SHAS),
        dash_table.DataTable(id=ids.SQL_TABLE, page_size=25, sort_action="native", filter_action="native",
                             style_table={"overflowX": "auto"}, markdown_options={"link_target": "_self"},
                             css=[{"selector": ".dash-cell-value img", "rule": "max-height: 48px; max-width: 64px;"}],
                             style_cell={"fontFamily": "monospace", "fontSize": "12px", "maxWidth": "420px",
                                         "overflow": "hidden", "textOverflow": "ellipsis", "textAlign": "left"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.SQL_TABLE, "columns"), Output(ids.SQL_TABLE, "data"), Output(ids.SQL_STATUS, "children"),
                  Output(ids.SQL_SHAS, "data"), Output(ids.SQL_SHOW_ON_MAP, "disabled"),
                  Input(ids.SQL_RUN, "n_clicks"), State(ids.SQL_INPUT, "value"), prevent_initial_call=True)
    def _run(_n: int, sql: str | None) -> tuple:
        from embedscope.errors import EmbedscopeError
        from embedscope.store.queries import run_sql
        from embedscope.store.sql import DASHBOARD_LIMITS

        try:  # at most MAX_ROWS + 1 rows read: the +1 tells that there were more
            db = ctx.db()
            result = run_sql(db, sql or "", limit=MAX_ROWS + 1, limits=ctx.sql_limits or DASHBOARD_LIMITS,
                             functions=ctx.text_vectors().functions_for(db, sql or ""))
        except EmbedscopeError as exc:
            return [], [], C.notice(exc.one_line(), kind="error", id=ids.SQL_ERROR), None, True
        cols, data, shas = shaping.table_payload(result, MAX_ROWS)
        msg = (f"more than {MAX_ROWS:,} rows (first {MAX_ROWS:,} shown)" if result.num_rows > MAX_ROWS
               else f"{result.num_rows:,} rows")
        if shas:
            msg += f"; {len(shas):,} images with a sha256 — “Show on map” selects them there."
        return cols, data, html.Span(msg, id=ids.SQL_ROWCOUNT, **{"data-rows": str(result.num_rows)}), shas or None, not shas

    @app.callback(Output(ids.SELECTION, "data", allow_duplicate=True), Output(ids.URL, "href"),
                  Input(ids.SQL_SHOW_ON_MAP, "n_clicks"), State(ids.SQL_SHAS, "data"), prevent_initial_call=True)
    def _show(_n: int, shas: list[str] | None) -> tuple:
        if not shas:
            return no_update, no_update
        return {"source": "sql", "sha256": shas}, "/"

    @app.callback(Output(TAGS.add, "children"), Output("sql-tag-panel", "style"), Input(ids.SQL_SHAS, "data"))
    def _tag_label(shas: list[str] | None) -> tuple:
        shown = {"margin": "6px 0"} if shas else {"display": "none"}
        return f"Tag these {len(shas or []):,} images", shown

    @app.callback(Output(TAGS.status, "children"), Input(TAGS.add, "n_clicks"), Input(TAGS.remove, "n_clicks"),
                  State(ids.SQL_SHAS, "data"), State(TAGS.name, "value"), State(TAGS.note, "value"),
                  prevent_initial_call=True)
    def _tag(_add: int, _remove: int, shas: list[str] | None, tag: str | None, note: str | None) -> str:
        return curation.apply_tag(ctx, list(shas or []), tag, note, remove=callback_context.triggered_id == TAGS.remove,
                                  source="sql-result")
