"""Clusters: per cluster its size, label purity, the members nearest the centroid and the
most atypical ones; the dendrogram of agglomerative runs (stored by the analysis); and a
teaching animation of k-means / k-medoids iterations on a stored 2-D projection."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context, figures, ids

MAX_ANIM_POINTS = 3_000  # points in the animation (a seeded sample beyond this)
MAX_ANIM_K = 12
MAX_ANIM_ITER = 30


def layout(method: str | None = None, **_: Any) -> Any:
    from embedscope.store import views

    db = context.current().db()
    run = views.run_by_id(db, None)
    methods = views.cluster_methods(db, run.run_id) if run else []
    if not methods:
        return html.Div([html.H3("Clusters"), C.notice("No clusters stored yet: run `embedscope analyze --db DIR`.", kind="warn")])
    value = method if method in methods else (run.primary_cluster if run.primary_cluster in methods else methods[0])
    projections = [f"{m}" for m, d in views.projection_options(db, run.run_id) if d == 2]
    proj = run.primary_projection if run.primary_projection in projections else (projections[0] if projections else None)
    return html.Div([
        html.H3(f"Clusters (run {run.run_id[:8]})"),
        html.Div(dcc.Dropdown(id=ids.CLUSTERS_METHOD, options=methods, value=value, clearable=False), style={"width": "300px"}),
        dcc.Store(id="clusters-run", data=run.run_id),
        dcc.Graph(id=ids.CLUSTERS_SIZES),
        html.Div(id=ids.CLUSTERS_DENDROGRAM_NOTE, style={"fontSize": "12px", "color": "#555"}),
        dcc.Graph(id=ids.CLUSTERS_DENDROGRAM, style={"display": "none"}),
        html.Div(id=ids.CLUSTERS_GALLERIES),
        _animation_controls(run, value, projections, proj),
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
        html.H4("k-means / k-medoids step by step (a teaching view)", style={"marginTop": "24px"}),
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

    @app.callback(Output(ids.CLUSTERS_DENDROGRAM, "figure"), Output(ids.CLUSTERS_DENDROGRAM, "style"),
                  Output(ids.CLUSTERS_DENDROGRAM_NOTE, "children"),
                  Input(ids.CLUSTERS_METHOD, "value"), State("clusters-run", "data"))
    def _dendrogram(method: str, run_id: str) -> tuple:
        import os

        from embedscope.store import views

        hidden = {"display": "none"}
        if method != "agglomerative":
            return {}, hidden, None
        db = ctx.db()
        run = views.run_by_id(db, run_id)
        d = (run.params.get("dendrogram") if run else None) or {}
        if not d.get("linkage") or not d.get("sha256"):
            return {}, hidden, C.notice("This run stored no dendrogram (runs from older versions do not).", kind="warn")
        shas = list(d["sha256"])
        names = {r["sha256"]: os.path.basename(r.get("path") or "") or r["sha256"][:12] for r in views.image_rows(db, shas)}
        fig = figures.dendrogram_figure(d["linkage"], d["labels"], names=[names.get(x, x[:12]) for x in shas],
                                        method=d.get("method") or "ward", total=run.n_images)
        total = run.n_images or len(shas)
        note = (f"Dendrogram of the {len(shas)} images of a seeded sample "
                + (f"(of {total:,}; a full dendrogram is unreadable beyond a few hundred leaves)" if len(shas) < total
                   else f"(all {total} images)")
                + ", computed by the analysis in the embedding space. Leaves are coloured by their stored cluster; "
                  "a link is coloured when everything under it is in one cluster.")
        return fig, {"display": "block"}, html.Div(note, id="clusters-dendrogram-text")

    @app.callback(Output(ids.ANIM_GRAPH, "figure"), Output(ids.ANIM_NOTE, "children"),
                  Input(ids.ANIM_METHOD, "value"), Input(ids.ANIM_INIT, "value"), Input(ids.ANIM_K, "value"),
                  Input(ids.ANIM_SEED, "value"), Input(ids.ANIM_PROJECTION, "value"), State("clusters-run", "data"))
    def _animation(method: str, init: str, k: int | None, seed: int | None, projection: str, run_id: str) -> tuple:
        import os

        import numpy as np

        from embedscope.analysis.iterations import cluster_iterations, sample_rows
        from embedscope.errors import EmbedscopeError
        from embedscope.store import views

        points = ctx.map_points(run_id, projection, 2)
        if points.total == 0:
            return {}, C.notice(f"no {projection} 2-D projection stored for this run", kind="warn")
        k = max(2, min(int(k or 3), MAX_ANIM_K))
        seed = max(0, int(seed or 0))
        rows = sample_rows(points.shown, MAX_ANIM_POINTS, seed)
        xy = np.column_stack([points.x, points.y])[rows]
        try:
            it = cluster_iterations(xy, min(k, len(xy)), method=method, seed=seed, max_iter=MAX_ANIM_ITER, init=init)
        except EmbedscopeError as exc:
            return {}, C.notice(exc.one_line(), kind="error")
        shas = [points.sha256[i] for i in rows]
        names = {r["sha256"]: os.path.basename(r.get("path") or "") for r in views.image_rows(ctx.db(), shas)}
        title = f"{'k-medoids' if method == 'kmedoids' else 'k-means'} · k={k} · {init} init · seed {seed}"
        fig = figures.iterations_figure(xy, it, title=title, names=[names.get(s) or s[:12] for s in shas])
        sample = (f"a seeded sample of {len(xy):,} of {points.total:,} points" if len(xy) < points.total
                  else f"all {len(xy):,} points")
        end = (f"Converged after {it.n_frames - 1} iterations" if it.converged
               else f"Stopped at the cap of {MAX_ANIM_ITER} iterations (not converged)")
        note = (f"Computed now on the stored {projection} 2-D coordinates ({sample}), not on the embeddings: so the "
                f"centres you see are the real centres of the points you see. The stored clusters above were computed "
                f"in the embedding space and can differ. {end}. Press ▶ play, or drag the slider.")
        return fig, html.Div(note, id="anim-note-text", **{"data-frames": str(it.n_frames)})
