"""A worker killed mid-run (SIGKILL: no clean-up at all) and started again: nothing lost, nothing twice.

The worker is the real ``momentseg webhooks worker`` process (huey consumer, tiny checkpoint) on the same
SQLite queue file the webhook app wrote to; the stand-in CVAT holds the worker's request until the test
has killed it.
"""

import os
import signal
import threading

import pytest

from bench.queue import start_worker

from conftest import TINY_PIXELS
from test_webhooks import OPTIONS, PROJECT, SECRET, Service, cvat, replies  # noqa: F401  (cvat: a fixture)
from test_webhooks_runs import make_runner, object_shapes, segment_once  # noqa: F401  (make_runner: a fixture)


def worker_env(cvat, queue_file):
    return dict(
        os.environ,
        CVAT_HOST=cvat.url,
        CVAT_ACCESS_TOKEN="stub-token",
        MOMENTSEG_WEBHOOK_SECRET=SECRET,
        MOMENTSEG_WEBHOOK_PROJECTS=str(PROJECT),
        MOMENTSEG_WEBHOOK_CVAT_HOSTS=cvat.host,
        MOMENTSEG_WEBHOOK_QUEUE=str(queue_file),
        MOMENTSEG_WEBHOOK_LABEL="dog",
        OMP_NUM_THREADS="1",
    )


@pytest.mark.parametrize("kill_at", ["GET chunk", "PATCH annotations"])
def test_a_worker_killed_mid_run_resumes_without_losing_or_repeating(
    cvat, tmp_path, make_runner, tiny_checkpoint, kill_at
):
    queue_file = tmp_path / "queue.db"
    service = Service(cvat, queue_file, make_runner)
    issue, comment, body = segment_once(cvat, service)
    key = f"{cvat.host}/comments/{comment}"

    reached, release = threading.Event(), threading.Event()
    method, what = kill_at.split()

    def hold(request_method, path, query):
        if request_method == method and (
            what == "annotations"
            and path.rstrip("/").endswith("/annotations")
            or what == "chunk"
            and query.get("type") == "chunk"
        ):
            reached.set()
            release.wait(60)

    cvat.hooks.append(hold)
    log = tmp_path / "worker.log"
    env = worker_env(cvat, queue_file)
    with open(log, "wb") as output:
        worker = start_worker(tiny_checkpoint, env, output, OPTIONS.keyframes, TINY_PIXELS, fps=10)
    try:
        while not reached.wait(1):
            record = service.queue.get(key)
            assert worker.poll() is None and record["state"] in ("queued", "running"), log.read_text()[-3000:]
        assert service.queue.get(key)["state"] == "running"
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    finally:
        if worker.poll() is None:
            worker.kill()
        cvat.hooks.remove(hold)
        release.set()  # a write the dead worker had sent still lands, as on a real server

    assert service.queue.get(key)["state"] == "running"  # what a killed worker leaves
    restarted = Service(cvat, queue_file, make_runner)  # the worker starting again on the same file
    assert restarted.queue.recover() == [key]
    assert restarted.run_all() == 1
    record = restarted.queue.get(key)
    assert record["state"] == "done" and record["attempts"] == 2

    frames = [s["frame"] for s in object_shapes(cvat, 42, comment)]
    assert frames and len(frames) == len(set(frames))  # one object, one mask per frame at most
    said = replies(cvat, issue)
    assert sum(line.startswith("MomentSeg: done") for line in said) == 1
    assert sum(line.startswith("MomentSeg: queued") for line in said) == 1
    if kill_at == "PATCH annotations":  # the first job's part had landed: the rerun says so, writes nothing
        assert "restarted while writing it" in said[-1]
    assert service.post(body).json()["duplicate"] == key and restarted.run_all() == 0
