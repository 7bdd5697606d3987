"""Exports of a result: COCO 1.0 (CVAT-importable as tracks), YouTube-VIS JSON, RefVOS PNG trees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from momentseg.errors import InvalidInputError
from momentseg.masks import bbox, to_coco_rle
from momentseg.result import SegmentResult, shape_mask
from momentseg.video import IMAGE_SUFFIXES

FORMATS = ("coco", "youtube-vis", "refvos-png")


def safe_name(name: str, fallback: str = "video") -> str:
    """A single path component: letters, digits, '.', '_' and '-' only, never '.' or '..'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return cleaned or fallback


def _inside(root: Path, path: Path) -> Path:
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InvalidInputError(f"refusing to write '{path}': it is outside the output folder '{root}'")
    return path


def frame_file_names(result: SegmentResult) -> list[str]:
    """CVAT's frame file names for a video task (``frame_000000.jpg``), or the source image names."""
    if result.frame_names and not all(n.isdigit() for n in result.frame_names):
        return [n if Path(n).suffix.lower() in IMAGE_SUFFIXES else f"{n}.jpg" for n in result.frame_names]
    return [f"frame_{i:06d}.jpg" for i in range(result.num_frames)]


def _frame_masks(result: SegmentResult, track_index: int):
    track = result.tracks[track_index]
    by_frame = {s.frame: s for s in track.shapes}
    for frame in range(result.num_frames):
        shape = by_frame.get(frame)
        mask = None if shape is None or shape.outside else shape_mask(shape, result.width, result.height)
        yield frame, shape, mask


def to_coco(result: SegmentResult) -> dict:
    """COCO 1.0 instances: one RLE annotation per frame and object, ``attributes.track_id`` as CVAT reads it."""
    names = frame_file_names(result)
    labels = sorted({t.label for t in result.tracks}) or ["object"]
    category = {label: i + 1 for i, label in enumerate(labels)}
    annotations = []
    for track_id, track in enumerate(result.tracks):
        for frame, shape, mask in _frame_masks(result, track_id):
            if mask is None or not mask.any():
                continue
            x, y, w, h = bbox(mask)
            annotations.append({
                "id": len(annotations) + 1, "image_id": frame + 1, "category_id": category[track.label],
                "segmentation": to_coco_rle(mask), "area": int(mask.sum()), "bbox": [x, y, w, h], "iscrowd": 1,
                "attributes": {"track_id": track_id, "keyframe": shape.keyframe, "occluded": False,
                               "score": shape.score},
            })
    moment = None if result.moment is None else {"start_frame": result.moment.start_frame,
                                                "end_frame": result.moment.end_frame}
    return {
        "info": {"description": "momentseg", "prompt": result.prompt, "moment": moment},
        "licenses": [],
        "categories": [{"id": i, "name": label, "supercategory": ""} for label, i in category.items()],
        "images": [{"id": i + 1, "file_name": name, "width": result.width, "height": result.height}
                   for i, name in enumerate(names)],
        "annotations": annotations,
    }


def to_youtube_vis(result: SegmentResult, video_name: str = "video") -> dict:
    """YouTube-VIS: per object, one segmentation, box and area per frame (null where absent)."""
    names = frame_file_names(result)
    labels = sorted({t.label for t in result.tracks}) or ["object"]
    category = {label: i + 1 for i, label in enumerate(labels)}
    annotations = []
    for track_id, track in enumerate(result.tracks):
        segmentations, boxes, areas = [], [], []
        for _, _, mask in _frame_masks(result, track_id):
            present = mask is not None and mask.any()
            segmentations.append(to_coco_rle(mask) if present else None)
            boxes.append(list(bbox(mask)) if present else None)
            areas.append(int(mask.sum()) if present else None)
        annotations.append({
            "id": track_id + 1, "video_id": 1, "category_id": category[track.label], "iscrowd": 0,
            "width": result.width, "height": result.height, "length": 1,
            "segmentations": segmentations, "bboxes": boxes, "areas": areas,
        })
    return {
        "info": {"description": "momentseg", "prompt": result.prompt},
        "categories": [{"id": i, "name": label, "supercategory": ""} for label, i in category.items()],
        "videos": [{"id": 1, "name": safe_name(video_name), "width": result.width, "height": result.height,
                    "length": result.num_frames,
                    "file_names": [f"{safe_name(video_name)}/{n}" for n in names]}],
        "annotations": annotations,
    }


def write_refvos_pngs(result: SegmentResult, out: str | Path, video_name: str = "video",
                      expression_id: str = "0") -> Path:
    """``Annotations/<video>/<expression>/<frame>.png`` (0/255 grey) and ``meta_expressions.json``,
    the layout the Ref-YouTube-VOS and MeViS evaluation scripts read."""
    root = Path(out)
    video, expression = safe_name(video_name), safe_name(expression_id, "0")
    folder = _inside(root, root / "Annotations" / video / expression)
    folder.mkdir(parents=True, exist_ok=True)
    stems = [Path(n).stem for n in frame_file_names(result)]
    empty = np.zeros((result.height, result.width), bool)
    masks = _frame_masks(result, 0) if result.tracks else ((f, None, None) for f in range(result.num_frames))
    for frame, _, mask in masks:
        Image.fromarray(((mask if mask is not None else empty) * 255).astype(np.uint8), mode="L").save(
            folder / f"{stems[frame]}.png")
    meta = {"videos": {video: {"expressions": {expression: {"exp": result.prompt}}, "frames": stems}}}
    (root / "meta_expressions.json").write_text(json.dumps(meta, indent=2))
    return root


def export(result: SegmentResult, fmt: str, out: str | Path, video_name: str = "video") -> Path:
    """Write ``result`` in ``fmt`` to ``out`` (a file for JSON formats, a folder for PNG trees)."""
    out = Path(out)
    if fmt == "refvos-png":
        return write_refvos_pngs(result, out, video_name)
    if fmt == "coco":
        data = to_coco(result)
    elif fmt == "youtube-vis":
        data = to_youtube_vis(result, video_name)
    else:
        raise InvalidInputError(f"unknown export format '{fmt}': use one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data))
    return out
