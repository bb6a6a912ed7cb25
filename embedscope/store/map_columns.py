"""Column reads for a large map, as arrays: a projection's coordinates and one colour field per
point, joined by sha256 in Arrow (no Python object per row), so a million points read in about
a second. The per-row lookups of :mod:`embedscope.store.views` stay for the small pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq

UNKNOWN = "unknown"


@dataclass
class ProjectionColumns:
    """A 2-D (or 3-D) projection sorted by sha256: the sort order is each point's index."""

    sha256: pa.Array
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray | None

    def __len__(self) -> int:
        return len(self.sha256)


@dataclass
class PointColours:
    """One colour value per point: ``codes`` into ``categories`` (categorical), or ``values``
    (continuous, NaN where unknown)."""

    categories: list[str]
    codes: np.ndarray | None = None
    values: np.ndarray | None = None

    @property
    def continuous(self) -> bool:
        return self.values is not None


def projection_columns(db: Database, run_id: str, method: str, dims: int) -> ProjectionColumns:
    """The projection's coordinates as float32 arrays, in sha256 order."""
    t = db.read(S.PROJECTIONS, ["sha256", "x", "y", "z"],
                where=both(eq("run_id", run_id), eq("method", method), eq("dims", int(dims))))
    t = t.sort_by("sha256")

    def col(name: str) -> np.ndarray:
        return t.column(name).to_numpy(zero_copy_only=False).astype(np.float32)

    return ProjectionColumns(t.column("sha256").combine_chunks(), col("x"), col("y"), col("z") if dims >= 3 else None)


def _joined(points: pa.Array, table: pa.Table, column: str) -> pa.Array:
    """``table[column]`` aligned with ``points`` by sha256 (null where ``table`` has no row)."""
    where = pc.index_in(points, value_set=table.column("sha256").combine_chunks())
    return pc.take(table.column(column).combine_chunks(), where)


def encode_categories(values: pa.Array | list[Any]) -> PointColours:
    """Categorical colours from one value per point (None → ``unknown``)."""
    arr = pa.array(values) if not isinstance(values, (pa.Array, pa.ChunkedArray)) else values
    arr = pc.cast(arr, pa.string()) if not pa.types.is_string(arr.type) else arr
    encoded = pc.dictionary_encode(pc.fill_null(arr, UNKNOWN)).combine_chunks() \
        if isinstance(arr, pa.ChunkedArray) else pc.dictionary_encode(pc.fill_null(arr, UNKNOWN))
    return PointColours(encoded.dictionary.to_pylist(), codes=encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32))


def point_colours(db: Database, run_id: str, points: pa.Array, color_by: str) -> PointColours:
    """The colour field ``color_by`` (a value of :func:`views.color_options`) for ``points``."""
    from embedscope.store import views

    if color_by.startswith(views.COLOR_CLUSTER_PREFIX):
        method = color_by[len(views.COLOR_CLUSTER_PREFIX):]
        t = db.read(S.CLUSTERS, ["sha256", "cluster"], where=both(eq("run_id", run_id), eq("method", method)))
        cluster = _joined(points, t, "cluster")
        names = pc.if_else(pc.equal(cluster, -1), "noise", pc.binary_join_element_wise("cluster", pc.cast(cluster, pa.string()), " "))
        return encode_categories(names)
    if color_by == views.COLOR_NOVELTY:
        t = db.read(S.FLAGS, ["sha256", "novelty_score"], where=eq("run_id", run_id))
        score = _joined(points, t, "novelty_score")
        return PointColours([], values=pc.fill_null(pc.cast(score, pa.float32()), float("nan")).to_numpy(zero_copy_only=False))
    if color_by == views.COLOR_CONTAMINATION:
        t = db.read(S.FLAGS, ["sha256", "is_contaminated"], where=eq("run_id", run_id))
        flag = _joined(points, t, "is_contaminated")
        return encode_categories(pc.if_else(flag, "contaminated", "clean"))
    if color_by == views.COLOR_LABEL:
        return encode_categories(_joined(points, db.read(S.IMAGES, ["sha256", "label"]), "label"))
    # the rarer fields: the per-row lookup (slower, but the same values as the small map)
    values, continuous = views.point_colors(db, run_id, points.to_pylist(), color_by)
    if continuous:
        return PointColours([], values=np.asarray([np.nan if v is None else float(v) for v in values], np.float32))
    return encode_categories(values)


def thumbnails(db: Database, shas: list[str]) -> dict[str, bytes | None]:
    """The stored thumbnails of ``shas`` in one read (None for ids without one)."""
    from embedscope.store.filters import isin

    if not shas:
        return {}
    t = db.read(S.IMAGES, ["sha256", "thumbnail"], where=isin("sha256", list(shas)))
    found = dict(zip(t.column("sha256").to_pylist(), t.column("thumbnail").to_pylist()))
    return {s: found.get(s) for s in shas}
