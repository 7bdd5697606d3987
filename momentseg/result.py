"""The result schema shared by ``result.json``, the serverless function's response and the exports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from momentseg.masks import Polygon, from_cvat_rle, polygons_to_mask


@dataclass(frozen=True)
class Moment:
    """The predicted moment: inclusive frame range, seconds, and the mean probability inside it."""

    start_frame: int
    end_frame: int
    start_sec: float
    end_sec: float
    score: float


@dataclass(frozen=True)
class Shape:
    """One frame of a track, convertible 1:1 into ``cvat_sdk.models.TrackedShapeRequest``.

    ``points`` is CVAT's mask RLE (``type == "mask"``) or flat polygon points; an ``outside`` shape
    repeats the nearest visible frame's points because CVAT wants points on every shape.
    """

    frame: int
    type: str
    points: list[float]
    keyframe: bool
    outside: bool
    score: float


@dataclass
class Track:
    label: str
    shapes: list[Shape]

    def mask(self, frame: int, width: int, height: int) -> np.ndarray:
        """The decoded mask at ``frame`` (empty where the object is outside or the frame is absent)."""
        for shape in self.shapes:
            if shape.frame == frame:
                return shape_mask(shape, width, height)
        return np.zeros((height, width), bool)


def shape_mask(shape: Shape, width: int, height: int) -> np.ndarray:
    if shape.outside:
        return np.zeros((height, width), bool)
    if shape.type == "mask":
        return from_cvat_rle(shape.points, width, height)
    exterior = np.asarray(shape.points, dtype=np.float64).reshape(-1, 2)
    return polygons_to_mask([Polygon(exterior)], width, height)


@dataclass
class SegmentResult:
    """Everything one run produces; ``to_dict`` is the JSON schema of result.json and the API.

    ``similarity`` is S, the smoothed frame-query similarity the moment and MCS use (the official
    ``find_logits``); ``similarity_raw`` is s = σ(cos/τ) before smoothing; ``moment_center`` is c*;
    ``center_frame`` is where BAP started (c*, or the middle keyframe when MCS fell back to uniform);
    ``answers`` are the LMM's [FIND] and [SEG] answers.
    """

    prompt: str
    num_frames: int
    width: int
    height: int
    fps: float
    moment: Moment | None
    moment_reason: str | None
    center_frame: int
    keyframes: list[int]
    similarity: list[float] | None
    tracks: list[Track]
    model: dict[str, Any]
    options: dict[str, Any]
    timings: dict[str, float]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    frame_names: list[str] | None = None
    moment_center: int | None = None
    similarity_raw: list[float] | None = None
    answers: dict[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.moment is None:
            data["moment"] = None
        data["tracks"] = [{"label": t.label, "shapes": [asdict(s) for s in t.shapes]} for t in self.tracks]
        return data

    def to_task_frames(self, numbers: list[int]) -> dict[str, Any]:
        """``to_dict`` with frames renumbered from indices into ``numbers`` (CVAT task frame numbers)."""
        data = self.to_dict()
        data["frames"] = list(numbers)
        data["center_frame"] = numbers[self.center_frame]
        if self.moment_center is not None:
            data["moment_center"] = numbers[self.moment_center]
        data["keyframes"] = [numbers[k] for k in self.keyframes]
        if data["moment"]:
            data["moment"]["start_frame"] = numbers[self.moment.start_frame]
            data["moment"]["end_frame"] = numbers[self.moment.end_frame]
        for track in data["tracks"]:
            for shape in track["shapes"]:
                shape["frame"] = numbers[shape["frame"]]
        for decision in data["decisions"]:
            decision["frame"] = numbers[decision["frame"]]
            decision["removed"] = [numbers[f] for f in decision.get("removed", [])]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentResult:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["moment"] = Moment(**data["moment"]) if data.get("moment") else None
        values["tracks"] = [Track(t["label"], [Shape(**s) for s in t["shapes"]]) for t in data["tracks"]]
        return cls(**values)
