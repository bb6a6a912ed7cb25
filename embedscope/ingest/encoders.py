"""Loading the models of one ingest configuration: the encoder and its variant stages.

Loaded once and reused: by each ``embedscope ingest``, by the daemon across batches, by each
Ray encoder actor, and by the query embedder (:mod:`embedscope.ingest.embed_file`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from embedscope.config import IngestSettings
from embedscope.ingest.decode_stage import batched_decode
from embedscope.ingest.encode_stage import FullImageStage, VariantStage


@dataclass
class Encoders:
    """The loaded models of one ingest configuration (load once, reuse across runs)."""

    encoder: Any  # builds its network on first use
    stages: list[VariantStage]


def with_model_image_size(settings: IngestSettings) -> IngestSettings:
    """``settings`` with ``image_size`` 0 ("the model's own") replaced by the model's registry
    size (224 for DINOv2 and most CLIPs, 256 for MobileCLIP2-S0); a given size is kept."""
    if settings.image_size:
        return settings
    from dataclasses import replace

    from embedscope.models.registry import get_encoder_config

    return replace(settings, image_size=get_encoder_config(model_names(settings)[0]).image_size)


def model_names(settings: IngestSettings) -> list[str]:
    """``--model a,b``: the models of one ingest; the first drives decoding and ``--image-size``,
    each other one preprocesses the decoded image its own way (:mod:`embedscope.ingest.model_stage`)."""
    return [m.strip() for m in settings.model.split(",") if m.strip()]


def load_encoders(settings: IngestSettings, *, announce: bool = True) -> Encoders:
    """Resolve weights (failing before any database work), load DINOv2 (and SAM2).

    ``announce=False`` skips the random-weights warnings (Ray actors: the driver has said it)."""
    from embedscope.models.factory import create_encoder

    first, *others = model_names(settings)
    encoder = create_encoder(first, weights=settings.weights, device=settings.device,
                             precision=settings.precision, image_size=settings.image_size,
                             preprocess=settings.preprocess, compile=settings.compile,
                             torch_threads=settings.torch_threads)
    sam2_weights = None
    if settings.sam2:
        from embedscope.models.sam2 import resolve_sam2_weights

        sam2_weights = resolve_sam2_weights(settings.sam2_model, settings.sam2_weights)
    batched_decode(settings)  # --decode gpu without CUDA: fail now, before any database work
    if encoder.weights.is_random and announce:
        warn_random(f"{encoder.name}: using RANDOM weights (--weights random); embeddings are not meaningful")
    stages: list[VariantStage] = [FullImageStage(encoder, store_patch_mean=settings.store_patch_mean)]
    if settings.sam2:
        from embedscope.ingest.sam2_stage import Sam2MaskedStage

        sam2 = Sam2MaskedStage.build(settings, encoder, sam2_weights)
        if sam2_weights.is_random and announce:
            warn_random(f"{sam2.segmenter.name}: using RANDOM SAM2 weights (--sam2-weights random); "
                        "masks are not meaningful")
        stages.append(sam2)
    if others:
        from embedscope.errors import ConfigError
        from embedscope.ingest.model_stage import OtherModelStage

        if settings.sam2 or settings.store_patch_mean:
            raise ConfigError("--sam2 / --store-patch-mean take one --model", "ingest the other models in a second run")
        other_weights = settings.weights if settings.weights in ("hub", "random") else "hub"  # a file is the first's
        for name in others:
            other = create_encoder(name, weights=other_weights, device=settings.device, precision=settings.precision,
                                   preprocess=settings.preprocess, torch_threads=settings.torch_threads)
            if other.weights.is_random and announce:
                warn_random(f"{other.name}: using RANDOM weights (--weights random); embeddings are not meaningful")
            stages.append(OtherModelStage(other))
    return Encoders(encoder, stages)


def warn_random(message: str) -> None:
    """A one-line warning on stderr (random weights: the vectors will not mean anything)."""
    print(f"WARNING: {message}", file=sys.stderr, flush=True)
