from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from embedscope.errors import DecodeError
from embedscope.ingest.decode import decode_bytes, hamming, perceptual_hash, thumbnail_jpeg, to_rgb
from tests.conftest import exif_with_orientation, make_photo

LIMIT = 50_000_000


def jpeg_bytes(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied_and_size_reported_as_displayed():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # left quarter white
    data = jpeg_bytes(img, quality=95, exif=exif_with_orientation(6))  # 6 = rotate 90° CW
    out = decode_bytes(data, max_pixels=LIMIT)
    assert (out.width, out.height) == (20, 40)
    arr = np.asarray(out.image)
    assert arr.shape == (40, 20, 3)
    assert arr[:8].mean() > 200 and arr[-8:].mean() < 50  # white band moved to the top


def test_16bit_png_is_scaled_not_clipped():
    deep = np.array([[0, 30000, 60000]], dtype=np.uint16)
    buf = io.BytesIO()
    Image.fromarray(deep).save(buf, "PNG")
    arr = np.asarray(decode_bytes(buf.getvalue(), max_pixels=LIMIT).image)
    assert arr[0, 0, 0] == 0 and arr[0, 2, 0] == 255 and 120 < arr[0, 1, 0] < 135


def test_alpha_is_composited_over_white_and_palette_expanded():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert np.asarray(to_rgb(rgba)).min() == 255
    pal = Image.new("P", (4, 4))
    assert to_rgb(pal).mode == "RGB"


def test_grayscale_becomes_rgb():
    out = decode_bytes(jpeg_bytes(Image.new("L", (8, 8), 77)), max_pixels=LIMIT)
    assert out.image.mode == "RGB" and out.format == "JPEG"


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, not an image", "not a recognised image"),
        (jpeg_bytes(make_photo(1))[:2000], "truncated"),
    ],
)
def test_bad_bytes_raise_decode_error_with_reason(data, reason):
    with pytest.raises(DecodeError) as err:
        decode_bytes(data, max_pixels=LIMIT) if data else _decode_empty()
    assert reason in err.value.message


def _decode_empty():
    from embedscope.ingest.decode import decode_image
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".jpg") as fh:
        return decode_image(fh.name, max_pixels=LIMIT)


def test_pixel_limit_refuses_before_decoding():
    data = jpeg_bytes(Image.new("RGB", (300, 300)))
    with pytest.raises(DecodeError, match="too many pixels"):
        decode_bytes(data, max_pixels=300 * 300 - 1)


def test_gif_gives_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    frames[0].putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = decode_bytes(buf.getvalue(), max_pixels=LIMIT)
    assert tuple(np.asarray(out.image)[0, 0]) == (255, 0, 0)


def test_jpeg_draft_reduces_but_keeps_reported_size():
    data = jpeg_bytes(make_photo(3, (1600, 1200)))
    out = decode_bytes(data, max_pixels=LIMIT, draft_to=224)
    assert (out.width, out.height) == (1600, 1200)
    assert min(out.image.size) >= 224 and out.image.size[0] < 1600


def test_phash_same_for_identical_close_for_resized_far_for_different():
    a = make_photo(10, (400, 300))
    near = a.resize((200, 150)).resize((400, 300))
    other = make_photo(11, (400, 300))
    assert perceptual_hash(a) == perceptual_hash(a.copy())
    assert hamming(perceptual_hash(a), perceptual_hash(near)) <= 6
    assert hamming(perceptual_hash(a), perceptual_hash(other)) >= 16
    assert -(2**63) <= perceptual_hash(a) < 2**63


def test_thumbnail_is_small_jpeg():
    data = thumbnail_jpeg(make_photo(5, (640, 480)), 128)
    thumb = Image.open(io.BytesIO(data))
    assert thumb.format == "JPEG" and max(thumb.size) == 128
