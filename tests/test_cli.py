import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from momentseg.cli import main

from conftest import TINY_PIXELS, synthetic_frames


@pytest.fixture
def frame_folder(tmp_path):
    return write_frames(tmp_path / "frames", 10)


def write_frames(folder, count):
    folder.mkdir()
    for i, frame in enumerate(synthetic_frames(count)):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def segment(folder, checkpoint, out, *extra):
    return main(
        [
            "segment",
            str(folder),
            "--prompt",
            "the red dog",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(out),
            "--keyframes",
            "4",
            "--tsg-pixels",
            str(TINY_PIXELS),
            "--image-pixels",
            str(TINY_PIXELS),
            "--fps",
            "10",
            "--force-answer",
            "--device",
            "cpu",
            *extra,
        ]
    )


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_segment_writes_masks_result_overlay_and_plot(frame_folder, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert segment(frame_folder, tiny_checkpoint, out) == 0
    result = json.loads((out / "result.json").read_text())
    assert set(result) >= {"moment", "center_frame", "keyframes", "similarity", "tracks", "model", "timings"}
    assert len(result["similarity"]) == 10 and len(result["keyframes"]) == 4
    pngs = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:05d}" for i in range(10)]
    assert set(np.unique(cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE))) <= {0, 255}
    assert cv2.VideoCapture(str(out / "overlay.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == 10
    assert cv2.imread(str(out / "similarity.png")).shape[2] == 3
    assert "moment: frames" in capsys.readouterr().out


def test_segment_coco_format_decodes_with_pycocotools(frame_folder, tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert segment(frame_folder, tiny_checkpoint, out, "--format", "coco") == 0
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 10
    for annotation in coco["annotations"]:
        rle = dict(annotation["segmentation"], counts=annotation["segmentation"]["counts"].encode())
        assert coco_mask.decode(rle).sum() == annotation["area"]


def test_a_reused_out_folder_keeps_no_stale_masks(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert segment(write_frames(tmp_path / "long", 8), tiny_checkpoint, out, "--format", "coco") == 0
    assert segment(write_frames(tmp_path / "short", 5), tiny_checkpoint, out) == 0
    assert len(list((out / "masks").glob("*.png"))) == 5
    assert not (out / "coco.json").exists()  # the earlier run's export went with it
    assert json.loads((out / "result.json").read_text())["num_frames"] == 5


def test_a_one_frame_video_is_segmented(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    assert segment(write_frames(tmp_path / "one", 1), tiny_checkpoint, out, "--keyframes", "1") == 0
    assert len(list((out / "masks").glob("*.png"))) == 1


def refused_segment(capsys, folder, prompt, checkpoint, out) -> str:
    """The one error line of a ``momentseg segment`` that exits 2."""
    command = ["segment", str(folder), "--prompt", prompt, "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*command, "--device", "cpu"]) == 2
    return one_error_line(capsys)


def test_errors_exit_2_with_a_message_and_no_trace(frame_folder, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "o"
    assert "prompt is empty" in refused_segment(capsys, frame_folder, "  ", tiny_checkpoint, out)
    assert "does not exist" in refused_segment(capsys, tmp_path / "none", "x", tiny_checkpoint, out)
    assert "not a folder" in refused_segment(capsys, frame_folder, "x", tmp_path / "no" / "ck", out)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["segment", "v", "--prompt", "x", "--checkpoint", "c", "--fps", "0"], "--fps: must be a positive number"),
        (["segment", "v", "--prompt", "x", "--checkpoint", "c", "--fps", "-5"], "--fps: must be a positive number"),
        (["segment", "v", "--prompt", "x", "--checkpoint", "c", "--fps", "nan"], "--fps: must be a positive number"),
        (["segment", "v", "--prompt", "x", "--checkpoint", "c", "--fps", "fast"], "'fast' is not a number"),
        (["demo", "--fps", "inf"], "--fps: must be a positive number"),
        (["segment", "v", "--prompt", "x"], "the following arguments are required: --checkpoint"),
        (
            ["segment", "v", "--prompt", "x", "--checkpoint", "c", "--keyframes", "many"],
            "keyframes takes an integer, got 'many'",
        ),
        (["segment", "v", "--prompt", "x", "--checkpoint", "c", "--colour", "red"], "unrecognized arguments"),
        (["serve", "--checkpoint", "c", "--port", "-1"], "port number"),
        (["nonsense"], "invalid choice"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_command_lines_exit_2_with_one_line(capsys, arguments, message):
    assert main(arguments) == 2
    assert message in one_error_line(capsys)


def test_out_and_device_are_checked_before_the_model_is_loaded(frame_folder, tmp_path, capsys):
    missing_checkpoint = tmp_path / "not" / "loaded"  # an error about it would mean the model came first
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    cases = [
        (["--out", str(a_file)], "is a file, not a folder"),
        (["--out", str(a_file / "sub")], "cannot be created"),
        (["--out", str(foreign)], "holds files momentseg did not write (notes.txt)"),
        (["--device", "tpu"], "--device must be 'cuda'"),
        (["--device", "cuda:9"], "--device is cuda:9 but"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "no GPU is visible"))
    for extra, message in cases:
        arguments = [
            "segment",
            str(frame_folder),
            "--prompt",
            "x",
            "--checkpoint",
            str(missing_checkpoint),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *extra,
        ]
        assert main(arguments) == 2
        assert message in one_error_line(capsys)
    assert a_file.read_text() == "mine" and (foreign / "notes.txt").read_text() == "mine"


@pytest.fixture
def damaged_checkpoints(tiny_checkpoint, tmp_path):
    """Copies of the tiny checkpoint, each broken one way (the weights are linked, not copied)."""

    def copy(name, with_weights=True):
        folder = tmp_path / name
        folder.mkdir()
        for path in tiny_checkpoint.iterdir():
            if path.suffix != ".safetensors":
                shutil.copy(path, folder / path.name)
            elif with_weights:
                os.symlink(path, folder / path.name)
        return folder

    truncated = copy("truncated", with_weights=False)
    weights = next(tiny_checkpoint.glob("*.safetensors"))
    with open(weights, "rb") as source:
        (truncated / weights.name).write_bytes(source.read(4096))
    not_json = copy("not_json")
    (not_json / "config.json").write_text("{'this is': not JSON")
    escaping = copy("escaping", with_weights=False)
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes(b"not weights")
    (escaping / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": {"sam2.image_encoder.weight": "../outside.safetensors"}})
    )
    return {"truncated": truncated, "not_json": not_json, "escaping": escaping}


@pytest.mark.parametrize(
    "damage, message",
    [("truncated", "truncated"), ("not_json", "not valid JSON"), ("escaping", "not a file in the checkpoint folder")],
)
def test_a_damaged_checkpoint_is_one_line_and_exit_2(
    damaged_checkpoints, frame_folder, tmp_path, capsys, damage, message
):
    assert (
        main(
            [
                "segment",
                str(frame_folder),
                "--prompt",
                "x",
                "--checkpoint",
                str(damaged_checkpoints[damage]),
                "--out",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_an_internal_error_is_one_line_exit_1_and_debug_shows_the_trace(monkeypatch, capsys):
    import momentseg.cli as cli

    def broken(args):
        raise KeyError("internal state")

    monkeypatch.setattr(cli, "_run_demo", broken)
    assert main(["demo"]) == 1
    err = one_error_line(capsys)
    assert "internal error (KeyError" in err and "--debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "demo"])


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "segment" in capsys.readouterr().out


def test_tiny_checkpoint_and_demo_commands(tmp_path, capsys):
    assert main(["tiny-checkpoint", str(tmp_path / "ck"), "--layout", "sa2va"]) == 0
    assert (tmp_path / "ck" / "model.safetensors").exists()
    assert main(["demo", "--frames", "120"]) == 0
    assert "mcs:" in capsys.readouterr().out


def test_an_os_error_names_its_file_without_errno(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["tiny-checkpoint", str(tmp_path / "file" / "ck")]) == 2
    err = one_error_line(capsys)
    assert "Errno" not in err and "Not a directory" in err and str(tmp_path / "file") in err
