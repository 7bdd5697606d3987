"""RefVOS and TSG metrics, reproducing the official evaluation code (spec §6; DAVIS-2017 metrics).

J (region similarity) and F (boundary F-measure) follow ``davis2017/metrics.py``, which MeViS, ReVOS
and Ref-DAVIS17 share; the aggregations follow each benchmark's script.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from momentseg.errors import InvalidInputError

__all__ = [
    "JF",
    "boundary_f_measure",
    "boundary_map",
    "davis_object_scores",
    "expression_scores",
    "mevis_scores",
    "region_similarity",
    "revos_scores",
    "temporal_iou",
    "tsg_metrics",
]


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    if p.shape != g.shape or p.ndim != 2:
        raise InvalidInputError(f"prediction {p.shape} and ground truth {g.shape} must be 2-D masks of one size")
    return p, g


def region_similarity(pred, gt) -> float:
    """J = |P ∩ G| / |P ∪ G|; 1 when both masks are empty."""
    p, g = _pair(pred, gt)
    union = np.count_nonzero(p | g)
    if union == 0:
        return 1.0
    return np.count_nonzero(p & g) / union


def boundary_map(mask) -> np.ndarray:
    """The DAVIS one-pixel boundary of a mask (``_seg2bmap``), offset half a pixel towards the origin.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; pixels
    past the image count as background, except that the last row and column compare only along the
    edge, and the bottom-right pixel is never a boundary.
    """
    s = np.asarray(mask).astype(bool)
    right = np.zeros_like(s)
    right[:, :-1] = s[:, 1:]
    below = np.zeros_like(s)
    below[:-1, :] = s[1:, :]
    diagonal = np.zeros_like(s)
    diagonal[:-1, :-1] = s[1:, 1:]
    boundary = (s ^ right) | (s ^ below) | (s ^ diagonal)
    boundary[-1, :] = s[-1, :] ^ right[-1, :]
    boundary[:, -1] = s[:, -1] ^ below[:, -1]
    boundary[-1, -1] = False
    return boundary


def _disk(radius: int) -> np.ndarray:
    """The digital disk x² + y² ≤ r² (scikit-image's ``disk``) as a dilation kernel."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def boundary_f_measure(pred, gt, bound_th: float = 0.008) -> float:
    """F = 2PR / (P + R) over boundary pixels matched within a tolerance disk.

    The radius is ⌈bound_th · √(H² + W²)⌉ for bound_th < 1, else bound_th pixels. Empty boundaries:
    none in either → 1; only one side empty → 0.
    """
    p, g = _pair(pred, gt)
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*p.shape))
    kernel = _disk(int(radius))
    pred_boundary = boundary_map(p)
    gt_boundary = boundary_map(g)
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel).astype(bool)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel).astype(bool)
    n_pred = np.count_nonzero(pred_boundary)
    n_gt = np.count_nonzero(gt_boundary)
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class JF:
    """Region similarity J, boundary F-measure F, and their mean J&F."""

    j: float
    f: float

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2


def expression_scores(preds: Iterable, gts: Iterable) -> JF:
    """One expression (MeViS / ReVOS unit): J and F averaged over all of its frames."""
    pairs = list(zip(preds, gts, strict=True))
    if not pairs:
        raise InvalidInputError("an expression needs at least one frame")
    j = [region_similarity(p, g) for p, g in pairs]
    f = [boundary_f_measure(p, g) for p, g in pairs]
    return JF(float(np.mean(j)), float(np.mean(f)))


def mevis_scores(per_expression: Sequence[JF]) -> JF:
    """MeViS: J and F are means over expressions of the per-expression frame means."""
    if not per_expression:
        raise InvalidInputError("no expressions to average")
    return JF(float(np.mean([e.j for e in per_expression])), float(np.mean([e.f for e in per_expression])))


def revos_scores(per_expression: Sequence[JF], type_ids: Sequence[int]) -> dict[str, JF]:
    """ReVOS: per-expression J, F rounded to 2 decimals of percent, then means per type.

    Returns ``referring`` (type 0), ``reasoning`` (type 1) and ``overall`` (the mean of the two group
    means); type 2 is left out of every mean. Values are in percent, as the script prints them.
    """
    if len(per_expression) != len(type_ids):
        raise InvalidInputError("one type id per expression is needed")
    groups: dict[int, list[JF]] = {0: [], 1: []}
    for score, type_id in zip(per_expression, type_ids, strict=True):
        if type_id in groups:
            groups[type_id].append(JF(round(100 * score.j, 2), round(100 * score.f, 2)))
    referring = mevis_scores(groups[0]) if groups[0] else JF(math.nan, math.nan)
    reasoning = mevis_scores(groups[1]) if groups[1] else JF(math.nan, math.nan)
    overall = JF((referring.j + reasoning.j) / 2, (referring.f + reasoning.f) / 2)
    return {"referring": referring, "reasoning": reasoning, "overall": overall}


def davis_object_scores(per_object: Mapping[str, tuple[Sequence, Sequence]], *, drop_first_last: bool = True) -> JF:
    """DAVIS-2017 semi-supervised: per object the mean over frames (first and last dropped), then the
    mean over all objects; J&F is the mean of the two."""
    js, fs = [], []
    for preds, gts in per_object.values():
        preds, gts = list(preds), list(gts)
        if drop_first_last:
            preds, gts = preds[1:-1], gts[1:-1]
        score = expression_scores(preds, gts)
        js.append(score.j)
        fs.append(score.f)
    if not js:
        raise InvalidInputError("no objects to average")
    return JF(float(np.mean(js)), float(np.mean(fs)))


def temporal_iou(pred: tuple[float, float], gt: tuple[float, float]) -> float:
    """IoU of two [start, end] spans; 0 when they do not overlap."""
    inter = min(pred[1], gt[1]) - max(pred[0], gt[0])
    union = max(pred[1], gt[1]) - min(pred[0], gt[0])
    if inter <= 0 or union <= 0:
        return 0.0
    return inter / union


def tsg_metrics(
    pred_spans: Sequence[tuple[float, float]], gt_spans: Sequence[tuple[float, float]], thresholds=(0.3, 0.5, 0.7)
) -> dict[str, float]:
    """R@1 at IoU ≥ m for each threshold m, and mIoU, in percent (Charades-STA / ActivityNet)."""
    if len(pred_spans) != len(gt_spans) or not pred_spans:
        raise InvalidInputError("pred_spans and gt_spans must be non-empty and of equal length")
    ious = np.array([temporal_iou(p, g) for p, g in zip(pred_spans, gt_spans, strict=True)])
    result = {f"R@{m}": float(100 * np.mean(ious >= m)) for m in thresholds}
    result["mIoU"] = float(100 * ious.mean())
    return result
