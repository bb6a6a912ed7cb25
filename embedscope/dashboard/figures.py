"""Pure figure and data builders: arrays / frames in, Plotly figures or plain values out.

No database and no Dash here, so every builder is unit-testable on literals.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from embedscope.store.views import MapPoints

UNKNOWN = "unknown"
# 10 + 24 + 26 distinct colours before any repeats (plotly's qualitative palettes)
PALETTE = tuple(dict.fromkeys(qualitative.Plotly + qualitative.Dark24 + qualitative.Alphabet))
MAX_CATEGORIES = 50  # more distinct values than this are folded into "other"


def _category_order(values: Iterable[Any]) -> list[str]:
    def key(v: str) -> tuple:
        num = v.rsplit(" ", 1)[-1]
        return (v in (UNKNOWN, "noise", "other"), v.split(" ")[0], int(num) if num.lstrip("-").isdigit() else 0, v)

    return sorted({UNKNOWN if v is None else str(v) for v in values}, key=key)


def map_figure(points: MapPoints, *, color_title: str = "", highlight: Sequence[str] = ()) -> go.Figure:
    """The map: WebGL markers (``Scattergl``, or ``Scatter3d`` when ``points.z`` is set).

    Only x, y(, z), the colour and an integer index per point go to the browser (customdata =
    index into ``points.sha256``); thumbnails are fetched on hover. Categorical colours get one
    trace per category (so the legend filters them), continuous ones a colour bar.
    ``highlight`` shas get a ring marker trace on top (e.g. the rows of a SQL result).
    """
    n = points.shown
    # an object array serialises as a plain JSON list: Plotly's event data (hover, click,
    # selection) drops customdata sent as a typed array
    index = np.arange(n, dtype=np.int32)
    three_d = points.z is not None
    trace = go.Scatter3d if three_d else go.Scattergl

    def coords(mask: np.ndarray) -> dict[str, Any]:
        d = {"x": points.x[mask], "y": points.y[mask]}
        if three_d:
            d["z"] = points.z[mask]
        return d

    size = 3 if three_d else (7 if n < 2_000 else 4 if n < 20_000 else 2)
    fig = go.Figure()
    if points.continuous:
        vals = np.asarray([np.nan if v is None else float(v) for v in points.color], np.float64) if n else np.zeros(0)
        fig.add_trace(trace(**coords(np.ones(n, bool)), mode="markers", customdata=index.astype(object), name=color_title or "points",
                            marker={"size": size, "color": vals, "colorscale": "Viridis", "showscale": True,
                                    "colorbar": {"title": {"text": color_title}}},
                            hoverinfo="none", hovertemplate=None, showlegend=False))
    else:
        labels = np.asarray([UNKNOWN if v is None else str(v) for v in points.color] if n else [], dtype=object)
        cats = _category_order(labels)
        if len(cats) > MAX_CATEGORIES:
            keep = set(cats[: MAX_CATEGORIES - 1])
            labels = np.asarray([v if v in keep else "other" for v in labels], dtype=object)
            cats = _category_order(labels)
        for i, cat in enumerate(cats):
            mask = labels == cat
            colour = "#bbbbbb" if cat in (UNKNOWN, "noise", "other") else PALETTE[i % len(PALETTE)]
            fig.add_trace(trace(**coords(mask), mode="markers", customdata=index[mask].astype(object), name=f"{cat} ({int(mask.sum())})",
                                marker={"size": size, "color": colour}, hoverinfo="none", hovertemplate=None))
    if highlight:
        hs = set(highlight)
        mask = np.asarray([s in hs for s in points.sha256], bool) if n else np.zeros(0, bool)
        fig.add_trace(trace(**coords(mask), mode="markers", customdata=index[mask].astype(object), name=f"selection ({int(mask.sum())})",
                            marker={"size": size + 6, "color": "rgba(0,0,0,0)", "line": {"color": "#d62728", "width": 2}},
                            hoverinfo="none", hovertemplate=None))
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, dragmode="lasso", uirevision="map",
                      legend={"title": {"text": color_title}, "itemsizing": "constant"}, template="plotly_white",
                      clickmode="event", height=620)
    if not three_d:
        fig.update_xaxes(showticklabels=False, title=None)
        fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x", scaleratio=1)
    return fig


def downsample_notice(points: MapPoints, max_points: int) -> str:
    """What the map shows, said on screen (and whether it is a sample)."""
    if points.total == 0:
        return "No points in this projection."
    if points.downsampled:
        return (f"Showing a random sample of {points.shown:,} of {points.total:,} points "
                f"(limit {max_points:,} for a responsive WebGL map; the sample is fixed, so it does not change between views).")
    return f"Showing all {points.total:,} points."


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


# -- embeddings ----------------------------------------------------------------------------


def vector_figure(vec: np.ndarray, title: str = "") -> go.Figure:
    """One embedding as a line over its dimensions."""
    fig = go.Figure(go.Scattergl(x=np.arange(len(vec)), y=np.asarray(vec, np.float32), mode="lines", line={"width": 1}))
    fig.update_layout(title=title, xaxis_title="dimension", yaxis_title="value", height=280,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white")
    return fig


def histogram_figure(vec: np.ndarray, bins: int = 60) -> go.Figure:
    fig = go.Figure(go.Histogram(x=np.asarray(vec, np.float32), nbinsx=bins))
    fig.update_layout(title="value histogram", height=280, margin={"l": 40, "r": 10, "t": 40, "b": 40},
                      template="plotly_white", bargap=0.02)
    return fig


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


def pca_variance_figure(ratios: np.ndarray) -> go.Figure:
    k = np.arange(1, len(ratios) + 1)
    fig = go.Figure([go.Bar(x=k, y=ratios, name="per component"),
                     go.Scatter(x=k, y=np.cumsum(ratios), name="cumulative", mode="lines+markers")])
    fig.update_layout(title="PCA explained variance", xaxis_title="component", yaxis_title="fraction", height=300,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white", yaxis_range=[0, 1.02])
    return fig


def cosine_matrix(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    Xn = X / norms
    return Xn @ Xn.T


def cosine_heatmap_figure(X: np.ndarray, names: Sequence[str]) -> go.Figure:
    """Pairwise cosine similarity of the rows of ``X``."""
    C = cosine_matrix(X)
    off = C[~np.eye(len(C), dtype=bool)] if len(C) > 1 else C.ravel()
    # the colour range follows the data: collapsed embeddings (all ~1) still show structure
    fig = go.Figure(go.Heatmap(z=C, x=list(names), y=list(names), colorscale="Viridis",
                               zmin=float(off.min()) if off.size else -1.0, zmax=float(off.max()) if off.size else 1.0,
                               colorbar={"title": {"text": "cosine"}}))
    fig.update_layout(title=f"pairwise cosine similarity ({len(names)} images)", height=520,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white")
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False, autorange="reversed")
    return fig


# -- metrics and clusters -------------------------------------------------------------------


def metrics_pivot(df: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Runs side by side: one row per (metric, method, space) without k, one column per run."""
    if df is None or len(df) == 0:
        return ["metric"], []
    single = df[df["k"].isna()].copy()
    if len(single) == 0:
        return ["metric"], []
    single["run"] = [f"{str(r)[:8]} {m or ''}/{v or ''}" for r, m, v in zip(single["run_id"], single["model"], single["variant"])]
    single["metric"] = [f"{n} · {m or '-'} · {s or '-'}" for n, m, s in zip(single["name"], single["method"], single["space"])]
    table = single.pivot_table(index="metric", columns="run", values="value", aggfunc="first")
    runs = list(table.columns)
    rows = [{"metric": idx, **{r: (None if np.isnan(v) else round(float(v), 4)) for r, v in zip(runs, vals)}}
            for idx, vals in zip(table.index, table.to_numpy())]
    return ["metric", *runs], rows


def sweep_figure(df: Any, name: str, title: str, y_title: str) -> go.Figure:
    """One line per (run, method, space) of metric ``name`` against k (elbow, silhouette-vs-k)."""
    fig = go.Figure()
    if df is not None and len(df):
        sweep = df[(df["name"] == name) & df["k"].notna()].sort_values("k")
        for (run, method, space), g in sweep.groupby(["run_id", "method", "space"], dropna=False):
            fig.add_trace(go.Scatter(x=g["k"], y=g["value"], mode="lines+markers", name=f"{str(run)[:8]} {method} {space}"))
    if not fig.data:
        fig.add_annotation(text=f"no {name} sweep stored", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_title="k", yaxis_title=y_title, height=320, template="plotly_white",
                      margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return fig


def cluster_sizes_figure(summaries: Sequence[Any]) -> go.Figure:
    """Bar per cluster: size, coloured by label purity (grey without labels)."""
    names = ["noise" if s.cluster == -1 else f"cluster {s.cluster}" for s in summaries]
    purity = [s.purity if s.purity is not None else 0.0 for s in summaries]
    text = [f"{s.majority_label} {s.purity:.0%}" if s.purity is not None else "" for s in summaries]
    fig = go.Figure(go.Bar(x=names, y=[s.size for s in summaries], text=text, textposition="outside",
                           marker={"color": purity, "colorscale": "Blues", "cmin": 0, "cmax": 1, "showscale": True,
                                   "colorbar": {"title": {"text": "purity"}}}))
    fig.update_layout(title="cluster sizes (text: majority label and purity)", height=300, template="plotly_white",
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig


def flag_rows(df: Any, kind: str, *, label: str | None = None, min_score: float = 0.0) -> list[dict[str, Any]]:
    """Flagged images of ``kind`` ('novel' | 'contaminated' | 'duplicate'), sorted by score
    (highest first; duplicates by group), each with its reason."""
    if df is None or len(df) == 0:
        return []
    d = df
    if label:
        d = d[d["label"] == label]
    score = d["novelty_score"].fillna(0.0)
    if kind == "novel":
        d = d[d["is_novel"].fillna(False).astype(bool) & (score >= min_score)]
        d = d.assign(score=d["novelty_score"], reason=d["novelty_reason"]).sort_values("score", ascending=False)
    elif kind == "contaminated":
        d = d[d["is_contaminated"].fillna(False).astype(bool) & (score >= min_score)]
        d = d.assign(score=d["novelty_score"], reason=d["contamination_reason"]).sort_values("score", ascending=False)
    elif kind == "duplicate":
        has = d["dup_group"].notna() | d["phash_group"].notna()
        d = d[has]
        reason = [f"embedding near-duplicate group {int(g)}" if g == g and g is not None else f"perceptual-hash group {int(p)}"
                  for g, p in zip(d["dup_group"], d["phash_group"])]
        group = d["dup_group"].fillna(d["phash_group"])
        d = d.assign(score=d["novelty_score"], reason=reason, group=group).sort_values(["group", "sha256"])
    else:
        raise ValueError(f"unknown flag kind {kind!r}")
    cols = [c for c in ("sha256", "path", "label", "score", "reason", "group") if c in d.columns]
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in d[cols].to_dict("records")]


# -- within-image ---------------------------------------------------------------------------


def _rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def patch_overlay(crop: np.ndarray, labels: np.ndarray, patch: int, alpha: float = 0.5) -> np.ndarray:
    """The crop with each patch tinted by its cluster's colour (uint8 HxWx3)."""
    g = labels.shape[0]
    tint = np.zeros((g * patch, g * patch, 3), np.float32)
    for lab in np.unique(labels):
        tint[np.kron(labels == lab, np.ones((patch, patch), bool))] = _rgb(PALETTE[int(lab) % len(PALETTE)])
    base = crop[: g * patch, : g * patch].astype(np.float32)
    return np.clip(base * (1 - alpha) + tint * alpha, 0, 255).astype(np.uint8)


def patch_overlay_figure(crop: np.ndarray, labels: np.ndarray, patch: int) -> go.Figure:
    """Side by side: what the model saw, and its patches coloured by cluster."""
    from plotly.subplots import make_subplots

    fig = make_subplots(1, 2, subplot_titles=("model input", f"{len(np.unique(labels))} patch clusters"),
                        horizontal_spacing=0.03)
    fig.add_trace(go.Image(z=crop), 1, 1)
    fig.add_trace(go.Image(z=patch_overlay(crop, labels, patch)), 1, 2)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white")
    return fig


# -- dendrogram and the k-means / k-medoids teaching animation ------------------------------


def _cluster_colour(label: int) -> str:
    return "#bbbbbb" if label < 0 else PALETTE[int(label) % len(PALETTE)]


def dendrogram_figure(linkage: Any, labels: Sequence[int], *, names: Sequence[str] | None = None,
                      method: str = "ward", total: int | None = None) -> go.Figure:
    """The dendrogram of a stored scipy ``linkage`` (n-1 × 4) over ``n`` sampled images.

    One ⊓ per merge, drawn as line segments; a link is in a cluster's colour when every leaf
    under it carries that stored ``labels`` value, grey when it joins clusters. The leaves are
    markers coloured by their stored cluster (one trace per cluster, so the legend filters);
    ``names`` (e.g. sha256 or file names) go to the leaves' hover text; ``total``: how many
    images the run clustered (the title says whether the leaves are a sample of them).
    """
    from scipy.cluster.hierarchy import dendrogram

    Z = np.asarray(linkage, np.float64)
    labs = np.asarray(labels, np.int64)
    n = len(labs)
    if n < 2 or Z.shape != (n - 1, 4):
        raise ValueError(f"a linkage over {n} leaves needs shape ({n - 1}, 4), got {Z.shape}")
    # the cluster label shared by every leaf under each node (None when mixed)
    node_label: list[int | None] = [int(x) for x in labs] + [None] * (n - 1)
    for i, (a, b) in enumerate(Z[:, :2].astype(int)):
        node_label[n + i] = node_label[a] if node_label[a] == node_label[b] else None
    d = dendrogram(Z, no_plot=True, link_color_func=lambda node: str(node))
    by_colour: dict[str, tuple[list, list]] = {}
    for xs, ys, node in zip(d["icoord"], d["dcoord"], d["color_list"]):
        lab = node_label[int(node)]
        colour = "#888888" if lab is None else _cluster_colour(lab)
        seg = by_colour.setdefault(colour, ([], []))
        seg[0].extend([*xs, None])
        seg[1].extend([*ys, None])
    fig = go.Figure()
    for colour, (xs, ys) in by_colour.items():
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 1.2}, hoverinfo="skip",
                                 showlegend=False, name="merges"))
    leaves = np.asarray(d["leaves"], np.int64)
    leaf_x = 5.0 + 10.0 * np.arange(n)
    leaf_lab = labs[leaves]
    for lab in sorted(set(leaf_lab.tolist())):
        mask = leaf_lab == lab
        text = [f"{names[i]} · cluster {lab}" if names is not None else f"cluster {lab}" for i in leaves[mask]]
        fig.add_trace(go.Scatter(x=leaf_x[mask], y=np.zeros(int(mask.sum())), mode="markers", name=f"cluster {lab} ({int(mask.sum())})",
                                 marker={"color": _cluster_colour(lab), "size": 7, "symbol": "square"},
                                 hovertext=text, hoverinfo="text"))
    of = f"a sample of {n} of {total:,} images" if total and total > n else f"{n} images"
    fig.update_layout(title=f"agglomerative ({method}) dendrogram of {of} (leaves: stored cluster)",
                      height=360, template="plotly_white", margin={"l": 50, "r": 10, "t": 40, "b": 20},
                      legend={"title": {"text": "cluster"}}, yaxis_title="merge distance")
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False)
    return fig


def iterations_figure(xy: np.ndarray, it: Any, *, title: str = "", names: Sequence[str] | None = None) -> go.Figure:
    """An animation of ``it`` (:class:`embedscope.analysis.iterations.Iterations`) on 2-D
    points ``xy``: one frame per iteration, points coloured by their assignment, the centres
    (centroids or medoids) as large crosses with their trails so far, and play / pause
    buttons plus a slider. Every frame has the same traces: points, centres, one trail per
    centre."""
    xy = np.asarray(xy, np.float64)
    k = len(it.centers[0])
    colours = np.asarray([_cluster_colour(c) for c in range(k)], dtype=object)
    what = "medoid" if it.method == "kmedoids" else "centroid"
    cost_name = "sum of distances" if it.method == "kmedoids" else "inertia"
    hover = list(names) if names is not None else None

    def traces(i: int) -> list[Any]:
        out = [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", name="points",
                          marker={"color": colours[it.labels[i]].tolist(), "size": 6, "opacity": 0.75},
                          hovertext=hover, hoverinfo="text" if hover else "skip", showlegend=False),
               go.Scatter(x=it.centers[i][:, 0], y=it.centers[i][:, 1], mode="markers", name=f"{what}s",
                          marker={"color": colours.tolist(), "size": 20, "symbol": "x",
                                  "line": {"color": "black", "width": 1.5}}, showlegend=False,
                          hovertext=[f"{what} {c}" for c in range(k)], hoverinfo="text")]
        for c in range(k):
            path = np.asarray([it.centers[j][c] for j in range(i + 1)])
            out.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines+markers", name=f"trail {c}", showlegend=False,
                                  line={"color": colours[c], "width": 2, "dash": "dot"}, marker={"size": 5, "color": colours[c]},
                                  hoverinfo="skip"))
        return out

    def caption(i: int) -> str:
        return f"{title} · iteration {i}/{it.n_frames - 1} · {cost_name} {it.cost[i]:.4g}"

    names_f = [str(i) for i in range(it.n_frames)]
    frames = [go.Frame(data=traces(i), name=names_f[i], layout={"title": {"text": caption(i)}}) for i in range(it.n_frames)]
    fig = go.Figure(data=traces(0), frames=frames)
    play = {"frame": {"duration": 700, "redraw": True}, "fromcurrent": True, "transition": {"duration": 250}}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    pad = 0.05 * (np.ptp(xy, axis=0) + 1e-9)
    lo, hi = xy.min(0) - pad, xy.max(0) + pad
    fig.update_layout(
        title={"text": caption(0)}, height=560, template="plotly_white", margin={"l": 10, "r": 10, "t": 50, "b": 10},
        xaxis={"range": [lo[0], hi[0]], "showticklabels": False, "autorange": False},
        yaxis={"range": [lo[1], hi[1]], "showticklabels": False, "autorange": False},
        updatemenus=[{"type": "buttons", "direction": "left", "x": 0.0, "y": -0.02, "xanchor": "left", "yanchor": "top",
                      "pad": {"t": 30}, "showactive": False,
                      "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                  {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]}]}],
        sliders=[{"active": 0, "x": 0.16, "len": 0.84, "y": -0.02, "yanchor": "top", "pad": {"t": 20},
                  "currentvalue": {"prefix": "iteration "},
                  "steps": [{"label": names_f[i], "method": "animate",
                             "args": [[names_f[i]], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                                     "transition": {"duration": 0}}]} for i in range(it.n_frames)]}],
    )
    return fig
