import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as coco_mask

from momentseg.errors import InvalidInputError
from momentseg.masks import (
    bbox,
    from_coco_rle,
    from_cvat_rle,
    mask_to_polygons,
    polygons_to_mask,
    to_coco_rle,
    to_cvat_rle,
)


def random_mask(seed, h, w, density):
    return np.random.default_rng(seed).random((h, w)) < density


masks_strategy = st.builds(
    random_mask, st.integers(0, 2**32 - 1), st.integers(1, 40), st.integers(1, 40), st.floats(0.05, 0.95)
)


def sparse_mask(seed, h, w, density):
    """Blobs away from the edges too, so that crops start and end on either value."""
    mask = random_mask(seed, h, w, density)
    rng = np.random.default_rng(seed + 1)
    top, left = rng.integers(0, h), rng.integers(0, w)
    mask[:top] = False
    mask[:, :left] = False
    return mask


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        masks_strategy,
        st.builds(sparse_mask, st.integers(0, 2**31), st.integers(1, 40), st.integers(1, 40), st.floats(0.05, 0.95)),
    )
)
def test_cvat_rle_is_cvat_sdks_own_encoding(mask):
    if not mask.any():
        mask[-1, -1] = True
    points = to_cvat_rle(mask)
    assert points == encode_mask(mask)
    np.testing.assert_array_equal(decode_mask(points, image_width=mask.shape[1], image_height=mask.shape[0]), mask)
    np.testing.assert_array_equal(from_cvat_rle(points, mask.shape[1], mask.shape[0]), mask)
    x, y, w, h = bbox(mask)
    assert points[-4:] == [x, y, x + w - 1, y + h - 1]


@settings(max_examples=150, deadline=None)
@given(masks_strategy)
def test_coco_rle_round_trips_and_is_what_pycocotools_reads(mask):
    rle = to_coco_rle(mask)
    assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
    np.testing.assert_array_equal(from_coco_rle(rle), mask)
    decoded = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    assert int(coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()})) == mask.sum()


def test_coco_uncompressed_counts_are_read_too():
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    # column-major runs: 4 zeros, 1 one, 2 zeros, 1 one, 4 zeros
    np.testing.assert_array_equal(from_coco_rle({"size": [3, 4], "counts": [4, 1, 2, 1, 4]}), mask)


@settings(max_examples=150, deadline=None)
@given(masks_strategy)
def test_polygons_round_trip_exactly_with_zero_tolerance(mask):
    polygons = mask_to_polygons(mask)
    np.testing.assert_array_equal(polygons_to_mask(polygons, mask.shape[1], mask.shape[0]), mask)


def test_polygons_keep_holes_and_parts():
    mask = np.zeros((40, 50), bool)
    mask[2:30, 2:30] = True
    mask[10:20, 10:20] = False  # a hole
    mask[14:17, 14:17] = True  # an island inside the hole
    mask[32:38, 40:48] = True  # a second part
    polygons = mask_to_polygons(mask)
    assert len(polygons) == 3
    assert sorted(len(p.holes) for p in polygons) == [0, 0, 1]
    np.testing.assert_array_equal(polygons_to_mask(polygons, 50, 40), mask)
    flat = polygons[0].flat()
    assert len(flat) % 2 == 0 and all(isinstance(v, float) for v in flat)


def test_tolerance_simplifies_and_min_area_drops_specks():
    yy, xx = np.mgrid[:100, :100]
    disk = (yy - 50) ** 2 + (xx - 50) ** 2 < 40**2
    exact = mask_to_polygons(disk)[0].exterior
    coarse = mask_to_polygons(disk, tolerance=2.0)[0].exterior
    assert len(coarse) < len(exact) / 2
    approx = polygons_to_mask(mask_to_polygons(disk, tolerance=2.0), 100, 100)
    assert (approx ^ disk).sum() / disk.sum() < 0.05
    speck = disk.copy()
    speck[2, 2] = True
    assert len(mask_to_polygons(speck)) == 2 and len(mask_to_polygons(speck, min_area=1)) == 1


def test_bbox_and_errors():
    mask = np.zeros((10, 12), bool)
    mask[3:5, 7:12] = True
    assert bbox(mask) == (7, 3, 5, 2)
    assert bbox(np.zeros((4, 4))) is None
    with pytest.raises(InvalidInputError, match="outside"):
        to_cvat_rle(np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="2-D"):
        to_coco_rle(np.zeros((2, 3, 4)))
    with pytest.raises(InvalidInputError, match="CVAT mask RLE"):
        from_cvat_rle([0, 5, 0, 0, 9, 9], 4, 4)
    for points, problem in [
        ([1, 0, 0, 0], "at least one run"),
        ([1.5, 0, 0, 0, 0], "whole number"),
        (["1", 0, 0, 0, 0], "whole number"),
        ([-1, 2, 0, 0, 0, 0], "negative"),
        ([2, 0, 0, 0, 0], "cover 2 pixels"),
        ([1, 0, 0, 4, 0], "outside the frame"),
        (None, "not a list"),
    ]:
        with pytest.raises(InvalidInputError, match=problem):
            from_cvat_rle(points, 4, 4)
    assert mask_to_polygons(np.zeros((5, 5))) == []


def test_the_core_imports_no_cvat_client():
    """The algorithms and the pipeline stand without cvat-sdk; only the CVAT adapters import it."""
    import subprocess
    import sys

    core = "momentseg.masks, momentseg.grounding, momentseg.sampling, momentseg.propagation, momentseg.pipeline"
    code = f"import sys, {core}; print(sorted(m for m in sys.modules if m.split('.')[0] == 'cvat_sdk'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
