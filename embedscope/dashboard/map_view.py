"""What the 2-D map draws for a view, and what a map event points at: the glue between the
store's arrays (:mod:`embedscope.store.map_columns`), the server's index (:mod:`map_index`)
and the figure builders (:mod:`map_layers`, :mod:`map_density`). No Dash layout here.

Level of detail: more than ``threshold`` points in view → the density image; fewer → the
points themselves (those of a region twice the view, so small pans need no new query); at
most ``THUMBS_VIEW_MAX`` in view → also thumbnails, one per cell of a 7 × 7 grid over the
view (:func:`contact_sheet`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from embedscope.dashboard import figures, map_density, map_layers
from embedscope.dashboard.map_index import MapIndex, View


THUMBS_VIEW_MAX = 2_000  # "close zoom": at most this many points in view
THUMBS_SIDE = 7  # at close zoom the view is cut into 7 × 7 cells, one thumbnail each
THUMBS_MAX = THUMBS_SIDE * THUMBS_SIDE
HOVER_CELLS = 1.5  # a density hover answers when a point is within this many hover-grid cells


@dataclass
class Drawn:
    """What :func:`draw` returns: the figure (or a patch of it), the notice, the view state."""

    figure: Any
    notice: str
    state: dict[str, Any]
    pictures: list[str] = field(default_factory=list)  # sha256 of the thumbnails drawn on the map


def map_index(ctx: Any, state: Any, run_id: str, method: str, dims: int) -> MapIndex:
    """The cached index of a run's projection (rebuilt when the projections table changes)."""
    from embedscope.store import map_columns
    from embedscope.store import schema as S

    db = ctx.db()
    key = (ctx.db_path, run_id, method, int(dims), db.version(S.PROJECTIONS))

    def build() -> MapIndex:
        cols = map_columns.projection_columns(db, run_id, method, dims)
        return MapIndex.build(cols.sha256, cols.x, cols.y)

    return state.indexes.get(key, build)


def map_colours(ctx: Any, index: MapIndex, run_id: str, color: str) -> Any:
    """The colour field of the index's points (cached on the index per table versions)."""
    from embedscope.store import map_columns
    from embedscope.store import schema as S

    db = ctx.db()
    key = (color, *(db.version(t) for t in (S.CLUSTERS, S.FLAGS, S.IMAGES, S.TAGS)))
    hit = index.colours.get(key)
    if hit is None:
        hit = map_columns.point_colours(db, run_id, index.sha256, color)
        index.colours.clear()  # one colour field at a time per map: memory stays bounded
        index.colours[key] = hit
    return hit


def moved(viewport: Sequence[float] | None, shown: Sequence[float] | None, tolerance: float = 1e-6) -> View | None:
    """The view the browser's axes show (``viewport``: [x0, x1, y0, y1]) when it differs from
    the one drawn (``shown``); None when it does not (a resize, a selection, a re-render)."""
    if not viewport or len(viewport) != 4:
        return None
    view = View(*(float(v) for v in viewport))
    if shown and len(shown) == 4:
        scale = max(abs(view.width), abs(view.height), 1e-12)
        if all(abs(a - b) <= tolerance * scale for a, b in zip(view.as_list(), shown)):
            return None
    return View(min(view.x0, view.x1), max(view.x0, view.x1), min(view.y0, view.y1), max(view.y0, view.y1))


def color_title(color: str) -> str:
    return color.replace("cluster:", "cluster ")


def draw(ctx: Any, index: MapIndex, colours: Any, view: View, *, threshold: int, key: list,
         highlight: Sequence[str] = (), representatives: bool = False, previous: dict | None = None) -> Drawn:
    """The map of ``view``: density or points by the count in view (see the module docstring).
    ``previous``: the state of the figure on screen; when it already holds this view's points
    only the pictures are patched. ``key`` identifies what is drawn (run, projection, colour)."""
    from dash import Patch

    title = color_title(key[-1]) if key else ""
    in_view = index.in_view(view)
    n, total = len(in_view), len(index)
    images, notes = _pictures(index, colours, view, in_view, representatives)
    state = {"key": key, "view": view.as_list(), "reps": bool(representatives), "n_view": n, "ringed": len(highlight)}
    if n > threshold:
        fig = _density(index, colours, view, in_view, title)
        state["mode"] = "density"
        notice = (f"Density of the {n:,} points in view (of {total:,}), drawn on the server; zoom in to fewer than "
                  f"{threshold:,} points to see them as points. Hover shows the nearest image; lasso selects exactly.")
    else:
        loaded = View(*previous["loaded"]) if previous and previous.get("loaded") else None
        same = previous and previous.get("mode") == "points" and previous.get("key") == key and not highlight
        if same and loaded is not None and loaded.covers(view):
            patch = Patch()
            patch["layout"]["images"] = images
            patch["layout"]["annotations"] = notes
            return Drawn(patch, _points_notice(n, total, previous.get("n_loaded", n)),
                         {**previous, **state, "loaded": loaded.as_list()}, _picture_shas(images))
        region = view.grown(2.0)
        rows = index.in_view(region)
        if len(rows) > threshold:
            region, rows = view, in_view
        hl = index.index_of(list(highlight)) if highlight else None
        fig = map_layers.points_figure(view, rows, index.x, index.y, codes=colours.codes, categories=colours.categories,
                                       values=colours.values, highlight=hl, color_title=title,
                                       clip_at=figures.novelty_clip(ctx.db(), key[0], key[-1]) if key else None)
        state.update(mode="points", loaded=region.as_list(), n_loaded=int(len(rows)))
        notice = _points_notice(n, total, len(rows))
        if highlight:
            notice += f" Ringed in red: {len(hl):,} images selected by a SQL query or a text search."
    fig["layout"]["images"] = fig["layout"]["images"] + images
    fig["layout"]["annotations"] = notes
    return Drawn(fig, notice, state, _picture_shas(images))


def _picture_shas(images: list[dict]) -> list[str]:
    prefix = map_layers.THUMB_URL.format("")
    return [i["source"][len(prefix):] for i in images if i["source"].startswith(prefix)]


def _points_notice(n: int, total: int, loaded: int) -> str:
    if n >= total:
        return f"Showing all {total:,} points."
    return f"Showing the {n:,} points in view (of {total:,}; {loaded:,} around it are loaded for panning)."


def _density(index: MapIndex, colours: Any, view: View, in_view: np.ndarray, title: str) -> Any:
    """The density figure; the whole map's image is rendered once per colour field (it is the
    first view of every visit)."""
    x, y = index.x[in_view], index.y[in_view]
    whole = view == index.full_view()
    uri = index.images.get(id(colours)) if whole else None
    if colours.continuous:
        uri = uri or map_density.png_data_uri(map_density.render(x, y, view, values=colours.values[in_view]))
        fig = map_layers.density_figure(view, uri, continuous_title=title, color_title=title)
    else:
        _, palette = map_layers.category_colours(colours.categories)
        codes = colours.codes[in_view]
        uri = uri or map_density.png_data_uri(map_density.render(x, y, view, codes=codes, colours=palette))
        counts = np.bincount(codes, minlength=len(colours.categories))
        fig = map_layers.density_figure(view, uri, categories=colours.categories, colours=palette,
                                        counts=counts.tolist(), color_title=title)
    if whole:
        index.images = {id(colours): uri}  # one colour field at a time
    return fig


def _pictures(index: MapIndex, colours: Any, view: View, in_view: np.ndarray, representatives: bool) -> tuple[list, list]:
    """Layout images and annotations: thumbnails at close zoom, and the representatives layer."""
    images: list = []
    notes: list = []
    if 0 < len(in_view) <= THUMBS_VIEW_MAX:
        rows = contact_sheet(index.x[in_view], index.y[in_view], view)
        rows = in_view[rows]
        images += map_layers.thumbnail_images(view, rows, index.x, index.y, index.shas(rows), per_side=THUMBS_SIDE + 1)
    if representatives and not colours.continuous:
        reps = index.representatives(colours.codes, colours.categories)
        rep_images, notes = map_layers.representative_layers(reps, index.shas([r["index"] for r in reps]), index.extent)
        images += rep_images
    return images, notes


def contact_sheet(x: np.ndarray, y: np.ndarray, view: View, side: int = 0) -> np.ndarray:
    """Which points get a picture at close zoom: the view cut into ``side`` × ``side`` cells
    (at most ``THUMBS_MAX`` pictures), in each the point nearest the cell's centre, so the
    pictures tile the view instead of piling up; the cells nearest the view's centre first."""
    side = side or THUMBS_SIDE
    cw, ch = max(view.width, 1e-12) / side, max(view.height, 1e-12) / side
    col = np.clip(((x - view.x0) / cw).astype(np.int64), 0, side - 1)
    row = np.clip(((y - view.y0) / ch).astype(np.int64), 0, side - 1)
    d = ((x - (view.x0 + (col + 0.5) * cw)) / cw) ** 2 + ((y - (view.y0 + (row + 0.5) * ch)) / ch) ** 2
    cell = row * side + col
    order = np.lexsort((d, cell))
    _, first = np.unique(cell[order], return_index=True)
    picked = order[first]
    centre = (col[picked] - (side - 1) / 2) ** 2 + (row[picked] - (side - 1) / 2) ** 2
    return picked[np.argsort(centre, kind="stable")][:THUMBS_MAX]


def event_indices(index: MapIndex, event: dict | None, state: dict | None) -> list[int]:
    """Point indices a hover / click event points at: the points' own indices when the figure
    carries them, else the point nearest the event's position (in density mode only when one
    lies within a few hover cells of it)."""
    from embedscope.dashboard import shaping

    found = shaping.point_indices(event)
    if found or not event:
        return found
    points = event.get("points") or []
    if not points or points[0].get("x") is None or points[0].get("y") is None:
        return []
    x, y = float(points[0]["x"]), float(points[0]["y"])
    nearest = index.nearest(x, y, k=1)
    if not len(nearest):
        return []
    i = int(nearest[0])
    if (state or {}).get("mode") == "density":
        view = View(*state["view"])
        reach = HOVER_CELLS * max(view.width, view.height) / map_layers.HOVER_GRID
        if (index.x[i] - x) ** 2 + (index.y[i] - y) ** 2 > reach**2:
            return []
    return [i]


def selection_polygon(selected: dict | None) -> tuple[list[float], list[float]] | None:
    """The lasso's (xs, ys), or a box's four corners, of a Plotly ``selectedData``."""
    s = selected or {}
    lasso = s.get("lassoPoints") or {}
    if lasso.get("x") and lasso.get("y"):
        return [float(v) for v in lasso["x"]], [float(v) for v in lasso["y"]]
    box = s.get("range") or {}
    if box.get("x") and box.get("y"):
        (x0, x1), (y0, y1) = box["x"], box["y"]
        return [x0, x1, x1, x0], [y0, y0, y1, y1]
    return None


def warm_latest_map(ctx: Any, state: Any) -> None:
    """Compile datashader's kernels, then index and colour the latest run's primary 2-D map, so
    the first visit draws at once. Run in a background thread when the dashboard starts."""
    import logging

    from embedscope.dashboard import map_page_cache, shaping
    from embedscope.store.runs import latest_run

    log = logging.getLogger(__name__)
    try:
        map_density.warm_up()
        db = ctx.db()
        run = latest_run(db)
        if run is None:
            return
        _, proj, _, color = map_page_cache.map_choices(db, run)
        map_page_cache.map_sidebar(db, run)  # the page's sidebar reads whole columns too
        parsed = shaping.parse_projection(proj)
        if parsed is None or parsed[1] != 2 or not color:
            return
        index = map_index(ctx, state, run.run_id, *parsed)
        colours = map_colours(ctx, index, run.run_id, color)
        index.nearest(index.extent.x0, index.extent.y0)  # builds the k-d tree
        index.in_polygon([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])  # imports the lasso's point-in-polygon (0.7 s)
        if ctx.search is not None:  # the sha256 → (path, label) map of hovers and gallery pages
            ctx.search.image_info(db, [])
        if len(index) > ctx.max_points and not colours.continuous:  # the first density image compiles its kernel
            _density(index, colours, index.full_view(), index.in_view(index.full_view()), "")
        log.info("map of run %s warmed: %d points", run.run_id, len(index))
    except Exception:  # a warm-up failure only costs the first visit its speed
        log.exception("warming the map failed")
