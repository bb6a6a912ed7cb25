"""Pure figure builders for the map, embeddings, metrics and cluster-size views: arrays /
frames in, Plotly figures out. No database and no Dash here, so every builder is unit-testable
on literals. The cluster dendrogram, k-means animation and patch overlays are in
:mod:`embedscope.dashboard.cluster_figures`; data shaping in :mod:`embedscope.dashboard.shaping`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import plotly.graph_objects as go

from embedscope.dashboard.shaping import cluster_name, cosine_matrix, run_names
from embedscope.store.views import MapPoints

UNKNOWN = "unknown"
# 48 distinct colours before any repeat: Glasbey's maximally distinct palette (colorcet's
# glasbey_category10, which starts with Tableau 10), without greys, colours too pale to see on
# white, and any colour within CIELAB ΔE 22 of an earlier one or of the noise grey
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
           "#3a0183", "#004301", "#5e0040", "#bcbcff", "#b80080", "#004e53", "#6b6500", "#7d0200", "#6126ff",
           "#574964", "#8cb894", "#028268", "#ad8944", "#5b3400", "#ff6f76", "#798cff", "#dd00ff", "#00458a",
           "#ffbf60", "#ff018d", "#b75700", "#cd88ff", "#1dd646", "#7a98b5", "#a56089", "#8b2945", "#00adff",
           "#8fd4ff", "#00d4b1", "#c6c78a", "#ff9eb6", "#ff07d6", "#ff4902", "#aa3baf", "#3f6aff", "#ff9a75",
           "#7c6c46", "#81b755", "#bd004a")
# novelty: calm colours up to the threshold, then one alarm colour for everything beyond it
NOVELTY_SCALE = [[0.0, "#2c3e91"], [0.5, "#4aa3a2"], [0.9, "#e8d44d"], [0.999, "#f0a030"], [1.0, "#d62728"]]
MAX_CATEGORIES = len(PALETTE) + 1  # more distinct values than this are folded into "other"


def cluster_colour(label: int) -> str:
    """The colour of cluster ``label`` (grey for noise, -1)."""
    return "#bbbbbb" if label < 0 else PALETTE[int(label) % len(PALETTE)]


def empty_figure(text: str, *, height: int = 200) -> go.Figure:
    """A blank figure that says ``text`` (what to do to fill it)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False)
    fig.update_layout(height=height, template="plotly_white")
    return fig


def _category_order(values: Iterable[Any]) -> list[str]:
    def key(v: str) -> tuple:
        num = v.rsplit(" ", 1)[-1]
        return (v in (UNKNOWN, "noise", "other"), v.split(" ")[0], int(num) if num.lstrip("-").isdigit() else 0, v)

    return sorted({UNKNOWN if v is None else str(v) for v in values}, key=key)


def map_figure(points: MapPoints, *, color_title: str = "", highlight: Sequence[str] = (),
               clip_at: float | None = None) -> go.Figure:
    """The map: WebGL markers (``Scattergl``, or ``Scatter3d`` when ``points.z`` is set).

    Only x, y(, z), the colour and an integer index per point go to the browser (customdata =
    index into ``points.sha256``); thumbnails are fetched on hover. Categorical colours get one
    trace per category (so the legend filters them), continuous ones a colour bar.
    ``highlight`` shas get a ring marker trace on top (e.g. the rows of a SQL result).
    ``clip_at``: a continuous scale ends there (the novelty threshold): values beyond it share
    the scale's last colour, so the bulk below the threshold keeps its contrast.
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
                            marker={"size": size, "color": vals, "showscale": True,
                                    "colorbar": {"title": {"text": color_title}}, **continuous_scale(vals, clip_at)},
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
    # 3-D: orbit only (a lasso or box selection does not exist in a 3-D scene)
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, dragmode="orbit" if three_d else "lasso",
                      uirevision="map", legend={"title": {"text": color_title}, "itemsizing": "constant"},
                      template="plotly_white", clickmode="event", height=620,
                      modebar={"remove": ["lasso2d", "select2d"]} if three_d else {})
    if not three_d:
        fig.update_xaxes(showticklabels=False, title=None)
        fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x", scaleratio=1)
    return fig


def novelty_clip(db: Any, run_id: str | None, color: str | None) -> float | None:
    """Where the map's novelty colour scale ends: the run's novelty threshold (None otherwise)."""
    from embedscope.store.runs import run_by_id
    from embedscope.store.views import COLOR_NOVELTY

    if color != COLOR_NOVELTY or not run_id:
        return None
    threshold = run_by_id(db, run_id).params.get("novelty_threshold")
    return float(threshold) if threshold is not None else None


def continuous_scale(values: np.ndarray, clip_at: float | None) -> dict[str, Any]:
    """Marker colour settings of a continuous colour: Viridis over the data's range; with
    ``clip_at``, :data:`NOVELTY_SCALE` from the data's minimum up to ``clip_at`` (beyond: red)."""
    finite = values[np.isfinite(values)] if values.size else values
    if clip_at is None or finite.size == 0:
        return {"colorscale": "Viridis"}
    lo = float(finite.min())
    return {"colorscale": NOVELTY_SCALE, "cmin": min(lo, float(clip_at) - 1e-6), "cmax": float(clip_at)}


def downsample_notice(points: MapPoints, max_points: int) -> str:
    """What the map shows, said on screen (and whether it is a sample)."""
    if points.total == 0:
        return "No points in this projection."
    if points.downsampled:
        return (f"Showing a random sample of {points.shown:,} of {points.total:,} points "
                f"(limit {max_points:,} for a responsive WebGL map; the sample is fixed, so it does not change between views).")
    return f"Showing all {points.total:,} points."


def map_notice(points: MapPoints, max_points: int, highlighted: int = 0) -> str:
    """:func:`downsample_notice`, plus how many images a SQL query, text search or the filter ringed."""
    text = downsample_notice(points, max_points)
    return text + (f" Ringed in red: {highlighted:,} images selected by a SQL query, a text search or the filter."
                   if highlighted else "")


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


def pca_variance_figure(ratios: np.ndarray) -> go.Figure:
    k = np.arange(1, len(ratios) + 1)
    fig = go.Figure([go.Bar(x=k, y=ratios, name="per component"),
                     go.Scatter(x=k, y=np.cumsum(ratios), name="cumulative", mode="lines+markers")])
    fig.update_layout(title="PCA explained variance", xaxis_title="component", yaxis_title="fraction", height=300,
                      margin={"l": 40, "r": 10, "t": 40, "b": 40}, template="plotly_white", yaxis_range=[0, 1.02])
    return fig


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


def sweep_figure(df: Any, name: str, title: str, y_title: str) -> go.Figure:
    """One line per (run, method, space) of metric ``name`` against k (elbow, silhouette-vs-k)."""
    fig = go.Figure()
    if df is not None and len(df):
        sweep = df[(df["name"] == name) & df["k"].notna()].sort_values("k")
        names = run_names(df)
        for (run, method, space), g in sweep.groupby(["run_id", "method", "space"], dropna=False):
            fig.add_trace(go.Scatter(x=g["k"], y=g["value"], mode="lines+markers",
                                     name=f"{names.get(run, run)} · {method or '-'} · {space or '-'}"))
    if not fig.data:
        fig.add_annotation(text=f"no {name} sweep stored", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_title="k", yaxis_title=y_title, height=360, template="plotly_white",
                      margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.25, "font": {"size": 10}})
    return fig


def cluster_sizes_figure(summaries: Sequence[Any]) -> go.Figure:
    """Bar per cluster: size, coloured by label purity (grey without labels)."""
    names = [cluster_name(s.cluster) for s in summaries]
    purity = [s.purity if s.purity is not None else 0.0 for s in summaries]
    text = [f"{s.majority_label} {s.purity:.0%}" if s.purity is not None else "" for s in summaries]
    fig = go.Figure(go.Bar(x=names, y=[s.size for s in summaries], text=text, textposition="outside",
                           marker={"color": purity, "colorscale": "Blues", "cmin": 0, "cmax": 1, "showscale": True,
                                   "colorbar": {"title": {"text": "purity"}}}))
    fig.update_layout(title="cluster sizes (text: majority label and purity)", height=300, template="plotly_white",
                      margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return fig
