"""The ``openclip`` encoder family: CLIP models through the open_clip package — images and
text in one space, for text search and zero-shot tags.

The family interface (:class:`~embedscope.models.encoder.EncoderFamily`): :func:`check_image_size`
(a CLIP checkpoint takes the one input size it was trained at) and :func:`build_encoder`.

Output per image: ``model.encode_image`` L2-normalised; per text: ``model.encode_text`` of
open_clip's own tokenizer (its BPE vocabulary ships with the package, no download; 77 tokens,
longer texts are cut), L2-normalised. No patch tokens: ``embed(patch_mean=True)`` is refused.

Preprocessing is open_clip's ``preprocess_val`` (resize the shorter side with the checkpoint's
filter, centre crop, normalise with its mean/std), reproduced in NumPy/Pillow by
:class:`OpenClipPreprocessor` so that it runs in decode workers.

Precision as for DINOv2 (``bf16``: bf16 weights under autocast; ``auto`` on CPU times one
transformer block of a ViT, see :func:`~embedscope.models.device.choose_precision_measured`).
``compile`` is not supported for this family: it logs one line and runs eagerly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Sequence

import numpy as np
from PIL import Image

from embedscope.errors import ConfigError
from embedscope.models.device import (
    LazyNetwork,
    check_precision,
    choose_precision_measured,
)
from embedscope.models.encoder import Embeddings
from embedscope.models.preprocess import Preprocessor, clahe_rgb
from embedscope.models.registry import EncoderConfig
from embedscope.models.weights import RANDOM_SEED, WeightSource

log = logging.getLogger(__name__)

TEXT_BATCH = 256  # texts per forward of the text tower

_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


@dataclass(frozen=True)
class OpenClipPreprocessor(Preprocessor):
    """open_clip's ``preprocess_val`` in Pillow/NumPy: torchvision's ``Resize(size)`` (shorter
    side to ``size``, the longer one truncated to an int, one Pillow resize with the
    checkpoint's filter) then ``CenterCrop(size)``, then the normalisation of
    :class:`Preprocessor`. (The DINOv2 preprocessor resamples only the centre square, which
    differs from this by a fraction of a grey level: enough to keep CLIP's exactly.)"""

    interpolation: str = "bicubic"

    def resize_crop(self, image: Image.Image) -> Image.Image:
        if self.mode == "xray":
            image = clahe_rgb(image)
        w, h = image.size
        if w <= h:
            new_w, new_h = self.size, int(self.size * h / w)
        else:
            new_w, new_h = int(self.size * w / h), self.size
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), _FILTERS[self.interpolation])
        left, top = int(round((new_w - self.size) / 2.0)), int(round((new_h - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size)).convert("RGB")


def random_init_fix(model: Any) -> int:
    """Set every LayerScale to 1.0; returns how many there were.

    timm's FastViT (the image tower of MobileCLIP) initialises LayerScale at 1e-5, so a randomly
    initialised network ignores its input: every image gets the same vector (cosine distances
    ~1e-6). At 1.0 the random network's output depends on the image, so tests and smoke runs
    exercise real neighbours. (open_clip's ViTs have no LayerScale and need nothing.) Still
    random: never meaningful."""
    import torch

    fixed = 0
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__.startswith("LayerScale"):
                module.gamma.fill_(1.0)
                fixed += 1
    return fixed


def build_openclip_model(config: EncoderConfig, weights: WeightSource) -> Any:
    """The open_clip model (both towers) in eval mode on CPU, with the weights of ``weights``."""
    import open_clip
    import torch

    if weights.is_random:
        torch.manual_seed(RANDOM_SEED)
        root = logging.getLogger()
        root.addFilter(_drop_random_init_notice)  # the ingest has announced random weights already
        try:
            model = open_clip.create_model(config.arch, pretrained=None, pretrained_text=False)
        finally:
            root.removeFilter(_drop_random_init_notice)
        random_init_fix(model)
    else:
        model = open_clip.create_model(config.arch, pretrained=str(weights.path), pretrained_text=False,
                                       require_pretrained=True)
    return model.eval()


def fuse_for_inference(model: Any) -> Any:
    """timm's re-parameterisation: MobileCLIP's multi-branch FastViT blocks fused into single
    convolutions (measured 2.3x faster on CPU, same vectors to cosine 0.9999999); a no-op for
    open_clip's ViTs. The weights of a checkpoint are those of the unfused network."""
    from timm.utils.model import reparameterize_model

    return reparameterize_model(model, inplace=True)


def _drop_random_init_notice(record: logging.LogRecord) -> bool:
    """open_clip's root-logger warning that a model without weights is random."""
    return "initialized randomly" not in record.getMessage()


def _vit_block_view(visual: Any) -> Any:
    """open_clip's ViT image tower in the shape ``choose_precision_measured`` times (timm's
    ``blocks``/``patch_embed``/``num_prefix_tokens``/``embed_dim``); None for other towers."""
    transformer = getattr(visual, "transformer", None)
    if transformer is None or not hasattr(visual, "patch_size"):
        return None
    return SimpleNamespace(blocks=transformer.resblocks, patch_embed=SimpleNamespace(patch_size=visual.patch_size),
                           num_prefix_tokens=1, embed_dim=transformer.width)


class OpenClipEncoder(LazyNetwork):
    """An open_clip CLIP model: image vectors (an :class:`~embedscope.models.encoder.Encoder`)
    and, through :attr:`text`, text vectors in the same space. Built on first use; one
    caller at a time. Build it with ``create_encoder``."""

    family = "openclip"

    def __init__(self, config: EncoderConfig, weights: WeightSource, *, device: str = "auto",
                 image_size: int | None = None, preprocess_mode: str = "default", precision: str = "auto",
                 compile: bool = False, torch_threads: int = 0) -> None:
        check_precision(precision)
        check_image_size(config, image_size or config.image_size)
        self.config = config
        self.weights = weights
        self.image_size = config.image_size
        self.device_name = device
        self.precision = precision
        self.compile = compile
        self.torch_threads = torch_threads
        self.calibration: dict[str, float] = {}
        self.preprocessor = OpenClipPreprocessor(self.image_size, config.mean, config.std, preprocess_mode,
                                                 interpolation=config.interpolation)
        self._model: Any = None
        self._text: OpenClipTextEncoder | None = None

    def _build(self) -> None:
        import torch

        self._start_build()
        if self.compile:
            log.warning("--compile is not supported for the openclip family; %s runs eagerly", self.name)
        model = build_openclip_model(self.config, self.weights).requires_grad_(False)
        model = fuse_for_inference(model).to(self.device)
        if self.precision == "auto":
            view = _vit_block_view(model.visual)
            self.precision, self.calibration = choose_precision_measured(view, self.device_name, self.image_size)
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        self._model = model

    def embed(self, batch: Any, *, patch_mean: bool = False) -> Embeddings:
        """Embed a preprocessed batch (B, 3, S, S) float32 array or tensor."""
        import torch.nn.functional as F

        if patch_mean:
            raise ConfigError(f"{self.name} has no patch tokens to average",
                              "--store-patch-mean needs a DINOv2 model")
        vectors = F.normalize(self.run(self.model.encode_image, batch), dim=-1)
        return Embeddings(vectors.cpu().numpy().astype(np.float32), None)

    def _probe(self, batch: Any) -> Any:
        return self.run(self._model.encode_image, batch)

    @property
    def text(self) -> OpenClipTextEncoder:
        """The text tower (shares this encoder's network, device and precision)."""
        if self._text is None:
            self._text = OpenClipTextEncoder(self)
        return self._text


class OpenClipTextEncoder:
    """Texts → unit-norm vectors in the image vectors' space (a
    :class:`~embedscope.models.encoder.TextEncoder`). Tokenizer: ``open_clip.get_tokenizer(arch)``,
    ``context_length`` tokens per text (longer texts are cut)."""

    def __init__(self, encoder: OpenClipEncoder) -> None:
        self.encoder = encoder
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            import open_clip

            self._tokenizer = open_clip.get_tokenizer(self.encoder.config.arch)
        return self._tokenizer

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.context_length)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit norm."""
        import torch.nn.functional as F

        texts = list(texts)
        out = np.empty((len(texts), self.encoder.dim), np.float32)
        for start in range(0, len(texts), TEXT_BATCH):
            tokens = self.tokenizer(texts[start:start + TEXT_BATCH])
            vectors = F.normalize(self.encoder.run(self.encoder.model.encode_text, tokens), dim=-1)
            out[start:start + len(vectors)] = vectors.cpu().numpy()
        return out


def check_image_size(config: EncoderConfig, image_size: int) -> None:
    """A CLIP checkpoint takes the input size it was trained at (its position embeddings are
    fixed): only ``config.image_size``."""
    if image_size != config.image_size:
        raise ConfigError(
            f"--image-size {image_size}: {config.name} takes {config.image_size}x{config.image_size} images only",
            f"use --image-size {config.image_size}",
        )


def build_encoder(config: EncoderConfig, weights: WeightSource, *, device: str = "auto", image_size: int | None = None,
                  preprocess: str = "default", precision: str = "auto", compile: bool = False,
                  torch_threads: int = 0) -> OpenClipEncoder:
    """The family's builder, called by :func:`embedscope.models.factory.create_encoder`."""
    return OpenClipEncoder(config, weights, device=device, image_size=image_size, preprocess_mode=preprocess,
                           precision=precision, compile=compile, torch_threads=torch_threads)
