"""Whole runs started by comment deliveries: the tiny model on the stand-in CVAT, through the SQLite queue
(CVAT down, a write cut off, a worker restart after the write, locks, redeliveries)."""

import datetime
from dataclasses import replace

import numpy as np
import pytest

from momentseg.cvat.runners import local_runner
from momentseg.pipeline import MomentSegPipeline

from test_webhooks import (  # noqa: F401  (cvat is a fixture)
    BOX,
    OPTIONS,
    Service,
    comment_delivery,
    cvat,
    job_of,
    replies,
)


@pytest.fixture
def make_runner(tiny_model):
    """What ``momentseg webhooks worker --checkpoint`` builds, on the tiny model."""
    pipeline = MomentSegPipeline(tiny_model)
    return lambda client, options, progress: local_runner(
        client, pipeline, replace(OPTIONS, **options), fps=10, progress=progress
    )


def object_shapes(cvat, task_id, object_id):
    return [s for s in cvat.task_annotations(cvat.tasks[task_id])["shapes"] if s["group"] == object_id]


def segment_once(cvat, service, text="/segment the red dog"):
    issue, comment = cvat.add_issue(job_of(cvat, 42), 5, BOX, text)
    body = comment_delivery(cvat, issue, comment, text)
    answer = service.post(body)
    assert answer.status_code == 202 and answer.json()["state"] == "received"
    return issue, comment, body


def test_a_segment_comment_writes_the_object_and_the_moment_and_reports_on_the_issue(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, comment, body = segment_once(cvat, service, "/segment the red dog label:dog")
    (queued,) = replies(cvat, issue)
    assert queued.startswith("MomentSeg: queued: segment \"the red dog\" as 'dog'")
    assert not any(method == "PATCH" for method, _ in cvat.requests)  # nothing written before the worker runs

    assert service.run_all() == 1
    shapes = object_shapes(cvat, 42, comment)  # the object's id is the comment's
    assert shapes and all(s["source"] == "auto" and s["type"] == "mask" for s in shapes)
    assert {s["label_id"] for s in shapes} == {cvat.tasks[42].label("dog")["id"]}
    record = service.queue.get(f"{cvat.host}/comments/{comment}")
    assert record["state"] == "done" and record["attempts"] == 1 and record["percent"] >= 90
    said = replies(cvat, issue)
    assert said[1].startswith("MomentSeg: running segment") and "0%" in said[1]
    assert any("%" in line and "propagation" in line for line in said[2:-1])
    done = said[-1]
    assert done.startswith(f"MomentSeg: done: object {comment} ('dog')") and f"/refine {comment}" in done
    moment = record["outcome"]["moment"]
    if moment:  # the moment is tagged frame by frame and the reply names its frames
        tags = cvat.task_annotations(cvat.tasks[42])["tags"]
        assert {t["frame"] for t in tags} == set(range(moment["start_frame"], moment["end_frame"] + 1))
        assert f"frames {moment['start_frame']}-{moment['end_frame']}" in done

    # CVAT's "Redeliver" sends the same body again: nothing is queued, written or said twice
    before = (cvat.task_annotations(cvat.tasks[42]), list(cvat.comments))
    answer = service.post(body)
    assert answer.status_code == 200 and answer.json() == {"duplicate": record["key"], "state": "done"}
    assert service.run_all() == 0
    assert (cvat.task_annotations(cvat.tasks[42]), cvat.comments) == before


def test_a_redelivery_while_queued_runs_once(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, comment, body = segment_once(cvat, service)
    for _ in range(3):
        assert service.post(body).json()["duplicate"] == f"{cvat.host}/comments/{comment}"
    assert service.queue.huey.pending_count() == 1
    assert service.run_all() == 1
    assert len(object_shapes(cvat, 42, comment)) == len({s["frame"] for s in object_shapes(cvat, 42, comment)})
    assert sum(line.startswith("MomentSeg: done") for line in replies(cvat, issue)) == 1


def test_refine_comment_keeps_the_persons_edit(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, object_id, _ = segment_once(cvat, service)
    service.run_all()
    shape = next(s for s in object_shapes(cvat, 42, object_id) if s["frame"] == 2)
    hand = np.zeros((48, 64), bool)
    hand[20:40, 30:60] = True
    edited = cvat.ui_edit_mask(job_of(cvat, 42, 0), shape["id"], hand)
    text = f"/refine {object_id}"
    comment = cvat.new_id()
    assert service.post(comment_delivery(cvat, issue, comment, text)).status_code == 202
    assert service.run_all() == 1
    assert next(s for s in object_shapes(cvat, 42, object_id) if s["frame"] == 2) == edited
    done = replies(cvat, issue)[-1]
    assert done.startswith(f"MomentSeg: done: object {object_id} re-run from your masks on frames 2")


def test_cvat_down_is_retried_with_backoff_then_finishes(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner, retries=2)
    issue, comment, _ = segment_once(cvat, service)
    cvat.down = True
    posts_before = sum(1 for m, p in cvat.requests if m == "POST" and p == "/api/comments")
    assert service.run_all() == 1
    record = service.queue.get(f"{cvat.host}/comments/{comment}")
    assert record["state"] == "retrying" and "HTTP 503" in record["error"]
    (retry,) = service.queue.huey.scheduled()
    wait = (retry.eta - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)).total_seconds()
    assert 20 < wait <= 30  # retry_delay * backoff**0
    # the worker tried to tell the annotator it will try again; CVAT could not take it
    assert sum(1 for m, p in cvat.requests if m == "POST" and p == "/api/comments") == posts_before + 1
    cvat.down = False
    assert service.run_all(later=True) == 1
    assert service.queue.get(record["key"])["state"] == "done" and object_shapes(cvat, 42, comment)


def test_cvat_down_for_good_fails_with_a_clear_state_and_an_attempted_reply(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner, retries=1)
    issue, comment, _ = segment_once(cvat, service)
    cvat.down = True
    service.run_all()
    service.run_all(later=True)
    record = service.queue.get(f"{cvat.host}/comments/{comment}")
    assert record["state"] == "failed" and "gave up after 2 attempts" in record["error"]
    assert service.queue.huey.scheduled() == [] and service.queue.huey.pending_count() == 0
    assert cvat.requests[-1][0] == "POST" and cvat.requests[-1][1] == "/api/comments"  # the error reply, attempted
    cvat.down = False
    assert object_shapes(cvat, 42, comment) == []


def shape_ids(cvat, task_id):
    return sorted((s["id"], s["frame"], s["group"]) for s in cvat.task_annotations(cvat.tasks[task_id])["shapes"])


def test_a_restart_after_the_write_finishes_the_object_without_writing_it_twice(cvat, tmp_path, make_runner):
    """The worker died between CVAT's answer to the write and saving that: the record still says running."""
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, comment, _ = segment_once(cvat, service)
    service.run_all()
    key = f"{cvat.host}/comments/{comment}"
    record = service.queue.get(key)
    record.update(state="running", outcome=None)
    service.queue.save(record)
    before = shape_ids(cvat, 42)

    restarted = Service(cvat, tmp_path / "q.db", make_runner)  # the same SQLite file, reopened
    assert restarted.queue.recover() == [key]
    assert restarted.run_all() == 1
    assert shape_ids(cvat, 42) == before  # the tool's own shapes updated in place, none added
    assert restarted.queue.get(key)["state"] == "done"
    assert "restarted while writing it" in replies(cvat, issue)[-1] and f"/refine {comment}" in replies(cvat, issue)[-1]


def test_a_write_cut_off_by_cvat_is_retried_into_one_object(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, comment, _ = segment_once(cvat, service)
    second_job = job_of(cvat, 42, 1)
    cvat.fail_next[f"PATCH /api/jobs/{second_job}/annotations"] = 503  # the first job's write went through
    service.run_all()
    record = service.queue.get(f"{cvat.host}/comments/{comment}")
    assert record["state"] == "retrying" and "503" in record["error"]
    assert object_shapes(cvat, 42, comment) == []  # annotate took its first job's shapes back out
    assert service.run_all(later=True) == 1
    frames = [s["frame"] for s in object_shapes(cvat, 42, comment)]
    assert service.queue.get(record["key"])["state"] == "done" and frames and len(frames) == len(set(frames))


def test_cvat_down_after_the_write_retries_only_the_reply(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, comment, _ = segment_once(cvat, service)
    wrote = []

    def go_down_after_the_write(method, path, query):
        if method == "PATCH":
            wrote.append(path)
        elif wrote and method == "POST" and path.startswith("/api/comments"):
            cvat.down = True

    cvat.hooks.append(go_down_after_the_write)
    service.run_all()
    key = f"{cvat.host}/comments/{comment}"
    record = service.queue.get(key)
    assert record["state"] == "written" and record["outcome"]["object_id"] == comment
    cvat.hooks.clear()
    cvat.down = False
    before = shape_ids(cvat, 42)
    patches = sum(method == "PATCH" for method, _ in cvat.requests)
    assert service.run_all(later=True) == 1
    record = service.queue.get(key)
    assert record["state"] == "done" and record["attempts"] == 1  # the model did not run again
    assert shape_ids(cvat, 42) == before and sum(method == "PATCH" for method, _ in cvat.requests) == patches
    assert replies(cvat, issue)[-1].startswith(f"MomentSeg: done: object {comment}")


def test_one_run_per_object_at_a_time(cvat, tmp_path, make_runner):
    service = Service(cvat, tmp_path / "q.db", make_runner)
    issue, object_id, _ = segment_once(cvat, service)
    service.run_all()
    comment = cvat.new_id()
    service.post(comment_delivery(cvat, issue, comment, f"/refine {object_id}"))
    held = f"object:tasks/42/objects/{object_id}"
    assert service.queue.leases.take(held)  # another run is refining this object
    assert service.run_all() == 1
    record = service.queue.get(f"{cvat.host}/comments/{comment}")
    assert record["state"] == "queued" and len(service.queue.huey.scheduled()) == 1
    service.queue.leases.release(held)
    assert service.run_all(later=True) == 1
    assert service.queue.get(record["key"])["state"] == "done"


def test_a_commands_method_options_reach_the_runner(cvat, tmp_path, make_runner):
    given = []

    def recording(client, options, progress):
        given.append(options)
        return make_runner(client, options, progress)

    service = Service(cvat, tmp_path / "q.db", recording)
    segment_once(cvat, service, "/segment the red dog keyframes:3 threshold:0.25 window:0 label:dog")
    assert service.run_all() == 1
    assert given == [{"keyframes": 3, "threshold": 0.25, "window": None, "label": "dog"}]
