"""Image → model input, derived from the encoder config. Pure NumPy/Pillow: runs in workers.

``default``: resize the shorter side to ``size`` (bicubic), centre-crop ``size``×``size``,
scale to [0, 1], normalise with the config's mean/std, CHW float32.
``xray``: first grayscale + CLAHE (clip 2.0, 8×8 tiles), back to 3 channels, as radiology
users expect; then as ``default``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Preprocessor:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    mode: str = "default"

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """The geometric part: shorter side to ``size``, centre crop (RGB in, RGB out)."""
        if self.mode == "xray":
            image = clahe_rgb(image)
        # resize only the centre square (``box``): same result as resize-then-crop, without
        # resampling the pixels the crop would throw away
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) / 2, (h - side) / 2
        box = (left, top, left + side, top + side)
        return image.resize((self.size, self.size), Image.BICUBIC, box=box, reducing_gap=3.0)

    def to_array(self, image: Image.Image) -> np.ndarray:
        """Cropped RGB image → normalised CHW float32."""
        arr = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.to_array(self.resize_crop(image))


def clahe_rgb(image: Image.Image, clip_limit: float = 2.0, tiles: int = 8) -> Image.Image:
    """Grayscale → CLAHE → 3-channel RGB."""
    import cv2

    gray = np.asarray(image.convert("L"))
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    out = clahe.apply(gray)
    return Image.fromarray(out).convert("RGB")
