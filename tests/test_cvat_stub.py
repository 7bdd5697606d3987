"""The stand-in CVAT follows each fact tried on a real CVAT v2.73.0 server (docs/cvat.md, "CVAT facts the tool
relies on"), through cvat-sdk as any client sees it: 60 frames, segment_size 20, overlap 0, chunk_size 5 → 3 jobs."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.api_client.exceptions import ApiException
from cvat_sdk.masks import decode_mask, encode_mask

from conftest import synthetic_frames
from cvat_stub import TOKEN, CvatStub, ExportError
from momentseg.cvat.connection import connect


@pytest.fixture
def stub():
    server = CvatStub()
    server.add_task(1, synthetic_frames(60), ["object", "moment"], segment_size=20, chunk_size=5)
    yield server
    server.close()


@pytest.fixture
def api(stub):
    return connect(stub.url, access_token=TOKEN).api_client


def disc(frame):
    yy, xx = np.mgrid[:48, :64]
    return (yy - 24) ** 2 + (xx - 5 - frame) ** 2 < 49


def mask_shape(frame, label_id, **extra):
    return models.LabeledShapeRequest(
        type="mask",
        frame=frame,
        label_id=label_id,
        source="auto",
        points=[float(p) for p in encode_mask(disc(frame))],
        **extra,
    )


def jobs_of(api):
    jobs, _ = api.jobs_api.list(task_id=1)
    return sorted(jobs.results, key=lambda j: j.start_frame)


def test_jobs_by_segment_size_and_overlap(stub):
    task = stub.add_task(2, synthetic_frames(30), ["object"], segment_size=10, overlap=2)
    assert [(j.start, j.stop) for j in task.jobs] == [(0, 9), (8, 17), (16, 25), (24, 29)]


def test_a_task_level_mask_track_is_a_500_and_stores_nothing(stub, api):
    label = stub.tasks[1].labels[0]["id"]
    track = models.LabeledTrackRequest(
        frame=0,
        label_id=label,
        source="auto",
        shapes=[
            models.TrackedShapeRequest(type="mask", frame=f, points=[float(p) for p in encode_mask(disc(f))])
            for f in range(60)
        ],
    )
    with pytest.raises(ApiException) as error:
        api.tasks_api.partial_update_annotations(
            "create", 1, patched_labeled_data_request=models.PatchedLabeledDataRequest(tracks=[track])
        )
    assert error.value.status == 500 and "html" in error.value.headers["Content-Type"]
    assert all(not any(j.annotations[k] for k in ("shapes", "tracks")) for j in stub.tasks[1].jobs)
    # per job it is stored, and then CVAT's COCO export fails
    job = jobs_of(api)[1]
    inside = models.LabeledTrackRequest(
        frame=20,
        label_id=label,
        source="auto",
        shapes=[
            models.TrackedShapeRequest(type="mask", frame=f, points=[float(p) for p in encode_mask(disc(f))])
            for f in range(20, 40)
        ],
    )
    api.jobs_api.partial_update_annotations(
        "create", job.id, patched_labeled_data_request=models.PatchedLabeledDataRequest(tracks=[inside])
    )
    with pytest.raises(ExportError, match="NotImplementedError"):
        stub.export_coco(1)


def test_a_task_level_polygon_track_gets_keyframes_at_job_boundaries(stub, api):
    label = stub.tasks[1].labels[0]["id"]
    square = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    shapes = [models.TrackedShapeRequest(type="polygon", frame=f, points=square) for f in range(0, 60, 10)]
    shapes.append(models.TrackedShapeRequest(type="polygon", frame=59, points=square, outside=True))
    api.tasks_api.partial_update_annotations(
        "create",
        1,
        patched_labeled_data_request=models.PatchedLabeledDataRequest(
            tracks=[models.LabeledTrackRequest(frame=0, label_id=label, shapes=shapes)]
        ),
    )
    keyframes = []
    for job in jobs_of(api):
        data, _ = api.jobs_api.retrieve_annotations(job.id)
        (track,) = data.tracks
        keyframes.append([s.frame for s in track.shapes])
    assert keyframes == [[0, 10, 19], [20, 30, 39], [40, 50, 59]]
    coco = stub.export_coco(1)
    assert sorted(a["image_id"] - 1 for a in coco["annotations"]) == list(range(59))
    assert set(coco["annotations"][0]["attributes"]) == {"occluded", "track_id", "keyframe"}


def test_shapes_and_tags_keep_source_tags_have_no_score(stub, api):
    label, moment = (l["id"] for l in stub.tasks[1].labels)
    data = models.PatchedLabeledDataRequest(
        shapes=[mask_shape(f, label, score=0.87) for f in range(60)],
        tags=[models.LabeledImageRequest(frame=f, label_id=moment, source="auto") for f in range(20, 36)],
    )
    api.tasks_api.partial_update_annotations("create", 1, patched_labeled_data_request=data)
    shapes = [s for j in stub.tasks[1].jobs for s in j.annotations["shapes"]]
    tags = [t for j in stub.tasks[1].jobs for t in j.annotations["tags"]]
    assert len(shapes) == 60 and {(s["source"], s["score"]) for s in shapes} == {("auto", 0.87)}
    assert len(tags) == 16 and all(t["source"] == "auto" and "score" not in t for t in tags)
    assert len({s["id"] for s in shapes} | {t["id"] for t in tags}) == 76
    # an update replaces the whole shape: the source as sent, an omitted score is 1.0
    job = jobs_of(api)[0]
    stored = next(s for s in stub.tasks[1].jobs[0].annotations["shapes"] if s["frame"] == 3)
    update = models.PatchedLabeledDataRequest(
        shapes=[
            models.LabeledShapeRequest(
                id=stored["id"],
                type="mask",
                frame=3,
                label_id=label,
                source="semi-auto",
                points=[float(p) for p in encode_mask(disc(9))],
            )
        ]
    )
    api.jobs_api.partial_update_annotations("update", job.id, patched_labeled_data_request=update)
    after = next(s for s in stub.tasks[1].jobs[0].annotations["shapes"] if s["id"] == stored["id"])
    assert after["source"] == "semi-auto" and after["score"] == 1.0


def test_intervals_only_inside_one_job(stub, api):
    moment = stub.tasks[1].labels[1]["id"]
    interval = models.LabeledIntervalRequest(label_id=moment, start=22, stop=30, score=0.8, source="auto")
    with pytest.raises(ApiException) as error:
        api.tasks_api.partial_update_annotations(
            "create", 1, patched_labeled_data_request=models.PatchedLabeledDataRequest(intervals=[interval])
        )
    assert error.value.status == 400 and "cannot be sliced" in error.value.body
    api.jobs_api.partial_update_annotations(
        "create",
        jobs_of(api)[1].id,
        patched_labeled_data_request=models.PatchedLabeledDataRequest(intervals=[interval]),
    )
    assert stub.tasks[1].jobs[1].annotations["intervals"][0]["stop"] == 30
    one_job = stub.add_task(3, synthetic_frames(10), ["moment"])
    api.tasks_api.partial_update_annotations(
        "create",
        3,
        patched_labeled_data_request=models.PatchedLabeledDataRequest(
            intervals=[models.LabeledIntervalRequest(label_id=one_job.labels[0]["id"], start=2, stop=10)]
        ),
    )
    assert one_job.jobs[0].annotations["intervals"][0]["start"] == 2


def test_coco_export_and_reimport_give_the_same_masks(stub, api):
    label = stub.tasks[1].labels[0]["id"]
    api.tasks_api.partial_update_annotations(
        "create",
        1,
        patched_labeled_data_request=models.PatchedLabeledDataRequest(
            shapes=[mask_shape(f, label, score=0.87) for f in range(60)]
        ),
    )
    coco = stub.export_coco(1)
    assert len(coco["annotations"]) == 60 and {a["iscrowd"] for a in coco["annotations"]} == {1}
    fresh = stub.add_task(4, synthetic_frames(60), ["object", "moment"], segment_size=20)
    stub.import_coco(4, coco)
    shapes = [s for j in fresh.jobs for s in j.annotations["shapes"]]
    assert len(shapes) == 60 and {(s["source"], s["score"]) for s in shapes} == {("file", 1.0)}
    assert not any(j.annotations["tracks"] or j.annotations["tags"] for j in fresh.jobs)
    frame10 = next(s for s in shapes if s["frame"] == 10)
    np.testing.assert_array_equal(decode_mask(frame10["points"], image_width=64, image_height=48), disc(10))


def test_coco_import_makes_a_track_only_with_track_id_and_keyframe(stub):
    polygon = [[10.0, 10.0, 30.0, 10.0, 30.0, 30.0]]
    images = [{"id": i + 1, "file_name": f"frame_{i:06d}.jpg", "width": 64, "height": 48} for i in range(60)]
    annotations = [
        {
            "id": f + 1,
            "image_id": f + 1,
            "category_id": 1,
            "segmentation": polygon,
            "iscrowd": 0,
            "attributes": {"track_id": 0, "keyframe": f in (0, 5), "occluded": False},
        }
        for f in range(10)
    ]
    annotations.append(
        {
            "id": 99,
            "image_id": 31,
            "category_id": 1,
            "segmentation": polygon,
            "iscrowd": 0,
            "attributes": {"occluded": False},
        }
    )
    stub.import_coco(1, {"images": images, "categories": [{"id": 1, "name": "object"}], "annotations": annotations})
    (track,) = stub.tasks[1].jobs[0].annotations["tracks"]
    assert [(s["frame"], s["outside"]) for s in track["shapes"]] == [(0, False), (5, False), (10, True)]
    (shape,) = stub.tasks[1].jobs[1].annotations["shapes"]
    assert shape["frame"] == 30 and shape["type"] == "polygon"


def test_chunks_are_videos_or_zips(stub, api):
    meta, _ = api.tasks_api.retrieve_data_meta(1)
    assert meta.chunk_size == 5
    _, video = api.tasks_api.retrieve_data(1, type="chunk", number=2, quality="original", _parse_response=False)
    assert video.headers["Content-Type"] == "video/mp4" and video.data[4:8] == b"ftyp"
    stub.add_task(5, synthetic_frames(6), ["object"], video=False, chunk_size=4)
    _, archive = api.tasks_api.retrieve_data(5, type="chunk", number=1, quality="original", _parse_response=False)
    assert archive.headers["Content-Type"] == "application/zip" and archive.data[:2] == b"PK"


def test_bodies_are_checked_with_cvat_sdk_models(stub, api):
    job = jobs_of(api)[0]
    _, response = api.jobs_api.partial_update_annotations(
        "create", job.id, patched_labeled_data_request=models.PatchedLabeledDataRequest(), _parse_response=False
    )
    assert response.status == 200
    request = urllib.request.Request(
        f"{stub.url}/api/jobs/{job.id}/annotations?action=create",
        method="PATCH",
        data=json.dumps({"shapes": [{"type": "mask", "frame": "three"}]}).encode(),
        headers={"Authorization": f"Token {TOKEN}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 400
    assert stub.tasks[1].jobs[0].annotations["shapes"] == []
