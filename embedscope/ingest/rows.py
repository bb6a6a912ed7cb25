"""Row builders: the one way any ingest stage turns its results into table rows.

Every executor (threaded, Ray) and every variant stage (full image, SAM2-masked) builds its
``embeddings``, ``images``, ``sources`` and ``quarantine`` rows here, so the tables' columns
are filled in one place. Paths are stored as :func:`~embedscope.ingest.pathnames.stored_path`
gives them (UTF-8, lossless for names that are not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pyarrow as pa

from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.scan import FileEntry
from embedscope.store import schema as S
from embedscope.store.db import utc_now

if TYPE_CHECKING:
    from embedscope.ingest.decode_stage import DecodedItem


def embedding_rows(
    shas: Sequence[str],
    vectors: np.ndarray,
    *,
    model: str,
    variant: str,
    weights: str,
) -> pa.Table:
    """``embeddings_<model>`` rows: one vector per sha256, all of one model/variant/weights."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())
    cols: dict[str, Any] = {
        "sha256": pa.array(list(shas), pa.string()),
        "model": pa.array([model] * n, pa.string()),
        "variant": pa.array([variant] * n, pa.string()),
        "dim": pa.array([dim] * n, pa.int32()),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        "weights": pa.array([weights] * n, pa.string()),
        "created_at": pa.array([utc_now()] * n, pa.timestamp("us", tz="UTC")),
    }
    return pa.table(cols)


def image_rows(items: Sequence[DecodedItem], *, label_from_folder: bool) -> pa.Table:
    """The ``images`` rows of decoded items (first path seen, size, format, phash, thumbnail)."""
    now = utc_now()
    return pa.Table.from_pylist(
        [
            {"sha256": it.sha256, "path": stored_path(it.entry.path), "size_bytes": it.entry.size_bytes,
             "width": it.width, "height": it.height, "format": it.format,
             "label": stored_path(it.entry.folder_label) if label_from_folder else None, "phash": it.phash,
             "ingested_at": now, "thumbnail": it.thumbnail}
            for it in items
        ],
        S.IMAGES_SCHEMA,
    )


def quality_rows(items: Sequence[DecodedItem]) -> pa.Table:
    """The ``quality`` rows of decoded items that were measured (see ``ingest/quality.py``)."""
    return pa.Table.from_pylist([{"sha256": it.sha256, **it.quality} for it in items if it.quality],
                                S.QUALITY_SCHEMA)


def mask_rows(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """``masks`` rows (one per image a segmenter looked at) as a table of the masks schema."""
    return pa.Table.from_pylist(list(rows), S.MASKS_SCHEMA)


def source_row(entry: FileEntry, sha256: str, seen_at: Any) -> dict[str, Any]:
    """One ``sources`` row: where a file with this content was seen."""
    return {"sha256": sha256, "path": stored_path(entry.path), "drop": stored_path(entry.drop),
            "size_bytes": entry.size_bytes,
            "mtime": entry.mtime, "seen_at": seen_at}


def quarantine_row(entry: FileEntry, sha256: str, reason: str, seen_at: Any) -> dict[str, Any]:
    """One ``quarantine`` row: a file that cannot be an image, and why."""
    return {"sha256": sha256, "path": stored_path(entry.path), "size_bytes": entry.size_bytes, "reason": reason,
            "seen_at": seen_at}
