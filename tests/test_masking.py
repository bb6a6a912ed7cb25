"""The pure mask functions: which candidate wins, and the exact pixels of the masked image."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.models.masking import (
    MaskRule,
    apply_mask,
    decode_mask_png,
    encode_mask_png,
    fill_colour,
    is_uniform,
    mask_bbox,
    resize_mask,
    select_mask,
)
from embedscope.models.registry import IMAGENET_MEAN

FILL = (9, 8, 7)


def numbered_image(h: int, w: int) -> np.ndarray:
    """Every pixel distinct: R = 10*y + x, G = R + 100, B = 200."""
    r = (10 * np.arange(h)[:, None] + np.arange(w)[None, :]).astype(np.uint8)
    return np.stack([r, r + 100, np.full_like(r, 200)], axis=2)


def test_fill_colour_is_the_imagenet_mean_in_8_bit():
    assert fill_colour(IMAGENET_MEAN) == (124, 116, 104)


def test_mean_fill_keeps_mask_pixels_and_fills_the_rest_exactly():
    img = numbered_image(4, 6)
    mask = np.zeros((4, 6), bool)
    mask[1:3, 2:5] = True
    mask[3, 0] = True
    out = apply_mask(img, mask, mode="mean_fill", fill=FILL)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    expected = np.empty_like(img)
    expected[:] = FILL
    expected[1:3, 2:5] = img[1:3, 2:5]
    expected[3, 0] = img[3, 0]
    np.testing.assert_array_equal(out, expected)
    assert out[1, 2].tolist() == [12, 112, 200] and out[0, 0].tolist() == list(FILL)
    assert img[0, 0].tolist() == [0, 100, 200]  # the input is not modified


def test_crop_cuts_to_the_box_and_pads_to_a_centred_square_exactly():
    img = numbered_image(6, 8)
    mask = np.zeros((6, 8), bool)
    mask[1:4, 3:5] = True  # box x 3..5, y 1..4: 2 wide, 3 tall
    mask[2, 3] = False  # a hole inside the box is filled too
    out = apply_mask(img, mask, mode="crop", fill=FILL)
    assert out.shape == (3, 3, 3)
    f = list(FILL)
    # width 2 in a side of 3: left pad (3-2)//2 = 0, the odd column goes right
    assert out[:, 2].tolist() == [f, f, f]
    assert out[:, :2].tolist() == [
        [[13, 113, 200], [14, 114, 200]],
        [f, [24, 124, 200]],
        [[33, 133, 200], [34, 134, 200]],
    ]


def test_crop_of_a_wide_box_pads_top_and_bottom():
    img = numbered_image(5, 9)
    mask = np.zeros((5, 9), bool)
    mask[2, 1:6] = True  # 5 wide, 1 tall → 5x5, row 2 is the strip
    out = apply_mask(img, mask, mode="crop", fill=FILL)
    assert out.shape == (5, 5, 3)
    np.testing.assert_array_equal(out[2], img[2, 1:6])
    for row in (0, 1, 3, 4):
        assert (out[row] == FILL).all()


def test_empty_mask_leaves_the_image_and_bad_inputs_are_refused():
    img = numbered_image(3, 3)
    for mode in ("mean_fill", "crop"):
        np.testing.assert_array_equal(apply_mask(img, np.zeros((3, 3), bool), mode=mode, fill=FILL), img)
    with pytest.raises(ValueError, match="mode"):
        apply_mask(img, np.ones((3, 3), bool), mode="blur", fill=FILL)
    with pytest.raises(ValueError, match="does not match"):
        apply_mask(img, np.ones((2, 3), bool), mode="crop", fill=FILL)


def test_mask_bbox_is_exclusive_and_none_when_empty():
    mask = np.zeros((10, 20), bool)
    assert mask_bbox(mask) is None
    mask[3, 4] = mask[7, 15] = True
    assert mask_bbox(mask) == (4, 3, 16, 8)


def corner(frac_side: float, n: int = 100) -> np.ndarray:
    """An n x n mask whose top-left square covers ``frac_side``² of the frame."""
    m = np.zeros((n, n), bool)
    s = int(round(n * frac_side))
    m[:s, :s] = True
    return m


def test_rule_keeps_the_best_scoring_mask_that_is_neither_tiny_nor_the_whole_frame():
    tiny = corner(0.1)  # 1% of the frame
    whole = np.ones((100, 100), bool)  # 100%
    near_whole = corner(0.96)  # 92%
    mid = corner(0.5)  # 25%
    big = corner(0.8)  # 64%
    masks = np.stack([tiny, whole, near_whole, mid, big])
    sel = select_mask(masks, np.array([0.99, 0.98, 0.97, 0.6, 0.7]))
    assert sel.index == 4 and "2/5" in sel.reason
    # equal scores: the larger mask wins
    assert select_mask(masks, np.array([0.9, 0.9, 0.9, 0.5, 0.5])).index == 4
    # bounds are inclusive and configurable
    rule = MaskRule(min_area=0.25, max_area=0.25)
    assert select_mask(masks, np.zeros(5), rule).index == 3


def test_rule_falls_back_with_a_reason_when_nothing_qualifies():
    masks = np.stack([corner(0.1), np.ones((100, 100), bool), np.zeros((100, 100), bool)])
    sel = select_mask(masks, np.array([0.9, 0.9, 0.9]))
    assert sel.index is None
    assert sel.reason == "no mask qualifies: of 3 candidates 2 cover < 2% of the frame and 1 > 90%"
    empty = select_mask(np.zeros((0, 5, 5), bool), np.zeros(0))
    assert empty.index is None and "no candidate" in empty.reason


def test_uniform_images_are_detected():
    assert is_uniform(np.full((20, 30, 3), 77, np.uint8))
    noisy = np.random.default_rng(0).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    assert not is_uniform(noisy)
    edge = np.zeros((20, 30, 3), np.uint8)
    edge[:, 15:] = 40
    assert not is_uniform(edge)


def test_mask_png_round_trip_and_resize():
    mask = np.zeros((120, 160), bool)
    mask[20:90, 30:140] = True
    data = encode_mask_png(mask)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 400
    np.testing.assert_array_equal(decode_mask_png(data), mask)
    big = resize_mask(mask, (320, 240))
    assert big.shape == (240, 320) and mask_bbox(big) == (60, 40, 280, 180)
    assert resize_mask(mask, (160, 120)) is mask
