"""The browser's runs API under ``/momentseg/api`` (docs/webhooks.md, "From the browser"): the CVAT UI
plugin starts, follows and cancels runs on the same queue as comments and batches.

The companion is reached under CVAT's own origin, so the browser sends its CVAT session with each call.
The person is identified by forwarding only that (``sessionid``/``csrftoken`` cookies, ``Authorization``,
``X-CSRFToken``) to CVAT, as CVAT's own UI sends it; it is never stored or logged. Who may edit follows
CVAT's rules for ``update:annotations`` on a job (cvat/apps/engine/rules/jobs.rego): an admin; an
organization's owner or maintainer; else the job's assignee, the task's or the project's owner or
assignee. A run covers the jobs it writes to (one job, or every job of the task), and the person must
be allowed to edit each. The writes are then made by the service account, as automatic shapes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from momentseg import __version__
from momentseg.errors import InvalidInputError
from momentseg.options import check_value, declaration, describe_options
from momentseg.serve import HTTPError, ServeSettings, read_body
from momentseg.webhooks.config import WebhookSettings
from momentseg.webhooks.queue import WebhookQueue, task_of

log = logging.getLogger(__name__)

PREFIX = "/momentseg/api"
CVAT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_BODY_BYTES = 64 * 1024
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "momentseg"
FORWARDED_COOKIES = ("sessionid", "csrftoken")
BODY_FIELDS = ("label", "output")  # options given as fields of the run's body
EDITING_ORG_ROLES = ("owner", "maintainer")


# --- the person, as CVAT sees them ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Person:
    id: int
    username: str
    privilege: str | None  # CVAT's global group: admin, user, worker (or none)


class CvatAsPerson:
    """GET requests to CVAT with the browser's own credentials (nothing else of the request)."""

    def __init__(self, cvat_url: str, request: Request):
        self.cvat_url = cvat_url.rstrip("/")
        headers = {}
        cookies = [f"{name}={request.cookies[name]}" for name in FORWARDED_COOKIES if name in request.cookies]
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        for name in ("Authorization", "X-CSRFToken"):
            if request.headers.get(name):
                headers[name] = request.headers[name]
        self._headers = headers

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        try:
            async with httpx.AsyncClient(timeout=CVAT_TIMEOUT, follow_redirects=False) as client:
                answer = await client.get(self.cvat_url + path, params=params, headers=self._headers)
        except httpx.HTTPError as error:
            raise HTTPError(
                502, "cvat_unreachable", f"CVAT did not answer ({type(error).__name__}); try again later"
            ) from None
        if answer.status_code >= 500:
            raise HTTPError(502, "cvat_error", f"CVAT answered HTTP {answer.status_code}; try again later")
        try:
            return answer.status_code, answer.json()
        except ValueError:
            return answer.status_code, None

    async def person(self) -> Person:
        if not self._headers:
            raise HTTPError(401, "not_logged_in", "you are not logged in to CVAT: log in, then try again")
        status, user = await self.get("/api/users/self")
        if status in (401, 403) or not isinstance(user, dict):
            raise HTTPError(401, "not_logged_in", "CVAT does not know this session: log in to CVAT again")
        groups = set(user.get("groups") or [])
        privilege = (
            "admin"
            if user.get("is_superuser") or "admin" in groups
            else next((g for g in ("user", "worker") if g in groups), None)
        )
        return Person(int(user["id"]), str(user["username"]), privilege)

    async def task(self, task_id: int) -> dict[str, Any]:
        """The task as this person sees it. CVAT shows a task to its and its project's owners and assignees
        and to its organization's maintainers, not to the assignee of one of its jobs: for them, what
        their jobs tell (project, organization), with ``visible_jobs``."""
        status, task = await self.get(f"/api/tasks/{task_id}")
        if status == 200 and isinstance(task, dict):
            return task
        if status == 404:
            raise HTTPError(404, "no_such_task", f"there is no task {task_id} in CVAT")
        jobs = await self.jobs(task_id)
        if not jobs:
            raise HTTPError(403, "may_not_view", f"you may not open task {task_id} in CVAT")
        return {
            "id": task_id,
            "project_id": jobs[0].get("project_id"),
            "organization": jobs[0].get("organization"),
            "owner": None,
            "assignee": None,
            "jobs": {"count": None},
            "visible_jobs": [int(job["id"]) for job in jobs],
        }

    async def jobs(self, task_id: int) -> list[dict[str, Any]]:
        """The task's jobs this person may see."""
        jobs: list[dict[str, Any]] = []
        page = 1
        while True:
            status, answer = await self.get("/api/jobs", task_id=task_id, page=page, page_size=100)
            if status != 200 or not isinstance(answer, dict):
                return jobs
            jobs += answer.get("results", [])
            if not answer.get("next"):
                return jobs
            page += 1

    async def may_edit(self, person: Person, task: dict[str, Any], job_id: int | None) -> str | None:
        """None when the person may edit the run's jobs; else why not, in plain words."""
        if person.privilege == "admin":
            return None
        if person.privilege is None:
            return "your CVAT account has no role that may edit annotations"
        organization = task.get("organization")
        if organization is not None and person.privilege in ("admin", "user"):
            status, answer = await self.get("/api/memberships", user=person.username, org_id=organization)
            roles = {m.get("role") for m in (answer or {}).get("results", [])} if status == 200 else set()
            if roles & set(EDITING_ORG_ROLES):
                return None
        if _is(person, task.get("owner")) or _is(person, task.get("assignee")):
            return None
        if task.get("project_id") is not None:
            status, project = await self.get(f"/api/projects/{task['project_id']}")
            if status == 200 and (_is(person, project.get("owner")) or _is(person, project.get("assignee"))):
                return None
        jobs = await self.jobs(int(task["id"]))
        mine = {int(j["id"]) for j in jobs if _is(person, j.get("assignee"))}
        if job_id is not None:
            return None if job_id in mine else f"you are not assigned to job {job_id} of task {task['id']}"
        count = (task.get("jobs") or {}).get("count", len(jobs))
        if mine and len(mine) == count:
            return None
        return (
            f"you may edit only the jobs assigned to you in task {task['id']}, and this run writes to all "
            "of its jobs: pick your job, or ask the task's owner"
        )


def _is(person: Person, user: dict | None) -> bool:
    return isinstance(user, dict) and user.get("id") == person.id


# --- bodies --------------------------------------------------------------------------------------


def _field(body: dict, name: str, kind, required: bool = True, allow_none: bool = False):
    if name not in body or (body[name] is None and allow_none):
        if required and not allow_none:
            raise HTTPError(400, "bad_request", f"'{name}' is missing")
        return None
    value = body[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise HTTPError(400, "bad_request", f"'{name}' must be a whole number")
    if kind is not int and not isinstance(value, kind):
        raise HTTPError(400, "bad_request", f"'{name}' must be a {kind.__name__}")
    return value


def checked_options(value: Any) -> dict[str, Any]:
    """The ``options`` of a run body, each checked against its declaration (400 names the option)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HTTPError(400, "bad_request", "'options' must be an object of option names and values")
    for name, given in value.items():
        declared = declaration(name)
        if declared is None or name in BODY_FIELDS:
            raise HTTPError(
                400,
                "bad_request",
                f"'options.{str(name)[:40]}' is not a method option (the list: "
                f"GET {PREFIX}/about{'; it is a field of the body' if name in BODY_FIELDS else ''})",
            )
        try:
            check_value(declared, given)
        except InvalidInputError as error:
            raise HTTPError(400, "bad_request", f"'options.{name}': {error}") from None
    return dict(value)


def _run_fields(body: dict) -> dict[str, Any]:
    """The record fields of a run body (400 names the field that is wrong)."""
    from momentseg.pipeline import MAX_PROMPT_CHARS

    kind = _field(body, "kind", str)
    task = _field(body, "task", int)
    options = checked_options(body.get("options"))
    if kind == "annotate":
        prompt = _field(body, "prompt", str)
        label = _field(body, "label", str)
        job = _field(body, "job", int, required=False, allow_none=True)
        frames = body.get("frames")
        if frames is not None:
            if (
                not isinstance(frames, dict)
                or not all(
                    isinstance(frames.get(k), int) and not isinstance(frames.get(k), bool) for k in ("start", "stop")
                )
                or not 0 <= frames["start"] < frames["stop"]
            ):
                raise HTTPError(
                    400,
                    "bad_request",
                    '\'frames\' must be {"start": a, "stop": b} with 0 <= a < b (task frames, b excluded), or null',
                )
            frames = {"frame_start": frames["start"], "frame_stop": frames["stop"] - 1}
        output = body.get("output", "mask")
        if output not in ("mask", "polygon"):
            raise HTTPError(400, "bad_request", "'output' must be 'mask' or 'polygon'")
        create = body.get("create_moment_label", False)
        if not isinstance(create, bool):
            raise HTTPError(400, "bad_request", "'create_moment_label' must be true or false")
        fields = dict(
            command="segment",
            prompt=prompt,
            label=label,
            job=job,
            frames=frames,
            output=output,
            create_labels=create,
            object_id=None,
        )
    elif kind == "refine":
        prompt = _field(body, "prompt", str, allow_none=True)
        fields = dict(command="refine", object_id=_field(body, "object", int), prompt=prompt, label=None, job=None)
    else:
        raise HTTPError(400, "bad_request", "'kind' must be 'annotate' or 'refine'")
    if fields["prompt"] is not None:
        fields["prompt"] = " ".join(fields["prompt"].split())
        if not fields["prompt"] and kind == "annotate":
            raise HTTPError(400, "bad_request", "'prompt' is empty: describe the object to find")
        if len(fields["prompt"]) > MAX_PROMPT_CHARS:
            raise HTTPError(400, "bad_request", f"'prompt' has more than {MAX_PROMPT_CHARS} characters")
    if fields["label"] is not None and not fields["label"].strip():
        raise HTTPError(400, "bad_request", "'label' is empty: give a label of the task")
    return dict(fields, task_id=task, options=options)


# --- what the browser sees of a run --------------------------------------------------------------


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def run_view(record: dict[str, Any], position: int | None) -> dict[str, Any]:
    """A run record as the API shows it (RUNS_API's ``<run>``)."""
    state = {"received": "queued", "retrying": "queued", "written": "running", "refused": "failed"}.get(
        record["state"], record["state"]
    )
    outcome = record.get("outcome") or {}
    result = None
    if record["state"] == "done" and outcome:
        moment = outcome.get("moment")
        result = {
            "object": outcome.get("object_id"),
            "frames_written": outcome.get("frames", 0),
            "output": outcome.get("output", record.get("output") or "mask"),
            "fps": outcome.get("fps"),
            "moment": None
            if not moment
            else {
                "start": moment["start_frame"],
                "end": moment["end_frame"],
                "start_s": moment["start_sec"],
                "end_s": moment["end_sec"],
            },
            "keyframes": outcome.get("keyframes", []),
            "center": outcome.get("center"),
        }
        if record["command"] == "refine":
            written = outcome.get("written", {})
            result.update(frames_written=written.get("updated", 0) + written.get("created", 0), moment=None)
    return {
        "id": record["key"].replace("/", "~"),
        "kind": "annotate" if record["command"] == "segment" else "refine",
        "task": task_of(record),
        "job": record.get("job"),
        "prompt": record.get("prompt") or "",
        "label": record.get("label") or (outcome.get("label") or ""),
        "user": record.get("user") or record.get("author") or "",
        "state": state,
        "stage": record.get("stage"),
        "percent": 100 if record["state"] == "done" else int(record.get("percent", 0)),
        "position": position if state == "queued" else None,
        "worker": record.get("worker"),
        "created": _iso(record["created"]),
        "updated": _iso(record.get("updated")),
        "result": result,
        "error": record.get("error") if state in ("failed", "cancelled") else None,
    }


# --- routes --------------------------------------------------------------------------------------


def runs_routes(
    settings: WebhookSettings, queue: WebhookQueue, cvat_url: str, http: ServeSettings = ServeSettings()
) -> list[BaseRoute]:
    """``/momentseg/api/...``: about, list, start, show and cancel runs."""

    def check_csrf(request: Request) -> None:
        if request.headers.get(CSRF_HEADER) != CSRF_VALUE:
            raise HTTPError(
                403,
                "missing_header",
                f"a POST needs the header {CSRF_HEADER}: {CSRF_VALUE} (a guard against cross-site requests)",
            )

    async def allowed_task(cvat: CvatAsPerson, task_id: int) -> dict[str, Any]:
        task = await cvat.task(task_id)
        if task.get("project_id") not in settings.projects:
            raise HTTPError(
                403,
                "project_not_enabled",
                f"MomentSeg is not enabled for task {task_id}'s project; "
                "the administrator lists the projects it serves in MOMENTSEG_WEBHOOK_PROJECTS",
            )
        return task

    async def record_or_404(run_id: str) -> dict[str, Any]:
        """The run an id names: a comment's run key has slashes, its id tildes (one path segment)."""
        record = await run_in_threadpool(queue.get, run_id.replace("~", "/"))
        if record is None or task_of(record) is None:
            raise HTTPError(404, "no_such_run", f"there is no run '{run_id[:80]}'")
        return record

    def task_of_run(record: dict[str, Any]) -> int:
        task_id = task_of(record)
        if task_id is None:  # a comment's run learns its task when a worker reads the issue
            raise HTTPError(409, "task_not_known", f"run '{record['key']}' does not know its CVAT task yet")
        return task_id

    async def about(request: Request) -> JSONResponse:
        from momentseg.pipeline import MAX_PROMPT_CHARS
        from momentseg.service import Limits

        return JSONResponse(
            {
                "version": __version__,
                "options": [o for o in describe_options() if o["name"] not in BODY_FIELDS],
                "limits": {"max_frames": Limits.from_env(os.environ).max_frames, "max_prompt_chars": MAX_PROMPT_CHARS},
            }
        )

    async def list_runs(request: Request) -> JSONResponse:
        try:
            task_id = int(request.query_params["task"])
        except (KeyError, ValueError):
            raise HTTPError(400, "bad_request", f"'task' must be given as a task id: {PREFIX}/runs?task=<id>") from None
        cvat = CvatAsPerson(cvat_url, request)
        await cvat.person()
        task = await cvat.task(task_id)
        records = await run_in_threadpool(queue.records)
        mine = [r for r in records if task_of(r) == task_id and r.get("command") in ("segment", "refine")]
        if "visible_jobs" in task:  # a job's assignee: the runs on their jobs and on the whole task
            mine = [r for r in mine if r.get("job") is None or r["job"] in task["visible_jobs"]]
        return JSONResponse({"runs": [run_view(r, queue.ahead_of(r["key"], records)) for r in reversed(mine)]})

    def settings_host() -> str:
        return httpx.URL(cvat_url).netloc.decode()

    async def start(request: Request) -> JSONResponse:
        check_csrf(request)
        raw = await read_body(request, dataclasses.replace(http, max_body_bytes=MAX_BODY_BYTES))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise HTTPError(400, "bad_request", "the body must be a JSON object (see the runs API)")
        fields = await run_in_threadpool(_run_fields, body)
        cvat = CvatAsPerson(cvat_url, request)
        person = await cvat.person()
        task = await allowed_task(cvat, fields["task_id"])
        why_not = await cvat.may_edit(person, task, fields["job"])
        if why_not:
            raise HTTPError(403, "may_not_edit", f"you may not edit task {fields['task_id']}: {why_not}")
        if await run_in_threadpool(queue.waiting) >= queue.max_waiting:
            raise HTTPError(
                429,
                "queue_full",
                f"{queue.max_waiting} runs are already waiting; try again in a few minutes",
                headers={"Retry-After": "60"},
            )
        run_id = uuid.uuid4().hex[:16]
        record, _ = await run_in_threadpool(
            queue.receive,
            run_id,
            dict(
                fields, source="browser", user=person.username, host=settings_host(), project_id=task.get("project_id")
            ),
        )
        await run_in_threadpool(queue.start, record)
        return JSONResponse(run_view(record, await run_in_threadpool(queue.ahead_of, run_id)), status_code=202)

    async def show(request: Request) -> JSONResponse:
        record = await record_or_404(request.path_params["run_id"])
        cvat = CvatAsPerson(cvat_url, request)
        await cvat.person()
        await cvat.task(task_of_run(record))
        return JSONResponse(run_view(record, await run_in_threadpool(queue.ahead_of, record["key"])))

    async def cancel(request: Request) -> JSONResponse:
        check_csrf(request)
        record = await record_or_404(request.path_params["run_id"])
        cvat = CvatAsPerson(cvat_url, request)
        person = await cvat.person()
        task = await cvat.task(task_of_run(record))
        if record.get("user") != person.username:
            why_not = await cvat.may_edit(person, task, record.get("job"))
            if why_not:
                raise HTTPError(
                    403,
                    "may_not_edit",
                    f"only who started run {record['key']} or who may edit task {task['id']} may cancel it: {why_not}",
                )
        await run_in_threadpool(queue.cancel, record["key"])
        record = await record_or_404(record["key"])
        return JSONResponse(run_view(record, await run_in_threadpool(queue.ahead_of, record["key"])))

    return [
        Route(f"{PREFIX}/about", about, methods=["GET"]),
        Route(f"{PREFIX}/runs", list_runs, methods=["GET"]),
        Route(f"{PREFIX}/runs", start, methods=["POST"]),
        Route(f"{PREFIX}/runs/{{run_id}}", show, methods=["GET"]),
        Route(f"{PREFIX}/runs/{{run_id}}/cancel", cancel, methods=["POST"]),
    ]
