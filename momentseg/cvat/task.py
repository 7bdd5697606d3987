"""The task model the CVAT workflows share (annotate.py, refine.py, export.py): a task's jobs and labels as
read, the tool's marks on its shapes, and the per-job writer that takes its own writes back out on failure.

What the tool writes, in the form real CVAT accepts, opens and exports (docs/cvat.md):
- an object is a set of per-frame **mask shapes** (``source: "auto"``, per-frame ``score``) tied together by a
  ``group`` id unused elsewhere in the task — the object id — and, where the label has them, the attributes
  ``object`` (the object id), ``prompt``, ``MCS`` (keyframe / c*) and ``momentseg`` (the tool's check, below);
  with ``--output polygon`` it is a **polygon track** per job instead. Never a mask track.
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from cvat_sdk import Client, models
from cvat_sdk.api_client.model_utils import validate_and_convert_types

from momentseg.cvat.connection import CvatError, cvat_errors
from momentseg.cvat.frames import format_ranges, parse_ranges
from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.masks import Polygon, from_cvat_rle, polygons_to_mask

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
            raise InvalidInputError(
                f"job {job_id} is not an annotation job of task {self.id} (its jobs: "
                f"{', '.join(str(j.id) for j in self.jobs)})"
            )
        return job


def api_json(call, *args, **kwargs) -> Any:
    _, response = call(*args, _parse_response=False, **kwargs)
    return json.loads(response.data)


def api_request(client: Client, model, data: dict):
    """A request body as cvat-sdk's model (checked against CVAT's schema before it is sent)."""
    return validate_and_convert_types(data, (model,), ["body"], True, True, client.api_client.configuration)


def _paginated(call, **kwargs) -> list[dict]:
    results, page = [], 1
    while True:
        data = api_json(call, page=page, page_size=500, **kwargs)
        results += data["results"]
        if not data.get("next"):
            return results
        page += 1


def read_task(client: Client, task_id: int) -> TaskState:
    """The task's frames, annotation jobs and labels."""
    api = client.api_client
    with cvat_errors(f"task {task_id}"):
        task = api_json(api.tasks_api.retrieve, task_id)
        meta = api_json(api.tasks_api.retrieve_data_meta, task_id)
        jobs = _paginated(api.jobs_api.list, task_id=task_id)
        labels = _paginated(api.labels_api.list, task_id=task_id)
    if not meta.get("size") or not meta.get("frames"):
        raise InvalidInputError(f"task {task_id} has no video or images")
    is_video = task.get("data_original_chunk_type") == "video"
    frames = meta["frames"]
    names = None if is_video or len(frames) != meta["size"] else [f["name"] for f in frames]
    annotation_jobs = sorted(
        (Job(j["id"], j["start_frame"], j["stop_frame"]) for j in jobs if j.get("type", "annotation") == "annotation"),
        key=lambda j: (j.start, j.id),
    )
    return TaskState(
        task_id,
        meta["size"],
        frames[0]["width"],
        frames[0]["height"],
        names,
        task.get("project_id"),
        annotation_jobs,
        labels,
        set(meta.get("deleted_frames") or []),
    )


def read_job_annotations(client: Client, task: TaskState, jobs: Iterable[Job] | None = None) -> dict[int, dict]:
    """Each job's annotations as CVAT stores them (plain JSON)."""
    out = {}
    for job in task.jobs if jobs is None else jobs:
        with cvat_errors(f"annotations of job {job.id} of task {task.id}"):
            out[job.id] = api_json(client.api_client.jobs_api.retrieve_annotations, job.id)
    return out


def object_groups(annotations: dict[int, dict]) -> set[int]:
    """The group ids the task's annotations use (object ids are unused ones)."""
    return {
        int(obj.get("group") or 0) for data in annotations.values() for kind in KINDS for obj in data.get(kind) or []
    }


# --- the tool's marks on a shape --------------------------------------------------------------------------


def attribute_ids(label: dict) -> dict[str, int]:
    return {a["name"]: a["id"] for a in label.get("attributes", [])}


def attribute_names_of(label: dict | None) -> dict[int, str]:
    return {a["id"]: a["name"] for a in (label or {}).get("attributes", [])}


def attribute_value(obj: dict, names: dict[int, str], name: str) -> str | None:
    return next((str(a["value"]) for a in obj.get("attributes", []) if names.get(a["spec_id"]) == name), None)


def shape_digest(shape: dict, names: dict[int, str]) -> str:
    """A digest of every field of a shape a person can change (everything but ``score`` and the check itself)."""
    content = [
        int(shape["frame"]),
        str(shape["type"]),
        [round(float(p), 2) for p in shape["points"]],
        bool(shape.get("occluded")),
        bool(shape.get("outside")),
        int(shape.get("z_order") or 0),
        round(float(shape.get("rotation") or 0), 2),
        int(shape["label_id"]),
        int(shape.get("group") or 0),
        sorted(
            (int(a["spec_id"]), str(a["value"]))
            for a in shape.get("attributes", [])
            if names.get(a["spec_id"]) != CHECK_ATTRIBUTE
        ),
    ]
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
            return digest, cls(
                int(first), int(last), int(step), None if written == "?" else frozenset(parse_ranges(written))
            )
        except ValueError:
            return None


def is_tool_shape(shape: dict, names: dict[int, str]) -> bool:
    """The tool wrote this shape and nobody changed it since, in any field."""
    if shape.get("source") != "auto":
        return False
    check = attribute_value(shape, names, CHECK_ATTRIBUTE)
    if check is not None:
        parsed = Record.parse(check)
        return parsed is not None and parsed[0] == shape_digest(shape, names)
    # written before the label had the attribute: the fields the tool always writes
    return (
        not shape.get("occluded")
        and not shape.get("outside")
        and not shape.get("z_order")
        and not shape.get("rotation")
    )


def _with_check(shape: dict, label: dict, record: Record) -> dict:
    ids = attribute_ids(label)
    if CHECK_ATTRIBUTE in ids:
        names = attribute_names_of(label)
        shape["attributes"] = [a for a in shape["attributes"] if a["spec_id"] != ids[CHECK_ATTRIBUTE]]
        shape["attributes"].append({"spec_id": ids[CHECK_ATTRIBUTE], "value": record.text(shape_digest(shape, names))})
    return shape


def attribute_values(label: dict, values: dict[str, str]) -> list[dict]:
    ids = attribute_ids(label)
    return [{"spec_id": ids[name], "value": value} for name, value in values.items() if name in ids]


def mcs_role(frame: int, keyframes: set[int], center: int | None) -> str:
    return "c*" if frame == center else "keyframe" if frame in keyframes else "no"


def mask_shape(label: dict, group: int, prompt: str, shape: dict, role: str, record: Record) -> dict:
    body = {
        "type": "mask",
        "frame": int(shape["frame"]),
        "label_id": label["id"],
        "group": group,
        "source": "auto",
        "score": float(shape["score"]),
        "occluded": False,
        "outside": False,
        "z_order": 0,
        "rotation": 0.0,
        "points": [float(p) for p in shape["points"]],
        "elements": [],
        "attributes": attribute_values(
            label, {OBJECT_ATTRIBUTE: str(group), PROMPT_ATTRIBUTE: prompt, MCS_ATTRIBUTE: role}
        ),
    }
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


class JobWriter:
    """Job-level PATCHes; keeps what it created so that a failure can take exactly that back out."""

    def __init__(self, client: Client, task_id: int, progress: Progress | None):
        self.client, self.task_id = client, task_id
        self.created: dict[int, dict[str, list[dict]]] = {}
        self.counts = {"created": 0, "updated": 0, "deleted": 0}
        self.in_flight = ""  # the request under way: if it fails, CVAT may still have applied it
        self.progress = progress or (lambda stage, done, total: None)

    def _patch(self, action: str, job_id: int, body: dict[str, list[dict]]) -> dict:
        with cvat_errors(f"writing to job {job_id} of task {self.task_id}"):
            return api_json(
                self.client.api_client.jobs_api.partial_update_annotations,
                action,
                job_id,
                patched_labeled_data_request=api_request(self.client, models.PatchedLabeledDataRequest, body),
            )

    def write(self, plan: dict[str, dict[int, dict[str, list[dict]]]]) -> None:
        """``plan[action][job_id][kind]`` → requests: creates, then updates, then deletes."""
        requests = [
            (action, job_id, batch)
            for action in ("create", "update", "delete")
            for job_id, objects in plan.get(action, {}).items()
            for batch in _batches(objects)
        ]
        for done, (action, job_id, batch) in enumerate(requests):
            self.progress("writing", done, len(requests))
            self.in_flight = f"{action} of {sum(len(batch[kind]) for kind in KINDS)} objects in job {job_id}"
            answer = self._patch(action, job_id, batch)
            if action == "create":
                kept = self.created.setdefault(job_id, {kind: [] for kind in KINDS})
                for kind in KINDS:
                    kept[kind] += answer.get(kind) or []
            self.counts[{"create": "created", "update": "updated", "delete": "deleted"}[action]] += sum(
                len(batch[kind]) for kind in KINDS
            )
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


def frame_step(numbers: list[int]) -> int:
    return min((b - a for a, b in pairwise(numbers)), default=1)


def shape_mask(shape: dict, width: int, height: int) -> np.ndarray:
    if shape["type"] == "mask":
        return from_cvat_rle(shape["points"], width, height)
    exterior = np.asarray(shape["points"], dtype=np.float64).reshape(-1, 2)
    return polygons_to_mask([Polygon(exterior)], width, height)
