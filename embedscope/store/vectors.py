"""Vector columns → numpy: the one conversion every reader of stored vectors uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa


def vectors_to_numpy(column: Any) -> np.ndarray:
    """A fixed- or variable-size list column of floats (Array, ChunkedArray, or a table/batch
    with a ``vector`` column) as a ``(rows, dim)`` float32 matrix; ``(0, 0)`` when empty.

    >>> vectors_to_numpy(pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))).shape
    (2, 2)
    """
    if isinstance(column, (pa.Table, pa.RecordBatch)):
        column = column.column("vector")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    rows = len(column)
    if rows == 0:
        return np.zeros((0, 0), np.float32)
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), np.float32)
    return flat.reshape(rows, -1)
