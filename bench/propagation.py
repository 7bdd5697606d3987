"""Our propagation (Sam2Tracker + BAP) against bare sam2 on the same frames and the same weights.

Bare sam2 is what its README does: ``init_state`` on a JPEG folder (every frame loaded and resized up
front), ``add_new_mask`` at c*, ``propagate_in_video`` forward and then backward. Ours is the product's
path: the frame store over the same folder, ``Sam2Tracker`` conditioned on the same mask at c*, and BAP
(one anchor: forward then backward). Both predictors hold the same random weights. Prints wall and CPU
time (best of ``--repeats``) and our/bare ratios; the goal is at most 1.1×.

Run: .venv/bin/python -m bench.propagation [--frames 24] [--size 360x640] [--configs tiny mid]
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: sam2's bars would interleave with the table

import cv2
import numpy as np
import torch

from bench.memory import SyntheticVideo

# name: (sam2 config, image size)
CONFIGS = {
    "tiny": ("configs/sam2/sam2_hiera_t.yaml", 128),
    "mid": ("configs/sam2/sam2_hiera_t.yaml", 512),
    "full": ("configs/sam2/sam2_hiera_l.yaml", 1024),
}
OBJECT_SCORE_BIAS = 4.0  # random decoders call every object absent; bias them present, as the tiny model does


def write_jpeg_folder(folder, count, height, width):
    """The frames as sam2's loader wants them (``<index>.jpg``); returns the mask of the disc at each frame."""
    video = SyntheticVideo(count, height, width)
    masks = []
    for index in range(count):
        frame = video[index]
        cv2.imwrite(
            str(Path(folder) / f"{index:05d}.jpg"),
            cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 95],
        )
        masks.append(frame[..., 0] > 150)
    return masks


def build_pair(config, image_size):
    """Our predictor and bare sam2's, holding the same random weights."""
    from sam2.build_sam import build_sam2_video_predictor

    from momentseg.model.sam2_tracker import build_predictor

    torch.manual_seed(0)
    ours = build_predictor(config, image_size, "cpu")
    with torch.no_grad():
        ours.sam_mask_decoder.pred_obj_score_head.layers[-1].bias.fill_(OBJECT_SCORE_BIAS)
    bare = build_sam2_video_predictor(
        config,
        ckpt_path=None,
        device="cpu",
        apply_postprocessing=False,
        hydra_overrides_extra=[f"++model.image_size={image_size}"],
    )
    bare.load_state_dict(ours.state_dict())
    return ours.eval(), bare.eval()


def run_ours(predictor, folder, center, mask):
    from momentseg.model.sam2_tracker import Sam2Tracker
    from momentseg.propagation import Anchor, BidirectionalAnchorPropagation
    from momentseg.video import open_video

    with open_video(folder) as frames:
        tracker = Sam2Tracker(predictor, frames)
        bap = BidirectionalAnchorPropagation(tracker, [Anchor(center, mask)], center, len(frames))
        return {output.frame: np.asarray(output.mask, bool) for output in bap}


def run_bare(predictor, folder, center, mask):
    with torch.inference_mode():
        state = predictor.init_state(str(folder))
        predictor.add_new_mask(state, center, 1, mask)
        masks = {}
        for reverse in (False, True):
            for frame, _, logits in predictor.propagate_in_video(state, start_frame_idx=center, reverse=reverse):
                masks[frame] = (logits[0, 0] > 0).cpu().numpy()
        return masks


def measure(run, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    masks = run(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, masks


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="360x640", help="HxW of the frames")
    parser.add_argument("--configs", nargs="+", default=["tiny", "mid"], choices=sorted(CONFIGS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.size.split("x"))
    print(
        f"{args.frames} frames {width}x{height}, c* = {args.frames // 2}, torch threads {args.threads}, "
        f"best of {args.repeats}"
    )
    print(
        f"{'config':>6} {'SAM2':>22} {'bare wall s':>11} {'ours wall s':>11} {'ratio':>6} "
        f"{'bare CPU s':>10} {'ours CPU s':>10} {'ratio':>6} {'mask IoU':>8}"
    )
    with tempfile.TemporaryDirectory() as folder:
        truth = write_jpeg_folder(folder, args.frames, height, width)
        center = args.frames // 2
        for name in args.configs:
            config, image_size = CONFIGS[name]
            ours, bare = build_pair(config, image_size)
            best = {"ours": (np.inf, np.inf), "bare": (np.inf, np.inf)}
            for _ in range(args.repeats):
                for label, run, predictor in (("bare", run_bare, bare), ("ours", run_ours, ours)):
                    wall, cpu, masks = measure(run, predictor, folder, center, truth[center])
                    best[label] = (min(best[label][0], wall), min(best[label][1], cpu))
                    if label == "bare":
                        bare_masks = masks
                    else:
                        agreement = np.mean([iou(masks[f], bare_masks[f]) for f in range(args.frames)])
            (bare_wall, bare_cpu), (ours_wall, ours_cpu) = best["bare"], best["ours"]
            print(
                f"{name:>6} {Path(config).stem + f' @{image_size}':>22} {bare_wall:>11.2f} {ours_wall:>11.2f} "
                f"{ours_wall / bare_wall:>6.2f} {bare_cpu:>10.2f} {ours_cpu:>10.2f} {ours_cpu / bare_cpu:>6.2f} "
                f"{agreement:>8.3f}"
            )


if __name__ == "__main__":
    main()
