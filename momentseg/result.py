"""The result schema shared by ``result.json``, the serverless function's response and the exports."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, TypeGuard

import numpy as np

from momentseg.errors import InvalidInputError
from momentseg.grounding import moment_seconds
from momentseg.masks import Polygon, from_cvat_rle, polygons_to_mask

# what a result read back from a file may declare: an export allocates one frame's mask at a time and
# visits every frame, so a small file cannot ask for gigabytes or hours
MAX_RESULT_FRAMES = 1_000_000
MAX_RESULT_PIXELS = 8192 * 8192


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
        if self.moment is not None:
            start, end = numbers[self.moment.start_frame], numbers[self.moment.end_frame]
            # seconds are the video's, as the frames are: a run over frames 20-39 is not at 0 s
            start_sec, end_sec = moment_seconds(start, end, self.fps)
            data["moment"].update(
                start_frame=start, end_frame=end, start_sec=round(start_sec, 4), end_sec=round(end_sec, 4)
            )
        for track in data["tracks"]:
            for shape in track["shapes"]:
                shape["frame"] = numbers[shape["frame"]]
        for decision in data["decisions"]:
            decision["frame"] = numbers[decision["frame"]]
            decision["removed"] = [numbers[f] for f in decision.get("removed", [])]
        return data

    @classmethod
    def from_dict(cls, data: Any) -> SegmentResult:
        """A result read back from JSON, checked field by field (InvalidInputError naming the field)."""
        if not isinstance(data, dict):
            raise InvalidInputError(f"a result is a JSON object, got a JSON {_json_type(data)}")
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise InvalidInputError(f"the result lacks {', '.join(missing)}")
        num_frames = _whole(data, "num_frames", 1, MAX_RESULT_FRAMES)
        width, height = _whole(data, "width", 1, MAX_RESULT_PIXELS), _whole(data, "height", 1, MAX_RESULT_PIXELS)
        if width * height > MAX_RESULT_PIXELS:
            raise InvalidInputError(f"the result's frames are {width}x{height}; at most {MAX_RESULT_PIXELS} pixels")
        _whole(data, "center_frame", 0, num_frames - 1)
        _check(isinstance(data["prompt"], str), "prompt", "text")
        _check(_is_number(data["fps"]) and data["fps"] > 0, "fps", "a positive number")
        _check(
            isinstance(data["keyframes"], list)
            and all(_is_whole(k) and 0 <= k < num_frames for k in data["keyframes"]),
            "keyframes",
            f"a list of frames from 0 to {num_frames - 1}",
        )
        for key in ("similarity", "similarity_raw"):
            value = data.get(key)
            _check(
                value is None or (isinstance(value, list) and all(_is_number(v) for v in value)),
                key,
                "null or a list of numbers",
            )
        _check(isinstance(data["tracks"], list), "tracks", "a list")
        values = {k: v for k, v in data.items() if k in names}
        values["moment"] = _moment(data["moment"], num_frames)
        values["tracks"] = [_track(t, i, num_frames) for i, t in enumerate(data["tracks"])]
        return cls(**values)


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _is_whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _check(ok: bool, field_name: str, expected: str) -> None:
    if not ok:
        raise InvalidInputError(f"the result's '{field_name}' must be {expected}")


def _whole(data: dict, key: str, low: int, high: int) -> int:
    value = data.get(key)
    if not (_is_whole(value) and low <= value <= high):
        raise InvalidInputError(f"the result's '{key}' must be a whole number from {low} to {high}")
    return value


def _moment(value: Any, num_frames: int) -> Moment | None:
    if not value:
        return None
    _check(
        isinstance(value, dict) and {f.name for f in fields(Moment)} <= value.keys(),
        "moment",
        "null or an object with start_frame, end_frame, start_sec, end_sec and score",
    )
    start, end = _whole(value, "start_frame", 0, num_frames - 1), _whole(value, "end_frame", 0, num_frames - 1)
    _check(
        start <= end and all(_is_number(value[k]) for k in ("start_sec", "end_sec", "score")),
        "moment",
        "a range with start_frame ≤ end_frame and numbers for its seconds and score",
    )
    return Moment(start, end, value["start_sec"], value["end_sec"], value["score"])


def _track(value: Any, index: int, num_frames: int) -> Track:
    where = f"tracks[{index}]"
    _check(
        isinstance(value, dict) and isinstance(value.get("label"), str) and isinstance(value.get("shapes"), list),
        where,
        "an object with a label (text) and shapes (a list)",
    )
    shapes = []
    for number, shape in enumerate(value["shapes"]):
        place = f"{where}.shapes[{number}]"
        _check(
            isinstance(shape, dict) and {f.name for f in fields(Shape)} <= shape.keys(),
            place,
            "an object with frame, type, points, keyframe, outside and score",
        )
        _check(
            _is_whole(shape["frame"]) and 0 <= shape["frame"] < num_frames,
            f"{place}.frame",
            f"a frame from 0 to {num_frames - 1}",
        )
        _check(shape["type"] in ("mask", "polygon"), f"{place}.type", "'mask' or 'polygon'")
        _check(
            isinstance(shape["points"], list) and all(_is_number(v) for v in shape["points"]),
            f"{place}.points",
            "a list of numbers",
        )
        _check(
            isinstance(shape["keyframe"], bool) and isinstance(shape["outside"], bool),
            place,
            "an object whose keyframe and outside are true or false",
        )
        _check(_is_number(shape["score"]), f"{place}.score", "a number")
        if shape["type"] == "polygon":
            _check(
                len(shape["points"]) >= 6 and len(shape["points"]) % 2 == 0,
                f"{place}.points",
                "x, y pairs of at least 3 polygon vertices",
            )
        shapes.append(Shape(**{f.name: shape[f.name] for f in fields(Shape)}))
    return Track(value["label"], shapes)
