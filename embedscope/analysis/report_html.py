"""The HTML pieces of ``embedscope report``: tables, plots, image cards (thumbnail, path,
label, why it is listed), the parameters as tables, and the random-weights warning.

Everything is inline (PNG plots and JPEG thumbnails as base64), so the report is one file.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any, Sequence

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq, isin

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td.k,th.k{text-align:left}h3{margin:1.2em 0 .3em}"
    ".warn{background:#fde8e8;border:2px solid #c0392b;color:#7b1d13;padding:10px 14px;border-radius:6px;"
    "font-weight:bold;margin:1em 0}"
    ".cards{display:flex;flex-wrap:wrap;gap:10px;margin:.5em 0 1.5em}"
    ".card{width:170px;font-size:11px;border:1px solid #ddd;border-radius:4px;padding:4px;background:#fafafa}"
    ".card img,.card .none{width:160px;height:120px;object-fit:contain;background:#eee;display:block}"
    ".card .none{line-height:120px;text-align:center;color:#888}"
    ".card .path{font-family:monospace;word-break:break-all;color:#333}.card .why{color:#555}"
    ".params td{font-family:monospace;font-size:12px}.pgroup{display:inline-block;vertical-align:top;margin-right:28px}"
)
LIST_SHOWN = 12  # items of a list parameter shown before "… (N in all)"


def png(fig: Any) -> str:
    """A matplotlib figure as an inline ``<img>`` (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def cell(value: Any) -> str:
    """One value as escaped table text (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, css: str = "") -> str:
    """A table whose first column is left-aligned (a name), the others right-aligned."""
    def row(values: Sequence[Any], tag: str) -> str:
        return "<tr>" + "".join(f"<{tag}{' class=k' if i == 0 else ''}>{v}</{tag}>" for i, v in enumerate(values)) + "</tr>"

    head = row([html.escape(h) for h in header], "th")
    body = "".join(row([cell(v) for v in r], "td") for r in rows)
    return f"<table{f' class={css}' if css else ''}>{head}{body}</table>"


def weights_warning(db: Database) -> str:
    """A red banner naming the tables with rows embedded by random weights ('' when none)."""
    random_models = [m for m in db.embedding_models()
                     if db.count(S.embeddings_table_name(m), where=eq("weights", "random"))]
    if not random_models:
        return ""
    return (f"<div class=warn id=random-weights-warning>RANDOM WEIGHTS: the embeddings of "
            f"{html.escape(', '.join(random_models))} were made by an untrained network (<code>--weights random</code>). "
            "Clusters, novelty, duplicates, zero-shot tags and every number below describe noise, not your images. "
            "Re-ingest with real weights (<code>--weights hub</code> or <code>--weights PATH</code>) before "
            "trusting this report.</div>")


def image_cards(db: Database, items: Sequence[tuple[str, str]], *, grid_id: str, empty: str = "none") -> str:
    """A grid of cards, one per ``(sha256, why)``: the stored thumbnail (a grey box when there is
    none, e.g. imported vectors), the image's path, its label, and ``why`` (escaped)."""
    if not items:
        return f"<p id={grid_id}>{html.escape(empty)}</p>"
    shas = list(dict.fromkeys(s for s, _ in items))
    rows = db.read(S.IMAGES, ["sha256", "path", "label", "thumbnail"], where=isin("sha256", shas)).to_pylist()
    by_sha = {r["sha256"]: r for r in rows}
    cards = []
    for sha, why in items:
        r = by_sha.get(sha, {})
        thumb = r.get("thumbnail")
        img = (f'<img alt="{sha[:12]}" src="data:image/jpeg;base64,{base64.b64encode(thumb).decode()}">' if thumb
               else '<div class=none>no thumbnail</div>')
        label = f"label {html.escape(str(r['label']))} · " if r.get("label") else ""
        cards.append(f'<div class=card data-sha256="{sha}">{img}<div class=path title="{sha}">'
                     f"{html.escape(str(r.get('path') or sha))}</div><div class=why>{label}{html.escape(why)}</div></div>")
    return f"<div class=cards id={grid_id}>{''.join(cards)}</div>"


def params_tables(params: dict[str, Any], *, skip: Sequence[str] = ("dendrogram",)) -> str:
    """The run's parameters as tables: the plain settings in one, then one per group (a dict);
    a group's dict entries (e.g. one per method) are a matrix, one row per entry, and its other
    entries a name/value table below it."""
    scalars = [[k, _value(v)] for k, v in params.items() if k not in skip and not isinstance(v, dict)]
    groups = [("settings", table(["setting", "value"], scalars, css="params"))] if scalars else []
    for key, value in params.items():
        if key in skip or not isinstance(value, dict):
            continue
        if not value:
            body = "<p>none</p>"
        else:
            entries = {k: v for k, v in value.items() if isinstance(v, dict)}
            rest = {k: v for k, v in value.items() if k not in entries}
            if len(entries) < 2:
                entries, rest = {}, value
            body = ""
            if entries:
                cols = sorted(dict.fromkeys(c for v in entries.values() for c in v), key=lambda c: c != "method")
                body = table(["", *cols], [[k, *[_value(v.get(c)) for c in cols]] for k, v in entries.items()],
                             css="params")
            if rest:
                body += table(["name", "value"], [[k, _value(v)] for k, v in _flatten(rest)], css="params")
        groups.append((key.replace("_", " "), body))
    return "".join(f"<div class=pgroup><h3>{html.escape(name)}</h3>{body}</div>" for name, body in groups)


def _flatten(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in value.items():
        if isinstance(v, dict):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _value(v: Any) -> Any:
    """A parameter value for :func:`table`: a list joined (a long one cut), anything else as it is."""
    if isinstance(v, (list, tuple)):
        shown = ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v[:LIST_SHOWN])
        return shown + (f", … ({len(v)} in all)" if len(v) > LIST_SHOWN else "")
    return v
