"""The encode stage: decoded batches → embedding rows, one :class:`VariantStage` per variant.

The ``full`` variant (:class:`FullImageStage`) is here; the ``sam2_masked`` one is
:mod:`embedscope.ingest.sam2_stage`. Every executor runs them through :func:`encode_batch`.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import pyarrow as pa

from embedscope.ingest.decode_stage import DecodedItem
from embedscope.ingest.rows import embedding_rows
from embedscope.store import schema as S

CPU_BATCH_SIZE = 32  # when no encoder chooses (measured: bs 32 ~1.6x the per-image rate of bs 8 on CPU)


class VariantStage(Protocol):
    """Turns a batch of decoded images into rows for one embedding variant.

    A stage may also have ``take_timings() -> dict[str, float]``: seconds of its own sub-steps
    since the last call (e.g. ``sam2``), which the executors add to the run's summary."""

    variant: str
    needs_image: bool  # keep the decoded RGB image on the item (costs memory)

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        """Rows to write, by table name (an embeddings table, and maybe ``masks``)."""
        ...


class FullImageStage:
    """DINOv2 on the whole image: the ``full`` variant (and ``patch_mean`` when asked)."""

    variant = S.VARIANT_FULL
    needs_image = False

    def __init__(self, encoder: Any, *, store_patch_mean: bool = False) -> None:
        self.encoder = encoder
        self.store_patch_mean = store_patch_mean

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        stack = getattr(self.encoder, "stack", None)  # pinned memory on CUDA
        pixels = [it.pixels for it in items]
        batch = stack(pixels) if stack is not None else np.stack(pixels)
        out = self.encoder.embed(batch, patch_mean=self.store_patch_mean)
        shas = [it.sha256 for it in items]
        kw = {"model": self.encoder.name, "weights": self.encoder.weights.label}
        rows = embedding_rows(shas, out.cls, variant=self.variant, **kw)
        if out.patch_mean is not None:
            extra = embedding_rows(shas, out.patch_mean, variant=S.VARIANT_PATCH_MEAN, **kw)
            rows = pa.concat_tables([rows, extra])
        return {S.embeddings_table_name(self.encoder.name): rows}


def encode_batch(stages: Sequence[VariantStage], items: Sequence[DecodedItem]) -> tuple[dict[str, pa.Table], dict[str, int]]:
    """Run every stage on the items that miss its variant, then drop their pixels and images.

    Returns the rows to write by table name and the number of vectors per variant."""
    tables: dict[str, list[pa.Table]] = {}
    embedded: dict[str, int] = {}
    for stage in stages:
        todo = [it for it in items if stage.variant in it.variants]
        if not todo:
            continue
        for name, rows in stage.process(todo).items():
            tables.setdefault(name, []).append(rows)
        embedded[stage.variant] = embedded.get(stage.variant, 0) + len(todo)
    for it in items:
        it.pixels = None
        it.image = None
    return {name: pa.concat_tables(parts) if len(parts) > 1 else parts[0] for name, parts in tables.items()}, embedded


def encode_isolated(stages: Sequence[VariantStage], items: list[DecodedItem]
                    ) -> tuple[dict[str, pa.Table], dict[str, int], list[tuple[DecodedItem, str]]]:
    """:func:`encode_batch`, with one file's failure kept to that file: if the batch fails,
    each item is encoded alone and the ones that still fail are returned as
    ``(item, reason)`` (not encoded; the caller quarantines them). If *every* item fails alone,
    the fault is not in the files (the model, the device): the first error is raised."""
    try:
        tables, embedded = encode_batch(stages, items)
        return tables, embedded, []
    except Exception as exc:
        if len(items) == 1:
            raise
        first: Exception = exc
    parts: dict[str, list[pa.Table]] = {}
    embedded: dict[str, int] = {}
    failed: list[tuple[DecodedItem, str]] = []
    for item in list(items):
        try:
            tables, counts = encode_batch(stages, [item])
        except Exception as exc:
            failed.append((item, f"cannot embed: {type(exc).__name__}: {exc}".splitlines()[0][:300]))
            continue
        for name, rows in tables.items():
            parts.setdefault(name, []).append(rows)
        for variant, n in counts.items():
            embedded[variant] = embedded.get(variant, 0) + n
    if len(failed) == len(items):
        raise first
    return {name: pa.concat_tables(p) for name, p in parts.items()}, embedded, failed


def stage_timings(stages: Sequence[VariantStage]) -> dict[str, float]:
    """The sub-step seconds the stages timed themselves since last asked (e.g. ``sam2``)."""
    timings: dict[str, float] = {}
    for stage in stages:
        timings.update(getattr(stage, "take_timings", dict)())
    return timings
