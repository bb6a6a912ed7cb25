"""Clusters: the sizes; in tabs, the dendrogram of agglomerative runs (stored by the analysis)
and a teaching animation of k-means / k-medoids iterations on a stored 2-D projection; below,
per cluster (paged) its size, label purity, the members nearest the centroid and the most
atypical ones, among the images the filter sidebar matches. ``?run=`` (or the run picker) chooses the run."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback_context, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import cluster_figures, context, figures, ids, run_picker, shaping, sidebar

MAX_ANIM_POINTS = 3_000  # points in the animation (a seeded sample beyond this)
MAX_ANIM_K = 12
MAX_ANIM_ITER = 30
CLUSTERS_PER_PAGE = 8
TAB_DENDROGRAM, TAB_ANIMATION = "dendrogram", "animation"
FILTER_NOTE = "clusters-filter-note"


def layout(method: str | None = None, run: str | None = None, **_: Any) -> Any:
    from embedscope.store import views
    from embedscope.store.runs import UnknownRunError, run_or_latest

    db = context.current().db()
    try:
        current = run_or_latest(db, run)
    except UnknownRunError as exc:
        return C.message_page("Clusters", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    methods = views.cluster_methods(db, current.run_id) if current else []
    if not methods:
        return C.message_page("Clusters", "No clusters stored yet: run `embedscope analyze --db DIR`.")
    value = method if method in methods else (current.primary_cluster if current.primary_cluster in methods else methods[0])
    projections = [m for m, d in views.projection_options(db, current.run_id) if d == 2]
    proj = current.primary_projection if current.primary_projection in projections else (projections[0] if projections else None)
    return html.Div([
        html.H3("Clusters"),
        run_picker.run_picker(db, current, page="/clusters"),
        html.Div([html.Span("clustering ", style={"fontSize": "13px"}),
                  html.Div(dcc.Dropdown(id=ids.CLUSTERS_METHOD, options=methods, value=value, clearable=False),
                           style={"width": "300px", "display": "inline-block", "verticalAlign": "middle"})]),
        dcc.Store(id=ids.CLUSTERS_RUN, data=current.run_id),
        dcc.Graph(id=ids.CLUSTERS_SIZES, style={"height": "300px"}),
        dcc.Tabs(id=ids.CLUSTERS_TABS, value=TAB_DENDROGRAM if value == "agglomerative" else TAB_ANIMATION,
                 children=[dcc.Tab(label="dendrogram", value=TAB_DENDROGRAM),
                           dcc.Tab(label="k-means / k-medoids step by step", value=TAB_ANIMATION)]),
        html.Div([html.Div(id=ids.CLUSTERS_DENDROGRAM_NOTE, style={"fontSize": "12px", "color": "#555"}),
                  dcc.Graph(id=ids.CLUSTERS_DENDROGRAM, style={"display": "none"})],
                 id=ids.CLUSTERS_TABS + "-" + TAB_DENDROGRAM),
        html.Div(_animation_controls(current, value, projections, proj), id=ids.CLUSTERS_TABS + "-" + TAB_ANIMATION),
        html.H4("Clusters: typical and atypical members", style={"marginTop": "18px"}),
        dcc.Store(id=ids.CLUSTERS_PAGE, data=0),
        html.Div([
            sidebar.sidebar(db, current),
            html.Div([C.pager(ids.CLUSTERS_PREV, ids.CLUSTERS_NEXT, ids.CLUSTERS_PAGE_LABEL),
                      html.Div(id=FILTER_NOTE, style={"fontSize": "12px", "color": "#555"}),
                      html.Div(id=ids.CLUSTERS_GALLERIES)], style={"flex": "1 1 auto", "minWidth": "0"}),
        ], style={"display": "flex", "alignItems": "flex-start"}),
    ])


def _default_k(run: Any, method: str | None) -> int:
    info = (run.params.get("methods_info") or {}).get(method or "") or {}
    k = info.get("k") or run.params.get("k_resolved") or run.params.get("k") or 3
    return int(k) if int(k) >= 2 else 3


def _animation_controls(run: Any, method: str | None, projections: list[str], proj: str | None) -> Any:
    label = {"fontSize": "13px", "marginRight": "4px"}
    box = {"display": "inline-block", "marginRight": "18px", "verticalAlign": "middle"}
    if not projections:
        return html.Div([html.H4("k-means / k-medoids step by step"),
                         C.notice("This run stored no 2-D projection to animate on: run `embedscope analyze --dims 2`.",
                                  kind="warn")])
    return html.Div([
        html.H4("k-means / k-medoids step by step (a teaching view)", style={"marginTop": "8px"}),
        html.Div([
            html.Div([html.Span("algorithm", style=label),
                      dcc.RadioItems(id=ids.ANIM_METHOD, options=[{"label": " k-means ", "value": "kmeans"},
                                                                  {"label": " k-medoids", "value": "kmedoids"}],
                                     value="kmeans", inline=True)], style=box),
            html.Div([html.Span("init", style=label),
                      dcc.RadioItems(id=ids.ANIM_INIT, options=[{"label": " random points ", "value": "random"},
                                                                {"label": " k-means++", "value": "k-means++"}],
                                     value="random", inline=True)], style=box),
            html.Div([html.Span("k", style=label),
                      dcc.Input(id=ids.ANIM_K, type="number", min=2, max=MAX_ANIM_K, step=1, value=min(_default_k(run, method), MAX_ANIM_K),
                                debounce=True, style={"width": "60px"})], style=box),
            html.Div([html.Span("seed", style=label),
                      dcc.Input(id=ids.ANIM_SEED, type="number", min=0, step=1, value=0, debounce=True,
                                style={"width": "60px"})], style=box),
            html.Div([html.Span("on the 2-D map", style=label),
                      html.Div(dcc.Dropdown(id=ids.ANIM_PROJECTION, options=projections, value=proj, clearable=False),
                               style={"width": "140px", "display": "inline-block", "verticalAlign": "middle"})], style=box),
        ]),
        html.Div(id=ids.ANIM_NOTE, style={"fontSize": "12px", "color": "#555", "margin": "4px 0"}),
        dcc.Loading(dcc.Graph(id=ids.ANIM_GRAPH)),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    from embedscope.store import views
    from embedscope.store.runs import run_by_id

    @app.callback(Output(ids.CLUSTERS_SIZES, "figure"), Output(ids.CLUSTERS_GALLERIES, "children"),
                  Output(ids.CLUSTERS_PAGE, "data"), Output(ids.CLUSTERS_PAGE_LABEL, "children"),
                  Output(FILTER_NOTE, "children"),
                  Input(ids.CLUSTERS_METHOD, "value"), Input(ids.CLUSTERS_PREV, "n_clicks"),
                  Input(ids.CLUSTERS_NEXT, "n_clicks"), *sidebar.inputs(), State(ids.CLUSTERS_RUN, "data"),
                  State(ids.CLUSTERS_PAGE, "data"))
    def _clusters(method: str, _prev: int, _next: int, *args: Any) -> tuple:
        run_id, page = args[-2], args[-1]
        db = ctx.db()
        only = filtered_shas(ctx, sidebar.sidebar_values(*args[:-2]), args[-3])
        summaries = views.cluster_summaries(db, run_by_id(db, run_id), method)
        shown_summaries = summaries if only is None else views.cluster_summaries(db, run_by_id(db, run_id), method, only=only)
        n = len(shown_summaries)
        page = shaping.turn_page(page or 0, callback_context.triggered_id, ids.CLUSTERS_PREV, ids.CLUSTERS_NEXT, n,
                                 CLUSTERS_PER_PAGE)
        shown = shown_summaries[page * CLUSTERS_PER_PAGE:(page + 1) * CLUSTERS_PER_PAGE]
        shas = [s for c in shown for s in c.representatives + c.atypical]
        rows = {r["sha256"]: r for r in views.image_rows(db, shas)}
        label = shaping.page_label(page, n, CLUSTERS_PER_PAGE).replace("images", "clusters", 1)
        note = (None if only is None else
                html.Span(f"filter: {len(only):,} images match, in {n:,} of {len(summaries):,} clusters; "
                          "the members shown are matching ones", id="clusters-filter-count",
                          **{"data-images": str(len(only)), "data-clusters": str(n)}))
        return (figures.cluster_sizes_figure(summaries), [C.cluster_block(s, rows, run_id=run_id) for s in shown],
                page, label, note)

    @app.callback(Output(ids.CLUSTERS_TABS, "value"), Input(ids.CLUSTERS_METHOD, "value"), prevent_initial_call=True)
    def _tab_for(method: str) -> str:
        return TAB_DENDROGRAM if method == "agglomerative" else TAB_ANIMATION

    @app.callback(Output(ids.CLUSTERS_TABS + "-" + TAB_DENDROGRAM, "style"),
                  Output(ids.CLUSTERS_TABS + "-" + TAB_ANIMATION, "style"), Input(ids.CLUSTERS_TABS, "value"))
    def _show_tab(tab: str) -> tuple:
        shown, hidden = {"display": "block"}, {"display": "none"}
        return (shown, hidden) if tab == TAB_DENDROGRAM else (hidden, shown)

    @app.callback(Output(ids.CLUSTERS_DENDROGRAM, "figure"), Output(ids.CLUSTERS_DENDROGRAM, "style"),
                  Output(ids.CLUSTERS_DENDROGRAM_NOTE, "children"),
                  Input(ids.CLUSTERS_METHOD, "value"), State(ids.CLUSTERS_RUN, "data"))
    def _dendrogram(method: str, run_id: str) -> tuple:
        hidden = {"display": "none"}
        if method != "agglomerative":
            return {}, hidden, C.notice("The dendrogram is stored for agglomerative clusterings: choose "
                                        "'agglomerative' above (run `embedscope analyze --cluster agglomerative`).")
        db = ctx.db()
        run = run_by_id(db, run_id)
        d = run.params.get("dendrogram") or {}
        if not d.get("linkage") or not d.get("sha256"):
            return {}, hidden, C.notice("This run stored no dendrogram (runs from older versions do not).", kind="warn")
        shas = list(d["sha256"])
        names = {r["sha256"]: shaping.image_name(r["sha256"], r.get("path")) for r in views.image_rows(db, shas)}
        fig = cluster_figures.dendrogram_figure(d["linkage"], d["labels"], names=[names.get(x, x[:12]) for x in shas],
                                                method=d.get("method") or "ward", total=run.n_images)
        return fig, {"display": "block"}, html.Div(shaping.dendrogram_note(len(shas), run.n_images),
                                                   id=ids.CLUSTERS_DENDROGRAM_TEXT)

    @app.callback(Output(ids.ANIM_GRAPH, "figure"), Output(ids.ANIM_NOTE, "children"),
                  Input(ids.ANIM_METHOD, "value"), Input(ids.ANIM_INIT, "value"), Input(ids.ANIM_K, "value"),
                  Input(ids.ANIM_SEED, "value"), Input(ids.ANIM_PROJECTION, "value"), State(ids.CLUSTERS_RUN, "data"))
    def _animation(method: str, init: str, k: int | None, seed: int | None, projection: str, run_id: str) -> tuple:
        from embedscope.analysis.iterations import cluster_iterations
        from embedscope.errors import EmbedscopeError

        points = ctx.map_points(run_id, projection, 2)
        if points.total == 0:
            return {}, C.notice(f"no {projection} 2-D projection stored for this run", kind="warn")
        k = max(2, min(int(k or 3), MAX_ANIM_K))
        seed = max(0, int(seed or 0))
        rows, xy = shaping.animation_xy(points, MAX_ANIM_POINTS, seed)
        try:
            it = cluster_iterations(xy, min(k, len(xy)), method=method, seed=seed, max_iter=MAX_ANIM_ITER, init=init)
        except EmbedscopeError as exc:
            return {}, C.notice(exc.one_line(), kind="error")
        shas = [points.sha256[i] for i in rows]
        names = {r["sha256"]: shaping.image_name(r["sha256"], r.get("path")) for r in views.image_rows(ctx.db(), shas)}
        fig = cluster_figures.iterations_figure(xy, it, title=shaping.animation_title(method, k, init, seed),
                                                names=[names.get(s) or s[:12] for s in shas])
        note = shaping.animation_note(projection, len(xy), points.total, it, MAX_ANIM_ITER)
        return fig, html.Div(note, id=ids.ANIM_NOTE_TEXT, **{"data-frames": str(it.n_frames)})


def filtered_shas(ctx: Any, values: dict[str, Any], context_: dict[str, Any] | None) -> set[str] | None:
    """The images the sidebar matches (its SQL), or None when nothing is chosen."""
    where = sidebar.filter_where(values)
    if not where or not context_:
        return None
    return set(sidebar.matching(ctx.db(), context_, where, columns="sha256", limits=sidebar.sql_limits(ctx))
               .column("sha256").to_pylist())
