"""Map: a projection of the embeddings, coloured by cluster / label / novelty / contamination /
drop / ingest date. A 2-D map draws by level of detail (:mod:`embedscope.dashboard.map_view`):
a server-rendered density image when many points are in view, WebGL markers of the points in
view otherwise, thumbnails at close zoom, cluster representatives on request. Hover: thumbnail
+ file name. Click: the image's summary with its nearest neighbours. Lasso/box: selected on the
server, a paged gallery of the selection + CSV + tags. A 3-D map is the WebGL scatter of a
fixed sample."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import (context, curation, figures, ids, map_layers, map_page_cache, map_state, map_view, shaping,
                                  text_search)

GALLERY_MAX = 60  # thumbnails per gallery page (the CSV has all of the selection)


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
    p_opts, p_value, c_opts, c_value = map_page_cache.map_choices(db, current)
    figure, notice, lod = _first_map(context.current(), current.run_id, p_value, c_value)
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
            dcc.Checklist(id=ids.MAP_REPS, options=[{"label": " cluster representatives", "value": "on"}], value=[],
                          style={"display": "inline-block", "verticalAlign": "bottom", "fontSize": "13px"}),
        ]),
        html.Div(notice, id=ids.MAP_NOTICE, style={"fontSize": "13px", "color": "#555", "margin": "6px 0"}),
        text_search.text_box(),
        html.Div([
            map_page_cache.map_sidebar(db, current),
            html.Div([dcc.Loading(dcc.Graph(id=ids.MAP_GRAPH, figure=figure or {"data": [], "layout": {}}, clear_on_unhover=True,
                                            config={"displaylogo": False, "scrollZoom": True}),
                                  id=ids.MAP_LOADING, delay_show=500, show_initially=False, target_components={ids.MAP_GRAPH: "figure"},
                                  overlay_style={"visibility": "visible", "opacity": 0.55},
                                  custom_spinner=C.notice("drawing the map…")),
                      dcc.Tooltip(id=ids.MAP_TOOLTIP, direction="right"),
                      dcc.Store(id=ids.MAP_LOD, data=lod), dcc.Store(id=ids.MAP_GL_WARM), dcc.Store(id=ids.MAP_VIEWPORT), dcc.Store(id=ids.MAP_GALLERY_PAGE, data=0)],
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
                html.Div([html.Button("◀ previous", id=ids.MAP_GALLERY_PREV, n_clicks=0),
                          html.Button("next ▶", id=ids.MAP_GALLERY_NEXT, n_clicks=0, style={"marginLeft": "6px"})],
                         style={"margin": "4px 0"}),
                dcc.Loading(html.Div(id=ids.MAP_GALLERY, style={"maxHeight": "520px", "overflowY": "auto"}),
                            delay_show=500, show_initially=False, custom_spinner=C.notice("selecting…"),
                            overlay_style={"visibility": "visible", "opacity": 0.55}),
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
        return map_page_cache.map_choices(db, run_by_id(db, run_id)) if run_id else ([], None, [], None)

    @app.callback(Output(ids.MAP_GRAPH, "figure"), Output(ids.MAP_NOTICE, "children"), Output(ids.MAP_LOD, "data"),
                  Input(ids.MAP_RUN, "value"), Input(ids.MAP_PROJECTION, "value"), Input(ids.MAP_COLOR, "value"),
                  Input(ids.MAP_REPS, "value"), Input(ids.MAP_VIEWPORT, "data"),
                  State(ids.SELECTION, "data"), State(ids.MAP_LOD, "data"))
    def _figure(run_id: str, proj: str | None, color: str | None, reps: list | None, viewport: list | None,
                selection: dict | None, lod: dict | None) -> tuple:
        lod = lod or {}
        view = None
        highlight = _highlight(selection)
        if callback_context.triggered_id is None and not highlight and not reps and lod.get("key") == [run_id, proj, color]:
            return no_update, no_update, no_update  # the page came with this map drawn (see _first_map)
        # a zoom or pan of the drawn map: only a view that moved. (A newer request supersedes an
        # older one in flight, so a viewport event can arrive before the map it belongs to: then draw.)
        current = lod.get("key") == [run_id, proj, color] and lod.get("reps") == bool(reps) \
            and lod.get("ringed", 0) == len(highlight)
        if callback_context.triggered_id == ids.MAP_VIEWPORT and current:
            view = map_view.moved(viewport, lod.get("view")) if lod.get("mode") in ("density", "points") else None
            if view is None:
                return no_update, no_update, no_update
        elif callback_context.triggered_id in (ids.MAP_COLOR, ids.MAP_REPS) and lod.get("view") \
                and lod.get("key", [None, None])[:2] == [run_id, proj]:
            view = map_view.View(*lod["view"])  # a new colour or layer keeps the view
        return _draw(ctx, run_id, proj, color, highlight, reps=bool(reps), view=view,
                     lod=lod if view is not None and current else None)

    # the axes ranges after any zoom, pan, reset or resize, as the browser drew them (a zoom or
    # pan of the level-of-detail map writes them sooner, see the hooks below)
    app.clientside_callback(
        """function(_r) { const g = document.querySelector('#map-graph .js-plotly-plot');
            if (!g || !g.layout || !g.layout.meta || !g.layout.meta.lod || !g._fullLayout.xaxis)
                return window.dash_clientside.no_update;  // not (yet) a 2-D level-of-detail map
            const x = g._fullLayout.xaxis.range, y = g._fullLayout.yaxis.range; return [x[0], x[1], y[0], y[1]]; }""",
        Output(ids.MAP_VIEWPORT, "data"), Input(ids.MAP_GRAPH, "relayoutData"), prevent_initial_call=True)

    # Browser-side hooks on the graph, installed once it has drawn:
    # - the page's first map comes without the density view's WebGL trace (see _first_map); the
    #   browser adds it (creating the WebGL context, compiling its shaders: ~0.5 s in software GL)
    #   when it is idle 1.5 s after the map is drawn, or at the first zoom / pan while the server
    #   answers it — not before the first map shows, nor in the middle of a hover;
    # - dcc.Graph copies every relayout into its figure and re-plots the whole figure before
    #   anything is sent (a Plotly.react: 0.1-0.2 s in software GL). For a zoom, a pan or a lasso
    #   of the level-of-detail map that is wasted (the server draws the new view; the lasso's
    #   outline is not kept), so the map hears those events first: a zoom / pan writes the
    #   viewport store itself, and the event loses those keys before dcc sees it.
    app.clientside_callback(
        """function(_id) {
            const warm = (g) => {
                if (g.__glWarm || !g._fullData || !g.layout.meta || !g.layout.meta.lod
                    || g._fullData.some(t => t.type === 'scattergl')) return;
                g.__glWarm = true;
                Plotly.addTraces(g, {type: 'scattergl', x: [null], y: [null], mode: 'markers', showlegend: false,
                                     hoverinfo: 'skip', name: '%(keeper)s'});
            };
            const intercept = (g) => {
                if (g.__relayoutFirst || !g._ev || !g._ev.prependListener || !window.dash_clientside.set_props) return;
                g.__relayoutFirst = true;
                g._ev.prependListener('plotly_relayout', (ev) => {
                    if (!ev || !g.layout || !g.layout.meta || !g.layout.meta.lod || !g._fullLayout.xaxis) return;
                    const keys = Object.keys(ev);
                    keys.filter(k => k.startsWith('selections')).forEach(k => delete ev[k]);
                    const axes = keys.filter(k => /^[xy]axis[.](range|autorange)/.test(k));
                    if (!axes.length) return;
                    axes.forEach(k => delete ev[k]);
                    const x = g._fullLayout.xaxis.range, y = g._fullLayout.yaxis.range;
                    window.dash_clientside.set_props('%(viewport)s', {data: [x[0], x[1], y[0], y[1]]});
                });
            };
            const hook = (tries) => {
                const g = document.querySelector('#map-graph .js-plotly-plot');
                if (!g || !g._fullData || !g.on || !window.Plotly) { if (tries > 0) setTimeout(() => hook(tries - 1), 200); return; }
                intercept(g);
                g.on('plotly_relayout', () => setTimeout(() => warm(g), 0));
                setTimeout(() => (window.requestIdleCallback || setTimeout)(() => warm(g)), 1500);
            };
            hook(150); return window.dash_clientside.no_update; }""" % {"keeper": map_layers.WEBGL_KEEPER,
                                                                         "viewport": ids.MAP_VIEWPORT},
        Output(ids.MAP_GL_WARM, "data"), Input(ids.MAP_GRAPH, "id"))

    @app.callback(Output(ids.MAP_GRAPH, "figure", allow_duplicate=True),
                  Output(ids.MAP_NOTICE, "children", allow_duplicate=True),
                  Output(ids.MAP_LOD, "data", allow_duplicate=True),
                  Output(ids.MAP_GALLERY_TITLE, "children", allow_duplicate=True),
                  Output(ids.SELECTION, "data", allow_duplicate=True),
                  Output(ids.MAP_GALLERY_PAGE, "data", allow_duplicate=True), Output(ids.MAP_TEXT_STATUS, "children"),
                  Input(ids.MAP_TEXT_GO, "n_clicks"), Input(ids.MAP_TEXT, "n_submit"), State(ids.MAP_TEXT, "value"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"), State(ids.MAP_COLOR, "value"),
                  State(ids.MAP_REPS, "value"), prevent_initial_call=True)
    def _text(_n: int, _submit: int, text: str | None, run_id: str, proj: str | None, color: str | None,
              reps: list | None) -> tuple:
        if not (text or "").strip():
            return (no_update,) * 6 + ("",)
        try:
            shas, model = text_search.text_hits(ctx, text.strip())
        except EmbedscopeError as exc:
            return (no_update,) * 6 + (C.notice(exc.one_line(), kind="error"),)
        fig, notice, lod = _draw(ctx, run_id, proj, color, shas, reps=bool(reps))
        status = html.Span(f"top {len(shas)} for {text.strip()!r} in {model}", id=ids.MAP_TEXT_STATUS + "-done",
                           **{"data-hits": ",".join(shas)})
        return fig, notice, lod, _gallery_title(len(shas), "text"), {"source": "text", "sha256": shas}, 0, status

    @app.callback(Output(ids.MAP_TOOLTIP, "show"), Output(ids.MAP_TOOLTIP, "bbox"), Output(ids.MAP_TOOLTIP, "children"),
                  Input(ids.MAP_GRAPH, "hoverData"), State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"),
                  State(ids.MAP_LOD, "data"))
    def _hover(hover: dict | None, run_id: str, proj: str | None, lod: dict | None) -> tuple:
        shas = _resolve(ctx, hover, run_id, proj, lod)
        if not shas:
            return False, no_update, no_update
        bbox = hover["points"][0].get("bbox") or {"x0": 0, "x1": 0, "y0": 0, "y1": 0}
        rows = _image_rows(ctx, shas[:1])
        return True, bbox, _tooltip(shas[0], rows[0] if rows else None)

    @app.callback(Output(ids.MAP_POINT_PANEL, "children"), Input(ids.MAP_GRAPH, "clickData"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"), State(ids.MAP_LOD, "data"),
                  prevent_initial_call=True)
    def _click(click: dict | None, run_id: str, proj: str | None, lod: dict | None) -> Any:
        shas = _resolve(ctx, click, run_id, proj, lod)
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

    # The selection's count comes first, its gallery page in a second callback: the title is on
    # screen before 60 cards are rendered (issue #18: "returns counts at once and pages the gallery").
    @app.callback(Output(ids.MAP_GALLERY_TITLE, "children"), Output(ids.SELECTION, "data"),
                  Output(ids.MAP_GALLERY_PAGE, "data"),
                  Input(ids.MAP_GRAPH, "selectedData"), Input(ids.MAP_CLEAR, "n_clicks"),
                  Input(ids.MAP_GALLERY_PREV, "n_clicks"), Input(ids.MAP_GALLERY_NEXT, "n_clicks"),
                  State(ids.SELECTION, "data"), State(ids.MAP_GALLERY_PAGE, "data"),
                  State(ids.MAP_RUN, "value"), State(ids.MAP_PROJECTION, "value"))
    def _selection(selected: dict | None, _clear: int, _prev: int, _next: int, stored: dict | None, page: int | None,
                   run_id: str, proj: str | None) -> tuple:
        # when the page is (re)built every input counts as triggered, with empty values
        trigger = callback_context.triggered_id
        if trigger == ids.MAP_CLEAR and _clear:
            return "Selection", None, 0
        if trigger in (ids.MAP_GALLERY_PREV, ids.MAP_GALLERY_NEXT) and stored:
            n = map_state.selection_size(stored)
            last = max(0, (n - 1) // GALLERY_MAX)
            page = min(last, max(0, (page or 0) + (1 if trigger == ids.MAP_GALLERY_NEXT else -1)))
            return _gallery_title(n, stored.get("source", "map"), page), no_update, page
        if trigger == ids.MAP_GRAPH and selected is not None:
            shas = _selected(ctx, selected, run_id, proj)
            new = map_state.current().selection_store(shas)
            return _gallery_title(len(shas), "map"), new, 0
        # page load: show what the SQL page (or an earlier lasso) selected
        n = map_state.selection_size(stored) if stored else 0
        return _gallery_title(n, (stored or {}).get("source", "map")), no_update, 0

    @app.callback(Output(ids.MAP_GALLERY, "children"), Input(ids.SELECTION, "data"), Input(ids.MAP_GALLERY_PAGE, "data"))
    def _gallery_page(stored: dict | None, page: int | None) -> Any:
        try:
            return _gallery_cards(ctx, map_state.selected_shas(stored) if stored else [], page or 0)
        except EmbedscopeError as exc:  # a large selection the server no longer holds
            return C.notice(exc.one_line(), kind="warn")

    @app.callback(Output(ids.MAP_DOWNLOAD, "data"), Input(ids.MAP_EXPORT, "n_clicks"), State(ids.SELECTION, "data"),
                  prevent_initial_call=True)
    def _export(_n: int, stored: dict | None) -> Any:
        shas = map_state.selected_shas(stored)
        if not shas:
            return no_update
        rows = views.image_rows(ctx.db(), shas)
        return {"content": shaping.rows_csv(rows), "filename": f"embedscope-selection-{len(rows)}.csv", "type": "text/csv"}


def _highlight(selection: dict | None) -> list[str]:
    """The sha256 to ring: a SQL / text / sidebar selection, also when the server holds it (a
    lasso's is not resolved: it is not ringed, and every zoom asks)."""
    from embedscope.errors import EmbedscopeError

    if (selection or {}).get("source") not in shaping.RINGED_SOURCES:
        return []
    try:
        return map_state.selected_shas(selection)
    except EmbedscopeError:  # no longer held: the map draws without rings
        return []


def _first_map(ctx: Any, run_id: str, proj: str | None, color: str | None) -> tuple:
    """(figure, notice, view state) of the page's first map, drawn into the layout itself so
    the page arrives with its map instead of asking for it in a second round trip once it is
    built; (None, None, None) when it cannot be drawn here (the callback then says why)."""
    from embedscope.errors import EmbedscopeError

    try:
        figure, notice, lod = _draw(ctx, run_id, proj, color, [])
    except EmbedscopeError:
        return None, None, None
    # without its WebGL trace the first map draws a second sooner in software GL (added back later)
    figure["data"] = [t for t in figure["data"] if t.get("name") != map_layers.WEBGL_KEEPER]
    return figure, notice, lod


def _draw(ctx: Any, run_id: str, proj: str | None, color: str | None, highlight: list[str], *, reps: bool = False,
          view: map_view.View | None = None, lod: dict | None = None) -> tuple:
    """(figure, notice, view state) of the map at ``view`` (default: all of it); ``lod``: the
    state of the map on screen, when only its view changed."""
    parsed = shaping.parse_projection(proj)
    if not run_id or parsed is None or not color:
        return {"data": [], "layout": {}}, "This run has no projection to show.", None
    if parsed[1] != 2:
        fig, notice = _map_figure_3d(ctx, run_id, proj, color, highlight)
        return fig, notice, {"mode": "3d"}
    index = map_view.map_index(ctx, map_state.current(), run_id, *parsed)
    view = view or index.full_view()
    colours = map_view.map_colours(ctx, index, run_id, color)
    drawn = map_view.draw(ctx, index, colours, view, threshold=ctx.max_points, key=[run_id, proj, color],
                          highlight=highlight, representatives=reps, previous=lod)
    map_state.current().read_ahead(ctx.db(), drawn.pictures)
    return drawn.figure, drawn.notice, drawn.state


def _map_figure_3d(ctx: Any, run_id: str, proj: str | None, color: str | None, highlight: list[str]) -> tuple:
    """The 3-D map figure of a run's projection coloured by ``color``, ``highlight`` ringed; and its notice."""
    from embedscope.store import views

    parsed = shaping.parse_projection(proj)
    points = ctx.map_points(run_id, *parsed)
    values, continuous = views.point_colors(ctx.db(), run_id, points.sha256, color)
    fig = figures.map_figure(dataclasses.replace(points, color=values, continuous=continuous),
                             color_title=map_view.color_title(color), highlight=highlight,
                             clip_at=figures.novelty_clip(ctx.db(), run_id, color))
    return fig, figures.map_notice(points, ctx.max_points, len(highlight))


def _gallery_title(n: int, source: str, page: int = 0) -> str:
    """The selection's title: its count, source and which page of the gallery is shown."""
    title = shaping.selection_title(n, source, n)
    if n > GALLERY_MAX:
        start = page * GALLERY_MAX
        title += f" · {start + 1:,}–{min(start + GALLERY_MAX, n):,} shown (page {page + 1} of {(n - 1) // GALLERY_MAX + 1:,})"
    return title


def _gallery_cards(ctx: Any, shas: list[str], page: int = 0) -> Any:
    """One page (``GALLERY_MAX``) of the selection's thumbnails."""
    start = page * GALLERY_MAX
    rows = _image_rows(ctx, shas[start:start + GALLERY_MAX])
    map_state.current().read_ahead(ctx.db(), [r["sha256"] for r in rows])
    cards = [(r["sha256"], map_layers.THUMB_URL.format(r["sha256"]), [r.get("label")], r.get("path")) for r in rows]
    return C.thumb_cards_html(cards, gallery_id=ids.MAP_GALLERY_CARDS, empty="nothing selected")


def _image_rows(ctx: Any, shas: list[str]) -> list[dict[str, Any]]:
    """``{sha256, path, label}`` of ``shas`` (unknown ones skipped) from the app's cached
    sha256 → (path, label) map: no scan of a large images table per hover or gallery page."""
    if ctx.search is None:
        from embedscope.store import views

        return views.image_rows(ctx.db(), shas)
    info = ctx.search.image_info(ctx.db(), shas)
    return [{"sha256": s, "path": info[s][0], "label": info[s][1]} for s in shas if s in info]


def _tooltip(sha: str, row: dict | None) -> Any:
    """The hover card, its picture from ``/map-thumb`` (a placeholder for ids without one)."""
    tip = C.map_tooltip(sha, row)
    tip.children[0].src = map_layers.THUMB_URL.format(sha)
    return tip


def _resolve(ctx: Any, event: dict | None, run_id: str, proj: str | None, lod: dict | None) -> list[str]:
    """sha256 of the point a hover / click event is on (its index, or the nearest point)."""
    parsed = shaping.parse_projection(proj)
    if not event or not run_id or parsed is None:
        return []
    if parsed[1] != 2:
        points = ctx.map_points(run_id, *parsed)
        return shaping.shas_for(shaping.point_indices(event), points.sha256)
    index = map_view.map_index(ctx, map_state.current(), run_id, *parsed)
    return index.shas(map_view.event_indices(index, event, lod))


def _selected(ctx: Any, selected: dict, run_id: str, proj: str | None) -> list[str]:
    """sha256 of every point inside a lasso / box (on the server, whatever is drawn)."""
    parsed = shaping.parse_projection(proj)
    if not run_id or parsed is None:
        return []
    if parsed[1] != 2:
        points = ctx.map_points(run_id, *parsed)
        return shaping.shas_for(shaping.point_indices(selected), points.sha256)
    index = map_view.map_index(ctx, map_state.current(), run_id, *parsed)
    polygon = map_view.selection_polygon(selected)
    rows = index.in_polygon(*polygon) if polygon else np.asarray(shaping.point_indices(selected), np.int64)
    return index.shas(rows)
