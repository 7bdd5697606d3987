"""Refine: re-run one object from the frames a person corrected; a person's shapes are anchors and are never
changed, the tool's own unchanged shapes are replaced, and nothing a person deleted is written again."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from cvat_sdk import Client

from momentseg.cvat.connection import CvatError, task_link
from momentseg.cvat.frames import format_ranges
from momentseg.cvat.task import (
    CHECK_ATTRIBUTE,
    KINDS,
    OBJECT_ATTRIBUTE,
    PROMPT_ATTRIBUTE,
    JobWriter,
    PartialWriteError,
    Progress,
    Record,
    Runner,
    TaskState,
    attribute_names_of,
    attribute_value,
    frame_step,
    is_tool_shape,
    mask_shape,
    mcs_role,
    read_job_annotations,
    read_task,
    shape_mask,
)
from momentseg.errors import InvalidInputError
from momentseg.masks import to_cvat_rle


@dataclass
class RefineSummary:
    task_id: int
    object_id: int
    anchors: list[int]
    kept: list[int]
    changed_during_run: list[int]
    written: dict[str, int]
    link: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _ObjectShape:
    job_id: int
    shape: dict


def _object_shapes(task: TaskState, annotations: dict[int, dict], object_id: int) -> list[_ObjectShape]:
    """The object's per-frame shapes in every job: its group, or a shape whose ``object`` attribute names it
    (what a person sets on a mask they draw for the object)."""
    found = []
    for job_id, data in annotations.items():
        for shape in data.get("shapes") or []:
            names = attribute_names_of(task.label_by_id(shape["label_id"]))
            grouped = int(shape.get("group") or 0) == object_id
            if grouped or attribute_value(shape, names, OBJECT_ATTRIBUTE) == str(object_id):
                found.append(_ObjectShape(job_id, shape))
    tool_labels = {o.shape["label_id"] for o in found if o.shape.get("source") == "auto"}
    return [o for o in found if not tool_labels or o.shape["label_id"] in tool_labels]


def refine_object(
    client: Client,
    task_id: int,
    object_id: int,
    run: Runner,
    *,
    prompt: str | None = None,
    progress: Progress | None = None,
) -> RefineSummary:
    """Re-run the model with a person's masks of the object as BAP anchors (S^p = 1), then replace only the
    tool's own untouched shapes of it, by id: each is re-read just before writing and left alone when anything
    in it changed meanwhile. A shape a person deleted stays deleted; a model that finds nothing changes nothing."""
    started = time.perf_counter()
    task = read_task(client, task_id)
    annotations = read_job_annotations(client, task)
    if any(
        int(t.get("group") or 0) == object_id and t.get("source") != "manual"
        for data in annotations.values()
        for t in data.get("tracks") or []
    ):
        raise InvalidInputError(
            f"object {object_id} of task {task_id} is a polygon track: CVAT keeps one source "
            "for a whole track, so refine cannot tell a person's keyframes from the tool's; "
            "annotate with masks to refine"
        )
    shapes = _object_shapes(task, annotations, object_id)
    if not shapes:
        raise InvalidInputError(f"task {task_id} has no object {object_id} (no shape in group {object_id})")
    tool = [o for o in shapes if o.shape.get("source") == "auto"]
    label = task.label_by_id((tool or shapes)[0].shape["label_id"])
    if label is None:
        raise InvalidInputError(f"object {object_id} of task {task_id} has a label the task does not list")
    names = attribute_names_of(label)
    records = [r for r in (Record.parse(attribute_value(o.shape, names, CHECK_ATTRIBUTE)) for o in shapes) if r]
    prompts = (attribute_value(o.shape, names, PROMPT_ATTRIBUTE) for o in shapes)
    object_prompt = prompt or next((p for p in prompts if p), None)
    if not object_prompt:
        raise InvalidInputError(
            f"the prompt of object {object_id} is unknown (its label has no 'prompt' attribute): pass --prompt"
        )
    person = [o for o in shapes if o.shape.get("source") != "auto"]
    own = [o for o in tool if is_tool_shape(o.shape, names)]
    touched = [o for o in tool if not is_tool_shape(o.shape, names)]
    anchors = _anchors(person, task)
    numbers = _refine_frames(task, records, shapes, anchors)

    response = run(
        {"id": task_id, "numbers": numbers},
        object_prompt,
        [{"frame": frame, "mask": to_cvat_rle(mask)} for frame, mask in sorted(anchors.items())],
    )
    link = task_link(client, task_id)
    kept = sorted({o.shape["frame"] for o in person + touched})
    if not response.get("tracks"):
        return RefineSummary(
            task_id,
            object_id,
            sorted(anchors),
            kept,
            [],
            {"created": 0, "updated": 0, "deleted": 0},
            link,
            round(time.perf_counter() - started, 2),
            ["the model found nothing: the task is unchanged"],
        )

    # re-read just before writing: what changed since the first read is a person's
    job_ids = sorted({o.job_id for o in shapes} | set(_jobs_overlapping(task, numbers)))
    fresh = read_job_annotations(client, task, [task.job(j) for j in job_ids])
    fresh_shapes = _object_shapes(task, fresh, object_id)
    by_id = {o.shape["id"]: o.shape for o in fresh_shapes}
    unchanged = [o for o in own if by_id.get(o.shape["id"]) == o.shape]
    changed = sorted({o.shape["frame"] for o in own if by_id.get(o.shape["id"]) != o.shape})
    snapshot_ids = {o.shape["id"] for o in shapes}
    newcomers = [o for o in fresh_shapes if o.shape["id"] not in snapshot_ids]
    written_before = _written(records)
    shapes_by_frame = {s["frame"]: s for s in response["tracks"][0]["shapes"] if not s["outside"]}
    keyframes, center = set(response.get("keyframes") or []), response.get("center_frame")
    record = Record(
        numbers[0],
        numbers[-1],
        frame_step(numbers),
        None if written_before is None else written_before | frozenset(shapes_by_frame),
    )
    plan, notes = _refine_plan(
        task,
        label,
        object_id,
        object_prompt,
        numbers,
        shapes_by_frame,
        keyframes,
        center,
        record,
        unchanged,
        person + touched + newcomers,
        fresh_shapes,
        written_before,
    )
    writer = JobWriter(client, task_id, progress)
    try:
        writer.write(plan)
    except CvatError as error:
        left = writer.undo_creates()
        raise PartialWriteError(
            f"{error}; task {task_id}, object {object_id}: {writer.counts['updated']} of the tool's shapes were "
            f"updated and {writer.counts['deleted']} deleted in the requests CVAT confirmed; the failed request "
            f"({writer.in_flight}) may or may not have been applied; "
            + (f"new shapes left: {left}" if left else "no new shape is left")
            + "; every shape of a person is untouched: run refine again to finish"
        ) from error
    if changed:
        notes.append(f"frames {format_ranges(changed)} changed while the model ran: left as they are")
    return RefineSummary(
        task_id,
        object_id,
        sorted(anchors),
        kept,
        changed,
        dict(writer.counts),
        link,
        round(time.perf_counter() - started, 2),
        notes,
    )


def _written(records: list[tuple[str, Record]]) -> frozenset[int] | None:
    """The frames the tool ever wrote the object on; None when no record says."""
    written = [record.written for _, record in records if record.written is not None]
    if not records or len(written) < len(records):
        return None
    return frozenset().union(*written)


def _jobs_overlapping(task: TaskState, frames: list[int]) -> list[int]:
    return [j.id for j in task.jobs if frames and j.start <= frames[-1] and j.stop >= frames[0]]


def _anchors(person: list[_ObjectShape], task: TaskState) -> dict[int, np.ndarray]:
    """S^p = 1 frames: the union of a person's visible masks/polygons of the object on each frame."""
    anchors: dict[int, np.ndarray] = {}
    for o in person:
        if o.shape.get("outside") or o.shape["type"] not in ("mask", "polygon"):
            continue
        mask = shape_mask(o.shape, task.width, task.height)
        frame = o.shape["frame"]
        anchors[frame] = anchors[frame] | mask if frame in anchors else mask
    return {frame: mask for frame, mask in anchors.items() if mask.any()}


def _refine_frames(
    task: TaskState, records: list[tuple[str, Record]], shapes: list[_ObjectShape], anchors: dict[int, np.ndarray]
) -> list[int]:
    """The frames annotate processed (from its record), else the span of the object's jobs; plus the anchors."""
    if records:
        record = records[0][1]
        frames = set(range(record.first, record.last + 1, record.step))
    else:
        jobs = [task.job(j) for j in {o.job_id for o in shapes}]
        frames = set(range(min(j.start for j in jobs), max(j.stop for j in jobs) + 1))
    return sorted((frames | set(anchors)) - task.deleted)


def _refine_plan(
    task: TaskState,
    label: dict,
    group: int,
    prompt: str,
    numbers: list[int],
    shapes_by_frame: dict[int, dict],
    keyframes: set[int],
    center: int | None,
    record: Record,
    own: list[_ObjectShape],
    others: list[_ObjectShape],
    fresh: list[_ObjectShape],
    written_before: frozenset[int] | None,
) -> tuple[dict, list[str]]:
    """Per job and frame: a person's shape wins; the tool's own untouched shape is updated to the new mask
    (or deleted where the object is gone); a frame with no shape gets one only where the tool never wrote."""
    plan: dict[str, dict[int, dict[str, list[dict]]]] = {"create": {}, "update": {}, "delete": {}}
    present = {(o.job_id, o.shape["frame"]) for o in fresh}
    theirs = {(o.job_id, o.shape["frame"]) for o in others}
    own_at: dict[tuple[int, int], list[dict]] = {}
    for o in own:
        own_at.setdefault((o.job_id, o.shape["frame"]), []).append(o.shape)
    skipped_new = 0

    def add(action: str, job_id: int, shape: dict) -> None:
        plan[action].setdefault(job_id, {kind: [] for kind in KINDS})["shapes"].append(shape)

    for job in task.jobs:
        for frame in (f for f in numbers if job.holds(f)):
            key = (job.id, frame)
            result = shapes_by_frame.get(frame)
            mine = own_at.get(key, [])
            if key in theirs:
                for shape in mine:
                    add("delete", job.id, shape)
                continue
            if mine:
                if result is None:
                    for shape in mine:
                        add("delete", job.id, shape)
                    continue
                new = mask_shape(label, group, prompt, result, mcs_role(frame, keyframes, center), record)
                add("update", job.id, dict(new, id=mine[0]["id"]))
                for extra in mine[1:]:
                    add("delete", job.id, extra)
            elif result is not None and key not in present:
                if written_before is not None and frame not in written_before:
                    add(
                        "create",
                        job.id,
                        mask_shape(label, group, prompt, result, mcs_role(frame, keyframes, center), record),
                    )
                else:
                    skipped_new += 1
    notes = []
    if skipped_new:
        notes.append(
            f"{skipped_new} frames without a shape of the object were left empty: the tool wrote there "
            "before and a person removed it"
            + ("" if written_before is not None else ", or the label has no 'momentseg' attribute to tell")
        )
    return {action: jobs for action, jobs in plan.items() if jobs}, notes
