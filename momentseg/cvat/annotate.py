"""Annotate: run MomentSeg on a task (or one job of it) and add one object — per-frame masks or a polygon
track per job — and the moment as frame tags (see task.py for what the tool writes and how)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cvat_sdk import Client, models

from momentseg.cvat.connection import CvatError, cvat_errors, task_link
from momentseg.cvat.frames import select_frames
from momentseg.cvat.task import (
    KINDS,
    MCS_ATTRIBUTE,
    MCS_VALUES,
    OBJECT_ATTRIBUTE,
    PROMPT_ATTRIBUTE,
    TOOL_ATTRIBUTES,
    Job,
    JobWriter,
    LabelMissingError,
    NothingFoundError,
    ObjectExistsError,
    PartialWriteError,
    Progress,
    Record,
    Runner,
    TaskState,
    api_json,
    api_request,
    attribute_ids,
    attribute_values,
    frame_step,
    mask_shape,
    mcs_role,
    object_groups,
    read_job_annotations,
    read_task,
)
from momentseg.errors import InvalidInputError


@dataclass
class AnnotateSummary:
    task_id: int
    object_id: int
    job_id: int | None
    label: str
    output: str
    frames: int
    object_frames: list[int]
    keyframes: list[int]
    center_frame: int | None
    moment: dict[str, Any] | None
    written: dict[str, int]
    labels_created: list[str]
    attributes_created: list[str]
    link: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _check_attribute_types(label: dict, task_id: int) -> None:
    for attribute in label.get("attributes", []):
        wanted = TOOL_ATTRIBUTES.get(attribute["name"])
        if wanted and (
            attribute["input_type"] != wanted["input_type"]
            or (wanted["input_type"] == "select" and not set(MCS_VALUES) <= set(attribute.get("values", [])))
        ):
            raise InvalidInputError(
                f"label '{label['name']}' of task {task_id} has an attribute "
                f"'{attribute['name']}' of another kind ({attribute['input_type']}); momentseg "
                f"writes it as {wanted['input_type']}: rename that attribute"
            )


def _polygon_tracks(
    label: dict,
    group: int,
    prompt: str,
    job: Job,
    frames: list[int],
    by_frame: dict[int, dict],
    keyframes: set[int],
    center: int | None,
) -> list[dict]:
    """The object's polygon track within one job: from its first visible frame, ``outside`` after every
    visible run (at the next processed frame, or the frame after the last one) — never a leading outside."""
    in_job = [f for f in frames if job.holds(f)]
    shapes, last_points = [], None
    for position, frame in enumerate(in_job):
        visible = by_frame.get(frame)
        if visible is not None:
            last_points = [float(p) for p in visible["points"]]
            shapes.append(
                {
                    "type": "polygon",
                    "frame": frame,
                    "points": last_points,
                    "outside": False,
                    "occluded": False,
                    "z_order": 0,
                    "rotation": 0.0,
                    "attributes": attribute_values(label, {MCS_ATTRIBUTE: mcs_role(frame, keyframes, center)}),
                }
            )
            following = in_job[position + 1] if position + 1 < len(in_job) else frame + 1
            if following not in by_frame and following <= job.stop:
                shapes.append(
                    {
                        "type": "polygon",
                        "frame": following,
                        "points": last_points,
                        "outside": True,
                        "occluded": False,
                        "z_order": 0,
                        "rotation": 0.0,
                        "attributes": [],
                    }
                )
    shapes = list({s["frame"]: s for s in shapes}.values())
    if not any(not s["outside"] for s in shapes):
        return []
    return [
        {
            "label_id": label["id"],
            "frame": shapes[0]["frame"],
            "group": group,
            "source": "auto",
            "attributes": attribute_values(label, {OBJECT_ATTRIBUTE: str(group), PROMPT_ATTRIBUTE: prompt}),
            "shapes": shapes,
            "elements": [],
        }
    ]


def _label_changes(
    task: TaskState, label: dict, moment_label: str, *, create_labels: bool, create_attributes: bool
) -> tuple[list[dict], list[str], list[str]]:
    """The label PATCH annotate will send in its write step (nothing is changed here)."""
    patches, new_labels, new_attributes = [], [], []
    if create_attributes:
        have = attribute_ids(label)
        missing = [dict(spec, name=name) for name, spec in TOOL_ATTRIBUTES.items() if name not in have]
        if missing:
            patches.append({"id": label["id"], "name": label["name"], "attributes": missing})
            new_attributes = [f"{label['name']}.{a['name']}" for a in missing]
    if create_labels and task.label(moment_label) is None:
        patches.append({"name": moment_label, "type": "tag", "attributes": []})
        new_labels = [moment_label]
    if patches and task.project_id:
        raise InvalidInputError(
            f"task {task.id} belongs to project {task.project_id}: add the label "
            f"'{moment_label}' or the attributes there (labels of a project task are the "
            "project's); nothing written"
        )
    return patches, new_labels, new_attributes


def annotate_task(
    client: Client,
    task_id: int,
    prompt: str,
    label_name: str,
    run: Runner,
    *,
    frames: dict[str, Any] | None = None,
    job_id: int | None = None,
    output: str = "mask",
    moment_label: str = "moment",
    create_labels: bool = False,
    create_attributes: bool = False,
    object_id: int | None = None,
    progress: Progress | None = None,
) -> AnnotateSummary:
    """Run MomentSeg on a task (or one job of it) and add one object: per-frame masks (or a polygon track
    per job), the moment as frame tags. Checks everything before the model runs; writes last; undoes its
    own writes when one fails."""
    started = time.perf_counter()
    if output not in ("mask", "polygon"):
        raise InvalidInputError(f"output must be 'mask' or 'polygon', got '{output}'")
    task = read_task(client, task_id)
    label = task.label(label_name)
    if label is None:
        names = ", ".join(sorted(known["name"] for known in task.labels)) or "none"
        raise LabelMissingError(f"label '{label_name}' is not in task {task_id} (its labels: {names}); nothing written")
    if label.get("type", "any") not in ("any", output):
        raise InvalidInputError(f"label '{label_name}' takes {label['type']} shapes, not {output}s; nothing written")
    _check_attribute_types(label, task_id)
    existing_moment = task.label(moment_label)
    if existing_moment is not None and existing_moment.get("type", "any") not in ("any", "tag"):
        raise InvalidInputError(
            f"label '{moment_label}' takes {existing_moment['type']} shapes, not frame tags; "
            "choose another --moment-label"
        )
    jobs = [task.job(job_id)] if job_id is not None else task.jobs
    selection = dict(frames or {})
    if job_id is not None:
        job = jobs[0]
        selection["frame_start"] = max(job.start, selection.get("frame_start") or job.start)
        selection["frame_stop"] = min(
            job.stop, job.stop if selection.get("frame_stop") is None else selection["frame_stop"]
        )
    numbers = select_frames(
        task.size, task.deleted, selection.get("frame_start"), selection.get("frame_stop"), selection.get("frame_step")
    )
    patches, new_labels, new_attributes = _label_changes(
        task, label, moment_label, create_labels=create_labels, create_attributes=create_attributes
    )
    annotations = read_job_annotations(client, task)
    used = object_groups(annotations)
    if object_id is not None and object_id in used:
        raise ObjectExistsError(f"task {task_id} already holds object {object_id}: use refine to update it")
    group = object_id if object_id is not None else max(used | {0}) + 1

    response = run({"id": task_id, "numbers": numbers}, prompt, [])  # the same frames wherever the model runs
    if not response.get("tracks"):
        raise NothingFoundError(f"the model found nothing for '{prompt}' in task {task_id}; nothing written")

    writer = JobWriter(client, task_id, progress)
    changed: list[str] = []
    try:
        if patches:
            with cvat_errors(f"adding labels and attributes to task {task_id}"):
                api_json(
                    client.api_client.tasks_api.partial_update,
                    task_id,
                    patched_task_write_request=api_request(client, models.PatchedTaskWriteRequest, {"labels": patches}),
                )
            changed = new_labels + new_attributes
            task = read_task(client, task_id)
            label = task.label(label_name)
            if label is None:
                raise LabelMissingError(
                    f"label '{label_name}' was added to task {task_id} but CVAT does not list it; nothing written"
                )
        moment_tag_label = task.label(moment_label)
        shapes = [s for s in response["tracks"][0]["shapes"] if not s["outside"]]
        keyframes, center = set(response.get("keyframes") or []), response.get("center_frame")
        frames_written = frozenset(s["frame"] for s in shapes)
        record = Record(numbers[0], numbers[-1], frame_step(numbers), frames_written)
        plan = _annotate_plan(
            task,
            jobs,
            label,
            moment_tag_label,
            group,
            prompt,
            output,
            numbers,
            shapes,
            keyframes,
            center,
            record,
            response.get("moment"),
        )
        writer.write({"create": plan})
    except CvatError as error:
        raise _undone(writer, error, task_id, changed) from error

    notes = _annotate_notes(response, moment_tag_label, moment_label, label, plan)
    counts = {kind: sum(len(objects[kind]) for objects in plan.values()) for kind in KINDS}
    written = {
        "mask_shapes": counts["shapes"],
        "polygon_tracks": counts["tracks"],
        "tags": counts["tags"],
        "intervals": counts["intervals"],
    }
    moment = response.get("moment")
    return AnnotateSummary(
        task_id,
        group,
        job_id,
        label_name,
        output,
        len(numbers),
        sorted(frames_written),
        sorted(keyframes),
        center,
        moment,
        written,
        new_labels,
        new_attributes,
        task_link(client, task_id, job_id),
        round(time.perf_counter() - started, 2),
        notes,
    )


def _annotate_plan(
    task: TaskState,
    jobs: list[Job],
    label: dict,
    moment_label: dict | None,
    group: int,
    prompt: str,
    output: str,
    numbers: list[int],
    shapes: list[dict],
    keyframes: set[int],
    center: int | None,
    record: Record,
    moment: dict | None,
) -> dict[int, dict[str, list[dict]]]:
    by_frame = {s["frame"]: s for s in shapes}
    plan: dict[int, dict[str, list[dict]]] = {}
    for job in jobs:
        objects: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        if output == "mask":
            objects["shapes"] = [
                mask_shape(label, group, prompt, s, mcs_role(s["frame"], keyframes, center), record)
                for s in shapes
                if job.holds(s["frame"])
            ]
        else:
            objects["tracks"] = _polygon_tracks(label, group, prompt, job, numbers, by_frame, keyframes, center)
        if moment and moment_label is not None:
            span = range(max(moment["start_frame"], numbers[0]), min(moment["end_frame"], numbers[-1]) + 1)
            objects["tags"] = [
                {"frame": f, "label_id": moment_label["id"], "group": group, "source": "auto", "attributes": []}
                for f in span
                if job.holds(f) and f not in task.deleted
            ]
            if (
                job.holds(moment["start_frame"])
                and job.holds(moment["end_frame"])
                and job is _first_holding(jobs, moment)
            ):
                objects["intervals"] = [
                    {
                        "label_id": moment_label["id"],
                        "start": moment["start_frame"],
                        "stop": moment["end_frame"] + 1,
                        "score": float(moment["score"]),
                        "group": group,
                        "source": "auto",
                        "attributes": [],
                    }
                ]
        if any(objects.values()):
            plan[job.id] = objects
    return plan


def _first_holding(jobs: list[Job], moment: dict) -> Job | None:
    return next((j for j in jobs if j.holds(moment["start_frame"]) and j.holds(moment["end_frame"])), None)


def _annotate_notes(
    response: dict, moment_tag_label: dict | None, moment_label: str, label: dict, plan: dict
) -> list[str]:
    notes = []
    moment = response.get("moment")
    if not moment:
        notes.append(f"no moment: {response.get('moment_reason')}")
    elif moment_tag_label is None:
        notes.append(f"the moment was not written: the task has no label '{moment_label}' (add --create-labels)")
    elif not any(objects["intervals"] for objects in plan.values()):
        notes.append(
            "the moment spans several jobs: it is written as frame tags only (CVAT keeps an interval inside one job)"
        )
    missing = [name for name in TOOL_ATTRIBUTES if name not in attribute_ids(label)]
    if missing:
        notes.append(
            f"label '{label['name']}' has no attribute {', '.join(missing)}: the object is tied by its "
            "group only (add --create-attributes to keep keyframes, the prompt and refine's record)"
        )
    return notes


def _undone(writer: JobWriter, error: CvatError, task_id: int, changed: list[str]) -> PartialWriteError:
    """Take this run's new objects out again; the message says what the task holds now."""
    left = writer.undo_creates()
    state = f"objects it could not remove again: {left}" if left else "no annotation from this run is left"
    added = f"; the labels/attributes {', '.join(changed)} were added to the task" if changed else ""
    return PartialWriteError(f"{error}; task {task_id}: {state}{added}")
