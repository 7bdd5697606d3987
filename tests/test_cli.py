import json

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from momentseg.cli import main

from conftest import TINY_PIXELS, synthetic_frames


@pytest.fixture
def frame_folder(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(synthetic_frames(10)):
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def segment(folder, checkpoint, out, *extra):
    return main(["segment", str(folder), "--prompt", "the red dog", "--checkpoint", str(checkpoint),
                 "--out", str(out), "--keyframes", "4", "--tsg-pixels", str(TINY_PIXELS),
                 "--image-pixels", str(TINY_PIXELS), "--fps", "10", *extra])


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


def test_errors_exit_2_with_a_message_and_no_trace(frame_folder, tiny_checkpoint, tmp_path, capsys):
    assert main(["segment", str(frame_folder), "--prompt", "  ", "--checkpoint", str(tiny_checkpoint),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "prompt is empty" in err and "Traceback" not in err
    assert main(["segment", str(tmp_path / "none"), "--prompt", "x", "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["segment", str(frame_folder), "--prompt", "x", "--checkpoint", str(tmp_path / "no" / "ck")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_tiny_checkpoint_and_demo_commands(tmp_path, capsys):
    assert main(["tiny-checkpoint", str(tmp_path / "ck"), "--layout", "sa2va"]) == 0
    assert (tmp_path / "ck" / "model.safetensors").exists()
    assert main(["demo", "--frames", "120"]) == 0
    assert "mcs:" in capsys.readouterr().out
