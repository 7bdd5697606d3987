"""CVAT workflows: annotate a task (or one job) from a prompt, refine an object from a person's corrections,
read a task's objects back for export.

What the tool writes, in the form real CVAT accepts, opens and exports (docs/cvat.md):
- an object is a set of per-frame **mask shapes** (``source: "auto"``, per-frame ``score``) tied together by a
  ``group`` id unused elsewhere in the task — the object id — and, where the label has them, the attributes
  ``object`` (the object id), ``prompt``, ``MCS`` (keyframe / c*) and ``momentseg`` (the tool's check, below);
  with ``--polygons`` it is a **polygon track** per job instead. Never a mask track.
- the moment is a **tag** (label ``moment``) on every frame of it, in the object's group; an interval as well
  where CVAT accepts one (the moment inside one job).
- every object is written per job (``PATCH /api/jobs/{id}/annotations``, frames in a job's overlap go to
  both jobs, as CVAT slices a task-level write), in requests of at most ``MAX_REQUEST_BYTES``.

Refine tells the tool's shapes from a person's by what the server keeps: CVAT turns ``source`` into
"semi-auto" when a person edits an automatic shape and "manual" when they draw one; any other change (occluded,
z-order, attributes) breaks the digest the tool stored in the ``momentseg`` attribute (or, without that
attribute, the fields the tool always writes). The same attribute lists the frames the tool wrote, so a shape a
person deleted is not written again.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
from cvat_sdk import Client, models
from cvat_sdk.api_client.model_utils import validate_and_convert_types

from momentseg.cvat.connection import CvatError, cvat_errors, task_link
from momentseg.cvat.frames import format_ranges, parse_ranges, select_frames
from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.export import ExportObject, ExportSet
from momentseg.masks import Polygon, from_cvat_rle, polygons_to_mask, to_cvat_rle
from momentseg.result import Shape

OBJECT_ATTRIBUTE = "object"
PROMPT_ATTRIBUTE = "prompt"
MCS_ATTRIBUTE = "MCS"
CHECK_ATTRIBUTE = "momentseg"
MCS_VALUES = ["no", "keyframe", "c*"]
TOOL_ATTRIBUTES = {
    OBJECT_ATTRIBUTE: {"input_type": "text", "mutable": False, "values": [""], "default_value": ""},
    PROMPT_ATTRIBUTE: {"input_type": "text", "mutable": False, "values": [""], "default_value": ""},
    MCS_ATTRIBUTE: {"input_type": "select", "mutable": True, "values": MCS_VALUES, "default_value": "no"},
    CHECK_ATTRIBUTE: {"input_type": "text", "mutable": True, "values": [""], "default_value": ""},
}
# CVAT keeps attribute values up to 4096 characters
MAX_ATTRIBUTE_CHARS = 4000
# far below CVAT's upload limit: a 20,000-frame mask object is 70-100 MB
MAX_REQUEST_BYTES = 8 * 2**20
KINDS = ("shapes", "tracks", "tags", "intervals")

# Runs the model on task frames: (frame selection, prompt, human anchors as CVAT RLE) -> response dict
Runner = Callable[[dict[str, Any], str, list[dict[str, Any]]], dict[str, Any]]
Progress = Callable[[str, int, int], None]


class NothingFoundError(MomentSegError):
    code = "nothing_found"


class LabelMissingError(InvalidInputError):
    code = "label_missing"


class ObjectExistsError(InvalidInputError):
    code = "object_exists"


class PartialWriteError(CvatError):
    """A write failed half-way; the message says exactly what the task holds now."""

    code = "partial_write"


# --- reading a task ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    id: int
    start: int
    stop: int

    def holds(self, frame: int) -> bool:
        return self.start <= frame <= self.stop


@dataclass
class TaskState:
    id: int
    size: int
    width: int
    height: int
    frame_names: list[str] | None
    project_id: int | None
    jobs: list[Job]
    labels: list[dict]
    deleted: set[int]

    def label(self, name: str) -> dict | None:
        return next((label for label in self.labels if label["name"] == name), None)

    def label_by_id(self, label_id: int) -> dict | None:
        return next((label for label in self.labels if label["id"] == label_id), None)

    def job(self, job_id: int) -> Job:
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None:
            raise InvalidInputError(f"job {job_id} is not an annotation job of task {self.id} (its jobs: "
                                    f"{', '.join(str(j.id) for j in self.jobs)})")
        return job


def _json(call, *args, **kwargs) -> Any:
    _, response = call(*args, _parse_response=False, **kwargs)
    return json.loads(response.data)


def _request(client: Client, model, data: dict):
    """A request body as cvat-sdk's model (checked against CVAT's schema before it is sent)."""
    return validate_and_convert_types(data, (model,), ["body"], True, True, client.api_client.configuration)


def _paginated(call, **kwargs) -> list[dict]:
    results, page = [], 1
    while True:
        data = _json(call, page=page, page_size=500, **kwargs)
        results += data["results"]
        if not data.get("next"):
            return results
        page += 1


def read_task(client: Client, task_id: int) -> TaskState:
    """The task's frames, annotation jobs and labels."""
    api = client.api_client
    with cvat_errors(f"task {task_id}"):
        task = _json(api.tasks_api.retrieve, task_id)
        meta = _json(api.tasks_api.retrieve_data_meta, task_id)
        jobs = _paginated(api.jobs_api.list, task_id=task_id)
        labels = _paginated(api.labels_api.list, task_id=task_id)
    if not meta.get("size") or not meta.get("frames"):
        raise InvalidInputError(f"task {task_id} has no video or images")
    is_video = task.get("data_original_chunk_type") == "video"
    frames = meta["frames"]
    names = None if is_video or len(frames) != meta["size"] else [f["name"] for f in frames]
    annotation_jobs = sorted((Job(j["id"], j["start_frame"], j["stop_frame"]) for j in jobs
                              if j.get("type", "annotation") == "annotation"), key=lambda j: (j.start, j.id))
    return TaskState(task_id, meta["size"], frames[0]["width"], frames[0]["height"], names, task.get("project_id"),
                     annotation_jobs, labels, set(meta.get("deleted_frames") or []))


def read_job_annotations(client: Client, task: TaskState, jobs: Iterable[Job] | None = None) -> dict[int, dict]:
    """Each job's annotations as CVAT stores them (plain JSON)."""
    out = {}
    for job in task.jobs if jobs is None else jobs:
        with cvat_errors(f"annotations of job {job.id} of task {task.id}"):
            out[job.id] = _json(client.api_client.jobs_api.retrieve_annotations, job.id)
    return out


# --- the tool's marks on a shape --------------------------------------------------------------------------

def _attribute_ids(label: dict) -> dict[str, int]:
    return {a["name"]: a["id"] for a in label.get("attributes", [])}


def _attribute_names(label: dict | None) -> dict[int, str]:
    return {a["id"]: a["name"] for a in (label or {}).get("attributes", [])}


def _value(obj: dict, names: dict[int, str], name: str) -> str | None:
    return next((str(a["value"]) for a in obj.get("attributes", []) if names.get(a["spec_id"]) == name), None)


def shape_digest(shape: dict, names: dict[int, str]) -> str:
    """A digest of every field of a shape a person can change (everything but ``score`` and the check itself)."""
    content = [int(shape["frame"]), str(shape["type"]), [round(float(p), 2) for p in shape["points"]],
               bool(shape.get("occluded")), bool(shape.get("outside")), int(shape.get("z_order") or 0),
               round(float(shape.get("rotation") or 0), 2), int(shape["label_id"]), int(shape.get("group") or 0),
               sorted((int(a["spec_id"]), str(a["value"])) for a in shape.get("attributes", [])
                      if names.get(a["spec_id"]) != CHECK_ATTRIBUTE)]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    """What the ``momentseg`` attribute keeps: the frames the run processed and the frames it wrote."""

    first: int
    last: int
    step: int
    written: frozenset[int] | None  # None: too many runs to keep

    def text(self, digest: str) -> str:
        written = format_ranges(self.written) if self.written is not None else "?"
        text = f"{digest} {self.first}-{self.last}:{self.step} {written}"
        return text if len(text) <= MAX_ATTRIBUTE_CHARS else f"{digest} {self.first}-{self.last}:{self.step} ?"

    @classmethod
    def parse(cls, text: str | None) -> tuple[str, Record] | None:
        try:
            digest, span, written = (text or "").split(" ")
            first_last, _, step = span.partition(":")
            first, _, last = first_last.partition("-")
            return digest, cls(int(first), int(last), int(step), None if written == "?" else
                               frozenset(parse_ranges(written)))
        except ValueError:
            return None


def is_tool_shape(shape: dict, names: dict[int, str]) -> bool:
    """The tool wrote this shape and nobody changed it since, in any field."""
    if shape.get("source") != "auto":
        return False
    check = _value(shape, names, CHECK_ATTRIBUTE)
    if check is not None:
        parsed = Record.parse(check)
        return parsed is not None and parsed[0] == shape_digest(shape, names)
    # written before the label had the attribute: the fields the tool always writes
    return (not shape.get("occluded") and not shape.get("outside") and not shape.get("z_order")
            and not shape.get("rotation"))


def _with_check(shape: dict, label: dict, record: Record) -> dict:
    ids = _attribute_ids(label)
    if CHECK_ATTRIBUTE in ids:
        names = _attribute_names(label)
        shape["attributes"] = [a for a in shape["attributes"] if a["spec_id"] != ids[CHECK_ATTRIBUTE]]
        shape["attributes"].append({"spec_id": ids[CHECK_ATTRIBUTE], "value": record.text(shape_digest(shape, names))})
    return shape


def _attributes(label: dict, values: dict[str, str]) -> list[dict]:
    ids = _attribute_ids(label)
    return [{"spec_id": ids[name], "value": value} for name, value in values.items() if name in ids]


def _mcs_role(frame: int, keyframes: set[int], center: int | None) -> str:
    return "c*" if frame == center else "keyframe" if frame in keyframes else "no"


def _mask_shape(label: dict, group: int, prompt: str, shape: dict, role: str, record: Record) -> dict:
    body = {"type": "mask", "frame": int(shape["frame"]), "label_id": label["id"], "group": group, "source": "auto",
            "score": float(shape["score"]), "occluded": False, "outside": False, "z_order": 0, "rotation": 0.0,
            "points": [float(p) for p in shape["points"]], "elements": [],
            "attributes": _attributes(label, {OBJECT_ATTRIBUTE: str(group), PROMPT_ATTRIBUTE: prompt,
                                              MCS_ATTRIBUTE: role})}
    return _with_check(body, label, record)


# --- writing: per job, in bounded requests, undone on failure ---------------------------------------------

def _batches(objects: dict[str, list[dict]]) -> list[dict[str, list[dict]]]:
    """Request bodies of at most MAX_REQUEST_BYTES (a single larger object goes alone)."""
    empty = len(json.dumps({kind: [] for kind in KINDS}))
    batches: list[dict[str, list[dict]]] = []
    current: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    size = empty
    for kind in KINDS:
        for obj in objects.get(kind, []):
            obj_size = len(json.dumps(obj)) + 2
            if size > empty and size + obj_size > MAX_REQUEST_BYTES:
                batches.append(current)
                current, size = {k: [] for k in KINDS}, empty
            current[kind].append(obj)
            size += obj_size
    if size > empty:
        batches.append(current)
    return batches


class _JobWriter:
    """Job-level PATCHes; keeps what it created so that a failure can take exactly that back out."""

    def __init__(self, client: Client, task_id: int, progress: Progress | None):
        self.client, self.task_id = client, task_id
        self.created: dict[int, dict[str, list[dict]]] = {}
        self.counts = {"created": 0, "updated": 0, "deleted": 0}
        self.progress = progress or (lambda stage, done, total: None)

    def _patch(self, action: str, job_id: int, body: dict[str, list[dict]]) -> dict:
        with cvat_errors(f"writing to job {job_id} of task {self.task_id}"):
            return _json(self.client.api_client.jobs_api.partial_update_annotations, action, job_id,
                         patched_labeled_data_request=_request(self.client, models.PatchedLabeledDataRequest, body))

    def write(self, plan: dict[str, dict[int, dict[str, list[dict]]]]) -> None:
        """``plan[action][job_id][kind]`` → requests: creates, then updates, then deletes."""
        requests = [(action, job_id, batch) for action in ("create", "update", "delete")
                    for job_id, objects in plan.get(action, {}).items() for batch in _batches(objects)]
        for done, (action, job_id, batch) in enumerate(requests):
            self.progress("writing", done, len(requests))
            answer = self._patch(action, job_id, batch)
            if action == "create":
                kept = self.created.setdefault(job_id, {kind: [] for kind in KINDS})
                for kind in KINDS:
                    kept[kind] += answer.get(kind) or []
            self.counts[{"create": "created", "update": "updated", "delete": "deleted"}[action]] += sum(
                len(batch[kind]) for kind in KINDS)
        self.progress("writing", len(requests), len(requests))

    def undo_creates(self) -> str:
        """Delete what this run created; say what could not be deleted."""
        left = []
        for job_id, objects in self.created.items():
            for batch in _batches(objects):
                try:
                    self._patch("delete", job_id, batch)
                except CvatError:
                    left.append(f"job {job_id}: ids " + ", ".join(str(o["id"]) for kind in KINDS for o in batch[kind]))
        return "; ".join(left)


# --- annotate ---------------------------------------------------------------------------------------------

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
        if wanted and (attribute["input_type"] != wanted["input_type"] or (
                wanted["input_type"] == "select" and not set(MCS_VALUES) <= set(attribute.get("values", [])))):
            raise InvalidInputError(f"label '{label['name']}' of task {task_id} has an attribute "
                                    f"'{attribute['name']}' of another kind ({attribute['input_type']}); momentseg "
                                    f"writes it as {wanted['input_type']}: rename that attribute")


def object_groups(annotations: dict[int, dict]) -> set[int]:
    return {int(obj.get("group") or 0) for data in annotations.values() for kind in KINDS
            for obj in data.get(kind) or []}


def _polygon_tracks(label: dict, group: int, prompt: str, job: Job, frames: list[int], by_frame: dict[int, dict],
                    keyframes: set[int], center: int | None) -> list[dict]:
    """The object's polygon track within one job: from its first visible frame, ``outside`` after every
    visible run (at the next processed frame, or the frame after the last one) — never a leading outside."""
    in_job = [f for f in frames if job.holds(f)]
    shapes, last_points = [], None
    for position, frame in enumerate(in_job):
        visible = by_frame.get(frame)
        if visible is not None:
            last_points = [float(p) for p in visible["points"]]
            shapes.append({"type": "polygon", "frame": frame, "points": last_points, "outside": False,
                           "occluded": False, "z_order": 0, "rotation": 0.0,
                           "attributes": _attributes(label, {MCS_ATTRIBUTE: _mcs_role(frame, keyframes, center)})})
            following = in_job[position + 1] if position + 1 < len(in_job) else frame + 1
            if following not in by_frame and following <= job.stop:
                shapes.append({"type": "polygon", "frame": following, "points": last_points, "outside": True,
                               "occluded": False, "z_order": 0, "rotation": 0.0, "attributes": []})
    shapes = list({s["frame"]: s for s in shapes}.values())
    if not any(not s["outside"] for s in shapes):
        return []
    return [{"label_id": label["id"], "frame": shapes[0]["frame"], "group": group, "source": "auto",
             "attributes": _attributes(label, {OBJECT_ATTRIBUTE: str(group), PROMPT_ATTRIBUTE: prompt}),
             "shapes": shapes, "elements": []}]


def _label_changes(task: TaskState, label: dict, moment_label: str, *, create_labels: bool,
                   create_attributes: bool) -> tuple[list[dict], list[str], list[str]]:
    """The label PATCH annotate will send in its write step (nothing is changed here)."""
    patches, new_labels, new_attributes = [], [], []
    if create_attributes:
        have = _attribute_ids(label)
        missing = [dict(spec, name=name) for name, spec in TOOL_ATTRIBUTES.items() if name not in have]
        if missing:
            patches.append({"id": label["id"], "name": label["name"], "attributes": missing})
            new_attributes = [f"{label['name']}.{a['name']}" for a in missing]
    if create_labels and task.label(moment_label) is None:
        patches.append({"name": moment_label, "type": "tag", "attributes": []})
        new_labels = [moment_label]
    if patches and task.project_id:
        raise InvalidInputError(f"task {task.id} belongs to project {task.project_id}: add the label "
                                f"'{moment_label}' or the attributes there (labels of a project task are the "
                                "project's); nothing written")
    return patches, new_labels, new_attributes


def annotate_task(client: Client, task_id: int, prompt: str, label_name: str, run: Runner, *,
                  frames: dict[str, Any] | None = None, job_id: int | None = None, output: str = "mask",
                  moment_label: str = "moment", create_labels: bool = False, create_attributes: bool = False,
                  object_id: int | None = None, progress: Progress | None = None) -> AnnotateSummary:
    """Run MomentSeg on a task (or one job of it) and add one object: per-frame masks (or a polygon track
    per job), the moment as frame tags. Checks everything before the model runs; writes last; undoes its
    own writes when one fails."""
    started = time.perf_counter()
    if output not in ("mask", "polygon"):
        raise InvalidInputError(f"output must be 'mask' or 'polygon', got '{output}'")
    task = read_task(client, task_id)
    label = task.label(label_name)
    if label is None:
        names = ", ".join(sorted(l["name"] for l in task.labels)) or "none"
        raise LabelMissingError(f"label '{label_name}' is not in task {task_id} (its labels: {names}); nothing written")
    if label.get("type", "any") not in ("any", output):
        raise InvalidInputError(f"label '{label_name}' takes {label['type']} shapes, not {output}s; nothing written")
    _check_attribute_types(label, task_id)
    existing_moment = task.label(moment_label)
    if existing_moment is not None and existing_moment.get("type", "any") not in ("any", "tag"):
        raise InvalidInputError(f"label '{moment_label}' takes {existing_moment['type']} shapes, not frame tags; "
                                "choose another --moment-label")
    jobs = [task.job(job_id)] if job_id is not None else task.jobs
    selection = dict(frames or {})
    if job_id is not None:
        job = jobs[0]
        selection["frame_start"] = max(job.start, selection.get("frame_start") or job.start)
        selection["frame_stop"] = min(job.stop, job.stop if selection.get("frame_stop") is None
                                      else selection["frame_stop"])
    numbers = select_frames(task.size, task.deleted, selection.get("frame_start"), selection.get("frame_stop"),
                            selection.get("frame_step"))
    patches, new_labels, new_attributes = _label_changes(task, label, moment_label, create_labels=create_labels,
                                                         create_attributes=create_attributes)
    annotations = read_job_annotations(client, task)
    used = object_groups(annotations)
    if object_id is not None and object_id in used:
        raise ObjectExistsError(f"task {task_id} already holds object {object_id}: use refine to update it")
    group = object_id if object_id is not None else max(used | {0}) + 1

    response = run({"id": task_id, "numbers": numbers}, prompt, [])  # the same frames wherever the model runs
    if not response.get("tracks"):
        raise NothingFoundError(f"the model found nothing for '{prompt}' in task {task_id}; nothing written")

    writer = _JobWriter(client, task_id, progress)
    changed: list[str] = []
    try:
        if patches:
            with cvat_errors(f"adding labels and attributes to task {task_id}"):
                _json(client.api_client.tasks_api.partial_update, task_id, patched_task_write_request=_request(
                    client, models.PatchedTaskWriteRequest, {"labels": patches}))
            changed = new_labels + new_attributes
            task = read_task(client, task_id)
            label = task.label(label_name)
        moment_tag_label = task.label(moment_label)
        shapes = [s for s in response["tracks"][0]["shapes"] if not s["outside"]]
        keyframes, center = set(response.get("keyframes") or []), response.get("center_frame")
        record = Record(numbers[0], numbers[-1], _step(numbers), frozenset(s["frame"] for s in shapes))
        plan = _annotate_plan(task, jobs, label, moment_tag_label, group, prompt, output, numbers, shapes,
                              keyframes, center, record, response.get("moment"))
        writer.write({"create": plan})
    except CvatError as error:
        raise _undone(writer, error, task_id, changed) from error

    notes = _annotate_notes(response, moment_tag_label, moment_label, label, plan)
    counts = {kind: sum(len(objects[kind]) for objects in plan.values()) for kind in KINDS}
    written = {"mask_shapes": counts["shapes"], "polygon_tracks": counts["tracks"], "tags": counts["tags"],
               "intervals": counts["intervals"]}
    moment = response.get("moment")
    return AnnotateSummary(task_id, group, job_id, label_name, output, len(numbers), sorted(record.written),
                           sorted(keyframes), center, moment, written, new_labels, new_attributes,
                           task_link(client, task_id, job_id), round(time.perf_counter() - started, 2), notes)


def _step(numbers: list[int]) -> int:
    return min((b - a for a, b in zip(numbers, numbers[1:])), default=1)


def _annotate_plan(task: TaskState, jobs: list[Job], label: dict, moment_label: dict | None, group: int,
                   prompt: str, output: str, numbers: list[int], shapes: list[dict], keyframes: set[int],
                   center: int | None, record: Record, moment: dict | None) -> dict[int, dict[str, list[dict]]]:
    by_frame = {s["frame"]: s for s in shapes}
    plan: dict[int, dict[str, list[dict]]] = {}
    for job in jobs:
        objects = {kind: [] for kind in KINDS}
        if output == "mask":
            objects["shapes"] = [_mask_shape(label, group, prompt, s, _mcs_role(s["frame"], keyframes, center), record)
                                 for s in shapes if job.holds(s["frame"])]
        else:
            objects["tracks"] = _polygon_tracks(label, group, prompt, job, numbers, by_frame, keyframes, center)
        if moment and moment_label is not None:
            span = range(max(moment["start_frame"], numbers[0]), min(moment["end_frame"], numbers[-1]) + 1)
            objects["tags"] = [{"frame": f, "label_id": moment_label["id"], "group": group, "source": "auto",
                                "attributes": []} for f in span if job.holds(f) and f not in task.deleted]
            if job.holds(moment["start_frame"]) and job.holds(moment["end_frame"]) and job is _first_holding(
                    jobs, moment):
                objects["intervals"] = [{"label_id": moment_label["id"], "start": moment["start_frame"],
                                         "stop": moment["end_frame"] + 1, "score": float(moment["score"]),
                                         "group": group, "source": "auto", "attributes": []}]
        if any(objects.values()):
            plan[job.id] = objects
    return plan


def _first_holding(jobs: list[Job], moment: dict) -> Job | None:
    return next((j for j in jobs if j.holds(moment["start_frame"]) and j.holds(moment["end_frame"])), None)


def _annotate_notes(response: dict, moment_tag_label: dict | None, moment_label: str, label: dict,
                    plan: dict) -> list[str]:
    notes = []
    moment = response.get("moment")
    if not moment:
        notes.append(f"no moment: {response.get('moment_reason')}")
    elif moment_tag_label is None:
        notes.append(f"the moment was not written: the task has no label '{moment_label}' (add --create-labels)")
    elif not any(objects["intervals"] for objects in plan.values()):
        notes.append("the moment spans several jobs: it is written as frame tags only (CVAT keeps an interval "
                     "inside one job)")
    missing = [name for name in TOOL_ATTRIBUTES if name not in _attribute_ids(label)]
    if missing:
        notes.append(f"label '{label['name']}' has no attribute {', '.join(missing)}: the object is tied by its "
                     "group only (add --create-attributes to keep keyframes, the prompt and refine's record)")
    return notes


def _undone(writer: _JobWriter, error: CvatError, task_id: int, changed: list[str]) -> PartialWriteError:
    """Take this run's new objects out again; the message says what the task holds now."""
    left = writer.undo_creates()
    state = (f"objects it could not remove again: {left}" if left else "no annotation from this run is left")
    added = f"; the labels/attributes {', '.join(changed)} were added to the task" if changed else ""
    return PartialWriteError(f"{error}; task {task_id}: {state}{added}")


# --- refine -----------------------------------------------------------------------------------------------

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
            names = _attribute_names(task.label_by_id(shape["label_id"]))
            if int(shape.get("group") or 0) == object_id or _value(shape, names, OBJECT_ATTRIBUTE) == str(object_id):
                found.append(_ObjectShape(job_id, shape))
    tool_labels = {o.shape["label_id"] for o in found if o.shape.get("source") == "auto"}
    return [o for o in found if not tool_labels or o.shape["label_id"] in tool_labels]


def _shape_mask(shape: dict, width: int, height: int) -> np.ndarray:
    if shape["type"] == "mask":
        return from_cvat_rle(shape["points"], width, height)
    exterior = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
    return polygons_to_mask([Polygon(exterior)], width, height)


def refine_object(client: Client, task_id: int, object_id: int, run: Runner, *, prompt: str | None = None,
                  progress: Progress | None = None) -> RefineSummary:
    """Re-run the model with a person's masks of the object as BAP anchors (S^p = 1), then replace only the
    tool's own untouched shapes of it, by id: each is re-read just before writing and left alone when anything
    in it changed meanwhile. A shape a person deleted stays deleted; a model that finds nothing changes nothing."""
    started = time.perf_counter()
    task = read_task(client, task_id)
    annotations = read_job_annotations(client, task)
    if any(int(t.get("group") or 0) == object_id and t.get("source") != "manual"
           for data in annotations.values() for t in data.get("tracks") or []):
        raise InvalidInputError(f"object {object_id} of task {task_id} is a polygon track: CVAT keeps one source "
                                "for a whole track, so refine cannot tell a person's keyframes from the tool's; "
                                "annotate with masks to refine")
    shapes = _object_shapes(task, annotations, object_id)
    if not shapes:
        raise InvalidInputError(f"task {task_id} has no object {object_id} (no shape in group {object_id})")
    tool = [o for o in shapes if o.shape.get("source") == "auto"]
    label = task.label_by_id((tool or shapes)[0].shape["label_id"])
    names = _attribute_names(label)
    records = [r for r in (Record.parse(_value(o.shape, names, CHECK_ATTRIBUTE)) for o in shapes) if r]
    object_prompt = prompt or next((v for o in shapes if (v := _value(o.shape, names, PROMPT_ATTRIBUTE))), None)
    if not object_prompt:
        raise InvalidInputError(f"the prompt of object {object_id} is unknown (its label has no 'prompt' "
                                "attribute): pass --prompt")
    person = [o for o in shapes if o.shape.get("source") != "auto"]
    own = [o for o in tool if is_tool_shape(o.shape, names)]
    touched = [o for o in tool if not is_tool_shape(o.shape, names)]
    anchors = _anchors(person, task)
    numbers = _refine_frames(task, records, shapes, anchors)

    response = run({"id": task_id, "numbers": numbers}, object_prompt, [
        {"frame": frame, "mask": to_cvat_rle(mask)} for frame, mask in sorted(anchors.items())])
    link = task_link(client, task_id)
    kept = sorted({o.shape["frame"] for o in person + touched})
    if not response.get("tracks"):
        return RefineSummary(task_id, object_id, sorted(anchors), kept, [], {"created": 0, "updated": 0, "deleted": 0},
                             link, round(time.perf_counter() - started, 2),
                             ["the model found nothing: the task is unchanged"])

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
    record = Record(numbers[0], numbers[-1], _step(numbers),
                    None if written_before is None else written_before | frozenset(shapes_by_frame))
    plan, notes = _refine_plan(task, label, object_id, object_prompt, numbers, shapes_by_frame, keyframes, center,
                               record, unchanged, person + touched + newcomers, fresh_shapes, written_before)
    writer = _JobWriter(client, task_id, progress)
    try:
        writer.write(plan)
    except CvatError as error:
        left = writer.undo_creates()
        raise PartialWriteError(
            f"{error}; task {task_id}, object {object_id}: {writer.counts['updated']} of the tool's shapes were "
            f"updated and {writer.counts['deleted']} deleted before the failure, "
            + (f"new shapes left: {left}" if left else "no new shape is left")
            + "; every shape of a person is untouched: run refine again to finish") from error
    if changed:
        notes.append(f"frames {format_ranges(changed)} changed while the model ran: left as they are")
    return RefineSummary(task_id, object_id, sorted(anchors), kept, changed, dict(writer.counts), link,
                         round(time.perf_counter() - started, 2), notes)


def _written(records: list[tuple[str, Record]]) -> frozenset[int] | None:
    """The frames the tool ever wrote the object on; None when no record says."""
    if not records or any(record.written is None for _, record in records):
        return None
    return frozenset().union(*(record.written for _, record in records))


def _jobs_overlapping(task: TaskState, frames: list[int]) -> list[int]:
    return [j.id for j in task.jobs if frames and j.start <= frames[-1] and j.stop >= frames[0]]


def _anchors(person: list[_ObjectShape], task: TaskState) -> dict[int, np.ndarray]:
    """S^p = 1 frames: the union of a person's visible masks/polygons of the object on each frame."""
    anchors: dict[int, np.ndarray] = {}
    for o in person:
        if o.shape.get("outside") or o.shape["type"] not in ("mask", "polygon"):
            continue
        mask = _shape_mask(o.shape, task.width, task.height)
        frame = o.shape["frame"]
        anchors[frame] = anchors[frame] | mask if frame in anchors else mask
    return {frame: mask for frame, mask in anchors.items() if mask.any()}


def _refine_frames(task: TaskState, records: list[tuple[str, Record]], shapes: list[_ObjectShape],
                   anchors: dict[int, np.ndarray]) -> list[int]:
    """The frames annotate processed (from its record), else the span of the object's jobs; plus the anchors."""
    if records:
        record = records[0][1]
        frames = set(range(record.first, record.last + 1, record.step))
    else:
        jobs = [task.job(j) for j in {o.job_id for o in shapes}]
        frames = set(range(min(j.start for j in jobs), max(j.stop for j in jobs) + 1))
    return sorted((frames | set(anchors)) - task.deleted)


def _refine_plan(task: TaskState, label: dict, group: int, prompt: str, numbers: list[int],
                 shapes_by_frame: dict[int, dict], keyframes: set[int], center: int | None, record: Record,
                 own: list[_ObjectShape], others: list[_ObjectShape], fresh: list[_ObjectShape],
                 written_before: frozenset[int] | None) -> tuple[dict, list[str]]:
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
                new = _mask_shape(label, group, prompt, result, _mcs_role(frame, keyframes, center), record)
                add("update", job.id, dict(new, id=mine[0]["id"]))
                for extra in mine[1:]:
                    add("delete", job.id, extra)
            elif result is not None and key not in present:
                if written_before is not None and frame not in written_before:
                    add("create", job.id, _mask_shape(label, group, prompt, result,
                                                      _mcs_role(frame, keyframes, center), record))
                else:
                    skipped_new += 1
    notes = []
    if skipped_new:
        notes.append(f"{skipped_new} frames without a shape of the object were left empty: the tool wrote there "
                     "before and a person removed it" + ("" if written_before is not None else
                                                         ", or the label has no 'momentseg' attribute to tell"))
    return {action: jobs for action, jobs in plan.items() if jobs}, notes


# --- reading a task back for export -----------------------------------------------------------------------

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
            found[key] = (TaskObject(key[1], label["name"], "", track, {}, _attribute_names(label)), {})
        obj, frames = found[key]
        frames.setdefault(shape["frame"], {}).setdefault(job_id, []).append(shape)
        return obj

    for job_id, data in annotations.items():
        job = task.job(job_id)
        for shape in data.get("shapes") or []:
            label = task.label_by_id(shape["label_id"])
            if shape["type"] not in ("mask", "polygon") or label is None:
                continue
            names = _attribute_names(label)
            declared = _value(shape, names, OBJECT_ATTRIBUTE)
            group = int(shape.get("group") or 0) or (int(declared) if declared and declared.isdigit() else 0)
            key = ("group", group, label["id"]) if group else ("shape", shape["id"], label["id"])
            obj = add(key, label, False, job_id, shape)
            obj.prompt = obj.prompt or _value(shape, names, PROMPT_ATTRIBUTE) or ""
        for track in data.get("tracks") or []:
            label = task.label_by_id(track["label_id"])
            if label is None or not track.get("shapes") or track["shapes"][0]["type"] not in ("mask", "polygon"):
                continue
            group = int(track.get("group") or 0)
            key = ("track", group, label["id"]) if group else ("track-id", track["id"], label["id"])
            keyframes = [dict(s, source=track.get("source", "manual"), label_id=track["label_id"])
                         for s in sorted(track["shapes"], key=lambda s: s["frame"])]
            if not keyframes[-1].get("outside") and job.stop + 1 < task.size:
                # a job's part of a track ends with the job
                keyframes.append(dict(keyframes[-1], id=0, frame=job.stop + 1, outside=True))
            for shape in keyframes:
                obj = add(key, label, True, job_id, shape)
            obj.prompt = obj.prompt or _value(track, _attribute_names(label), PROMPT_ATTRIBUTE) or ""
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
        return (min(_PERSON_FIRST.get(s.get("source"), 0) for s in shapes), -max(int(s.get("id") or 0) for s in shapes))

    shapes = min(by_job.values(), key=rank)
    visible = [s for s in shapes if not s.get("outside")]
    if len(visible) < 2:
        return min(shapes, key=lambda s: rank([s]))
    union = np.zeros((task.height, task.width), bool)
    for shape in visible:
        union |= _shape_mask(shape, task.width, task.height)
    best = min(visible, key=lambda s: rank([s]))
    return dict(best, type="mask", points=to_cvat_rle(union))


def _moment_from_tags(task: TaskState, annotations: dict[int, dict], object_ids: list[int]) -> dict[str, int] | None:
    """The first chosen object's moment: the span of the automatic tags in its group."""
    for object_id in object_ids:
        frames = sorted({t["frame"] for data in annotations.values() for t in data.get("tags") or []
                         if int(t.get("group") or 0) == object_id and t.get("source") == "auto"})
        if frames:
            return {"start_frame": frames[0], "end_frame": frames[-1]}
    return None


def _track_frames(shapes: list[dict], total: int) -> dict[int, dict]:
    """A track frame by frame as CVAT shows it: each keyframe holds, polygons with as many points move
    linearly towards the next keyframe, ``outside`` ends it."""
    keyframes = sorted(shapes, key=lambda s: s["frame"])
    frames = {}
    for current, following in zip(keyframes, keyframes[1:] + [None]):
        if current.get("outside"):
            continue
        stop = following["frame"] if following is not None else total
        for frame in range(current["frame"], stop):
            points = list(current["points"])
            if following is not None and frame != current["frame"] and len(following["points"]) == len(points) \
                    and current["type"] == "polygon":
                t = (frame - current["frame"]) / (following["frame"] - current["frame"])
                points = [float(a + (b - a) * t) for a, b in zip(current["points"], following["points"])]
            frames[frame] = dict(current, frame=frame, points=points, keyframe=frame == current["frame"])
    return frames


def task_export(client: Client, task_id: int, object_ids: list[int] | None = None) -> ExportSet:
    """The task's objects, read across jobs, as an export set (the first object's prompt and moment)."""
    found = read_task_objects(client, task_id, object_ids)
    task, objects = found.task, []
    for obj in found.objects:
        frames = _track_frames(list(obj.shapes.values()), task.size) if obj.track else {
            f: dict(s, keyframe=True) for f, s in obj.shapes.items()}
        shapes = {f: Shape(f, s["type"], list(s["points"]), bool(s.get("keyframe")), bool(s.get("outside")),
                           float(s.get("score", 1.0))) for f, s in frames.items()}
        attributes = {f: {obj.attribute_names[a["spec_id"]]: str(a["value"]) for a in s.get("attributes", [])
                          if a["spec_id"] in obj.attribute_names} for f, s in frames.items()}
        objects.append(ExportObject(obj.object_id, obj.label, obj.prompt, obj.track, shapes, attributes))
    prompt = next((o.prompt for o in objects if o.prompt), "")
    return ExportSet(task.width, task.height, task.size, task.frame_names, objects, prompt, found.moment)
