"""Raw image-quality numbers, measured on the image already in memory at decode.

Only measurements here, no verdicts: whether an image is "too dark" or "blurry" depends on the
dataset it joins (chest films are dark and soft by nature), so the dataset-relative judgement
is made in analysis (:mod:`embedscope.analysis.quality_rules`). All numbers are taken on a copy
whose longest side is at most :data:`SIDE` pixels, so they cost the same for any input size
and a resized copy of an image measures (almost) the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

SIDE = 256  # longest side the measurements are taken at


def measure_quality(image: Image.Image) -> dict[str, float]:
    """``blur`` (variance of the 4-neighbour Laplacian of the grey image; low = blurry or flat),
    ``brightness`` (mean luminance 0..255), ``entropy`` (bits of the 256-bin grey histogram;
    0 = one flat colour) and ``colorfulness`` (mean of |R-G| and |G-B|; 0 = grey)."""
    small = image if max(image.size) <= SIDE else _reduced(image)
    rgb = np.asarray(small.convert("RGB"), dtype=np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    return {
        "blur": laplacian_variance(grey),
        "brightness": float(grey.mean()),
        "entropy": grey_entropy(grey),
        "colorfulness": float((np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])).mean() / 2),
    }


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the discrete Laplacian (interior pixels); 0.0 for images under 3×3."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0.0
    lap = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])
    return float(lap.var())


def grey_entropy(grey: np.ndarray) -> float:
    """Shannon entropy in bits of the grey levels (256 bins)."""
    hist = np.bincount(np.clip(grey, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def quality_or_none(image: Any) -> dict[str, float] | None:
    """:func:`measure_quality`, or None when there is no image to measure (never raises: a
    measurement must not lose an image)."""
    if image is None:
        return None
    try:
        return measure_quality(image)
    except Exception:  # noqa: BLE001 - odd modes or sizes: the image is stored without numbers
        return None


def _reduced(image: Image.Image) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((SIDE, SIDE), Image.BILINEAR, reducing_gap=2.0)
    return copy
