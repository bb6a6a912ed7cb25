"""Masks as plain arrays: which candidate to keep, and what the masked image looks like.

Pure NumPy/Pillow, no model: the SAM2 stage (:mod:`embedscope.ingest.sam2_stage`) produces the
candidate masks and calls these functions, and tests check them on synthetic masks.

The rule (stated in the README): an image whose grayscale standard deviation is below
``uniform_std`` has nothing to segment. Otherwise a candidate *qualifies* when it covers at
least ``min_area`` and at most ``max_area`` of the frame; the qualifying candidate with the
highest predicted score wins (ties: the larger mask, then the earlier candidate). No
qualifying candidate → fallback: the masked variant is the full image, flagged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MASK_MODES = ("mean_fill", "crop")


@dataclass(frozen=True)
class MaskRule:
    """Which SAM2 candidate mask is "the main object"."""

    min_area: float = 0.02  # below: a speck, not the subject
    max_area: float = 0.90  # above: (almost) the whole frame, i.e. the background too
    uniform_std: float = 1.0  # grayscale std (0-255) below which an image is uniform


@dataclass(frozen=True)
class Selection:
    index: int | None  # the chosen candidate, None = fallback
    reason: str  # why: the fallback cause, or how many candidates qualified


def is_uniform(image: np.ndarray, rule: MaskRule = MaskRule()) -> bool:
    """True for an (almost) constant image: a blank scan, a black frame, a flat colour."""
    gray = image.astype(np.float32).mean(axis=2) if image.ndim == 3 else image.astype(np.float32)
    return float(gray.std()) < rule.uniform_std


def select_mask(masks: np.ndarray, scores: np.ndarray, rule: MaskRule = MaskRule()) -> Selection:
    """Pick the main-object mask among candidates ``masks`` (N, H, W) bool with ``scores`` (N,).

    >>> m = np.zeros((2, 10, 10), bool); m[0, :5] = True; m[1] = True
    >>> select_mask(m, np.array([0.5, 0.9])).index   # the full-frame one is refused
    0
    """
    n = len(masks)
    if n == 0:
        return Selection(None, "no mask qualifies: SAM2 returned no candidate")
    areas = masks.reshape(n, -1).mean(axis=1)
    ok = (areas >= rule.min_area) & (areas <= rule.max_area)
    if not ok.any():
        tiny = int((areas < rule.min_area).sum())
        return Selection(
            None,
            f"no mask qualifies: of {n} candidates {tiny} cover < {rule.min_area:.0%} of the frame "
            f"and {n - tiny} > {rule.max_area:.0%}",
        )
    order = sorted(np.flatnonzero(ok), key=lambda i: (-float(scores[i]), -float(areas[i]), int(i)))
    return Selection(int(order[0]), f"best of {int(ok.sum())}/{n} qualifying candidates")


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the mask's True pixels, ``x1``/``y1`` exclusive (a PIL crop
    box); None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def fill_colour(mean: tuple[float, float, float]) -> tuple[int, int, int]:
    """The encoder's normalisation mean as 8-bit RGB: what normalises to zero input."""
    return tuple(int(round(m * 255)) for m in mean)  # type: ignore[return-value]


def apply_mask(image: np.ndarray, mask: np.ndarray, *, mode: str, fill: tuple[int, int, int]) -> np.ndarray:
    """The image the encoder sees for the masked variant, as (H', W', 3) uint8.

    ``mean_fill``: same size, every pixel outside ``mask`` set to ``fill``.
    ``crop``: as ``mean_fill``, then cut to the mask's bounding box and padded with ``fill``
    to a square (the box centred; an odd remainder goes right/bottom) so the encoder's
    centre crop keeps the whole object. An empty mask gives the unmasked image.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mode!r}; use one of {MASK_MODES}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"mask {mask.shape} does not match image {image.shape[:2]}")
    box = mask_bbox(mask)
    if box is None:
        return image.copy()
    out = np.where(mask[..., None], image, np.asarray(fill, dtype=image.dtype)).astype(image.dtype)
    if mode == "mean_fill":
        return out
    x0, y0, x1, y1 = box
    out = out[y0:y1, x0:x1]
    h, w = out.shape[:2]
    side = max(h, w)
    square = np.empty((side, side, 3), dtype=image.dtype)
    square[:] = np.asarray(fill, dtype=image.dtype)
    top, left = (side - h) // 2, (side - w) // 2
    square[top : top + h, left : left + w] = out
    return square


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to ``size`` = (width, height)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.NEAREST)
    return np.asarray(im) > 127


def encode_mask_png(mask: np.ndarray) -> bytes:
    """A bool mask as 1-bit PNG bytes (compact: a blob of a 1000x1000 photo is a few KB)."""
    buf = io.BytesIO()
    Image.fromarray(mask.astype(bool)).convert("1").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def decode_mask_png(data: bytes) -> np.ndarray:
    """The inverse of :func:`encode_mask_png`: (H, W) bool."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("L")) > 127
