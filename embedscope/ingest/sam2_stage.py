"""The ``sam2_masked`` variant stage: SAM2 finds each image's main object (no prompts), the
object alone goes through the DINOv2 encoder.

The segmenter and the mask choice are models' business (:mod:`embedscope.models.sam2`,
:mod:`embedscope.models.masking`); this stage turns their output into rows — the embeddings
(through :func:`~embedscope.ingest.rows.embedding_rows`, as every stage does) and one
``masks`` row per image.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
from PIL import Image

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError
from embedscope.ingest.decode_stage import DecodedItem
from embedscope.ingest.rows import embedding_rows, mask_rows
from embedscope.models.masking import MASK_MODES, MaskRule, encode_mask_png, fill_colour, mask_bbox, resize_mask
from embedscope.models.sam2 import (
    Sam2Segmenter,
    find_main_masks,
    get_sam2_config,
    masked_image,
    require_sam2,
    sam2_input_size,
)
from embedscope.models.weights import WeightSource
from embedscope.store import schema as S
from embedscope.store.db import utc_now

log = logging.getLogger(__name__)


class Sam2MaskedStage:
    """The ``sam2_masked`` variant: SAM2 mask → masked image → the DINOv2 encoder.

    Writes the embeddings (model and weights of the DINOv2 encoder, variant ``sam2_masked``)
    and one ``masks`` row per image (model and weights of SAM2). Time spent in SAM2 itself is
    reported by :meth:`take_timings` as ``sam2`` (part of the pipeline's ``encode`` time).
    An image where no mask qualifies (a fallback) is embedded whole: its vector equals the
    ``full`` variant's.
    """

    variant = S.VARIANT_SAM2
    needs_image = True

    def __init__(self, encoder: Any, segmenter: Sam2Segmenter, *, mask_mode: str = "mean_fill",
                 rule: MaskRule = MaskRule()) -> None:
        if mask_mode not in MASK_MODES:
            raise ConfigError(f"unknown --sam2-mask-mode {mask_mode!r}", f"use one of: {', '.join(MASK_MODES)}")
        self.encoder = encoder
        self.segmenter = segmenter
        self.mask_mode = mask_mode
        self.rule = rule
        self.fill = fill_colour(encoder.preprocessor.mean)
        self._seconds = 0.0

    @classmethod
    def build(cls, settings: IngestSettings, encoder: Any, weights: WeightSource) -> "Sam2MaskedStage":
        """From the ``sam2_*`` fields of the settings; ``weights`` come from
        :func:`~embedscope.models.sam2.resolve_sam2_weights`. The SAM2 network itself is built
        on first use."""
        config = get_sam2_config(settings.sam2_model)
        require_sam2()
        segmenter = Sam2Segmenter(config, weights, device=settings.device,
                                  input_size=sam2_input_size(settings.sam2_max_side))
        return cls(encoder, segmenter, mask_mode=settings.sam2_mask_mode)

    def take_timings(self) -> dict[str, float]:
        """Seconds spent in SAM2 since the last call (the pipeline adds them to its summary)."""
        seconds, self._seconds = self._seconds, 0.0
        return {"sam2": round(seconds, 3)}

    def process(self, items: Sequence[DecodedItem]) -> dict[str, pa.Table]:
        t0 = time.monotonic()
        found = find_main_masks(self.segmenter, [np.asarray(it.image) for it in items], self.rule)
        seconds = time.monotonic() - t0
        self._seconds += seconds
        log.info("sam2: %d images in %.1fs (%.2f s/image, %s, input %d px, %d fallbacks)", len(items), seconds,
                 seconds / len(items), self.segmenter.device_name, self.segmenter.input_size,
                 sum(m.fallback for m in found))
        pixels, masks = [], []
        now = utc_now()
        for it, main in zip(items, found):
            row: dict[str, Any] = {"sha256": it.sha256, "model": self.segmenter.name,
                                   "weights": self.segmenter.weights.label, "score": main.score,
                                   "reason": main.reason, "fallback": main.fallback, "created_at": now,
                                   "mask_mode": self.mask_mode}
            if main.mask is None:
                row.update(area_fraction=1.0, bbox=[0, 0, it.width, it.height], mask_png=None)
                pixels.append(it.pixels)  # the full image's input: the vector equals the full variant's
            else:
                original = resize_mask(main.mask, (it.width, it.height))
                row.update(area_fraction=float(original.mean()), bbox=list(mask_bbox(original)),
                           mask_png=encode_mask_png(original))
                masked = masked_image(np.asarray(it.image), main, mode=self.mask_mode, fill=self.fill)
                pixels.append(self.encoder.preprocessor(Image.fromarray(masked)))
            masks.append(row)
        vectors = self.encoder.embed(np.stack(pixels)).cls
        emb = embedding_rows([it.sha256 for it in items], vectors, model=self.encoder.name,
                             variant=self.variant, weights=self.encoder.weights.label)
        return {S.embeddings_table_name(self.encoder.name): emb, S.MASKS: mask_rows(masks)}
