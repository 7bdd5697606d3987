"""The browser's runs API (/momentseg/api) against the stand-in CVAT with people: who is logged in comes
from their own CVAT session, forwarded; who may edit follows CVAT's rules; runs go on the same queue as
comments and are done by the same worker."""

import dataclasses
import logging

import numpy as np
import pytest
from starlette.testclient import TestClient

from momentseg.webhooks.app import create_webhook_app

from cvat_stub import TOKEN
from test_webhooks import BOX, Service, comment_delivery, cvat, job_of  # noqa: F401  (cvat is a fixture)
from test_webhooks_runs import make_runner, object_shapes  # noqa: F401  (make_runner is a fixture)
from redis_server import free_port

POST = {"X-Requested-With": "momentseg"}
ANNOTATE = {
    "kind": "annotate",
    "task": 42,
    "job": None,
    "frames": None,
    "prompt": "the red dog",
    "label": "dog",
    "output": "mask",
    "create_moment_label": False,
    "options": {"keyframes": 3},
}


@pytest.fixture
def people(cvat):
    """The task's owner, an annotator assigned to its first job, someone unrelated, an organization's
    maintainer; a task 44 of organization 7 in the service's project."""
    users = {
        name: cvat.add_user(name, group)
        for name, group in (
            ("owner", "user"),
            ("worker", "worker"),
            ("stranger", "user"),
            ("maintainer", "user"),
            ("orgworker", "worker"),
        )
    }
    cvat.tasks[42].owner = "owner"
    cvat.tasks[42].jobs[0].assignee = "worker"
    task = cvat.add_task(44, [np.zeros((48, 64, 3), np.uint8)] * 4, ["dog"], project_id=2)
    task.organization = 7
    cvat.add_membership("maintainer", 7, "maintainer")
    cvat.add_membership("orgworker", 7, "worker")
    return users


def browser(app, user=None, token=False):
    """A browser tab logged in to CVAT as ``user`` (its session cookies), or a script with its API token."""
    client = TestClient(app)
    if user and token:
        client.headers["Authorization"] = f"Bearer {user['token']}"
    elif user:
        client.cookies.set("sessionid", user["session"])
        client.cookies.set("csrftoken", user["csrf"])
        client.cookies.set("other", "not-for-cvat")
    return client


def api(cvat, tmp_path, make_runner=None, **settings):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    if settings:
        service.settings = dataclasses.replace(service.settings, **settings)
        service.queue.max_waiting = service.settings.max_waiting
    service.app = create_webhook_app(service.settings, service.queue, service.runs, cvat_url=cvat.url)
    return service


def test_about_declares_the_options_and_limits(cvat, tmp_path):
    service = api(cvat, tmp_path)
    about = browser(service.app).get("/momentseg/api/about").json()
    options = {o["name"]: o for o in about["options"]}
    assert options["keyframes"]["default"] == 8 and options["keyframes"]["type"] == "integer"
    assert options["keyframes"]["minimum"] == 1 and options["lam"]["symbol"] == "λ"
    assert options["sampling"]["choices"] and "mcs" in options["sampling"]["choices"]
    assert "label" not in options and "output" not in options  # fields of the run's body
    assert options["bidirectional"]["type"] == "boolean" and about["limits"]["max_prompt_chars"] == 1000
    assert about["limits"]["max_frames"] > 0 and about["version"]


def test_who_may_start_a_run_follows_cvats_rules(cvat, tmp_path, people):
    service = api(cvat, tmp_path)
    start = "/momentseg/api/runs"
    assert browser(service.app, people["owner"]).post(start, json=ANNOTATE).status_code == 403  # no CSRF header
    answer = browser(service.app).post(start, json=ANNOTATE, headers=POST)
    assert answer.status_code == 401 and answer.json()["error"] == "not_logged_in"
    forged = browser(service.app)
    forged.cookies.set("sessionid", "guessed")
    assert forged.post(start, json=ANNOTATE, headers=POST).status_code == 401
    answer = browser(service.app, people["stranger"]).post(start, json=ANNOTATE, headers=POST)
    assert answer.status_code == 403 and answer.json()["error"] == "may_not_view"
    answer = browser(service.app, people["worker"]).post(start, json=ANNOTATE, headers=POST)  # the whole task
    assert answer.status_code == 403 and "pick your job" in answer.json()["message"]
    second_job = job_of(cvat, 42, 1)
    answer = browser(service.app, people["worker"]).post(start, json=dict(ANNOTATE, job=second_job), headers=POST)
    assert answer.status_code == 403  # not their job: CVAT does not even show it to them
    answer = browser(service.app, people["orgworker"]).post(start, json=dict(ANNOTATE, task=44), headers=POST)
    assert answer.status_code == 403  # a worker of the organization, not on the task's staff
    assert service.queue.records() == []

    mine = browser(service.app, people["worker"]).post(start, json=dict(ANNOTATE, job=job_of(cvat, 42)), headers=POST)
    assert mine.status_code == 202 and mine.json()["job"] == job_of(cvat, 42) and mine.json()["user"] == "worker"
    owner = browser(service.app, people["owner"], token=True).post(start, json=ANNOTATE, headers=POST)
    assert owner.status_code == 202 and owner.json()["state"] == "queued" and owner.json()["position"] == 1
    org = browser(service.app, people["maintainer"]).post(start, json=dict(ANNOTATE, task=44), headers=POST)
    assert org.status_code == 202
    assert [r["source"] for r in service.queue.records()] == ["browser"] * 3
    assert service.queue.huey.pending_count() == 3

    listed = browser(service.app, people["worker"]).get("/momentseg/api/runs?task=42").json()["runs"]
    assert [r["id"] for r in listed] == [owner.json()["id"], mine.json()["id"]]  # newest first
    assert browser(service.app, people["worker"]).get(f"/momentseg/api/runs/{owner.json()['id']}").status_code == 200
    assert browser(service.app, people["stranger"]).get(f"/momentseg/api/runs/{mine.json()['id']}").status_code == 403
    assert browser(service.app, people["owner"]).get("/momentseg/api/runs/nope").status_code == 404
    assert (
        browser(service.app, people["stranger"])
        .post(f"/momentseg/api/runs/{owner.json()['id']}/cancel", headers=POST)
        .status_code
        == 403
    )


@pytest.mark.parametrize(
    "change, field",
    [
        ({"prompt": None}, "prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"label": 3}, "label"),
        ({"task": "42"}, "task"),
        ({"output": "box"}, "output"),
        ({"frames": {"start": 5, "stop": 2}}, "frames"),
        ({"kind": "segment"}, "kind"),
        ({"options": {"keyframes": "eight"}}, "options.keyframes"),
        ({"options": {"keyframes": 500}}, "keyframes"),
        ({"options": {"tsg_pixels": 10**9}}, "options.tsg_pixels"),
        ({"options": {"nope": 1}}, "options.nope"),
        ({"options": {"label": "cat"}}, "field of the body"),
        ({"create_moment_label": "yes"}, "create_moment_label"),
    ],
)
def test_a_bad_body_is_400_naming_the_field(cvat, tmp_path, people, change, field):
    service = api(cvat, tmp_path)
    body = {k: v for k, v in dict(ANNOTATE, **change).items() if not (k == "prompt" and v is None)}
    answer = browser(service.app, people["owner"]).post("/momentseg/api/runs", json=body, headers=POST)
    assert answer.status_code == 400 and field in answer.json()["message"]
    assert service.queue.records() == [] and not any(p.startswith("/api/") for _, p in cvat.requests)


def test_the_queue_is_bounded_and_cvat_down_is_502(cvat, tmp_path, people):
    service = api(cvat, tmp_path, max_waiting=2)
    owner = browser(service.app, people["owner"])
    assert [owner.post("/momentseg/api/runs", json=ANNOTATE, headers=POST).status_code for _ in range(3)] == [
        202,
        202,
        429,
    ]
    full = owner.post("/momentseg/api/runs", json=ANNOTATE, headers=POST)
    assert full.json()["error"] == "queue_full" and full.headers["Retry-After"]
    gone = create_webhook_app(service.settings, service.queue, service.runs, cvat_url=f"http://127.0.0.1:{free_port()}")
    answer = browser(gone, people["owner"]).get("/momentseg/api/runs?task=42")
    assert answer.status_code == 502 and answer.json()["error"] == "cvat_unreachable"


def test_a_browser_run_is_done_by_the_worker_and_reported(cvat, tmp_path, people, make_runner, caplog):
    caplog.set_level(logging.INFO)
    service = api(cvat, tmp_path, make_runner)
    owner = browser(service.app, people["owner"])
    started = owner.post("/momentseg/api/runs", json=dict(ANNOTATE, frames={"start": 2, "stop": 8}), headers=POST)
    run_id = started.json()["id"]
    assert service.run_all() == 1
    run = owner.get(f"/momentseg/api/runs/{run_id}").json()
    assert run["state"] == "done" and run["percent"] == 100 and run["worker"] == service.queue.worker
    result = run["result"]
    frames = sorted(s["frame"] for s in object_shapes(cvat, 42, result["object"]))
    assert result["frames_written"] == len(frames) and frames and min(frames) >= 2
    assert all(s["source"] == "auto" for s in object_shapes(cvat, 42, result["object"]))  # the service's writes
    assert result["output"] == "mask" and result["fps"] == 30.0 and len(result["keyframes"]) == 3

    refine = owner.post(
        "/momentseg/api/runs",
        json={"kind": "refine", "task": 42, "object": result["object"], "prompt": None, "options": {}},
        headers=POST,
    )
    assert refine.status_code == 202 and service.run_all() == 1
    assert owner.get(f"/momentseg/api/runs/{refine.json()['id']}").json()["state"] == "done"
    log = caplog.text
    assert f"run {run_id}: queued -> running" in log and f"run {run_id}: written -> done" in log
    for secret in (people["owner"]["session"], people["owner"]["csrf"], TOKEN):
        assert secret not in log and secret not in started.text


def test_cancel_stops_a_waiting_run_at_once_and_a_running_one_before_it_writes(cvat, tmp_path, people, make_runner):
    service = api(cvat, tmp_path, make_runner)
    owner = browser(service.app, people["owner"])
    waiting = owner.post("/momentseg/api/runs", json=ANNOTATE, headers=POST).json()["id"]
    cancelled = owner.post(f"/momentseg/api/runs/{waiting}/cancel", headers=POST).json()
    assert cancelled["state"] == "cancelled"
    running = owner.post("/momentseg/api/runs", json=ANNOTATE, headers=POST).json()["id"]

    def cancel_while_reading_frames(method, path, query):
        if query.get("type") == "chunk" and service.queue.get(running)["state"] == "running":
            service.queue.cancel(running)

    cvat.hooks.append(cancel_while_reading_frames)
    assert service.run_all() == 2
    assert owner.get(f"/momentseg/api/runs/{running}").json()["state"] == "cancelled"
    assert not any(method == "PATCH" for method, _ in cvat.requests)  # nothing written by either


def test_runs_started_by_comments_are_listed_and_followed_too(cvat, tmp_path, people):
    service = api(cvat, tmp_path)
    issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/segment the red dog")
    assert service.post(comment_delivery(cvat, issue, comment, "/segment the red dog")).status_code == 202
    owner = browser(service.app, people["owner"])
    (run,) = owner.get("/momentseg/api/runs?task=42").json()["runs"]
    assert run["id"] == f"{cvat.host}~comments~{comment}" and run["prompt"] == "the red dog"
    assert owner.get(f"/momentseg/api/runs/{run['id']}").json()["state"] == "queued"
    assert owner.post(f"/momentseg/api/runs/{run['id']}/cancel", headers=POST).json()["state"] == "cancelled"
    said = [c["message"] for c in cvat.comments if c["issue"] == issue]
    assert said[-1] == "MomentSeg: could not segment \"the red dog\" as 'dog': cancelled before it started"
