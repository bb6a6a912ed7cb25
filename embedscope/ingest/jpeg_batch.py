"""Batched JPEG decoding on a torch device: ``--decode gpu`` (nvJPEG through
``torchvision.io.decode_jpeg(list, device="cuda")``).

The split of work:

- a CPU worker (:func:`prepare_jpeg`) reads the bytes, parses the header (pixel limit,
  format, mode, EXIF orientation) and decodes a *small* copy with JPEG draft mode — the
  scale 1/2..1/8 whose longer side still covers the thumbnail — for the perceptual hash and
  the thumbnail. Draft mode skips most of the inverse DCT and the colour conversion but
  still reads the whole entropy-coded stream, so a truncated or corrupt file fails here,
  on the CPU, with the same reason the CPU path gives (and is quarantined);
- :class:`JpegBatchDecoder` decodes the full-size pixels of a batch in one call on the
  device, applies the EXIF orientation on the tensor, centre-crops the square, resizes it
  (bicubic, antialiased) and normalises: the encoder's input, already on its device.

Only 8-bit RGB / grayscale JPEGs take this path; everything else (PNG, WebP, CMYK JPEGs,
...) is decoded on the CPU as before, and a file ``decode_jpeg`` refuses falls back to the
CPU decoder on its own. The same code runs with ``device="cpu"`` (torchvision decodes with
libjpeg-turbo there), which is how the tests check it against the CPU path.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

from embedscope.errors import ConfigError
from embedscope.ingest.decode import DecodedImage, decode_bytes

log = logging.getLogger(__name__)

DECODES = ("cpu", "gpu", "auto")
BATCH_MODES = ("RGB", "L")  # Pillow modes of the JPEGs decode_jpeg takes (not CMYK/YCCK)
JPEG_MAGIC = b"\xff\xd8\xff"
CHUNK_PIXELS = 64 * 2**20  # decode at most this many full-size pixels per decode_jpeg call


@dataclass
class Prepared:
    """The CPU side of a deferred JPEG: the small image for phash/thumbnail, the bytes."""

    small: DecodedImage  # width/height: the original size after orientation
    data: bytes


def is_jpeg(data: bytes) -> bool:
    return data[:3] == JPEG_MAGIC


def prepare_jpeg(data: bytes, *, max_pixels: int, small_side: int) -> Prepared | None:
    """Header checks + a draft-mode small decode of a JPEG whose pixels the batch decoder
    will decode; ``None`` when the file is not one it takes (decode it on the CPU instead).
    Raises :class:`~embedscope.errors.DecodeError` for a bad file."""
    if not is_jpeg(data):
        return None
    small = decode_bytes(data, max_pixels=max_pixels, draft_longest=small_side)
    if small.format != "JPEG" or small.mode not in BATCH_MODES:
        return None
    return Prepared(small, data)


def resolve_decode(decode: str, encoder_device: str) -> str:
    """``cpu`` or ``gpu`` for a ``--decode`` setting, given the encoder's resolved device.
    ``auto`` is gpu only when CUDA is present and the encoder runs on it."""
    if decode not in DECODES:
        raise ConfigError(f"unknown --decode {decode!r}", f"use one of: {', '.join(DECODES)}")
    if decode == "cpu":
        return "cpu"
    import torch

    cuda = torch.cuda.is_available()
    if decode == "auto":
        return "gpu" if cuda and encoder_device.startswith("cuda") else "cpu"
    if not cuda:
        raise ConfigError("--decode gpu needs CUDA, but no CUDA device is available",
                          "use --decode cpu (or auto, which picks gpu only where CUDA exists)")
    if not encoder_device.startswith("cuda"):
        raise ConfigError(f"--decode gpu needs the encoder on CUDA, but it runs on {encoder_device}",
                          "drop --device cpu, or use --decode cpu")
    return "gpu"


class JpegBatchDecoder:
    """Full-size JPEG decode + orientation + resize/crop/normalise, batched, on ``device``.

    Produces what :class:`~embedscope.models.preprocess.Preprocessor` (mode ``default``)
    produces from the same file, within resampling rounding: a (3, size, size) float32
    tensor per image, on ``device``.
    """

    def __init__(self, device: str, size: int, mean: Sequence[float], std: Sequence[float]) -> None:
        import torch

        self.device = torch.device(device)
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(3, 1, 1) * 255.0
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(3, 1, 1) * 255.0

    def decode(self, items: Sequence[Prepared]) -> list[Any]:
        """One entry per item: the model-input tensor, or the exception that refused it."""
        out: list[Any] = []
        chunk: list[Prepared] = []
        pixels = 0
        for it in items:
            n = it.small.width * it.small.height
            if chunk and pixels + n > CHUNK_PIXELS:
                out += self._decode_chunk(chunk)
                chunk, pixels = [], 0
            chunk.append(it)
            pixels += n
        if chunk:
            out += self._decode_chunk(chunk)
        return out

    def _decode_chunk(self, items: Sequence[Prepared]) -> list[Any]:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg

        data = [torch.frombuffer(bytearray(it.data), dtype=torch.uint8) for it in items]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its image codecs
            try:
                images: list[Any] = decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
            except RuntimeError:  # one bad file fails the whole call: find it, keep the rest
                images = []
                for d in data:
                    try:
                        images.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=self.device))
                    except RuntimeError as exc:
                        images.append(exc)
        return [img if isinstance(img, Exception) else self._to_input(img, it.small.orientation)
                for img, it in zip(images, items)]

    def _to_input(self, img: Any, orientation: int) -> Any:
        import torch
        import torch.nn.functional as F

        img = apply_orientation(img, orientation)
        _, h, w = img.shape
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        square = img[:, top : top + side, left : left + side].unsqueeze(0).float()
        if side != self.size:
            square = F.interpolate(square, size=(self.size, self.size), mode="bicubic", antialias=True,
                                   align_corners=False)
        x = (square[0].clamp_(0, 255) - self.mean) / self.std
        return x.to(torch.float32).contiguous()


def apply_orientation(img: Any, orientation: int) -> Any:
    """Apply an EXIF orientation (1-8) to a (C, H, W) tensor, as ``ImageOps.exif_transpose``."""
    import torch

    if orientation == 2:
        return img.flip(-1)
    if orientation == 3:
        return img.flip(-1).flip(-2)
    if orientation == 4:
        return img.flip(-2)
    if orientation == 5:
        return img.transpose(-1, -2)
    if orientation == 6:
        return torch.rot90(img, k=-1, dims=(-2, -1))
    if orientation == 7:
        return img.transpose(-1, -2).flip(-1).flip(-2)
    if orientation == 8:
        return torch.rot90(img, k=1, dims=(-2, -1))
    return img
