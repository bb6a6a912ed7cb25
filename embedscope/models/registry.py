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
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# family → the module providing ``check_image_size`` and ``build_encoder``
# (the :class:`~embedscope.models.encoder.EncoderFamily` interface)
FAMILY_MODULES: dict[str, str] = {
    "dinov2": "embedscope.models.dinov2",
    "openclip": "embedscope.models.openclip",
}


@dataclass(frozen=True)
class EncoderConfig:
    name: str  # the registry name, stored with every row and in table names
    family: str  # a key of FAMILY_MODULES
    arch: str  # the family's architecture id (DINOv2: the timm name with its pretrained tag; open_clip: the model name)
    dim: int
    hf_hub_id: str  # where ``--weights hub`` finds the weights ...
    weights_file: str = "model.safetensors"  # ... and which file of that repository
    image_size: int = 224  # the default input side in pixels
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_size: int = 0  # ViTs: the side of one patch token in pixels (0: no patch tokens)
    num_prefix_tokens: int = 1  # ViTs: tokens before the patch tokens (CLS + register tokens)
    pretrained_tag: str = ""  # open_clip: the checkpoint's pretrained tag (arch + tag name the weights)
    interpolation: str = "bicubic"  # the resize filter of the checkpoint's preprocessing


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


def _openclip(name: str, arch: str, tag: str, dim: int, hf_hub_id: str, *, image_size: int = 224,
              mean: tuple[float, float, float] = OPENAI_CLIP_MEAN, std: tuple[float, float, float] = OPENAI_CLIP_STD,
              interpolation: str = "bicubic") -> EncoderConfig:
    """An open_clip checkpoint. The values are open_clip's own (``get_pretrained_cfg(arch, tag)``
    and ``get_model_config(arch)``), written out so that reading the registry never imports torch;
    tests/test_openclip.py checks them against open_clip. ``open_clip_model.safetensors`` is the
    file open_clip itself loads first from a repository given without a file name."""
    return EncoderConfig(
        name=name, family="openclip", arch=arch, pretrained_tag=tag, dim=dim, hf_hub_id=hf_hub_id,
        weights_file="open_clip_model.safetensors", image_size=image_size, mean=mean, std=std,
        interpolation=interpolation,
    )


OPENCLIP_ENCODERS = (
    _openclip("openclip_vitb32", "ViT-B-32", "laion2b_s34b_b79k", 512, "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
    _openclip("openclip_vitb16", "ViT-B-16", "laion2b_s34b_b88k", 512, "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"),
    _openclip("openclip_vitl14", "ViT-L-14", "laion2b_s32b_b82k", 768, "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
              mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    _openclip("openclip_mobileclip2_s0", "MobileCLIP2-S0", "dfndr2b", 512, "timm/MobileCLIP2-S0-OpenCLIP",
              image_size=256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear"),
)
ENCODERS.update((cfg.name, cfg) for cfg in OPENCLIP_ENCODERS)


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
