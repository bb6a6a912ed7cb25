"""Reading what the analysis runs work on: the embeddings of one model/variant (whole, or the
vectors of chosen rows in one streaming pass) and the ``images`` columns aligned with them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.analysis.neighbors import normalize
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq
from embedscope.store.vectors import vectors_to_numpy


def embeddings_filter(model: str, variant: str) -> str:
    """The Lance filter selecting one model/variant's rows of ``embeddings_<model>``."""
    return both(eq("variant", variant), eq("model", model))


@dataclass
class EmbeddingData:
    """All rows of one model/variant, sorted by sha256, L2-normalised."""

    sha: list[str]
    X: np.ndarray
    created_at: np.ndarray  # microseconds since the epoch
    version: int  # the Lance version of ``embeddings_<model>`` that was read


def read_embeddings(db: Database, model: str, variant: str, ds: Any = None) -> EmbeddingData:
    """Every row of ``model``/``variant`` in one read (the all-rows run)."""
    if ds is None:
        ds = db.dataset(S.embeddings_table_name(model))
    version = int(ds.version)
    tbl = ds.to_table(columns=["sha256", "vector", "created_at"], filter=embeddings_filter(model, variant))
    sha = tbl.column("sha256").to_pylist()
    X = vectors_to_numpy(tbl.column("vector"))
    created = tbl.column("created_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    order = np.argsort(np.array(sha, dtype=object), kind="stable")  # deterministic row order
    return EmbeddingData([sha[i] for i in order], normalize(X[order]), created[order], version)


def gather_vectors(ds: Any, flt: str, wanted: pa.Array, batch_size: int) -> np.ndarray:
    """The vectors of the rows whose sha256 is in ``wanted``, in ``wanted``'s order, read in one
    streaming pass (memory: the result plus one batch). Rows not found stay zero; no row found
    at all gives ``(len(wanted), 0)``."""
    out = np.zeros((len(wanted), 0), np.float32)
    for b in ds.to_batches(columns=["sha256", "vector"], filter=flt, batch_size=batch_size):
        pos = pc.index_in(b.column("sha256"), value_set=wanted)
        have = pa.array(np.nonzero(pc.is_valid(pos).to_numpy(zero_copy_only=False))[0])
        if not len(have):
            continue
        V = vectors_to_numpy(b.take(have))
        if out.shape[1] == 0:
            out = np.zeros((len(wanted), V.shape[1]), np.float32)
        out[pos.take(have).to_numpy(zero_copy_only=False).astype(np.int64)] = V
    return out


def image_columns(db: Database, sha: list[str]) -> tuple[list[str | None], np.ndarray | None]:
    """Labels and phashes aligned with ``sha`` (None / null where absent)."""
    imgs = db.read(S.IMAGES, ["sha256", "label", "phash"])
    by = {s: (l, p) for s, l, p in zip(imgs.column("sha256").to_pylist(), imgs.column("label").to_pylist(),
                                        imgs.column("phash").to_pylist())}
    labels = [by.get(s, (None, None))[0] or None for s in sha]
    ph = [by.get(s, (None, None))[1] for s in sha]
    return labels, np.array([p if p is not None else np.iinfo(np.int64).min for p in ph], np.int64) if any(p is not None for p in ph) else None


def streamed_labels(db: Database, wanted: pa.Array, batch_size: int) -> list[str | None]:
    """The ``images.label`` of each row of ``wanted`` (streamed over ``images``)."""
    out: list[str | None] = [None] * len(wanted)
    if not db.has_table(S.IMAGES):
        return out
    for b in db.dataset(S.IMAGES).to_batches(columns=["sha256", "label"], batch_size=batch_size):
        pos = pc.index_in(b.column("sha256"), value_set=wanted)
        have = pa.array(np.nonzero(pc.is_valid(pos).to_numpy(zero_copy_only=False))[0])
        for j, lab in zip(pos.take(have).to_pylist(), b.column("label").take(have).to_pylist()):
            out[j] = lab or None
    return out
