"""CVAT workflows against the stand-in CVAT server (tests/cvat_stub.py)."""

import copy
import json
import threading

import numpy as np
import pytest
from cvat_sdk.masks import decode_mask, encode_mask

from momentseg.cli import main
from momentseg.cvat.connection import (
    CvatNotAuthorisedError,
    CvatUnreachableError,
    TaskNotFoundError,
    connect,
)
from momentseg.cvat.runners import function_runner, local_runner
from momentseg.cvat.workflows import (
    FINGERPRINT_ATTRIBUTE,
    LabelMissingError,
    annotate_task,
    refine_track,
    result_from_task,
)
from momentseg.errors import MomentSegError
from momentseg.pipeline import MomentSegPipeline, SegmentOptions

from conftest import TINY_PIXELS, synthetic_frames
from cvat_stub import TOKEN, CvatStub

OPTIONS = SegmentOptions(keyframes=3, tsg_pixels=TINY_PIXELS, image_pixels=TINY_PIXELS, label="dog")
MANUAL_MASK = np.zeros((48, 64), bool)
MANUAL_MASK[5:15, 5:15] = True


@pytest.fixture(autouse=True)
def records_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


@pytest.fixture
def stub():
    server = CvatStub()
    task = server.add_task(42, synthetic_frames(10), ["dog", "cat"])
    cat = task.labels[1]["id"]
    # a person's work that must survive everything the tool does
    server.write_annotations(task, "create", {
        "shapes": [{"type": "mask", "frame": 2, "label_id": cat, "points": encode_mask(MANUAL_MASK),
                    "source": "manual", "attributes": [], "group": 0, "occluded": False, "z_order": 0,
                    "rotation": 0.0, "outside": False}],
        "tracks": [{"frame": 0, "label_id": cat, "source": "manual", "group": 0, "attributes": [], "shapes": [
            {"type": "polygon", "frame": 0, "points": [1, 1, 20, 1, 20, 20], "outside": False, "attributes": []},
            {"type": "polygon", "frame": 5, "points": [1, 1, 20, 1, 20, 20], "outside": True, "attributes": []}]}],
        "tags": [{"frame": 1, "label_id": cat, "source": "manual", "group": 0, "attributes": []}],
    })
    yield server
    server.close()


@pytest.fixture
def client(stub):
    return connect(stub.url, access_token=TOKEN)


@pytest.fixture
def run(client, tiny_model):
    return local_runner(client, MomentSegPipeline(tiny_model), OPTIONS, fps=10)


def manual_objects(task):
    ann = task.annotations
    return (copy.deepcopy(ann["shapes"]), copy.deepcopy([t for t in ann["tracks"] if t["source"] == "manual"]),
            copy.deepcopy(ann["tags"]))


def test_annotate_appends_one_auto_track_and_the_moment_and_keeps_manual_work(stub, client, run):
    before = manual_objects(stub.tasks[42])
    summary = annotate_task(client, 42, "the red dog", "dog", run, create_labels=True)
    task = stub.tasks[42]
    assert manual_objects(task) == before
    auto = [t for t in task.annotations["tracks"] if t["source"] == "auto"]
    assert len(auto) == 1 and auto[0]["id"] == summary.track_id
    dog = task.labels[0]["id"]
    assert auto[0]["label_id"] == dog
    assert [s["frame"] for s in auto[0]["shapes"]] == list(range(10))
    assert all(s["type"] == "mask" for s in auto[0]["shapes"])
    (interval,) = task.annotations["intervals"]
    moment_label = next(l for l in task.labels if l["name"] == "moment")
    assert interval["label_id"] == moment_label["id"] and interval["source"] == "auto"
    assert interval["start"] == summary.moment["start_frame"] and interval["stop"] == summary.moment["end_frame"] + 1
    assert not any(method == "PUT" or "DELETE" in method for method, _ in stub.requests)
    assert any("record" in note or "attribute" in note for note in summary.notes)


def test_annotate_with_attributes_records_fingerprints_in_the_task(stub, client, run):
    summary = annotate_task(client, 42, "the red dog", "dog", run, create_attributes=True)
    label = stub.tasks[42].labels[0]
    names = {a["id"]: a["name"] for a in label["attributes"]}
    assert set(names.values()) == {"prompt", "score", "keyframe", FINGERPRINT_ATTRIBUTE}
    track = next(t for t in stub.tasks[42].annotations["tracks"] if t["id"] == summary.track_id)
    assert [names[a["spec_id"]] for a in track["attributes"]] == ["prompt"]
    assert track["attributes"][0]["value"] == "the red dog"
    for shape in track["shapes"]:
        assert {names[a["spec_id"]] for a in shape["attributes"]} == {"score", "keyframe", FINGERPRINT_ATTRIBUTE}
    keyframes = [s["frame"] for s in track["shapes"]
                 if any(names[a["spec_id"]] == "keyframe" and a["value"] == "true" for a in s["attributes"])]
    assert keyframes == summary.keyframes
    assert any("moment" in note for note in summary.notes)  # no moment label, no --create-labels


def test_missing_label_writes_nothing(stub, client, run):
    before = copy.deepcopy(stub.tasks[42].annotations)
    with pytest.raises(LabelMissingError, match="label 'horse' is not in task 42.*cat, dog"):
        annotate_task(client, 42, "the red dog", "horse", run)
    assert stub.tasks[42].annotations == before
    assert not any(method == "PATCH" for method, _ in stub.requests)


def hand_correct(stub, track_id, frame, mask):
    """What CVAT's UI does when a person redraws a track's mask on a frame: new points, same shape."""
    track = next(t for t in stub.tasks[42].annotations["tracks"] if t["id"] == track_id)
    shape = next(s for s in track["shapes"] if s["frame"] == frame)
    shape["points"] = [float(p) for p in encode_mask(mask)]
    shape["outside"] = False
    return copy.deepcopy(shape)


@pytest.mark.parametrize("create_attributes", [True, False])
def test_refine_keeps_the_hand_shape_and_replaces_only_automatic_ones(stub, client, run, create_attributes):
    summary = annotate_task(client, 42, "the red dog", "dog", run, create_attributes=create_attributes)
    hand = np.zeros((48, 64), bool)
    hand[20:40, 30:60] = True
    corrected = hand_correct(stub, summary.track_id, 6, hand)
    before_manual = manual_objects(stub.tasks[42])
    intervals = copy.deepcopy(stub.tasks[42].annotations["intervals"])

    refined = refine_track(client, 42, summary.track_id, run)

    assert refined.human_frames == [6] and refined.replaced == 9
    task = stub.tasks[42]
    track = next(t for t in task.annotations["tracks"] if t["id"] == summary.track_id)
    assert next(s for s in track["shapes"] if s["frame"] == 6) == corrected
    assert [s["frame"] for s in track["shapes"]] == list(range(10))
    assert manual_objects(task) == before_manual and task.annotations["intervals"] == intervals
    # a second refine still knows frame 6 is the person's and every other frame the tool's
    assert refine_track(client, 42, summary.track_id, run).human_frames == [6]


def test_refine_uses_the_correction_as_an_anchor(stub, client, tiny_model):
    calls = []
    real = local_runner(client, MomentSegPipeline(tiny_model), OPTIONS, fps=10)

    def spy(selection, prompt, anchors):
        calls.append((selection, prompt, anchors))
        return real(selection, prompt, anchors)

    summary = annotate_task(client, 42, "the red dog", "dog", spy, create_attributes=True)
    hand = np.zeros((48, 64), bool)
    hand[1:9, 50:62] = True
    hand_correct(stub, summary.track_id, 3, hand)
    refine_track(client, 42, summary.track_id, spy)
    selection, prompt, anchors = calls[-1]
    assert prompt == "the red dog" and selection["numbers"] == list(range(10))
    assert [a["frame"] for a in anchors] == [3]
    np.testing.assert_array_equal(decode_mask(anchors[0]["mask"], image_width=64, image_height=48), hand)


def test_a_failed_refine_leaves_the_task_as_it_was(stub, client, run):
    summary = annotate_task(client, 42, "the red dog", "dog", run, create_attributes=True)
    hand_correct(stub, summary.track_id, 6, MANUAL_MASK)
    before = copy.deepcopy(stub.tasks[42].annotations)
    stub.fail_next_annotation_write = True
    with pytest.raises(MomentSegError, match="HTTP 500"):
        refine_track(client, 42, summary.track_id, run)
    assert stub.tasks[42].annotations == before


def test_refine_without_a_record_refuses(stub, client, run, tmp_path, monkeypatch):
    summary = annotate_task(client, 42, "the red dog", "dog", run)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(MomentSegError, match="no record"):
        refine_track(client, 42, summary.track_id, run)
    with pytest.raises(MomentSegError, match="no track 9999"):
        refine_track(client, 42, 9999, run)


def test_connection_errors_are_named(stub):
    with pytest.raises(CvatNotAuthorisedError):
        result_from_task(connect(stub.url, access_token="wrong"), 42)
    client = connect(stub.url, access_token=TOKEN)
    with pytest.raises(TaskNotFoundError, match="task 7"):
        result_from_task(client, 7)
    with pytest.raises(CvatUnreachableError):
        connect("http://127.0.0.1:9", access_token=TOKEN)
    with pytest.raises(MomentSegError, match="CVAT_ACCESS_TOKEN"):
        connect(stub.url)
    assert connect(stub.url, user="annotator", password="secret").tasks.retrieve(42).id == 42


def test_annotate_through_the_function_reading_frames_from_cvat(stub, client, tiny_checkpoint):
    from momentseg.serve import make_server
    from momentseg.service import build_service_from_env

    service = build_service_from_env({"MOMENTSEG_CHECKPOINT": str(tiny_checkpoint), "MOMENTSEG_DEVICE": "cpu",
                                      "CVAT_HOST": stub.url, "CVAT_ACCESS_TOKEN": TOKEN})
    server = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        options = SegmentOptions(keyframes=3, label="dog")
        summary = annotate_task(client, 42, "the red dog", "dog", function_runner(url, options),
                                frames={"frame_start": 2, "frame_stop": 7})
        track = next(t for t in stub.tasks[42].annotations["tracks"] if t["id"] == summary.track_id)
        assert [s["frame"] for s in track["shapes"]] == list(range(2, 8))
        with pytest.raises(MomentSegError, match="404: task_not_found"):
            function_runner(url, options)({"id": 77}, "dog", [])
    finally:
        server.shutdown()
        server.server_close()


def test_cli_annotate_refine_and_export(stub, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CVAT_HOST", stub.url)
    monkeypatch.setenv("CVAT_ACCESS_TOKEN", TOKEN)
    common = ["--local", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--keyframes", "3",
              "--tsg-pixels", str(TINY_PIXELS), "--image-pixels", str(TINY_PIXELS), "--label", "dog"]
    assert main(["cvat", "annotate", "--task", "42", "--prompt", "the red dog", "--create-labels",
                 "--create-attributes", *common]) == 0
    out = capsys.readouterr().out
    assert "track" in out and "interval on 'moment'" in out and f"{stub.url}/tasks/42" in out
    track_id = next(t["id"] for t in stub.tasks[42].annotations["tracks"] if t["source"] == "auto")
    assert main(["cvat", "refine", "--task", "42", "--track", str(track_id), *common]) == 0
    assert "0 hand-made shapes kept" in capsys.readouterr().out
    assert main(["export", "--task", "42", "--track", str(track_id), "--format", "coco",
                 "--out", str(tmp_path / "coco.json")]) == 0
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert len(coco["images"]) == 10 and coco["images"][0]["file_name"] == "frame_000000.png"
    assert main(["cvat", "annotate", "--task", "42", "--prompt", "x", "--label", "horse", *common[:-2]]) == 2
    assert "label 'horse' is not in task 42" in capsys.readouterr().err
