"""One factory for every encoder: ``create_encoder(name, weights=..., device=..., precision=...)``.

Looks the name up in the registry, asks the name's family whether it takes the image size,
resolves the weights (Hugging Face cache, a local file, or ``random`` chosen explicitly; one
readable error when they are missing) and lets the family build the encoder. The network
itself is built on first use. The family's module is imported here, on demand, so importing
this module does not import torch.

>>> enc = create_encoder("dinov2_vits14", weights="random")  # doctest: +SKIP
>>> enc.embed_images(batch).shape                            # doctest: +SKIP
(8, 384)
"""

from __future__ import annotations

import importlib
from typing import cast

from embedscope.models.device import check_precision
from embedscope.models.encoder import Encoder, EncoderFamily
from embedscope.models.registry import EncoderConfig, family_module_name, get_encoder_config
from embedscope.models.weights import resolve_weights


def encoder_family(config: EncoderConfig) -> EncoderFamily:
    """The module that builds ``config``'s family (imported now, not before)."""
    return cast(EncoderFamily, importlib.import_module(family_module_name(config.family)))


def check_encoder_options(name: str, *, image_size: int | None = None, precision: str = "auto") -> EncoderConfig:
    """Everything :func:`create_encoder` checks before it touches weights or torch: the name,
    the precision and, per family, the image size. Returns the config."""
    config = get_encoder_config(name)
    check_precision(precision)
    encoder_family(config).check_image_size(config, image_size or config.image_size)
    return config


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
    path); raises :class:`~embedscope.errors.UnknownModelError` listing the known names,
    :class:`~embedscope.errors.ConfigError` for an image size the family cannot take, and
    :class:`~embedscope.errors.WeightsNotFoundError` saying what to download."""
    config = check_encoder_options(name, image_size=image_size, precision=precision)
    source = resolve_weights(weights, repo_id=config.hf_hub_id, filename=config.weights_file, what=config.name)
    return encoder_family(config).build_encoder(
        config, source, device=device, image_size=image_size or config.image_size, preprocess=preprocess,
        precision=precision, compile=compile, torch_threads=torch_threads)
