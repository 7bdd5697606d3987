import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from momentseg.errors import InvalidInputError
from momentseg.metrics import (
    JF,
    boundary_f_measure,
    boundary_map,
    davis_object_scores,
    expression_scores,
    mevis_scores,
    region_similarity,
    revos_scores,
    temporal_iou,
    tsg_metrics,
)


def reference_boundary(seg):
    """The DAVIS ``_seg2bmap`` rules written pixel by pixel (independent of the vectorised code)."""
    h, w = seg.shape
    out = np.zeros((h, w), bool)
    at = lambda y, x: bool(seg[y, x]) if y < h and x < w else False  # noqa: E731
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                out[y, x] = at(y, x) != at(y, x + 1)
            elif x == w - 1:
                out[y, x] = at(y, x) != at(y + 1, x)
            else:
                out[y, x] = at(y, x) != at(y, x + 1) or at(y, x) != at(y + 1, x) or at(y, x) != at(y + 1, x + 1)
    return out


def reference_f(pred, gt, bound_th=0.008):
    """DAVIS f_measure by its definition: dilation as 'any boundary pixel within the disk'."""
    h, w = pred.shape
    r = math.ceil(bound_th * math.sqrt(h * h + w * w))
    bp, bg = reference_boundary(pred), reference_boundary(gt)

    def dilate(b):
        out = np.zeros_like(b)
        for y, x in zip(*np.nonzero(b)):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dx * dx + dy * dy <= r * r and 0 <= y + dy < h and 0 <= x + dx < w:
                        out[y + dy, x + dx] = True
        return out

    n_p, n_g = bp.sum(), bg.sum()
    if n_p == 0 and n_g > 0:
        precision, recall = 1.0, 0.0
    elif n_p > 0 and n_g == 0:
        precision, recall = 0.0, 1.0
    elif n_p == 0 and n_g == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = (bp & dilate(bg)).sum() / n_p
        recall = (bg & dilate(bp)).sum() / n_g
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@settings(max_examples=60, deadline=None)
@given(st.integers(3, 40), st.integers(3, 40), st.integers(0, 2**32 - 1), st.floats(0.2, 0.8))
def test_boundary_f_matches_the_davis_definition(h, w, seed, density):
    rng = np.random.default_rng(seed)
    pred = rng.random((h, w)) < density
    gt = np.roll(pred, 1, axis=1) ^ (rng.random((h, w)) < 0.1)
    np.testing.assert_array_equal(boundary_map(pred), reference_boundary(pred))
    assert boundary_f_measure(pred, gt) == pytest.approx(reference_f(pred, gt), abs=1e-6)


def test_boundary_of_a_blob_in_the_bottom_right_corner_has_no_edge_along_the_image_border():
    m = np.zeros((6, 6), bool)
    m[3:, 3:] = True
    b = boundary_map(m)
    # offset half a pixel towards the origin: the row above and the column left of the blob
    assert b[2, 2:].all() and b[2:, 2].all()
    assert b.sum() == 7


def test_region_similarity_by_hand_and_edge_cases():
    a = np.zeros((5, 7), bool)
    b = np.zeros((5, 7), bool)
    a[0:2, 0:3] = True  # 6 px
    b[1:3, 0:3] = True  # 6 px, 3 shared
    assert region_similarity(a, b) == pytest.approx(3 / 9)
    assert region_similarity(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0
    assert region_similarity(a, np.zeros_like(a)) == 0.0
    assert region_similarity(np.zeros_like(a), a) == 0.0
    assert region_similarity(a.astype(np.uint8) * 255, a) == 1.0


def test_boundary_f_edge_cases():
    empty = np.zeros((9, 11), bool)
    full = np.zeros((9, 11), bool)
    full[2:6, 3:8] = True
    assert boundary_f_measure(empty, empty) == 1.0
    assert boundary_f_measure(full, empty) == 0.0
    assert boundary_f_measure(empty, full) == 0.0
    assert boundary_f_measure(full, full) == 1.0


def test_boundary_f_by_hand_far_apart_boxes():
    # 100x100: r = ceil(0.008 * 141.4) = 2; boxes 40 px apart share no boundary within 2 px
    a = np.zeros((100, 100), bool)
    b = np.zeros((100, 100), bool)
    a[10:20, 10:20] = True
    b[60:70, 60:70] = True
    assert boundary_f_measure(a, b) == 0.0
    c = np.zeros((100, 100), bool)
    c[11:21, 10:20] = True  # shifted one row: every boundary pixel within the 2 px disk
    assert boundary_f_measure(a, c) == 1.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(InvalidInputError, match="one size"):
        region_similarity(np.zeros((3, 3)), np.zeros((3, 4)))


def test_mevis_aggregation_rewards_correctly_empty_frames():
    box = np.zeros((4, 4), bool)
    box[1:3, 1:3] = True
    gt = [np.zeros((4, 4), bool), box]
    pred = [np.zeros((4, 4), bool), np.zeros((4, 4), bool)]
    e = expression_scores(pred, gt)
    assert (e.j, e.f) == (0.5, 0.5)
    total = mevis_scores([e, JF(1.0, 0.0)])
    assert (total.j, total.f, total.jf) == (0.75, 0.25, 0.5)


def test_revos_rounds_per_expression_and_averages_group_means():
    scores = [JF(0.123456, 0.5), JF(0.2, 0.30004), JF(0.9, 0.9), JF(0.0, 0.0)]
    result = revos_scores(scores, [0, 0, 1, 2])
    assert result["referring"].j == pytest.approx((12.35 + 20.0) / 2)
    assert result["referring"].f == pytest.approx((50.0 + 30.0) / 2)
    assert result["reasoning"].j == pytest.approx(90.0)
    assert result["overall"].j == pytest.approx(((12.35 + 20.0) / 2 + 90.0) / 2)


def test_davis_drops_first_and_last_frame_per_object():
    good = np.ones((4, 4), bool)
    bad = np.zeros((4, 4), bool)
    objects = {"1": ([bad, good, good, bad], [good] * 4), "2": ([good] * 3, [good] * 3)}
    assert davis_object_scores(objects).jf == 1.0
    assert davis_object_scores(objects, drop_first_last=False).j == pytest.approx((0.5 + 1.0) / 2)


def test_tsg_metrics_by_hand():
    preds = [(0, 10), (0, 10), (5, 15), (20, 30)]
    gts = [(0, 10), (0, 5), (0, 10), (0, 10)]
    # IoUs: 1.0, 0.5, 5/15, 0
    assert temporal_iou((5, 15), (0, 10)) == pytest.approx(1 / 3)
    result = tsg_metrics(preds, gts)
    assert result["R@0.3"] == 75.0
    assert result["R@0.5"] == 50.0
    assert result["R@0.7"] == 25.0
    assert result["mIoU"] == pytest.approx(100 * (1 + 0.5 + 1 / 3) / 4)
