"""The registry of encoders: every model name the tools accept, and the family that builds it.

Each :class:`EncoderConfig` carries what preprocessing and weight loading derive from: the
family, the family's own architecture id, where the pretrained weights live, the embedding
size, the input size and the normalisation. :data:`FAMILY_MODULES` names the module that
builds each family's encoders; :func:`embedscope.models.factory.create_encoder` imports it
only when an encoder of that family is built, so reading the registry never imports torch.

Adding a family (see docs/adding-an-encoder.md): a module ``embedscope/models/<family>.py``,
one line in :data:`FAMILY_MODULES`, and its configs in :data:`ENCODERS`.
Unknown names raise :class:`~embedscope.errors.UnknownModelError` listing what exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from embedscope.errors import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# family → the module providing ``check_image_size`` and ``build_encoder``
# (the :class:`~embedscope.models.encoder.EncoderFamily` interface)
FAMILY_MODULES: dict[str, str] = {
    "dinov2": "embedscope.models.dinov2",
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str  # the registry name, stored with every row and in table names
    family: str  # a key of FAMILY_MODULES
    arch: str  # the family's architecture id (DINOv2: the timm name with its pretrained tag)
    dim: int
    hf_hub_id: str  # where ``--weights hub`` finds the weights ...
    weights_file: str = "model.safetensors"  # ... and which file of that repository
    image_size: int = 224  # the default input side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_size: int = 0  # ViTs: the side of one patch token in pixels (0: no patch tokens)
    num_prefix_tokens: int = 1  # ViTs: tokens before the patch tokens (CLS + register tokens)


def _dinov2(size: str, arch: str, dim: int, registers: bool) -> EncoderConfig:
    timm_name = f"vit_{arch}_patch14{'_reg4' if registers else ''}_dinov2.lvd142m"
    return EncoderConfig(
        name=f"dinov2_vit{size}14{'_reg' if registers else ''}",
        family="dinov2",
        arch=timm_name,
        dim=dim,
        hf_hub_id=f"timm/{timm_name}",
        patch_size=14,
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


def family_module_name(family: str) -> str:
    """The module that builds ``family``'s encoders (a registry entry naming an unknown family
    is a programming error, not a user's)."""
    try:
        return FAMILY_MODULES[family]
    except KeyError:
        raise KeyError(f"encoder family {family!r} has no module in FAMILY_MODULES") from None
