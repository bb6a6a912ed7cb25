"""Where and how an encoder runs: the device, the precision and the batch size.

Shared by every family (and by SAM2 and the ingest's batched JPEG decode), so none of them
owns it. Torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from embedscope.config import PRECISIONS
from embedscope.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["CPU_BATCH", "PRECISIONS", "check_precision", "choose_device", "choose_precision",
           "choose_precision_measured", "cpu_has_bf16", "cuda_batch_from_free_memory", "LazyNetwork",
           "stack_batch", "to_device"]

CPU_BATCH = 32  # measured: larger batches gain little on CPU


def check_precision(precision: str) -> None:
    """Raise a :class:`ConfigError` naming the choices unless ``precision`` is one of them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")


def choose_device(requested: str) -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cuda`` without CUDA is a ConfigError."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA device is available", "use --device cpu or auto")
    return requested


def stack_batch(arrays: Sequence[Any], device: Any) -> Any:
    """Preprocessed CHW arrays → one (B, 3, S, S) float32 tensor, in pinned memory when
    ``device`` is CUDA (so the copy to the GPU overlaps the host's work). Rows that are
    already tensors (decoded on the GPU) are stacked on their device."""
    import numpy as np
    import torch

    if any(isinstance(a, torch.Tensor) for a in arrays):  # --decode gpu: rows already decoded on a device
        dev = next(a.device for a in arrays if isinstance(a, torch.Tensor))
        return torch.stack([torch.as_tensor(a).to(dev, non_blocking=True) for a in arrays])
    first = arrays[0]
    out = torch.empty((len(arrays), *first.shape), dtype=torch.float32, pin_memory=device.type == "cuda")
    np.stack(arrays, out=out.numpy())
    return out


def to_device(batch: Any, device: Any) -> Any:
    """A batch (array or tensor) as a tensor on ``device``; host → CUDA copies go through
    pinned memory, without blocking."""
    import torch

    x = torch.as_tensor(batch)
    if x.device != device:
        if device.type == "cuda" and not x.is_pinned():
            x = x.pin_memory()
        x = x.to(device, non_blocking=True)
    return x


def cuda_batch_from_free_memory(forward: Callable[[Any], Any], device: Any, image_size: int, *,
                                probe: int = 8, budget: float = 0.6) -> int:
    """Run ``forward`` on one probe batch of ``(probe, 3, image_size, image_size)`` zeros, read
    the peak memory it needed per image, size the batch to fit ``budget`` of the free memory
    (power of two, 8..1024)."""
    import torch

    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    forward(torch.zeros((probe, 3, image_size, image_size)))
    torch.cuda.synchronize(device)
    per_image = max(1, (torch.cuda.max_memory_allocated(device) - base) / probe)
    free, _total = torch.cuda.mem_get_info(device)
    fits = int(free * budget / per_image)
    size = 8
    while size * 2 <= min(fits, 1024):
        size *= 2
    log.info("CUDA batch size %d (%.1f MiB/image, %.0f MiB free)", size, per_image / 2**20, free / 2**20)
    return size


def cpu_has_bf16() -> bool:
    """Whether the CPU advertises native bf16 instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def choose_precision(device: str) -> str:
    """The precision to try: bf16 on CUDA and on CPUs with native bf16; else fp32."""
    if device.startswith("cuda"):
        return "bf16"
    return "bf16" if cpu_has_bf16() else "fp32"


def choose_precision_measured(model: Any, device: str, image_size: int, *, batch: int = 8,
                              rounds: int = 3, margin: float = 1.1) -> tuple[str, dict[str, float]]:
    """``choose_precision``, but on CPU keep bf16 only if a short timing shows it at least
    ``margin`` times faster than fp32 (bf16 instructions are not always fast ones).

    The timing runs the first transformer block (every block of a ViT costs the same)
    on a real-sized batch of tokens: the shapes of a real batch at a few percent of the cost, so
    ``rounds`` interleaved repeats (best of each) fit in a second or two and shrug off a
    noisy neighbour. Returns the choice and the timings in img/s of that block (empty
    when nothing was measured).
    """
    import copy

    import torch

    first = choose_precision(device)
    blocks = getattr(model, "blocks", None)
    if device.startswith("cuda") or first == "fp32" or blocks is None:
        return first, {}
    tokens = (image_size // model.patch_embed.patch_size[0]) ** 2 + model.num_prefix_tokens
    part = blocks[0]
    part_bf16 = copy.deepcopy(part).to(torch.bfloat16)
    x = torch.randn(batch, tokens, model.embed_dim)
    x_bf16 = x.to(torch.bfloat16)

    def run_fp32() -> None:
        part(x)

    def run_bf16() -> None:
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            part_bf16(x_bf16)

    best = {"fp32": float("inf"), "bf16": float("inf")}
    with torch.inference_mode():
        run_fp32(), run_bf16()  # warm-up (allocations, oneDNN kernels)
        for _ in range(rounds):
            for name, fn in (("fp32", run_fp32), ("bf16", run_bf16)):
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    timings = {"fp32_img_s": batch / best["fp32"], "bf16_img_s": batch / best["bf16"]}
    choice = "bf16" if best["fp32"] >= margin * best["bf16"] else "fp32"
    return choice, timings


class LazyNetwork:
    """What every family's encoder shares about its network: built on first use (``load()``
    builds it now, ``model`` returns it), on ``device_name`` (``auto`` until then), with
    ``torch_threads`` intra-op threads. A subclass sets ``config``, ``image_size``,
    ``device_name``, ``torch_threads`` and ``_model = None`` in ``__init__`` and implements
    ``_build`` (which starts with :meth:`_start_build`), ``_probe`` (one image forward, for the
    CUDA batch size) and ``embed``."""

    config: Any
    image_size: int
    device_name: str
    torch_threads: int
    _model: Any

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def dim(self) -> int:
        return self.config.dim

    def choose_batch_size(self, requested: int) -> int:
        """``requested`` if given (> 0); else :data:`CPU_BATCH` on CPU (measured: larger batches
        gain little there) or, on CUDA, what fits in 60% of the free memory."""
        if requested > 0:
            return requested
        self.load()
        if self.device.type != "cuda":
            return CPU_BATCH
        return cuda_batch_from_free_memory(self._probe, self.device, self.image_size)

    def _probe(self, batch: Any) -> Any:
        raise NotImplementedError

    def run(self, forward: Any, x: Any) -> Any:
        """``forward(x)`` on the model's device, in its precision, as float32. ``x`` is a float
        batch (images) or token ids (texts, which stay integers)."""
        import torch

        self.load()
        device = self.device
        self._keep_threads()
        x = to_device(x, device)
        with torch.inference_mode():
            if self.precision == "bf16":
                if x.is_floating_point():
                    x = x.to(torch.bfloat16)
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    return forward(x).float()
            return forward(x).float()

    @property
    def device(self) -> Any:
        import torch

        return torch.device(self.device_name)

    @property
    def model(self) -> Any:
        """The network as used for inference (bf16 weights when the precision is bf16)."""
        self.load()
        return self._model

    def load(self) -> None:
        """Build the network now, if it is not built yet."""
        if self._model is None:
            self._build()

    def _build(self) -> None:
        raise NotImplementedError

    def _start_build(self) -> None:
        """Resolve the device and set the thread count: the first step of every ``_build``."""
        import torch

        self.device_name = choose_device(self.device_name)
        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)

    def _keep_threads(self) -> None:
        """Re-apply ``torch_threads`` in the calling thread (OpenMP's setting is per thread)."""
        import torch

        if self.torch_threads > 0 and torch.get_num_threads() != self.torch_threads:
            torch.set_num_threads(self.torch_threads)

    def stack(self, arrays: Sequence[Any]) -> Any:
        """Preprocessed CHW arrays → one (B, 3, S, S) float32 tensor (see :func:`stack_batch`)."""
        self.load()  # resolve the device
        return stack_batch(arrays, self.device)

    def embed_images(self, batch: Any) -> Any:
        """``(B, dim)`` float32 unit-norm vectors for preprocessed images (CHW arrays or a
        stacked array/tensor)."""
        if isinstance(batch, (list, tuple)):
            batch = self.stack(batch)
        return self.embed(batch).cls  # type: ignore[attr-defined]
