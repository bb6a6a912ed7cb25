"""Pure layout builders of the Review page: one card per queue row (rows from
:func:`embedscope.store.review.queue_page`), keyed by the row id (a sha256, or an imported
vector's id), with a placeholder where the row has no thumbnail."""

from __future__ import annotations

from typing import Any, Sequence

from dash import dcc, html

from embedscope.dashboard import ids
from embedscope.dashboard.components import detail_href, thumb_url
from embedscope.dashboard.shaping import image_name

PAIR_BUTTONS = (("keep_left", "keep left"), ("keep_right", "keep right"), ("keep_both", "keep both"),
                ("not_dup", "not a duplicate"))
QUEUE_NAMES = {"pairs": "Near-duplicate pairs", "exact": "Exact duplicates", "conflicts": "Label conflicts",
               "novel": "Novel", "contaminated": "Contaminated"}

_CARD = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px", "margin": "8px 0",
         "background": "white", "fontSize": "12px"}
_SIDE = {"display": "inline-block", "width": "300px", "verticalAlign": "top", "overflowWrap": "anywhere",
         "marginRight": "12px"}
_MID = {"display": "inline-block", "width": "220px", "verticalAlign": "top", "marginRight": "12px"}
_WARN = {"color": "#b35c00", "fontWeight": "bold"}


def image_box(row_id: str, has_thumb: bool, path: str | None, *, size: int = 200) -> html.A:
    """The row's thumbnail (``size`` px wide, so two sides compare at one scale) linking to its
    image page, or a grey placeholder naming it."""
    style = {"width": f"{size}px", "maxHeight": f"{size * 2}px", "objectFit": "contain", "display": "block"}
    if has_thumb:
        inner: Any = html.Img(src=thumb_url(row_id), style=style, title=path or row_id, alt=image_name(row_id, path))
    else:
        inner = html.Div(["no thumbnail", html.Br(), image_name(row_id, path)], className="es-placeholder",
                         style={"width": f"{size}px", "height": f"{size // 2}px", "background": "#eee",
                                "color": "#777", "display": "flex", "alignItems": "center",
                                "justifyContent": "center", "textAlign": "center", "fontSize": "11px"})
    return html.A(inner, href=detail_href(row_id))


def _tags_line(tags: Sequence[str]) -> html.Div:
    return html.Div("tags: " + (", ".join(tags) if tags else "none"), className="es-tags", style={"color": "#555"})


def _size_text(width: int | None, height: int | None, n_bytes: int | None) -> str:
    pixels = f"{width}×{height} px" if width and height else "size unknown"
    return pixels + (f", {n_bytes / 1024:.1f} KiB" if n_bytes else "")


def _side(title: str, row: dict[str, Any], end: str) -> html.Div:
    """One side of a pair (``end``: ``a`` the later image, ``b`` the earlier)."""
    row_id, path = row[f"sha_{end}"], row[f"path_{end}"]
    return html.Div([html.Div(title, style={"fontWeight": "bold"}), image_box(row_id, row[f"has_thumb_{end}"], path),
                     html.Div(f"label: {row[f'label_{end}'] or '—'}"),
                     html.Div(_size_text(row.get(f"width_{end}"), row.get(f"height_{end}"), row.get(f"bytes_{end}"))),
                     html.Div(path or row_id, className="es-path"), _tags_line(row[f"tags_{end}"])], style=_SIDE)


def pair_card(row: dict[str, Any]) -> html.Div:
    """A near-duplicate pair side by side: the earlier image (``sha_b``) left, the later arrival
    (``sha_a``) right, distances and rule between, and the four decision buttons."""
    left, right = row["sha_b"], row["sha_a"]
    buttons = [html.Button(text, n_clicks=0, className=f"es-pair-{action}", style={"marginRight": "6px"},
                           id={"type": ids.REVIEW_PAIR_ACTION, "action": action, "left": left, "right": right,
                               "cos": float(row["cosine"] if row["cosine"] is not None else -1),
                               "ham": int(row["hamming"] if row["hamming"] is not None else -1)})
               for action, text in PAIR_BUTTONS]
    middle = html.Div([
        html.Div(f"cosine distance {row['cosine']:.4g}" if row["cosine"] is not None else "cosine distance —"),
        html.Div(f"phash Hamming {row['hamming']} bits" if row["hamming"] is not None else "phash Hamming —"),
        html.Div(f"rule: {row['rule'] or '—'}"),
        html.Div("labels differ", style=_WARN) if row["labels_differ"] else None,
        html.Div("decided", style={"color": "#2e7d32", "fontWeight": "bold"}) if row["decided"] else None,
    ], style=_MID)
    return html.Div([
        _side("left (earlier)", row, "b"), middle, _side("right (later)", row, "a"),
        html.Div(buttons, style={"marginTop": "6px"}),
    ], className="es-pair", style=_CARD, **{"data-left": left, "data-right": right})


def exact_card(row: dict[str, Any]) -> html.Div:
    """One content stored under several paths: the thumbnail, its labels, every path."""
    return html.Div([
        html.Div(image_box(row["sha256"], row["has_thumb"], row["paths"][0], size=140), style=_MID),
        html.Div([html.Div(f"{row['n_paths']} paths, labels: {', '.join(row['labels'])}",
                           style=_WARN if len(set(row["labels"])) > 1 else {"fontWeight": "bold"}),
                  html.Ul([html.Li(p) for p in row["paths"]], style={"margin": "4px 0", "paddingLeft": "18px"}),
                  _tags_line(row["tags"])], style={"display": "inline-block", "verticalAlign": "top", "width": "760px"}),
    ], className="es-exact", style=_CARD, **{"data-sha256": row["sha256"]})


def conflict_card(row: dict[str, Any]) -> html.Div:
    """One content filed under several labels: each label with the path it came from, and a
    relabel action (``relabel:<label>``)."""
    sha = row["sha256"]
    return html.Div([
        html.Div(image_box(sha, row["has_thumb"], row["paths"][0], size=140), style=_MID),
        html.Div([
            html.Div(f"{row['n_labels']} labels for the same content (stored label: {row['label'] or '—'})", style=_WARN),
            html.Ul([html.Li(f"{label}: {path or '—'}") for label, path in zip(row["labels"], row["paths"])],
                    style={"margin": "4px 0", "paddingLeft": "18px"}),
            _tags_line(row["tags"]),
            html.Div([
                html.Div(dcc.Dropdown(id={"type": ids.REVIEW_RELABEL_LABEL, "sha": sha}, options=list(row["labels"]),
                                      value=row["labels"][0], clearable=False),
                         style={"display": "inline-block", "width": "180px", "verticalAlign": "middle"}),
                html.Button("relabel", id={"type": ids.REVIEW_RELABEL, "sha": sha}, n_clicks=0,
                            className="es-relabel", style={"marginLeft": "6px"}),
            ], style={"marginTop": "4px"}),
        ], style={"display": "inline-block", "verticalAlign": "top", "width": "760px"}),
    ], className="es-conflict", style=_CARD, **{"data-sha256": sha})


def flagged_card(row: dict[str, Any]) -> html.Div:
    """A novel or contaminated image with its score and reason."""
    score = row.get("novelty_score")
    return html.Div([
        html.Div(image_box(row["sha256"], row["has_thumb"], row["path"], size=140), style=_MID),
        html.Div([html.Div(f"{image_name(row['sha256'], row['path'])} · label {row['label'] or '—'}"
                           + (f" · novelty score {score:.2f}" if score is not None else ""), style={"fontWeight": "bold"}),
                  html.Div(row.get("reason") or "no reason recorded"),
                  html.Div(row["path"] or row["sha256"], className="es-path"), _tags_line(row["tags"])],
                 style={"display": "inline-block", "verticalAlign": "top", "width": "760px"}),
    ], className="es-flagged", style=_CARD, **{"data-sha256": row["sha256"]})


CARD_OF = {"pairs": pair_card, "exact": exact_card, "conflicts": conflict_card, "novel": flagged_card,
           "contaminated": flagged_card}


def queue_cards(queue: str, rows: Sequence[dict[str, Any]], empty: str) -> list[Any]:
    """The cards of one page of ``queue`` (or one line saying it is empty)."""
    return [CARD_OF[queue](r) for r in rows] or [html.Em(empty)]


def counts_line(counts: dict[str, int]) -> str:
    """``near-duplicate pairs to review: 3 · exact duplicates: 1 · ...``"""
    return " · ".join(f"{QUEUE_NAMES[q].lower()}{' to review' if q == 'pairs' else ''}: {n:,}"
                      for q, n in counts.items())


def page_ids(queue: str, rows: Sequence[dict[str, Any]]) -> list[Any]:
    """What a page's bulk actions act on: per pair its two sides and distances, else the row ids."""
    if queue == "pairs":
        return [{"left": r["sha_b"], "right": r["sha_a"], "cos": r["cosine"], "ham": r["hamming"]} for r in rows]
    return [r["sha256"] for r in rows]


def page_shas(page: Sequence[Any]) -> list[str]:
    """Every image id in :func:`page_ids`' list (both sides of pairs)."""
    return [s for p in page for s in ((p["left"], p["right"]) if isinstance(p, dict) else (p,))]
