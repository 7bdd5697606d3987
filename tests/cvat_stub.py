"""A stand-in CVAT REST server on 127.0.0.1 for the client's tests.

It implements the endpoints momentseg's CVAT client uses, keeps what it receives, and validates every
request body with cvat-sdk's own request models, so a payload the real server's schema rejects fails
the test. Annotation updates follow CVAT's semantics: ``action=create`` appends, ``action=update``
replaces the objects with the given ids (a track's shapes with it).
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np
from cvat_sdk import models
from cvat_sdk.api_client import ApiClient, Configuration

TOKEN = "stub-token"
_DESERIALIZER = ApiClient(Configuration(host="http://stub"))


class _Body:
    def __init__(self, data: bytes):
        self.data = data
        self.headers = {"content-type": "application/json"}


def validate(body: bytes, model) -> dict:
    """Deserialize with cvat-sdk's model (raises on anything the schema rejects) and return the JSON."""
    _DESERIALIZER.deserialize(_Body(body), (model,), _check_type=True)
    return json.loads(body)


@dataclass
class StubTask:
    id: int
    frames: list[np.ndarray]
    labels: list[dict]
    deleted_frames: list[int] = field(default_factory=list)
    annotations: dict = field(default_factory=lambda: {"version": 0, "tags": [], "shapes": [], "tracks": [],
                                                        "intervals": []})


class CvatStub:
    def __init__(self):
        self.tasks: dict[int, StubTask] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_next_annotation_write = False
        self._next_id = 1000
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def add_task(self, task_id: int, frames: list[np.ndarray], label_names: list[str]) -> StubTask:
        labels = [{"id": self.new_id(), "name": name, "color": "#ff0000", "type": "any", "attributes": [],
                   "sublabels": [], "has_parent": False, "task_id": task_id} for name in label_names]
        task = StubTask(task_id, frames, labels)
        self.tasks[task_id] = task
        return task

    # --- what the server sends ---------------------------------------------------------------
    def task_json(self, task: StubTask) -> dict:
        return {"id": task.id, "name": f"task {task.id}", "url": f"{self.url}/api/tasks/{task.id}",
                "size": len(task.frames), "mode": "interpolation", "dimension": "2d", "status": "annotation",
                "jobs": {"count": 1, "completed": 0, "validation": 0, "url": f"{self.url}/api/jobs?task_id={task.id}"},
                "labels": {"url": f"{self.url}/api/labels?task_id={task.id}"}, "organization": None,
                "project_id": None, "owner": None, "assignee": None}

    def meta_json(self, task: StubTask) -> dict:
        height, width = task.frames[0].shape[:2]
        return {"chunks_updated_date": "2026-01-01T00:00:00Z", "size": len(task.frames), "start_frame": 0,
                "stop_frame": len(task.frames) - 1, "frame_filter": "", "image_quality": 95, "chunk_size": 36,
                "deleted_frames": task.deleted_frames,
                "frames": [{"width": width, "height": height, "name": f"frame_{i:06d}.png", "related_files": 0}
                           for i in range(len(task.frames))]}

    # --- what the server keeps ---------------------------------------------------------------
    def _with_ids(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj.setdefault("id", None)
        if obj["id"] is None:
            obj["id"] = self.new_id()
        for shape in obj.get("shapes", []):
            if shape.get("id") is None:
                shape["id"] = self.new_id()
            shape.setdefault("occluded", False)
            shape.setdefault("outside", False)
            shape.setdefault("z_order", 0)
            shape.setdefault("rotation", 0.0)
            shape.setdefault("attributes", [])
        obj.setdefault("attributes", [])
        obj.setdefault("group", 0)
        obj.setdefault("source", "manual")
        return obj

    def write_annotations(self, task: StubTask, action: str, data: dict) -> dict:
        written = {"version": task.annotations["version"] + 1, "tags": [], "shapes": [], "tracks": [], "intervals": []}
        stored = copy.deepcopy(task.annotations)
        for kind in ("tags", "shapes", "tracks", "intervals"):
            for obj in data.get(kind, []) or []:
                obj = self._with_ids(obj)
                if kind == "tracks":
                    obj.setdefault("elements", [])
                if action == "update":
                    if not any(o["id"] == obj["id"] for o in stored[kind]):
                        raise KeyError(f"{kind} {obj['id']} does not exist")
                    stored[kind] = [obj if o["id"] == obj["id"] else o for o in stored[kind]]
                else:
                    stored[kind].append(obj)
                written[kind].append(obj)
        stored["version"] += 1
        task.annotations = stored
        return written

    def patch_labels(self, task: StubTask, data: dict) -> None:
        for patch in data.get("labels", []):
            label = next((l for l in task.labels if l["id"] == patch.get("id")), None)
            if label is None:
                label = {"id": self.new_id(), "name": patch["name"], "color": "#00ff00", "type": patch.get("type", "any"),
                         "attributes": [], "sublabels": [], "has_parent": False, "task_id": task.id}
                task.labels.append(label)
            for attribute in patch.get("attributes", []):
                label["attributes"].append(dict(attribute, id=self.new_id()))

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status, body=None, content_type="application/json", raw=None):
                data = raw if raw is not None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if getattr(self, "_cookies", None):
                    for cookie in self._cookies:
                        self.send_header("Set-Cookie", cookie)
                self.end_headers()
                self.wfile.write(data)

            def authorised(self):
                header = self.headers.get("Authorization", "")
                cookie = self.headers.get("Cookie", "")
                return header in (f"Bearer {TOKEN}", f"Token {TOKEN}") or "sessionid=stub-session" in cookie

            def body(self):
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def task_or_404(self, task_id):
                task = stub.tasks.get(task_id)
                if task is None:
                    self.reply(404, {"detail": "Not found."})
                return task

            def route(self, method):
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                parts = [p for p in url.path.split("/") if p]
                stub.requests.append((method, url.path))
                if parts == ["api", "server", "about"]:
                    return self.reply(200, {"name": "CVAT", "description": "stub", "version": "2.80.0",
                                            "logo_url": "", "subtitle": ""})
                if parts == ["api", "auth", "login"] and method == "POST":
                    data = json.loads(self.body())
                    if (data.get("username"), data.get("password")) != ("annotator", "secret"):
                        return self.reply(400, {"non_field_errors": ["Unable to log in"]})
                    self._cookies = ["sessionid=stub-session; Path=/", "csrftoken=stub-csrf; Path=/"]
                    return self.reply(200, {"key": "stub"})
                if not self.authorised():
                    return self.reply(401, {"detail": "Authentication credentials were not provided."})
                with stub._lock:
                    if parts == ["api", "labels"]:
                        task = self.task_or_404(int(query.get("task_id", 0)))
                        if task:
                            self.reply(200, {"count": len(task.labels), "next": None, "previous": None,
                                             "results": task.labels})
                        return
                    if len(parts) >= 3 and parts[:2] == ["api", "tasks"]:
                        task = self.task_or_404(int(parts[2]))
                        if task is None:
                            return
                        rest = parts[3:]
                        if rest == [] and method == "GET":
                            return self.reply(200, stub.task_json(task))
                        if rest == [] and method == "PATCH":
                            stub.patch_labels(task, validate(self.body(), models.PatchedTaskWriteRequest))
                            return self.reply(200, stub.task_json(task))
                        if rest == ["data", "meta"]:
                            return self.reply(200, stub.meta_json(task))
                        if rest == ["data"] and query.get("type") == "frame":
                            number = int(query["number"])
                            if not 0 <= number < len(task.frames):
                                return self.reply(400, {"detail": "bad frame number"})
                            ok, data = cv2.imencode(".png", cv2.cvtColor(task.frames[number], cv2.COLOR_RGB2BGR))
                            return self.reply(200, raw=data.tobytes(), content_type="image/png")
                        if rest == ["annotations"] and method == "GET":
                            return self.reply(200, task.annotations)
                        if rest == ["annotations"] and method == "PATCH":
                            data = validate(self.body(), models.PatchedLabeledDataRequest)
                            if stub.fail_next_annotation_write:
                                stub.fail_next_annotation_write = False
                                return self.reply(500, {"detail": "simulated failure"})
                            try:
                                written = stub.write_annotations(task, query.get("action", ""), data)
                            except KeyError as error:
                                return self.reply(400, {"detail": str(error)})
                            return self.reply(200, written)
                return self.reply(404, {"detail": "Not found."})

            def do_GET(self):
                self.route("GET")

            def do_POST(self):
                self.route("POST")

            def do_PATCH(self):
                self.route("PATCH")

        return Handler
