"""Safe decoding: bytes on disk → an RGB :class:`PIL.Image.Image`, or a :class:`DecodeError`.

- a pixel limit (``--max-pixels``) is checked from the header, before any pixel is decoded
  (decompression bombs). It is the limit in force: Pillow's own process-wide limit
  (``Image.MAX_IMAGE_PIXELS``, which would refuse at half as many pixels) is raised to it,
  never lowered, and its warning is not treated as an error
- EXIF orientation is applied
- every mode becomes 8-bit RGB: 16-bit and float images are scaled by their actual range,
  alpha is composited over white, palettes expanded; GIFs give their first frame
- truncated files are errors (never silently padded with grey)
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Mapping

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from embedscope.errors import DecodeError


@dataclass
class DecodedImage:
    image: Image.Image  # RGB, orientation applied, possibly reduced by JPEG draft
    width: int  # original size, after EXIF orientation
    height: int
    format: str
    orientation: int = 1  # the EXIF orientation that was applied (1 = none)
    mode: str = "RGB"  # the file's own Pillow mode before conversion (e.g. L, CMYK, P)


def decode_image(
    path: str,
    *,
    max_pixels: int,
    draft_to: int | None = None,
    draft_longest: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> DecodedImage:
    """Decode ``path`` (a file, or an object URI read with ``storage_options``); with
    ``draft_to``, let JPEG decode at a reduced scale whose shorter side is still at least
    ``draft_to`` pixels (``draft_longest``: whose longer side is)."""
    data = read_file_bytes(path, storage_options)
    return decode_bytes(data, max_pixels=max_pixels, draft_to=draft_to, draft_longest=draft_longest)


def read_file_bytes(path: str, storage_options: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a file or object URI, or a :class:`DecodeError` saying why they can't be read."""
    from embedscope.objectstore import is_uri, read_bytes

    try:
        if is_uri(path):
            data = read_bytes(path, storage_options)
        else:
            with open(path, "rb") as fh:
                data = fh.read()
    except OSError as exc:
        from embedscope.objectstore import describe

        raise DecodeError(f"cannot read file: {exc.strerror or describe(exc)}") from None
    if not data:
        raise DecodeError("empty file (0 bytes)")
    return data


def decode_bytes(data: bytes, *, max_pixels: int, draft_to: int | None = None,
                 draft_longest: int | None = None) -> DecodedImage:
    """Decode in-memory file bytes; see :func:`decode_image`. A reduced JPEG decode (draft)
    still reads the whole entropy-coded stream, so truncation is detected all the same."""
    _allow_pixels(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "unknown"
            w, h = im.size
            if w <= 0 or h <= 0:
                raise DecodeError(f"invalid image size {w}x{h}")
            if w * h > max_pixels:
                raise DecodeError(f"too many pixels ({w}x{h} > limit {max_pixels}); possible decompression bomb")
            orientation = _orientation(im)
            mode = im.mode
            box = _draft_box(w, h, draft_to, draft_longest)
            if box and fmt == "JPEG" and im.mode in ("RGB", "L", "CMYK", "YCbCr"):
                im.draft(im.mode if im.mode != "CMYK" else "RGB", box)
            im.load()
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from None
    try:
        im = ImageOps.exif_transpose(im) if orientation not in (None, 1) else im
    except Exception as exc:  # bad EXIF must not lose the image
        raise DecodeError(f"cannot apply EXIF orientation: {exc}") from None
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    rgb = to_rgb(im)
    return DecodedImage(rgb, w, h, fmt, orientation if orientation in range(2, 9) else 1, mode)


def _allow_pixels(max_pixels: int) -> None:
    """Make Pillow's own bomb check (it refuses above ``2 * MAX_IMAGE_PIXELS`` when it opens a
    file, before ours runs) no stricter than ``max_pixels``; only ever raised, so concurrent
    decodes with different limits are all served by their own check."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _draft_box(w: int, h: int, draft_to: int | None, draft_longest: int | None) -> tuple[int, int] | None:
    """The size Pillow's ``draft`` must keep (it picks the smallest 1/1..1/8 scale whose
    result is at least this large on both sides)."""
    if draft_longest:
        longest = max(w, h)
        return (max(1, -(-draft_longest * w // longest)), max(1, -(-draft_longest * h // longest)))
    if draft_to:
        return (draft_to, draft_to)
    return None


def _orientation(im: Image.Image) -> int | None:
    try:
        return im.getexif().get(0x0112)
    except Exception:
        return None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB without clipping high-bit-depth images."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "P":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def perceptual_hash(image: Image.Image) -> int:
    """64-bit DCT pHash (the imagehash ``phash`` recipe), as a signed int64 bit pattern."""
    from scipy.fft import dct

    # reducing_gap: an integer box reduction first, then Lanczos on a small image; ~3x
    # faster than Lanczos from full size and a bit or two of difference at most
    gray = np.asarray(image.convert("L").resize((32, 32), Image.LANCZOS, reducing_gap=2.0), dtype=np.float64)
    freq = dct(dct(gray, axis=0, norm="ortho"), axis=1, norm="ortho")[:8, :8]
    bits = (freq > np.median(freq)).flatten()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= (1 << 63) else value


def thumbnail_jpeg(image: Image.Image, max_side: int, quality: int = 80) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((max_side, max_side), Image.BILINEAR, reducing_gap=2.0)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()
