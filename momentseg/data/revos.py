"""ReVOS: ``JPEGImages/<vid>/``, ``mask_dict.json``, ``meta_expressions_{split}_.json`` (MeViS-style with
``type_id``: 0 referring, 1 reasoning, 2 no target)."""

from __future__ import annotations

from pathlib import Path

from momentseg.data.entries import ReferringEntry
from momentseg.data.mevis import MaskDict, read_expressions

DEFAULT_SPLIT = "train"
KIND = "revos"
FPS = 6.0


def read(root: Path, split: str) -> list[ReferringEntry]:
    mask_path = root / "mask_dict.json"
    return read_expressions(
        KIND,
        root / f"meta_expressions_{split}_.json",
        root / "JPEGImages",
        MaskDict(mask_path) if mask_path.exists() else None,
        FPS,
    )
