"""MeViS: ``<split>/JPEGImages/<vid>/<frame>.jpg``, ``<split>/meta_expressions.json``, ``<split>/mask_dict.json``.

An expression may refer to several objects (``anno_id`` list); its mask is their union, empty where the RLE
is null. ``valid`` has no ``mask_dict.json``: entries without ground truth (predictions only).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from momentseg.data.entries import DataError, FrameFiles, ReferringEntry, frame_files, read_json
from momentseg.masks import from_coco_rle

DEFAULT_SPLIT = "train"
KIND = "mevis"
FPS = 6.0  # MeViS frames are sampled at 6 FPS


class MaskDict:
    """``mask_dict.json`` read once, on the first mask asked for."""

    def __init__(self, path: Path):
        self.path = path

    @cached_property
    def data(self) -> dict:
        return read_json(self.path, "mask dictionary")

    def union(self, anno_ids, index: int, size: tuple[int, int], entry: str) -> np.ndarray:
        mask = np.zeros(size, bool)
        data = self.data
        for anno_id in anno_ids:
            rles = data.get(str(anno_id))
            if rles is None:
                raise DataError(f"{entry}: annotation {anno_id} is missing from '{self.path}'")
            if index >= len(rles):
                raise DataError(
                    f"{entry}: annotation {anno_id} in '{self.path}' has {len(rles)} frames, "
                    f"frame {index} was asked for"
                )
            if rles[index] is not None:
                decoded = from_coco_rle(rles[index])
                if decoded.shape != size:
                    raise DataError(
                        f"{entry}: annotation {anno_id} frame {index} is {decoded.shape}, the frame is {size}"
                    )
                mask |= decoded
        return mask


def read_expressions(
    dataset: str, meta_path: Path, image_root: Path, mask_dict: MaskDict | None, fps: float = FPS
) -> list[ReferringEntry]:
    """Entries from a MeViS-style ``meta_expressions.json`` (shared with ReVOS)."""
    meta = read_json(meta_path, dataset)
    if "videos" not in meta:
        raise DataError(f"'{meta_path}' has no 'videos' section")
    entries = []
    for video_id, video in meta["videos"].items():
        where = f"{meta_path.name}[{video_id}]"
        names = tuple(str(n) for n in video.get("frames", []))
        if not names:
            raise DataError(f"{where}: no 'frames' listed")
        files = frame_files(image_root / video_id, names, where)
        opener = _opener(files, fps, where)
        for exp_id, expression in video.get("expressions", {}).items():
            entry = f"{where}[{exp_id}]"
            if "exp" not in expression:
                raise DataError(f"{entry}: expression text 'exp' missing")
            load_mask = None
            if mask_dict is not None:
                anno_ids = expression.get("anno_id")
                if anno_ids is None:
                    raise DataError(f"{entry}: 'anno_id' missing (needed with {mask_dict.path.name})")
                load_mask = _mask_loader(mask_dict, list(anno_ids), opener, entry)
            entries.append(
                ReferringEntry(
                    dataset,
                    video_id,
                    str(exp_id),
                    str(expression["exp"]).strip(),
                    names,
                    opener,
                    load_mask,
                    type_id=expression.get("type_id"),
                    fps=fps,
                )
            )
    return entries


def _opener(files, fps, where):
    return lambda: FrameFiles(files, fps, where)


def _mask_loader(mask_dict: MaskDict, anno_ids, opener, entry):
    size: list[tuple[int, int]] = []

    def load(index: int) -> np.ndarray:
        if not size:
            size.append(opener()[0].shape[:2])
        return mask_dict.union(anno_ids, index, size[0], entry)

    return load


def read(root: Path, split: str) -> list[ReferringEntry]:
    folder = root / split
    mask_path = folder / "mask_dict.json"
    return read_expressions(
        KIND,
        folder / "meta_expressions.json",
        folder / "JPEGImages",
        MaskDict(mask_path) if mask_path.exists() else None,
    )
