"""CVAT workflows against the faithful stand-in server (tests/cvat_stub.py) on a multi-job video task with
overlapping jobs and hand-made annotations that must stay byte-identical."""

import copy
import json
import re

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask

from momentseg.cli import main
from momentseg.cvat import task as task_model
from momentseg.cvat.connection import connect
from momentseg.cvat.frames import TaskFrames
from momentseg.cvat.runners import local_runner
from momentseg.cvat.annotate import annotate_task
from momentseg.cvat.export import task_export
from momentseg.cvat.refine import refine_object
from momentseg.cvat.task import LabelMissingError, NothingFoundError, PartialWriteError
from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.export import to_coco, write_refvos_pngs
from momentseg.masks import mask_to_polygons, to_cvat_rle
from momentseg.pipeline import MomentSegPipeline, SegmentOptions
from momentseg.result import Moment, SegmentResult, Shape, Track

from conftest import TINY_PIXELS, synthetic_frames
from cvat_stub import TOKEN, CvatStub, track_state

H, W, T = 48, 64, 30
OPTIONS = SegmentOptions(keyframes=3, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, label="dog")


def disc(frame: int, radius: int = 8) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (yy - 24) ** 2 + (xx - 8 - 2 * frame) ** 2 < radius**2


def square(y0, x0, size=8) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0 : y0 + size, x0 : x0 + size] = True
    return mask


class ScriptedModel:
    """The model's answer for a scripted scene (a disc present on ``present`` frames), shaped by the real
    result code; it reads the selected frames from CVAT by chunk, as the local runner does."""

    def __init__(
        self, client, present, moment=(12, 21), keyframes=(4, 14, 18), center=14, output="mask", during_run=None
    ):
        self.client, self.present, self.moment = client, set(present), moment
        self.keyframes, self.center, self.output = list(keyframes), center, output
        self.during_run = during_run
        self.calls = []

    def __call__(self, selection, prompt, anchors):
        frames = TaskFrames(
            self.client,
            selection["id"],
            selection.get("frame_start"),
            selection.get("frame_stop"),
            selection.get("frame_step"),
            fps=10,
            numbers=selection.get("numbers"),
        )
        numbers = frames.numbers
        assert frames[len(frames) - 1].shape == (H, W, 3)
        self.calls.append({"selection": selection, "prompt": prompt, "anchors": anchors, "requests": frames.requests})
        if self.during_run:
            self.during_run()
        anchor_masks = {a["frame"]: decode_mask(a["mask"], image_width=W, image_height=H) for a in anchors}
        shapes = []
        for index, number in enumerate(numbers):
            mask = anchor_masks.get(number, disc(number) if number in self.present else None)
            if mask is None:
                continue
            points = to_cvat_rle(mask) if self.output == "mask" else mask_to_polygons(mask, 1.0)[0].flat()
            shapes.append(
                Shape(index, self.output, points, number in self.keyframes, False, round(0.5 + number / 100, 4))
            )
        index = {n: i for i, n in enumerate(numbers)}
        start, end = self.moment
        result = SegmentResult(
            prompt=prompt,
            num_frames=len(numbers),
            width=W,
            height=H,
            fps=10.0,
            moment=Moment(index[start], index[end], start / 10, (end + 1) / 10, 0.8) if start in index else None,
            moment_reason=None,
            center_frame=index.get(self.center, 0),
            keyframes=[index[k] for k in self.keyframes if k in index],
            similarity=None,
            tracks=[Track("dog", shapes)] if shapes else [],
            model={},
            options={},
            timings={},
        )
        return result.to_task_frames(numbers)


def make_stub():
    """Task 42: 30 frames in four overlapping jobs, with a person's work that must survive everything."""
    server = CvatStub()
    task = server.add_task(42, synthetic_frames(T), ["dog", "cat"], segment_size=10, overlap=2, chunk_size=4)
    dog, cat = task.labels[0]["id"], task.labels[1]["id"]
    jobs = task.jobs  # [0-9], [8-17], [16-25], [24-29]
    # a person's work that must survive everything the tool does
    server.write_job(
        jobs[0],
        "create",
        {
            "shapes": [
                {
                    "type": "mask",
                    "frame": 3,
                    "label_id": cat,
                    "points": [float(p) for p in encode_mask(square(2, 2))],
                    "source": "manual",
                    "group": 0,
                    "attributes": [],
                }
            ],
            "tracks": [
                {
                    "frame": 0,
                    "label_id": cat,
                    "source": "manual",
                    "group": 0,
                    "attributes": [],
                    "shapes": [
                        {
                            "type": "polygon",
                            "frame": 0,
                            "points": [1, 1, 20, 1, 20, 20],
                            "outside": False,
                            "attributes": [],
                        },
                        {
                            "type": "polygon",
                            "frame": 5,
                            "points": [1, 1, 20, 1, 20, 20],
                            "outside": True,
                            "attributes": [],
                        },
                    ],
                }
            ],
        },
    )
    server.write_job(
        jobs[1],
        "create",
        {
            "tags": [{"frame": 12, "label_id": cat, "source": "manual", "attributes": []}],
            "shapes": [
                {
                    "type": "mask",
                    "frame": 15,
                    "label_id": dog,
                    "source": "manual",
                    "points": [float(p) for p in encode_mask(square(30, 50))],
                    "group": 0,
                    "attributes": [],
                }
            ],
        },
    )
    server.hand_made_ids = {
        o["id"] for job in task.jobs for kind in ("tags", "shapes", "tracks") for o in job.annotations[kind]
    }
    return server


@pytest.fixture
def stub():
    server = make_stub()
    yield server
    server.close()


@pytest.fixture
def client(stub):
    return connect(stub.url, access_token=TOKEN)


def person_work(stub, task_id=42):
    """The hand-made annotations the task started with, as stored now, per job."""
    return {
        job.id: {
            kind: [o for o in job.annotations[kind] if o["id"] in stub.hand_made_ids]
            for kind in ("tags", "shapes", "tracks", "intervals")
        }
        for job in stub.tasks[task_id].jobs
    }


def objects_in(stub, group, kind="shapes", task_id=42):
    """The object's annotations per job: its group, or a person's shape whose "object" attribute names it."""
    task = stub.tasks[task_id]
    return {
        job.id: [
            o for o in job.annotations[kind] if o.get("group") == group or attribute(task, o, "object") == str(group)
        ]
        for job in task.jobs
    }


def attribute(task, shape, name):
    ids = {a["id"]: a["name"] for label in task.labels for a in label["attributes"]}
    return next((a["value"] for a in shape["attributes"] if ids[a["spec_id"]] == name), None)


# --- frames -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("video", [True, False])
def test_frames_are_read_by_chunk_with_a_bounded_cache(video):
    stub = CvatStub()
    try:
        frames = synthetic_frames(T)
        stub.add_task(7, frames, ["dog"], video=video, chunk_size=4)
        chunk_bytes = 4 * H * W * 3
        source = TaskFrames(connect(stub.url, access_token=TOKEN), 7, cache_bytes=2 * chunk_bytes)
        assert len(source) == T and source.fps == 30.0
        for i in range(T):
            assert np.abs(source[i].astype(int) - frames[i]).mean() < 3
        assert source.requests == 8 and len(source._cache) == 2
        assert sum(1 for _, path in stub.requests if "/api/tasks/7/data/?" in path) == 8
        assert not any("type=frame" in path for _, path in stub.requests)
        source[0]
        assert source.requests == 9  # evicted, fetched again
        assert source.names[:2] == (["00000", "00001"] if video else ["00000.jpg", "00001.jpg"])
    finally:
        stub.close()


@pytest.mark.parametrize("video", [True, False])
def test_a_chunk_cvat_sends_damaged_is_named_without_errno(video):
    stub = CvatStub()
    try:
        stub.add_task(7, synthetic_frames(T), ["dog"], video=video, chunk_size=4)
        stub.tasks[7].chunks[1] = b"not a chunk" * 100
        source = TaskFrames(connect(stub.url, access_token=TOKEN), 7)
        with pytest.raises(InvalidInputError, match=r"^chunk 1 of task 7 cannot be decoded \(") as failure:
            source[5]
        assert "Errno" not in str(failure.value)
    finally:
        stub.close()


# --- annotate ---------------------------------------------------------------------------------------------


def test_annotate_writes_per_frame_masks_where_cvat_slices_them(stub, client):
    before = person_work(stub)
    model = ScriptedModel(client, present=set(range(4, 24)) - {10})
    summary = annotate_task(client, 42, "the red dog", "dog", model, create_labels=True, create_attributes=True)
    task = stub.tasks[42]
    assert person_work(stub) == before
    group = summary.object_id
    assert group > 0 and summary.written == {"mask_shapes": 23, "polygon_tracks": 0, "tags": 12, "intervals": 0}
    shapes = objects_in(stub, group)
    for job in task.jobs:
        assert all(job.holds(s["frame"]) for s in shapes[job.id])
        assert not job.annotations["tracks"] or all(t["source"] == "manual" for t in job.annotations["tracks"])
        assert sorted(s["frame"] for s in shapes[job.id]) == [
            f for f in range(job.start, job.stop + 1) if f in model.present
        ]
    # overlap frames 8, 9, 16, 17 live in both jobs, each with its own id
    assert len({s["id"] for ss in shapes.values() for s in ss}) == 19 + 4
    every = [s for ss in shapes.values() for s in ss]
    assert {(s["type"], s["source"], s["label_id"]) for s in every} == {("mask", "auto", task.labels[0]["id"])}
    for shape in every:
        assert shape["score"] == round(0.5 + shape["frame"] / 100, 4)
        np.testing.assert_array_equal(decode_mask(shape["points"], image_width=W, image_height=H), disc(shape["frame"]))
        assert attribute(task, shape, "object") == str(group) and attribute(task, shape, "prompt") == "the red dog"
        assert attribute(task, shape, "MCS") == (
            "c*" if shape["frame"] == 14 else "keyframe" if shape["frame"] in (4, 18) else "no"
        )
    tags = [t for ss in objects_in(stub, group, "tags").values() for t in ss]
    assert sorted({t["frame"] for t in tags}) == list(range(12, 22)) and all("score" not in t for t in tags)
    assert {t["label_id"] for t in tags} == {task.label("moment")["id"]}
    assert "several jobs" in " ".join(summary.notes)
    patches = [path for method, path in stub.requests if method == "PATCH"]
    assert patches and all(p.startswith("/api/jobs/") or p == "/api/tasks/42" for p in patches)
    assert summary.link == f"{stub.url}/tasks/42"
    assert json.loads(json.dumps(summary.to_json()))["moment"]["start_frame"] == 12
    # the next object gets a group of its own
    assert annotate_task(client, 42, "the dog", "dog", model).object_id == group + 1


def test_annotate_one_job_writes_the_interval_that_job_holds(stub, client):
    model = ScriptedModel(client, present=range(8, 18), moment=(10, 15), keyframes=(9, 12), center=12)
    job = stub.tasks[42].jobs[1]
    summary = annotate_task(client, 42, "the red dog", "dog", model, job_id=job.id, create_labels=True)
    assert model.calls[0]["selection"]["numbers"] == list(range(8, 18))
    shapes = objects_in(stub, summary.object_id)
    assert [len(v) for v in shapes.values()] == [0, 10, 0, 0]
    (interval,) = job.annotations["intervals"]
    assert (interval["start"], interval["stop"], interval["source"]) == (10, 16, "auto")
    assert summary.link.endswith(f"/tasks/42/jobs/{job.id}") and summary.written["intervals"] == 1
    assert any("no attribute" in note for note in summary.notes)  # tied by its group only


def test_polygons_are_a_polygon_track_per_job(stub, client):
    model = ScriptedModel(client, present=set(range(3, 7)) | set(range(9, 20)), output="polygon")
    summary = annotate_task(client, 42, "the red dog", "dog", model, output="polygon")
    tracks = objects_in(stub, summary.object_id, "tracks")
    assert not any(s["type"] == "mask" for ss in objects_in(stub, summary.object_id).values() for s in ss)
    outline = {job_id: [(s["frame"], s["outside"]) for t in ts for s in t["shapes"]] for job_id, ts in tracks.items()}
    jobs = stub.tasks[42].jobs
    assert outline[jobs[0].id] == [(f, False) for f in range(3, 7)] + [(7, True)] + [(9, False)]
    assert outline[jobs[1].id] == [(f, False) for f in range(9, 18)]
    assert outline[jobs[2].id] == [(16, False), (17, False), (18, False), (19, False), (20, True)]
    assert tracks[jobs[3].id] == []
    assert all(t["source"] == "auto" and t["group"] == summary.object_id for ts in tracks.values() for t in ts)
    stub.export_coco(42)  # polygon tracks export


def test_a_polygon_object_exports_as_a_track_cvat_imports_back(stub, client):
    model = ScriptedModel(client, present=set(range(3, 7)) | set(range(9, 20)), output="polygon")
    summary = annotate_task(client, 42, "the red dog", "dog", model, output="polygon")
    (obj,) = task_export(client, 42, [summary.object_id]).objects
    assert obj.track and sorted(obj.shapes) == sorted(model.present)
    coco = to_coco(task_export(client, 42, [summary.object_id]))
    fresh = stub.add_task(43, synthetic_frames(T), ["dog", "cat"], segment_size=10, overlap=2)
    stub.import_coco(43, coco)
    shown = {}
    for job in fresh.jobs:
        for track in job.annotations["tracks"]:
            for frame in range(job.start, job.stop + 1):
                state = track_state(track["shapes"], frame)
                if state is not None:
                    shown[frame] = state["points"]
    assert sorted(shown) == sorted(model.present)
    assert all(shown[f] == obj.shapes[f].points for f in shown)


def test_an_image_task_every_other_frame_exported_under_its_source_names(stub, client, tmp_path):
    names = [f"clip/{i:05d}.jpg" for i in range(T)]
    task = stub.add_task(44, synthetic_frames(T), ["dog"], video=False, segment_size=16, chunk_size=4, names=names)
    model = ScriptedModel(client, present=range(0, T), moment=(10, 14), keyframes=(10,), center=10)
    summary = annotate_task(
        client,
        44,
        "the red dog",
        "dog",
        model,
        frames={"frame_start": 2, "frame_stop": 20, "frame_step": 2},
        create_attributes=True,
    )
    assert summary.object_frames == list(range(2, 21, 2))
    edited = stub.ui_edit_mask(
        task.jobs[0].id, next(s["id"] for s in task.jobs[0].annotations["shapes"] if s["frame"] == 6), square(5, 5)
    )
    refine_model = ScriptedModel(client, present=range(0, T), moment=(10, 14), keyframes=(10,), center=10)
    refine_object(client, 44, summary.object_id, refine_model)
    assert refine_model.calls[0]["selection"]["numbers"] == list(range(2, 21, 2))  # what annotate processed
    assert edited in task.jobs[0].annotations["shapes"]
    exported = task_export(client, 44, [summary.object_id])
    assert to_coco(exported)["images"][3]["file_name"] == "clip/00003.jpg"
    root = write_refvos_pngs(exported, tmp_path, "clip")
    pngs = sorted(p.name for p in (root / "Annotations" / "clip" / str(summary.object_id)).iterdir())
    assert pngs == [f"{i:05d}.png" for i in range(T)]


def test_writes_are_batched_by_size(stub, client, monkeypatch):
    monkeypatch.setattr(task_model, "MAX_REQUEST_BYTES", 2000)
    annotate_task(client, 42, "the red dog", "dog", ScriptedModel(client, present=range(T)))
    writes = [size for what, size in stub.body_sizes if what.startswith("PATCH /api/jobs/")]
    total = sum(len(json.dumps(s)) for ss in objects_in(stub, 1).values() for s in ss)
    assert len(writes) >= total / 2000 and max(writes) <= 2000


def test_checks_come_before_the_model_and_nothing_is_written_on_failure(stub, client):
    before = copy.deepcopy([j.annotations for j in stub.tasks[42].jobs]), copy.deepcopy(stub.tasks[42].labels)
    model = ScriptedModel(client, present=range(T))
    with pytest.raises(LabelMissingError, match="label 'horse' is not in task 42.*cat, dog"):
        annotate_task(client, 42, "the red dog", "horse", model)
    with pytest.raises(MomentSegError, match="job 5 is not an annotation job"):
        annotate_task(client, 42, "the red dog", "dog", model, job_id=5)
    assert model.calls == []

    def broken(selection, prompt, anchors):
        raise RuntimeError("the model failed")

    with pytest.raises(RuntimeError):
        annotate_task(client, 42, "x", "dog", broken, create_labels=True, create_attributes=True)
    with pytest.raises(NothingFoundError, match="nothing written"):
        annotate_task(
            client, 42, "x", "dog", ScriptedModel(client, present=[]), create_labels=True, create_attributes=True
        )
    assert ([j.annotations for j in stub.tasks[42].jobs], stub.tasks[42].labels) == before


def test_a_failed_write_is_undone_and_says_what_is_in_the_task(stub, client):
    before = person_work(stub)
    jobs = stub.tasks[42].jobs
    stub.fail_next[f"PATCH /api/jobs/{jobs[2].id}/annotations"] = 500
    with pytest.raises(PartialWriteError, match="HTTP 500.*no annotation from this run is left.*moment"):
        annotate_task(client, 42, "the red dog", "dog", ScriptedModel(client, present=range(T)), create_labels=True)
    assert person_work(stub) == before
    assert all(o.get("source") != "auto" for j in jobs for kind in ("shapes", "tags") for o in j.annotations[kind])


# --- the correction loop ----------------------------------------------------------------------------------


def test_the_whole_loop_keeps_every_edit_of_a_person(stub, client, tmp_path):
    task = stub.tasks[42]
    jobs = task.jobs
    hand_made = person_work(stub)
    model = ScriptedModel(client, present=set(range(4, 24)) - {10})
    summary = annotate_task(client, 42, "the red dog", "dog", model, create_labels=True, create_attributes=True)
    group = summary.object_id
    dog = task.labels[0]["id"]
    shape_at = {(job_id, s["frame"]): s for job_id, ss in objects_in(stub, group).items() for s in ss}

    # a person in the web UI: redraws frame 6 (semi-auto), draws the object on frame 10 where the model missed
    # it (manual, its "object" attribute set), deletes frame 20's mask, marks frame 22 occluded
    corrected = square(10, 10, 12)
    edited = stub.ui_edit_mask(jobs[0].id, shape_at[(jobs[0].id, 6)]["id"], corrected)
    drawn = stub.ui_draw_mask(
        jobs[1].id,
        10,
        dog,
        square(20, 20),
        attributes=[{"spec_id": task.attribute_id("dog", "object"), "value": str(group)}],
    )
    stub.ui_delete(jobs[2].id, shape_at[(jobs[2].id, 20)]["id"])
    occluded = stub.ui_set(jobs[2].id, shape_at[(jobs[2].id, 22)]["id"], occluded=True)
    mcs = task.attribute_id("dog", "MCS")
    retagged = stub.ui_set(
        jobs[1].id,
        shape_at[(jobs[1].id, 15)]["id"],
        attributes=[
            a if a["spec_id"] != mcs else {"spec_id": mcs, "value": "keyframe"}
            for a in shape_at[(jobs[1].id, 15)]["attributes"]
        ],
    )

    # ... and, while the model runs, redraws frame 13 in job 2
    late = {}

    def person_edits_during_the_run():
        late["shape"] = stub.ui_edit_mask(jobs[1].id, shape_at[(jobs[1].id, 13)]["id"], square(5, 40))

    refine_model = ScriptedModel(client, present=range(2, 26), during_run=person_edits_during_the_run)
    refined = refine_object(client, 42, group, refine_model)

    (call,) = refine_model.calls
    assert call["prompt"] == "the red dog"
    assert [a["frame"] for a in call["anchors"]] == [6, 10]
    np.testing.assert_array_equal(decode_mask(call["anchors"][0]["mask"], image_width=W, image_height=H), corrected)
    assert call["requests"] <= 8  # by chunk
    assert refined.anchors == [6, 10] and refined.changed_during_run == [13]
    assert person_work(stub) == hand_made
    after = {(job_id, s["frame"]): s for job_id, ss in objects_in(stub, group).items() for s in ss}
    assert after[(jobs[0].id, 6)] == edited and after[(jobs[1].id, 10)] == drawn
    assert after[(jobs[2].id, 22)] == occluded and after[(jobs[1].id, 13)] == late["shape"]
    assert after[(jobs[1].id, 15)] == retagged
    assert (jobs[2].id, 20) not in after  # deleted by a person: stays deleted
    # frames 2, 3, 24, 25 were never written: refine adds them; the frame the model missed before is the person's
    for frame in (2, 3, 24, 25):
        assert all((job.id, frame) in after for job in jobs if job.holds(frame))
    for (job_id, frame), shape in after.items():
        if shape["source"] == "auto":
            assert shape["group"] == group and attribute(task, shape, "prompt") == "the red dog"
    # one shape of the object per frame in each job
    for job in jobs:
        frames = [s["frame"] for s in objects_in(stub, group)[job.id]]
        assert len(frames) == len(set(frames))
    # frame 6 in job 1's overlap copy? (6 is only in job 1); frame 9 lives in jobs 1 and 2, both the tool's
    assert after[(jobs[0].id, 9)]["source"] == after[(jobs[1].id, 9)]["source"] == "auto"

    # a second refine sees the same person's frames, and changes nothing a person made
    again = refine_object(client, 42, group, ScriptedModel(client, present=range(2, 26)))
    assert again.anchors == [6, 10, 13] and person_work(stub) == hand_made
    assert objects_in(stub, group)[jobs[0].id][0]["source"] in ("auto", "semi-auto")

    # export: one mask per frame, the person's where they edited; CVAT's importer gives the same masks back
    exported = task_export(client, 42, [group])
    (obj,) = exported.objects
    assert not obj.track and sorted(obj.shapes) == [f for f in range(2, 26) if f != 20]
    np.testing.assert_array_equal(decode_mask(obj.shapes[6].points, image_width=W, image_height=H), corrected)
    assert exported.moment == {"start_frame": 12, "end_frame": 21}
    coco = to_coco(exported)
    stub.export_coco(42)  # no mask track anywhere: CVAT's own export works
    fresh = stub.add_task(43, synthetic_frames(T), ["dog", "cat"], segment_size=10, overlap=2)
    stub.import_coco(43, coco)
    imported = {}
    for job in fresh.jobs:
        assert job.annotations["tracks"] == []
        for shape in job.annotations["shapes"]:
            assert shape["source"] == "file" and shape["score"] == 1.0
            imported[shape["frame"]] = decode_mask(shape["points"], image_width=W, image_height=H)
    assert sorted(imported) == sorted(obj.shapes)
    for frame, shape in obj.shapes.items():
        np.testing.assert_array_equal(imported[frame], decode_mask(shape.points, image_width=W, image_height=H))


def test_a_shape_deleted_just_before_refine_writes_stays_deleted(stub, client):
    summary = annotate_task(
        client, 42, "the red dog", "dog", ScriptedModel(client, present=range(4, 24)), create_attributes=True
    )
    job = stub.tasks[42].jobs[1]
    target = next(s for s in objects_in(stub, summary.object_id)[job.id] if s["frame"] == 12)
    reads = []

    def person_deletes_on_the_second_read(method, path, query):
        if method == "GET" and path.rstrip("/") == f"/api/jobs/{job.id}/annotations":
            reads.append(path)
            if len(reads) == 2:  # refine's re-read, after the model ran
                stub.ui_delete(job.id, target["id"])

    stub.hooks.append(person_deletes_on_the_second_read)
    refined = refine_object(client, 42, summary.object_id, ScriptedModel(client, present=range(2, 26)))
    assert len(reads) == 2 and refined.changed_during_run == [12]
    assert 12 not in [s["frame"] for s in objects_in(stub, summary.object_id)[job.id]]


def test_refine_when_the_model_finds_nothing_changes_nothing(stub, client):
    summary = annotate_task(client, 42, "the red dog", "dog", ScriptedModel(client, present=range(4, 20)))
    before = copy.deepcopy([j.annotations for j in stub.tasks[42].jobs])
    refined = refine_object(client, 42, summary.object_id, ScriptedModel(client, present=[]), prompt="the red dog")
    assert refined.written == {"created": 0, "updated": 0, "deleted": 0} and "unchanged" in refined.notes[0]
    assert [j.annotations for j in stub.tasks[42].jobs] == before
    assert not [m for m, _ in stub.requests[-3:] if m == "PATCH"]


def test_refine_refuses_what_it_cannot_do_safely(stub, client):
    polygons = annotate_task(
        client, 42, "the dog", "dog", ScriptedModel(client, present=range(5), output="polygon"), output="polygon"
    )
    with pytest.raises(MomentSegError, match="polygon track"):
        refine_object(client, 42, polygons.object_id, ScriptedModel(client, present=range(5)))
    with pytest.raises(MomentSegError, match="no object 999"):
        refine_object(client, 42, 999, ScriptedModel(client, present=range(5)))
    masks = annotate_task(client, 42, "the dog", "dog", ScriptedModel(client, present=range(5)))
    with pytest.raises(MomentSegError, match="prompt of object .* is unknown"):
        refine_object(client, 42, masks.object_id, ScriptedModel(client, present=range(5)))


def test_a_failed_refine_write_leaves_every_person_shape_and_says_how_to_resume(stub, client):
    summary = annotate_task(
        client, 42, "the red dog", "dog", ScriptedModel(client, present=range(4, 24)), create_attributes=True
    )
    jobs = stub.tasks[42].jobs
    edited = stub.ui_edit_mask(jobs[0].id, objects_in(stub, summary.object_id)[jobs[0].id][0]["id"], square(3, 3))
    hand_made = person_work(stub)
    stub.fail_next[f"PATCH /api/jobs/{jobs[2].id}/annotations"] = 500
    with pytest.raises(PartialWriteError, match="person is untouched: run refine again") as failure:
        refine_object(client, 42, summary.object_id, ScriptedModel(client, present=range(2, 26)))
    # what the message counts is what CVAT holds: the creates before the failure were taken back
    assert re.search(
        rf"0 of the tool's shapes were updated and 0 deleted .*the failed request \(create of \d+ "
        rf"objects in job {jobs[2].id}\) may or may not have been applied",
        str(failure.value),
    )
    assert person_work(stub) == hand_made
    assert edited in objects_in(stub, summary.object_id)[jobs[0].id]
    again = refine_object(client, 42, summary.object_id, ScriptedModel(client, present=range(2, 26)))
    assert again.anchors == [4]


def test_refine_with_the_real_pipeline_reading_frames_by_chunk(stub, client, tiny_model):
    summary = annotate_task(
        client, 42, "the red dog", "dog", ScriptedModel(client, present=range(8, 18)), create_attributes=True
    )
    jobs = stub.tasks[42].jobs
    target = next(s for s in objects_in(stub, summary.object_id)[jobs[1].id] if s["frame"] == 12)
    edited = stub.ui_edit_mask(jobs[1].id, target["id"], square(10, 30, 14))
    hand_made = person_work(stub)
    progress = []
    run = local_runner(
        client,
        MomentSegPipeline(tiny_model),
        OPTIONS,
        fps=10,
        progress=lambda stage, done, total: progress.append(stage),
    )
    refined = refine_object(client, 42, summary.object_id, run)
    assert refined.anchors == [12] and progress  # the pipeline reported its stages
    assert edited in stub.tasks[42].job(jobs[1].id).annotations["shapes"]
    assert person_work(stub) == hand_made
    assert not any("type=frame" in path for _, path in stub.requests)


# --- command line -----------------------------------------------------------------------------------------


@pytest.fixture
def function(stub, tiny_model, monkeypatch):
    """The real service of ``momentseg serve`` (the tiny model) on a loopback socket, reading the task's frames
    from the stand-in CVAT; it wants the shared task token."""
    from momentseg.serve import ServeSettings, create_app
    from momentseg.service import build_service_from_env

    from http_helpers import serve_in_thread

    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", "task-token")
    service = build_service_from_env(
        {"CVAT_HOST": stub.url, "CVAT_ACCESS_TOKEN": TOKEN, "MOMENTSEG_TASK_TOKEN": "task-token"},
        pipeline=MomentSegPipeline(tiny_model),
    )
    server, stop = serve_in_thread(create_app(service, ServeSettings()), ServeSettings())
    yield f"http://127.0.0.1:{server.port}/"
    stop()


# the acceptance check's non-default options, on the tiny model's pixel budgets
PARITY = [
    "--force-answer",
    "--keyframes",
    "4",
    "--threshold",
    "0.3",
    "--window",
    "3",
    "--tsg-pixels",
    str(TINY_PIXELS),
    "--image-pixels",
    str(TINY_PIXELS),
]


def object_state(stub, group):
    """What the tool wrote for an object, per job, without the ids the server gave."""
    return {
        job_id: sorted(
            ({k: v for k, v in shape.items() if k != "id"} for shape in shapes),
            key=lambda shape: (shape["frame"], shape["type"]),
        )
        for job_id, shapes in objects_in(stub, group).items()
    }


def annotate_then_refine(stub, where, monkeypatch, capsys):
    """annotate, a person's fix of frame 7, refine; the JSON summaries and what the task then holds."""
    monkeypatch.setenv("CVAT_HOST", stub.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", TOKEN)
    assert (
        main(
            [
                "cvat",
                "annotate",
                "--task",
                "42",
                "--prompt",
                "the red dog",
                "--label",
                "dog",
                "--json",
                "--create-labels",
                "--create-attributes",
                *where,
                *PARITY,
            ]
        )
        == 0
    )
    annotated = json.loads(capsys.readouterr().out)
    after_annotate = object_state(stub, annotated["object_id"])
    jobs = stub.tasks[42].jobs
    shape = next(s for s in objects_in(stub, annotated["object_id"])[jobs[0].id] if s["frame"] == 7)
    stub.ui_edit_mask(jobs[0].id, shape["id"], square(4, 4))
    assert (
        main(["cvat", "refine", "--task", "42", "--object", str(annotated["object_id"]), "--json", *where, *PARITY])
        == 0
    )
    refined = json.loads(capsys.readouterr().out)
    for summary in (annotated, refined):
        summary.pop("seconds"), summary.pop("link")  # the time taken; the server's address
    return annotated, after_annotate, refined, object_state(stub, annotated["object_id"])


def test_the_function_writes_what_an_in_process_run_writes(stub, function, tiny_checkpoint, monkeypatch, capsys):
    through_function = annotate_then_refine(stub, ["--function", function], monkeypatch, capsys)
    local = make_stub()
    try:
        in_process = annotate_then_refine(
            local, ["--checkpoint", str(tiny_checkpoint), "--device", "cpu"], monkeypatch, capsys
        )
        assert person_work(local) == person_work(stub)
    finally:
        local.close()
    annotated, after_annotate, refined, after_refine = through_function
    assert annotated["written"]["mask_shapes"] >= T and annotated["moment"] and refined["anchors"] == [7]
    # the same masks on the same frames, the same keyframes, c* and moment; the same refine after a person's fix
    assert through_function == in_process


def test_cli_function_errors_are_one_line(stub, function, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_HOST", stub.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", TOKEN)
    assert main(["cvat", "annotate", "--task", "42", "--prompt", "x", "--label", "horse", "--function", function]) == 2
    assert "label 'horse' is not in task 42" in capsys.readouterr().err
    # the task is checked before a model is loaded
    assert (
        main(
            [
                "cvat",
                "annotate",
                "--task",
                "42",
                "--prompt",
                "x",
                "--label",
                "horse",
                "--checkpoint",
                str(tmp_path / "no-such-checkpoint"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "label 'horse' is not in task 42" in capsys.readouterr().err
    assert main(["cvat", "annotate", "--task", "42", "--prompt", "x", "--label", "dog"]) == 2
    assert (
        "give --function URL (the deployed function or momentseg serve) or --checkpoint PATH" in capsys.readouterr().err
    )
    monkeypatch.setenv("MOMENTSEG_TASK_TOKEN", "wrong")
    assert main(["cvat", "annotate", "--task", "42", "--prompt", "x", "--label", "dog", "--function", function]) == 2
    assert "answered 401" in capsys.readouterr().err
    assert all(
        o["id"] in stub.hand_made_ids
        for job in stub.tasks[42].jobs  # nothing written
        for kind in ("tags", "shapes", "tracks")
        for o in job.annotations[kind]
    )


def test_cli_export_after_annotate(stub, monkeypatch, client, tmp_path):
    summary = annotate_task(client, 42, "the red dog", "dog", ScriptedModel(client, present=range(6, 20)))
    monkeypatch.setenv("CVAT_HOST", stub.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", TOKEN)
    assert (
        main(
            [
                "export",
                "--task",
                "42",
                "--object",
                str(summary.object_id),
                "--format",
                "refvos-png",
                "--out",
                str(tmp_path / "refvos"),
            ]
        )
        == 0
    )
    folder = tmp_path / "refvos" / "Annotations" / "task_42" / str(summary.object_id)
    assert sorted(p.name for p in folder.iterdir()) == [f"{i:05d}.png" for i in range(T)]


def test_a_function_request_names_the_frames_the_workflow_chose():
    from momentseg.cvat.runners import task_request

    assert task_request({"id": 4, "numbers": list(range(2, 21, 2))}) == {
        "id": 4,
        "frame_start": 2,
        "frame_stop": 20,
        "frame_step": 2,
    }
    assert task_request({"id": 4, "numbers": [7]}) == {"id": 4, "frame_start": 7, "frame_stop": 7, "frame_step": 1}
    # a refine's frames: a range with a person's anchor beyond it, and a deleted frame
    assert task_request({"id": 4, "numbers": [0, 1, 2, 4, 5, 9]}) == {"id": 4, "frames": "0-2,4-5,9-9"}
