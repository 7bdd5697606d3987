"""Dataset readers on tiny datasets written in the official layouts, and the synthetic generator."""

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from momentseg.data import DataError, ReferringEntry, load_entries, parse_data_spec
from momentseg.data.synthetic import COLOURS, SyntheticOptions, generate
from momentseg.masks import to_coco_rle


def write_frames(folder, count=4, size=(24, 32), suffix=".jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        frame = np.full((*size, 3), 40 + 20 * i, np.uint8)
        cv2.imwrite(str(folder / f"{i:05d}{suffix}"), frame)
    return [f"{i:05d}" for i in range(count)]


def entries(text, split=None):
    return load_entries(parse_data_spec(text), split)


def test_data_spec_weight_and_errors(tmp_path):
    assert parse_data_spec("mevis=/data/MeViS:2.5").weight == 2.5
    spec = parse_data_spec("mevis=/data/odd:name")
    assert (str(spec.root), spec.weight) == ("/data/odd:name", 1.0)
    with pytest.raises(DataError, match="unknown data kind 'kinetics'"):
        parse_data_spec("kinetics=/x")
    with pytest.raises(DataError, match="KIND=ROOT"):
        parse_data_spec("mevis")
    with pytest.raises(DataError, match="does not exist"):
        entries(f"mevis={tmp_path / 'absent'}")


def charades_root(tmp_path, lines):
    root = tmp_path / "charades"
    write_frames(root / "videos_1FPS" / "AB12C", 6)
    (root / "charades_sta_test.txt").write_text("\n".join(lines) + "\n")
    (root / "Charades_v1_test.csv").write_text("id,length\nAB12C,6.0\n")
    return root


def test_charades_reads_2dtan_lines_and_clips_to_the_duration(tmp_path):
    root = charades_root(tmp_path, ["AB12C 1.5 9.0##person opens a door.", "AB12C 0 2.0##a person sits"])
    found = entries(f"charades-sta={root}", "test")
    assert [(e.query, e.start, e.end, e.duration) for e in found] == [
        ("person opens a door", 1.5, 6.0, 6.0),
        ("a person sits", 0.0, 2.0, 6.0),
    ]
    frames = found[0].open_frames()
    assert len(frames) == 6 and frames.fps == 1.0 and frames[0].shape == (24, 32, 3)


def test_charades_errors_name_the_file_and_line(tmp_path):
    root = charades_root(tmp_path, ["AB12C 1 2##ok", "ZZZ 1 2##the video is missing"])
    with pytest.raises(DataError, match=r"charades_sta_test.txt:2: no video 'ZZZ'"):
        entries(f"charades-sta={root}", "test")
    (root / "charades_sta_test.txt").write_text("AB12C one 2##bad number\n")
    with pytest.raises(DataError, match=r"charades_sta_test.txt:1: expected"):
        entries(f"charades-sta={root}", "test")
    with pytest.raises(DataError, match="charades_sta_train.txt' does not exist"):
        entries(f"charades-sta={root}", "train")


def test_activitynet_reads_captions_and_v_prefix(tmp_path):
    root = tmp_path / "anet"
    write_frames(root / "videos_1FPS" / "uqiMw7tQ1Cc", 5)
    (root / "val.json").write_text(
        json.dumps(
            {
                "v_uqiMw7tQ1Cc": {
                    "duration": 5.0,
                    "timestamps": [[0, 2.5], [2.0, 7.0], [4.0, 4.0]],
                    "sentences": [" A man talks.", "he jumps", "empty"],
                }
            }
        )
    )
    found = entries(f"activitynet={root}", "val")
    assert [(e.query, e.start, e.end) for e in found] == [("A man talks", 0.0, 2.5), ("he jumps", 2.0, 5.0)]
    (root / "val.json").write_text(json.dumps({"v_x": {"duration": 5.0, "timestamps": [[0, 1]], "sentences": []}}))
    with pytest.raises(DataError, match=r"val.json\[v_x\]"):
        entries(f"activitynet={root}", "val")


def mevis_root(tmp_path, with_masks=True):
    root = tmp_path / "mevis"
    split = root / "valid_u"
    names = write_frames(split / "JPEGImages" / "vid1", 3)
    a = np.zeros((24, 32), bool)
    a[2:6, 3:9] = True
    b = np.zeros((24, 32), bool)
    b[10:20, 20:30] = True
    meta = {
        "videos": {
            "vid1": {
                "frames": names,
                "expressions": {
                    "0": {"exp": "two cats", "obj_id": [1, 2], "anno_id": [7, 8]},
                    "1": {"exp": "the dog", "obj_id": [1], "anno_id": [7]},
                },
            }
        }
    }
    (split / "meta_expressions.json").write_text(json.dumps(meta))
    if with_masks:
        (split / "mask_dict.json").write_text(
            json.dumps({"7": [to_coco_rle(a), None, to_coco_rle(a)], "8": [to_coco_rle(b), to_coco_rle(b), None]})
        )
    return root, a, b


def test_mevis_unions_the_objects_of_an_expression(tmp_path):
    root, a, b = mevis_root(tmp_path)
    both, dog = entries(f"mevis={root}", "valid_u")
    assert isinstance(both, ReferringEntry) and both.expression == "two cats" and both.frame_names[0] == "00000"
    np.testing.assert_array_equal(both.mask(0), a | b)
    np.testing.assert_array_equal(both.mask(1), b)
    assert not dog.mask(1).any()
    assert len(dog.open_frames()) == 3


def test_mevis_without_mask_dict_has_no_ground_truth(tmp_path):
    root, _, _ = mevis_root(tmp_path, with_masks=False)
    found = entries(f"mevis={root}", "valid_u")
    assert not found[0].has_masks
    with pytest.raises(DataError, match="no ground-truth masks"):
        found[0].mask(0)


def test_a_missing_frame_is_named_at_read_time_and_a_corrupt_one_at_decode_time(tmp_path):
    root, _, _ = mevis_root(tmp_path)
    frame = root / "valid_u" / "JPEGImages" / "vid1" / "00001.jpg"
    frame.write_bytes(b"not a jpeg")
    found = entries(f"mevis={root}", "valid_u")  # reading decodes nothing
    with pytest.raises(DataError, match=r"00001.jpg' is missing or not an image"):
        found[0].open_frames()[1]
    frame.unlink()
    with pytest.raises(DataError, match=r"meta_expressions.json\[vid1\]: frame '00001' is missing"):
        entries(f"mevis={root}", "valid_u")


def test_ref_youtube_vos_reads_palette_ids(tmp_path):
    root = tmp_path / "rytvos"
    names = write_frames(root / "train" / "JPEGImages" / "v", 2)
    (root / "train" / "Annotations" / "v").mkdir(parents=True)
    ids = np.zeros((24, 32), np.uint8)
    ids[:5, :5] = 1
    ids[10:, 10:] = 2
    for name in names:
        image = Image.fromarray(ids, mode="P")
        image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        image.save(root / "train" / "Annotations" / "v" / f"{name}.png")
    (root / "meta_expressions" / "train").mkdir(parents=True)
    (root / "meta_expressions" / "train" / "meta_expressions.json").write_text(
        json.dumps({"videos": {"v": {"frames": names, "expressions": {"0": {"exp": "a fish", "obj_id": "2"}}}}})
    )
    (entry,) = entries(f"ref-youtube-vos={root}")
    np.testing.assert_array_equal(entry.mask(1), ids == 2)
    (root / "train" / "Annotations" / "v" / "00001.png").unlink()
    with pytest.raises(DataError, match=r"annotation .*00001.png' does not exist"):
        entry.mask(1)


def test_revos_keeps_type_ids(tmp_path):
    root = tmp_path / "revos"
    names = write_frames(root / "JPEGImages" / "v", 2)
    mask = np.ones((24, 32), bool)
    (root / "mask_dict.json").write_text(json.dumps({"3": [to_coco_rle(mask), None]}))
    (root / "meta_expressions_valid_.json").write_text(
        json.dumps(
            {
                "videos": {
                    "v": {
                        "frames": names,
                        "expressions": {"0": {"exp": "what moves", "obj_id": [0], "anno_id": [3], "type_id": 1}},
                    }
                }
            }
        )
    )
    (entry,) = entries(f"revos={root}", "valid")
    assert entry.type_id == 1 and entry.mask(0).all() and not entry.mask(1).any()


def test_cvat_coco_export_gives_prompt_moment_and_tracks(tmp_path):
    root = tmp_path / "cvat"
    names = write_frames(root / "images", 3)
    mask = np.zeros((24, 32), bool)
    mask[4:10, 4:12] = True
    export = {
        "info": {"description": "momentseg", "prompt": "the red car", "moment": {"start_frame": 1, "end_frame": 2}},
        "categories": [{"id": 1, "name": "car"}],
        "images": [{"id": i + 1, "file_name": f"{n}.jpg", "width": 32, "height": 24} for i, n in enumerate(names)],
        "annotations": [
            {
                "id": 1,
                "image_id": 2,
                "category_id": 1,
                "segmentation": to_coco_rle(mask),
                "iscrowd": 1,
                "attributes": {"track_id": 0},
            }
        ],
    }
    (root / "task_5.json").write_text(json.dumps(export))
    (entry,) = entries(f"cvat={root}")
    assert (entry.expression, entry.moment, entry.video_id) == ("the red car", (1, 2), "task_5")
    assert not entry.mask(0).any() and (entry.mask(1) == mask).all()
    export["info"].pop("prompt")
    (root / "task_5.json").write_text(json.dumps(export))
    with pytest.raises(DataError, match="task_5.json: info.prompt is missing"):
        entries(f"cvat={root}")


def test_synthetic_clips_ask_which_object_and_when(tmp_path):
    """Every object of a clip has its own expression and mask; each query's action happens only during
    its moment (distractors still, so nothing else changes the acting object's mask)."""
    generate(
        tmp_path,
        train_clips=2,
        test_clips=6,
        seed=1,
        options=SyntheticOptions(frames=12, distractors=2, distractor_actions=0.0),
    )
    referring = entries(f"mevis={tmp_path / 'mevis'}", "valid_u")
    grounding = entries(f"charades-sta={tmp_path / 'charades-sta'}", "test")
    videos = {}
    for ref in referring:
        videos.setdefault(ref.video_id, []).append(ref)
    assert len(videos) == len(grounding) == 6 and all(len(refs) == 3 for refs in videos.values())
    for refs in videos.values():
        assert len({r.expression for r in refs}) == 3
        for ref in refs:  # the named colour is what the mask covers
            visible = next(i for i in range(12) if ref.mask(i).sum() > 20)
            frame = ref.open_frames()[visible].astype(int)
            for colour in set(COLOURS) & set(ref.expression.split()):
                assert np.abs(np.median(frame[ref.mask(visible)], 0) - COLOURS[colour]).max() < 40
    for tsg in grounding:
        shape, action = tsg.query.split()[2], tsg.query.split()[3]  # "the red square stops"
        ref = next(r for r in videos[tsg.video_id] if shape in r.expression.split())  # shapes differ in a clip
        start, end = int(tsg.start), int(tsg.end) - 1
        changed = {i for i in range(1, 12) if (ref.mask(i) != ref.mask(i - 1)).any()}
        if action == "stops":  # still during the moment, moving around it
            assert not changed & set(range(start + 1, end + 1)) and changed
        else:  # "appears" vanishes again on the frame after its moment
            assert changed and changed <= set(range(start, end + 2 if action == "appears" else end + 1))


def test_acting_distractors_act_at_other_times(tmp_path):
    generate(
        tmp_path, train_clips=0, test_clips=8, seed=2, options=SyntheticOptions(distractors=2, distractor_actions=1.0)
    )
    grounding = entries(f"charades-sta={tmp_path / 'charades-sta'}", "test")
    by_video = {}
    for tsg in grounding:
        by_video.setdefault(tsg.video_id, []).append((tsg.start, tsg.end))
    assert len(by_video) == 8 and max(len(m) for m in by_video.values()) >= 2
    for moments in by_video.values():
        moments.sort()
        assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(moments, moments[1:]))


def test_always_name_colour_leaves_out_expressions_of_shape_and_action_alone(tmp_path):
    for always in (False, True):
        root = tmp_path / str(always)
        generate(root, train_clips=0, test_clips=16, seed=4, options=SyntheticOptions(always_name_colour=always))
        named = [bool(set(COLOURS) & set(r.expression.split())) for r in entries(f"mevis={root / 'mevis'}", "valid_u")]
        assert len(named) == 32 and (all(named) if always else not all(named))


def test_an_entering_object_comes_in_from_the_edge_its_sentence_names(tmp_path):
    generate(tmp_path, train_clips=0, test_clips=12, seed=3, options=SyntheticOptions(actions=("enters",)))
    referring = entries(f"mevis={tmp_path / 'mevis'}", "valid_u")
    edges = set()
    for tsg in entries(f"charades-sta={tmp_path / 'charades-sta'}", "test"):
        words = tsg.query.split()  # "the red square enters from the top"
        edge = words[-1]
        ref = next(r for r in referring if r.video_id == tsg.video_id and words[2] in r.expression.split())
        centres = [np.argwhere(ref.mask(i)).mean(0) for i in range(16) if ref.mask(i).any()]
        (row_in, col_in), (row_end, col_end) = centres[0], centres[-1]  # it moves away from its edge
        away = {
            "left": col_end > col_in,
            "right": col_end < col_in,
            "top": row_end > row_in,
            "bottom": row_end < row_in,
        }
        assert words[3:6] == ["enters", "from", "the"] and away[edge], (tsg.query, away)
        edges.add(edge)
    assert edges == {"left", "right", "top", "bottom"}


@pytest.mark.parametrize("fmt", ["coco", "youtube-vis"])
def test_a_momentseg_export_reads_back_as_training_data(fmt, tiny_model, tiny_options, tmp_path):
    """segment → export (momentseg.export, as `momentseg export` writes it) → the cvat reader."""
    from momentseg.export import export
    from momentseg.pipeline import MomentSegPipeline
    from momentseg.video import ArrayFrames

    from conftest import synthetic_frames

    frames = synthetic_frames(count=6)
    result = MomentSegPipeline(tiny_model).run(ArrayFrames(frames, fps=10.0), "the red circle", tiny_options)
    root = tmp_path / "cvat"
    path = export(result, fmt, root / "task_3.json", "task_3")
    exported = json.loads(path.read_text())
    if fmt == "coco":
        names = [image["file_name"] for image in exported["images"]]
        folder = root / "images"
    else:
        names = exported["videos"][0]["file_names"]
        folder = root / "JPEGImages"
    for name, frame in zip(names, frames):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    found = entries(f"cvat={root}")
    assert len(found) == len(result.tracks) == 1
    entry = found[0]
    assert entry.expression == "the red circle" and len(entry.frame_names) == 6
    if fmt == "coco":
        assert entry.moment == (result.moment.start_frame, result.moment.end_frame)
    for index in range(6):
        np.testing.assert_array_equal(entry.mask(index), result.tracks[0].mask(index, result.width, result.height))
    assert entry.open_frames()[0].shape == frames[0].shape


def test_synth_command_writes_both_layouts(tmp_path, capsys):
    from momentseg.cli import main

    assert (
        main(
            [
                "synth",
                "--out",
                str(tmp_path),
                "--train-clips",
                "2",
                "--test-clips",
                "1",
                "--frames",
                "6",
                "--distractors",
                "2",
                "--distractor-actions",
                "0",
            ]
        )
        == 0
    )
    assert "2 training and 1 held-out" in capsys.readouterr().out
    assert len(entries(f"mevis={tmp_path / 'mevis'}")) == 2 * 3  # an expression per object
    assert len(entries(f"charades-sta={tmp_path / 'charades-sta'}", "test")) == 1  # the target's action
