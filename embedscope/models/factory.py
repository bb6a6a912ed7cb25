"""One factory for every encoder: ``create_encoder(name, weights=..., device=..., precision=...)``.

Looks the name up in the registry, resolves the weights (Hugging Face cache, a local file, or
``random`` chosen explicitly; one readable error when they are missing) and builds the
family's encoder. The network itself is built on first use.

>>> enc = create_encoder("dinov2_vits14", weights="random")  # doctest: +SKIP
>>> enc.embed_images(batch).shape                            # doctest: +SKIP
(8, 384)
"""

from __future__ import annotations

from typing import Any

from embedscope.models.encoder import Encoder
from embedscope.models.registry import get_encoder_config
from embedscope.models.weights import resolve_weights


def create_encoder(
    name: str,
    *,
    weights: str = "hub",
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    preprocess: str = "default",
    compile: bool = False,
    torch_threads: int = 0,
) -> Encoder:
    """The encoder registered as ``name`` with weights ``weights`` (``hub``, ``random`` or a
    path); raises :class:`~embedscope.errors.UnknownModelError` listing the known names and
    :class:`~embedscope.errors.WeightsNotFoundError` saying what to download."""
    config = get_encoder_config(name)
    source = resolve_weights(weights, repo_id=config.hf_hub_id, filename=config.weights_file, what=config.name)
    from embedscope.models.dinov2 import DinoV2Encoder

    kwargs: dict[str, Any] = dict(device=device, image_size=image_size, preprocess_mode=preprocess,
                                  precision=precision, compile=compile, torch_threads=torch_threads)
    return DinoV2Encoder(config, source, **kwargs)
