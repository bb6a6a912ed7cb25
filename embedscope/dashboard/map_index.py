"""The server-side 2-D index of a map's points: which points are in a view, the nearest point to
a position, the points inside a lasso, each cluster's representative; and the per-process cache
that keeps one index per (run, projection, table version), bounded in memory.

Points are bucketed in a uniform ``GRID`` × ``GRID`` grid (stored cell by cell, CSR style): a
view or polygon visits only the cells it overlaps, then checks those points exactly. Nearest
point queries use a k-d tree (scipy), built on first use.

>>> idx = MapIndex.build(shas, x, y)                         # doctest: +SKIP
>>> idx.in_view(View(0, 1, 0, 1))                            # doctest: +SKIP
array([    12,   407, ...], dtype=int32)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

GRID = 256
DEFAULT_CACHE_BYTES = 768 * 1024 * 1024  # indexes (and their colour arrays) kept per server process


@dataclass(frozen=True)
class View:
    """An axis-aligned rectangle in projection coordinates."""

    x0: float
    x1: float
    y0: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def grown(self, factor: float) -> "View":
        """The same centre, each side ``factor`` times as long."""
        cx, cy = self.centre
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return View(cx - hw, cx + hw, cy - hh, cy + hh)

    def covers(self, other: "View") -> bool:
        return self.x0 <= other.x0 and self.x1 >= other.x1 and self.y0 <= other.y0 and self.y1 >= other.y1

    def as_list(self) -> list[float]:
        return [self.x0, self.x1, self.y0, self.y1]


@dataclass
class MapIndex:
    """Points (index ``i`` = the i-th sha256 in sorted order) bucketed by grid cell."""

    sha256: Any  # pyarrow string array (compact; a Python list of 1M strings is ~110 MB)
    x: np.ndarray
    y: np.ndarray
    extent: View
    order: np.ndarray  # point indices, cell by cell
    starts: np.ndarray  # order[starts[c]:starts[c + 1]] are the points of cell c
    colours: dict[str, Any] = field(default_factory=dict)  # colour field → store.map_columns.PointColours
    images: dict[int, str] = field(default_factory=dict)  # the whole map's density image (PNG data URI)
    _tree: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def build(cls, sha256: Any, x: np.ndarray, y: np.ndarray) -> "MapIndex":
        x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
        if len(x):
            extent = View(float(x.min()), float(x.max()), float(y.min()), float(y.max()))
        else:
            extent = View(0.0, 1.0, 0.0, 1.0)
        cells = _cells(extent, x, y)
        order = np.argsort(cells, kind="stable").astype(np.int32)
        starts = np.searchsorted(cells[order], np.arange(GRID * GRID + 1)).astype(np.int64)
        return cls(sha256, x, y, extent, order, starts)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def nbytes(self) -> int:
        own = self.x.nbytes + self.y.nbytes + self.order.nbytes + self.starts.nbytes + self.sha256.nbytes
        tree = 0 if self._tree is None else 3 * self.x.nbytes * 4
        colours = sum(c.codes.nbytes if c.codes is not None else c.values.nbytes for c in self.colours.values())
        return own + tree + colours + sum(len(uri) for uri in self.images.values())

    def full_view(self, pad: float = 0.03) -> View:
        e = self.extent
        px, py = max(e.width, 1e-6) * pad, max(e.height, 1e-6) * pad
        return View(e.x0 - px, e.x1 + px, e.y0 - py, e.y1 + py)

    def _candidates(self, view: View) -> np.ndarray:
        """Point indices of the cells the view overlaps (a superset of the points in it)."""
        c0, r0 = _cell_xy(self.extent, view.x0, view.y0)
        c1, r1 = _cell_xy(self.extent, view.x1, view.y1)
        if c0 == 0 and r0 == 0 and c1 == GRID - 1 and r1 == GRID - 1:
            return np.arange(len(self.x), dtype=np.int32)
        rows = np.arange(r0, r1 + 1)
        lo, hi = self.starts[rows * GRID + c0], self.starts[rows * GRID + c1 + 1]
        if not len(rows):
            return np.zeros(0, np.int32)
        return np.concatenate([self.order[a:b] for a, b in zip(lo, hi)]) if len(rows) else np.zeros(0, np.int32)

    def in_view(self, view: View) -> np.ndarray:
        """Sorted indices of the points inside ``view``."""
        if view.x1 < self.extent.x0 or view.x0 > self.extent.x1 or view.y1 < self.extent.y0 or view.y0 > self.extent.y1:
            return np.zeros(0, np.int32)
        cand = self._candidates(view)
        x, y = self.x[cand], self.y[cand]
        keep = (x >= view.x0) & (x <= view.x1) & (y >= view.y0) & (y <= view.y1)
        if len(cand) == len(self.x):  # every cell: the candidates are already in order
            return cand[keep]
        return np.sort(cand[keep])

    def count_in_view(self, view: View) -> int:
        return int(len(self.in_view(view)))

    def nearest(self, x: float, y: float, k: int = 1) -> np.ndarray:
        """Indices of the ``k`` points nearest to (x, y), nearest first."""
        if not len(self.x):
            return np.zeros(0, np.int32)
        with self._lock:
            if self._tree is None:
                from scipy.spatial import cKDTree

                self._tree = cKDTree(np.column_stack([self.x, self.y]))
        k = min(int(k), len(self.x))
        _, idx = self._tree.query([x, y], k=k)
        return np.atleast_1d(np.asarray(idx, np.int32))

    def in_polygon(self, xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
        """Sorted indices of the points inside the polygon (a lasso; a box is four corners)."""
        Path = _polygon_path()

        if len(xs) < 3:
            return np.zeros(0, np.int32)
        view = View(float(min(xs)), float(max(xs)), float(min(ys)), float(max(ys)))
        cand = self.in_view(view)
        if not len(cand):
            return cand
        inside = Path(np.column_stack([xs, ys])).contains_points(np.column_stack([self.x[cand], self.y[cand]]))
        return cand[inside]

    def shas(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        """sha256 of the given point indices (out-of-range ones skipped: a stale figure)."""
        idx = np.asarray(indices, np.int64)
        idx = idx[(idx >= 0) & (idx < len(self.x))]
        return self.sha256.take(idx).to_pylist() if len(idx) else []

    def index_of(self, shas: Sequence[str]) -> np.ndarray:
        """The point indices of ``shas`` that are on this map."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not shas:
            return np.zeros(0, np.int32)
        where = pc.index_in(pa.array(list(shas), pa.string()), value_set=self.sha256).drop_null()
        return np.unique(where.to_numpy(zero_copy_only=False)).astype(np.int32)

    def representatives(self, codes: np.ndarray, categories: Sequence[str]) -> list[dict[str, Any]]:
        """Per category (cluster): the member nearest the category's 2-D centroid, the
        centroid and the size; noise and unknown have none. Sorted by size, largest first."""
        out = []
        for c, name in enumerate(categories):
            if name in ("noise", "unknown", "other"):
                continue
            members = np.flatnonzero(codes == c)
            if not len(members):
                continue
            cx, cy = float(self.x[members].mean()), float(self.y[members].mean())
            near = members[np.argmin((self.x[members] - cx) ** 2 + (self.y[members] - cy) ** 2)]
            out.append({"category": name, "code": c, "index": int(near), "x": cx, "y": cy, "size": int(len(members))})
        return sorted(out, key=lambda r: -r["size"])


def _cell_xy(extent: View, x: float, y: float) -> tuple[int, int]:
    cx = int(np.clip((x - extent.x0) / max(extent.width, 1e-12) * GRID, 0, GRID - 1))
    cy = int(np.clip((y - extent.y0) / max(extent.height, 1e-12) * GRID, 0, GRID - 1))
    return cx, cy


def _cells(extent: View, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    cx = np.clip(((x - extent.x0) / max(extent.width, 1e-12) * GRID).astype(np.int64), 0, GRID - 1)
    cy = np.clip(((y - extent.y0) / max(extent.height, 1e-12) * GRID).astype(np.int64), 0, GRID - 1)
    return cy * GRID + cx


class MapIndexCache:
    """The server's map indexes: built on first use, shared by every callback, the least
    recently used dropped once they hold more than ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, MapIndex] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple, build: Callable[[], MapIndex]) -> MapIndex:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            gate = self._building.setdefault(key, threading.Lock())
        with gate:  # concurrent callbacks for a new map build it once
            with self._lock:
                if key in self._items:
                    return self._items[key]
            index = build()
            with self._lock:
                self._items[key] = index
                self._building.pop(key, None)
                self.trim()
            return index

    def trim(self) -> None:
        """Drop the least recently used indexes while over the byte budget (keeps the newest)."""
        while len(self._items) > 1 and sum(i.nbytes for i in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


_IMPORT_LOCK = threading.Lock()


def _polygon_path() -> Any:
    """matplotlib's ``Path``, imported under a lock: the server's warm-up thread and a first
    lasso may import it at once, and the loser of that race would see a half-initialised module."""
    with _IMPORT_LOCK:
        from matplotlib.path import Path
    return Path
