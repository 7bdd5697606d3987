"""Webhook deliveries shaped exactly like real CVAT 2.73 ones, posted to the webhook app against the stand-in
CVAT server: signatures, hosts, projects, commands, settings. Whole runs: test_webhooks_runs.py."""

import dataclasses
import datetime
import json
import os
from pathlib import Path
from urllib.parse import urlparse

import pytest
from starlette.testclient import TestClient

from momentseg.cvat.connection import connect
from momentseg.pipeline import SegmentOptions
from momentseg.serve import ServeSettings
from momentseg.webhooks.app import create_webhook_app, routes_from_env
from momentseg.webhooks.commands import HELP, CommandError, Help, Refine, Segment, parse_command
from momentseg.webhooks.config import WebhookConfigError, WebhookSettings
from momentseg.webhooks.delivery import sign, signature_matches
from momentseg.webhooks.queue import WebhookQueue, open_huey
from momentseg.webhooks.runs import CvatRuns

from cvat_stub import TOKEN, CvatStub
from conftest import TINY_PIXELS, synthetic_frames
from function_server import serve_command
from http_helpers import exchange, only_json_response, responses, serve_in_thread, trickle

REAL = Path(__file__).parent / "data" / "cvat_webhooks"  # real CVAT 2.73 deliveries, bytes as sent
REAL_SECRET = "smoke-secret"
SECRET = "test-webhook-secret"
PROJECT = 2
OPTIONS = SegmentOptions(keyframes=3, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, force_answer=True)
BOX = [10.0, 10.0, 30.0, 30.0]


def real(name):
    """A real delivery: (body bytes as sent, headers)."""
    return (REAL / f"{name}.json").read_bytes(), json.loads((REAL / f"{name}.headers.json").read_text())


# --- signatures and the commands an annotator types ---------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name[: -len(".headers.json")] for p in REAL.glob("*.headers.json")))
def test_every_real_delivery_verifies_with_its_own_secret_only(name):
    body, headers = real(name)
    assert signature_matches(REAL_SECRET, body, headers["X-Signature-256"])
    assert not signature_matches(SECRET, body, headers["X-Signature-256"])
    assert not signature_matches(REAL_SECRET, body + b" ", headers["X-Signature-256"])
    assert not signature_matches(REAL_SECRET, body, None)


def test_reserialising_a_real_body_gives_the_same_bytes():
    """The tests' deliveries are real bodies edited and dumped again: the dump must match CVAT's."""
    body, _ = real("create_comment")
    assert json.dumps(json.loads(body)).encode() == body


@pytest.mark.parametrize(
    "text, command",
    [
        ("/segment the man who picks up the phone", Segment("the man who picks up the phone", None)),
        ("  /Segment   the red  car label:car ", Segment("the red car", "car")),
        (
            '/segment label:"traffic light" the light that turns green',
            Segment("the light that turns green", "traffic light"),
        ),
        ("/refine 12", Refine(12)),
        ("/refine #7", Refine(7)),
        ("/refine object 3", Refine(3)),
        ("/refine 3  the  red car", Refine(3, "the red car")),
        (
            "/segment the dog at 10:30 keyframes:4 Threshold:0.3 window:0 force-answer:yes label:dog",
            Segment(
                "the dog at 10:30", "dog", {"keyframes": 4, "threshold": 0.3, "window": None, "force_answer": True}
            ),
        ),
        ("/refine 3 the dog bap_score:iou_presence", Refine(3, "the dog", {"bap_score": "iou_presence"})),
        ("/help", Help()),
        ("looks good to me", None),
        ("", None),
    ],
)
def test_commands_are_read_from_the_comment(text, command):
    assert parse_command(text) == command


@pytest.mark.parametrize(
    "text, message",
    [
        ("/segment", "needs a description"),
        ("/segment label:car", "needs a description"),
        ("/segment a car label:", "label: needs a name"),
        ("/segment a label:x label:y", "once"),
        ("/refine", "needs the object id first"),
        ("/refine the car", "needs the object id first"),
        ("/frobnicate now", "unknown command '/frobnicate'"),
    ],
)
def test_mistyped_commands_explain_what_to_type(text, message):
    with pytest.raises(CommandError, match=message):
        parse_command(text)


def test_settings_refuse_to_start_without_a_secret_hosts_or_projects(tmp_path):
    base = {
        "MOMENTSEG_WEBHOOK_SECRET": SECRET,
        "CVAT_HOST": "http://cvat.example:8080",
        "MOMENTSEG_WEBHOOK_PROJECTS": "2,5",
        "MOMENTSEG_WEBHOOK_QUEUE": str(tmp_path / "q.db"),
    }
    settings = WebhookSettings.from_env(base)
    assert settings.cvat_hosts == {"cvat.example:8080"} and settings.projects == {2, 5}
    assert SECRET not in repr(settings)
    for missing, message in [
        ("MOMENTSEG_WEBHOOK_SECRET", "no webhook secret"),
        ("MOMENTSEG_WEBHOOK_PROJECTS", "no CVAT project"),
        ("CVAT_HOST", "no CVAT host"),
    ]:
        with pytest.raises(WebhookConfigError, match=message):
            WebhookSettings.from_env({k: v for k, v in base.items() if k != missing})
    with pytest.raises(WebhookConfigError, match="numbers"):
        WebhookSettings.from_env(dict(base, MOMENTSEG_WEBHOOK_PROJECTS="two"))
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    env = dict(base, MOMENTSEG_WEBHOOK_SECRET_FILE=str(secret_file))
    del env["MOMENTSEG_WEBHOOK_SECRET"]
    assert WebhookSettings.from_env(env).secret == SECRET


def test_the_command_line_refuses_to_start_without_a_secret(monkeypatch, capsys):
    from momentseg.cli import main

    monkeypatch.delenv("MOMENTSEG_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("MOMENTSEG_WEBHOOK_SECRET_FILE", raising=False)
    assert main(["webhooks", "serve", "--projects", "2", "--cvat-hosts", "cvat:8080"]) == 2
    assert "no webhook secret" in capsys.readouterr().err


# --- the app, the queue and the worker ----------------------------------------------------------


@pytest.fixture
def cvat():
    server = CvatStub()
    server.host = urlparse(server.url).netloc
    server.add_task(42, synthetic_frames(8), ["dog", "cat", "moment"], project_id=PROJECT, segment_size=4)  # two jobs
    server.add_task(43, synthetic_frames(8), ["dog"], project_id=99)
    yield server
    server.close()


def job_of(cvat, task_id, index=0):
    return cvat.tasks[task_id].jobs[index].id


def replies(cvat, issue_id):
    return [c["message"] for c in cvat.comments if c["issue"] == issue_id and c["message"].startswith("MomentSeg:")]


class Service:
    """The webhook app and its queue as deployed: settings, SQLite queue, runs against the stand-in."""

    def __init__(self, cvat, queue_file, make_runner=None, retries=2):
        self.cvat = cvat
        self.queue_file = queue_file
        self.settings = WebhookSettings(
            secret=SECRET,
            cvat_hosts=frozenset({cvat.host}),
            projects=frozenset({PROJECT}),
            queue_path=queue_file,
            label="dog",
            retries=retries,
            retry_delay=30.0,
        )
        self.runs = CvatRuns(self.settings, lambda: connect(cvat.url, access_token=TOKEN), make_runner)
        self.queue = WebhookQueue(open_huey(queue_file), self.runs, retries=retries, retry_delay=30.0)
        self.http = TestClient(create_webhook_app(self.settings, self.queue, self.runs))

    def post(self, body, signature="sign", headers=None):
        headers = dict(headers or {"Content-Type": "application/json", "User-Agent": "CVAT/2.73.0"})
        if signature == "sign":
            headers["X-Signature-256"] = sign(SECRET, body)
        elif signature is not None:
            headers["X-Signature-256"] = signature
        return self.http.post("/webhooks/cvat", content=body, headers=headers)

    def run_all(self, later=False):
        """Run every queued task (and, with ``later``, every scheduled retry) in this thread."""
        ran = 0
        while self.queue.run_next():
            ran += 1
        if later:  # as if the retry delay had passed
            tomorrow = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) + datetime.timedelta(days=1)
            for task in self.queue.huey.read_schedule(tomorrow):
                self.queue.huey.execute(task, tomorrow)
                ran += 1
        return ran


def comment_delivery(cvat, issue_id, comment_id, message, host=None):
    """The real create:comment body, with this comment's ids and text and the server's host."""
    body, _ = real("create_comment")
    payload = json.loads(body)
    payload["comment"].update(id=comment_id, issue=issue_id, message=message)
    for user in (payload["comment"]["owner"], payload["sender"]):
        user["url"] = f"http://{host or cvat.host}/api/users/1"
    return json.dumps(payload).encode()


def test_bad_or_missing_signature_is_401_and_nothing_happens(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/segment the red dog")
    body = comment_delivery(cvat, issue, comment, "/segment the red dog")
    for signature in (None, "sha256=" + "0" * 64, sign("another-secret", body), "garbage", sign(SECRET, body)[:-1]):
        answer = service.post(body, signature)
        assert answer.status_code == 401 and answer.json()["error"] == "bad_signature"
    huge = b"{" + b" " * (300 * 1024) + b"}"
    assert service.post(huge).status_code == 413
    real_body, real_headers = real("create_comment")  # signed by the real server with its own secret
    assert service.post(real_body, real_headers["X-Signature-256"]).status_code == 401
    assert service.queue.records() == [] and service.queue.huey.pending_count() == 0
    assert cvat.requests == [] and replies(cvat, issue) == []


def test_unknown_host_is_refused_and_other_events_are_ignored(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/segment the red dog")
    answer = service.post(comment_delivery(cvat, issue, comment, "/segment the red dog", host="evil.example:80"))
    assert answer.status_code == 403 and "evil.example:80" in answer.json()["message"]
    for name in ("create_issue", "update_issue", "create_job", "update_task", "completed_request_create_task"):
        body, _ = real(name)
        answer = service.post(body)
        assert answer.status_code == 200 and answer.json() == {"ignored": json.loads(body)["event"]}
    ping, _ = real("ping")
    assert service.post(ping).status_code == 403  # the real ping names the server it came from: 127.0.0.1:8080
    service.settings = WebhookSettings(
        secret=SECRET,
        cvat_hosts=frozenset({"127.0.0.1:8080"}),
        projects=frozenset({PROJECT}),
        queue_path=tmp_path / "q.db",
    )
    real_server = TestClient(create_webhook_app(service.settings, service.queue, service.runs))
    answer = real_server.post("/webhooks/cvat", content=ping, headers={"X-Signature-256": sign(SECRET, ping)})
    assert answer.status_code == 200 and answer.json() == {"ok": True, "event": "ping"}
    assert service.post(b"[1, 2]").status_code == 400
    assert service.post(comment_delivery(cvat, issue, comment, "nice work")).json() == {
        "ignored": "the comment is not a command"
    }
    assert service.queue.records() == [] and cvat.requests == []


def test_a_project_not_configured_is_refused_without_a_word_to_cvat(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    issue, comment = cvat.add_issue(job_of(cvat, 43), 0, BOX, "/segment the red dog")  # project 99
    answer = service.post(comment_delivery(cvat, issue, comment, "/segment the red dog"))
    assert answer.status_code == 202
    (record,) = service.queue.records()
    assert record["state"] == "refused" and "project 99" in record["error"]
    assert service.run_all() == 0
    assert not any(method != "GET" for method, _ in cvat.requests)
    assert replies(cvat, issue) == [] and cvat.task_annotations(cvat.tasks[43])["shapes"] == []


def test_a_queue_that_cannot_be_reached_answers_503_and_does_nothing(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    service.queue = WebhookQueue(open_huey(redis_url="redis://127.0.0.1:1/0"), service.runs)  # nothing listens
    service.http = TestClient(create_webhook_app(service.settings, service.queue, service.runs))
    issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/segment the red dog")
    answer = service.post(comment_delivery(cvat, issue, comment, "/segment the red dog"))
    assert answer.status_code == 503 and answer.json()["error"] == "queue_unavailable"
    assert cvat.requests == []


def test_the_worker_checks_the_project_when_cvat_was_down_at_delivery(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    issue, comment = cvat.add_issue(job_of(cvat, 43), 0, BOX, "/help")  # project 99
    cvat.down = True
    assert service.post(comment_delivery(cvat, issue, comment, "/help")).status_code == 202
    cvat.down = False
    assert service.run_all() == 1
    (record,) = service.queue.records()
    assert record["state"] == "refused" and replies(cvat, issue) == []


def test_help_and_mistakes_are_answered_on_the_issue(cvat, tmp_path):
    service = Service(cvat, tmp_path / "q.db")
    issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/help")
    assert service.post(comment_delivery(cvat, issue, comment, "/help")).status_code == 202
    second = 99001  # a later comment on the same issue
    assert service.post(comment_delivery(cvat, issue, second, "/segmnt the dog")).status_code == 202
    help_reply, mistake_reply = replies(cvat, issue)
    assert HELP in help_reply and "unknown command '/segmnt'" in mistake_reply
    assert [r["state"] for r in service.queue.records()] == ["done", "done"]
    assert service.run_all() == 0
    health = service.http.get("/webhooks/health")  # anyone sees counts only
    assert health.status_code == 200 and health.json() == {"runs": {"done": 2}}
    service.settings = dataclasses.replace(service.settings, token="operator-token")
    service.http = TestClient(create_webhook_app(service.settings, service.queue, service.runs))
    for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "operator-token"}):
        assert service.http.get("/webhooks/health", headers=wrong).json() == {"runs": {"done": 2}}
    health = service.http.get("/webhooks/health", headers={"Authorization": "Bearer operator-token"})
    assert health.json() == {"queue": "sqlite", "runs": {"done": 2}, "pending_tasks": 0, "running": {}}
    missing = service.http.get("/webhooks/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_the_compose_file_starts_commands_and_settings_that_exist(tmp_path):
    import re

    import yaml

    from momentseg.cli import build_parser

    text = (Path(__file__).parents[1] / "deploy" / "compose.webhooks.yml").read_text()
    # compose's interpolation: ${VAR:-default} → default, ${VAR:?message} → a value the admin must give
    text = re.sub(r"\$\{(\w+)(?::-([^}]*)|:\?[^}]*)\}", lambda m: m.group(2) if m.group(2) is not None else "2", text)
    services = yaml.safe_load(text)["services"]
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    for name in ("momentseg_webhooks", "momentseg_webhooks_worker"):
        service = services[name]
        assert service["entrypoint"][0] == "momentseg"
        args = build_parser().parse_args(service["entrypoint"][1:])
        assert args.command == "webhooks"
        env = dict(
            {k: "" if v is None else str(v) for k, v in service["environment"].items()},
            MOMENTSEG_WEBHOOK_SECRET_FILE=str(secret),
            MOMENTSEG_WEBHOOK_QUEUE=str(tmp_path / "q.db"),
        )
        settings = WebhookSettings.from_env(env)
        assert settings.projects == {2} and settings.redis_url is None and settings.secret == SECRET
        assert "momentseg_queue:/var/lib/momentseg" in service["volumes"]
        assert service["environment"]["MOMENTSEG_WEBHOOK_QUEUE"].startswith("/var/lib/momentseg/")


def test_the_companion_serves_deliveries_over_http(cvat, tmp_path):
    """``momentseg webhooks serve`` as deployed: a process behind uvicorn, configured by the environment."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(
        os.environ,
        CVAT_HOST=cvat.url,
        CVAT_ACCESS_TOKEN=TOKEN,
        MOMENTSEG_WEBHOOK_SECRET=SECRET,
        MOMENTSEG_WEBHOOK_PROJECTS=str(PROJECT),
        MOMENTSEG_WEBHOOK_QUEUE=str(tmp_path / "q.db"),
    )
    log = tmp_path / "serve.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "momentseg.cli", "webhooks", "serve", "--port", str(port)],
            cwd=Path(__file__).parents[1],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/webhooks"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            try:
                health = httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        assert health.json() == {"runs": {}}
        issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/help")
        body = comment_delivery(cvat, issue, comment, "/help")
        headers = {"Content-Type": "application/json", "X-Signature-256": sign(SECRET, body)}
        assert (
            httpx.post(
                f"{url}/cvat", content=body, headers=dict(headers, **{"X-Signature-256": "sha256=0"}), timeout=10
            ).status_code
            == 401
        )
        _, raw = exchange(
            port,
            b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /webhooks/health HTTP/1.1\r\n\r\n",
        )
        assert only_json_response(raw)[0] == 400  # momentseg serve's server: smuggling refused, in JSON
        answer = httpx.post(f"{url}/cvat", content=body, headers=headers, timeout=10)
        assert answer.status_code == 202
        deadline = time.monotonic() + 30
        while not replies(cvat, issue) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert HELP in replies(cvat, issue)[0]
        assert SECRET not in log.read_text() and TOKEN not in log.read_text()
    finally:
        server.terminate()
        server.wait(30)


# --- the same HTTP protections as momentseg serve -------------------------------------------------

HTTP = ServeSettings(header_timeout_s=1.0, read_timeout_s=1.0, body_timeout_s=3.0, keep_alive_s=1.0)
SLACK = 3.0  # seconds a loaded CI machine may add to a timeout


@pytest.fixture
def companion(cvat, tmp_path):
    """The standalone companion on momentseg serve's server, in a thread on loopback."""
    service = Service(cvat, tmp_path / "q.db")
    server, stop = serve_in_thread(create_webhook_app(service.settings, service.queue, service.runs, HTTP), HTTP)
    service.port = server.port
    yield service
    stop()


@pytest.mark.parametrize(
    "head",
    [
        b'POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"event"',
        b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n",
        b'POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
    ],
)
def test_a_delivery_whose_body_never_arrives_is_cut_at_the_read_timeout(companion, cvat, head):
    seconds, raw = exchange(companion.port, head)
    status, body = only_json_response(raw)
    assert (status, body["error"]) == (408, "request_timeout")
    assert HTTP.read_timeout_s * 0.9 <= seconds < HTTP.read_timeout_s + SLACK
    assert companion.queue.records() == [] and cvat.requests == []


def test_a_trickled_delivery_or_head_is_cut_at_its_timeout(companion):
    seconds, raw = exchange(
        companion.port,
        b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 9000\r\n\r\n",
        then=trickle(b" " * 100, 0.4),
    )
    assert only_json_response(raw)[0] == 408 and seconds < HTTP.body_timeout_s + SLACK + 5 * 0.4
    seconds, raw = exchange(
        companion.port, b"POST /webhooks/cvat HTTP/1.1\r\n", then=trickle(b"Host: x\r\nX-Slow: 1", 0.2)
    )
    assert only_json_response(raw)[0] == 408 and seconds < HTTP.header_timeout_s + SLACK


@pytest.mark.parametrize(
    "raw_request, status, code",
    [
        (
            b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\nGET /webhooks/health HTTP/1.1\r\nHost: x\r\n\r\n",
            400,
            "bad_request",
        ),
        (b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n", 413, "delivery_too_large"),
        (b"GET /webhooks/cvat HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405, "method_not_allowed"),
        (b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"),
        (b"HELLO THERE\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_too_large"),
    ],
)
def test_hostile_requests_get_one_json_answer_and_nothing_is_queued(companion, cvat, raw_request, status, code):
    seconds, raw = exchange(companion.port, raw_request)
    (answer,) = responses(raw)  # a smuggled request would add a second answer
    assert (answer[0], answer[2]["error"]) == (status, code) and answer[1]["content-type"] == "application/json"
    assert seconds < SLACK
    assert companion.queue.records() == [] and cvat.requests == []


def test_a_streamed_delivery_is_cut_at_the_delivery_limit(companion):
    def stream(connection):
        chunk = b" " * 65536
        for _ in range(64):  # 4 MiB, sixteen times a delivery's limit
            connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    _, raw = exchange(
        companion.port, b"POST /webhooks/cvat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", then=stream
    )
    status, body = only_json_response(raw)
    assert (status, body["error"]) == (413, "delivery_too_large") and str(256 * 1024) in body["message"]


# --- the webhook routes inside momentseg serve --------------------------------------------------


def test_momentseg_serve_mounts_the_webhook_routes_only_with_a_secret(cvat, tmp_path, tiny_checkpoint):
    import subprocess

    import httpx

    env = dict(
        os.environ,
        CVAT_HOST=cvat.url,
        CVAT_ACCESS_TOKEN=TOKEN,
        MOMENTSEG_WEBHOOK_PROJECTS=str(PROJECT),
        MOMENTSEG_WEBHOOK_QUEUE=str(tmp_path / "q.db"),
    )
    for name in ("MOMENTSEG_WEBHOOK_SECRET", "MOMENTSEG_WEBHOOK_SECRET_FILE"):
        env.pop(name, None)
    assert routes_from_env(env, HTTP) == []  # serve runs as without webhooks
    (tmp_path / "secret").write_text(SECRET + "\n")
    env["MOMENTSEG_WEBHOOK_SECRET_FILE"] = str(tmp_path / "secret")
    server = subprocess.Popen(
        serve_command(tiny_checkpoint),
        cwd=Path(__file__).parents[1],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        served = server.stdout.readline().split()[3]
        assert server.stdout.readline().startswith(f"answering CVAT webhooks on {served}webhooks/cvat")
        issue, comment = cvat.add_issue(job_of(cvat, 42), 1, BOX, "/help")
        body = comment_delivery(cvat, issue, comment, "/help")
        unsigned = httpx.post(f"{served}webhooks/cvat", content=body, timeout=30)
        assert unsigned.status_code == 401 and unsigned.json()["error"] == "bad_signature"
        signed = httpx.post(
            f"{served}webhooks/cvat", content=body, headers={"X-Signature-256": sign(SECRET, body)}, timeout=30
        )
        assert signed.status_code == 202 and signed.json()["accepted"]
        again = httpx.post(
            f"{served}webhooks/cvat", content=body, headers={"X-Signature-256": sign(SECRET, body)}, timeout=30
        )
        assert again.status_code == 200 and again.json()["duplicate"] == signed.json()["accepted"]
        assert httpx.get(f"{served}health", timeout=30).json() == {"ready": True, "error": None}
    finally:
        server.terminate()
        server.wait(30)


def test_momentseg_serve_with_a_secret_but_incomplete_settings_stops_before_loading_the_model(monkeypatch, capsys):
    from momentseg.cli import main

    for name in (
        "MOMENTSEG_WEBHOOK_PROJECTS",
        "MOMENTSEG_WEBHOOK_SECRET_FILE",
        "MOMENTSEG_WEBHOOK_CVAT_HOSTS",
        "CVAT_ACCESS_TOKEN",
        "CVAT_USER",
        "CVAT_PASSWORD",
        "CVAT_CREDENTIALS_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MOMENTSEG_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("CVAT_HOST", "http://cvat.example:8080")
    assert main(["serve", "--checkpoint", "/no/such/checkpoint", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "MOMENTSEG_WEBHOOK_PROJECTS" in err and "checkpoint" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("MOMENTSEG_WEBHOOK_PROJECTS", "2")
    assert main(["serve", "--checkpoint", "/no/such/checkpoint", "--device", "cpu"]) == 2
    assert "no CVAT credentials" in capsys.readouterr().err


def test_the_command_line_and_the_companion_start_without_loading_the_model_code():
    """``momentseg webhooks serve`` starts in a second, not after torch's import (seconds to tens)."""
    import subprocess
    import sys

    check = (
        "import sys; from momentseg.cli import build_parser; build_parser(); "
        "import momentseg.webhooks.app, momentseg.serve; "
        "heavy = sorted({'torch', 'transformers', 'sam2'} & set(sys.modules)); print(heavy)"
    )
    output = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert output.stdout.strip() == "[]", output.stdout + output.stderr
