"""Zero-shot tags on the Flags page: a filter by tag and by ``label_disagreement`` over any
flag gallery, and a "label disagreements" gallery of its own. The tags are those of the latest
``analyze --zero-shot`` run (the ones ``images_latest`` shows; :mod:`embedscope.analysis.zero_shot`).

The Flags page calls four things, nothing else::

    KINDS = (..., zero_shot_filters.KIND)                        # the extra gallery
    zero_shot_filters.controls(db)                               # in the layout's filter row
    *zero_shot_filters.dependencies(Input)                       # in the gallery callback (State: export)
    rows = zero_shot_filters.flag_rows(db, kind, rows_of_kind, label, tag, disagreements)
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from dash import dcc, html

from embedscope.dashboard import ids

KIND = ("label_disagreement", "label disagreements")  # (value, name) of the Flags kind
DISAGREEMENTS = "only"  # the checklist's value when "label disagreements only" is ticked


def controls(db: Any) -> html.Div:
    """A zero-shot tag dropdown (with counts) and a "label disagreements only" tick box;
    disabled, with a hint, before any zero-shot run."""
    counts = _tag_counts(db)
    hint = ("zero-shot tags of the latest `analyze --zero-shot` run" if counts else
            "no zero-shot run yet: `embedscope analyze --zero-shot \"cat,dog,x-ray\"` (a CLIP table)")
    return html.Div([
        dcc.Dropdown(id=ids.FLAGS_ZERO_SHOT_TAG, options=[{"label": f"{t} ({n})", "value": t} for t, n in counts.items()],
                     placeholder="any zero-shot tag", disabled=not counts,
                     style={"width": "200px", "display": "inline-block", "verticalAlign": "middle"}),
        dcc.Checklist(id=ids.FLAGS_ZERO_SHOT_DISAGREE, options=[{"label": " label disagreements only",
                                                                "value": DISAGREEMENTS, "disabled": not counts}],
                      value=[], inline=True, style={"display": "inline-block", "marginLeft": "8px", "fontSize": "13px"}),
    ], title=hint, style={"display": "inline-block", "verticalAlign": "middle", "marginLeft": "16px"})


def dependencies(kind: Callable[[str, str], Any]) -> list[Any]:
    """The controls as callback arguments: ``dependencies(Input)`` or ``dependencies(State)``."""
    return [kind(ids.FLAGS_ZERO_SHOT_TAG, "value"), kind(ids.FLAGS_ZERO_SHOT_DISAGREE, "value")]


def flag_rows(db: Any, kind: str, rows_of_kind: Callable[[], list[dict[str, Any]]], label: str | None,
              tag: str | None, disagreements: Sequence[str] | None) -> list[dict[str, Any]]:
    """The gallery rows: ``rows_of_kind()`` (the page's own rows for a flag kind), or for
    :data:`KIND` the label disagreements (most confident first); then only those with zero-shot
    ``tag`` and, when ticked, a label disagreement. Each kept row's reason names its tag."""
    only_disagreements = DISAGREEMENTS in (disagreements or [])
    if kind == KIND[0]:
        return _disagreement_rows(db, label, tag)
    rows = rows_of_kind()
    if not (tag or only_disagreements):
        return rows
    tags = _zero_shot(db)
    kept = []
    for row in rows:
        z = tags.get(row["sha256"])
        if z is None or (tag and z["tag"] != tag) or (only_disagreements and not z["label_disagreement"]):
            continue
        kept.append({**row, "reason": "; ".join(filter(None, [row.get("reason"), _why(z)]))})
    return kept


def _disagreement_rows(db: Any, label: str | None, tag: str | None) -> list[dict[str, Any]]:
    from embedscope.store import views

    marked = {s: z for s, z in _zero_shot(db).items() if z["label_disagreement"] and (not tag or z["tag"] == tag)}
    images = {r["sha256"]: r for r in views.image_rows(db, list(marked))}
    rows = [{"sha256": s, "path": images.get(s, {}).get("path"), "label": images.get(s, {}).get("label"),
             "score": z["probability"], "reason": _why(z)} for s, z in marked.items()]
    rows = [r for r in rows if not label or r["label"] == label]
    return sorted(rows, key=lambda r: (-(r["score"] or 0.0), r["sha256"]))


def _why(z: dict[str, Any]) -> str:
    return (f"zero-shot {z['tag']} (p {z['probability']:.2f})"
            + (", contradicts the label" if z["label_disagreement"] else ""))


def _zero_shot(db: Any) -> dict[str, dict[str, Any]]:
    """sha256 → tag, probability, label_disagreement of the latest zero-shot run ({} before any)."""
    from embedscope.store import schema as S
    from embedscope.store.filters import eq
    from embedscope.store.runs import KIND_ZERO_SHOT, latest_run

    run = latest_run(db, kind=KIND_ZERO_SHOT)
    if run is None:
        return {}
    rows = db.read(S.ZERO_SHOT, ["sha256", "tag", "probability", "label_disagreement"], where=eq("run_id", run.run_id))
    return {r["sha256"]: r for r in rows.to_pylist()}


def _tag_counts(db: Any) -> dict[str, int]:
    """Images per tag of the latest zero-shot run, in the run's tag order."""
    from embedscope.store.runs import KIND_ZERO_SHOT, latest_run

    run = latest_run(db, kind=KIND_ZERO_SHOT)
    if run is None:
        return {}
    found = [z["tag"] for z in _zero_shot(db).values()]
    return {t: found.count(t) for t in run.params.get("tags", sorted(set(found)))}
