"""Mask codecs: CVAT mask RLE, COCO RLE (pycocotools), polygons (OpenCV), boxes."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from momentseg.errors import InvalidInputError

__all__ = [
    "Polygon",
    "bbox",
    "from_coco_rle",
    "from_cvat_rle",
    "mask_to_polygons",
    "polygons_to_mask",
    "to_coco_rle",
    "to_cvat_rle",
]


def _binary(mask) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise InvalidInputError(f"a mask must be a non-empty 2-D array, got shape {m.shape}")
    return m.astype(bool, copy=False)


def to_cvat_rle(mask) -> list[float]:
    """CVAT's mask ``points``: run lengths over the row-major bounding-box crop, background first (a crop
    that starts inside the mask starts with a 0 run), then the inclusive box [left, top, right, bottom].
    The same numbers as ``cvat_sdk.masks.encode_mask`` (tests/test_masks.py), without a CVAT client in the
    core.

    An empty mask has no CVAT encoding (CVAT stores absent objects as ``outside``): InvalidInputError.
    """
    m = _binary(mask)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        raise InvalidInputError("an empty mask has no CVAT RLE: mark the frame 'outside' instead")
    cols = np.flatnonzero(m.any(axis=0))
    left, top, right, bottom = int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])
    flat = m[top : bottom + 1, left : right + 1].ravel()
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(edges).tolist()
    if flat[0]:
        runs.insert(0, 0)
    return [*runs, left, top, right, bottom]


def from_cvat_rle(points, width: int, height: int) -> np.ndarray:
    """Decode CVAT mask ``points`` to a bool [height, width] mask."""

    def problem(text: str) -> InvalidInputError:
        return InvalidInputError(f"invalid CVAT mask RLE for a {width}x{height} frame: {text}")

    try:
        values = list(points)
    except TypeError:
        raise problem("the points are not a list of numbers") from None
    if len(values) < 5:
        raise problem("it needs at least one run and a box [left, top, right, bottom]")
    numbers = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
            raise problem(f"{value!r} is not a whole number")
        numbers.append(int(value))
    *runs, left, top, right, bottom = numbers
    if not (0 <= left <= right < width and 0 <= top <= bottom < height):
        raise problem(f"the box [{left}, {top}, {right}, {bottom}] is outside the frame")
    if min(runs) < 0:
        raise problem("a run length is negative")
    box_height, box_width = bottom - top + 1, right - left + 1
    if sum(runs) != box_height * box_width:
        raise problem(f"the runs cover {sum(runs)} pixels; the box has {box_height * box_width}")
    crop = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
    mask = np.zeros((height, width), bool)
    mask[top : bottom + 1, left : right + 1] = crop.reshape(box_height, box_width)
    return mask


def to_coco_rle(mask) -> dict:
    """COCO compressed RLE ``{"size": [h, w], "counts": str}`` (column-major, as pycocotools writes)."""
    m = _binary(mask)
    rle = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def from_coco_rle(rle: dict) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list counts) to a bool mask."""
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
        if isinstance(counts, list):
            compressed = coco_mask.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        else:
            compressed = {
                "size": [height, width],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
        return coco_mask.decode(compressed).astype(bool)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidInputError(f"invalid COCO RLE: {error}") from error


def bbox(mask) -> tuple[int, int, int, int] | None:
    """The tight box (x, y, width, height) of a mask's pixels, None when the mask is empty."""
    m = _binary(mask)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


@dataclass(frozen=True)
class Polygon:
    """One connected part of a mask: its outer contour and the contours of its holes, as [N, 2] (x, y)."""

    exterior: np.ndarray
    holes: list[np.ndarray] = field(default_factory=list)

    def flat(self) -> list[float]:
        """The exterior as CVAT/COCO polygon points [x1, y1, x2, y2, ...]."""
        return self.exterior.astype(float).ravel().tolist()


def mask_to_polygons(mask, tolerance: float = 0.0, min_area: float = 0.0) -> list[Polygon]:
    """Trace every part of a mask, with its holes; ``tolerance`` is the Douglas-Peucker epsilon in pixels.

    Contours run through pixel centres, so a polygon covers its pixels; parts whose polygon area is
    below ``min_area`` are dropped.
    """
    m = _binary(mask).astype(np.uint8)
    contours, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is None:
        return []

    def simplify(contour: np.ndarray) -> np.ndarray:
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        return contour.reshape(-1, 2)

    polygons = []
    for index, (_, _, first_child, parent) in enumerate(hierarchy[0]):
        if parent != -1 or cv2.contourArea(contours[index]) < min_area:
            continue
        holes = []
        child = first_child
        while child != -1:
            holes.append(simplify(contours[child]))
            child = hierarchy[0][child][0]
        polygons.append(Polygon(simplify(contours[index]), holes))
    return polygons


def polygons_to_mask(polygons: list[Polygon], width: int, height: int) -> np.ndarray:
    """Rasterise polygons (exteriors filled, holes cleared) back to a bool [height, width] mask."""
    canvas = np.zeros((height, width), np.uint8)
    # containers before the parts drawn inside their holes
    for polygon in sorted(polygons, key=lambda p: -cv2.contourArea(p.exterior.astype(np.float32))):
        cv2.fillPoly(canvas, [polygon.exterior.astype(np.int32).reshape(-1, 1, 2)], 1)
        for hole in polygon.holes:
            cv2.fillPoly(canvas, [hole.astype(np.int32).reshape(-1, 1, 2)], 0)
            # the hole contour runs through the foreground pixels around the hole: restore them
            cv2.polylines(canvas, [hole.astype(np.int32).reshape(-1, 1, 2)], True, 1)
    return canvas.astype(bool)
