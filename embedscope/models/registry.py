"""One registry of encoders, one factory.

Each :class:`EncoderConfig` carries what preprocessing and weight loading derive from:
the timm architecture, where its pretrained weights live, the embedding size, the patch
size and the normalisation. Unknown names raise a clear error listing what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedscope.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    timm_name: str  # architecture + pretrained tag, e.g. vit_small_patch14_dinov2.lvd142m
    dim: int
    patch_size: int = 14
    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    num_prefix_tokens: int = 1  # CLS (+ register tokens)
    weights_file: str = "model.safetensors"

    @property
    def hf_hub_id(self) -> str:
        return f"timm/{self.timm_name}"

    @property
    def architecture(self) -> str:
        return self.timm_name.split(".")[0]


def _dinov2(size: str, arch: str, dim: int, registers: bool) -> EncoderConfig:
    suffix = "_reg" if registers else ""
    reg = "_reg4" if registers else ""
    return EncoderConfig(
        name=f"dinov2_vit{size}14{suffix}",
        timm_name=f"vit_{arch}_patch14{reg}_dinov2.lvd142m",
        dim=dim,
        num_prefix_tokens=5 if registers else 1,
    )


ENCODERS: dict[str, EncoderConfig] = {
    cfg.name: cfg
    for cfg in (
        _dinov2(size, arch, dim, registers)
        for registers in (False, True)
        for size, arch, dim in (
            ("s", "small", 384),
            ("b", "base", 768),
            ("l", "large", 1024),
            ("g", "giant", 1536),
        )
    )
}


def list_encoders() -> list[str]:
    return sorted(ENCODERS)


def get_encoder_config(name: str) -> EncoderConfig:
    """The config registered as ``name``; :class:`UnknownModelError` lists the known names."""
    try:
        return ENCODERS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}", f"choose one of: {', '.join(list_encoders())}"
        ) from None
