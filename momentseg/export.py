"""Exports: COCO 1.0 that CVAT's importer turns back into the same per-frame masks and polygon tracks,
YouTube-VIS JSON, and RefVOS PNG trees named by the source frames (what the MeViS/DAVIS/Ref-YouTube-VOS
scoring scripts read: ``Annotations/<video>/<expression>/<frame>.png``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from momentseg.errors import InvalidInputError
from momentseg.masks import bbox, to_coco_rle
from momentseg.result import SegmentResult, Shape, shape_mask
from momentseg.video import IMAGE_SUFFIXES

FORMATS = ("coco", "youtube-vis", "refvos-png")


@dataclass
class ExportObject:
    """One object: at most one shape per frame. ``track`` objects are CVAT tracks (polygon tracks written
    with ``track_id`` and ``keyframe`` so CVAT imports them as tracks); the others are per-frame shapes."""

    object_id: int
    label: str
    prompt: str
    track: bool
    shapes: dict[int, Shape]
    attributes: dict[int, dict[str, str]] = field(default_factory=dict)  # frame -> the task's attribute values


@dataclass
class ExportSet:
    """What an export writes: the frames (``frame_names`` None for a video, whose frames have no files)
    and the objects."""

    width: int
    height: int
    num_frames: int
    frame_names: list[str] | None
    objects: list[ExportObject]
    prompt: str = ""
    moment: dict[str, int] | None = None

    @classmethod
    def from_result(cls, result: SegmentResult) -> ExportSet:
        """A pipeline result: one object; polygons were a polygon track, masks per-frame shapes."""
        objects = [
            ExportObject(
                index,
                track.label,
                result.prompt,
                any(s.type == "polygon" for s in track.shapes),
                {s.frame: s for s in track.shapes if not s.outside},
            )
            for index, track in enumerate(result.tracks)
        ]
        moment = (
            None
            if result.moment is None
            else {"start_frame": result.moment.start_frame, "end_frame": result.moment.end_frame}
        )
        return cls(result.width, result.height, result.num_frames, result.frame_names, objects, result.prompt, moment)


def safe_name(name: str, fallback: str = "video") -> str:
    """A single path component: letters, digits, '.', '_' and '-' only, never '.' or '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or fallback


def _inside(root: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InvalidInputError(f"refusing to write '{path}': it is outside the output folder '{root}'")
    return path


def coco_file_names(data: ExportSet) -> list[str]:
    """Image names CVAT's COCO importer matches to frames: ``frame_000000.jpg`` for a video task, the
    source image names otherwise."""
    if data.frame_names is None:
        return [f"frame_{i:06d}.jpg" for i in range(data.num_frames)]
    return [n if Path(n).suffix.lower() in IMAGE_SUFFIXES else f"{n}.jpg" for n in data.frame_names]


def source_frame_stems(data: ExportSet) -> list[str]:
    """Frame names as the benchmarks write them: the source image's name without folder and suffix, or the
    5-digit frame number for a video (DAVIS, YouTube-VOS and MeViS name video frames ``00000``…)."""
    if data.frame_names is None:
        return [f"{i:05d}" for i in range(data.num_frames)]
    return [
        safe_name(Path(n).stem if Path(n).suffix.lower() in IMAGE_SUFFIXES else Path(n).name, f"{i:05d}")
        for i, n in enumerate(data.frame_names)
    ]


def _mask(data: ExportSet, obj: ExportObject, frame: int) -> np.ndarray | None:
    shape = obj.shapes.get(frame)
    if shape is None or shape.outside:
        return None
    mask = shape_mask(shape, data.width, data.height)
    return mask if mask.any() else None


def _box(mask: np.ndarray) -> list[int]:
    """[x, y, width, height] of a mask from :func:`_mask`, which is never empty."""
    box = bbox(mask)
    assert box is not None, "_mask returns only non-empty masks"
    return list(box)


def _categories(data: ExportSet) -> dict[str, int]:
    labels = sorted({o.label for o in data.objects}) or ["object"]
    return {label: i + 1 for i, label in enumerate(labels)}


def to_coco(data: ExportSet) -> dict:
    """COCO 1.0 instances as CVAT reads them: masks as RLE (``iscrowd: 1``) without ``track_id`` — CVAT makes
    per-frame mask shapes of them —, a track's polygons with ``track_id`` and ``keyframe`` (a polygon track)."""
    names = coco_file_names(data)
    category = _categories(data)
    annotations: list[dict] = []
    for track_id, obj in enumerate(data.objects):
        for frame in sorted(obj.shapes):
            shape = obj.shapes[frame]
            mask = _mask(data, obj, frame)
            if mask is None:
                continue
            attributes: dict = {"occluded": False, **obj.attributes.get(frame, {})}
            if obj.track:
                attributes.update(track_id=track_id, keyframe=shape.keyframe)
            segmentation: list[list[float]] | dict
            if shape.type == "polygon":
                segmentation, crowd = [[float(p) for p in shape.points]], 0
            else:
                segmentation, crowd = to_coco_rle(mask), 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame + 1,
                    "category_id": category[obj.label],
                    "segmentation": segmentation,
                    "area": int(mask.sum()),
                    "bbox": _box(mask),
                    "iscrowd": crowd,
                    "attributes": attributes,
                }
            )
    return {
        "info": {"description": "momentseg", "prompt": data.prompt, "moment": data.moment},
        "licenses": [],
        "categories": [{"id": i, "name": label, "supercategory": ""} for label, i in category.items()],
        "images": [
            {"id": i + 1, "file_name": name, "width": data.width, "height": data.height} for i, name in enumerate(names)
        ],
        "annotations": annotations,
    }


def to_youtube_vis(data: ExportSet, video_name: str = "video") -> dict:
    """YouTube-VIS: per object, one segmentation, box and area per frame (null where absent); ``file_names``
    name the source frames (``<video>/<frame>.jpg``)."""
    video = safe_name(video_name)
    category = _categories(data)
    annotations = []
    for index, obj in enumerate(data.objects):
        masks = [_mask(data, obj, frame) for frame in range(data.num_frames)]
        annotations.append(
            {
                "id": index + 1,
                "video_id": 1,
                "category_id": category[obj.label],
                "iscrowd": 0,
                "width": data.width,
                "height": data.height,
                "length": 1,
                "segmentations": [None if m is None else to_coco_rle(m) for m in masks],
                "bboxes": [None if m is None else _box(m) for m in masks],
                "areas": [None if m is None else int(m.sum()) for m in masks],
            }
        )
    return {
        "info": {"description": "momentseg", "prompt": data.prompt},
        "categories": [{"id": i, "name": label, "supercategory": ""} for label, i in category.items()],
        "videos": [
            {
                "id": 1,
                "name": video,
                "width": data.width,
                "height": data.height,
                "length": data.num_frames,
                "file_names": [f"{video}/{stem}.jpg" for stem in source_frame_stems(data)],
            }
        ],
        "annotations": annotations,
    }


def write_refvos_pngs(
    data: ExportSet, out: str | Path, video_name: str = "video", expression_ids: list[str] | None = None
) -> Path:
    """``Annotations/<video>/<expression>/<frame>.png`` (0/255 grey, one expression per object, every frame)
    and ``meta_expressions.json``, as the Ref-YouTube-VOS and MeViS evaluation scripts read them."""
    root = Path(out)
    video = safe_name(video_name)
    stems = source_frame_stems(data)
    objects = data.objects or [ExportObject(0, "object", data.prompt, False, {})]
    ids = expression_ids or [str(o.object_id) for o in objects]
    if len(ids) != len(objects):
        raise InvalidInputError(f"one expression id per object is needed: {len(objects)} objects, {len(ids)} ids")
    empty = np.zeros((data.height, data.width), bool)
    expressions = {}
    for obj, expression_id in zip(objects, ids, strict=True):
        expression = safe_name(expression_id, "0")
        folder = _inside(root, root / "Annotations" / video / expression)
        folder.mkdir(parents=True, exist_ok=True)
        for frame, stem in enumerate(stems):
            mask = _mask(data, obj, frame)
            Image.fromarray(((mask if mask is not None else empty) * 255).astype(np.uint8), mode="L").save(
                folder / f"{stem}.png"
            )
        expressions[expression] = {"exp": obj.prompt or data.prompt}
    meta = {"videos": {video: {"expressions": expressions, "frames": stems}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta, indent=2))
    return root


def export(data: ExportSet | SegmentResult, fmt: str, out: str | Path, video_name: str = "video") -> Path:
    """Write ``data`` in ``fmt`` to ``out`` (a file for JSON formats, a folder for PNG trees)."""
    if isinstance(data, SegmentResult):
        data = ExportSet.from_result(data)
    out = Path(out)
    if fmt == "refvos-png":
        return write_refvos_pngs(data, out, video_name)
    if fmt == "coco":
        payload = to_coco(data)
    elif fmt == "youtube-vis":
        payload = to_youtube_vis(data, video_name)
    else:
        raise InvalidInputError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload))
    return out
