"""momentseg eval: the official submission layout, resumability, and J / F equal to the DAVIS-2017
reference computation on the PNGs it wrote."""

import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from momentseg.cli import main
from momentseg.data.synthetic import SyntheticOptions, generate
from momentseg.evaluate import EvalOptions, evaluate

FRAMES = 8
TINY = dict(
    method=dict(
        keyframes=4, tsg_pixels=3136, tsg_min_pixels=3136, image_pixels=3136, image_min_pixels=3136, force_answer=True
    ),
    device="cpu",
    progress=False,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("synth"),
        train_clips=1,
        test_clips=3,
        seed=5,
        options=SyntheticOptions(frames=FRAMES, actions=("appears", "moves")),
    )


# --- DAVIS-2017 reference (davis2017/metrics.py: db_eval_iou, f_measure, _seg2bmap), written out here
def davis_iou(annotation, segmentation):
    inters = np.sum(segmentation & annotation)
    union = np.sum(segmentation | annotation)
    return 1.0 if union == 0 else inters / union


def davis_seg2bmap(seg):
    seg = seg.astype(bool)
    h, w = seg.shape
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def davis_f(foreground, ground_truth, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * np.linalg.norm(foreground.shape))
    fg_boundary, gt_boundary = davis_seg2bmap(foreground), davis_seg2bmap(ground_truth)
    y, x = np.ogrid[-bound_pix : bound_pix + 1, -bound_pix : bound_pix + 1]
    disk = (x * x + y * y <= bound_pix * bound_pix).astype(np.uint8)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), disk)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), disk)
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg, n_gt = np.sum(fg_boundary), np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision, recall = np.sum(fg_match) / float(n_fg), np.sum(gt_match) / float(n_gt)
    return 0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def reference_scores(out, data_root):
    """Per expression: the mean over frames of J and F on the written PNGs against mask_dict.json."""
    split = data_root / "mevis" / "valid_u"
    meta = json.loads((split / "meta_expressions.json").read_text())
    masks = json.loads((split / "mask_dict.json").read_text())
    scores = {}
    for video, item in meta["videos"].items():
        for exp_id, expression in item["expressions"].items():
            js, fs = [], []
            for index, name in enumerate(item["frames"]):
                prediction = (
                    np.asarray(Image.open(out / "Annotations" / video / exp_id / f"{name}.png").convert("L")) > 0
                )
                gt = np.zeros_like(prediction)
                for anno in expression["anno_id"]:
                    rle = masks[str(anno)][index]
                    if rle is not None:
                        gt |= coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
                js.append(davis_iou(gt, prediction))
                fs.append(davis_f(prediction, gt))
            scores[video, exp_id] = (np.mean(js), np.mean(fs))
    return scores


@pytest.fixture(scope="module")
def evaluated(synth, tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    metrics = evaluate(str(tiny_checkpoint), f"mevis={synth / 'mevis'}", out, EvalOptions(**TINY))
    return out, metrics


def test_predictions_in_the_submission_layout(evaluated, synth):
    out, metrics = evaluated
    meta = json.loads((synth / "mevis" / "valid_u" / "meta_expressions.json").read_text())
    for video, item in meta["videos"].items():
        for name in item["frames"]:
            with Image.open(out / "Annotations" / video / "0" / f"{name}.png") as image:
                assert image.mode == "L" and image.size == (64, 64)
                assert set(np.unique(np.asarray(image))) <= {0, 255}
    assert {r["video"] for r in metrics["rows"]} == set(meta["videos"])


def test_j_and_f_equal_the_davis_reference_on_the_written_pngs(evaluated, synth):
    out, metrics = evaluated
    reference = reference_scores(out, synth)
    predicted_any = False
    for row in metrics["rows"]:
        j, f = reference[row["video"], row["expression_id"]]
        assert row["J"] == pytest.approx(j, abs=1e-9) and row["F"] == pytest.approx(f, abs=1e-9)
        predicted_any |= j not in (0.0, 1.0)
    assert predicted_any  # non-trivial masks were scored, not only empty frames
    j_mean = 100 * np.mean([j for j, _ in reference.values()])
    f_mean = 100 * np.mean([f for _, f in reference.values()])
    summary = json.loads((out / "metrics.json").read_text())["summary"]
    assert summary["J"] == pytest.approx(j_mean, abs=1e-4) and summary["F"] == pytest.approx(f_mean, abs=1e-4)
    assert summary["J&F"] == pytest.approx((j_mean + f_mean) / 2, abs=1e-4)
    assert set(metrics["per_video"]) == {video for video, _ in reference}


def test_a_rerun_skips_finished_expressions(evaluated, synth, tiny_checkpoint):
    out, metrics = evaluated
    rows_file = next((out / "rows").glob("rank-*.jsonl"))
    lines = rows_file.read_text().splitlines()
    rows_file.write_text("\n".join(lines[:-1]) + "\n")  # as if the run died during the last expression
    again = evaluate(str(tiny_checkpoint), f"mevis={synth / 'mevis'}", out, EvalOptions(**TINY))
    assert len(rows_file.read_text().splitlines()) == len(lines)
    assert again["summary"] == metrics["summary"]


def test_the_text_check_prompts_with_another_objects_expression(synth, tiny_checkpoint, tmp_path):
    metrics = evaluate(
        str(tiny_checkpoint),
        f"mevis={synth / 'mevis'}",
        tmp_path,
        EvalOptions(**{**TINY, "limit": 2, "text_check": True}),
    )
    first, second = metrics["rows"]  # the two objects of the first clip
    assert first["video"] == second["video"] and first["expression"] != second["expression"]
    assert first["other_expression"] == second["expression"] and second["other_expression"] == first["expression"]
    check = metrics["summary"]["text check"]
    assert check["expressions"] == 2
    assert check["J other object's expression"] == pytest.approx(
        100 * np.mean([first["J_other"], second["J_other"]]), abs=1e-3
    )
    assert check["J&F"] == pytest.approx(metrics["summary"]["J&F"], abs=1e-3)


def test_tsg_eval_reports_recall_and_miou(synth, tiny_checkpoint, tmp_path):
    metrics = evaluate(
        str(tiny_checkpoint), f"charades-sta={synth / 'charades-sta'}", tmp_path, EvalOptions(**{**TINY, "limit": 2})
    )
    rows = metrics["rows"]
    assert len(rows) == 2 and all(r["prediction"] is not None for r in rows)
    ious = [r["iou"] for r in rows]
    assert metrics["summary"]["mIoU"] == pytest.approx(100 * np.mean(ious), abs=1e-3)
    assert metrics["summary"]["R@0.5"] == pytest.approx(100 * np.mean([i >= 0.5 for i in ious]))


def test_eval_cli_bad_data_is_one_line(tiny_checkpoint, tmp_path, capsys):
    code = main(
        [
            "eval",
            "--checkpoint",
            str(tiny_checkpoint),
            "--data",
            f"mevis={tmp_path}",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "meta_expressions.json" in err and len(err.splitlines()) == 1
