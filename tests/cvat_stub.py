"""A stand-in CVAT 2.73 REST server on 127.0.0.1, faithful to what a real server was seen doing
(docs/cvat.md, "CVAT facts the tool relies on"):

- a task is split into jobs of ``segment_size`` frames with ``overlap``; ids are per object, unique in the
  server; a task-level write is sliced per job (shapes and tags by frame, to every job holding the frame;
  tracks sliced with keyframes added at job boundaries and leading ``outside`` shapes dropped);
- a **mask track** in a task-level write on a task with several jobs answers HTTP 500 (an HTML page) and
  stores nothing; written per job it is stored, and then the COCO export fails;
- a task-level **interval** on a task with several jobs answers HTTP 400; a job-level one is stored;
- tags have no ``score``; ``source`` is stored as sent; an update replaces the whole object (an omitted score
  becomes 1.0);
- frames: ``type=frame`` (PNG for video tasks, the JPEG for image tasks) and ``type=chunk`` (an mp4 encoded
  with PyAV for video tasks, a zip of JPEGs for image tasks), ``chunk_size`` in ``data/meta``;
- COCO export and import follow CVAT's rules (``track_id`` + ``keyframe`` make a track; imported objects get
  ``source: "file"`` and score 1.0, no tags).

People (cvat/apps/iam, cvat/apps/engine/rules/*.rego of CVAT 2.73): each user has a global group (admin,
user, worker), an API token and a browser session (``sessionid`` + ``csrftoken`` cookies; a session's
POST/PATCH must carry ``X-CSRFToken`` equal to the cookie, as Django checks); tasks, projects and jobs have
owners and assignees, organizations have members with roles. A user sees a task when admin, an owner or
maintainer of its organization, or on its staff (task or project owner or assignee; not the assignee of
one of its jobs: tasks.rego's is_task_staff); a job when admin, an owner or maintainer of its organization,
or the job's assignee or the task's or project's owner or assignee; anything else answers 403 (one object)
or is left out of lists. The service account ``annotator`` (``TOKEN``) is an admin.

Every request body is validated with cvat-sdk's request models. Tests act as a person in the web UI with the
``ui_*`` methods (CVAT's own source rules: editing an automatic shape's points makes it "semi-auto"), and can
run such an edit at any moment of a workflow through ``hooks`` (called before each request is handled).
"""

from __future__ import annotations

import copy
import io
import json
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse

import av
import cv2
import numpy as np
from cvat_sdk import models
from cvat_sdk.api_client import ApiClient, Configuration
from cvat_sdk.masks import decode_mask, encode_mask
from pycocotools import mask as coco_mask

TOKEN = "stub-token"
USER, PASSWORD = "annotator", "secret"
_DESERIALIZER = ApiClient(Configuration(host="http://stub"))
KINDS = ("tags", "shapes", "tracks", "intervals")
INTERPOLATED = {"rectangle", "polygon", "polyline", "points", "ellipse", "cuboid", "skeleton"}


class _Body:
    def __init__(self, data: bytes):
        self.data = data
        self.headers = {"content-type": "application/json"}


def validate(body: bytes, model) -> dict:
    """Deserialize with cvat-sdk's model (raises on anything the schema rejects) and return the JSON."""
    _DESERIALIZER.deserialize(_Body(body), (model,), _check_type=True)
    return json.loads(body)


class HttpError(Exception):
    def __init__(self, status: int, detail, html: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.html = status, detail, html


class ExportError(Exception):
    """What CVAT's export worker raises (the export request fails)."""


@dataclass
class StubJob:
    id: int
    task_id: int
    start: int
    stop: int
    annotations: dict = field(
        default_factory=lambda: {"version": 0, "tags": [], "shapes": [], "tracks": [], "intervals": []}
    )

    assignee: str | None = None

    def holds(self, frame: int) -> bool:
        return self.start <= frame <= self.stop


@dataclass
class StubTask:
    id: int
    frames: list[np.ndarray]
    labels: list[dict]
    jobs: list[StubJob]
    chunk_size: int
    video: bool
    names: list[str]
    project_id: int | None = None
    deleted_frames: list[int] = field(default_factory=list)
    chunks: dict[int, bytes] = field(default_factory=dict)
    owner: str | None = None
    assignee: str | None = None
    organization: int | None = None

    def job(self, job_id: int) -> StubJob:
        return next(j for j in self.jobs if j.id == job_id)

    def label(self, name: str) -> dict:
        return next(l for l in self.labels if l["name"] == name)

    def attribute_id(self, label_name: str, attribute: str) -> int:
        return next(a["id"] for a in self.label(label_name)["attributes"] if a["name"] == attribute)


def _interpolate(before: dict, after: dict, frame: int) -> list[float]:
    """Points at ``frame`` between two keyframes (linear when both have as many points, else held)."""
    if len(before["points"]) != len(after["points"]) or after["frame"] == before["frame"]:
        return list(before["points"])
    t = (frame - before["frame"]) / (after["frame"] - before["frame"])
    return [float(a + (b - a) * t) for a, b in zip(before["points"], after["points"])]


def track_state(shapes: list[dict], frame: int) -> dict | None:
    """The track's shape at ``frame`` as CVAT shows it: the last keyframe's state, interpolated towards the next."""
    before = [s for s in shapes if s["frame"] <= frame]
    if not before:
        return None
    last = before[-1]
    if last.get("outside"):
        return None
    after = next((s for s in shapes if s["frame"] > frame), None)
    points = _interpolate(last, after, frame) if after is not None and last["frame"] != frame else list(last["points"])
    return dict(last, frame=frame, points=points, keyframe=last["frame"] == frame)


def slice_track(track: dict, job: StubJob) -> dict | None:
    """CVAT's ``_slice_track``: the part of a track inside a job, keyframes added at the job's first and last
    frame where the track goes on across them, leading ``outside`` shapes dropped."""
    shapes = sorted(track["shapes"], key=lambda s: s["frame"])
    if shapes[0]["type"] not in INTERPOLATED:
        raise NotImplementedError(f"the interpolation for {shapes[0]['type']} shapes is not implemented")
    inside = [s for s in shapes if job.holds(s["frame"])]
    frames = {s["frame"] for s in inside}
    for boundary in (job.start, job.stop):
        state = track_state(shapes, boundary)
        going_on = any(s["frame"] > boundary for s in shapes) if boundary == job.stop else True
        if boundary not in frames and state is not None and going_on:
            inside.append({k: v for k, v in state.items() if k != "keyframe"})
    inside.sort(key=lambda s: s["frame"])
    while inside and inside[0].get("outside"):
        inside.pop(0)
    if not inside:
        return None
    return dict(track, frame=inside[0]["frame"], shapes=inside)


class CvatStub:
    def __init__(self):
        self.tasks: dict[int, StubTask] = {}
        self.requests: list[tuple[str, str]] = []
        self.body_sizes: list[tuple[str, int]] = []
        self.hooks: list[Callable[[str, str, dict], None]] = []
        self.fail_next: dict[str, int] = {}  # "PATCH /api/jobs/12/annotations" -> HTTP status to answer once
        self.delay = 0.0
        self.redirect_to: str | None = None
        self.down = False
        self.comments: list[dict] = []
        self.issues: dict[int, dict] = {}
        self.users: dict[str, dict] = {}
        self.projects: dict[int, dict] = {}  # id -> {"owner": username, "assignee": username or None}
        self.memberships: list[dict] = []  # {"user": username, "organization": id, "role": ...}
        self._next_id = 1000
        self.add_user(USER, "admin", token=TOKEN, session="stub-session", csrf="stub-csrf", password=PASSWORD)
        self._lock = threading.RLock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    # --- people ------------------------------------------------------------------------------------------
    def add_user(
        self,
        username: str,
        group: str = "user",
        *,
        superuser: bool = False,
        token: str | None = None,
        session: str | None = None,
        csrf: str | None = None,
        password: str | None = None,
    ) -> dict:
        """A user with a global group (admin, user, worker), an API token and a logged-in browser session."""
        user = {
            "id": len(self.users) + 1,
            "username": username,
            "groups": [group],
            "is_superuser": superuser,
            "token": token or f"token-{username}",
            "session": session or f"session-{username}",
            "csrf": csrf or f"csrf-{username}",
            "password": password,
        }
        self.users[username] = user
        return user

    def add_project(self, project_id: int, owner: str | None = None, assignee: str | None = None) -> None:
        self.projects[project_id] = {"owner": owner, "assignee": assignee}

    def add_membership(self, username: str, organization: int, role: str) -> None:
        self.memberships.append({"user": username, "organization": organization, "role": role})

    def _user_json(self, username: str | None) -> dict | None:
        user = self.users.get(username) if username else None
        return (
            None
            if user is None
            else {
                "id": user["id"],
                "username": user["username"],
                "first_name": "",
                "last_name": "",
                "url": f"{self.url}/api/users/{user['id']}",
            }
        )

    def _org_role(self, user: dict, organization: int | None) -> str | None:
        return next(
            (
                m["role"]
                for m in self.memberships
                if m["user"] == user["username"] and m["organization"] == organization
            ),
            None,
        )

    def _task_staff(self, user: dict, task: StubTask) -> bool:
        project = self.projects.get(task.project_id, {})
        return user["username"] in (task.owner, task.assignee, project.get("owner"), project.get("assignee"))

    def sees_task(self, user: dict, task: StubTask) -> bool:
        return (
            "admin" in user["groups"]
            or self._org_role(user, task.organization) in ("owner", "maintainer")
            or self._task_staff(user, task)
        )

    def sees_job(self, user: dict, task: StubTask, job: StubJob) -> bool:
        return (
            "admin" in user["groups"]
            or self._org_role(user, task.organization) in ("owner", "maintainer")
            or self._task_staff(user, task)
            or job.assignee == user["username"]
        )

    def _authenticated(self, handler, method: str) -> dict:
        """The user of a request: its token, else its session (whose writes need the CSRF header)."""
        header, cookies = handler.headers.get("Authorization", ""), {}
        for part in handler.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            cookies[name] = value
        scheme, _, token = header.partition(" ")
        if header:
            user = next((u for u in self.users.values() if scheme in ("Bearer", "Token") and u["token"] == token), None)
            if user is None:
                raise HttpError(401, {"detail": "Invalid token."})
            return user
        user = next((u for u in self.users.values() if cookies.get("sessionid") == u["session"]), None)
        if user is None:
            raise HttpError(401, {"detail": "Authentication credentials were not provided."})
        if method not in ("GET", "HEAD", "OPTIONS") and (
            handler.headers.get("X-CSRFToken") != cookies.get("csrftoken") or cookies.get("csrftoken") != user["csrf"]
        ):
            raise HttpError(403, {"detail": "CSRF Failed: CSRF token missing."})
        return user

    # --- tasks -------------------------------------------------------------------------------------------
    def add_task(
        self,
        task_id: int,
        frames: list[np.ndarray],
        label_names: list[str],
        *,
        segment_size: int | None = None,
        overlap: int = 0,
        chunk_size: int = 5,
        video: bool = True,
        project_id: int | None = None,
        names: list[str] | None = None,
    ) -> StubTask:
        """A task as CVAT creates it: jobs [k·(segment_size − overlap), … + segment_size − 1]."""
        size = len(frames)
        segment = segment_size or size
        jobs, start = [], 0
        while True:
            stop = min(start + segment - 1, size - 1)
            jobs.append(StubJob(self.new_id(), task_id, start, stop))
            if stop >= size - 1:
                break
            start = stop + 1 - overlap
        labels = [
            {
                "id": self.new_id(),
                "name": name,
                "color": "#ff0000",
                "type": "any",
                "attributes": [],
                "sublabels": [],
                "has_parent": False,
                "task_id": task_id,
            }
            for name in label_names
        ]
        task = StubTask(
            task_id, frames, labels, jobs, chunk_size, video, names or [f"{i:05d}.jpg" for i in range(size)], project_id
        )
        self.tasks[task_id] = task
        return task

    def task_of_job(self, job_id: int) -> StubTask:
        return next(t for t in self.tasks.values() if any(j.id == job_id for j in t.jobs))

    def task_json(self, task: StubTask) -> dict:
        return {
            "id": task.id,
            "name": f"task {task.id}",
            "url": f"{self.url}/api/tasks/{task.id}",
            "size": len(task.frames),
            "mode": "interpolation" if task.video else "annotation",
            "dimension": "2d",
            "status": "annotation",
            "segment_size": task.jobs[0].stop - task.jobs[0].start + 1,
            "overlap": 0 if len(task.jobs) < 2 else task.jobs[0].stop + 1 - task.jobs[1].start,
            "data_chunk_size": task.chunk_size,
            "data_original_chunk_type": "video" if task.video else "imageset",
            "data_compressed_chunk_type": "video" if task.video else "imageset",
            "jobs": {
                "count": len(task.jobs),
                "completed": 0,
                "validation": 0,
                "url": f"{self.url}/api/jobs?task_id={task.id}",
            },
            "labels": {"url": f"{self.url}/api/labels?task_id={task.id}"},
            "organization": task.organization,
            "project_id": task.project_id,
            "owner": self._user_json(task.owner),
            "assignee": self._user_json(task.assignee),
        }

    def job_json(self, task: StubTask, job: StubJob) -> dict:
        return {
            "id": job.id,
            "task_id": task.id,
            "project_id": task.project_id,
            "start_frame": job.start,
            "stop_frame": job.stop,
            "frame_count": job.stop - job.start + 1,
            "type": "annotation",
            "stage": "annotation",
            "state": "new",
            "status": "annotation",
            "mode": "interpolation",
            "dimension": "2d",
            "data_chunk_size": task.chunk_size,
            "data_original_chunk_type": "video" if task.video else "imageset",
            "data_compressed_chunk_type": "video" if task.video else "imageset",
            "url": f"{self.url}/api/jobs/{job.id}",
            "assignee": self._user_json(job.assignee),
            "organization": task.organization,
            "labels": {"url": f"{self.url}/api/labels?job_id={job.id}"},
            "issues": {"url": f"{self.url}/api/issues?job_id={job.id}", "count": 0},
            "created_date": "2026-01-01T00:00:00Z",
            "updated_date": "2026-01-01T00:00:00Z",
            "bug_tracker": None,
            "task_name": f"task {task.id}",
            "project_name": None,
            "guide_id": None,
            "source_storage": None,
            "target_storage": None,
            "assignee_updated_date": None,
        }

    def meta_json(self, task: StubTask) -> dict:
        height, width = task.frames[0].shape[:2]
        frames = (
            [{"width": width, "height": height, "name": "video.mp4", "related_files": 0}]
            if task.video
            else [{"width": width, "height": height, "name": name, "related_files": 0} for name in task.names]
        )
        return {
            "chunks_updated_date": "2026-01-01T00:00:00Z",
            "size": len(task.frames),
            "start_frame": 0,
            "stop_frame": len(task.frames) - 1,
            "frame_filter": "",
            "image_quality": 95,
            "chunk_size": task.chunk_size,
            "deleted_frames": task.deleted_frames,
            "frames": frames,
        }

    # --- frames ------------------------------------------------------------------------------------------
    def chunk(self, task: StubTask, index: int) -> bytes:
        if index not in task.chunks:
            frames = task.frames[index * task.chunk_size : (index + 1) * task.chunk_size]
            task.chunks[index] = encode_mp4(frames) if task.video else encode_zip(frames)
        return task.chunks[index]

    # --- annotations -------------------------------------------------------------------------------------
    def _stored(self, kind: str, obj: dict) -> dict:
        """What CVAT keeps of a sent object: ids, defaults for omitted fields, no score on tags."""
        obj = copy.deepcopy(obj)
        if obj.get("id") is None:
            obj["id"] = self.new_id()
        obj.setdefault("group", 0)
        obj.setdefault("source", "manual")
        obj.setdefault("attributes", [])
        if kind == "tags":
            obj.pop("score", None)
        if kind in ("shapes", "intervals"):
            obj.setdefault("score", 1.0)
        if kind == "shapes":
            obj.setdefault("elements", [])
        if kind in ("shapes", "tracks"):
            for shape in [obj] if kind == "shapes" else obj["shapes"]:
                if kind == "tracks" and shape.get("id") is None:
                    shape["id"] = self.new_id()
                for key, default in (
                    ("occluded", False),
                    ("outside", False),
                    ("z_order", 0),
                    ("rotation", 0.0),
                    ("attributes", []),
                ):
                    shape.setdefault(key, default)
        if kind == "tracks":
            obj.setdefault("elements", [])
            obj["shapes"].sort(key=lambda s: s["frame"])
        return obj

    def _check_in_job(self, job: StubJob, kind: str, obj: dict) -> None:
        frames = (
            [obj["start"], obj["stop"] - 1]
            if kind == "intervals"
            else [s["frame"] for s in obj["shapes"]]
            if kind == "tracks"
            else [obj["frame"]]
        )
        if not all(job.holds(f) for f in frames):
            raise HttpError(
                400, {"detail": f"{kind[:-1]} frames {frames} are outside job {job.id} [{job.start}, {job.stop}]"}
            )

    def write_job(self, job: StubJob, action: str, data: dict) -> dict:
        written = {"version": job.annotations["version"] + 1, "tags": [], "shapes": [], "tracks": [], "intervals": []}
        stored = copy.deepcopy(job.annotations)
        for kind in KINDS:
            for obj in data.get(kind) or []:
                if action == "delete":
                    stored[kind] = [o for o in stored[kind] if o["id"] != obj.get("id")]
                    continue
                self._check_in_job(job, kind, obj)
                if action == "update":
                    if not any(o["id"] == obj.get("id") for o in stored[kind]):
                        raise HttpError(400, {"detail": f"{kind} {obj.get('id')} does not exist in job {job.id}"})
                    obj = self._stored(kind, obj)
                    stored[kind] = [obj if o["id"] == obj["id"] else o for o in stored[kind]]
                elif action == "create":
                    obj = self._stored(kind, dict(obj, id=None))
                    stored[kind].append(obj)
                else:
                    raise HttpError(400, {"detail": f"unknown action '{action}'"})
                written[kind].append(copy.deepcopy(obj))
        stored["version"] += 1
        job.annotations = stored
        return written

    def write_task(self, task: StubTask, action: str, data: dict) -> dict:
        """A task-level write, sliced per job as CVAT does; nothing is stored when any slice fails."""
        if data.get("intervals") and len(task.jobs) > 1:
            interval = data["intervals"][0]
            raise HttpError(
                400,
                [
                    f"Interval {interval.get('id')} cannot be sliced to the "
                    f"[{task.jobs[0].start}, {task.jobs[0].stop}] range"
                ],
            )
        plans = []
        for job in task.jobs:
            part = {
                "tags": [o for o in data.get("tags") or [] if job.holds(o["frame"])],
                "shapes": [o for o in data.get("shapes") or [] if job.holds(o["frame"])],
                "intervals": list(data.get("intervals") or []),
                "tracks": [],
            }
            for track in data.get("tracks") or []:
                shapes = [s["frame"] for s in track["shapes"]]
                if len(task.jobs) > 1 or not all(job.holds(f) for f in shapes):
                    try:
                        sliced = slice_track(track, job)
                    except NotImplementedError as error:
                        raise HttpError(500, f"NotImplementedError: {error}", html=True) from None
                else:
                    sliced = track
                if sliced is not None:
                    part["tracks"].append(sliced)
            plans.append((job, part))
        backup = {job.id: copy.deepcopy(job.annotations) for job in task.jobs}
        written = {"version": 0, "tags": [], "shapes": [], "tracks": [], "intervals": []}
        try:
            for job, part in plans:
                answer = self.write_job(job, action, part)
                for kind in KINDS:
                    written[kind] += answer[kind]
        except HttpError:
            for job in task.jobs:
                job.annotations = backup[job.id]
            raise
        return written

    def task_annotations(self, task: StubTask) -> dict:
        """The task's annotations merged over its jobs (an object repeated in an overlap shown once)."""
        merged = {
            "version": sum(j.annotations["version"] for j in task.jobs),
            "tags": [],
            "shapes": [],
            "tracks": [],
            "intervals": [],
        }
        seen = set()
        for job in task.jobs:
            for kind in KINDS:
                for obj in job.annotations[kind]:
                    key = json.dumps({k: v for k, v in obj.items() if k != "id"}, sort_keys=True)
                    if kind in ("tags", "shapes") and key in seen:
                        continue
                    seen.add(key)
                    merged[kind].append(obj)
        return merged

    def patch_labels(self, task: StubTask, data: dict) -> None:
        if data.get("labels") and task.project_id:
            raise HttpError(400, {"labels": ["Cannot change labels of a task in a project"]})
        for patch in data.get("labels", []):
            label = next((l for l in task.labels if l["id"] == patch.get("id")), None)
            if label is None:
                if any(l["name"] == patch["name"] for l in task.labels):
                    raise HttpError(400, {"labels": [f"label '{patch['name']}' exists"]})
                label = {
                    "id": self.new_id(),
                    "name": patch["name"],
                    "color": "#00ff00",
                    "type": patch.get("type", "any"),
                    "attributes": [],
                    "sublabels": [],
                    "has_parent": False,
                    "task_id": task.id,
                }
                task.labels.append(label)
            for attribute in patch.get("attributes", []):
                if any(a["name"] == attribute["name"] for a in label["attributes"]):
                    raise HttpError(400, {"attributes": [f"attribute '{attribute['name']}' exists"]})
                label["attributes"].append(dict(attribute, id=self.new_id()))

    # --- what a person does in the web UI ----------------------------------------------------------------
    def _find(self, job_id: int, shape_id: int) -> tuple[StubJob, dict]:
        job = self.task_of_job(job_id).job(job_id)
        return job, next(s for s in job.annotations["shapes"] if s["id"] == shape_id)

    def ui_edit_mask(self, job_id: int, shape_id: int, mask: np.ndarray) -> dict:
        """A person redraws a mask: new points; an automatic shape becomes "semi-auto" (cvat-core)."""
        with self._lock:
            job, shape = self._find(job_id, shape_id)
            shape["points"] = [float(p) for p in encode_mask(mask)]
            if shape["source"] == "auto":
                shape["source"] = "semi-auto"
            job.annotations["version"] += 1
            return copy.deepcopy(shape)

    def ui_set(self, job_id: int, shape_id: int, **fields) -> dict:
        """A person changes a flag or attribute (occluded, z_order, attributes): the source stays."""
        with self._lock:
            job, shape = self._find(job_id, shape_id)
            shape.update(copy.deepcopy(fields))
            job.annotations["version"] += 1
            return copy.deepcopy(shape)

    def ui_delete(self, job_id: int, shape_id: int) -> None:
        with self._lock:
            job, _ = self._find(job_id, shape_id)
            job.annotations["shapes"] = [s for s in job.annotations["shapes"] if s["id"] != shape_id]
            job.annotations["version"] += 1

    def ui_draw_mask(
        self,
        job_id: int,
        frame: int,
        label_id: int,
        mask: np.ndarray,
        *,
        group: int = 0,
        attributes: list[dict] | None = None,
    ) -> dict:
        with self._lock:
            job = self.task_of_job(job_id).job(job_id)
            return self.write_job(
                job,
                "create",
                {
                    "shapes": [
                        {
                            "type": "mask",
                            "frame": frame,
                            "label_id": label_id,
                            "points": [float(p) for p in encode_mask(mask)],
                            "source": "manual",
                            "group": group,
                            "attributes": attributes or [],
                        }
                    ]
                },
            )["shapes"][0]

    # --- dataset export and import (CVAT's COCO 1.0 rules) -----------------------------------------------
    def export_coco(self, task_id: int) -> dict:
        """COCO 1.0 as CVAT's export worker writes it; fails as it does on a mask track."""
        task = self.tasks[task_id]
        if any(t["shapes"][0]["type"] == "mask" for j in task.jobs for t in j.annotations["tracks"]):
            raise ExportError("NotImplementedError: mask tracks cannot be interpolated")
        height, width = task.frames[0].shape[:2]
        categories = {l["id"]: i + 1 for i, l in enumerate(task.labels)}
        annotations = []
        merged = self.task_annotations(task)

        def add(frame, label_id, shape, attributes):
            if shape["type"] == "mask":
                mask = decode_mask(shape["points"], image_width=width, image_height=height)
                rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
                segmentation, crowd = {"size": rle["size"], "counts": rle["counts"].decode()}, 1
            else:
                segmentation, crowd = [list(shape["points"])], 0
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": frame + 1,
                    "category_id": categories[label_id],
                    "segmentation": segmentation,
                    "iscrowd": crowd,
                    "attributes": attributes,
                }
            )

        for shape in merged["shapes"]:
            add(shape["frame"], shape["label_id"], shape, {"occluded": shape["occluded"]})
        slices = [(job, track) for job in task.jobs for track in job.annotations["tracks"]]
        for track_id, (job, track) in enumerate(slices):
            for frame in range(job.start, job.stop + 1):  # a track ends with its job
                state = track_state(track["shapes"], frame)
                if state is not None:
                    add(
                        frame,
                        track["label_id"],
                        state,
                        {"occluded": state["occluded"], "track_id": track_id, "keyframe": state["keyframe"]},
                    )
        return {
            "images": [
                {
                    "id": i + 1,
                    "file_name": f"frame_{i:06d}.jpg" if task.video else task.names[i],
                    "width": width,
                    "height": height,
                }
                for i in range(len(task.frames))
            ],
            "categories": [
                {"id": i, "name": l["name"]} for l_id, i in categories.items() for l in task.labels if l["id"] == l_id
            ],
            "annotations": annotations,
        }

    def import_coco(self, task_id: int, coco: dict) -> None:
        """CVAT's COCO 1.0 import (it replaces the task's annotations): ``track_id`` + ``keyframe`` make a
        track, kept where visibility flips, after a gap or at a keyframe; everything else is a per-frame shape;
        ``source: "file"``; attributes matched to the label's by name (others dropped)."""
        task = self.tasks[task_id]
        height, width = task.frames[0].shape[:2]
        frame_of = {}
        for image in coco["images"]:
            stem = image["file_name"].rsplit(".", 1)[0]
            if task.video and stem.startswith("frame_"):
                frame_of[image["id"]] = int(stem[len("frame_") :])
            else:
                frame_of[image["id"]] = [n.rsplit(".", 1)[0] for n in task.names].index(stem)
        label_of = {c["id"]: task.label(c["name"]) for c in coco["categories"]}
        shapes, tracks = [], {}
        for annotation in coco["annotations"]:
            label = label_of[annotation["category_id"]]
            frame = frame_of[annotation["image_id"]]
            attributes = annotation.get("attributes", {})
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, dict):
                rle = (
                    segmentation
                    if isinstance(segmentation["counts"], str)
                    else coco_mask.frPyObjects(segmentation, height, width)
                )
                mask = coco_mask.decode(
                    dict(rle, counts=rle["counts"].encode() if isinstance(rle["counts"], str) else rle["counts"])
                ).astype(bool)
                shape = {"type": "mask", "points": [float(p) for p in encode_mask(mask)]}
            else:
                shape = {"type": "polygon", "points": [float(p) for p in segmentation[0]]}
            specs = {a["name"]: a["id"] for a in label["attributes"]}
            values = [
                {"spec_id": specs[k], "value": str(v).lower() if isinstance(v, bool) else str(v)}
                for k, v in attributes.items()
                if k in specs
            ]
            shape.update(
                frame=frame,
                occluded=bool(attributes.get("occluded", False)),
                outside=False,
                z_order=0,
                rotation=0.0,
                attributes=values,
            )
            if "track_id" in attributes and "keyframe" in attributes:
                tracks.setdefault((attributes["track_id"], label["id"]), []).append(
                    dict(shape, keyframe=bool(attributes["keyframe"]))
                )
            else:
                shapes.append(dict(shape, label_id=label["id"], source="file", group=0, score=1.0))
        data = {"shapes": shapes, "tracks": [], "tags": [], "intervals": []}
        for (_, label_id), keyframes in tracks.items():
            keyframes.sort(key=lambda s: s["frame"])
            kept, previous = [], None
            for shape in keyframes:
                after_gap = previous is not None and shape["frame"] != previous["frame"] + 1
                if after_gap:
                    kept.append(dict(previous, frame=previous["frame"] + 1, outside=True, attributes=[]))
                if previous is None or after_gap or shape["keyframe"]:
                    kept.append(shape)
                previous = shape
            if previous["frame"] + 1 < len(task.frames):
                kept.append(dict(previous, frame=previous["frame"] + 1, outside=True, attributes=[]))
            data["tracks"].append(
                {
                    "label_id": label_id,
                    "frame": kept[0]["frame"],
                    "group": 0,
                    "source": "file",
                    "attributes": [],
                    "shapes": [{k: v for k, v in s.items() if k != "keyframe"} for s in kept],
                }
            )
        with self._lock:
            for job in task.jobs:
                job.annotations = {
                    "version": job.annotations["version"] + 1,
                    "tags": [],
                    "shapes": [],
                    "tracks": [],
                    "intervals": [],
                }
            self.write_task(task, "create", data)

    # --- issues and comments (webhook handlers read and answer them) -------------------------------------
    def add_issue(
        self, job_id: int, frame: int, position: list[float], message: str, owner: str = USER
    ) -> tuple[int, int]:
        issue_id, comment_id = self.new_id(), self.new_id()
        self.issues[issue_id] = {
            "id": issue_id,
            "frame": frame,
            "position": position,
            "job": job_id,
            "owner": {"id": 1, "username": owner, "url": f"{self.url}/api/users/1", "first_name": "", "last_name": ""},
            "assignee": None,
            "resolved": False,
            "created_date": "2026-01-01T00:00:00Z",
            "updated_date": "2026-01-01T00:00:00Z",
            "comments": {"count": 1, "url": f"{self.url}/api/comments?issue_id={issue_id}"},
        }
        self.comments.append(self._comment(comment_id, issue_id, message, owner))
        return issue_id, comment_id

    def _comment(self, comment_id: int, issue_id: int, message: str, owner: str) -> dict:
        return {
            "id": comment_id,
            "issue": issue_id,
            "message": message,
            "owner": {"id": 1, "username": owner, "url": f"{self.url}/api/users/1", "first_name": "", "last_name": ""},
            "created_date": "2026-01-01T00:00:00Z",
            "updated_date": "2026-01-01T00:00:00Z",
        }

    # --- HTTP --------------------------------------------------------------------------------------------
    def _route(self, handler, method: str, path: str, query: dict, read_body) -> tuple[int, object, str]:
        parts = [p for p in path.split("/") if p]
        if parts == ["api", "server", "about"]:
            return (
                200,
                {"name": "CVAT", "description": "stub", "version": "2.73.0", "logo_url": "", "subtitle": ""},
                "application/json",
            )
        if parts == ["api", "auth", "login"] and method == "POST":
            data = validate(read_body(), models.LoginSerializerExRequest)
            user = self.users.get(data.get("username"))
            if user is None or user["password"] is None or data.get("password") != user["password"]:
                raise HttpError(400, {"non_field_errors": ["Unable to log in with provided credentials."]})
            handler.cookies = [f"sessionid={user['session']}; Path=/", f"csrftoken={user['csrf']}; Path=/"]
            return 200, {"key": "stub-key"}, "application/json"
        user = self._authenticated(handler, method)
        if parts == ["api", "users", "self"]:
            public = {k: v for k, v in user.items() if k not in ("token", "session", "csrf", "password")}
            return (
                200,
                dict(
                    public,
                    first_name="",
                    last_name="",
                    email="",
                    is_staff=user["is_superuser"],
                    is_active=True,
                    url=f"{self.url}/api/users/{user['id']}",
                ),
                "application/json",
            )
        if parts == ["api", "tasks"] and method == "GET":
            tasks = [
                self.task_json(t)
                for t in self.tasks.values()
                if self.sees_task(user, t) and ("project_id" not in query or t.project_id == int(query["project_id"]))
            ]
            return 200, _page(tasks, query), "application/json"
        if len(parts) == 3 and parts[:2] == ["api", "projects"] and method == "GET":
            project = self.projects.get(int(parts[2]))
            visible = project is not None and (
                "admin" in user["groups"]
                or any(t.project_id == int(parts[2]) and self.sees_task(user, t) for t in self.tasks.values())
            )
            if not visible:
                raise HttpError(
                    404 if project is None else 403,
                    {
                        "detail": "Not found."
                        if project is None
                        else "You do not have permission to perform this action."
                    },
                )
            return (
                200,
                {
                    "id": int(parts[2]),
                    "name": f"project {parts[2]}",
                    "owner": self._user_json(project["owner"]),
                    "assignee": self._user_json(project["assignee"]),
                    "organization": None,
                },
                "application/json",
            )
        if parts == ["api", "memberships"] and method == "GET":
            found = [
                {
                    "id": i + 1,
                    "user": self._user_json(m["user"]),
                    "organization": m["organization"],
                    "role": m["role"],
                    "is_active": True,
                }
                for i, m in enumerate(self.memberships)
                if m["user"] == query.get("user", m["user"])
                and str(m["organization"]) == query.get("org_id")
                and self._org_role(user, m["organization"]) is not None
            ]
            return 200, _page(found, query), "application/json"
        if len(parts) >= 3 and parts[:2] == ["api", "tasks"] and parts[2].isdigit():
            task = self.tasks.get(int(parts[2]))
            if task is not None and not self.sees_task(user, task):
                raise HttpError(403, {"detail": "You do not have permission to perform this action."})
        if len(parts) >= 3 and parts[:2] == ["api", "jobs"] and parts[2].isdigit():
            task = next((t for t in self.tasks.values() if any(j.id == int(parts[2]) for j in t.jobs)), None)
            if task is not None and not self.sees_job(user, task, task.job(int(parts[2]))):
                raise HttpError(403, {"detail": "You do not have permission to perform this action."})
        if parts == ["api", "labels"]:
            task = (
                self.tasks.get(int(query["task_id"])) if "task_id" in query else self.task_of_job(int(query["job_id"]))
            )
            if task is None:
                raise HttpError(404, {"detail": "Not found."})
            return 200, _page(task.labels, query), "application/json"
        if parts == ["api", "jobs"] and method == "GET":
            task = self.tasks.get(int(query.get("task_id", 0)))
            jobs = [self.job_json(task, j) for j in task.jobs if self.sees_job(user, task, j)] if task else []
            return 200, _page(jobs, query), "application/json"
        if len(parts) >= 3 and parts[:2] == ["api", "jobs"]:
            try:
                task = self.task_of_job(int(parts[2]))
            except StopIteration:
                raise HttpError(404, {"detail": "Not found."}) from None
            job, rest = task.job(int(parts[2])), parts[3:]
            if rest == [] and method == "GET":
                return 200, self.job_json(task, job), "application/json"
            if rest == ["annotations"] and method == "GET":
                return 200, job.annotations, "application/json"
            if rest == ["annotations"] and method == "PATCH":
                data = validate(read_body(), models.PatchedLabeledDataRequest)
                return 200, self.write_job(job, query.get("action", ""), data), "application/json"
        if len(parts) >= 3 and parts[:2] == ["api", "tasks"]:
            task = self.tasks.get(int(parts[2]))
            if task is None:
                raise HttpError(404, {"detail": "Not found."})
            rest = parts[3:]
            if rest == [] and method == "GET":
                return 200, self.task_json(task), "application/json"
            if rest == [] and method == "PATCH":
                self.patch_labels(task, validate(read_body(), models.PatchedTaskWriteRequest))
                return 200, self.task_json(task), "application/json"
            if rest == ["data", "meta"]:
                return 200, self.meta_json(task), "application/json"
            if rest == ["data"]:
                number = int(query.get("number", -1))
                if query.get("type") == "chunk":
                    if not 0 <= number * task.chunk_size < len(task.frames):
                        raise HttpError(400, {"detail": "The chunk number is out of range"})
                    return 200, self.chunk(task, number), "video/mp4" if task.video else "application/zip"
                if query.get("type") == "frame":
                    if not 0 <= number < len(task.frames):
                        raise HttpError(400, {"detail": "The frame number is out of range"})
                    bgr = cv2.cvtColor(task.frames[number], cv2.COLOR_RGB2BGR)
                    ok, data = cv2.imencode(".png" if task.video else ".jpg", bgr)
                    return 200, data.tobytes(), "image/png" if task.video else "image/jpeg"
            if rest == ["annotations"] and method == "GET":
                return 200, self.task_annotations(task), "application/json"
            if rest == ["annotations"] and method == "PATCH":
                data = validate(read_body(), models.PatchedLabeledDataRequest)
                return 200, self.write_task(task, query.get("action", ""), data), "application/json"
        if parts == ["api", "comments"] and method == "GET":
            comments = [c for c in self.comments if c["issue"] == int(query.get("issue_id", 0))]
            return 200, _page(comments, query), "application/json"
        if parts == ["api", "comments"] and method == "POST":
            data = validate(read_body(), models.CommentWriteRequest)
            if data["issue"] not in self.issues:
                raise HttpError(400, {"issue": ["Invalid pk - object does not exist."]})
            comment = self._comment(self.new_id(), data["issue"], data["message"], USER)
            self.comments.append(comment)
            self.issues[data["issue"]]["comments"]["count"] += 1
            return 201, comment, "application/json"
        if len(parts) == 3 and parts[:2] == ["api", "issues"] and int(parts[2]) in self.issues:
            return 200, self.issues[int(parts[2])], "application/json"
        raise HttpError(404, {"detail": "Not found."})

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            cookies: list[str] = []

            def log_message(self, *args):
                pass

            def reply(self, status, body, content_type, location=None):
                data = (
                    body
                    if isinstance(body, bytes)
                    else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if location:
                    self.send_header("Location", location)
                for cookie in self.cookies:
                    self.send_header("Set-Cookie", cookie)
                self.end_headers()
                self.wfile.write(data)

            def handle_method(self, method):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                self.cookies = []
                body: list[bytes] = []

                def read_body():
                    if not body:
                        body.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                        stub.body_sizes.append((f"{method} {url.path.rstrip('/')}", len(body[0])))
                    return body[0]

                stub.requests.append((method, url.path + ("?" + url.query if url.query else "")))
                for hook in list(stub.hooks):
                    hook(method, url.path, query)
                if stub.delay:
                    time.sleep(stub.delay)
                if stub.down:
                    read_body()
                    return self.reply(503, {"detail": "Service Unavailable"}, "application/json")
                if stub.redirect_to:
                    read_body()
                    return self.reply(302, b"", "text/html", location=stub.redirect_to + self.path)
                failure = stub.fail_next.pop(f"{method} {url.path.rstrip('/')}", None)
                try:
                    if failure:
                        read_body()
                        raise HttpError(failure, "<html><body>Server Error (500)</body></html>", html=True)
                    with stub._lock:
                        status, answer, content_type = stub._route(self, method, url.path, query, read_body)
                except HttpError as error:
                    read_body()
                    return self.reply(error.status, error.detail, "text/html" if error.html else "application/json")
                except Exception as error:  # a body the cvat-sdk models reject, as CVAT's serializers would
                    read_body()
                    return self.reply(400, {"detail": f"{type(error).__name__}: {error}"}, "application/json")
                self.reply(status, answer, content_type)

            def do_GET(self):
                self.handle_method("GET")

            def do_POST(self):
                self.handle_method("POST")

            def do_PATCH(self):
                self.handle_method("PATCH")

        return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A client that gave up (a timeout test) is no error of the server's."""


def _page(items: list, query: dict) -> dict:
    size = int(query.get("page_size", 10))
    page = int(query.get("page", 1))
    chunk = items[(page - 1) * size : page * size]
    return {
        "count": len(items),
        "next": "next" if page * size < len(items) else None,
        "previous": None,
        "results": chunk,
    }


def encode_mp4(frames: list[np.ndarray]) -> bytes:
    """A video chunk as CVAT serves it: an mp4 (H.264) of the chunk's frames."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


def encode_zip(frames: list[np.ndarray]) -> bytes:
    """An image chunk as CVAT serves it: a zip of JPEGs."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for i, frame in enumerate(frames):
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            archive.writestr(f"{i:06d}.jpeg", data.tobytes())
    return out.getvalue()
