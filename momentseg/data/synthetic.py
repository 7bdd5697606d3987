"""Synthetic clips with MomentSeg's two questions, small enough for a CPU: *which* object does the
sentence name, and *when* does its action happen. Written in the official layouts.

Each clip holds several shapes of different colours, kinds and sizes on a dark background. One *target*
does an action during a moment; each distractor stays still or (``distractor_actions`` of the time) does
an action of its own at another time, so neither the object nor the moment can be found without the text:

* ``moves``: still, slides in one direction during the moment, still after ("moves left");
* ``stops``: drifts, pauses during the moment, drifts on;
* ``enters``: absent, slides in from an edge during the moment, still after;
* ``bounces``: still, goes to a wall and back during the moment;
* ``turns``: a square or triangle rotates a quarter turn during the moment;
* ``appears``: visible only during the moment.

Every object gets a referring expression that needs its words to pick it ("the blue square", "the circle
that moves left", "the big red triangle"); every object that acts also gets a moment query whose answer
is its moment ("the red square stops"). The clips are written as

* MeViS (RefVOS): ``mevis/{train,valid_u}/JPEGImages/<vid>/<frame>.jpg``, ``meta_expressions.json`` (one
  expression per object), ``mask_dict.json`` (each object's mask on every frame where it is visible);
* Charades-STA (TSG): ``charades-sta/charades_sta_{train,test}.txt`` (one line per action) and
  ``Charades_v1_{split}.csv``, frames in ``videos_1FPS/<vid>/`` (one frame per second, as the official TSG
  evaluation reads them).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from momentseg.masks import to_coco_rle

COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 90, 235),
    "yellow": (235, 220, 40),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.7, "big": 1.0}  # share of ``radius``
ACTIONS = ("moves", "stops", "enters", "bounces", "turns", "appears")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
EDGE_NAMES = {"up": "top", "down": "bottom"}  # "enters from the top", not "from the up"
BACKGROUND = 50


@dataclass(frozen=True)
class SyntheticOptions:
    frames: int = 16
    size: int = 64
    radius: int = 11
    distractors: int = 1
    actions: tuple[str, ...] = ACTIONS
    colours: tuple[str, ...] = tuple(COLOURS)
    shapes: tuple[str, ...] = SHAPES
    distractor_actions: float = 0.5  # share of distractors that act too, at another time than the target
    min_moment: int = 3
    max_moment_share: float = 0.4  # moments at most 40 % of the clip: predicting the whole clip scores IoU < 0.5
    # every expression names the object's colour (no "the circle that stops": shape and action alone)
    always_name_colour: bool = False


@dataclass(frozen=True)
class Referent:
    """One object of a clip: its expression and masks; its moment and moment query when it acts."""

    expression: str
    masks: list[np.ndarray]
    moment: tuple[int, int] | None = None  # inclusive frames
    query: str | None = None


@dataclass(frozen=True)
class Clip:
    name: str
    frames: list[np.ndarray]
    referents: list[Referent] = field(default_factory=list)


@dataclass(frozen=True)
class Track:
    """Where an object is on each frame: centre, rotation (degrees), visibility."""

    centres: np.ndarray  # [T, 2]
    angles: np.ndarray  # [T]
    visible: np.ndarray  # [T] bool
    phrase: str | None = None  # what it does, e.g. "moves left"


def draw(frame: np.ndarray, shape: str, colour, centre, radius: float, angle: float = 0.0) -> None:
    """Fill ``shape`` at ``centre`` (may lie partly outside the frame), rotated by ``angle`` degrees."""
    if shape == "circle":
        cv2.circle(frame, (round(centre[0]), round(centre[1])), round(radius), colour, -1)
        return
    corners = [(-1, -1), (1, -1), (1, 1), (-1, 1)] if shape == "square" else [(0, -1), (-1, 1), (1, 1)]
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    points = (np.array(corners, float) * radius) @ rotation.T + np.asarray(centre, float)
    cv2.fillPoly(frame, [np.round(points).astype(np.int32)], colour)


def _moment(rng: np.random.Generator, options: SyntheticOptions, free: list[int]) -> tuple[int, int] | None:
    """A random moment of allowed length inside the ``free`` frames (a contiguous run), or None."""
    longest = max(options.min_moment, int(options.max_moment_share * options.frames))
    runs, run = [], []
    for i in range(options.frames):
        if i in free:
            run.append(i)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    starts = [(r[0], r[-1]) for r in runs if len(r) >= options.min_moment]
    if not starts:
        return None
    low, high = starts[int(rng.integers(len(starts)))]
    length = int(rng.integers(options.min_moment, min(longest, high - low + 1) + 1))
    start = int(rng.integers(low, high - length + 2))
    return start, start + length - 1


def _progress(t: int, moment: tuple[int, int]) -> float:
    start, end = moment
    return float(np.clip((t - start + 1) / (end - start + 1), 0, 1))


def action_track(
    rng: np.random.Generator,
    action: str,
    moment: tuple[int, int],
    home: np.ndarray,
    options: SyntheticOptions,
    radius: float,
) -> Track:
    """The object's path when it does ``action`` during ``moment``, starting from ``home``."""
    t, size = options.frames, options.size
    low, high = radius + 1, size - radius - 1
    times = np.arange(t)
    progress = np.array([_progress(i, moment) for i in range(t)])
    centres = np.repeat(home[None], t, 0).astype(float)
    angles = np.zeros(t)
    visible = np.ones(t, bool)
    phrase = action
    if action in ("moves", "bounces"):
        name = str(rng.choice(list(DIRECTIONS)))
        direction = np.array(DIRECTIONS[name])
        # as far as the frame allows in that direction, at least a third of it
        reach = next((high - home[k]) if direction[k] > 0 else (home[k] - low) for k in range(2) if direction[k])
        travel = max(reach, size / 3)
        start = np.clip(home - direction * max(0.0, travel - reach), low, high)
        end = start + direction * travel
        path = progress if action == "moves" else 1 - np.abs(1 - 2 * progress)
        centres = start + (end - start) * path[:, None]
        phrase = f"moves {name}" if action == "moves" else "bounces"
    elif action == "stops":
        name = str(rng.choice(list(DIRECTIONS)))
        direction = np.array(DIRECTIONS[name])
        moving = np.cumsum(np.r_[0, [not (moment[0] <= i <= moment[1]) for i in times[1:]]])
        step = (high - low) / max(moving[-1], 1)
        start = np.array(
            [
                low if direction[0] > 0 else high if direction[0] < 0 else home[0],
                low if direction[1] > 0 else high if direction[1] < 0 else home[1],
            ]
        )
        centres = start + direction * step * moving[:, None]
    elif action == "enters":
        edge = str(rng.choice(list(DIRECTIONS)))
        direction = -np.array(DIRECTIONS[edge])  # enters from the left edge moving right
        axis = int(np.flatnonzero(direction)[0])
        outside = home.astype(float).copy()
        outside[axis] = -radius - 1 if direction[axis] > 0 else size + radius + 1
        centres = outside + (home - outside) * progress[:, None]
        visible = times >= moment[0]
        phrase = f"enters from the {EDGE_NAMES.get(edge, edge)}"
    elif action == "turns":
        angles = 90.0 * progress
    elif action == "appears":
        visible = (times >= moment[0]) & (times <= moment[1])
    else:
        raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
    return Track(centres, angles, visible, phrase)


def still_track(home: np.ndarray, frames: int) -> Track:
    return Track(np.repeat(home[None], frames, 0).astype(float), np.zeros(frames), np.ones(frames, bool))


def referring_expression(
    rng: np.random.Generator, colour: str, shape: str, size: str, phrase: str | None, always_name_colour: bool = False
) -> str:
    """Words that single the object out: its colour, its kind (unique in the clip) or what it does."""
    forms = [f"the {colour} {shape}", f"the {size} {colour} {shape}"]
    if phrase:
        forms += [f"the {colour} {shape} that {phrase}"] + (
            [] if always_name_colour else [f"the {shape} that {phrase}"]
        )
    return str(rng.choice(forms))


def make_clip(rng: np.random.Generator, name: str, options: SyntheticOptions) -> Clip:
    """A clip: a target acting during a random moment, distractors of other colours and kinds that stay
    still or act at other times."""
    count = 1 + options.distractors
    if count > min(len(options.colours), len(options.shapes)) and len(options.shapes) > 1:
        raise ValueError(f"{count} objects need as many colours and shapes")
    colours = [str(c) for c in rng.choice(options.colours, count, replace=False)]
    shapes = [str(s) for s in rng.choice(options.shapes, count, replace=len(options.shapes) < count)]
    sizes = [str(rng.choice(list(SIZES))) for _ in range(count)]
    radii = [options.radius * SIZES[s] for s in sizes]
    homes = _spread_homes(rng, radii, options)
    tracks: list[Track] = []
    moments: list[tuple[int, int] | None] = []
    busy: set[int] = set()
    for index in range(count):
        acts = index == 0 or rng.random() < options.distractor_actions
        moment = _moment(rng, options, [i for i in range(options.frames) if i not in busy]) if acts else None
        allowed = [a for a in options.actions if not (a == "turns" and shapes[index] == "circle")]
        if moment is None or not allowed:
            tracks.append(still_track(homes[index], options.frames))
            moments.append(None)
            continue
        # a margin of one frame between moments, so that no frame belongs to two actions
        busy.update(range(moment[0] - 1, moment[1] + 2))
        action = str(rng.choice(allowed))
        tracks.append(action_track(rng, action, moment, homes[index], options, radii[index]))
        moments.append(moment)
    frames, masks = _render(tracks, colours, shapes, radii, options)
    referents = []
    for index, track in enumerate(tracks):
        expression = referring_expression(
            rng, colours[index], shapes[index], sizes[index], track.phrase, options.always_name_colour
        )
        query = f"the {colours[index]} {shapes[index]} {track.phrase}" if track.phrase else None
        referents.append(Referent(expression, masks[index], moments[index], query))
    return Clip(name, frames, referents)


def _spread_homes(rng: np.random.Generator, radii: list[float], options: SyntheticOptions) -> list[np.ndarray]:
    """Resting places that do not overlap (best of a few draws)."""
    best: list[np.ndarray] = []
    best_gap = -np.inf
    for _ in range(50):
        homes = [rng.uniform(r + 1, options.size - r - 1, 2) for r in radii]
        gap = min(
            (
                float(np.linalg.norm(a - b)) - ra - rb
                for i, (a, ra) in enumerate(zip(homes, radii, strict=True))
                for b, rb in zip(homes[i + 1 :], radii[i + 1 :], strict=True)
            ),
            default=np.inf,
        )
        if gap > best_gap:
            best, best_gap = homes, gap
        if gap > 4:
            break
    return best


def _render(
    tracks: list[Track], colours: list[str], shapes: list[str], radii: list[float], options: SyntheticOptions
) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """Frames (later objects drawn over earlier ones) and each object's visible mask per frame."""
    frames: list[np.ndarray] = []
    masks: list[list[np.ndarray]] = [[] for _ in tracks]
    for t in range(options.frames):
        frame = np.full((options.size, options.size, 3), BACKGROUND, np.uint8)
        owner = np.full((options.size, options.size), -1, np.int16)
        for index, track in enumerate(tracks):
            if not track.visible[t]:
                continue
            args = (shapes[index], track.centres[t], radii[index], track.angles[t])
            draw(frame, args[0], COLOURS[colours[index]], *args[1:])
            mask = np.zeros_like(owner, np.uint8)
            draw(mask, args[0], 1, *args[1:])
            owner[mask.astype(bool)] = index
        frames.append(frame)
        for index in range(len(tracks)):
            masks[index].append(owner == index)
    return frames, masks


def _write_frames(folder: Path, frames: list[np.ndarray]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:05d}" for i in range(len(frames))]
    for name, frame in zip(names, frames, strict=True):
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{name}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return names


def write_split(out: Path, clips: list[Clip], mevis_split: str, charades_split: str) -> None:
    """Write ``clips`` as one MeViS split (an expression per object) and one Charades-STA split (a query
    per action)."""
    mevis = out / "mevis" / mevis_split
    charades = out / "charades-sta"
    meta: dict[str, dict[str, Any]] = {"videos": {}}
    mask_dict: dict[str, list] = {}
    lines: list[str] = []
    durations: list[tuple[str, float]] = []
    for folder in (mevis, charades):
        folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        names = _write_frames(mevis / "JPEGImages" / clip.name, clip.frames)
        _write_frames(charades / "videos_1FPS" / clip.name, clip.frames)
        expressions = {}
        for number, referent in enumerate(clip.referents):
            anno_id = str(len(mask_dict))
            expressions[str(number)] = {"exp": referent.expression, "obj_id": [number], "anno_id": [anno_id]}
            mask_dict[anno_id] = [to_coco_rle(m) if m.any() else None for m in referent.masks]
            if referent.moment is not None:
                # frame i spans second [i, i + 1): the inclusive moment [a, b] is [a, b + 1] seconds
                lines.append(f"{clip.name} {referent.moment[0]:.1f} {referent.moment[1] + 1:.1f}##{referent.query}.")
        meta["videos"][clip.name] = {"expressions": expressions, "frames": names}
        durations.append((clip.name, float(len(clip.frames))))
    (mevis / "meta_expressions.json").write_text(json.dumps(meta))
    (mevis / "mask_dict.json").write_text(json.dumps(mask_dict))
    (charades / f"charades_sta_{charades_split}.txt").write_text("\n".join(lines) + "\n")
    with (charades / f"Charades_v1_{charades_split}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "length"])
        writer.writerows(durations)


def generate(
    out: str | Path,
    train_clips: int = 200,
    test_clips: int = 40,
    seed: int = 0,
    options: SyntheticOptions | None = None,
) -> Path:
    """Write train (MeViS ``train`` / Charades ``train``) and held-out (``valid_u`` / ``test``) clips; the
    held-out clips come from their own random stream, so they do not change with ``train_clips``."""
    options = options or SyntheticOptions()
    out = Path(out)
    train_rng, test_rng = (np.random.default_rng([seed, part]) for part in (0, 1))
    train = [make_clip(train_rng, f"synth_train_{i:04d}", options) for i in range(train_clips)]
    test = [make_clip(test_rng, f"synth_test_{i:04d}", options) for i in range(test_clips)]
    write_split(out, train, "train", "train")
    write_split(out, test, "valid_u", "test")
    return out
