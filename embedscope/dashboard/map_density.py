"""The map's density image: the points of a view rasterised server-side with datashader,
coloured by the colour field (categories: each pixel mixes its categories' colours by count;
continuous: the mean value per pixel), as a PNG ``data:`` URI for a Plotly layout image.

datashader compiles its kernels with numba on first use (seconds): :func:`warm_up` does that
once in the background when the dashboard starts, so the first map does not wait for it.
"""

from __future__ import annotations

import base64
import io
import threading
from typing import Any, Sequence

import numpy as np

from embedscope.dashboard.map_index import View

MAX_SIDE = 900  # pixels of the longer side of the image (the plot is ~900 px wide)
# numba's default (workqueue) threading layer is not safe for concurrent parallel kernels: two
# renders at once from waitress threads can hang the process, so aggregations take turns
_aggregate_lock = threading.Lock()


def image_size(view: View, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) in pixels with the view's aspect ratio, the longer side ``max_side``."""
    w, h = max(view.width, 1e-12), max(view.height, 1e-12)
    if w >= h:
        return max_side, max(8, int(round(max_side * h / w)))
    return max(8, int(round(max_side * w / h))), max_side


def render(x: np.ndarray, y: np.ndarray, view: View, *, codes: np.ndarray | None = None,
           colours: Sequence[str] = (), values: np.ndarray | None = None, max_side: int = MAX_SIDE) -> np.ndarray:
    """An RGBA image (rows top to bottom) of the points in ``view``: aggregated by datashader
    (counts per category when ``codes``, indices into ``colours``, are given; the mean of
    ``values`` when they are; else counts), shaded here in numpy (a pixel's colour is the
    count-weighted mix of its categories, its opacity grows with the log of its count)."""
    import datashader as ds
    import pandas as pd

    width, height = image_size(view, max_side)
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=(view.x0, view.x1), y_range=(view.y0, view.y1))
    frame: dict[str, Any] = {"x": x, "y": y}

    def aggregate(how: Any) -> np.ndarray:
        with _aggregate_lock:
            return canvas.points(pd.DataFrame(frame), "x", "y", agg=how).values

    if codes is not None and len(colours):
        frame["c"] = pd.Categorical.from_codes(codes, categories=range(len(colours)))
        counts = aggregate(ds.count_cat("c"))
        total = counts.sum(axis=2)
        painted = total > 0  # shade only the painted pixels (a fraction of the image)
        weights = counts[painted].astype(np.float32)
        rgb = (weights @ _rgb(colours)) / total[painted][:, None].astype(np.float32)
    elif values is not None:
        frame["v"] = values
        mean = aggregate(ds.mean("v"))
        painted = np.isfinite(mean)
        total = painted.astype(np.float32)
        finite = mean[painted]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        rgb = _viridis((finite - lo) / max(hi - lo, 1e-12))
    else:
        total = aggregate(ds.count())
        painted = total > 0
        rgb = np.broadcast_to(np.array([8, 48, 107], np.float32), (int(painted.sum()), 3))
    shown = total[painted].astype(np.float32)
    alpha = 90 + 165 * np.log1p(shown) / np.log1p(max(float(shown.max()) if shown.size else 1.0, 1.0))
    rgba = np.zeros((height, width, 4), np.uint8)
    rgba[painted] = np.column_stack([rgb, alpha]).clip(0, 255).astype(np.uint8)
    return rgba[::-1]  # datashader's row 0 is the bottom (y0); an image's is the top


_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float32)


def _viridis(t: np.ndarray) -> np.ndarray:
    """Viridis colours (5 stops, linear between) of ``t`` in [0, 1]."""
    pos = np.clip(t, 0, 1) * (len(_VIRIDIS) - 1)
    return np.stack([np.interp(pos, np.arange(len(_VIRIDIS)), _VIRIDIS[:, c]) for c in range(3)], axis=-1)


def _rgb(colours: Sequence[str]) -> np.ndarray:
    """``#rrggbb`` (or ``rgb(r, g, b)``) colours as a K × 3 float32 array."""
    out = []
    for c in colours:
        if c.startswith("#"):
            out.append([int(c[i:i + 2], 16) for i in (1, 3, 5)])
        else:
            out.append([float(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3]])
    return np.asarray(out, np.float32)


def png_data_uri(rgba: np.ndarray) -> str:
    """An RGBA array as a PNG ``data:`` URI (fast compression: it is sent once per view)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def warm_up() -> None:
    """Compile datashader's kernels (count, by category, mean) on a few points."""
    x = np.linspace(0, 1, 16, dtype=np.float32)
    view = View(0, 1, 0, 1)
    render(x, x, view, codes=np.zeros(16, np.int32), colours=["#000000"], max_side=16)
    render(x, x, view, values=x, max_side=16)
    render(x, x, view, max_side=16)


def warm_up_in_background() -> threading.Thread:
    thread = threading.Thread(target=warm_up, name="datashader-warm-up", daemon=True)
    thread.start()
    return thread
