"""RLE encode/decode against examples worked out by hand (docs/ytvis_format.md §3)."""

import json

import numpy as np
import pytest

from ovformer.ytvis.rle import decode_rle, encode_mask, encode_masks, rle_area, rle_bbox, to_compressed


def spec_mask() -> np.ndarray:
    # The spec's 4x5 example: ones at rows 1-2, cols 2-3.
    m = np.zeros((4, 5), bool)
    m[1:3, 2:4] = True
    return m


def test_spec_example_compressed():
    # Column-major: cols 0-1 (8 zeros) + col 2 row 0 -> 9 zeros, 2 ones, 2 zeros, 2 ones, 5 zeros
    # = uncompressed [9, 2, 2, 2, 5], compressed b'92203' (LEB128-like, diffs from the run 2 back).
    rle = encode_mask(spec_mask())
    assert rle == {"size": [4, 5], "counts": "92203"}
    assert isinstance(rle["counts"], str)
    json.dumps(rle)  # str counts: JSON-serialisable as is


def test_column_major_order_not_transposed():
    # 2x3 mask with a single pixel at (row 0, col 2). Fortran order visits col 0 (2 px), col 1 (2 px),
    # then (0, 2): 4 zeros, 1 one, 1 zero -> "411". A C-order walk would give 2 zeros first.
    m = np.zeros((2, 3), bool)
    m[0, 2] = True
    rle = encode_mask(m)
    assert rle == {"size": [2, 3], "counts": "411"}  # size is [H, W], never [W, H]
    assert rle_bbox(rle) == [2.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize(
    "rle",
    [
        {"size": [4, 5], "counts": "92203"},
        {"size": [4, 5], "counts": b"92203"},
        {"size": [4, 5], "counts": [9, 2, 2, 2, 5]},  # uncompressed, as in official YTVIS-2019 GT
    ],
)
def test_decode_all_rle_forms(rle):
    m = decode_rle(rle)
    assert m.dtype == bool and m.shape == (4, 5)
    np.testing.assert_array_equal(m, spec_mask())
    assert rle_area(rle) == 4
    assert rle_bbox(rle) == [2.0, 1.0, 2.0, 2.0]  # x, y, w, h


def test_decode_polygon_needs_size():
    # Square with corners (x=2, y=1) and (x=4, y=3) covers pixel columns 2-3 and rows 1-2.
    poly = [[2, 1, 4, 1, 4, 3, 2, 3]]
    np.testing.assert_array_equal(decode_rle(poly, 4, 5), spec_mask())
    with pytest.raises(ValueError, match="height and width"):
        decode_rle(poly)


def test_uncompressed_to_compressed():
    assert to_compressed({"size": [4, 5], "counts": [9, 2, 2, 2, 5]})["counts"] == b"92203"


def test_encode_masks_batch_equals_single():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 7, 5)) > 0.5  # non-square so a transposition would show
    masks[1] = False  # an empty frame still gets an RLE: all zeros
    batch = encode_masks(masks)
    assert batch == [encode_mask(m) for m in masks]
    # One run of 35 zeros. 35 = 0b1_00011: low 5 bits 3 plus the "more" flag 0x20 -> chr(48 + 35) = "S",
    # then the remaining 1 -> chr(48 + 1) = "1".
    assert batch[1] == {"size": [7, 5], "counts": "S1"}
    for m, r in zip(masks, batch):
        np.testing.assert_array_equal(decode_rle(r), m)
        assert rle_area(r) == int(m.sum())
    assert encode_masks(np.zeros((0, 7, 5), bool)) == []


def test_empty_mask_area_and_bbox():
    rle = encode_mask(np.zeros((4, 5), bool))
    assert rle_area(rle) == 0
    assert rle_bbox(rle) == [0.0, 0.0, 0.0, 0.0]


def test_accepts_c_ordered_and_uint8_input():
    m = np.ascontiguousarray(spec_mask().astype(np.uint8))  # C order: pycocotools alone would refuse
    assert encode_mask(m)["counts"] == "92203"


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode_mask(np.zeros((2, 4, 5), bool))
    with pytest.raises(ValueError, match=r"\(T, H, W\)"):
        encode_masks(np.zeros((4, 5), bool))
