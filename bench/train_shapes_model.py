"""Train a small shapes model on a CPU, and measure it: a tiny MomentSeg (2-layer Qwen2.5-VL of width 64,
the reduced SAM2 "mini") is trained on synthetic clips with distractors to learn which object a sentence
names and when its action happens, and to answer [FIND] / [SEG] by itself; the result is shipped as
checkpoints/momentseg-shapes (docs/training.md § 9.2).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench.train_shapes_model --out shapes_run [--ship DIR] [--example DIR]

1. ``momentseg synth``'s generator writes the clips (several shapes, one acting, distractors) in the MeViS
   and Charades-STA layouts, with held-out splits;
2. a random Sa2VA-layout base is written (no [FIND]: ``train`` adds it);
3. ``momentseg train --config bench/shapes_model.yaml`` trains it twice: on RefVOS samples alone
   (``--mask-steps``), then on TSG and RefVOS samples (``--tsg-weight`` : 1) (L_find, text, mask losses);
4. the model is rounded to bfloat16 and saved in the official layout to ``--ship``;
5. ``momentseg eval`` scores the bf16 model on the held-out clips with the answers it generates itself:
   J&F against the same model prompted with another object's expression (``--text-check``), and R@0.5 /
   mIoU of the moment; the untrained base is scored the same way (answers forced: it has no [FIND]).

Figures and what the model does not know: docs/training.md § 9.2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2

from momentseg.data.synthetic import SyntheticOptions

os.environ.setdefault("TQDM_DISABLE", "1")
CONFIG = Path(__file__).with_name("shapes_model.yaml")
# the random base (docs/training.md § 9.1): text layers of std 0.15 (Qwen's 0.02 lets the sentence barely move
# [SEG]) with the video tokens ×10 (so each frame's tokens survive those layers for [FIND]), queries and keys at
# 0.05 (soft attention), and a [SEG] projection at the scale of SAM2's own prompt tokens
INITIALIZER_RANGE = 0.15
SEG_PROMPT_STD = 1.0
VIDEO_TOKEN_SCALE = 10.0
ATTENTION_INITIALIZER_RANGE = 0.05
MASK_STEPS = 2000
TSG_WEIGHT = 5.0
# the clips the shipped model knows: 16 frames, one still distractor; "appears" is left out (on clips where the
# object is absent most of the time, an empty mask scores well); every expression names the colour (shape and
# action alone do not steer its masks: docs/training.md § 9.2)
SHIPPED_KINDS = SyntheticOptions(
    actions=("moves", "stops", "enters", "bounces", "turns"), distractor_actions=0.0, always_name_colour=True
)
EXAMPLE_SEED = 2026


def momentseg(*args: str) -> None:
    """Run one ``momentseg`` command of this environment; stop when it fails."""
    command = [sys.executable, "-m", "momentseg.cli", *args]
    print("$ momentseg " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def evaluate(checkpoint: Path, data: Path, out: Path, *extra: str) -> dict:
    """J&F (with the text check) and R@0.5 / mIoU of ``checkpoint`` on the held-out clips, with the
    evaluation's own options (those ``momentseg segment`` runs: 8 keyframes, the rest tracked)."""
    momentseg(
        "eval",
        "--checkpoint",
        str(checkpoint),
        "--data",
        f"mevis={data / 'mevis'}",
        "--out",
        str(out / "mevis"),
        "--text-check",
        "--quiet",
        *extra,
    )
    refvos = json.loads((out / "mevis" / "metrics.json").read_text())["summary"]
    row = {
        "J&F": refvos["J&F"] / 100,
        "J": refvos["J"] / 100,
        "J&F other": refvos["text check"]["J&F other object's expression"] / 100,
    }
    if "--force-answer" not in extra:
        momentseg(
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--data",
            f"charades-sta={data / 'charades-sta'}",
            "--out",
            str(out / "charades"),
            "--quiet",
            *extra,
        )
        tsg = json.loads((out / "charades" / "metrics.json").read_text())["summary"]
        row.update({"R@0.5": tsg["R@0.5"] / 100, "mIoU": tsg["mIoU"] / 100})
    return row


def ship(checkpoint: Path, folder: Path) -> Path:
    """The trained model with every weight in bfloat16, saved in the official layout."""
    import torch

    from momentseg.model.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(checkpoint, device="cpu")
    for module in model.parts().values():
        module.to(torch.bfloat16)
    return save_checkpoint(model, folder)


def write_example(folder: Path, options: SyntheticOptions, seed: int = EXAMPLE_SEED) -> dict:
    """One clip of the shipped kinds from a stream of its own (neither the training nor the held-out clips),
    whose target's expression names its action: the frames as JPEGs, and ``expected.json`` with the prompt,
    the target's moment (inclusive frames) and its masks (COCO RLE), what the README's first command is
    checked against."""
    import numpy as np

    from momentseg.data.synthetic import make_clip
    from momentseg.masks import to_coco_rle

    rng = np.random.default_rng([seed, 2])
    while True:
        clip = make_clip(rng, "example", options)
        target = clip.referents[0]
        if " that " in target.expression and target.moment is not None:
            break
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(clip.frames):
        cv2.imwrite(str(folder / f"{index:05d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    expected = {
        "prompt": target.expression,
        "moment": list(target.moment),
        "masks": [to_coco_rle(mask) for mask in target.masks],
    }
    (folder / "expected.json").write_text(json.dumps(expected))
    return expected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="shapes_run")
    parser.add_argument("--config", type=Path, default=CONFIG, help="momentseg train options (YAML)")
    parser.add_argument(
        "--mask-steps", type=int, default=MASK_STEPS, help="optimiser steps of the first phase (RefVOS samples only)"
    )
    parser.add_argument(
        "--steps", type=int, help="optimiser steps of the second phase (default: bench/shapes_model.yaml's)"
    )
    parser.add_argument("--ship", help="where to save the bf16 model (default OUT/shipped)")
    parser.add_argument("--example", type=Path, help="also write an example clip of the shipped kinds there")
    parser.add_argument("--train-clips", type=int, default=400)
    parser.add_argument("--test-clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=SHIPPED_KINDS.frames)
    parser.add_argument("--distractors", type=int, default=SHIPPED_KINDS.distractors)
    parser.add_argument(
        "--distractor-actions",
        type=float,
        default=SHIPPED_KINDS.distractor_actions,
        help="share of distractors that act too, at another time",
    )
    parser.add_argument(
        "--tsg-weight", type=float, default=TSG_WEIGHT, help="TSG samples per RefVOS sample in the second phase"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--initializer-range", type=float, default=INITIALIZER_RANGE, help="std of the random base's text layers"
    )
    parser.add_argument(
        "--video-token-scale",
        type=float,
        default=VIDEO_TOKEN_SCALE,
        help="the random base's vision output scale (video tokens keep their content through the text layers)",
    )
    parser.add_argument(
        "--attention-initializer-range",
        type=float,
        default=ATTENTION_INITIALIZER_RANGE,
        help="std of the random base's query and key projections (softer attention than the other weights')",
    )
    parser.add_argument(
        "--seg-prompt-std", type=float, default=SEG_PROMPT_STD, help="scale of the random base's [SEG] projection"
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU version")
    args = parser.parse_args()

    from momentseg.data.synthetic import generate
    from momentseg.model.tiny import MINI_SAM2_CONFIG, write_tiny_checkpoint

    out = Path(args.out)
    options = dataclasses.replace(
        SHIPPED_KINDS, frames=args.frames, distractors=args.distractors, distractor_actions=args.distractor_actions
    )
    data = generate(out / "data", args.train_clips, args.test_clips, args.seed, options)
    if args.example:
        print(f"example: {args.example} ({write_example(args.example, options)['prompt']!r})")
    base = write_tiny_checkpoint(
        out / "base_sa2va",
        "sa2va",
        args.seed,
        sam2_config=MINI_SAM2_CONFIG,
        initializer_range=args.initializer_range,
        seg_prompt_std=args.seg_prompt_std,
        video_token_scale=args.video_token_scale,
        attention_initializer_range=args.attention_initializer_range,
    )

    start = time.perf_counter()
    common = ["--config", str(args.config), "--device", args.device, "--seed", str(args.seed), "--quiet"]
    # first the masks alone: mixed with TSG samples from the start, the mask loss stayed on its plateau (both
    # objects segmented) for 2800 RefVOS steps; alone it leaves it within about 1000
    momentseg(
        "train",
        *common,
        "--base",
        str(base),
        "--data",
        f"mevis={data / 'mevis'}",
        "--out",
        str(out / "masks"),
        "--max-steps",
        str(args.mask_steps),
    )
    # then mostly moments: L_find sits at the loss of a constant answer for some 3000 TSG steps before it falls
    momentseg(
        "train",
        *common,
        "--base",
        str(out / "masks" / "checkpoint"),
        "--data",
        f"charades-sta={data / 'charades-sta'}:{args.tsg_weight}",
        "--data",
        f"mevis={data / 'mevis'}",
        "--out",
        str(out / "train"),
        *(["--max-steps", str(args.steps)] if args.steps else []),
    )
    train_seconds = time.perf_counter() - start
    shipped = ship(out / "train" / "checkpoint", Path(args.ship or out / "shipped"))

    device = ["--device", args.device]
    # the random base is scored on the first 16 expressions only: it has nothing to show beyond chance
    before = evaluate(base, data, out / "eval_base", "--force-answer", "--limit", "16", *device)
    after = evaluate(shipped, data, out / "eval_shipped", *device)

    print(f"training: {train_seconds:.0f} s on {os.cpu_count()} CPU cores")
    for phase in ("masks", "train"):
        log = [json.loads(line) for line in (out / phase / "train_log.jsonl").read_text().splitlines()]
        tenth = max(len(log) // 10, 1)
        print(f"  {phase}: {len(log)} steps")
        for key in ("loss_text", "loss_find", "loss_mask"):
            first = [r[key] for r in log[:tenth] if r[key] is not None]
            last = [r[key] for r in log[-tenth:] if r[key] is not None]
            if first and last:
                print(
                    f"    {key:<10} first 10 %: {sum(first) / len(first):.3f}   last 10 %: {sum(last) / len(last):.3f}"
                )
    size = sum(f.stat().st_size for f in shipped.iterdir()) / 1e6
    print(f"shipped: {shipped} ({size:.1f} MB, bf16)")
    print(f"{'held-out':<26} {'J&F':>6} {'J':>6} {'J&F other':>10} {'R@0.5':>6} {'mIoU':>6}")
    for name, row in (("untrained base (forced)", before), ("trained, own answers", after)):
        cells = [f"{row[k]:>6.3f}" if k in row else f"{'-':>6}" for k in ("J&F", "J")]
        cells.append(f"{row['J&F other']:>10.3f}")
        cells += [f"{row[k]:>6.3f}" if k in row else f"{'-':>6}" for k in ("R@0.5", "mIoU")]
        print(f"{name:<26} " + " ".join(cells))


if __name__ == "__main__":
    main()
