"""Pure figure builders of the level-of-detail map: the density view (a server-rendered image
plus an invisible hover surface), the points view (WebGL markers of the points in view only),
thumbnails drawn on the map at close zoom, and the cluster representatives layer. Arrays in,
Plotly figures out, as plain dicts; no database and no Dash.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import numpy as np

from embedscope.dashboard.figures import MAX_CATEGORIES, PALETTE, UNKNOWN, _category_order, continuous_scale
from embedscope.dashboard.map_index import View

HOVER_GRID = 160  # cells per side of the density view's invisible hover surface
CUSTOMDATA_MAX = 20_000  # up to this many points carry their index (exact events); beyond, events resolve by position
GREY = "#bbbbbb"
THUMB_URL = "/map-thumb/{}"
WEBGL_KEEPER = "webgl"  # the density view's empty WebGL trace (the page's first map gets it in the browser)


def category_colours(categories: Sequence[str]) -> tuple[list[str], list[str]]:
    """(display order of ``categories``, a colour per category in their given order): the
    small map's colours (its palette, in its order; grey for unknown / noise and for categories
    beyond :data:`MAX_CATEGORIES`)."""
    order = _category_order(categories)
    rank = {c: i for i, c in enumerate(order)}
    colours = [GREY if c in (UNKNOWN, "noise", "other") or rank[c] >= MAX_CATEGORIES - 1
               else PALETTE[rank[c] % len(PALETTE)] for c in categories]
    return order, colours


@functools.lru_cache(maxsize=1)
def _template() -> dict[str, Any]:
    """The ``plotly_white`` template, expanded once (plotly.js knows no template names)."""
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def _array(values: np.ndarray) -> Any:
    """A numpy array as plotly.js's typed-array spec (base64), as ``go.Figure`` would send it."""
    from _plotly_utils.utils import to_typed_array_spec

    return to_typed_array_spec(np.ascontiguousarray(values))


def _figure(data: list[dict[str, Any]], view: View, *, color_title: str, images: Sequence[dict] = ()) -> dict[str, Any]:
    """A figure as the plain dict Plotly's JSON is (building and validating a ``go.Figure``
    costs a third of a second per map)."""
    axis = {"showticklabels": False, "title": {"text": None}, "autorange": False, "constrain": "domain",
            "showgrid": False, "zeroline": False}
    layout = {"margin": {"l": 10, "r": 10, "t": 30, "b": 10}, "dragmode": "lasso", "uirevision": "map",
              "legend": {"title": {"text": color_title}, "itemsizing": "constant"}, "template": _template(),
              "clickmode": "event", "height": 620, "hovermode": "closest", "meta": {"lod": True},
              "xaxis": {**axis, "range": [view.x0, view.x1]},
              "yaxis": {**axis, "range": [view.y0, view.y1], "scaleanchor": "x", "scaleratio": 1},
              "images": list(images)}
    return {"data": data, "layout": layout}


def _legend_traces(categories: Sequence[str], colours: Sequence[str], counts: Sequence[int]) -> list[dict[str, Any]]:
    """Legend entries (no points) for the density view's categories, with their counts in view."""
    order, _ = category_colours(categories)
    pos = {c: i for i, c in enumerate(categories)}
    return [{"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": f"{name} ({counts[pos[name]]:,})",
             "marker": {"size": 8, "color": colours[pos[name]]}, "hoverinfo": "skip", "showlegend": True}
            for name in order[:MAX_CATEGORIES]]


def density_figure(view: View, image_uri: str, *, categories: Sequence[str] = (), colours: Sequence[str] = (),
                   counts: Sequence[int] = (), continuous_title: str | None = None, color_title: str = "") -> dict[str, Any]:
    """The density view: the image over ``view``, an invisible grid that turns hovers into
    positions (the server answers with the nearest point), the legend (SVG), and one empty WebGL
    trace (:data:`WEBGL_KEEPER`): it keeps the graph's WebGL context, so the next zoom into
    points does not create one and compile its shaders again (a second in software GL)."""
    cx = np.linspace(view.x0, view.x1, HOVER_GRID, dtype=np.float32)
    cy = np.linspace(view.y0, view.y1, HOVER_GRID, dtype=np.float32)
    data = [{"type": "heatmap", "x": _array(cx), "y": _array(cy), "z": _array(np.zeros((HOVER_GRID, HOVER_GRID), np.uint8)),
             "opacity": 0, "showscale": False, "hoverinfo": "none", "name": "density", "showlegend": False}]
    if categories:
        data += _legend_traces(categories, colours, counts)
    if continuous_title:
        data.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "showlegend": False,
                     "hoverinfo": "skip", "marker": {"color": [0], "colorscale": "Viridis", "showscale": True,
                                                     "colorbar": {"title": {"text": continuous_title}}}})
    data.append({"type": "scattergl", "x": [None], "y": [None], "mode": "markers", "showlegend": False,
                 "hoverinfo": "skip", "name": WEBGL_KEEPER})
    image = {"source": image_uri, "xref": "x", "yref": "y", "x": view.x0, "y": view.y1, "sizex": view.width,
             "sizey": view.height, "sizing": "stretch", "layer": "below", "xanchor": "left", "yanchor": "top",
             "name": "density"}
    return _figure(data, view, color_title=color_title, images=[image])


def points_figure(view: View, rows: np.ndarray, x: np.ndarray, y: np.ndarray, *, codes: np.ndarray | None = None,
                  categories: Sequence[str] = (), values: np.ndarray | None = None, highlight: np.ndarray | None = None,
                  color_title: str = "", clip_at: float | None = None) -> dict[str, Any]:
    """WebGL markers of the points ``rows`` (indices into the map's arrays ``x``, ``y``,
    ``codes`` / ``values``): one trace per category (the legend filters them) or one with a
    colour bar. Positions travel as float32 typed arrays; ``customdata`` (the point index) only
    up to :data:`CUSTOMDATA_MAX` points. ``highlight``: indices to ring (SQL / text search);
    ``clip_at``: where a continuous scale ends (the novelty threshold, as on the small map)."""
    n = len(rows)
    size = 7 if n < 2_000 else 4 if n < 20_000 else 2
    with_index = n <= CUSTOMDATA_MAX

    def trace(sel: np.ndarray, **kw: Any) -> dict[str, Any]:
        extra = {"customdata": sel.tolist()} if with_index else {}
        return {"type": "scattergl", "x": _array(x[sel]), "y": _array(y[sel]), "mode": "markers", "hoverinfo": "none",
                **extra, **kw}

    data: list[dict[str, Any]] = []
    if values is not None:
        data.append(trace(rows, name=color_title or "points", showlegend=False,
                          marker={"size": size, "color": _array(values[rows]), "showscale": True,
                                  "colorbar": {"title": {"text": color_title}}, **continuous_scale(values[rows], clip_at)}))
    else:
        order, colours = category_colours(categories)
        row_codes = codes[rows] if n else np.zeros(0, np.int32)
        pos = {c: i for i, c in enumerate(categories)}
        for rank, name in enumerate(order):
            if rank >= MAX_CATEGORIES - 1:
                folded = np.isin(row_codes, [pos[c] for c in order[rank:]])
                if folded.any():
                    data.append(trace(rows[folded], name=f"other ({int(folded.sum())})", marker={"size": size, "color": GREY}))
                break
            mask = row_codes == pos[name]
            if mask.any():
                data.append(trace(rows[mask], name=f"{name} ({int(mask.sum())})",
                                  marker={"size": size, "color": colours[pos[name]]}))
    if highlight is not None and len(highlight):
        data.append(trace(highlight, name=f"selection ({len(highlight)})",
                          marker={"size": size + 6, "color": "rgba(0,0,0,0)", "line": {"color": "#d62728", "width": 2}}))
    return _figure(data, view, color_title=color_title)


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
