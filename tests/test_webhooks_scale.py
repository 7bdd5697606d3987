"""Many workers on one real Redis queue: three ``momentseg webhooks worker`` processes (tiny model), a
project's worth of batches queued by ``momentseg cvat annotate --project`` on the stand-in CVAT, one worker
killed with SIGKILL while it writes. Every run is done once, the killed worker's run is finished by another,
each task holds one object per run with one shape per frame, a person's shape is untouched, and two runs on
one object never hold it at the same time."""

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from bench.queue import start_worker
from momentseg.cli import main
from momentseg.webhooks.config import WebhookSettings
from momentseg.webhooks.queue import FINAL, WebhookQueue, open_huey

from conftest import TINY_PIXELS, synthetic_frames
from cvat_stub import TOKEN, CvatStub
from test_webhooks import OPTIONS, PROJECT, SECRET

REPO = Path(__file__).resolve().parents[1]
TASKS = [51, 52, 53, 54, 55]
BATCHES = 4  # 4 batches x 5 tasks = 20 runs
LEASE = 2.0


@pytest.fixture
def cvat():
    server = CvatStub()
    server.host = urlparse(server.url).netloc
    for task_id in TASKS:
        server.add_task(task_id, synthetic_frames(8), ["dog", "moment"], project_id=PROJECT, segment_size=4)
    server.add_project(PROJECT)
    yield server
    server.close()


def worker_env(cvat, redis_url):
    return dict(
        os.environ,
        CVAT_HOST=cvat.url,
        CVAT_ACCESS_TOKEN=TOKEN,
        MOMENTSEG_WEBHOOK_SECRET=SECRET,
        MOMENTSEG_WEBHOOK_PROJECTS=str(PROJECT),
        MOMENTSEG_WEBHOOK_CVAT_HOSTS=cvat.host,
        MOMENTSEG_REDIS_URL=redis_url,
        MOMENTSEG_LEASE_SECONDS=str(LEASE),
        MOMENTSEG_WEBHOOK_LABEL="dog",
        OMP_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
    )


def wait_for(condition, timeout, what, logs):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s\n" + "\n".join(
            p.read_text()[-1500:] for p in logs
        )
        time.sleep(0.2)


def test_three_workers_share_one_redis_queue_and_take_over_a_killed_workers_run(
    cvat, redis_url, tmp_path, tiny_checkpoint, monkeypatch
):
    person = cvat.ui_draw_mask(
        cvat.tasks[51].jobs[0].id, 1, cvat.tasks[51].label("dog")["id"], np.eye(48, 64, dtype=bool)
    )
    env = worker_env(cvat, redis_url)
    for name in ("CVAT_ACCESS_TOKEN", "MOMENTSEG_REDIS_URL"):
        monkeypatch.setenv(name, env[name])
    for batch in range(BATCHES):  # what a lead types: one run per task of the project
        assert (
            main(
                [
                    "cvat",
                    "annotate",
                    "--project",
                    str(PROJECT),
                    "--prompt",
                    f"the dog number {batch}",
                    "--label",
                    "dog",
                    "--batch",
                    f"b{batch}",
                    "--detach",
                    "--host",
                    cvat.url,
                ]
            )
            == 0
        )
    settings = WebhookSettings.from_env(env)
    queue = WebhookQueue(open_huey(redis_url=redis_url), None, lease_seconds=LEASE)
    assert len(queue.records()) == BATCHES * len(TASKS) and queue.huey.pending_count() == BATCHES * len(TASKS)
    assert settings.redis_url == redis_url

    reached, release = threading.Event(), threading.Event()

    def hold_writes(method, path, query):  # every write waits until a writing worker was killed
        if method == "PATCH" and path.rstrip("/").endswith("/annotations") and not release.is_set():
            reached.set()
            release.wait(120)

    cvat.hooks.append(hold_writes)
    logs = [tmp_path / f"worker{i}.log" for i in range(3)]
    workers = []
    for log in logs:
        with open(log, "wb") as output:
            workers.append(start_worker(tiny_checkpoint, env, output, OPTIONS.keyframes, TINY_PIXELS, fps=10))
    try:
        wait_for(reached.is_set, 600, "a first write", logs)
        writing = []
        wait_for(
            lambda: (
                writing.extend(r for r in queue.records() if r["state"] == "running" and r.get("stage") == "writing")
                or writing
            ),
            30,
            "a run writing",
            logs,
        )
        victim = writing[0]
        pid = int(victim["worker"].rsplit(":", 1)[1])
        (killed,) = [w for w in workers if w.pid == pid]
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        release.set()  # the dead worker's write still lands, as on a real server

        wait_for(lambda: all(r["state"] in FINAL for r in queue.records()), 900, "every run finishing", logs)
        records = {r["key"]: r for r in queue.records()}
        assert [r["state"] for r in records.values()] == ["done"] * len(records), [
            (r["key"], r["state"], r.get("error")) for r in records.values()
        ]
        taken = records[victim["key"]]
        assert taken["attempts"] == 2 and taken["taken_over_from"] == victim["worker"]
        assert taken["worker"] != victim["worker"]
        assert taken["outcome"]["resumed"]  # the dead worker's first write had landed: finished as a refine
        assert all(r["attempts"] == 1 for k, r in records.items() if k != victim["key"])  # the model ran once

        for task_id in TASKS:
            shapes = [s for s in cvat.task_annotations(cvat.tasks[task_id])["shapes"] if s["source"] != "manual"]
            objects = {r["outcome"]["object_id"] for r in records.values() if r["task_id"] == task_id}
            assert len(objects) == BATCHES and {s["group"] for s in shapes} == objects
            for object_id in objects:
                frames = [s["frame"] for s in shapes if s["group"] == object_id]
                assert frames and len(frames) == len(set(frames))  # one shape per frame
        manual = [s for s in cvat.task_annotations(cvat.tasks[51])["shapes"] if s["source"] == "manual"]
        assert manual == [person]

        summary = tmp_path / "b0.json"
        assert main(["webhooks", "runs", "--batch", "b0", "--summary", str(summary)]) == 0
        rows = json.loads(summary.read_text())
        assert [row["task"] for row in rows] == TASKS and all(row["state"] == "done" for row in rows)
        assert [row["object"] for row in rows] == [records[f"batch:b0:{t}"]["outcome"]["object_id"] for t in TASKS]

        # two refines of one object, queued at once on the two live workers: never at the same time
        object_id = records["batch:b1:52"]["outcome"]["object_id"]
        keys = []
        for n in range(2):
            record, _ = queue.receive(
                f"refine-{n}",
                dict(command="refine", source="browser", task_id=52, object_id=object_id, prompt=None, host=cvat.host),
            )
            queue.start(record)
            keys.append(record["key"])
        wait_for(lambda: all(queue.get(k)["state"] in FINAL for k in keys), 600, "both refines", logs)
        first, second = sorted((queue.get(k) for k in keys), key=lambda r: r["held_from"])
        assert first["state"] == second["state"] == "done"
        assert first["held_until"] <= second["held_from"]
    finally:
        release.set()
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                worker.kill()
    assert all(w.returncode == 0 for w in workers if w is not killed)  # SIGTERM: a graceful stop
