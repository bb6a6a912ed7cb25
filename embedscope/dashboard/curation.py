"""The dashboard's curation controls: tag the map's selection (the session's ``SELECTION``
store) and download the curated export. Tags are the only thing the dashboard writes, through
:meth:`DashboardContext.tag` (refused unless served on loopback or behind auth)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import ids

_INPUT = {"width": "130px", "marginRight": "4px"}


def tag_panel() -> html.Div:
    """Tag name + note inputs, Tag / Untag buttons for the current selection, a status line, and
    the curated export's download button."""
    return html.Div([
        dcc.Input(id=ids.TAG_NAME, type="text", value="exclude", placeholder="tag, e.g. exclude", debounce=False,
                  style=_INPUT),
        dcc.Input(id=ids.TAG_NOTE, type="text", placeholder="note (why)", style=_INPUT),
        html.Button("Tag selection", id=ids.TAG_ADD, n_clicks=0),
        html.Button("Untag", id=ids.TAG_REMOVE, n_clicks=0, style={"marginLeft": "4px"}),
        html.Div(id=ids.TAG_STATUS, style={"fontSize": "13px", "color": "#555", "margin": "4px 0"}),
        html.Button("Download curated export (kept.csv + excluded.csv)", id=ids.CURATED_EXPORT, n_clicks=0),
        dcc.Download(id=ids.CURATED_DOWNLOAD),
    ], style={"margin": "6px 0"})


def register_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.TAG_STATUS, "children"), Input(ids.TAG_ADD, "n_clicks"), Input(ids.TAG_REMOVE, "n_clicks"),
                  State(ids.SELECTION, "data"), State(ids.TAG_NAME, "value"), State(ids.TAG_NOTE, "value"),
                  prevent_initial_call=True)
    def _tag(_add: int, _remove: int, stored: dict | None, tag: str | None, note: str | None) -> Any:
        from embedscope.dashboard.map_state import selected_shas

        shas = selected_shas(stored)  # a large map selection is held by the server
        if not shas:
            return "nothing selected: lasso or box-select points first"
        remove = callback_context.triggered_id == ids.TAG_REMOVE
        n = ctx.tag(shas, tag or "", note=note or None, remove=remove)
        return f"{'untagged' if remove else 'tagged'} {n} image(s) {(tag or '').strip()!r}"

    @app.callback(Output(ids.CURATED_DOWNLOAD, "data"), Input(ids.CURATED_EXPORT, "n_clicks"), prevent_initial_call=True)
    def _download(_n: int) -> Any:
        return {"content": curated_zip(ctx.db()), "filename": "embedscope-curated.zip",
                "type": "application/zip", "base64": True} if _n else no_update


def curated_zip(db: Any) -> str:
    """``embedscope export --format csv`` (default exclusions: the ``exclude`` tag) as a
    base64 zip of ``kept.csv`` and ``excluded.csv``."""
    import base64

    from embedscope.store.export import export

    with tempfile.TemporaryDirectory(prefix="embedscope-export-") as tmp:
        result = export(db, tmp, fmt="csv")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in (result.kept_file, result.excluded_file):
                zf.write(path, Path(path).name)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def image_tag_panel(db: Any, sha: str) -> html.Div:
    """The image page's tags: the current ones, and add / remove by name."""
    return html.Div([
        html.Div(_tag_list(db, sha), id=ids.DETAIL_TAGS, style={"fontSize": "13px", "margin": "4px 0"}),
        dcc.Input(id=ids.DETAIL_TAG_NAME, type="text", placeholder="tag, e.g. exclude, relabel:cats", style=_INPUT),
        html.Button("Add tag", id=ids.DETAIL_TAG_ADD, n_clicks=0),
        html.Button("Remove tag", id=ids.DETAIL_TAG_REMOVE, n_clicks=0, style={"marginLeft": "4px"}),
    ])


def _tag_list(db: Any, sha: str) -> str:
    from embedscope.store.tags import tags_of

    rows = tags_of(db, sha)
    return ", ".join(r["tag"] + (f" ({r['note']})" if r.get("note") else "") for r in rows) or "no tags"


def register_image_callbacks(app: Any, ctx: Any) -> None:
    @app.callback(Output(ids.DETAIL_TAGS, "children"), Input(ids.DETAIL_TAG_ADD, "n_clicks"),
                  Input(ids.DETAIL_TAG_REMOVE, "n_clicks"), State(ids.DETAIL_SHA, "data"),
                  State(ids.DETAIL_TAG_NAME, "value"), prevent_initial_call=True)
    def _tag_one(_add: int, _remove: int, sha: str, tag: str | None) -> Any:
        ctx.tag([sha], tag or "", remove=callback_context.triggered_id == ids.DETAIL_TAG_REMOVE)
        return _tag_list(ctx.db(), sha)
