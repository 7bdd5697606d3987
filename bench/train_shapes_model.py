"""Train a small shapes model on a CPU, and measure it: a tiny MomentSeg (2-layer Qwen2.5-VL of width 64,
the reduced SAM2 "mini") is trained on synthetic clips with distractors to learn which object a sentence
names and when its action happens, and to answer [FIND] / [SEG] by itself. Work in progress: it learns
the answers, not yet the object (docs/training.md § 9).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m bench.train_shapes_model --out shapes_run [--steps N] [--ship DIR]

1. ``momentseg synth``'s generator writes the clips (several shapes, one acting, distractors) in the MeViS
   and Charades-STA layouts, with held-out splits;
2. a random Sa2VA-layout base is written (no [FIND]: ``train`` adds it);
3. ``momentseg train --config bench/shapes_model.yaml`` trains it (L_find, text, mask losses);
4. the model is rounded to bfloat16 and saved in the official layout to ``--ship``;
5. ``momentseg eval`` scores the bf16 model on the held-out clips with the answers it generates itself:
   J&F against the same model prompted with another object's expression (``--text-check``), and R@0.5 /
   mIoU of the moment; the untrained base is scored the same way (answers forced: it has no [FIND]).

Figures and what the model does not know yet: docs/training.md § 9.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

os.environ.setdefault("TQDM_DISABLE", "1")
CONFIG = Path(__file__).with_name("shapes_model.yaml")
# the random base: its text layers' initial weights (std 0.3 instead of Qwen's 0.02) let the sentence
# change the [SEG] state from the first step, and its [SEG] projection starts at the scale of SAM2's own
# prompt tokens; with both, the mask loss teaches which words matter (with either missing, it did not)
INITIALIZER_RANGE = 0.3
SEG_PROMPT_STD = 1.0
# "appears" is left out: on clips where the object is absent most of the time, an empty mask scores well
SHIPPED_ACTIONS = ("moves", "stops", "enters", "bounces", "turns")


def momentseg(*args: str) -> None:
    """Run one ``momentseg`` command of this environment; stop when it fails."""
    command = [sys.executable, "-m", "momentseg.cli", *args]
    print("$ momentseg " + " ".join(args), flush=True)
    subprocess.run(command, check=True)


def evaluate(checkpoint: Path, data: Path, out: Path, frames: int, config: Path, *extra: str) -> dict:
    """J&F (with the text check) and R@0.5 / mIoU of ``checkpoint`` on the held-out clips, keyframe images
    at the training's size."""
    pixels = str(yaml.safe_load(config.read_text())["image_pixels"])
    momentseg(
        "eval",
        "--checkpoint",
        str(checkpoint),
        "--data",
        f"mevis={data / 'mevis'}",
        "--out",
        str(out / "mevis"),
        "--keyframes",
        str(frames),
        "--text-check",
        "--quiet",
        "--image-pixels",
        pixels,
        "--image-min-pixels",
        pixels,
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
            "--keyframes",
            str(frames),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="shapes_run")
    parser.add_argument("--config", type=Path, default=CONFIG, help="momentseg train options (YAML)")
    parser.add_argument("--steps", type=int, help="optimiser steps (default: bench/shapes_model.yaml's)")
    parser.add_argument("--ship", help="where to save the bf16 model (default OUT/shipped)")
    parser.add_argument("--train-clips", type=int, default=400)
    parser.add_argument("--test-clips", type=int, default=24)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--distractors", type=int, default=1)
    parser.add_argument(
        "--distractor-actions", type=float, default=0.0, help="share of distractors that act too, at another time"
    )
    parser.add_argument("--tsg-weight", type=float, default=1.5, help="TSG samples per RefVOS sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--seg-prompt-std", type=float, default=SEG_PROMPT_STD, help="scale of the random base's [SEG] projection"
    )
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU version")
    args = parser.parse_args()

    from momentseg.data.synthetic import SyntheticOptions, generate
    from momentseg.model.tiny import MINI_SAM2_CONFIG, write_tiny_checkpoint

    out = Path(args.out)
    options = SyntheticOptions(
        frames=args.frames,
        distractors=args.distractors,
        actions=SHIPPED_ACTIONS,
        distractor_actions=args.distractor_actions,
    )
    data = generate(out / "data", args.train_clips, args.test_clips, args.seed, options)
    base = write_tiny_checkpoint(
        out / "base_sa2va",
        "sa2va",
        args.seed,
        sam2_config=MINI_SAM2_CONFIG,
        initializer_range=INITIALIZER_RANGE,
        seg_prompt_std=args.seg_prompt_std,
    )

    start = time.perf_counter()
    steps = ["--max-steps", str(args.steps)] if args.steps else []
    momentseg(
        "train",
        "--config",
        str(args.config),
        "--base",
        str(base),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--data",
        f"charades-sta={data / 'charades-sta'}:{args.tsg_weight}",
        "--data",
        f"mevis={data / 'mevis'}",
        "--out",
        str(out / "train"),
        "--quiet",
        *steps,
    )
    train_seconds = time.perf_counter() - start
    shipped = ship(out / "train" / "checkpoint", Path(args.ship or out / "shipped"))

    device = ["--device", args.device]
    # the random base is scored on the first 16 expressions only: it has nothing to show beyond chance
    before = evaluate(
        base, data, out / "eval_base", args.frames, args.config, "--force-answer", "--limit", "16", *device
    )
    after = evaluate(shipped, data, out / "eval_shipped", args.frames, args.config, *device)

    log = [json.loads(line) for line in (out / "train" / "train_log.jsonl").read_text().splitlines()]
    tenth = max(len(log) // 10, 1)
    print(f"training: {len(log)} steps in {train_seconds:.0f} s on {os.cpu_count()} CPU cores")
    for key in ("loss", "loss_text", "loss_find", "loss_mask"):
        first = [r[key] for r in log[:tenth] if r[key] is not None]
        last = [r[key] for r in log[-tenth:] if r[key] is not None]
        print(
            f"  {key:<10} first 10 %: {sum(first) / max(len(first), 1):.3f}   "
            f"last 10 %: {sum(last) / max(len(last), 1):.3f}"
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
