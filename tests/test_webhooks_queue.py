"""The queue's own rules, without a model: leases on a real Redis, take-over, retention, batches (files,
resume, cancel, summary), and a worker stopped with SIGTERM handing its run back."""

import csv
import json
import signal
import subprocess
import threading
import time

import pytest

from bench.queue import start_worker
from momentseg.cli import main
from momentseg.webhooks import batch
from momentseg.webhooks.leases import LeaseLost
from momentseg.webhooks.queue import WebhookQueue, open_huey

from conftest import TINY_PIXELS
from test_webhooks import OPTIONS, cvat  # noqa: F401  (a fixture)
from test_webhooks_scale import wait_for, worker_env


def redis_queue(url, worker, lease=0.6):
    return WebhookQueue(open_huey(redis_url=url), None, lease_seconds=lease, worker=worker)


def test_a_lease_expires_unless_renewed_and_a_lost_one_stops_the_run(redis_url):
    one, two = redis_queue(redis_url, "one"), redis_queue(redis_url, "two")
    assert one.leases.take("run:a") and not two.leases.take("run:a")
    assert two.leases.holder("run:a") == "one"
    time.sleep(0.4)
    assert one.leases.renew() == [] and not two.leases.take("run:a")  # renewed: still one's
    time.sleep(0.8)
    assert two.leases.holder("run:a") is None and two.leases.take("run:a")  # expired: free for another
    assert one.leases.renew() == ["run:a"] and one.leases.lost("run:a")
    with pytest.raises(LeaseLost):
        one.check_going_on("a")
    one.leases.release("run:a")  # releasing a lost lease leaves the new holder's alone
    assert two.leases.holder("run:a") == "two"


def test_an_unheld_run_is_taken_over_once_and_a_held_one_is_left_alone(redis_url):
    workers = [redis_queue(redis_url, f"w{i}") for i in range(3)]
    for key in ("dead", "alive"):
        record, _ = workers[0].receive(key, {"command": "segment", "task_id": 1})
        workers[0].move(record, "running", worker="gone:1", attempts=1)
    assert workers[1].leases.take("run:alive")
    found = []
    threads = [threading.Thread(target=lambda q=q: found.extend(q.take_over())) for q in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == ["dead"] and workers[0].huey.pending_count() == 1
    record = workers[0].get("dead")
    assert record["state"] == "queued" and record["taken_over_from"] == "gone:1"
    assert workers[0].get("alive")["state"] == "running"
    assert workers[2].take_over() == []  # waiting on huey now: nobody re-queues it again


def test_finished_runs_are_pruned_after_the_retention_period(tmp_path):
    queue = WebhookQueue(open_huey(tmp_path / "q.db"), None, retention_days=7)
    now = time.time()
    for key, state, age_days in (
        ("old-done", "done", 8),
        ("old-failed", "failed", 30),
        ("new-done", "done", 1),
        ("old-waiting", "queued", 30),
    ):
        record, _ = queue.receive(key, {"command": "segment", "task_id": 1})
        queue.move(record, state)
        if key == "old-done":
            record["object_id"], reservation = queue.reserve_object(1, 5, key)
            record["reserved"] = [reservation]
        queue.huey.put(f"momentseg.run:{key}", json.dumps(dict(record, updated=now - age_days * 86400)))
    assert queue.prune(now) == 2
    assert sorted(r["key"] for r in queue.records()) == ["new-done", "old-waiting"]
    assert queue.reserve_object(1, 5, "next")[0] == 5  # the pruned run's reservation went with it


def test_a_tasks_file_is_read_and_its_mistakes_named(tmp_path, capsys):
    good = tmp_path / "tasks.csv"
    good.write_text(
        "task,label,prompt\n12,person,the man who opens the door\n# a comment\n\n"
        '13,car,"the red car, then the blue one"\n'
    )
    assert batch.rows_from_file(good) == [
        batch.BatchRow(12, "person", "the man who opens the door"),
        batch.BatchRow(13, "car", "the red car, then the blue one"),
    ]
    for text, words in (
        ("12,person\n", "line 1: expected task,label,prompt"),
        ("x,person,a dog\n", "line 1: the task"),
        ("", "lists no task"),
    ):
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        assert (
            main(
                [
                    "cvat",
                    "annotate",
                    "--tasks",
                    str(bad),
                    "--host",
                    "http://127.0.0.1:9",
                    "--queue",
                    str(tmp_path / "q.db"),
                ]
            )
            == 2
        )
        assert words in capsys.readouterr().err


def test_a_batch_is_resumed_by_name_cancelled_and_summarised(tmp_path, capsys, monkeypatch):
    queue = WebhookQueue(open_huey(tmp_path / "q.db"), None, max_waiting=5)
    rows = [batch.BatchRow(t, "dog", f"dog {t}") for t in (3, 1, 2)]
    queued, kept = batch.queue_batch(queue, "b", rows, host="cvat:8080", user="lead")
    assert len(queued) == 3 and kept == [] and queue.huey.pending_count() == 3
    assert batch.queue_batch(queue, "b", rows, host="cvat:8080", user="lead") == ([], [k for k in queued])
    with pytest.raises(Exception, match="limit of 5"):
        batch.queue_batch(queue, "other", rows, host="cvat:8080", user="lead")

    done = queue.get("batch:b:1")
    queue.move(
        done,
        "done",
        outcome={"object_id": 7, "frames": 8, "moment": {"start_frame": 2, "end_frame": 5}},
        worker="gpu1:10",
    )
    assert batch.cancel_batch(queue, "b") == 2
    assert [r["state"] for r in batch.batch_records(queue, "b")] == ["done", "cancelled", "cancelled"]
    assert queue.run_next()  # a cancelled run's queued task does nothing
    assert queue.get("batch:b:3")["state"] == "cancelled" and queue.get("batch:b:3")["attempts"] == 0

    summary = tmp_path / "b.csv"
    monkeypatch.setenv("MOMENTSEG_WEBHOOK_QUEUE", str(tmp_path / "q.db"))
    monkeypatch.delenv("MOMENTSEG_REDIS_URL", raising=False)
    assert main(["webhooks", "runs", "--batch", "b", "--summary", str(summary)]) == 0
    table = capsys.readouterr().out
    assert "gpu1:10" in table and "2-5" in table and "cancelled" in table
    rows_written = list(csv.DictReader(summary.open()))
    assert [(r["task"], r["state"], r["object"], r["frames_written"], r["moment_start"]) for r in rows_written] == [
        ("1", "done", "7", "8", "2"),
        ("2", "cancelled", "", "0", ""),
        ("3", "cancelled", "", "0", ""),
    ]

    again, _ = batch.queue_batch(queue, "b", rows, host="cvat:8080", user="lead")  # resumed: the cancelled ones
    assert sorted(again) == ["batch:b:2", "batch:b:3"] and queue.get("batch:b:2")["state"] == "queued"


def test_sigterm_hands_the_run_back_and_another_worker_finishes_it(cvat, redis_url, tmp_path, tiny_checkpoint):
    env = worker_env(cvat, redis_url)
    queue = redis_queue(redis_url, "test", lease=2.0)
    record, _ = queue.receive(
        "r1",
        {
            "command": "segment",
            "task_id": 42,
            "label": "dog",
            "prompt": "the red dog",
            "object_id": None,
            "host": cvat.host,
            "source": "browser",
        },
    )
    queue.start(record)
    reached, release = threading.Event(), threading.Event()

    def hold_frames(method, path, query):
        if query.get("type") == "chunk" and not release.is_set():
            reached.set()
            release.wait(120)

    cvat.hooks.append(hold_frames)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    with open(logs[0], "wb") as out:
        first = start_worker(tiny_checkpoint, env, out, OPTIONS.keyframes, TINY_PIXELS, fps=10)
    try:
        wait_for(reached.is_set, 600, "the run reading frames", logs[:1])
        first.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        release.set()
        assert first.wait(120) == 0
        handed = queue.get("r1")
        assert handed["state"] == "queued" and handed["attempts"] == 0 and handed["worker"] is None
        assert "handed back" in logs[0].read_text()
        assert not any(method == "PATCH" for method, _ in cvat.requests)
        with open(logs[1], "wb") as out:
            second = start_worker(tiny_checkpoint, env, out, OPTIONS.keyframes, TINY_PIXELS, fps=10)
        wait_for(lambda: queue.get("r1")["state"] == "done", 600, "the second worker finishing", logs)
        assert queue.get("r1")["worker"].endswith(f":{second.pid}") and queue.get("r1")["attempts"] == 1
    finally:
        release.set()
        for worker in (first, locals().get("second")):
            if worker is not None and worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
