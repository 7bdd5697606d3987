"""Export: a task's objects read back across its jobs (overlaps deduplicated, a person's shapes first), with
the moment from its tags, as an export set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cvat_sdk import Client

from momentseg.cvat.task import (
    OBJECT_ATTRIBUTE,
    PROMPT_ATTRIBUTE,
    TaskState,
    attribute_names_of,
    attribute_value,
    read_job_annotations,
    read_task,
    shape_mask,
)
from momentseg.errors import InvalidInputError
from momentseg.export import ExportObject, ExportSet
from momentseg.masks import to_cvat_rle
from momentseg.result import Shape

_PERSON_FIRST = {"manual": 0, "semi-auto": 1, "file": 2, "auto": 3}


@dataclass
class TaskObject:
    """One object of a task read across jobs: per-frame shapes (deduplicated over overlapping jobs) or a
    polygon/other track's keyframes."""

    object_id: int
    label: str
    prompt: str
    track: bool
    shapes: dict[int, dict]  # frame -> shape as CVAT stores it
    attribute_names: dict[int, str]


@dataclass
class TaskObjects:
    task: TaskState
    objects: list[TaskObject]
    moment: dict[str, int] | None


def read_task_objects(client: Client, task_id: int, object_ids: list[int] | None = None) -> TaskObjects:
    """Every mask/polygon object of the task, read across jobs: grouped shapes of a label form one object (the
    group id is its id; a person's shape whose ``object`` attribute names a group belongs to it), an ungrouped
    shape is its own object (its shape id), a track is one object (its group, else its id). Where jobs
    overlap, a frame takes its shapes from one job, a person's before the tool's; several shapes of an object
    on one frame are one mask."""
    task = read_task(client, task_id)
    annotations = read_job_annotations(client, task)
    found: dict[tuple, tuple[TaskObject, dict[int, dict[int, list[dict]]]]] = {}

    def add(key: tuple, label: dict, track: bool, job_id: int, shape: dict) -> TaskObject:
        if key not in found:
            found[key] = (TaskObject(key[1], label["name"], "", track, {}, attribute_names_of(label)), {})
        obj, frames = found[key]
        frames.setdefault(shape["frame"], {}).setdefault(job_id, []).append(shape)
        return obj

    for job_id, data in annotations.items():
        job = task.job(job_id)
        for shape in data.get("shapes") or []:
            label = task.label_by_id(shape["label_id"])
            if shape["type"] not in ("mask", "polygon") or label is None:
                continue
            names = attribute_names_of(label)
            declared = attribute_value(shape, names, OBJECT_ATTRIBUTE)
            group = int(shape.get("group") or 0) or (int(declared) if declared and declared.isdigit() else 0)
            key = ("group", group, label["id"]) if group else ("shape", shape["id"], label["id"])
            obj = add(key, label, False, job_id, shape)
            obj.prompt = obj.prompt or attribute_value(shape, names, PROMPT_ATTRIBUTE) or ""
        for track in data.get("tracks") or []:
            label = task.label_by_id(track["label_id"])
            if label is None or not track.get("shapes") or track["shapes"][0]["type"] not in ("mask", "polygon"):
                continue
            group = int(track.get("group") or 0)
            key = ("track", group, label["id"]) if group else ("track-id", track["id"], label["id"])
            keyframes = [
                dict(s, source=track.get("source", "manual"), label_id=track["label_id"])
                for s in sorted(track["shapes"], key=lambda s: s["frame"])
            ]
            if not keyframes[-1].get("outside") and job.stop + 1 < task.size:
                # a job's part of a track ends with the job
                keyframes.append(dict(keyframes[-1], id=0, frame=job.stop + 1, outside=True))
            for shape in keyframes:
                obj = add(key, label, True, job_id, shape)
            obj.prompt = obj.prompt or attribute_value(track, attribute_names_of(label), PROMPT_ATTRIBUTE) or ""
    chosen = []
    for obj, frames in found.values():
        if object_ids and obj.object_id not in object_ids:
            continue
        obj.shapes = {frame: _one_shape(by_job, task) for frame, by_job in sorted(frames.items())}
        chosen.append(obj)
    if object_ids and not chosen:
        raise InvalidInputError(f"task {task_id} has no object {', '.join(map(str, object_ids))}")
    return TaskObjects(task, chosen, _moment_from_tags(task, annotations, [o.object_id for o in chosen]))


def _one_shape(by_job: dict[int, list[dict]], task: TaskState) -> dict:
    """The frame's shape of an object: from the job whose shapes a person touched most (then the newest),
    several visible shapes of that job merged into one mask."""

    def rank(shapes: list[dict]) -> tuple:
        person_first = min(_PERSON_FIRST.get(s.get("source") or "", 0) for s in shapes)
        return person_first, -max(int(s.get("id") or 0) for s in shapes)

    shapes = min(by_job.values(), key=rank)
    visible = [s for s in shapes if not s.get("outside")]
    if len(visible) < 2:
        return min(shapes, key=lambda s: rank([s]))
    union = np.zeros((task.height, task.width), bool)
    for shape in visible:
        union |= shape_mask(shape, task.width, task.height)
    best = min(visible, key=lambda s: rank([s]))
    return dict(best, type="mask", points=to_cvat_rle(union))


def _moment_from_tags(task: TaskState, annotations: dict[int, dict], object_ids: list[int]) -> dict[str, int] | None:
    """The first chosen object's moment: the span of the automatic tags in its group."""
    for object_id in object_ids:
        frames = sorted(
            {
                t["frame"]
                for data in annotations.values()
                for t in data.get("tags") or []
                if int(t.get("group") or 0) == object_id and t.get("source") == "auto"
            }
        )
        if frames:
            return {"start_frame": frames[0], "end_frame": frames[-1]}
    return None


def _track_frames(shapes: list[dict], total: int) -> dict[int, dict]:
    """A track frame by frame as CVAT shows it: each keyframe holds, polygons with as many points move
    linearly towards the next keyframe, ``outside`` ends it."""
    keyframes = sorted(shapes, key=lambda s: s["frame"])
    frames = {}
    for current, following in zip(keyframes, [*keyframes[1:], None], strict=True):
        if current.get("outside"):
            continue
        stop = following["frame"] if following is not None else total
        for frame in range(current["frame"], stop):
            points = list(current["points"])
            if (
                following is not None
                and frame != current["frame"]
                and len(following["points"]) == len(points)
                and current["type"] == "polygon"
            ):
                t = (frame - current["frame"]) / (following["frame"] - current["frame"])
                points = [float(a + (b - a) * t) for a, b in zip(current["points"], following["points"], strict=True)]
            frames[frame] = dict(current, frame=frame, points=points, keyframe=frame == current["frame"])
    return frames


def task_export(client: Client, task_id: int, object_ids: list[int] | None = None) -> ExportSet:
    """The task's objects, read across jobs, as an export set (the first object's prompt and moment)."""
    found = read_task_objects(client, task_id, object_ids)
    task, objects = found.task, []
    for obj in found.objects:
        frames = (
            _track_frames(list(obj.shapes.values()), task.size)
            if obj.track
            else {f: dict(s, keyframe=True) for f, s in obj.shapes.items()}
        )
        shapes = {
            f: Shape(
                f,
                s["type"],
                list(s["points"]),
                bool(s.get("keyframe")),
                bool(s.get("outside")),
                float(s.get("score", 1.0)),
            )
            for f, s in frames.items()
        }
        attributes = {
            f: {
                obj.attribute_names[a["spec_id"]]: str(a["value"])
                for a in s.get("attributes", [])
                if a["spec_id"] in obj.attribute_names
            }
            for f, s in frames.items()
        }
        objects.append(ExportObject(obj.object_id, obj.label, obj.prompt, obj.track, shapes, attributes))
    prompt = next((o.prompt for o in objects if o.prompt), "")
    return ExportSet(task.width, task.height, task.size, task.frame_names, objects, prompt, found.moment)
