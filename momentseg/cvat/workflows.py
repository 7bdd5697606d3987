"""CVAT workflows: annotate a task from a prompt, refine a track from a person's corrections, and read
a task back as a result for export.

Writes only append (``action="create"``) or update the one track being refined, in one request each;
nothing here deletes or rewrites another annotation.

What annotate wrote is recorded so that refine can tell a person's edits from the tool's shapes (CVAT
keeps no per-shape source on tracks): each automatic shape carries its fingerprint in the label's
mutable text attribute ``momentseg`` when the label has it, and the run's record (prompt, options,
fingerprints) is also kept in a JSON file under the user's data folder.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import platformdirs
from cvat_sdk import Client, models

from momentseg.cvat.connection import CvatError, cvat_errors
from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.masks import Polygon, polygons_to_mask, to_cvat_rle
from momentseg.result import Moment, SegmentResult, Shape, Track

FINGERPRINT_ATTRIBUTE = "momentseg"
PROMPT_ATTRIBUTE = "prompt"
SCORE_ATTRIBUTE = "score"
KEYFRAME_ATTRIBUTE = "keyframe"

# Runs the model on task frames: (frame selection, prompt, human anchors as CVAT RLE) -> response dict
Runner = Callable[[dict[str, Any], str, list[dict[str, Any]]], dict[str, Any]]


class NothingFoundError(MomentSegError):
    code = "nothing_found"


class LabelMissingError(InvalidInputError):
    code = "label_missing"


def fingerprint(frame: int, shape_type: str, points, outside: bool) -> str:
    """A short, stable digest of one track shape as annotate wrote it."""
    payload = json.dumps([int(frame), str(shape_type), [round(float(p), 2) for p in points], bool(outside)])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _shape_type(shape) -> str:
    return str(shape.type.value if hasattr(shape.type, "value") else shape.type)


def shape_fingerprint(shape) -> str:
    return fingerprint(shape.frame, _shape_type(shape), shape.points, shape.outside)


def record_path(host: str, task_id: int, track_id: int) -> Path:
    """Where annotate keeps its record of a track on this machine."""
    safe_host = "".join(c if c.isalnum() else "_" for c in host)
    return Path(platformdirs.user_data_dir("momentseg")) / "records" / safe_host / f"task{task_id}-track{track_id}.json"


@dataclass
class AnnotateSummary:
    task_id: int
    track_id: int | None
    frames: int
    keyframes: list[int]
    moment: dict[str, Any] | None
    moment_written: bool
    seconds: float
    link: str
    notes: list[str] = field(default_factory=list)


def _labels(client: Client, task_id: int):
    with cvat_errors(f"task {task_id}"):
        task = client.tasks.retrieve(task_id)
        return task, task.get_labels()


def _find_label(labels, name: str):
    return next((label for label in labels if label.name == name), None)


def _attribute_ids(label) -> dict[str, int]:
    return {attribute.name: attribute.id for attribute in (label.attributes or [])}


def _ensure_labels(client: Client, task, labels, label_name: str, moment_label: str, *, create_labels: bool,
                   create_attributes: bool):
    """Check the object label exists; add the moment label and our attributes when asked to."""
    label = _find_label(labels, label_name)
    if label is None:
        names = ", ".join(sorted(l.name for l in labels)) or "none"
        raise LabelMissingError(f"label '{label_name}' is not in task {task.id} (its labels: {names}); nothing written")
    patches = []
    if create_attributes:
        have = _attribute_ids(label)
        wanted = [
            models.AttributeRequest(name=PROMPT_ATTRIBUTE, mutable=False, input_type="text", values=[""], default_value=""),
            models.AttributeRequest(name=SCORE_ATTRIBUTE, mutable=True, input_type="text", values=[""], default_value=""),
            models.AttributeRequest(name=KEYFRAME_ATTRIBUTE, mutable=True, input_type="checkbox", values=["false"],
                                    default_value="false"),
            models.AttributeRequest(name=FINGERPRINT_ATTRIBUTE, mutable=True, input_type="text", values=[""],
                                    default_value=""),
        ]
        missing = [a for a in wanted if a.name not in have]
        if missing:
            patches.append(models.PatchedLabelRequest(id=label.id, name=label.name, attributes=missing))
    if create_labels and _find_label(labels, moment_label) is None:
        patches.append(models.PatchedLabelRequest(name=moment_label, type="any", attributes=[]))
    if patches:
        with cvat_errors(f"adding labels and attributes to task {task.id}"):
            task.update(models.PatchedTaskWriteRequest(labels=patches))
            labels = task.get_labels()
    return _find_label(labels, label_name), _find_label(labels, moment_label)


def _shape_attributes(label, shape: dict[str, Any]) -> list[models.AttributeValRequest]:
    ids = _attribute_ids(label)
    values = {
        SCORE_ATTRIBUTE: f"{shape['score']:.4f}",
        KEYFRAME_ATTRIBUTE: "true" if shape["keyframe"] else "false",
        FINGERPRINT_ATTRIBUTE: fingerprint(shape["frame"], shape["type"], shape["points"], shape["outside"]),
    }
    return [models.AttributeValRequest(spec_id=ids[name], value=value) for name, value in values.items() if name in ids]


def _tracked_shape(label, shape: dict[str, Any], shape_id: int | None = None) -> models.TrackedShapeRequest:
    extra = {"id": shape_id} if shape_id is not None else {}
    return models.TrackedShapeRequest(
        type=shape["type"], frame=shape["frame"], points=[float(p) for p in shape["points"]],
        outside=shape["outside"], occluded=False, attributes=_shape_attributes(label, shape), **extra)


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def annotate_task(client: Client, task_id: int, prompt: str, label_name: str, run: Runner, *,
                  frames: dict[str, Any] | None = None, moment_label: str = "moment", create_labels: bool = False,
                  create_attributes: bool = False) -> AnnotateSummary:
    """Run MomentSeg on a task and append one auto track (and the moment interval) to it."""
    started = time.perf_counter()
    task, labels = _labels(client, task_id)
    label, interval_label = _ensure_labels(client, task, labels, label_name, moment_label,
                                           create_labels=create_labels, create_attributes=create_attributes)
    response = run(dict(frames or {}, id=task_id), prompt, [])
    if not response["tracks"]:
        raise NothingFoundError(f"the model found nothing for '{prompt}' in task {task_id}; nothing written")
    shapes = response["tracks"][0]["shapes"]
    track_attributes = [models.AttributeValRequest(spec_id=_attribute_ids(label)[PROMPT_ATTRIBUTE], value=prompt)] \
        if PROMPT_ATTRIBUTE in _attribute_ids(label) else []
    track = models.LabeledTrackRequest(
        label_id=label.id, frame=shapes[0]["frame"], group=0, source="auto", attributes=track_attributes,
        shapes=[_tracked_shape(label, shape) for shape in shapes])
    intervals = []
    notes = []
    moment = response.get("moment")
    if moment and interval_label is not None:
        intervals.append(models.LabeledIntervalRequest(
            label_id=interval_label.id, start=moment["start_frame"], stop=moment["end_frame"] + 1,
            score=float(moment["score"]), source="auto", attributes=[]))
    elif moment:
        notes.append(f"the moment was not written: the task has no label '{moment_label}' (add --create-labels)")
    else:
        notes.append(f"no moment: {response.get('moment_reason')}")
    with cvat_errors(f"writing annotations to task {task_id}"):
        written, _ = client.api_client.tasks_api.partial_update_annotations(
            "create", task_id, patched_labeled_data_request=models.PatchedLabeledDataRequest(
                tracks=[track], intervals=intervals, shapes=[], tags=[]))
    track_id = _created_track_id(written, label.id, shapes[0]["frame"])
    record = {"prompt": prompt, "label": label_name, "options": response.get("options", {}),
              "frames": [s["frame"] for s in shapes],
              "fingerprints": {str(s["frame"]): fingerprint(s["frame"], s["type"], s["points"], s["outside"])
                               for s in shapes}}
    _write_record(record_path(client.api_map.host, task_id, track_id), record)
    if FINGERPRINT_ATTRIBUTE not in _attribute_ids(label):
        notes.append(f"the label has no '{FINGERPRINT_ATTRIBUTE}' attribute: refine will use this machine's "
                     "record (add --create-attributes to keep it in the task)")
    return AnnotateSummary(task_id, track_id, len(shapes), response["keyframes"], moment, bool(intervals),
                           round(time.perf_counter() - started, 2), f"{client.api_map.host}/tasks/{task_id}", notes)


def _created_track_id(written, label_id: int, frame: int) -> int | None:
    tracks = [t for t in (written.tracks or []) if t.label_id == label_id and t.frame == frame]
    return tracks[-1].id if tracks else None


@dataclass
class RefineSummary:
    task_id: int
    track_id: int
    human_frames: list[int]
    replaced: int
    seconds: float


def _human_mask_points(shape, width: int, height: int) -> list[float]:
    if _shape_type(shape) == "mask":
        return [float(p) for p in shape.points]
    exterior = np.asarray(shape.points, dtype=np.float64).reshape(-1, 2)
    return to_cvat_rle(polygons_to_mask([Polygon(exterior)], width, height))


def _shape_request_from(shape) -> models.TrackedShapeRequest:
    """The same shape, as it is stored, for writing it back unchanged."""
    return models.TrackedShapeRequest(
        id=shape.id, type=_shape_type(shape), frame=shape.frame, points=list(shape.points), outside=shape.outside,
        occluded=shape.occluded, z_order=shape.z_order, rotation=shape.rotation,
        attributes=[models.AttributeValRequest(spec_id=a.spec_id, value=a.value) for a in shape.attributes])


def _track_request(track, shapes) -> models.LabeledTrackRequest:
    return models.LabeledTrackRequest(
        id=track.id, label_id=track.label_id, frame=min(s.frame for s in shapes), group=track.group or 0,
        source=track.source, attributes=[models.AttributeValRequest(spec_id=a.spec_id, value=a.value)
                                         for a in track.attributes], shapes=shapes)


def refine_track(client: Client, task_id: int, track_id: int, run: Runner, *, prompt: str | None = None) -> RefineSummary:
    """Re-run propagation from a person's corrections on a track annotate wrote, replacing only its
    automatic shapes; the corrected shapes, other tracks and every other annotation stay as they are."""
    started = time.perf_counter()
    task, labels = _labels(client, task_id)
    with cvat_errors(f"annotations of task {task_id}"):
        annotations = task.get_annotations()
        meta = task.get_meta()
    track = next((t for t in annotations.tracks if t.id == track_id), None)
    if track is None:
        raise InvalidInputError(f"task {task_id} has no track {track_id}")
    label = next(l for l in labels if l.id == track.label_id)
    names = {v: k for k, v in _attribute_ids(label).items()}
    path = record_path(client.api_map.host, task_id, track_id)
    record = json.loads(path.read_text()) if path.exists() else {}
    recorded = {int(k): v for k, v in record.get("fingerprints", {}).items()}
    stored = {}
    for shape in track.shapes:
        for attribute in shape.attributes:
            if names.get(attribute.spec_id) == FINGERPRINT_ATTRIBUTE and attribute.value:
                stored[shape.frame] = attribute.value
    if not recorded and not stored:
        raise InvalidInputError(f"track {track_id} has no record of what momentseg wrote (no '{FINGERPRINT_ATTRIBUTE}'"
                                " attribute and no record on this machine): it cannot tell corrections apart")
    written = stored or recorded
    human = [s for s in track.shapes if written.get(s.frame) != shape_fingerprint(s)]
    track_prompt = prompt or record.get("prompt") or next(
        (a.value for a in track.attributes if names.get(a.spec_id) == PROMPT_ATTRIBUTE), None)
    if not track_prompt:
        raise InvalidInputError(f"the prompt of track {track_id} is unknown: pass --prompt")
    width, height = meta.frames[0].width, meta.frames[0].height
    anchors = [{"frame": s.frame, "mask": _human_mask_points(s, width, height)} for s in human if not s.outside]
    frames = sorted({s.frame for s in track.shapes} | set(record.get("frames", [])))
    response = run({"id": task_id, "numbers": frames}, track_prompt, anchors)
    human_frames = {s.frame for s in human}
    auto_ids = {s.frame: s.id for s in track.shapes if s.frame not in human_frames}
    new_shapes = [_shape_request_from(s) for s in human]
    for shape in (response["tracks"][0]["shapes"] if response["tracks"] else []):
        if shape["frame"] not in human_frames:
            new_shapes.append(_tracked_shape(label, shape, auto_ids.get(shape["frame"])))
    new_shapes.sort(key=lambda s: s.frame)
    with cvat_errors(f"updating track {track_id} of task {task_id}"):
        client.api_client.tasks_api.partial_update_annotations(
            "update", task_id, patched_labeled_data_request=models.PatchedLabeledDataRequest(
                tracks=[_track_request(track, new_shapes)], shapes=[], tags=[]))
    _verify_or_roll_back(client, task_id, track, human)
    record.update(prompt=track_prompt, frames=frames, fingerprints={
        str(s.frame): fingerprint(s.frame, _shape_type(s), s.points, s.outside) for s in new_shapes
        if s.frame not in human_frames})
    _write_record(path, record)
    return RefineSummary(task_id, track_id, sorted(human_frames), len(new_shapes) - len(human),
                         round(time.perf_counter() - started, 2))


def _verify_or_roll_back(client: Client, task_id: int, original_track, human) -> None:
    """Re-read the track: every hand-made shape must be as it was, else restore the original track."""
    with cvat_errors(f"re-reading task {task_id}"):
        after = client.tasks.retrieve(task_id).get_annotations()
    track = next((t for t in after.tracks if t.id == original_track.id), None)
    kept = track is not None and all(
        any(s.frame == h.frame and list(s.points) == list(h.points) and s.outside == h.outside for s in track.shapes)
        for h in human)
    if kept:
        return
    with cvat_errors(f"restoring track {original_track.id} of task {task_id}"):
        client.api_client.tasks_api.partial_update_annotations(
            "update", task_id, patched_labeled_data_request=models.PatchedLabeledDataRequest(
                tracks=[_track_request(original_track, [_shape_request_from(s) for s in original_track.shapes])],
                shapes=[], tags=[]))
    raise CvatError(f"CVAT changed hand-made shapes of track {original_track.id}; the track was restored")


def result_from_task(client: Client, task_id: int, track_ids: list[int] | None = None) -> SegmentResult:
    """A task's mask/polygon tracks as a result: each keyframe holds until the next (CVAT does not
    interpolate masks), ``outside`` ends it; the first automatic interval is the moment."""
    task, labels = _labels(client, task_id)
    with cvat_errors(f"annotations of task {task_id}"):
        annotations = task.get_annotations()
        meta = task.get_meta()
    names = {l.id: l.name for l in labels}
    width, height, total = meta.frames[0].width, meta.frames[0].height, meta.size
    tracks = []
    for track in annotations.tracks:
        if track_ids and track.id not in track_ids:
            continue
        keyframes = sorted((s for s in track.shapes if _shape_type(s) in ("mask", "polygon")), key=lambda s: s.frame)
        if not keyframes:
            continue
        shapes, current = [], 0
        for frame in range(keyframes[0].frame, total):
            while current + 1 < len(keyframes) and keyframes[current + 1].frame <= frame:
                current += 1
            source = keyframes[current]
            shapes.append(Shape(frame, _shape_type(source), list(source.points), source.frame == frame,
                                bool(source.outside), 1.0))
        tracks.append(Track(names.get(track.label_id, "object"), shapes))
    interval = next((i for i in (annotations.intervals or []) if i.source == "auto"), None)
    moment = None if interval is None else Moment(interval.start, interval.stop - 1, interval.start / 30.0,
                                                  interval.stop / 30.0, float(interval.score))
    prompt = next((a.value for t in annotations.tracks for a in t.attributes if a.value), "")
    return SegmentResult(prompt=prompt, num_frames=total, width=width, height=height, fps=30.0, moment=moment,
                         moment_reason=None, center_frame=0, keyframes=[], similarity=None, tracks=tracks,
                         model={}, options={}, timings={}, frame_names=[f.name for f in meta.frames]
                         if len(meta.frames) == total else None)
