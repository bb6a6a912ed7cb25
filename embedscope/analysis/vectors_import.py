"""Bring your own vectors: import precomputed embeddings (Parquet, or .npy + an ids file).

Imported rows go into ``images`` (``sha256`` = the id, ``path`` = the id, the label if given,
no thumbnail, no phash) and ``embeddings_<model>`` (variant 'full', weights
'import:<file name>'), L2-normalised, so every later command treats them like ingested
images. Re-importing the same ids updates their vectors (upsert), never duplicates them; an
``images`` row that already exists (an ingested image, or an earlier import) is kept as is.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.vectors import vectors_to_numpy

log = logging.getLogger(__name__)


@dataclass
class ImportSummary:
    rows: int
    dim: int
    model: str
    seconds: float
    labelled: int

    def one_line(self) -> str:
        return (f"imported {self.rows} vectors of dim {self.dim} as model {self.model} "
                f"({self.labelled} labelled) in {self.seconds:.1f}s")


def load_vectors(path: Path, *, ids_file: Path | None = None, id_column: str = "id", vector_column: str = "vector",
                 label_column: str | None = "label") -> tuple[list[str], np.ndarray, list[str | None] | None]:
    """(ids, N × D float32 vectors, labels or None) from a Parquet file or a .npy + ids file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist", "pass a .parquet file, or a .npy file with --ids FILE")
    if path.suffix == ".npy":
        if ids_file is None:
            raise ConfigError(f"{path.name} has no ids", "pass --ids FILE (text, one id per line, in row order)")
        X = np.load(path, allow_pickle=False)
        ids = [line.strip() for line in Path(ids_file).read_text().splitlines() if line.strip()]
        labels = None
    elif path.suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        tbl = pq.read_table(path)
        for col in (id_column, vector_column):
            if col not in tbl.column_names:
                raise ConfigError(f"{path.name} has no column {col!r} (columns: {', '.join(tbl.column_names)})",
                                  "name the columns with --id-column / --vector-column")
        ids = [str(v) for v in tbl.column(id_column).to_pylist()]
        vec = tbl.column(vector_column)
        if not pa.types.is_fixed_size_list(vec.type) and len(set(pc.list_value_length(vec).to_pylist())) > 1:
            raise ConfigError(f"the {vector_column!r} vectors of {path.name} differ in length", "every vector needs the same dim")
        X = vectors_to_numpy(vec)
        labels = None
        if label_column and label_column in tbl.column_names:
            labels = [None if v is None else str(v) for v in tbl.column(label_column).to_pylist()]
    else:
        raise ConfigError(f"cannot import {path.name}", "use a .parquet file or a .npy file with --ids")
    X = np.asarray(X, np.float32)
    if X.ndim != 2 or X.shape[0] != len(ids):
        raise ConfigError(f"{X.shape[0] if X.ndim else 0} vectors but {len(ids)} ids", "the ids must match the rows one to one")
    if len(set(ids)) != len(ids):
        raise ConfigError("the ids are not unique", "give every vector its own id")
    if not np.isfinite(X).all():
        raise ConfigError("some vectors contain NaN or infinity", "clean the vectors before importing")
    return ids, X, labels


def import_vectors(db: Database, path: Path, *, model: str, ids_file: Path | None = None, id_column: str = "id",
                   vector_column: str = "vector", label_column: str | None = "label", batch: int = 50_000) -> ImportSummary:
    """Import one file of vectors into ``db`` under ``model`` (see the module docstring)."""
    t0 = time.perf_counter()
    ids, X, labels = load_vectors(Path(path), ids_file=ids_file, id_column=id_column, vector_column=vector_column,
                                  label_column=label_column)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    if (norms <= 1e-12).any():
        raise ConfigError("some vectors are all zeros", "zero vectors have no direction; drop them before importing")
    X = X / norms
    n, dim = X.shape
    weights = f"import:{Path(path).name}"
    table = S.embeddings_table_name(model)
    ts = pa.timestamp("us", tz="UTC")
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        m = stop - start
        now = utc_now()
        emb = pa.table({
            "sha256": ids[start:stop], "model": [model] * m, "variant": [S.VARIANT_FULL] * m,
            "dim": pa.array([dim] * m, pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(X[start:stop].ravel(), pa.float32()), dim),
            "weights": [weights] * m, "created_at": pa.array([now] * m, ts),
        })
        db.upsert(table, emb)  # embeddings before images: the ingest's crash-safety order
        img = pa.table({
            "sha256": ids[start:stop], "path": ids[start:stop],
            "label": pa.array(labels[start:stop] if labels else [None] * m, pa.string()),
            "ingested_at": pa.array([now] * m, ts),
        })
        # an id that is already an image (e.g. vectors of another model for ingested images)
        # keeps its row: path, thumbnail and phash of a real image are never overwritten
        db.upsert(S.IMAGES, img, update_existing=False)
        log.info("ingest-vectors: %d/%d", stop, n)
    labelled = sum(1 for v in labels if v) if labels else 0
    return ImportSummary(n, dim, model, time.perf_counter() - t0, labelled)
