"""A team's own data, exported from CVAT by ``momentseg export``: COCO 1.0 or YouTube-VIS JSON files whose
``info`` carries the prompt (and the moment), beside the frames they name.

Layout: ``ROOT/*.json`` (one export per video and prompt), frames at ``ROOT/images/<file_name>`` (COCO,
as CVAT exports images) or ``ROOT/JPEGImages/<file_name>`` (YouTube-VIS); ``ROOT/<file_name>`` also works.
Every object of an export is one expression: COCO annotations are grouped by ``attributes.track_id`` (polygon
tracks) or else by category (mask shapes, one object per label); an object's prompt is its ``prompt``
attribute when the task has one, else the export's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pycocotools import mask as coco_mask

from momentseg.data.entries import DataError, FrameFiles, ReferringEntry, read_json
from momentseg.masks import from_coco_rle

DEFAULT_SPLIT = "all"
KIND = "cvat"
FPS = 30.0


def _frame_path(root: Path, sub: str, name: str, entry: str) -> Path:
    for path in (root / sub / name, root / name):
        if path.exists():
            return path
    raise DataError(f"{entry}: frame '{name}' is neither in '{root / sub}' nor in '{root}'")


def _moment(info: dict, entry: str) -> tuple[int, int] | None:
    moment = info.get("moment")
    if not moment:
        return None
    try:
        return int(moment["start_frame"]), int(moment["end_frame"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{entry}: info.moment needs integer 'start_frame' and 'end_frame'") from None


def _prompt(info: dict, entry: str, data: dict) -> str:
    prompt = str(info.get("prompt") or "").strip()
    annotations = data.get("annotations", [])
    per_object = [a for a in annotations if a.get("prompt") or (a.get("attributes") or {}).get("prompt")]
    if not prompt and len(per_object) < len(annotations):
        raise DataError(f"{entry}: info.prompt is missing: export with momentseg export (it writes the prompt)")
    return prompt


def _decode(segmentation, size: tuple[int, int], entry: str) -> np.ndarray:
    """A COCO segmentation (RLE, or a list of polygons as CVAT writes a polygon track) as a bool mask."""
    if segmentation is None:
        return np.zeros(size, bool)
    try:
        if isinstance(segmentation, list):
            rles = coco_mask.frPyObjects([list(map(float, p)) for p in segmentation], *size)
            return coco_mask.decode(coco_mask.merge(rles)).astype(bool)
        mask = from_coco_rle(segmentation)
    except (ValueError, TypeError) as error:
        raise DataError(f"{entry}: unreadable segmentation ({error})") from None
    if mask.shape != size:
        raise DataError(f"{entry}: a mask is {mask.shape}, the frames are {size}")
    return mask


def _read_coco(path: Path, data: dict) -> list[ReferringEntry]:
    where = path.name
    prompt, moment = _prompt(data.get("info", {}), where, data), _moment(data.get("info", {}), where)
    images = sorted(data.get("images", []), key=lambda image: image["id"])
    if not images:
        raise DataError(f"{where}: no images")
    index_of = {image["id"]: i for i, image in enumerate(images)}
    size = (int(images[0]["height"]), int(images[0]["width"]))
    files = [_frame_path(path.parent, "images", image["file_name"], where) for image in images]
    objects: dict[str, dict[int, object]] = {}
    prompts: dict[str, str] = {}
    for annotation in data.get("annotations", []):
        attributes = annotation.get("attributes") or {}
        track = attributes.get("track_id")
        key = f"track_{track}" if track is not None else f"category_{annotation['category_id']}"
        if annotation["image_id"] not in index_of:
            raise DataError(f"{where}: annotation {annotation.get('id')} names an unknown image")
        objects.setdefault(key, {})[index_of[annotation["image_id"]]] = annotation["segmentation"]
        prompts.setdefault(key, str(attributes.get("prompt") or prompt))
    names = tuple(Path(f).stem for f in files)
    return [
        ReferringEntry(
            KIND,
            path.stem,
            key,
            prompts[key],
            names,
            _opener(files, where),
            _loader(frames, size, f"{where}[{key}]"),
            moment=moment,
            fps=FPS,
        )
        for key, frames in sorted(objects.items())
    ]


def _read_youtube_vis(path: Path, data: dict) -> list[ReferringEntry]:
    where = path.name
    prompt, moment = _prompt(data.get("info", {}), where, data), _moment(data.get("info", {}), where)
    entries = []
    videos = {video["id"]: video for video in data["videos"]}
    for annotation in data.get("annotations", []):
        video = videos.get(annotation["video_id"])
        if video is None:
            raise DataError(f"{where}: annotation {annotation.get('id')} names an unknown video")
        files = [_frame_path(path.parent, "JPEGImages", name, where) for name in video["file_names"]]
        size = (int(video["height"]), int(video["width"]))
        segmentations = dict(enumerate(annotation["segmentations"]))
        text = str(annotation.get("prompt") or prompt)
        entries.append(
            ReferringEntry(
                KIND,
                str(video["name"]),
                str(annotation["id"]),
                text,
                tuple(Path(f).stem for f in files),
                _opener(files, where),
                _loader(segmentations, size, f"{where}[{annotation['id']}]"),
                moment=moment,
                fps=FPS,
            )
        )
    return entries


def _opener(files, where):
    return lambda: FrameFiles(files, FPS, where)


def _loader(rle_by_frame: dict, size, entry):
    return lambda index: _decode(rle_by_frame.get(index), size, entry)


def read(root: Path, split: str) -> list[ReferringEntry]:
    """Every export JSON directly in ``root`` (``split`` is a sub-folder, or ``all`` for ``root`` itself)."""
    folder = root if split == DEFAULT_SPLIT else root / split
    exports = sorted(folder.glob("*.json"))
    if not exports:
        raise DataError(f"{KIND}: no export JSON files in '{folder}'")
    entries = []
    for path in exports:
        data = read_json(path, KIND)
        try:
            if "videos" in data:
                entries += _read_youtube_vis(path, data)
            elif "images" in data:
                entries += _read_coco(path, data)
            else:
                raise DataError(f"'{path}' is neither a COCO nor a YouTube-VIS export")
        except (KeyError, TypeError) as error:
            raise DataError(f"'{path}': malformed export, missing {error}") from None
    return entries
