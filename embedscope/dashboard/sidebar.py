"""The filter sidebar: label, cluster, tag, flag, novelty-score range, folder and zero-shot tag, as one
component shared by the Flags page, the Map (its "select matching" button) and galleries.

:func:`filter_where` turns the sidebar's values into a SQL ``WHERE`` clause (values quoted
only by :mod:`embedscope.store.filters`) over the columns of :func:`base_query`: one row per
image with the run's flags, its cluster, its folder under the drop root and its zero-shot
disagreement. :func:`matching` runs it through the read-only SQL sandbox, so what a page
shows and counts is what the same SQL returns.
"""

from __future__ import annotations

from typing import Any, Sequence

from dash import Input, Output, State, dcc, html, no_update

from embedscope.dashboard import ids
from embedscope.store.filters import both, either, eq, isin, literal

# the flags a sidebar can filter by, and their SQL over base_query's columns
FLAG_SQL = {
    "novel": "is_novel",
    "contaminated": "is_contaminated",
    "duplicate": "(dup_group IS NOT NULL OR phash_group IS NOT NULL)",
    "label_disagreement": "label_disagreement",
}
FLAG_NAMES = {"novel": "novel", "contaminated": "contaminated", "duplicate": "near-duplicate",
              "label_disagreement": "zero-shot disagrees with label"}
EMPTY_FOLDER = "."  # shaping of views.folder_under_drop: a file at the drop root


def base_query(run_id: str, cluster_method: str | None, zero_shot_run: str | None) -> str:
    """One row per image: key, path, label, the run's flags and cluster, folder, zero-shot."""
    return f"""SELECT i.sha256, i.path, i.label, f.novelty_score, COALESCE(f.is_novel, FALSE) AS is_novel,
               COALESCE(f.is_contaminated, FALSE) AS is_contaminated, f.dup_group, f.phash_group,
               f.novelty_reason, f.contamination_reason, c.cluster, _folder(i.path, s.drop) AS folder,
               COALESCE(z.label_disagreement, FALSE) AS label_disagreement, z.tag AS zero_shot_tag,
               z.probability AS zero_shot_probability
        FROM images i
        LEFT JOIN (SELECT * FROM flags WHERE {eq('run_id', run_id)}) f ON f.sha256 = i.sha256
        LEFT JOIN (SELECT sha256, cluster FROM clusters WHERE {both(eq('run_id', run_id), eq('method', cluster_method))})
             c ON c.sha256 = i.sha256
        LEFT JOIN (SELECT sha256, path, any_value("drop") AS "drop" FROM sources GROUP BY sha256, path)
             s ON s.sha256 = i.sha256 AND s.path = i.path
        LEFT JOIN (SELECT sha256, tag, probability, label_disagreement FROM zero_shot WHERE {eq('run_id', zero_shot_run)})
             z ON z.sha256 = i.sha256"""


def filter_where(values: dict[str, Any] | None, *, use_score: bool = True) -> str | None:
    """The SQL condition of the sidebar's ``values`` (``label``, ``cluster``, ``tag``,
    ``flag``, ``score`` [lo, hi], ``score_bounds`` [min, max], ``folder``, ``zero_shot_tag``); None when nothing is
    chosen. Flags are OR-ed (any of them); the others AND-ed. The score range filters the novelty
    score only when ``use_score`` and it is narrower than the run's bounds (so images without a
    score are not dropped by an untouched slider).

    >>> filter_where({"label": ["cats"], "flag": ["novel", "duplicate"]})
    "(label IN ('cats')) AND ((is_novel) OR ((dup_group IS NOT NULL OR phash_group IS NOT NULL)))"
    """
    v = values or {}
    flags = [FLAG_SQL[f] for f in v.get("flag") or [] if f in FLAG_SQL]
    folders = list(v.get("folder") or [])
    tags = list(v.get("tag") or [])
    return both(
        isin("label", v["label"]) if v.get("label") else None,
        isin("cluster", [int(c) for c in v["cluster"]]) if v.get("cluster") else None,
        either(*flags) if flags else None,
        isin("folder", folders) if folders else None,
        isin("zero_shot_tag", list(v["zero_shot_tag"])) if v.get("zero_shot_tag") else None,
        f"sha256 IN (SELECT sha256 FROM image_tags WHERE {isin('tag', tags)})" if tags else None,
        _score_clause(v.get("score"), v.get("score_bounds")) if use_score else None,
    )


def _score_clause(score: Sequence[float] | None, bounds: Sequence[float] | None) -> str | None:
    if not score or len(score) != 2:
        return None
    lo, hi = float(score[0]), float(score[1])
    if bounds and len(bounds) == 2 and lo <= float(bounds[0]) and hi >= float(bounds[1]):
        return None
    return f"novelty_score BETWEEN {literal(lo)} AND {literal(hi)}"


def matching(db: Any, context: dict[str, Any], where: str | None, *, columns: str = "*", order_by: str | None = None,
             limit: int | None = None, offset: int = 0, limits: Any = None) -> Any:
    """The rows of :func:`base_query` for the sidebar ``context`` (its store) matching ``where``."""
    from embedscope.store.queries import run_sql

    sql = (f"SELECT {columns} FROM ({base_query(context['run_id'], context.get('method'), context.get('zero_shot'))})"
           + (f" WHERE {where}" if where else "") + (f" ORDER BY {order_by}" if order_by else "")
           + (f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""))
    return run_sql(db, sql, limit=None, limits=limits, functions=sql_functions())


def sql_functions() -> dict[str, Any]:
    """The Python functions :func:`base_query` calls (``_folder``: the folder under the drop root)."""
    from embedscope.store.sql import SqlFunction
    from embedscope.store.views import folder_under_drop

    return {"_folder": SqlFunction(folder_under_drop, ("VARCHAR", "VARCHAR"), "VARCHAR")}


def sidebar_context(db: Any, run: Any) -> dict[str, Any]:
    """What the sidebar filters over for ``run``: its id, primary clustering, the latest
    zero-shot run, and the run's novelty-score bounds and threshold."""
    from embedscope.store import schema as S
    from embedscope.store.runs import KIND_ZERO_SHOT, latest_run

    scores = [v for v in db.read(S.FLAGS, ["novelty_score"], where=eq("run_id", run.run_id)).column("novelty_score")
              .to_pylist() if v is not None and v == v]
    zero_shot = latest_run(db, kind=KIND_ZERO_SHOT)
    threshold = run.params.get("novelty_threshold")
    return {"run_id": run.run_id, "method": run.primary_cluster, "zero_shot": zero_shot.run_id if zero_shot else None,
            "score_bounds": [float(min(scores)), float(max(scores))] if scores else None,
            "threshold": float(threshold) if threshold is not None else None}


def score_marks(bounds: Sequence[float], threshold: float | None) -> dict[float, Any]:
    """Slider marks: the run's minimum and maximum score, and the novelty threshold in red."""
    lo, hi = float(bounds[0]), float(bounds[1])
    marks: dict[float, Any] = {lo: f"{lo:.2f}", hi: f"{hi:.2f}"}
    if threshold is not None and lo <= threshold <= hi:
        near = 0.3 * (hi - lo)  # an end's label this close would overlap the threshold's
        for end in (lo, hi):
            if abs(end - threshold) < near:
                marks.pop(end)
        marks[float(threshold)] = {"label": f"threshold {threshold:.2f}", "style": {"color": "#c62828", "whiteSpace": "nowrap"}}
    return marks


def threshold_note(bounds: Sequence[float] | None, threshold: float | None) -> str | None:
    """Where the novelty threshold lies when the slider cannot mark it (outside the run's scores)."""
    if not bounds or threshold is None or bounds[0] <= threshold <= bounds[1]:
        return None
    return f"novelty threshold {threshold:.2f}: " + ("no score reaches it" if threshold > bounds[1] else "every score passes it")


def sidebar(db: Any, run: Any, *, context: dict[str, Any] | None = None, with_apply: bool = False,
            flags: Sequence[str] | None = None) -> html.Div:
    """The sidebar component for ``run`` (``context``: its :func:`sidebar_context`, made when not
    given); ``with_apply``: a "select matching" button (the map); ``flags``: the flag choices
    offered (default all; ``()`` where the page chooses the flag itself)."""
    from embedscope.store import schema as S
    from embedscope.store import views

    context = context or sidebar_context(db, run)
    img = db.read(S.IMAGES, ["label"])
    labels = sorted({v for v in img.column("label").to_pylist() if v})
    clusters = (sorted(set(db.read(S.CLUSTERS, ["cluster"], where=both(eq("run_id", run.run_id), eq("method", context["method"])))
                           .column("cluster").to_pylist())) if context["method"] else [])
    tags = views.color_options(db, None)
    tags = [v[len(views.COLOR_TAG_PREFIX):] for v, _ in tags if v.startswith(views.COLOR_TAG_PREFIX)]
    folders = _folders(db)
    flag_names = [f for f in (FLAG_SQL if flags is None else flags) if f != "label_disagreement" or context["zero_shot"]]
    bounds = context["score_bounds"]
    box = {"marginBottom": "8px"}
    small = {"fontSize": "12px", "color": "#555"}

    def multi(id_: str, title: str, options: list, placeholder: str) -> html.Div:
        return html.Div([html.Div(title, style=small),
                         dcc.Dropdown(id=id_, options=options, multi=True, placeholder=placeholder,
                                      style={"fontSize": "12px"}, persistence=True, persistence_type="session")], style=box)

    return html.Div([
        html.B("Filter", style={"fontSize": "13px"}),
        dcc.Store(id=ids.SIDEBAR_CONTEXT, data=context),
        multi(ids.SIDEBAR_LABEL, "label", labels, "any label"),
        multi(ids.SIDEBAR_CLUSTER, f"cluster ({context['method'] or 'none stored'})",
              [{"label": f"cluster {c}" if c != -1 else "noise", "value": c} for c in clusters], "any cluster"),
        multi(ids.SIDEBAR_TAG, "tag", tags, "any tag" if tags else "no tags yet"),
        html.Div([html.Div("flag (any of)", style=small) if flag_names else None,
                  dcc.Checklist(id=ids.SIDEBAR_FLAG, options=[{"label": " " + FLAG_NAMES[f], "value": f} for f in flag_names],
                                value=[], style={"fontSize": "12px"}, persistence=True,
                                persistence_type="session")], style=box),
        html.Div([html.Div("novelty score", style=small),
                  dcc.RangeSlider(id=ids.SIDEBAR_SCORE, min=bounds[0], max=bounds[1], value=list(bounds),
                                  step=(bounds[1] - bounds[0]) / 200 or None, allowCross=False,
                                  marks=score_marks(bounds, context["threshold"]), tooltip={"placement": "bottom"},
                                  persistence=True, persistence_type="session")
                  if bounds else html.Div("no novelty scores in this run", style=small, id=ids.SIDEBAR_SCORE),
                  html.Div(threshold_note(bounds, context["threshold"]), style=small)],
                 style=box),
        multi(ids.SIDEBAR_FOLDER, "folder (under the drop root)", folders, "any folder"),
        multi(ids.SIDEBAR_ZERO_SHOT, "zero-shot tag (latest `analyze --zero-shot`)", zero_shot_tag_options(db, context),
              "any zero-shot tag" if context["zero_shot"] else "no zero-shot run yet"),
        html.Button("Select matching on the map", id=ids.SIDEBAR_APPLY, n_clicks=0) if with_apply else None,
        html.Div(id=ids.SIDEBAR_STATUS, style=small),
    ], id=ids.SIDEBAR, className="es-sidebar",
        style={"width": "240px", "flex": "0 0 240px", "padding": "6px 10px 6px 0", "borderRight": "1px solid #eee",
               "marginRight": "10px"})


def _folders(db: Any) -> list[str]:
    from embedscope.store import schema as S
    from embedscope.store.views import folder_under_drop

    src = db.read(S.SOURCES, ["path", "drop"])
    return sorted({f for p, d in zip(src.column("path").to_pylist(), src.column("drop").to_pylist())
                   if (f := folder_under_drop(p, d))})


def zero_shot_tag_options(db: Any, context: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest zero-shot run's tags, in its order, each with its image count."""
    from embedscope.store import schema as S
    from embedscope.store.runs import run_by_id

    if not context.get("zero_shot"):
        return []
    run = run_by_id(db, context["zero_shot"])
    found = db.read(S.ZERO_SHOT, ["tag"], where=eq("run_id", run.run_id)).column("tag").to_pylist()
    return [{"label": f"{t} ({found.count(t)})", "value": t} for t in run.params.get("tags", sorted(set(found)))]


# the sidebar's inputs, in the order of sidebar_values' parameters
INPUTS = (ids.SIDEBAR_LABEL, ids.SIDEBAR_CLUSTER, ids.SIDEBAR_TAG, ids.SIDEBAR_FLAG, ids.SIDEBAR_SCORE,
          ids.SIDEBAR_FOLDER, ids.SIDEBAR_ZERO_SHOT)


def sidebar_values(label: Any, cluster: Any, tag: Any, flag: Any, score: Any, folder: Any, zero_shot_tag: Any,
                   context: dict[str, Any] | None) -> dict[str, Any]:
    """The sidebar's component values as the dict :func:`filter_where` takes."""
    return {"label": label, "cluster": cluster, "tag": tag, "flag": flag,
            "score": score if isinstance(score, list) else None,
            "score_bounds": (context or {}).get("score_bounds"), "folder": folder, "zero_shot_tag": zero_shot_tag}


def inputs(kind: type = Input) -> list[Any]:
    """Dash Inputs (or States) of every sidebar control, then of its context store."""
    return [kind(i, "value") for i in INPUTS] + [kind(ids.SIDEBAR_CONTEXT, "data")]



def register_callbacks(app: Any, ctx: Any) -> None:
    """The map's "select matching" button: the matching images become the app's selection, and
    the map is rebuilt to ring them and list them in its selection gallery (as SQL's "show on
    map" does); the sidebar's values persist across the rebuild."""
    from embedscope.dashboard import map_state
    from embedscope.dashboard.run_picker import with_run

    @app.callback(Output(ids.SELECTION, "data", allow_duplicate=True), Output(ids.URL, "href", allow_duplicate=True),
                  Input(ids.SIDEBAR_APPLY, "n_clicks"), *inputs(State), State(ids.URL, "search"),
                  prevent_initial_call=True)
    def _apply(n: int, *args: Any) -> tuple:
        if not n:
            return no_update, no_update
        context, search = args[-2], args[-1]
        where = filter_where(sidebar_values(*args[:-1]))
        keys = matching(ctx.db(), context, where, columns="sha256", limits=sql_limits(ctx)).column("sha256").to_pylist()
        href = "/" + with_run(search, context["run_id"]) + f"&filtered={len(keys)}-{int(n)}"
        # a large match is held by the server, as a large lasso is (the session store stays small)
        held = map_state.current().selection_store(keys, source="filter")
        return held or {"source": "filter", "sha256": []}, href


def sql_limits(ctx: Any) -> Any:
    from embedscope.store.sql import DASHBOARD_LIMITS

    return ctx.sql_limits or DASHBOARD_LIMITS
