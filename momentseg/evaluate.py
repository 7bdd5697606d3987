"""``momentseg eval``: the full pipeline on a benchmark split, predictions in the official submission
layout, and the paper's metrics with each benchmark's averaging.

RefVOS predictions go to ``OUT/Annotations/<video>/<expression id>/<source frame name>.png`` (0/255 grey,
what the Ref-YouTube-VOS server and the MeViS / ReVOS scripts read); J and F are computed from those PNGs
as written. TSG queries give R@{0.3, 0.5, 0.7} and mIoU. Each finished expression is one JSON line in
``OUT/rows/rank-<r>.jsonl``, so a rerun skips it; ranks (``torchrun`` / ``accelerate launch``) take every
world-size-th entry and rank 0 merges all rows into ``OUT/metrics.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from momentseg.data import load_entries, parse_data_spec
from momentseg.data.entries import DataError, GroundingEntry, ReferringEntry
from momentseg.devices import default_device
from momentseg.export import safe_name
from momentseg.grounding import longest_moment, moment_seconds
from momentseg.metrics import JF, expression_scores, mevis_scores, revos_scores, temporal_iou, tsg_metrics
from momentseg.model.budgets import TSG_VIDEO_MAX_PIXELS
from momentseg.options import SegmentOptions
from momentseg.pipeline import validate_prompt

# the split each benchmark is scored on (2D-TAN renames ActivityNet val_2 to test)
EVAL_SPLITS = {
    "charades-sta": "test",
    "activitynet": "test",
    "mevis": "valid_u",
    "revos": "valid",
    "ref-youtube-vos": "valid",
    "cvat": "all",
}


@dataclass(frozen=True)
class EvalOptions:
    """What to run. ``method``: the method options given (momentseg.options); the rest are the official
    evaluation's: RefVOS the official inference's, TSG video 4·4…8·8·28² with the TSG prompt."""

    split: str | None = None
    limit: int | None = None
    method: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    progress: bool = True
    # also score each expression's ground truth against the masks of another object's expression of the
    # same video: what a model that ignores the text gets
    text_check: bool = False

    def segment_options(self, grounding: bool) -> SegmentOptions:
        """The pipeline options of the official RefVOS (``grounding`` False) or TSG evaluation, with the
        given method options on top."""
        official = {"tsg_pixels": TSG_VIDEO_MAX_PIXELS, "find_prompt": "tsg"} if grounding else {}
        return SegmentOptions(**{**official, **self.method})


def prediction_path(out: Path, entry: ReferringEntry, frame_name: str) -> Path:
    return out / "Annotations" / safe_name(entry.video_id) / safe_name(entry.expression_id, "0") / f"{frame_name}.png"


def read_prediction(path: Path) -> np.ndarray:
    """A submitted mask as the benchmarks' scripts read it: grey PNG, any non-zero pixel is foreground."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L")) > 0


def _read_rows(rows_dir: Path) -> dict[str, dict]:
    rows = {}
    for path in sorted(rows_dir.glob("rank-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["key"]] = row
    return rows


def _score_referring(entry: ReferringEntry, result, out: Path) -> dict:
    frames = result.num_frames
    track = result.tracks[0] if result.tracks else None
    empty = np.zeros((result.height, result.width), bool)
    for index in range(frames):
        mask = track.mask(index, result.width, result.height) if track else empty
        path = prediction_path(out, entry, entry.frame_names[index])
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)
    row = {
        "video": entry.video_id,
        "expression_id": entry.expression_id,
        "expression": entry.expression,
        "type_id": entry.type_id,
        "frames": frames,
        "moment": None if result.moment is None else [result.moment.start_frame, result.moment.end_frame],
    }
    if entry.has_masks:
        predictions = [read_prediction(prediction_path(out, entry, name)) for name in entry.frame_names]
        score = expression_scores(predictions, [entry.mask(i) for i in range(frames)])
        row.update(J=score.j, F=score.f)
    return row


def other_objects_expressions(entries: list) -> dict[str, ReferringEntry]:
    """For each referring entry with masks, an expression of the same video that names another object
    (its masks differ on some frame); entries without one are left out."""
    by_video = defaultdict(list)
    for entry in entries:
        if isinstance(entry, ReferringEntry) and entry.has_masks:
            by_video[entry.video_id].append(entry)
    others = {}
    for group in by_video.values():
        for index, entry in enumerate(group):
            for other in group[index + 1 :] + group[:index]:
                if any((entry.mask(i) != other.mask(i)).any() for i in range(len(entry.frame_names))):
                    others[entry.name] = other
                    break
    return others


def _score_text_ignored(entry: ReferringEntry, other: ReferringEntry | None, pipeline, options) -> dict:
    """J and F of ``entry``'s ground truth against the masks the pipeline gives for ``other``'s expression."""
    if other is None:
        return {"other_expression": None}
    result = pipeline.run(entry.open_frames(), validate_prompt(other.expression), options)
    track = result.tracks[0] if result.tracks else None
    empty = np.zeros((result.height, result.width), bool)
    predictions = [track.mask(i, result.width, result.height) if track else empty for i in range(result.num_frames)]
    score = expression_scores(predictions, [entry.mask(i) for i in range(result.num_frames)])
    return {"other_expression": other.expression, "J_other": score.j, "F_other": score.f}


def _score_grounding(entry: GroundingEntry, pipeline, options) -> dict:
    """The TSG evaluation: the [FIND] pass only; the moment is the longest run of S above θ (official)."""
    frames = entry.open_frames()
    grounding = pipeline.ground(frames, validate_prompt(entry.query), options)
    predicted = None
    if grounding.similarity is not None:
        start, end = longest_moment(grounding.similarity, options.threshold)
        start_sec, end_sec = moment_seconds(start, end, frames.fps)
        predicted = (round(start_sec, 4), round(end_sec, 4))
    iou = 0.0 if predicted is None else temporal_iou(predicted, (entry.start, entry.end))
    return {
        "video": entry.video_id,
        "query": entry.query,
        "ground_truth": [entry.start, entry.end],
        "prediction": None if predicted is None else list(predicted),
        "iou": iou,
    }


def summarise(kind: str, rows: list[dict]) -> dict:
    """The benchmark's numbers (percent) from the per-entry rows, plus per-video means."""
    if not rows:
        return {"summary": {}, "per_video": {}}
    if "iou" in rows[0]:
        gts = [tuple(r["ground_truth"]) for r in rows]
        preds = [tuple(r["prediction"]) if r["prediction"] else (0.0, 0.0) for r in rows]
        summary: dict[str, Any] = {k: round(v, 4) for k, v in tsg_metrics(preds, gts).items()}
        per_video = defaultdict(list)
        for r in rows:
            per_video[r["video"]].append(r["iou"])
        return {
            "summary": {**summary, "queries": len(rows)},
            "per_video": {
                v: {"mIoU": round(100 * float(np.mean(x)), 4), "queries": len(x)} for v, x in per_video.items()
            },
        }
    scored = [r for r in rows if "J" in r]
    if not scored:
        return {
            "summary": {"expressions": len(rows), "note": "no ground truth in this split: predictions only"},
            "per_video": {},
        }
    scores = [JF(r["J"], r["F"]) for r in scored]
    if kind == "revos":
        groups = revos_scores(scores, [r["type_id"] for r in scored])
        summary = {
            f"{name} {metric}": round(value, 4)
            for name, jf in groups.items()
            for metric, value in (("J", jf.j), ("F", jf.f), ("J&F", jf.jf))
        }
    else:
        total = mevis_scores(scores)
        summary = {"J": round(100 * total.j, 4), "F": round(100 * total.f, 4), "J&F": round(100 * total.jf, 4)}
        if kind in ("ref-youtube-vos", "cvat"):
            summary["note"] = "MeViS-style averaging (offline approximation of the benchmark server)"
    checked = [r for r in scored if r.get("J_other") is not None]
    if checked:  # the same expressions, each prompted with another object's expression
        own = mevis_scores([JF(r["J"], r["F"]) for r in checked])
        ignored = mevis_scores([JF(r["J_other"], r["F_other"]) for r in checked])
        summary["text check"] = {
            "expressions": len(checked),
            "J&F": round(100 * own.jf, 4),
            "J&F other object's expression": round(100 * ignored.jf, 4),
            "J other object's expression": round(100 * ignored.j, 4),
        }
    per_video = defaultdict(list)
    for r in scored:
        per_video[r["video"]].append((r["J"], r["F"]))
    return {
        "summary": {**summary, "expressions": len(scored)},
        "per_video": {
            v: {
                "J": round(100 * float(np.mean([j for j, _ in x])), 4),
                "F": round(100 * float(np.mean([f for _, f in x])), 4),
                "expressions": len(x),
            }
            for v, x in per_video.items()
        },
    }


def evaluate(checkpoint: str, data: str, out: str | Path, options: EvalOptions = EvalOptions()) -> dict | None:
    """Run, write, score; returns the merged metrics on rank 0 (None on other ranks)."""
    from accelerate import PartialState
    from tqdm import tqdm

    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline

    spec = parse_data_spec(data)
    entries = load_entries(spec, options.split or EVAL_SPLITS[spec.kind])
    if options.limit is not None:
        if options.limit < 1:
            raise DataError(f"--limit must be >= 1, got {options.limit}")
        entries = entries[: options.limit]
    device = options.device or default_device()
    state = PartialState(cpu=device == "cpu")
    out = Path(out)
    rows_dir = out / "rows"
    rows_dir.mkdir(parents=True, exist_ok=True)
    done = _read_rows(rows_dir)
    mine = [e for e in entries[state.process_index :: state.num_processes] if e.name not in done]

    if mine:
        model = load_checkpoint(checkpoint, device=state.device)
        pipeline = MomentSegPipeline(model)
        refvos_options, tsg_options = options.segment_options(False), options.segment_options(True)
        others = other_objects_expressions(entries) if options.text_check else {}
        with (rows_dir / f"rank-{state.process_index}.jsonl").open("a") as log:
            for entry in tqdm(mine, desc=f"eval {spec.kind}", unit="expr", disable=not options.progress):
                if isinstance(entry, GroundingEntry):
                    row = _score_grounding(entry, pipeline, tsg_options)
                else:
                    result = pipeline.run(entry.open_frames(), entry.expression, refvos_options)
                    row = _score_referring(entry, result, out)
                    if options.text_check and entry.has_masks:
                        row.update(_score_text_ignored(entry, others.get(entry.name), pipeline, refvos_options))
                log.write(json.dumps({"key": entry.name, **row}) + "\n")
                log.flush()  # a crash loses at most the expression in flight
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    rows = _read_rows(rows_dir)
    wanted = [rows[e.name] for e in entries if e.name in rows]
    merged = summarise(spec.kind, wanted)
    metrics = {
        "checkpoint": str(checkpoint),
        "data": spec.kind,
        "split": options.split or EVAL_SPLITS[spec.kind],
        "summary": merged["summary"],
        "per_video": merged["per_video"],
        "rows": wanted,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics
