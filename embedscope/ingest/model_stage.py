"""Several models in one ingest (``--model dinov2_vits14,openclip_vitb32``): every model after
the first is an :class:`OtherModelStage`. Each image is decoded once; the stage keeps the
decoded image on the item (like SAM2) and runs *its own* model's preprocessing on it (DINOv2 and
CLIP differ in size, mean/std and resize filter), then writes to that model's own
``embeddings_<model>`` table.

Its ``variant`` is a key ``"<model>:full"``, so triage asks per model what is missing
(:meth:`embedscope.ingest.triage.KnownState.load` reads that model's table for it): adding a model
to a database later embeds only the images its table lacks.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from embedscope.ingest.decode_stage import DecodedItem
from embedscope.ingest.rows import embedding_rows
from embedscope.store import schema as S

KEY_SEPARATOR = ":"


def model_key(model: str, variant: str = S.VARIANT_FULL) -> str:
    """The triage key of ``model``'s ``variant`` when it is not the run's first model."""
    return f"{model}{KEY_SEPARATOR}{variant}"


def split_key(key: str) -> tuple[str | None, str]:
    """``(model, variant)`` of a key; ``(None, key)`` for a plain variant of the first model."""
    model, sep, variant = key.rpartition(KEY_SEPARATOR)
    return (model, variant) if sep else (None, key)


class OtherModelStage:
    """The ``full`` vectors of a second (third, …) model, from the same decoded images."""

    needs_image = True

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.variant = model_key(encoder.name)

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        pixels = np.stack([self.encoder.preprocessor(it.image) for it in items])
        out = self.encoder.embed(pixels)
        rows = embedding_rows([it.sha256 for it in items], out.cls, variant=S.VARIANT_FULL, model=self.encoder.name,
                              weights=self.encoder.weights.label)
        return {S.embeddings_table_name(self.encoder.name): rows}
