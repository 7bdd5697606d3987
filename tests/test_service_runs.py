"""Task runs on ``momentseg serve`` (a real server on a loopback socket, the tiny model, the stand-in CVAT):
submit, poll with stage and progress, result, cancel, a bounded number waiting; and the client side that
the CLI's and the webhook worker's ``--function`` use."""

import time

import httpx
import pytest

from momentseg.cvat.runners import FunctionError, function_runner
from momentseg.options import SegmentOptions
from momentseg.pipeline import MomentSegPipeline
from momentseg.serve import ServeSettings, create_app
from momentseg.service import build_service_from_env

from conftest import TINY_PIXELS, synthetic_frames
from cvat_stub import TOKEN, CvatStub
from http_helpers import serve_in_thread

TASK_TOKEN = "runs-token"
AUTH = {"Authorization": f"Bearer {TASK_TOKEN}"}
OPTIONS = SegmentOptions(keyframes=2, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, force_answer=True, label="dog")
REQUEST = {
    "prompt": "the red dog",
    "task": {"id": 42},
    "keyframes": 2,
    "tsg_pixels": TINY_PIXELS,
    "image_pixels": TINY_PIXELS,
    "force_answer": True,
}


@pytest.fixture(scope="module")
def cvat():
    stub = CvatStub()
    stub.add_task(42, synthetic_frames(10), ["dog"], segment_size=10, overlap=0, chunk_size=4)
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def served(cvat, tiny_model):
    service = build_service_from_env(
        {
            "CVAT_HOST": cvat.url,
            "CVAT_ACCESS_TOKEN": TOKEN,
            "MOMENTSEG_TASK_TOKEN": TASK_TOKEN,
            "MOMENTSEG_MAX_WAITING_RUNS": "1",
        },
        pipeline=MomentSegPipeline(tiny_model),
    )
    app = create_app(service, ServeSettings())
    server, stop = serve_in_thread(app, ServeSettings())
    yield f"http://127.0.0.1:{server.port}", service, app.state.runs
    stop()


def wait_for_state(url, run_id, states, timeout=120):
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{url}/runs/{run_id}", headers=AUTH, timeout=10).json()
        if status["state"] in states or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_a_run_is_submitted_polled_and_its_result_fetched_once(served):
    url, _, _ = served
    submitted = httpx.post(f"{url}/runs", json=REQUEST, headers=AUTH, timeout=60)
    assert submitted.status_code == 202 and submitted.headers["Location"] == f"/runs/{submitted.json()['id']}"
    run_id = submitted.json()["id"]
    assert httpx.get(f"{url}/runs/{run_id}", timeout=10).status_code == 401  # the task token, as task mode
    seen = set()
    while (status := httpx.get(f"{url}/runs/{run_id}", headers=AUTH, timeout=10).json())["state"] != "done":
        assert status["state"] in ("queued", "running"), status
        seen.add(status["stage"])
        time.sleep(0.02)
    assert status["percent"] == 100 and seen & {"grounding", "segmenting keyframes", "propagation"}
    result = httpx.get(f"{url}/runs/{run_id}/result", headers=AUTH, timeout=10).json()
    direct = httpx.post(f"{url}/", json=REQUEST, headers=AUTH, timeout=120).json()
    assert result["frames"] == list(range(10)) and result["tracks"] == direct["tracks"]
    assert result["keyframes"] == direct["keyframes"] and result["moment"] == direct["moment"]
    gone = httpx.get(f"{url}/runs/{run_id}/result", headers=AUTH, timeout=10)
    assert (gone.status_code, gone.json()["error"]) == (404, "unknown_run")


def test_runs_wait_in_a_bounded_line_and_can_be_cancelled(served):
    url, service, _ = served
    with service._lock:  # the model is busy with another request
        first = httpx.post(f"{url}/runs", json=REQUEST, headers=AUTH, timeout=60).json()["id"]
        assert wait_for_state(url, first, {"running"})["state"] == "running"
        second = httpx.post(f"{url}/runs", json=REQUEST, headers=AUTH, timeout=60).json()["id"]
        refused = httpx.post(f"{url}/runs", json=REQUEST, headers=AUTH, timeout=60)
        assert refused.status_code == 429 and refused.json()["error"] == "too_many_runs"
        assert refused.headers["Retry-After"] == "60"
        assert httpx.get(f"{url}/runs/{second}", headers=AUTH, timeout=10).json()["state"] == "queued"
        assert httpx.delete(f"{url}/runs/{second}", headers=AUTH, timeout=10).json()["state"] == "cancelled"
        assert httpx.delete(f"{url}/runs/{first}", headers=AUTH, timeout=10).status_code == 200
    status = wait_for_state(url, first, {"cancelled", "failed", "done"})
    assert status["state"] == "cancelled" and status["error"]["error"] == "cancelled"
    not_done = httpx.get(f"{url}/runs/{first}/result", headers=AUTH, timeout=10)
    assert (not_done.status_code, not_done.json()["error"]) == (409, "not_done")


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"prompt": "dog", "frames": ["x"]}, 400, "invalid_frame"),
        ({"prompt": "dog", "task": {"id": 42}, "keyframes": 0}, 400, "invalid_request"),
        ({"prompt": "dog", "task": {"id": 42, "frames": "3-1"}}, 400, "invalid_request"),
    ],
)
def test_a_bad_run_is_refused_before_it_waits(served, body, status, code):
    url, _, _ = served
    answer = httpx.post(f"{url}/runs", json=body, headers=AUTH, timeout=60)
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert httpx.post(f"{url}/runs", json=REQUEST, timeout=60).status_code == 401
    assert httpx.get(f"{url}/runs/nope", headers=AUTH, timeout=10).status_code == 404


def test_the_function_runner_reports_progress_and_answers_what_a_direct_request_does(served, monkeypatch):
    url, _, _ = served
    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", TASK_TOKEN)
    heard = []
    run = function_runner(url + "/", OPTIONS, progress=lambda *stage: heard.append(stage), poll_s=0.02)
    answer = run({"id": 42, "numbers": [0, 1, 2, 4, 5, 6, 7, 8, 9]}, "the red dog", [])
    assert answer["frames"] == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # the frames asked for, 3 left out
    assert {stage for stage, _, _ in heard} & {"grounding", "segmenting keyframes", "propagation"}
    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", "wrong")
    with pytest.raises(FunctionError, match="answered 401"):
        function_runner(url, OPTIONS)({"id": 42}, "the red dog", [])


def test_the_function_runner_cancels_its_run_when_interrupted(served, monkeypatch):
    url, _, runs = served
    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", TASK_TOKEN)

    def interrupt(stage, done, total):
        raise KeyboardInterrupt  # Ctrl-C while the run reports its first stage

    with pytest.raises(KeyboardInterrupt):
        function_runner(url, OPTIONS, progress=interrupt, poll_s=0.02)({"id": 42}, "the red dog", [])
    run = list(runs._runs.values())[-1]
    deadline = time.monotonic() + 60
    while run.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.state == "cancelled" and run.cancel.is_set()  # stopped at its next frame, the model free


def test_the_function_runner_takes_the_nuclio_functions_synchronous_answer(served, monkeypatch):
    """The Nuclio handler (nuclio-sdk's test platform behind a socket) answers POST /runs with the result."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    import nuclio_sdk
    import nuclio_sdk.test

    import serverless.main as function

    url, service, _ = served
    monkeypatch.setattr(function, "build_service_from_env", lambda: service)
    platform = nuclio_sdk.test.Platform()
    paths = []

    class Trigger(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            paths.append(self.path)
            event = nuclio_sdk.Event(
                body=self.rfile.read(int(self.headers["Content-Length"])),
                path=self.path,
                content_type="application/json",
                headers=dict(self.headers),
            )
            response = platform.call_handler(function.handler, event)
            data = response.body.encode() if isinstance(response.body, str) else response.body
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    trigger = ThreadingHTTPServer(("127.0.0.1", 0), Trigger)
    Thread(target=trigger.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", TASK_TOKEN)
        heard = []
        answer = function_runner(
            f"http://127.0.0.1:{trigger.server_port}", OPTIONS, progress=lambda *stage: heard.append(stage)
        )({"id": 42}, "the red dog", [])
        direct = httpx.post(f"{url}/", json=REQUEST, headers=AUTH, timeout=120).json()
        assert paths == ["/runs"] and not heard  # one synchronous answer, no progress
        assert answer["tracks"][0]["shapes"] == direct["tracks"][0]["shapes"]
        assert answer["keyframes"] == direct["keyframes"] and answer["moment"] == direct["moment"]
    finally:
        trigger.shutdown()
        trigger.server_close()
