"""Flags: novel, contaminated and near-duplicate images as reviewable galleries, sorted by
score, with the reason for each flag; filter by label and minimum score; export CSV."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import context, ids, shaping, zero_shot_filters

KINDS = (("novel", "novel"), ("contaminated", "contaminated"), ("duplicate", "near-duplicates"), zero_shot_filters.KIND)
GALLERY_MAX = 120


def layout(kind: str = "novel", run: str | None = None, **_: Any) -> Any:
    from embedscope.store import schema as S
    from embedscope.store.runs import UnknownRunError, run_or_latest

    db = context.current().db()
    try:
        current = run_or_latest(db, run)
    except UnknownRunError as exc:
        return C.message_page("Flags", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    if current is None:
        return C.message_page("Flags", "No analysis run yet: run `embedscope analyze --db DIR`.")
    labels = sorted({v for v in db.read(S.IMAGES, ["label"]).column("label").to_pylist() if v})
    return html.Div([
        html.H3(f"Flags (run {current.title()})"),
        html.Div([
            dcc.RadioItems(id=ids.FLAGS_KIND, options=[{"label": f" {n}  ", "value": v} for v, n in KINDS],
                           value=kind if kind in dict(KINDS) else "novel", inline=True,
                           style={"display": "inline-block", "marginRight": "20px"}),
            html.Div(dcc.Dropdown(id=ids.FLAGS_LABEL, options=labels, placeholder="any label"),
                     style={"display": "inline-block", "width": "220px", "verticalAlign": "middle"}),
            html.Div([html.Span("min novelty score", style={"fontSize": "12px"}),
                      dcc.Slider(id=ids.FLAGS_MIN_SCORE, min=0, max=1, step=0.05, value=0,
                                 marks={0: "0", 0.5: "0.5", 1: "1"})],
                     style={"display": "inline-block", "width": "260px", "verticalAlign": "middle", "marginLeft": "16px"}),
            zero_shot_filters.controls(db),
            html.Button("Export CSV", id=ids.FLAGS_EXPORT, n_clicks=0, style={"marginLeft": "16px"}),
            dcc.Download(id=ids.FLAGS_DOWNLOAD),
        ]),
        dcc.Store(id=ids.FLAGS_RUN, data=current.run_id),
        html.Div(id=ids.FLAGS_COUNT, style={"margin": "6px 0", "fontSize": "13px"}),
        html.Div(id=ids.FLAGS_GALLERY),
    ])


def _rows(ctx: Any, run_id: str, kind: str, label: str | None, min_score: float, *zero_shot: Any) -> list[dict]:
    from embedscope.store import views

    return zero_shot_filters.flag_rows(ctx.db(), kind, lambda: shaping.flag_rows(
        views.flags_frame(ctx.db(), run_id), kind, label=label, min_score=float(min_score or 0)), label, *zero_shot)


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.FLAGS_GALLERY, "children"), Output(ids.FLAGS_COUNT, "children"),
                  Input(ids.FLAGS_KIND, "value"), Input(ids.FLAGS_LABEL, "value"), Input(ids.FLAGS_MIN_SCORE, "value"),
                  Input(ids.FLAGS_RUN, "data"), *zero_shot_filters.dependencies(Input))
    def _gallery(kind: str, label: str | None, min_score: float, run_id: str, *zero_shot: Any) -> tuple:
        rows = _rows(ctx, run_id, kind, label, min_score, *zero_shot)
        count = f"{len(rows):,} flagged as {kind}" + (f", first {GALLERY_MAX} shown" if len(rows) > GALLERY_MAX else "")
        return C.flag_gallery(rows[:GALLERY_MAX], kind), count

    @app.callback(Output(ids.FLAGS_DOWNLOAD, "data"), Input(ids.FLAGS_EXPORT, "n_clicks"),
                  State(ids.FLAGS_KIND, "value"), State(ids.FLAGS_LABEL, "value"), State(ids.FLAGS_MIN_SCORE, "value"),
                  State(ids.FLAGS_RUN, "data"), *zero_shot_filters.dependencies(State), prevent_initial_call=True)
    def _export(_n: int, kind: str, label: str | None, min_score: float, run_id: str, *zero_shot: Any) -> Any:
        rows = _rows(ctx, run_id, kind, label, min_score, *zero_shot)
        if not rows:
            return no_update
        return {"content": shaping.rows_csv(rows, ("sha256", "path", "label", "score", "reason")),
                "filename": f"embedscope-flags-{kind}.csv", "type": "text/csv"}
