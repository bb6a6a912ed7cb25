"""The run picker: one dropdown of analysis runs (full, unique titles) on every page that shows
run results. Choosing a run navigates to the same page with ``?run=<id>`` (the rest of the
query kept), so the page's layout reads that run and the URL can be shared."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from dash import ALL, Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import ids


def run_options(runs: list[Any], current: Any = None) -> list[dict[str, str]]:
    """Dropdown options, newest first, labelled by ``Run.title()``; ``current`` included even
    when it is not an analyze run (e.g. a novelty-only run opened by URL)."""
    chosen = list(runs)
    if current is not None and all(r.run_id != current.run_id for r in chosen):
        chosen.insert(0, current)
    return [{"label": r.title(), "value": r.run_id} for r in chosen]


def run_picker(db: Any, current: Any, *, page: str) -> html.Div:
    """``run: [dropdown]`` for ``page`` (its path, e.g. "/flags") showing ``current``."""
    from embedscope.store.runs import list_runs

    return html.Div([
        html.Span("run ", style={"fontSize": "13px", "marginRight": "4px"}),
        html.Div(dcc.Dropdown(id={"type": ids.RUN_PICKER, "page": page}, options=run_options(list_runs(db), current),
                              value=current.run_id if current else None, clearable=False, searchable=True,
                              style={"fontSize": "12px"}),
                 style={"display": "inline-block", "width": "640px", "verticalAlign": "middle"}),
    ], style={"margin": "4px 0 8px"}, className="es-run-picker")


def with_run(search: str | None, run_id: str) -> str:
    """The query string ``search`` with ``run`` set to ``run_id`` (other parameters kept)."""
    query = [(k, v) for k, v in parse_qsl((search or "").lstrip("?"), keep_blank_values=True) if k != "run"]
    return "?" + urlencode([*query, ("run", run_id)])


def register_callbacks(app: Any) -> None:
    @app.callback(Output(ids.URL, "href", allow_duplicate=True), Input({"type": ids.RUN_PICKER, "page": ALL}, "value"),
                  State(ids.URL, "search"), prevent_initial_call=True)
    def _pick(values: list[str | None], search: str | None) -> Any:
        trigger = callback_context.triggered_id
        if not trigger or not values or not values[0]:
            return no_update
        current = dict(parse_qsl((search or "").lstrip("?"))).get("run")
        if values[0] == current:
            return no_update
        return trigger["page"] + with_run(search, values[0])
