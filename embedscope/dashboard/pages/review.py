"""Review: the curator's queues — near-duplicate pairs side by side with keep left / keep right /
keep both / not a duplicate, exact duplicates (every path of the same bytes), label conflicts
with a relabel action, novel and contaminated images with their reasons. Paged and sortable;
each queue is one documented SQL query (:mod:`embedscope.store.review`), so its count is SQL's.
Decisions are tags, written through :meth:`DashboardContext.tag` (the writer lock; refused on a
read-only dashboard)."""

from __future__ import annotations

from typing import Any

from dash import ALL, Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import context, ids
from embedscope.dashboard import review_cards as RC

PAGE_SIZE = 20
_SHOWN = {"display": "inline-block", "marginLeft": "16px"}
_HIDDEN = {"display": "none"}
_INPUT = {"width": "130px", "marginRight": "4px"}


def layout(queue: str = "pairs", **_: Any) -> Any:
    from embedscope.store.review import QUEUES, queue_counts

    counts = queue_counts(context.current().db())
    queue = queue if queue in QUEUES else "pairs"
    return html.Div([
        html.H3("Review"),
        html.Div(RC.counts_line(counts), id=ids.REVIEW_COUNTS, style={"fontSize": "13px", "margin": "4px 0"}),
        dcc.Tabs(id=ids.REVIEW_TAB, value=queue,
                 children=[dcc.Tab(label=RC.QUEUE_NAMES[q], value=q) for q in QUEUES]),
        html.Div([
            html.Span("sort ", style={"fontSize": "12px"}),
            html.Div(dcc.Dropdown(id=ids.REVIEW_SORT, clearable=False),
                     style={"display": "inline-block", "width": "180px", "verticalAlign": "middle"}),
            dcc.Checklist(id=ids.REVIEW_SHOW_DECIDED, options=[{"label": " show decided pairs", "value": "yes"}],
                          value=[], inline=True, style=_SHOWN),
            html.Button("◀ previous", id=ids.REVIEW_PREV, n_clicks=0, style={"marginLeft": "16px"}),
            html.Span(id=ids.REVIEW_PAGE_TEXT, style={"margin": "0 8px", "fontSize": "13px"}),
            html.Button("next ▶", id=ids.REVIEW_NEXT, n_clicks=0),
        ], style={"margin": "8px 0"}),
        html.Div([
            html.Span([
                dcc.Input(id=ids.REVIEW_BULK_TAG, type="text", value="exclude", placeholder="tag", style=_INPUT),
                dcc.Input(id=ids.REVIEW_BULK_NOTE, type="text", placeholder="note (why)", style=_INPUT),
                html.Button("tag every image on this page", id=ids.REVIEW_BULK_ADD, n_clicks=0),
            ], id=ids.REVIEW_BULK_TAGGING),
            html.Button("keep left on every pair of this page", id=ids.REVIEW_BULK_KEEP_LEFT, n_clicks=0),
        ], style={"margin": "4px 0"}),
        html.Div(id=ids.REVIEW_STATUS, style={"fontSize": "13px", "color": "#555", "minHeight": "18px"}),
        dcc.Loading(html.Div(id=ids.REVIEW_CONTENT)),
        dcc.Store(id=ids.REVIEW_PAGE, data=0),
        dcc.Store(id=ids.REVIEW_TOTAL, data=0),
        dcc.Store(id=ids.REVIEW_REFRESH, data=0),
        dcc.Store(id=ids.REVIEW_PAGE_ROWS, data=[]),
    ])


def register_callbacks(app: Any, ctx: Any) -> None:
    from embedscope.errors import EmbedscopeError
    from embedscope.store import review as R
    from embedscope.store.runs import latest_run

    @app.callback(Output(ids.REVIEW_SORT, "options"), Output(ids.REVIEW_SORT, "value"),
                  Output(ids.REVIEW_SHOW_DECIDED, "style"), Output(ids.REVIEW_BULK_KEEP_LEFT, "style"),
                  Output(ids.REVIEW_BULK_TAGGING, "style"), Input(ids.REVIEW_TAB, "value"))
    def _sorts(queue: str) -> tuple:
        """The queue's sort orders; pairs get their own controls, the other queues a bulk tag."""
        names = list(R.SORTS.get(queue, {}))
        pairs = queue == "pairs"
        return names, (names[0] if names else None), _SHOWN if pairs else _HIDDEN, \
            _SHOWN if pairs else _HIDDEN, _HIDDEN if pairs else {}

    @app.callback(Output(ids.REVIEW_PAGE, "data"), Input(ids.REVIEW_TAB, "value"), Input(ids.REVIEW_SORT, "value"),
                  Input(ids.REVIEW_SHOW_DECIDED, "value"), Input(ids.REVIEW_PREV, "n_clicks"),
                  Input(ids.REVIEW_NEXT, "n_clicks"), State(ids.REVIEW_PAGE, "data"), State(ids.REVIEW_TOTAL, "data"),
                  prevent_initial_call=True)
    def _page(_q: str, _s: str, _d: list, _prev: int, _next: int, offset: int, total: int) -> int:
        step = {ids.REVIEW_PREV: -PAGE_SIZE, ids.REVIEW_NEXT: PAGE_SIZE}.get(callback_context.triggered_id)
        if step is None:  # another queue, sort or filter: back to the first page
            return 0
        moved = (offset or 0) + step
        return moved if 0 <= moved < max(total or 0, 1) else (offset or 0)

    @app.callback(Output(ids.REVIEW_CONTENT, "children"), Output(ids.REVIEW_PAGE_TEXT, "children"),
                  Output(ids.REVIEW_TOTAL, "data"), Output(ids.REVIEW_COUNTS, "children"),
                  Output(ids.REVIEW_PAGE_ROWS, "data"),
                  Input(ids.REVIEW_TAB, "value"), Input(ids.REVIEW_SORT, "value"), Input(ids.REVIEW_PAGE, "data"),
                  Input(ids.REVIEW_SHOW_DECIDED, "value"), Input(ids.REVIEW_REFRESH, "data"))
    def _render(queue: str, sort: str | None, offset: int, decided: list | None, _refresh: int) -> tuple:
        db = ctx.db()
        show_all = bool(decided)
        page = R.queue_page(db, queue, sort=sort, offset=offset or 0, limit=PAGE_SIZE, include_decided=show_all)
        shown = page.total if show_all or queue != "pairs" else page.open
        last = min(page.offset + PAGE_SIZE, shown)
        text = f"{page.offset + 1 if shown else 0}–{last} of {shown:,}"
        if queue == "pairs":
            text += f" ({page.open:,} to review; pairs in all: {page.total:,})"
        empty = "nothing to review here" if queue == "pairs" else "none"
        if queue in R.FLAG_COLUMNS and latest_run(db) is None:
            empty = "No analysis run yet: run `embedscope analyze --db DIR` to flag novel and contaminated images."
        return (RC.queue_cards(queue, page.rows, empty), text, shown, RC.counts_line(page.counts),
                RC.page_ids(queue, page.rows))

    @app.callback(Output(ids.REVIEW_STATUS, "children"), Output(ids.REVIEW_REFRESH, "data"),
                  Input({"type": ids.REVIEW_PAIR_ACTION, "action": ALL, "left": ALL, "right": ALL, "cos": ALL,
                         "ham": ALL}, "n_clicks"),
                  Input({"type": ids.REVIEW_RELABEL, "sha": ALL}, "n_clicks"),
                  Input(ids.REVIEW_BULK_ADD, "n_clicks"), Input(ids.REVIEW_BULK_KEEP_LEFT, "n_clicks"),
                  State({"type": ids.REVIEW_RELABEL_LABEL, "sha": ALL}, "value"), State(ids.REVIEW_PAGE_ROWS, "data"),
                  State(ids.REVIEW_BULK_TAG, "value"), State(ids.REVIEW_BULK_NOTE, "value"),
                  State(ids.REVIEW_REFRESH, "data"), prevent_initial_call=True)
    def _decide(_pairs: list, _relabels: list, _bulk: int, _keep_left: int, _labels: list, page_rows: list,
                bulk_tag: str | None, bulk_note: str | None, refresh: int) -> tuple:
        trigger = callback_context.triggered_id
        if not trigger or not callback_context.triggered[0].get("value"):  # buttons (re)drawn, not clicked
            return no_update, no_update
        try:
            if trigger == ids.REVIEW_BULK_ADD:
                writes = [R.TagWrite(tuple(RC.page_shas(page_rows)), bulk_tag or "", bulk_note or None)]
                what = f"every image on this page ({len(writes[0].shas)})"
            elif trigger == ids.REVIEW_BULK_KEEP_LEFT:
                writes = [w for p in page_rows if isinstance(p, dict)
                          for w in R.pair_decision("keep_left", p["left"], p["right"], cosine=p["cos"], hamming=p["ham"])]
                what = f"keep left on {sum(isinstance(p, dict) for p in page_rows)} pair(s)"
            elif trigger["type"] == ids.REVIEW_PAIR_ACTION:
                writes = R.pair_decision(trigger["action"], trigger["left"], trigger["right"],
                                         cosine=trigger["cos"] if trigger["cos"] >= 0 else None,
                                         hamming=trigger["ham"] if trigger["ham"] >= 0 else None)
                what = f"{trigger['action'].replace('_', ' ')}"
            else:
                states = callback_context.states_list[0]
                label = next(s.get("value") for s in states if s["id"]["sha"] == trigger["sha"])
                writes = R.relabel_decision(trigger["sha"], label)
                what = f"relabel:{label}"
            done: dict[str, int] = {}
            for w in R.merge_writes(writes):
                done[w.tag] = done.get(w.tag, 0) + ctx.tag(list(w.shas), w.tag, note=w.note)
        except EmbedscopeError as exc:
            return exc.one_line(), no_update
        done_text = "; ".join(f"{tag} on {n}" for tag, n in done.items())
        return f"{what}: {done_text}", (refresh or 0) + 1
