import json
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from momentseg.errors import InvalidInputError
from momentseg.export import ExportSet, export, safe_name, to_coco, write_refvos_pngs
from momentseg.masks import to_cvat_rle
from momentseg.result import Moment, SegmentResult, Shape, Track

H, W, T = 30, 40, 6


def disc(frame):
    yy, xx = np.mgrid[:H, :W]
    return (yy - 15) ** 2 + (xx - 5 - 5 * frame) ** 2 < 36


def make_result(frame_names=None):
    shapes = []
    for frame in range(T):
        if frame == 4:  # the object leaves for a frame
            shapes.append(Shape(frame, "mask", to_cvat_rle(disc(3)), False, True, 0.0))
        else:
            shapes.append(Shape(frame, "mask", to_cvat_rle(disc(frame)), frame in (0, 3), False, 0.9))
    return SegmentResult(
        prompt="the red ball",
        num_frames=T,
        width=W,
        height=H,
        fps=10.0,
        moment=Moment(1, 3, 0.1, 0.4, 0.8),
        moment_reason=None,
        center_frame=2,
        keyframes=[0, 3],
        similarity=[0.1] * T,
        tracks=[Track("ball", shapes)],
        model={},
        options={},
        timings={},
        frame_names=frame_names,
    )


def expected_mask(frame):
    return np.zeros((H, W), bool) if frame == 4 else disc(frame)


def test_coco_loads_in_pycocotools_and_decodes_to_the_masks(tmp_path):
    path = export(make_result(), "coco", tmp_path / "coco.json")
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == T and coco.loadCats(1)[0]["name"] == "ball"
    annotations = coco.loadAnns(coco.getAnnIds())
    assert sorted(a["image_id"] - 1 for a in annotations) == [0, 1, 2, 3, 5]
    for annotation in annotations:
        np.testing.assert_array_equal(
            coco.annToMask(annotation).astype(bool), expected_mask(annotation["image_id"] - 1)
        )


def test_coco_masks_are_per_frame_shapes_for_cvat():
    data = to_coco(ExportSet.from_result(make_result()))
    images = {image["id"]: image for image in data["images"]}
    assert images[1]["file_name"] == "frame_000000.jpg" and images[1]["width"] == W  # a video: CVAT's frame names
    for annotation in data["annotations"]:
        # no track_id: CVAT would make a mask track of it, which its UI cannot open
        assert annotation["iscrowd"] == 1 and isinstance(annotation["segmentation"]["counts"], str)
        assert annotation["attributes"] == {"occluded": False}
        assert annotation["bbox"] == list(
            coco_mask.toBbox(dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode()))
        )
    assert data["info"]["prompt"] == "the red ball" and data["info"]["moment"] == {"start_frame": 1, "end_frame": 3}


def polygon_result():
    result = make_result()
    square = [10.0, 10.0, 20.0, 10.0, 20.0, 20.0, 10.0, 20.0]
    result.tracks = [Track("ball", [Shape(f, "polygon", square, f in (0, 3), f == 4, 0.9) for f in range(T)])]
    return result


def test_coco_polygons_are_a_track_for_cvat():
    data = to_coco(ExportSet.from_result(polygon_result()))
    assert [a["image_id"] - 1 for a in data["annotations"]] == [0, 1, 2, 3, 5]
    for annotation in data["annotations"]:
        assert annotation["iscrowd"] == 0 and len(annotation["segmentation"][0]) == 8
        assert annotation["attributes"]["track_id"] == 0
    assert [a["attributes"]["keyframe"] for a in data["annotations"]] == [True, False, False, True, False]


def test_youtube_vis_names_the_source_frames(tmp_path):
    names = [f"img_{i:03d}.jpg" for i in range(T)]
    path = export(make_result(names), "youtube-vis", tmp_path / "ytvis.json", video_name="clip 1")
    data = json.loads(path.read_text())
    (video,) = data["videos"]
    assert video["name"] == "clip_1" and video["length"] == T
    assert video["file_names"] == [f"clip_1/img_{i:03d}.jpg" for i in range(T)]
    assert (
        json.loads(export(make_result(), "youtube-vis", tmp_path / "v.json").read_text())["videos"][0]["file_names"][2]
        == "video/00002.jpg"
    )
    (annotation,) = data["annotations"]
    assert annotation["segmentations"][4] is None and annotation["bboxes"][4] is None and annotation["areas"][4] is None
    # read as the YouTube-VIS API reads it: video_id / category_id index, compressed RLE per frame
    assert annotation["video_id"] == video["id"] and annotation["category_id"] == data["categories"][0]["id"]
    for frame, rle in enumerate(annotation["segmentations"]):
        decoded = (
            np.zeros((H, W), bool)
            if rle is None
            else coco_mask.decode(dict(rle, counts=rle["counts"].encode())).astype(bool)
        )
        np.testing.assert_array_equal(decoded, expected_mask(frame))
        if rle is not None:
            assert annotation["areas"][frame] == expected_mask(frame).sum()


def test_refvos_png_tree_is_named_by_the_source_frames(tmp_path):
    root = write_refvos_pngs(
        ExportSet.from_result(make_result([f"{n}.jpg" for n in "abcdef"])), tmp_path, "clip", ["3"]
    )
    folder = root / "Annotations" / "clip" / "3"
    assert sorted(p.name for p in folder.iterdir()) == [f"{n}.png" for n in "abcdef"]
    meta = json.loads((root / "meta_expressions.json").read_text())
    assert meta["videos"]["clip"]["expressions"]["3"]["exp"] == "the red ball"
    # what the MeViS/DAVIS scorers do: for each frame the benchmark lists, read <frame>.png, non-zero = object
    for frame, name in enumerate(meta["videos"]["clip"]["frames"]):
        image = np.array(Image.open(folder / f"{name}.png"))
        assert image.dtype == np.uint8 and set(np.unique(image)) <= {0, 255}
        np.testing.assert_array_equal(image > 0, expected_mask(frame))
    video = write_refvos_pngs(ExportSet.from_result(make_result()), tmp_path / "v", "clip")
    assert sorted(p.name for p in (video / "Annotations" / "clip" / "0").iterdir()) == [
        f"{i:05d}.png" for i in range(T)
    ]


@pytest.mark.parametrize("hostile", ["../x", "../../etc", "/abs/path", "..", "a/../../b", ""])
def test_hostile_names_stay_inside_the_output_folder(tmp_path, hostile):
    out = tmp_path / "out"
    write_refvos_pngs(ExportSet.from_result(make_result()), out, hostile, [hostile])
    written = [p.resolve() for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.is_relative_to(out.resolve()) for p in written)
    assert "/" not in safe_name(hostile) and safe_name(hostile) not in ("", ".", "..")


def test_export_from_a_result_json_via_the_cli(tmp_path):
    from momentseg.cli import main

    source = tmp_path / "run" / "result.json"
    source.parent.mkdir()
    source.write_text(json.dumps(make_result().to_dict()))
    assert main(["export", "--from", str(source), "--format", "refvos-png", "--out", str(tmp_path / "pngs")]) == 0
    assert len(list((tmp_path / "pngs" / "Annotations" / "run" / "0").glob("*.png"))) == T
    (tmp_path / "bad.json").write_text("{}")
    assert main(["export", "--from", str(tmp_path / "bad.json"), "--format", "coco", "--out", str(tmp_path / "x")]) == 2


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "a result is a JSON object, got a JSON list"),
        ('"result"', "got a JSON string"),
        ("{nope", "is not a momentseg result.json: Expecting property name"),
        ("{}", "the result lacks"),
        (None, "cannot read .*: No such file or directory$"),
    ],
)
def test_export_from_anything_but_a_result_is_one_clear_line(tmp_path, capsys, text, message):
    from momentseg.cli import main

    source = tmp_path / "result.json"
    if text is not None:
        source.write_text(text)
    assert main(["export", "--from", str(source), "--format", "coco", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert re.search(message, err) and len(err.splitlines()) == 1 and "Errno" not in err, err


def _edited(**changes):
    data = make_result().to_dict()
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[int(last) if isinstance(target, list) else last] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (_edited(num_frames="many"), "'num_frames' must be a whole number"),
        (_edited(num_frames=10**12), "'num_frames' must be a whole number from 1 to"),
        (_edited(width=100_000, height=100_000), "at most 67108864 pixels"),
        (_edited(tracks__0__shapes__0__frame=10**6), r"tracks\[0\]\.shapes\[0\]\.frame' must be a frame"),
        (_edited(tracks__0__shapes__0__type="box"), "'mask' or 'polygon'"),
        (_edited(tracks__0__shapes__0__points="abc"), "points' must be a list of numbers"),
        (_edited(tracks__0="x"), r"tracks\[0\]' must be an object"),
        (
            _edited(moment={"start_frame": 5, "end_frame": 2, "start_sec": 0, "end_sec": 1, "score": 1}),
            "start_frame ≤ end_frame",
        ),
        (_edited(keyframes=[-1]), "'keyframes' must be a list of frames"),
    ],
)
def test_a_result_with_a_wrong_field_is_refused_naming_it(data, message):
    with pytest.raises(InvalidInputError, match=message):
        SegmentResult.from_dict(data)
