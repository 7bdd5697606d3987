"""Synthetic clips a tiny model can learn on a CPU, written in the official layouts.

Coloured shapes on a dark background; in each clip one *target* shape does something during a moment
(``appears``: visible only then; ``moves``: still before and after, sliding during it) while distractor
shapes of other colours and kinds stay put. The expression names the target's colour, kind and action
("the red circle moves"); the moment is where the action happens. The same clips are written as

* MeViS (RefVOS): ``mevis/{train,valid_u}/JPEGImages/<vid>/<frame>.jpg``, ``meta_expressions.json``,
  ``mask_dict.json`` (the target's mask on every frame where it is visible);
* Charades-STA (TSG): ``charades-sta/charades_sta_{train,test}.txt`` and ``Charades_v1_{split}.csv``, frames
  in ``videos_1FPS/<vid>/`` (one frame per second, as the official TSG evaluation reads them).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from momentseg.masks import to_coco_rle

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (40, 90, 235), "yellow": (235, 220, 40)}
SHAPES = ("circle", "square", "triangle")
ACTIONS = ("appears", "moves")
BACKGROUND = 50


@dataclass(frozen=True)
class SyntheticOptions:
    frames: int = 16
    size: int = 64
    radius: int = 11
    distractors: int = 1
    actions: tuple[str, ...] = ACTIONS
    min_moment: int = 3
    max_moment_share: float = 0.4  # moments at most 40 % of the clip: predicting the whole clip scores IoU < 0.5


@dataclass(frozen=True)
class Clip:
    name: str
    frames: list[np.ndarray]
    masks: list[np.ndarray]
    expression: str
    moment: tuple[int, int]  # inclusive frames


def _draw(frame: np.ndarray, shape: str, colour, centre, radius: int) -> None:
    x, y = int(round(centre[0])), int(round(centre[1]))
    if shape == "circle":
        cv2.circle(frame, (x, y), radius, colour, -1)
    elif shape == "square":
        cv2.rectangle(frame, (x - radius, y - radius), (x + radius, y + radius), colour, -1)
    else:
        points = np.array([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], np.int32)
        cv2.fillPoly(frame, [points], colour)


def make_clip(rng: np.random.Generator, name: str, options: SyntheticOptions) -> Clip:
    """One clip: a target doing its action in a random moment, plus distractors of other colours."""
    t, size, r = options.frames, options.size, options.radius
    kinds = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.choice(len(kinds), 1 + options.distractors, replace=False)
    (colour, shape), *others = [kinds[i] for i in chosen]
    others = [o for o in others if o[0] != colour] or others  # prefer distractors of another colour
    action = str(rng.choice(options.actions))
    longest = max(options.min_moment, int(options.max_moment_share * t))
    length = int(rng.integers(options.min_moment, longest + 1))
    start = int(rng.integers(0, t - length + 1))
    moment = (start, start + length - 1)
    low, high = r + 1, size - r - 1
    path_start = rng.uniform(low, high, 2)
    path_end = rng.uniform(low, high, 2)
    while np.linalg.norm(path_end - path_start) < size / 3:
        path_end = rng.uniform(low, high, 2)
    spots = [rng.uniform(low, high, 2) for _ in others]
    frames, masks = [], []
    for i in range(t):
        frame = np.full((size, size, 3), BACKGROUND, np.uint8)
        for (other_colour, other_shape), spot in zip(others, spots):
            _draw(frame, other_shape, COLOURS[other_colour], spot, r)
        progress = np.clip((i - start) / max(length - 1, 1), 0, 1)
        centre = path_start + (path_end - path_start) * progress if action == "moves" else path_start
        visible = action != "appears" or moment[0] <= i <= moment[1]
        mask = np.zeros((size, size), np.uint8)
        if visible:
            _draw(frame, shape, COLOURS[colour], centre, r)
            _draw(mask, shape, 1, centre, r)
        frames.append(frame)
        masks.append(mask.astype(bool))
    return Clip(name, frames, masks, f"the {colour} {shape} {action}", moment)


def _write_frames(folder: Path, frames: list[np.ndarray]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}" for i in range(len(frames))]
    for name, frame in zip(names, frames):
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return names


def write_split(out: Path, clips: list[Clip], mevis_split: str, charades_split: str) -> None:
    """Write ``clips`` as one MeViS split and one Charades-STA split."""
    mevis = out / "mevis" / mevis_split
    charades = out / "charades-sta"
    meta, mask_dict, lines, durations = {"videos": {}}, {}, [], []
    for anno_id, clip in enumerate(clips):
        names = _write_frames(mevis / "JPEGImages" / clip.name, clip.frames)
        _write_frames(charades / "videos_1FPS" / clip.name, clip.frames)
        meta["videos"][clip.name] = {"expressions": {"0": {"exp": clip.expression, "obj_id": [1],
                                                           "anno_id": [str(anno_id)]}}, "frames": names}
        mask_dict[str(anno_id)] = [to_coco_rle(m) if m.any() else None for m in clip.masks]
        # frame i spans second [i, i + 1): the inclusive moment [a, b] is [a, b + 1] seconds
        lines.append(f"{clip.name} {clip.moment[0]:.1f} {clip.moment[1] + 1:.1f}##{clip.expression}.")
        durations.append((clip.name, float(len(clip.frames))))
    (mevis / "meta_expressions.json").write_text(json.dumps(meta))
    (mevis / "mask_dict.json").write_text(json.dumps(mask_dict))
    (charades / f"charades_sta_{charades_split}.txt").write_text("\n".join(lines) + "\n")
    with (charades / f"Charades_v1_{charades_split}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "length"])
        writer.writerows(durations)


def generate(out: str | Path, train_clips: int = 200, test_clips: int = 40, seed: int = 0,
             options: SyntheticOptions | None = None) -> Path:
    """Write train (MeViS ``train`` / Charades ``train``) and held-out (``valid_u`` / ``test``) clips."""
    options = options or SyntheticOptions()
    out = Path(out)
    rng = np.random.default_rng(seed)
    train = [make_clip(rng, f"synth_train_{i:04d}", options) for i in range(train_clips)]
    test = [make_clip(rng, f"synth_test_{i:04d}", options) for i in range(test_clips)]
    write_split(out, train, "train", "train")
    write_split(out, test, "valid_u", "test")
    return out
