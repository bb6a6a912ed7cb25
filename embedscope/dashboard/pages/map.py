"""Map: a projection of the embeddings as a WebGL scatter, coloured by cluster / label /
novelty / contamination / drop / ingest date. Hover: thumbnail + file name. Click: the
image's summary with its nearest neighbours. Lasso/box: a gallery of the selection + CSV."""

from __future__ import annotations

import dataclasses
from typing import Any

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import context, curation, figures, ids, shaping, sidebar, text_search

GALLERY_MAX = 60  # thumbnails shown for a selection (the CSV has all of it)


def _options(db: Any, run: Any) -> tuple[list[dict], str | None, list[dict], str | None]:
    from embedscope.store import views

    return shaping.map_options(run, views.projection_options(db, run.run_id), views.color_options(db, run))


def layout(run: str | None = None, **_: Any) -> Any:
    from embedscope.store.runs import UnknownRunError, list_runs, run_or_latest

    db = context.current().db()
    all_runs = list_runs(db)
    if not all_runs:
        return html.Div([html.H3("Map"), C.notice(
            "No analysis run in this database yet: the map needs projections. "
            "Run `embedscope analyze --db DIR`, then reload.", kind="warn", id=ids.MAP_NOTICE)])
    try:
        current = run_or_latest(db, run)
    except UnknownRunError as exc:
        return C.message_page("Map", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    p_opts, p_value, c_opts, c_value = _options(db, current)
    dd = {"display": "inline-block", "width": "300px", "marginRight": "10px", "verticalAlign": "top"}
    return html.Div([
        html.Div([
            html.Div([html.Label("analysis run"), dcc.Dropdown(
                id=ids.MAP_RUN, options=[{"label": r.title(), "value": r.run_id} for r in all_runs],
                value=current.run_id, clearable=False)], style={**dd, "width": "440px"}),
            html.Div([html.Label("projection"), dcc.Dropdown(id=ids.MAP_PROJECTION, options=p_opts, value=p_value,
                                                             clearable=False)], style=dd),
            html.Div([html.Label("colour by"), dcc.Dropdown(id=ids.MAP_COLOR, options=c_opts, value=c_value,
                                                            clearable=False)], style=dd),
        ]),
        html.Div(id=ids.MAP_NOTICE, style={"fontSize": "13px", "color": "#555", "margin": "6px 0"}),
        text_search.text_box(),
        html.Div([
            sidebar.sidebar(db, current, with_apply=True),
            html.Div([dcc.Graph(id=ids.MAP_GRAPH, config={"displaylogo": False, "scrollZoom": True},
                                clear_on_unhover=True),
                      dcc.Tooltip(id=ids.MAP_TOOLTIP, direction="right")],
                     style={"flex": "1 1 65%", "minWidth": "0"}),
            html.Div([
                html.H4("Point", style={"margin": "4px 0"}),
                html.Div(C.notice("Hover a point for its thumbnail; click it for its neighbours; "
                                  "lasso or box-select points for a gallery."), id=ids.MAP_POINT_PANEL),
                html.H4("Selection", id=ids.MAP_GALLERY_TITLE, style={"margin": "10px 0 4px"}),
                html.Div([html.Button("Export CSV of paths", id=ids.MAP_EXPORT, n_clicks=0),
                          html.Button("Clear selection", id=ids.MAP_CLEAR, n_clicks=0, style={"marginLeft": "6px"})]),
                dcc.Download(id=ids.MAP_DOWNLOAD),
                curation.tag_panel(),
                html.Div(id=ids.MAP_GALLERY, style={"maxHeight": "520px", "overflowY": "auto"}),
            ], style={"flex": "0 0 33%", "paddingLeft": "10px", "minWidth": "0"}),
        ], style={"display": "flex"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    from embedscope.errors import EmbedscopeError
    from embedscope.store import views
    from embedscope.store.runs import run_by_id

    curation.register_callbacks(app, ctx)

    @app.callback(Output(ids.MAP_PROJECTION, "options"), Output(ids.MAP_PROJECTION, "value"),
                  Output(ids.MAP_COLOR, "options"), Output(ids.MAP_COLOR, "value"),
                  Input(ids.MAP_RUN, "value"), prevent_initial_call=True)
    def _run_changed(run_id: str) -> tuple:
        db = ctx.db()
        return _options(db, run_by_id(db, run_id)) if run_id else ([], None, [], None)

    @app.callback(Output(ids.MAP_GRAPH, "figure"), Output(ids.MAP_NOTICE, "children"),
                  Input(ids.MAP_RUN, "value"), Input(ids.MAP_PROJECTION, "value"), Input(ids.MAP_COLOR, "value"),
                  State(ids.SELECTION, "data"))
    def _figure(run_id: str, proj: str | None, color: str | None, selection: dict | None) -> tuple:
        return _map_figure(ctx, run_id, proj, color, shaping.sql_highlight(selection))

    @app.callback(Output(ids.MAP_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.MAP_NOTICE, "children", allow_duplicate=True),
                  Output(ids.MAP_GALLERY_TITLE, "children", allow_duplicate=True),
                  Output(ids.MAP_GALLERY, "children", allow_duplicate=True),
                  Output(ids.SELECTION, "data", allow_duplicate=True), Output(ids.MAP_TEXT_STATUS, "children"),
                  Input(ids.MAP_TEXT_GO, "n_clicks"), Input(ids.MAP_TEXT, "n_submit"), State(ids.MAP_TEXT, "value"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"), State(ids.MAP_COLOR, "value"),
                  prevent_initial_call=True)
    def _text(_n: int, _submit: int, text: str | None, run_id: str, proj: str | None, color: str | None) -> tuple:
        if not (text or "").strip():
            return (no_update,) * 5 + ("",)
        try:
            shas, model = text_search.text_hits(ctx, text.strip())
        except EmbedscopeError as exc:
            return (no_update,) * 5 + (C.notice(exc.one_line(), kind="error"),)
        fig, notice = _map_figure(ctx, run_id, proj, color, shas)
        title, gallery = _gallery(ctx, shas, "text")
        status = html.Span(f"top {len(shas)} for {text.strip()!r} in {model}", id=ids.MAP_TEXT_STATUS + "-done",
                           **{"data-hits": ",".join(shas)})
        return fig, notice, title, gallery, {"source": "text", "sha256": shas}, status

    @app.callback(Output(ids.MAP_TOOLTIP, "show"), Output(ids.MAP_TOOLTIP, "bbox"), Output(ids.MAP_TOOLTIP, "children"),
                  Input(ids.MAP_GRAPH, "hoverData"), State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"))
    def _hover(hover: dict | None, run_id: str, proj: str | None) -> tuple:
        shas = _resolve(ctx, hover, run_id, proj)
        if not shas:
            return False, no_update, no_update
        bbox = hover["points"][0].get("bbox") or {"x0": 0, "x1": 0, "y0": 0, "y1": 0}
        rows = views.image_rows(ctx.db(), shas[:1])
        return True, bbox, C.map_tooltip(shas[0], rows[0] if rows else None)

    @app.callback(Output(ids.MAP_POINT_PANEL, "children"), Input(ids.MAP_GRAPH, "clickData"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"), prevent_initial_call=True)
    def _click(click: dict | None, run_id: str, proj: str | None) -> Any:
        shas = _resolve(ctx, click, run_id, proj)
        if not shas:
            return no_update
        db = ctx.db()
        try:
            detail = views.image_detail(db, shas[0], run_id)
            run = detail["run"]
            near = views.neighbours(db, shas[0], k=ctx.neighbours_k, model=run.model if run else None,
                                    variant=(run.variant if run else None) or "full", cache=ctx.search)
        except EmbedscopeError as exc:
            return C.notice(exc.one_line(), kind="error")
        return C.point_panel(shas[0], detail, near)

    @app.callback(Output(ids.MAP_GALLERY_TITLE, "children"), Output(ids.MAP_GALLERY, "children"),
                  Output(ids.SELECTION, "data"),
                  Input(ids.MAP_GRAPH, "selectedData"), Input(ids.MAP_CLEAR, "n_clicks"),
                  State(ids.SELECTION, "data"), State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"))
    def _selection(selected: dict | None, _clear: int, stored: dict | None, run_id: str, proj: str | None) -> tuple:
        # when the page is (re)built every input counts as triggered, with empty values
        trigger = callback_context.triggered_id
        if trigger == ids.MAP_CLEAR and _clear:
            return "Selection", C.gallery([], empty="nothing selected"), None
        if trigger == ids.MAP_GRAPH and selected is not None:
            shas = _resolve(ctx, selected, run_id, proj)
            new = {"source": "map", "sha256": shas} if shas else None
        else:  # page load: show what the SQL page (or an earlier lasso) selected
            new = stored
            shas = (stored or {}).get("sha256") or []
        return (*_gallery(ctx, shas, (new or {}).get("source", "map")), new)

    @app.callback(Output(ids.MAP_DOWNLOAD, "data"), Input(ids.MAP_EXPORT, "n_clicks"), State(ids.SELECTION, "data"),
                  prevent_initial_call=True)
    def _export(_n: int, stored: dict | None) -> Any:
        shas = (stored or {}).get("sha256") or []
        if not shas:
            return no_update
        rows = views.image_rows(ctx.db(), shas)
        return {"content": shaping.rows_csv(rows), "filename": f"embedscope-selection-{len(rows)}.csv", "type": "text/csv"}


def _map_figure(ctx: Any, run_id: str, proj: str | None, color: str | None, highlight: list[str]) -> tuple:
    """The map figure of a run's projection coloured by ``color``, ``highlight`` ringed; and its notice."""
    from embedscope.store import views

    parsed = shaping.parse_projection(proj)
    if not run_id or parsed is None or not color:
        return figures.go.Figure(), "This run has no projection to show."
    points = ctx.map_points(run_id, *parsed)
    values, continuous = views.point_colors(ctx.db(), run_id, points.sha256, color)
    fig = figures.map_figure(dataclasses.replace(points, color=values, continuous=continuous),
                             color_title=color.replace("cluster:", "cluster "), highlight=highlight,
                             clip_at=sidebar.novelty_clip(ctx.db(), run_id, color))
    return fig, figures.map_notice(points, ctx.max_points, len(highlight))


def _gallery(ctx: Any, shas: list[str], source: str) -> tuple[str, Any]:
    """The selection gallery's title and thumbnails (the first ``GALLERY_MAX``)."""
    from embedscope.store import views

    rows = views.image_rows(ctx.db(), shas[:GALLERY_MAX])
    cards = [C.thumb_card(r["sha256"], [r.get("label")], path=r.get("path")) for r in rows]
    title = shaping.selection_title(len(shas), source, GALLERY_MAX)
    return title, C.gallery(cards, gallery_id=ids.MAP_GALLERY_CARDS, empty="nothing selected")


def _resolve(ctx: Any, event: dict | None, run_id: str, proj: str | None) -> list[str]:
    """sha256 of the points in a Plotly event (which carries only our point indices)."""
    parsed = shaping.parse_projection(proj)
    if not event or not run_id or parsed is None:
        return []
    points = ctx.map_points(run_id, *parsed)
    return shaping.shas_for(shaping.point_indices(event), points.sha256)
