"""DINOv2 through timm: build the architecture, load the resolved weights, embed batches.

Output per image: the L2-normalised CLS token (the final-norm output, as timm's
``forward_head(pre_logits=True)`` gives it) and, optionally, the L2-normalised mean of the
patch tokens.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from embedscope.models.preprocess import Preprocessor
from embedscope.models.registry import EncoderConfig
from embedscope.models.weights import RANDOM_SEED, WeightSource

log = logging.getLogger(__name__)


@dataclass
class Embeddings:
    cls: np.ndarray  # (B, dim) float32, unit norm
    patch_mean: np.ndarray | None  # (B, dim) float32, unit norm


def build_timm_model(config: EncoderConfig, weights: WeightSource, image_size: int) -> Any:
    """The timm model in eval mode on CPU, with the weights of ``weights`` loaded."""
    import timm
    import torch

    kwargs: dict[str, Any] = {"num_classes": 0, "img_size": image_size}
    if weights.is_random:
        torch.manual_seed(RANDOM_SEED)
        model = timm.create_model(config.timm_name, pretrained=False, **kwargs)
    else:
        model = timm.create_model(
            config.timm_name,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(weights.path)},
            **kwargs,
        )
    return model.eval()


class DinoV2Encoder:
    """A DINOv2 model plus the preprocessing its config implies.

    The network is built on first use, so a run that finds nothing new never pays for it.
    ``precision`` is ``fp32`` or ``bf16`` (autocast). Thread-safety: one caller at a time.
    """

    def __init__(
        self,
        config: EncoderConfig,
        weights: WeightSource,
        *,
        device: str = "auto",
        image_size: int | None = None,
        preprocess_mode: str = "default",
        precision: str = "auto",
    ) -> None:
        self.config = config
        self.weights = weights
        self.image_size = image_size or config.image_size
        self.device_name = device
        self.precision = precision
        self.preprocessor = Preprocessor(self.image_size, config.mean, config.std, preprocess_mode)
        self._model: Any = None

    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.device_name)

    @property
    def model(self) -> Any:
        if self._model is None:
            self.device_name = choose_device(self.device_name)
            if self.precision == "auto":
                self.precision = choose_precision(self.device_name)
            self._model = build_timm_model(self.config, self.weights, self.image_size).to(self.device)
        return self._model

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dim(self) -> int:
        return self.config.dim

    def tokens(self, batch: Any) -> Any:
        """All output tokens (B, prefix + patches, dim) of a preprocessed batch, as a tensor."""
        import torch

        model, device = self.model, self.device
        x = torch.as_tensor(batch)
        if x.device != device:
            x = x.to(device, non_blocking=True)
        with torch.inference_mode():
            if self.precision == "bf16":
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    out = model.forward_features(x)
            else:
                out = model.forward_features(x)
        return out.float()

    def embed(self, batch: Any, *, patch_mean: bool = False) -> Embeddings:
        """Embed a preprocessed batch (B, 3, S, S) float32 array or tensor."""
        import torch.nn.functional as F

        tokens = self.tokens(batch)
        cls = F.normalize(tokens[:, 0], dim=-1)
        mean = None
        if patch_mean:
            mean = F.normalize(tokens[:, self.config.num_prefix_tokens :].mean(dim=1), dim=-1)
            mean = mean.cpu().numpy()
        return Embeddings(cls.cpu().numpy().astype(np.float32), mean)


def choose_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        from embedscope.errors import ConfigError

        raise ConfigError("--device cuda was asked for but no CUDA device is available", "use --device cpu or auto")
    return requested


def choose_precision(device: str) -> str:
    """bf16 autocast on CUDA, and on CPUs with native bf16 (AVX512-BF16 / AMX); else fp32."""
    if device.startswith("cuda"):
        return "bf16"
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "fp32"
    return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "fp32"
