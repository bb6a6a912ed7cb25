"""Flags: novel, contaminated, near-duplicate (and, after `analyze --zero-shot`, label
disagreement) images as paged galleries with the reason for each, filtered by the sidebar;
export CSV; tag (or untag) every image the kind and filter match. Rows and counts come from one SQL query (``sidebar.base_query``), so they equal
what the SQL page returns for the same condition. The novelty-score range filters novel images
only."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import components as C
from embedscope.dashboard import context, curation, ids, run_picker, shaping, sidebar

KINDS = (("novel", "novel"), ("contaminated", "contaminated"), ("duplicate", "near-duplicates"),
         ("label_disagreement", "zero-shot disagrees with label"))
PAGE_SIZE = 60
EXPORT_MAX = 1_000_000
TAGS = curation.tag_control_ids("flags-tag")


def layout(kind: str = "novel", run: str | None = None, **_: Any) -> Any:
    from embedscope.store.runs import UnknownRunError, run_or_latest

    db = context.current().db()
    try:
        current = run_or_latest(db, run)
    except UnknownRunError as exc:
        return C.message_page("Flags", exc.one_line(), kind="error", id=ids.RUN_ERROR)
    if current is None:
        return C.message_page("Flags", "No analysis run yet: run `embedscope analyze --db DIR`.")
    filters = sidebar.sidebar_context(db, current)
    kinds = available_kinds(filters)
    return html.Div([
        html.H3("Flags"),
        run_picker.run_picker(db, current, page="/flags"),
        html.Div([
            sidebar.sidebar(db, current, context=filters, flags=()),
            html.Div([
                html.Div([
                    dcc.RadioItems(id=ids.FLAGS_KIND, options=[{"label": f" {n}  ", "value": v} for v, n in kinds],
                                   value=kind if kind in dict(kinds) else "novel", inline=True,
                                   style={"display": "inline-block", "marginRight": "20px"}),
                    html.Button("Export CSV", id=ids.FLAGS_EXPORT, n_clicks=0, style={"marginLeft": "16px"}),
                    dcc.Download(id=ids.FLAGS_DOWNLOAD),
                ]),
                html.Div(curation.tag_controls("flags-tag", "Tag all shown by this filter"), style={"margin": "6px 0"}),
                dcc.Store(id=ids.FLAGS_RUN, data=current.run_id),
                dcc.Store(id=ids.FLAGS_PAGE, data=0),
                html.Div(id=ids.FLAGS_COUNT, style={"margin": "6px 0", "fontSize": "13px"}),
                C.pager(ids.FLAGS_PREV, ids.FLAGS_NEXT, ids.FLAGS_PAGE_LABEL),
                html.Div(id=ids.FLAGS_GALLERY),
            ], style={"flex": "1 1 auto", "minWidth": "0"}),
        ], style={"display": "flex", "alignItems": "flex-start"}),
    ])


def available_kinds(filters: dict[str, Any]) -> list[tuple[str, str]]:
    """The flag kinds of a run: label disagreement only where a zero-shot run exists."""
    return [(v, n) for v, n in KINDS if v != "label_disagreement" or filters.get("zero_shot")]


def flag_where(kind: str, values: dict[str, Any]) -> str:
    """The SQL condition of ``kind`` and the sidebar's filters (the score range: novel only)."""
    from embedscope.store.filters import both

    return both(sidebar.FLAG_SQL[kind], sidebar.filter_where(values, use_score=kind == "novel"))


def flag_counts(db: Any, context_: dict[str, Any], values: dict[str, Any], limits: Any = None) -> dict[str, int]:
    """Per flag kind, how many images of the run have it under the sidebar's filters."""
    cols = ", ".join(f"count(*) FILTER (WHERE {flag_where(k, values)}) AS {k}" for k, _ in KINDS)
    return {k: int(v or 0) for k, v in sidebar.matching(db, context_, None, columns=cols, limits=limits).to_pylist()[0].items()}


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.FLAGS_GALLERY, "children"), Output(ids.FLAGS_COUNT, "children"),
                  Output(ids.FLAGS_PAGE, "data"), Output(ids.FLAGS_PAGE_LABEL, "children"),
                  Input(ids.FLAGS_KIND, "value"), Input(ids.FLAGS_PREV, "n_clicks"), Input(ids.FLAGS_NEXT, "n_clicks"),
                  *sidebar.inputs(), State(ids.FLAGS_PAGE, "data"))
    def _gallery(kind: str, _prev: int, _next: int, *args: Any) -> tuple:
        values, page = sidebar.sidebar_values(*args[:-1]), args[-1] or 0
        db, limits = ctx.db(), sidebar.sql_limits(ctx)
        counts = flag_counts(db, args[-2], values, limits)
        n = counts.get(kind, 0)
        page = shaping.turn_page(page, callback_context.triggered_id, ids.FLAGS_PREV, ids.FLAGS_NEXT, n, PAGE_SIZE)
        records = sidebar.matching(db, args[-2], flag_where(kind, values), order_by=shaping.FLAG_ORDER[kind],
                                   limit=PAGE_SIZE, offset=page * PAGE_SIZE, limits=limits).to_pylist()
        rows = shaping.flag_card_rows(kind, records)
        shown = available_kinds(args[-2])
        summary = html.Span(" · ".join(f"{name}: {counts[k]:,}" for k, name in shown),
                            id="flags-counts", **{f"data-{k.replace('_', '-')}": str(v) for k, v in counts.items()})
        return (C.flag_gallery(rows, kind, run_id=args[-2]["run_id"]), summary, page,
                shaping.page_label(page, n, PAGE_SIZE))

    @app.callback(Output(ids.FLAGS_DOWNLOAD, "data"), Input(ids.FLAGS_EXPORT, "n_clicks"),
                  State(ids.FLAGS_KIND, "value"), *sidebar.inputs(State), prevent_initial_call=True)
    def _export(_n: int, kind: str, *args: Any) -> Any:
        values = sidebar.sidebar_values(*args)
        records = sidebar.matching(ctx.db(), args[-1], flag_where(kind, values), order_by=shaping.FLAG_ORDER[kind],
                                   limit=EXPORT_MAX, limits=sidebar.sql_limits(ctx)).to_pylist()
        if not records:
            return no_update
        return {"content": shaping.rows_csv(shaping.flag_card_rows(kind, records), ("sha256", "path", "label", "score", "reason")),
                "filename": f"embedscope-flags-{kind}.csv", "type": "text/csv"}

    @app.callback(Output(TAGS.add, "children"), Input(ids.FLAGS_KIND, "value"), *sidebar.inputs())
    def _tag_label(kind: str, *args: Any) -> str:
        where = flag_where(kind, sidebar.sidebar_values(*args))
        n = sidebar.matching(ctx.db(), args[-1], where, columns="count(*) AS n", limits=sidebar.sql_limits(ctx))
        return f"Tag all {n.column('n')[0].as_py():,} shown by this filter"

    @app.callback(Output(TAGS.status, "children"), Input(TAGS.add, "n_clicks"), Input(TAGS.remove, "n_clicks"),
                  State(ids.FLAGS_KIND, "value"), *sidebar.inputs(State), State(TAGS.name, "value"),
                  State(TAGS.note, "value"), prevent_initial_call=True)
    def _tag(_add: int, _remove: int, kind: str, *args: Any) -> str:
        shas = matching_shas(ctx, kind, sidebar.sidebar_values(*args[:-2]), args[-3])
        return curation.apply_tag(ctx, shas, args[-2], args[-1], remove=callback_context.triggered_id == TAGS.remove)


def matching_shas(ctx: Any, kind: str, values: dict[str, Any], context_: dict[str, Any]) -> list[str]:
    """Every image of flag ``kind`` under the sidebar's filters (the SQL the page counts with)."""
    return sidebar.matching(ctx.db(), context_, flag_where(kind, values), columns="sha256",
                            limits=sidebar.sql_limits(ctx)).column("sha256").to_pylist()
