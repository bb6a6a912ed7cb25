"""Map: a projection of the embeddings as a WebGL scatter, coloured by cluster / label /
novelty / contamination / drop / ingest date. Hover: thumbnail + file name. Click: the
image's summary with its nearest neighbours. Lasso/box: a gallery of the selection + CSV."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids

GALLERY_MAX = 60  # thumbnails shown for a selection (the CSV has all of it)


def _proj_value(method: str, dims: int) -> str:
    return f"{method}:{dims}"


def _parse_proj(value: str | None) -> tuple[str, int] | None:
    if not value or ":" not in value:
        return None
    method, dims = value.rsplit(":", 1)
    return method, int(dims)


def _options(db: Any, run: Any) -> tuple[list[dict], str | None, list[dict], str | None]:
    from embedscope.store import views

    projections = views.projection_options(db, run.run_id)
    p_opts = [{"label": f"{m} {d}-D", "value": _proj_value(m, d)} for m, d in projections]
    primary = _proj_value(run.primary_projection, run.primary_dims) if run.primary_projection else None
    p_value = primary if any(o["value"] == primary for o in p_opts) else (p_opts[0]["value"] if p_opts else None)
    c_opts = [{"label": label, "value": value} for value, label in views.color_options(db, run)]
    return p_opts, p_value, c_opts, c_opts[0]["value"] if c_opts else None


def layout(run: str | None = None, **_: Any) -> Any:
    from embedscope.store import views

    ctx = context.current()
    db = ctx.db()
    all_runs = views.runs(db)
    if not all_runs:
        return html.Div([html.H3("Map"), C.notice(
            "No analysis run in this database yet: the map needs projections. "
            "Run `embedscope analyze --db DIR`, then reload.", kind="warn", id=ids.MAP_NOTICE)])
    current = views.run_by_id(db, run)
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
        html.Div([
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
                html.Div(id=ids.MAP_GALLERY, style={"maxHeight": "520px", "overflowY": "auto"}),
            ], style={"flex": "0 0 33%", "paddingLeft": "10px", "minWidth": "0"}),
        ], style={"display": "flex"}),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    from embedscope.store import views

    @app.callback(Output(ids.MAP_PROJECTION, "options"), Output(ids.MAP_PROJECTION, "value"),
                  Output(ids.MAP_COLOR, "options"), Output(ids.MAP_COLOR, "value"),
                  Input(ids.MAP_RUN, "value"), prevent_initial_call=True)
    def _run_changed(run_id: str) -> tuple:
        db = ctx.db()
        run = views.run_by_id(db, run_id)
        return _options(db, run) if run else ([], None, [], None)

    @app.callback(Output(ids.MAP_GRAPH, "figure"), Output(ids.MAP_NOTICE, "children"),
                  Input(ids.MAP_RUN, "value"), Input(ids.MAP_PROJECTION, "value"), Input(ids.MAP_COLOR, "value"),
                  State(ids.SELECTION, "data"))
    def _figure(run_id: str, proj: str | None, color: str | None, selection: dict | None) -> tuple:
        parsed = _parse_proj(proj)
        if not run_id or parsed is None or not color:
            return figures.go.Figure(), "This run has no projection to show."
        points = ctx.map_points(run_id, *parsed)
        values, continuous = views.point_colors(ctx.db(), run_id, points.sha256, color)
        shown = dataclasses.replace(points, color=values, continuous=continuous)
        highlight = (selection or {}).get("sha256") or [] if (selection or {}).get("source") == "sql" else []
        fig = figures.map_figure(shown, color_title=color.replace("cluster:", "cluster "), highlight=highlight)
        notice = figures.downsample_notice(points, ctx.max_points)
        if highlight:
            notice += f" Ringed in red: {len(highlight):,} images selected by a SQL query."
        return fig, notice

    @app.callback(Output(ids.MAP_TOOLTIP, "show"), Output(ids.MAP_TOOLTIP, "bbox"), Output(ids.MAP_TOOLTIP, "children"),
                  Input(ids.MAP_GRAPH, "hoverData"), State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"))
    def _hover(hover: dict | None, run_id: str, proj: str | None) -> tuple:
        shas = _resolve(ctx, hover, run_id, proj)
        if not shas:
            return False, no_update, no_update
        point = hover["points"][0]
        bbox = point.get("bbox") or {"x0": 0, "x1": 0, "y0": 0, "y1": 0}
        rows = views.image_rows(ctx.db(), shas[:1])
        name = os.path.basename(rows[0]["path"]) if rows and rows[0].get("path") else shas[0][:12]
        return True, bbox, html.Div([html.Img(src=C.thumb_url(shas[0]), style={"maxWidth": "160px", "maxHeight": "160px"}),
                                     html.Div(name, style={"fontSize": "12px"}),
                                     html.Div(rows[0].get("label") or "", style={"fontSize": "11px", "color": "#666"})
                                     if rows else None],
                                    id="map-tooltip-content", **{"data-sha256": shas[0]})

    @app.callback(Output(ids.MAP_POINT_PANEL, "children"), Input(ids.MAP_GRAPH, "clickData"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"), prevent_initial_call=True)
    def _click(click: dict | None, run_id: str, proj: str | None) -> Any:
        shas = _resolve(ctx, click, run_id, proj)
        if not shas:
            return no_update
        return point_panel(ctx, shas[0], run_id)

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
        rows = views.image_rows(ctx.db(), shas[:GALLERY_MAX])
        cards = [C.thumb_card(r["sha256"], [r.get("label")], path=r.get("path")) for r in rows]
        source = (new or {}).get("source", "map")
        title = f"Selection: {len(shas):,} images" + (" (from SQL)" if source == "sql" else "") + \
            (f", first {GALLERY_MAX} shown" if len(shas) > GALLERY_MAX else "")
        return title, C.gallery(cards, gallery_id="map-gallery-cards", empty="nothing selected"), new

    @app.callback(Output(ids.MAP_DOWNLOAD, "data"), Input(ids.MAP_EXPORT, "n_clicks"), State(ids.SELECTION, "data"),
                  prevent_initial_call=True)
    def _export(_n: int, stored: dict | None) -> Any:
        shas = (stored or {}).get("sha256") or []
        if not shas:
            return no_update
        rows = views.image_rows(ctx.db(), shas)
        return {"content": figures.rows_csv(rows), "filename": f"embedscope-selection-{len(rows)}.csv", "type": "text/csv"}


def _resolve(ctx: Any, event: dict | None, run_id: str, proj: str | None) -> list[str]:
    """sha256 of the points in a Plotly event (which carries only our point indices)."""
    parsed = _parse_proj(proj)
    if not event or not run_id or parsed is None:
        return []
    points = ctx.map_points(run_id, *parsed)
    return figures.shas_for(figures.point_indices(event), points.sha256)


def point_panel(ctx: Any, sha256: str, run_id: str | None) -> Any:
    """Thumbnail, file name, cluster and novelty of one image, with its nearest neighbours."""
    from embedscope.errors import EmbedscopeError
    from embedscope.store import views

    db = ctx.db()
    try:
        d = views.image_detail(db, sha256, run_id)
        near = views.neighbours(db, sha256, k=ctx.neighbours_k, model=d["run"].model if d["run"] else None,
                                variant=(d["run"].variant if d["run"] else None) or "full")
    except EmbedscopeError as exc:
        return C.notice(exc.one_line(), kind="error")
    img = d["image"]
    clusters = ", ".join(f"{c['method']} {c['cluster']}" for c in d["clusters"]) or "—"
    flags = d["flags"] or {}
    return html.Div([
        html.A(html.Img(src=C.thumb_url(sha256), style={"maxWidth": "200px", "maxHeight": "200px"}),
               href=C.detail_href(sha256)),
        html.Div(os.path.basename(img.get("path") or ""), style={"fontWeight": "bold"}, id="map-point-name"),
        C.kv_table([("label", img.get("label")), ("clusters", clusters),
                    ("novelty", f"{flags['novelty_score']:.3f}" if flags.get("novelty_score") is not None else None)]),
        dcc.Link("open image detail →", href=C.detail_href(sha256), id="map-open-detail"),
        html.H5(f"{len(near)} nearest neighbours", style={"margin": "8px 0 2px"}),
        C.gallery([C.thumb_card(n["sha256"], [n.get("label"), C.similarity_text(n["similarity"])], path=n.get("path"),
                                class_name="es-thumb es-neighbour") for n in near],
                  gallery_id="map-neighbours", empty="no neighbours"),
    ], **{"data-sha256": sha256})
