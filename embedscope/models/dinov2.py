"""The ``dinov2`` encoder family: DINOv2 through timm — build the architecture, load the
resolved weights, embed batches.

The family interface (:class:`~embedscope.models.encoder.EncoderFamily`): :func:`check_image_size`
(input sides must be multiples of the 14-pixel patch) and :func:`build_encoder`.

Output per image: the L2-normalised CLS token (the final-norm output, as timm's
``forward_head(pre_logits=True)`` gives it) and, optionally, the L2-normalised mean of the
patch tokens.

Speed (see docs/benchmarks.md): ``bf16`` keeps the weights in bfloat16 *and* runs under
autocast (so layer norms and softmax stay in fp32); on CPU this measured ~2x faster than
plain autocast over fp32 weights, which re-casts every weight on every call. With
``precision="auto"`` a CPU gets bf16 only if it advertises bf16 instructions *and* a short
timing at start-up shows bf16 faster; CUDA always gets bf16. Batches go to CUDA from pinned
memory with non-blocking copies; ``compile=True`` wraps the network in ``torch.compile``
(static shapes: a short batch is padded to a compiled size; a compilation that fails logs one
warning and the encoder runs eagerly). Rows already on the device (``--decode gpu``) are
stacked there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from embedscope.errors import ConfigError
from embedscope.models.device import (
    LazyNetwork,
    check_precision,
    choose_precision_measured,
)
from embedscope.models.encoder import Embeddings
from embedscope.models.preprocess import Preprocessor
from embedscope.models.registry import EncoderConfig
from embedscope.models.weights import RANDOM_SEED, WeightSource

log = logging.getLogger(__name__)


# timm initialises DINOv2's LayerScale at 1e-5, which makes a randomly initialised network
# ignore its input: every image would get the same vector (cosine distances ~1e-8). With
# LayerScale at 1.0 the random network's output depends on the image, so smoke runs, tests and
# benchmarks exercise real neighbours, clusters and flags. Still random: never meaningful.
RANDOM_INIT = {"init_values": 1.0}


def build_timm_model(config: EncoderConfig, weights: WeightSource, image_size: int) -> Any:
    """The timm model in eval mode on CPU, with the weights of ``weights`` loaded."""
    import timm
    import torch

    kwargs: dict[str, Any] = {"num_classes": 0, "img_size": image_size}
    if weights.is_random:
        torch.manual_seed(RANDOM_SEED)
        model = timm.create_model(config.arch, pretrained=False, **kwargs, **RANDOM_INIT)
    else:
        model = timm.create_model(
            config.arch,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(weights.path)},
            **kwargs,
        )
    return model.eval()


class DinoV2Encoder(LazyNetwork):
    """A DINOv2 model plus the preprocessing its config implies.

    The network is built on first use, so a run that finds nothing new never pays for it.
    ``precision`` is ``auto``, ``fp32`` or ``bf16`` (bf16 weights + autocast); after the
    build it holds what was chosen, and ``calibration`` the start-up timings behind an
    ``auto`` choice on CPU. Thread-safety: one caller at a time. An
    :class:`~embedscope.models.encoder.Encoder`; build it with ``create_encoder``.
    """

    family = "dinov2"
    text = None  # image-only family

    def __init__(
        self,
        config: EncoderConfig,
        weights: WeightSource,
        *,
        device: str = "auto",
        image_size: int | None = None,
        preprocess_mode: str = "default",
        precision: str = "auto",
        compile: bool = False,
        torch_threads: int = 0,
    ) -> None:
        check_precision(precision)
        check_image_size(config, image_size or config.image_size)
        self.config = config
        self.weights = weights
        self.image_size = image_size or config.image_size
        self.device_name = device
        self.precision = precision
        self.compile = compile
        self.torch_threads = torch_threads
        self.calibration: dict[str, float] = {}
        self.preprocessor = Preprocessor(self.image_size, config.mean, config.std, preprocess_mode)
        self._model: Any = None
        self._forward: Any = None
        self._compiled_batches: set[int] = set()  # batch sizes with a compiled graph
        self.compile_seconds: float | None = None  # the first compiled call (tracing + codegen)
        self.compile_error: str | None = None  # why --compile fell back to eager, if it did

    def _build(self) -> None:
        import torch

        self._start_build()
        model = build_timm_model(self.config, self.weights, self.image_size).requires_grad_(False)
        model = model.to(self.device)
        if self.precision == "auto":
            self.precision, self.calibration = choose_precision_measured(
                model, self.device_name, self.image_size)
            if self.calibration:
                log.info("precision auto (one block timed): fp32 %.1f img/s, bf16 %.1f img/s -> %s",
                         self.calibration["fp32_img_s"], self.calibration["bf16_img_s"], self.precision)
        if self.precision == "bf16":
            model = model.to(torch.bfloat16)
        self._model = model
        self._forward = model.forward_features
        if self.compile:
            try:
                self._forward = torch.compile(model.forward_features, dynamic=False)
            except Exception as exc:  # e.g. an unsupported platform: the flag is an optimisation
                self._compile_failed(exc)

    def tokens(self, batch: Any) -> Any:
        """All output tokens (B, prefix + patches, dim) of a preprocessed batch, as a float32
        tensor on the model's device."""
        return self.run(self._call_forward, batch)

    def _call_forward(self, x: Any) -> Any:
        """The forward pass; with ``compile``, smaller batches are padded to the compiled batch
        size (a static graph per shape: a short last batch would otherwise compile again),
        and a compilation that fails falls back to eager with one logged line."""
        if not self.compile or self.compile_error is not None:
            return self._forward(x)
        import torch

        n = x.shape[0]
        if n in self._compiled_batches:
            return self._forward(x)
        larger = [b for b in self._compiled_batches if b > n]
        if larger:
            pad = x.new_zeros((min(larger) - n, *x.shape[1:]))
            return self._forward(torch.cat([x, pad]))[:n]
        t0 = time.perf_counter()
        try:
            out = self._forward(x)
        except Exception as exc:  # inductor needs a C++ compiler (and Triton on CUDA)
            self._compile_failed(exc)
            return self._forward(x)
        seconds = time.perf_counter() - t0
        self.compile_seconds = (self.compile_seconds or 0.0) + seconds
        self._compiled_batches.add(n)
        log.info("torch.compile: compiling for batch %d took %.1f s", n, seconds)
        return out

    def _compile_failed(self, exc: BaseException) -> None:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        self.compile_error = f"{type(exc).__name__}: {first}"
        log.warning("torch.compile failed (%s); running the encoder eagerly", self.compile_error)
        self._forward = self._model.forward_features

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

    def _probe(self, batch: Any) -> Any:
        return self.tokens(batch)


def check_image_size(config: EncoderConfig, image_size: int) -> None:
    """DINOv2 cuts the image into 14×14-pixel patches: the side must be a multiple of 14."""
    if image_size % config.patch_size:
        raise ConfigError(
            f"--image-size {image_size} is not a multiple of {config.patch_size} (the DINOv2 patch size)",
            "use e.g. 224, 336 or 518",
        )


def build_encoder(config: EncoderConfig, weights: WeightSource, *, device: str = "auto", image_size: int | None = None,
                  preprocess: str = "default", precision: str = "auto", compile: bool = False,
                  torch_threads: int = 0) -> DinoV2Encoder:
    """The family's builder, called by :func:`embedscope.models.factory.create_encoder`."""
    return DinoV2Encoder(config, weights, device=device, image_size=image_size, preprocess_mode=preprocess,
                         precision=precision, compile=compile, torch_threads=torch_threads)
