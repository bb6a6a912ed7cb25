"""Pure figure builders of the level-of-detail map: the density view (a server-rendered image
plus an invisible hover surface), the points view (WebGL markers of the points in view only),
thumbnails drawn on the map at close zoom, and the cluster representatives layer. Arrays in,
Plotly figures out; no database and no Dash.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from embedscope.dashboard.figures import MAX_CATEGORIES, PALETTE, UNKNOWN, _category_order, continuous_scale
from embedscope.dashboard.map_index import View

HOVER_GRID = 160  # cells per side of the density view's invisible hover surface
CUSTOMDATA_MAX = 20_000  # up to this many points carry their index (exact events); beyond, events resolve by position
GREY = "#bbbbbb"
THUMB_URL = "/map-thumb/{}"


def category_colours(categories: Sequence[str]) -> tuple[list[str], list[str]]:
    """(display order of ``categories``, a colour per category in their given order): the
    small map's colours (its palette, in its order; grey for unknown / noise and for categories
    beyond :data:`MAX_CATEGORIES`)."""
    order = _category_order(categories)
    rank = {c: i for i, c in enumerate(order)}
    colours = [GREY if c in (UNKNOWN, "noise", "other") or rank[c] >= MAX_CATEGORIES - 1
               else PALETTE[rank[c] % len(PALETTE)] for c in categories]
    return order, colours


def _base_layout(fig: go.Figure, view: View, *, color_title: str) -> go.Figure:
    fig.update_layout(margin={"l": 10, "r": 10, "t": 30, "b": 10}, dragmode="lasso", uirevision="map",
                      legend={"title": {"text": color_title}, "itemsizing": "constant"}, template="plotly_white",
                      clickmode="event", height=620, hovermode="closest", meta={"lod": True})
    fig.update_xaxes(showticklabels=False, title=None, range=[view.x0, view.x1], autorange=False, constrain="domain",
                     showgrid=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=None, range=[view.y0, view.y1], autorange=False, showgrid=False, zeroline=False,
                     scaleanchor="x", scaleratio=1, constrain="domain")
    return fig


def _legend_traces(fig: go.Figure, categories: Sequence[str], colours: Sequence[str], counts: Sequence[int]) -> None:
    """Legend entries (no points) for the density view's categories, with their counts in view."""
    order, _ = category_colours(categories)
    pos = {c: i for i, c in enumerate(categories)}
    for name in order[:MAX_CATEGORIES]:
        i = pos[name]
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", name=f"{name} ({counts[i]:,})",
                                   marker={"size": 8, "color": colours[i]}, hoverinfo="skip", showlegend=True))


def density_figure(view: View, image_uri: str, *, categories: Sequence[str] = (), colours: Sequence[str] = (),
                   counts: Sequence[int] = (), continuous_title: str | None = None, color_title: str = "") -> go.Figure:
    """The density view: the image over ``view``, an invisible grid that turns hovers into
    positions (the server answers with the nearest point), and the legend."""
    fig = go.Figure()
    cx = np.linspace(view.x0, view.x1, HOVER_GRID, dtype=np.float32)
    cy = np.linspace(view.y0, view.y1, HOVER_GRID, dtype=np.float32)
    fig.add_trace(go.Heatmap(x=cx, y=cy, z=np.zeros((HOVER_GRID, HOVER_GRID), np.uint8), opacity=0, showscale=False,
                             hoverinfo="none", hovertemplate=None, name="density", showlegend=False))
    if categories:
        _legend_traces(fig, categories, colours, counts)
    fig.add_layout_image(source=image_uri, xref="x", yref="y", x=view.x0, y=view.y1, sizex=view.width,
                         sizey=view.height, sizing="stretch", layer="below", xanchor="left", yanchor="top", name="density")
    if continuous_title:
        fig.add_trace(go.Scattergl(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                                   marker={"color": [0], "colorscale": "Viridis", "showscale": True,
                                           "colorbar": {"title": {"text": continuous_title}}}))
    return _base_layout(fig, view, color_title=color_title)


def points_figure(view: View, rows: np.ndarray, x: np.ndarray, y: np.ndarray, *, codes: np.ndarray | None = None,
                  categories: Sequence[str] = (), values: np.ndarray | None = None, highlight: np.ndarray | None = None,
                  color_title: str = "", clip_at: float | None = None) -> go.Figure:
    """WebGL markers of the points ``rows`` (indices into the map's arrays ``x``, ``y``,
    ``codes`` / ``values``): one trace per category (the legend filters them) or one with a
    colour bar. Positions travel as float32 arrays; ``customdata`` (the point index) only up
    to :data:`CUSTOMDATA_MAX` points. ``highlight``: indices to ring (SQL / text search);
    ``clip_at``: where a continuous scale ends (the novelty threshold, as on the small map)."""
    n = len(rows)
    size = 7 if n < 2_000 else 4 if n < 20_000 else 2
    with_index = n <= CUSTOMDATA_MAX

    def trace(sel: np.ndarray, **kw: Any) -> go.Scattergl:
        extra = {"customdata": sel.astype(object)} if with_index else {}
        return go.Scattergl(x=x[sel], y=y[sel], mode="markers", hoverinfo="none", hovertemplate=None, **extra, **kw)

    fig = go.Figure()
    if values is not None:
        fig.add_trace(trace(rows, name=color_title or "points", showlegend=False,
                            marker={"size": size, "color": values[rows], "showscale": True,
                                    "colorbar": {"title": {"text": color_title}},
                                    **continuous_scale(values[rows], clip_at)}))
    else:
        order, colours = category_colours(categories)
        names = np.asarray(categories, dtype=object)[codes[rows]] if n else np.zeros(0, object)
        pos = {c: i for i, c in enumerate(categories)}
        for rank, name in enumerate(order):
            if rank >= MAX_CATEGORIES - 1:
                folded = np.isin(names, order[rank:])
                if folded.any():
                    fig.add_trace(trace(rows[folded], name=f"other ({int(folded.sum())})", marker={"size": size, "color": GREY}))
                break
            mask = names == name
            if mask.any():
                fig.add_trace(trace(rows[mask], name=f"{name} ({int(mask.sum())})",
                                    marker={"size": size, "color": colours[pos[name]]}))
    if highlight is not None and len(highlight):
        fig.add_trace(trace(highlight, name=f"selection ({len(highlight)})",
                            marker={"size": size + 6, "color": "rgba(0,0,0,0)", "line": {"color": "#d62728", "width": 2}}))
    return _base_layout(fig, view, color_title=color_title)


def thumbnail_images(view: View, rows: Sequence[int], x: np.ndarray, y: np.ndarray, shas: Sequence[str],
                     *, per_side: int = 10) -> list[dict[str, Any]]:
    """Layout images of the thumbnails of ``rows`` at their points, each 1/``per_side`` of the
    view's shorter side (so they stay legible whatever the zoom)."""
    side = min(view.width, view.height) / per_side
    return [{"source": THUMB_URL.format(s), "xref": "x", "yref": "y", "x": float(x[r]), "y": float(y[r]),
             "sizex": side, "sizey": side, "xanchor": "center", "yanchor": "middle", "sizing": "contain",
             "layer": "above", "name": f"thumb:{s}"} for r, s in zip(rows, shas)]


def representative_layers(reps: Sequence[dict[str, Any]], shas: Sequence[str], extent: View,
                          *, per_side: int = 14) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(layout images, annotations) of the cluster representatives: each cluster's image at
    its centroid, a fixed size in map units (1/``per_side`` of the map), with its size below."""
    side = min(extent.width, extent.height) / per_side
    images, notes = [], []
    for r, sha in zip(reps, shas):
        images.append({"source": THUMB_URL.format(sha), "xref": "x", "yref": "y", "x": r["x"], "y": r["y"],
                       "sizex": side, "sizey": side, "xanchor": "center", "yanchor": "middle", "sizing": "contain",
                       "layer": "above", "name": f"rep:{r['category']}"})
        notes.append({"x": r["x"], "y": r["y"] - side / 2, "xref": "x", "yref": "y", "showarrow": False,
                      "yanchor": "top", "text": f"{r['category']} · {r['size']:,}", "font": {"size": 11},
                      "bgcolor": "rgba(255,255,255,0.8)", "name": f"rep:{r['category']}"})
    return images, notes
