"""Pure data shaping for the pages: Plotly events to sha256, CSV text, vector statistics,
metrics and flags as table rows. No database, no Dash and no figures here."""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Iterable, Sequence

import numpy as np

CELL_MAX_CHARS = 200  # a struct cell of a SQL result is shown as this much text


def image_name(sha256: str, path: str | None) -> str:
    """What to call an image on screen: its file name; else (no file, or an imported vector,
    whose path is its id) its key, a long one as its start and end: ``000000…000c2f``, so
    that sequential ids stay apart."""
    name = os.path.basename(path or "")
    if name and name != sha256:
        return name
    return sha256 if len(sha256) <= 16 else f"{sha256[:6]}…{sha256[-6:]}"


def point_indices(event: dict | None) -> list[int]:
    """Point indices (our customdata) in a Plotly hover/click/selection event, in order, unique."""
    if not event:
        return []
    out: list[int] = []
    for p in event.get("points") or []:
        cd = p.get("customdata")
        if isinstance(cd, list):
            cd = cd[0] if cd else None
        if isinstance(cd, (int, float)) and not isinstance(cd, bool):
            out.append(int(cd))
    return list(dict.fromkeys(out))


def shas_for(indices: Iterable[int], shas: Sequence[str]) -> list[str]:
    """Map point indices to sha256, skipping indices that are out of range (a stale figure)."""
    return [shas[i] for i in indices if 0 <= i < len(shas)]


def rows_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] = ("sha256", "path", "label")) -> str:
    """CSV text (with header) of ``rows`` restricted to ``columns``."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c) for c in columns})
    return buf.getvalue()


def top_dims(vec: np.ndarray, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` largest then ``n`` smallest dimensions: ``{rank, which, dim, value}``."""
    v = np.asarray(vec, np.float64)
    order = np.argsort(v, kind="stable")
    top = [{"which": "top", "rank": i + 1, "dim": int(d), "value": round(float(v[d]), 5)} for i, d in enumerate(order[::-1][:n])]
    bottom = [{"which": "bottom", "rank": i + 1, "dim": int(d), "value": round(float(v[d]), 5)} for i, d in enumerate(order[:n])]
    return top + bottom


def explained_variance(X: np.ndarray, n: int = 30) -> np.ndarray:
    """Fraction of variance explained by each of the first ``n`` principal components."""
    X = np.asarray(X, np.float64)
    if X.shape[0] < 2:
        return np.zeros(0)
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    var = s**2
    total = var.sum()
    return (var / total)[:n] if total > 0 else np.zeros(min(n, len(var)))


def cosine_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    Xn = X / norms
    return Xn @ Xn.T


def run_names(df: Any) -> dict[str, str]:
    """A unique legend name per run of a metrics frame: the full run id and its model/variant."""
    if df is None or len(df) == 0:
        return {}
    pairs = df[["run_id", "model", "variant"]].drop_duplicates("run_id")
    return {r: f"{r} ({m or '?'}/{v or '?'})" for r, m, v in zip(pairs["run_id"], pairs["model"], pairs["variant"])}


COMPARE_METRICS = (("silhouette", "silhouette ↑"), ("davies_bouldin", "Davies-Bouldin ↓"))


def metrics_compare(df: Any, run_ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The seeds' comparison table: one row per clustering method; per (run · variant ·
    space) a column group of silhouette and Davies-Bouldin. Returns DataTable (columns, rows)
    with two-level headers."""
    columns: list[dict[str, Any]] = [{"name": ["", "method"], "id": "method"}]
    if df is None or len(df) == 0 or not run_ids:
        return columns, []
    names = run_names(df)
    d = df[df["k"].isna() & df["run_id"].isin(list(run_ids)) & df["name"].isin([m for m, _ in COMPARE_METRICS])
           & df["method"].fillna("").ne("")]
    order = {r: i for i, r in enumerate(run_ids)}
    groups = sorted({(r, sp) for r, sp in zip(d["run_id"], d["space"].fillna("-"))}, key=lambda g: (order[g[0]], g[1]))
    rows: dict[str, dict[str, Any]] = {}
    for gi, (run, space) in enumerate(groups):
        for metric, title in COMPARE_METRICS:
            columns.append({"name": [f"{names.get(run, run)} · {space}", title], "id": f"g{gi}:{metric}",
                            "type": "numeric"})
    for run, space, method, metric, value in zip(d["run_id"], d["space"].fillna("-"), d["method"], d["name"], d["value"]):
        gi = groups.index((run, space))
        rows.setdefault(method, {"method": method})[f"g{gi}:{metric}"] = None if value != value else round(float(value), 4)
    return columns, [rows[m] for m in sorted(rows)]


def metrics_pivot(df: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Runs side by side: one row per (metric, method, space) without k, one column per run."""
    if df is None or len(df) == 0:
        return ["metric"], []
    single = df[df["k"].isna()].copy()
    if len(single) == 0:
        return ["metric"], []
    single["run"] = [f"{r} {m or ''}/{v or ''}" for r, m, v in zip(single["run_id"], single["model"], single["variant"])]
    single["metric"] = [f"{n} · {m or '-'} · {s or '-'}" for n, m, s in zip(single["name"], single["method"], single["space"])]
    table = single.pivot_table(index="metric", columns="run", values="value", aggfunc="first")
    runs = list(table.columns)
    rows = [{"metric": idx, **{r: (None if np.isnan(v) else round(float(v), 4)) for r, v in zip(runs, vals)}}
            for idx, vals in zip(table.index, table.to_numpy())]
    return ["metric", *runs], rows


FLAG_ORDER = {  # how a Flags gallery is sorted (SQL over sidebar.base_query's columns)
    "novel": "novelty_score DESC NULLS LAST, sha256",
    "contaminated": "novelty_score DESC NULLS LAST, sha256",
    "duplicate": "COALESCE(dup_group, phash_group), sha256",
    "label_disagreement": "zero_shot_probability DESC NULLS LAST, sha256",
}


def flag_card_rows(kind: str, records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Gallery rows (``sha256, path, label, score, reason, group``) of flagged images of
    ``kind``; ``score`` is the novelty score, and only a novel image's is worth showing."""
    if kind not in FLAG_ORDER:
        raise ValueError(f"unknown flag kind {kind!r}")
    out = []
    for r in records:
        group = r.get("dup_group") if r.get("dup_group") is not None else r.get("phash_group")
        if kind == "novel":
            reason = r.get("novelty_reason")
        elif kind == "contaminated":
            reason = r.get("contamination_reason")
        elif kind == "duplicate":
            reason = (f"embedding near-duplicate group {int(r['dup_group'])}" if r.get("dup_group") is not None
                      else f"perceptual-hash group {int(r['phash_group'])}")
        else:
            p = r.get("zero_shot_probability")
            reason = (f"zero-shot says {r.get('zero_shot_tag')!r}" + (f" (p {p:.2f})" if p is not None else "")
                      + f", contradicts the label {r.get('label')!r}")
        score = r.get("novelty_score")
        out.append({"sha256": r["sha256"], "path": r.get("path"), "label": r.get("label"),
                    "score": None if score is None or score != score else float(score), "reason": reason,
                    "group": group})
    return out


def page_count(n: int, page_size: int) -> int:
    return max(1, -(-int(n) // int(page_size)))


def page_label(page: int, n: int, page_size: int) -> str:
    """``images 61–120 of 333 (page 2 of 6)``."""
    if n == 0:
        return "nothing to show"
    lo, hi = page * page_size + 1, min(n, (page + 1) * page_size)
    return f"images {lo:,}–{hi:,} of {n:,} (page {page + 1} of {page_count(n, page_size)})"


def turn_page(page: int, trigger: str | None, prev_id: str, next_id: str, n: int, page_size: int) -> int:
    """The page after a click on prev/next (clamped); any other trigger (a filter) resets to 0."""
    if trigger == prev_id:
        page -= 1
    elif trigger == next_id:
        page += 1
    else:
        return 0
    return max(0, min(page, page_count(n, page_size) - 1))


# -- map ---------------------------------------------------------------------------------------


def projection_value(method: str, dims: int) -> str:
    """The map's projection dropdown value for ``method`` in ``dims`` dimensions."""
    return f"{method}:{dims}"


def parse_projection(value: str | None) -> tuple[str, int] | None:
    """``(method, dims)`` of a projection dropdown value; None when there is none."""
    if not value or ":" not in value:
        return None
    method, dims = value.rsplit(":", 1)
    return method, int(dims)


def map_options(run: Any, projections: Sequence[tuple[str, int]], colours: Sequence[tuple[str, str]]
                ) -> tuple[list[dict], str | None, list[dict], str | None]:
    """(projection options, chosen projection, colour options, chosen colour) of the map for
    ``run``: its primary projection when stored, else the first; the first colour."""
    p_opts = [{"label": f"{m} {d}-D", "value": projection_value(m, d)} for m, d in projections]
    primary = projection_value(run.primary_projection, run.primary_dims) if run.primary_projection else None
    p_value = primary if any(o["value"] == primary for o in p_opts) else (p_opts[0]["value"] if p_opts else None)
    c_opts = [{"label": label, "value": value} for value, label in colours]
    return p_opts, p_value, c_opts, c_opts[0]["value"] if c_opts else None


RINGED_SOURCES = ("sql", "text", "filter")  # selections the map rings (a lasso's points are already in view)


def selection_title(n: int, source: str, shown_max: int) -> str:
    """The heading of the map's selection gallery."""
    return (f"Selection: {n:,} images" + {"sql": " (from SQL)", "text": " (text search)", "filter": " (sidebar filter)"}.get(source, "")
            + (f", first {shown_max} shown" if n > shown_max else ""))


# -- clusters ----------------------------------------------------------------------------------


def cluster_name(cluster: int) -> str:
    return "noise" if cluster == -1 else f"cluster {cluster}"


def dendrogram_note(n_leaves: int, total: int | None) -> str:
    """What the dendrogram shows: all of the run's images or a seeded sample of them."""
    total = total or n_leaves
    return (f"Dendrogram of the {n_leaves} images of a seeded sample "
            + (f"(of {total:,}; a full dendrogram is unreadable beyond a few hundred leaves)" if n_leaves < total
               else f"(all {total} images)")
            + ", computed by the analysis in the embedding space. Leaves are coloured by their stored cluster; "
              "a link is coloured when everything under it is in one cluster.")


def animation_xy(points: Any, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(row indices, their x/y) of a seeded sample of at most ``max_points`` map ``points``."""
    from embedscope.analysis.iterations import sample_rows

    rows = sample_rows(points.shown, max_points, seed)
    return rows, np.column_stack([points.x, points.y])[rows]


def animation_title(method: str, k: int, init: str, seed: int) -> str:
    return f"{'k-medoids' if method == 'kmedoids' else 'k-means'} · k={k} · {init} init · seed {seed}"


def animation_note(projection: str, shown: int, total: int, it: Any, max_iter: int) -> str:
    """What the animation was computed on, and whether it converged."""
    sample = f"a seeded sample of {shown:,} of {total:,} points" if shown < total else f"all {shown:,} points"
    end = (f"Converged after {it.n_frames - 1} iterations" if it.converged
           else f"Stopped at the cap of {max_iter} iterations (not converged)")
    return (f"Computed now on the stored {projection} 2-D coordinates ({sample}), not on the embeddings: so the "
            f"centres you see are the real centres of the points you see. The stored clusters (sizes above, members "
            f"below) were computed in the embedding space and can differ. {end}. Press ▶ play, or drag the slider.")


def flag_reasons(flags: dict[str, Any] | None) -> list[str]:
    """Why an image is flagged (novel, contaminated, near-duplicate), one phrase per flag."""
    flags = flags or {}
    why = []
    if flags.get("is_novel"):
        why.append(f"novel: {flags.get('novelty_reason') or 'no reason stored'}")
    if flags.get("is_contaminated"):
        why.append(f"contaminated: {flags.get('contamination_reason') or 'no reason stored'}")
    if flags.get("dup_group") is not None:
        why.append(f"near-duplicate group {flags['dup_group']} (embedding)")
    if flags.get("phash_group") is not None:
        why.append(f"near-duplicate group {flags['phash_group']} (perceptual hash)")
    return why


def npy_bytes(X: np.ndarray) -> bytes:
    """``X`` as the bytes of a ``.npy`` file."""
    buf = io.BytesIO()
    np.save(buf, X)
    return buf.getvalue()


def vectors_parquet_bytes(shas: Sequence[str], X: np.ndarray) -> bytes:
    """A Parquet file of ``sha256`` and ``vector`` columns, as bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"sha256": list(shas), "vector": list(X)}), buf)
    return buf.getvalue()


# -- SQL ---------------------------------------------------------------------------------------


def table_payload(table: Any, max_rows: int) -> tuple[list[dict], list[dict], list[str]]:
    """(DataTable columns, the first ``max_rows`` records, sha256 values) for an Arrow result.
    Binary and vector columns are summarised, not sent."""
    cols, data = [], []
    names = table.column_names
    records = table.slice(0, max_rows).to_pylist()
    for name in names:
        cols.append({"name": name, "id": name})
    for r in records:
        row = {}
        for k, v in r.items():
            if isinstance(v, (bytes, bytearray)):
                v = f"<{len(v)} bytes>"
            elif isinstance(v, (list, tuple)):
                v = f"[{len(v)} values]"
            elif isinstance(v, dict):
                v = str(v)[:CELL_MAX_CHARS]
            elif v is not None and not isinstance(v, (int, float, str, bool)):
                v = str(v)
            row[k] = v
        data.append(row)
    shas = []
    if "sha256" in names:
        from embedscope.store.views import is_image_key

        shas = list(dict.fromkeys(s for s in table.column("sha256").to_pylist() if is_image_key(s)))
        # the thumbnail, linking to the image page, first
        cols.insert(0, {"name": "image", "id": IMAGE_COLUMN, "presentation": "markdown"})
        for row in data:
            row[IMAGE_COLUMN] = image_markdown(row.get("sha256"))
    return cols, data, shas


IMAGE_COLUMN = "_es_image"


def image_markdown(key: Any) -> str:
    """A SQL result cell: the image's thumbnail linking to its image page (empty for no key)."""
    from urllib.parse import quote

    from embedscope.store.views import is_image_key

    if not is_image_key(key):
        return ""
    k = quote(key, safe="")
    return f"[![{k}](/thumb/{k})](/detail?sha={k})"
