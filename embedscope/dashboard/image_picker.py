"""An image picker instead of a typed sha256: a searchable dropdown of stored images (by file
path, label or the start of the id), filled by the server as the user types. The Embeddings
and Within-image pages use it; the image page and the map's point panel link to them with
``?sha=<key>``, which preselects that image."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, dcc, no_update

from embedscope.store.filters import literal

MAX_OPTIONS = 50


def option(key: str, path: str | None, label: str | None) -> dict[str, str]:
    """One dropdown entry: ``file name · label``, the image key as value."""
    from embedscope.dashboard.shaping import image_name

    return {"label": image_name(key, path) + (f" · {label}" if label else "") + (f"  ({path})" if path and path != key else ""),
            "value": key}


def search_sql(text: str | None, limit: int = MAX_OPTIONS) -> str:
    """Images whose path or label contains ``text`` (any case), or whose key starts with it."""
    q = (text or "").strip()
    like = literal("%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
    where = (f"path ILIKE {like} ESCAPE '\\' OR label ILIKE {like} ESCAPE '\\' OR starts_with(sha256, {literal(q)})"
             if q else "TRUE")
    return f"SELECT sha256, path, label FROM images WHERE {where} ORDER BY path, sha256 LIMIT {int(limit)}"


def image_picker(db: Any, picker_id: str, key: str | None, *, width: str = "640px") -> Any:
    """The dropdown, preselecting ``key`` when it is a stored image (else nothing)."""
    from embedscope.store.views import image_rows, is_image_key

    rows = image_rows(db, [key]) if is_image_key(key) else []
    options = [option(r["sha256"], r.get("path"), r.get("label")) for r in rows]
    return dcc.Dropdown(id=picker_id, options=options, value=rows[0]["sha256"] if rows else None, searchable=True,
                        placeholder="type part of a file name, a label or an id…", style={"width": width, "fontSize": "12px"})


def register_search(app: Any, ctx: Any, picker_id: str) -> None:
    """Fill ``picker_id``'s options from what is typed (the chosen image stays listed)."""
    @app.callback(Output(picker_id, "options"), Input(picker_id, "search_value"), State(picker_id, "value"),
                  State(picker_id, "options"), prevent_initial_call=True)
    def _search(text: str | None, value: str | None, options: list | None) -> Any:
        from embedscope.store.queries import run_sql
        from embedscope.store.sql import DASHBOARD_LIMITS

        if text is None:
            return no_update
        rows = run_sql(ctx.db(), search_sql(text), limit=MAX_OPTIONS, limits=ctx.sql_limits or DASHBOARD_LIMITS).to_pylist()
        found = [option(r["sha256"], r["path"], r["label"]) for r in rows]
        kept = [o for o in options or [] if o.get("value") == value and all(f["value"] != value for f in found)]
        return kept + found
