"""Ref-YouTube-VOS: ``<split>/JPEGImages/<vid>/<frame>.jpg``, ``<split>/Annotations/<vid>/<frame>.png``
(palette PNG, pixel = object id), ``meta_expressions/<split>/meta_expressions.json`` (one object per
expression). ``valid``/``test`` have no Annotations: entries without ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from momentseg.data.entries import DataError, FrameFiles, ReferringEntry, frame_files, read_json
from momentseg.errors import plain_reason

DEFAULT_SPLIT = "train"
KIND = "ref-youtube-vos"
FPS = 6.0  # every 5th frame of 30 FPS video


def _palette_mask(path: Path, object_id: int, entry: str) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{entry}: annotation '{path}' does not exist")
    try:
        with Image.open(path) as image:
            ids = np.asarray(image)  # palette indices (P mode): the object ids
    except OSError as error:
        raise DataError(f"{entry}: '{path}' is not a readable PNG ({plain_reason(error)})") from None
    return ids == object_id


def read(root: Path, split: str) -> list[ReferringEntry]:
    meta_path = root / "meta_expressions" / split / "meta_expressions.json"
    meta = read_json(meta_path, KIND)
    annotations = root / split / "Annotations"
    entries = []
    for video_id, video in meta.get("videos", {}).items():
        where = f"{meta_path.name}[{video_id}]"
        names = tuple(str(n) for n in video.get("frames", []))
        if not names:
            raise DataError(f"{where}: no 'frames' listed")
        files = frame_files(root / split / "JPEGImages" / video_id, names, where)
        for exp_id, expression in video.get("expressions", {}).items():
            entry = f"{where}[{exp_id}]"
            load_mask = None
            if annotations.is_dir():
                try:
                    object_id = int(expression["obj_id"])
                except (KeyError, ValueError):
                    raise DataError(f"{entry}: needs an integer 'obj_id'") from None
                load_mask = _loader(annotations / video_id, names, object_id, entry)
            entries.append(
                ReferringEntry(
                    KIND,
                    video_id,
                    str(exp_id),
                    str(expression.get("exp", "")).strip(),
                    names,
                    _opener(files, where),
                    load_mask,
                    fps=FPS,
                )
            )
    return entries


def _opener(files, where):
    return lambda: FrameFiles(files, FPS, where)


def _loader(folder: Path, names, object_id: int, entry: str):
    return lambda index: _palette_mask(folder / f"{names[index]}.png", object_id, entry)
