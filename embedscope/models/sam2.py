"""SAM2-masked embeddings: segment each image's main object without prompts, embed it alone.

- a registry of SAM 2.1 models (config file in the ``sam2`` package, hub checkpoint)
- :func:`resolve_sam2_weights`: ``hub`` / a local checkpoint / ``random``, like DINOv2's
- :class:`Sam2Segmenter`: SAM2 prompted with a 3×3 grid of points (multimask output, so 27
  candidate masks per image in one decoder call), batched, bf16 on CUDA
- :func:`find_main_masks` / :func:`masked_image`: the main-object mask of each image (chosen
  by :mod:`embedscope.models.masking`) and the image masked with it; the ingest stage that
  embeds it and writes the rows is :mod:`embedscope.ingest.sam2_stage`

Why grid prompts and not ``SAM2AutomaticMaskGenerator``: the generator decodes a 32×32 point
grid (1,024 prompts) and post-processes every mask, many times the cost of the image encoder
on CPU; nine points cost one decoder call and find the main object, which is what we keep.
``benchmarks/bench_sam2.py`` measures both.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from PIL import Image

from embedscope.errors import DependencyError, UnknownModelError, WeightsNotFoundError
from embedscope.models.masking import MaskRule, apply_mask, is_uniform, resize_mask, select_mask
from embedscope.models.weights import RANDOM_SEED, WeightSource, resolve_weights

log = logging.getLogger(__name__)

INSTALL_HINT = "install it with: SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0 (make install does)"
NATIVE_SIZE = 1024  # SAM2's training resolution
SIZE_STEP = 32  # the Hiera backbone's total stride: input sides must be multiples of it
MIN_SIZE = 64


@dataclass(frozen=True)
class Sam2Config:
    name: str
    config_file: str  # hydra config inside the sam2 package
    hf_hub_id: str
    checkpoint_file: str


def _sam21(size: str, short: str, hub: str) -> Sam2Config:
    return Sam2Config(
        name=f"sam2.1_hiera_{size}",
        config_file=f"configs/sam2.1/sam2.1_hiera_{short}.yaml",
        hf_hub_id=f"facebook/sam2.1-hiera-{hub}",
        checkpoint_file=f"sam2.1_hiera_{size}.pt",
    )


SAM2_MODELS: dict[str, Sam2Config] = {
    c.name: c
    for c in (
        _sam21("tiny", "t", "tiny"),
        _sam21("small", "s", "small"),
        _sam21("base_plus", "b+", "base-plus"),
        _sam21("large", "l", "large"),
    )
}
DEFAULT_SAM2_MODEL = "sam2.1_hiera_tiny"


def list_sam2_models() -> list[str]:
    return list(SAM2_MODELS)


def get_sam2_config(name: str) -> Sam2Config:
    """The registered SAM2 model ``name``; :class:`UnknownModelError` lists the known ones."""
    try:
        return SAM2_MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown SAM2 model {name!r}", f"--sam2-model takes one of: {', '.join(SAM2_MODELS)}") from None


def resolve_sam2_weights(model_name: str, spec: str) -> WeightSource:
    """``--sam2-weights`` → :class:`WeightSource` (``hub``: the model's checkpoint from the
    Hugging Face cache or hub, e.g. ``facebook/sam2.1-hiera-tiny`` / ``sam2.1_hiera_tiny.pt``;
    a path to such a ``.pt``; or ``random``). Fails fast and in one line when offline."""
    config = get_sam2_config(model_name)
    try:
        return resolve_weights(spec, repo_id=config.hf_hub_id, filename=config.checkpoint_file, what=config.name)
    except WeightsNotFoundError as exc:  # the shared messages name DINOv2's flag
        raise WeightsNotFoundError(
            exc.message.replace("--weights", "--sam2-weights"), exc.hint.replace("--weights", "--sam2-weights")
        ) from None


def sam2_input_size(max_side: int) -> int:
    """SAM2's square input side for ``--sam2-max-side``: rounded down to a multiple of 32
    (the backbone's stride), at least 64."""
    return max(MIN_SIZE, max_side // SIZE_STEP * SIZE_STEP)


def require_sam2() -> None:
    """Fail before any work when the sam2 package is absent (cheap: nothing is imported)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("sam2") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise DependencyError("the sam2 package is needed for --sam2 but is not installed", INSTALL_HINT)


def import_sam2() -> Any:
    """``sam2.build_sam``, or a :class:`DependencyError` with the install command."""
    try:
        import sam2.build_sam as build_sam  # noqa: F401  (importing sam2 also sets up hydra)
    except ImportError as exc:
        raise DependencyError(f"the sam2 package is needed for --sam2 but cannot be imported ({exc})", INSTALL_HINT) from None
    return build_sam


def grid_points(width: int, height: int, per_side: int = 3) -> np.ndarray:
    """``per_side``² prompt points (x, y) in pixels, evenly inside the frame (for 3: at
    1/4, 1/2, 3/4 of each side — the centre is one of them)."""
    fr = (np.arange(per_side, dtype=np.float32) + 1) / (per_side + 1)
    return np.array([(fx * width, fy * height) for fy in fr for fx in fr], dtype=np.float32)


@dataclass
class Candidates:
    masks: np.ndarray  # (N, H, W) bool at the size of the image given
    scores: np.ndarray  # (N,) float32, SAM2's predicted IoU


class Sam2Segmenter:
    """SAM2 as a prompt-free candidate-mask generator.

    The network is built on first use. ``input_size`` is SAM2's square input side (1024 is
    native; smaller is quadratically cheaper and coarser). Thread-safety: one caller at a time.
    """

    def __init__(self, config: Sam2Config, weights: WeightSource, *, device: str = "auto",
                 input_size: int = NATIVE_SIZE, points_per_side: int = 3) -> None:
        self.config = config
        self.weights = weights
        self.device_name = device
        self.input_size = input_size
        self.points_per_side = points_per_side
        self.precision = "fp32"
        self._predictor: Any = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def predictor(self) -> Any:
        if self._predictor is None:
            self._predictor = self._build()
        return self._predictor

    def _build(self) -> Any:
        from embedscope.models.device import choose_device

        build_sam = import_sam2()
        import torch
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        self.device_name = choose_device(self.device_name)
        self.precision = "bf16" if self.device_name.startswith("cuda") else "fp32"
        t0 = time.monotonic()
        ckpt = None if self.weights.is_random else str(self.weights.path)
        if ckpt is None:
            torch.manual_seed(RANDOM_SEED)
        overrides = [f"++model.image_size={self.input_size}"]
        try:
            model = build_sam.build_sam2(self.config.config_file, ckpt_path=ckpt, device=self.device_name,
                                         hydra_overrides_extra=overrides)
        except (RuntimeError, KeyError, OSError, EOFError, ValueError) as exc:
            if ckpt is None:
                raise
            raise WeightsNotFoundError(
                f"cannot load {self.config.name} from {ckpt}: {type(exc).__name__} {str(exc)[:200]}",
                f"--sam2-weights must be an official SAM 2.1 checkpoint ({self.config.checkpoint_file}) "
                f"matching --sam2-model {self.config.name}",
            ) from None
        predictor = SAM2ImagePredictor(model)
        s = self.input_size  # the predictor assumes 1024 px; its feature sizes follow the input
        predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
        log.info("sam2: %s (%s weights) built in %.1fs on %s/%s, input %d px", self.config.name,
                 self.weights.label, time.monotonic() - t0, self.device_name, self.precision, s)
        if self.device_name == "cpu":
            log.info("sam2: running on CPU — expect seconds per image; --sam2-max-side bounds the cost")
        return predictor

    def candidates(self, images: Sequence[np.ndarray], *, max_batch: int = 8) -> list[Candidates]:
        """Candidate masks for each (H, W, 3) uint8 image, at that image's size; at most
        ``max_batch`` images go through SAM2 at once (its activations are large at 1024 px)."""
        return [c for i in range(0, len(images), max_batch) for c in self._candidates(images[i : i + max_batch])]

    def _candidates(self, images: Sequence[np.ndarray]) -> list[Candidates]:
        import torch

        if not images:
            return []
        predictor = self.predictor
        points = [grid_points(im.shape[1], im.shape[0], self.points_per_side)[:, None, :] for im in images]
        labels = [np.ones((len(p), 1), dtype=np.int64) for p in points]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), autocast:
            predictor.set_image_batch([np.array(im, dtype=np.uint8) for im in images])
            masks, scores, _ = predictor.predict_batch(points, labels, multimask_output=True)
        predictor.reset_predictor()
        out = []
        for m, s in zip(masks, scores):
            h, w = m.shape[-2:]
            out.append(Candidates(m.reshape(-1, h, w) > 0.5, s.reshape(-1).astype(np.float32)))
        return out


@dataclass
class MainMask:
    """The main-object mask of one image, or why there is none (fallback)."""

    mask: np.ndarray | None  # (h, w) bool at the size SAM2 was given (longest side <= its input)
    score: float | None
    reason: str

    @property
    def fallback(self) -> bool:
        return self.mask is None


def find_main_masks(segmenter: Sam2Segmenter, images: Sequence[np.ndarray],
                    rule: MaskRule = MaskRule()) -> list[MainMask]:
    """One :class:`MainMask` per (H, W, 3) uint8 image: uniform images are not segmented;
    the others go to SAM2 as one batch and :func:`select_mask` picks among the candidates."""
    small = [_fit(im, segmenter.input_size) for im in images]
    todo = [i for i, im in enumerate(small) if not is_uniform(im, rule)]
    found = dict(zip(todo, segmenter.candidates([small[i] for i in todo])))
    out = []
    for i in range(len(images)):
        cand = found.get(i)
        if cand is None:
            out.append(MainMask(None, None, "uniform image: nothing to segment"))
            continue
        choice = select_mask(cand.masks, cand.scores, rule)
        if choice.index is None:
            out.append(MainMask(None, None, choice.reason))
        else:
            out.append(MainMask(cand.masks[choice.index], float(cand.scores[choice.index]), choice.reason))
    return out


def masked_image(image: np.ndarray, main: MainMask, *, mode: str, fill: tuple[int, int, int]) -> np.ndarray:
    """The image the encoder gets for the masked variant (``image`` itself on fallback)."""
    if main.mask is None:
        return image
    return apply_mask(image, resize_mask(main.mask, (image.shape[1], image.shape[0])), mode=mode, fill=fill)


def _fit(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` shrunk so its longest side is at most ``side`` (SAM2 resizes to side×side
    anyway; this keeps its masks, and our work on them, small)."""
    h, w = image.shape[:2]
    if max(h, w) <= side:
        return image
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=3.0))
