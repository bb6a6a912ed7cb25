"""The dashboard's curation controls: tag the map's selection (the session's ``SELECTION``
store) and download the curated export. Tags are the only thing the dashboard writes, through
:meth:`DashboardContext.tag` (refused unless served on loopback or behind auth)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

from dash import Input, Output, State, callback_context, dcc, html, no_update

from embedscope.dashboard import ids

_INPUT = {"width": "130px", "marginRight": "4px"}


class TagControlIds(NamedTuple):
    """The component ids of one :func:`tag_controls` group (``prefix``-name, -note, -add, -remove, -status)."""

    name: str
    note: str
    add: str
    remove: str
    status: str


def tag_control_ids(prefix: str) -> TagControlIds:
    return TagControlIds(*(f"{prefix}-{part}" for part in TagControlIds._fields))


def tag_controls(prefix: str, add_label: str, *, add_id: str | None = None) -> list[Any]:
    """Tag name (default ``exclude``) and note inputs, an add and an Untag button, a status
    line: the tagging controls of the Map, Flags and SQL pages (ids from :func:`tag_control_ids`)."""
    i = tag_control_ids(prefix)
    return [
        dcc.Input(id=i.name, type="text", value="exclude", placeholder="tag, e.g. exclude", debounce=False, style=_INPUT),
        dcc.Input(id=i.note, type="text", placeholder="note (why)", style=_INPUT),
        html.Button(add_label, id=add_id or i.add, n_clicks=0),
        html.Button("Untag", id=i.remove, n_clicks=0, style={"marginLeft": "4px"}),
        html.Div(id=i.status, style={"fontSize": "13px", "color": "#555", "margin": "4px 0"}),
    ]


def apply_tag(ctx: Any, shas: list[str], tag: str | None, note: str | None, *, remove: bool,
              source: str = "dashboard") -> str:
    """Tag (or untag) ``shas`` through ``ctx.tag`` (the writer lock); the status line to show,
    one line also when refused (read-only dashboard, bad tag name, writer busy)."""
    from embedscope.errors import EmbedscopeError

    if not shas:
        return "no images to tag"
    try:
        n = ctx.tag(shas, tag or "", note=note or None, remove=remove, source=source)
    except EmbedscopeError as exc:
        return exc.one_line()
    return f"{'untagged' if remove else 'tagged'} {n:,} image(s) {(tag or '').strip()!r}"


def tag_panel() -> html.Div:
    """Tag name + note inputs, Tag / Untag buttons for the current selection, a status line, and
    the curated export's download button."""
    return html.Div([
        *tag_controls("tag", "Tag selection"),
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
        return apply_tag(ctx, shas, tag, note, remove=callback_context.triggered_id == ids.TAG_REMOVE)

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
