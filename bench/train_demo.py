"""A demo that learns: train the tiny MomentSeg architecture on synthetic clips on a CPU, and print
J&F (MeViS averaging) and R@0.5 / mIoU (Charades-STA) on held-out clips before and after.

Run: .venv/bin/python -m bench.train_demo --out demo_run [--steps 2000]
The trained checkpoint is written to OUT/train/checkpoint and loads like any other
(``momentseg segment CLIP --checkpoint OUT/train/checkpoint --prompt "the red circle appears"``).

Evaluation decodes every frame with the [SEG] prompt (``keyframes`` = clip length): the tiny model's
SAM2 memory layers are random and not trained here, so propagated frames would measure those, not what
was learnt. The answers are teacher-forced ("It is [FIND]." / "It is [SEG].", the spec's design): a tiny
random language model takes far longer to learn to choose between them from the question than to ground
and segment.

Demo-only settings (not the official defaults of TrainConfig): TSG:RefVOS samples 8:1 (a TSG step costs
≈ 0.035 s, a RefVOS step ≈ 0.4 s), L_find weight 2 and λ_p 1 (with the official 1 and 2 the similarity
stays above θ after the motion and moments come out too long). Measured on 2 shared cores, 2000 steps in
≈ 140 s: J&F 0.973 / 0.979, R@0.5 0.925 / 0.975, mIoU 0.697 / 0.778 (seeds 0 / 1; ≈ 0.07-0.24 J&F and
0 R@0.5 before); the official settings gave R@0.5 0.63 in 12 min. Details in docs/training.md § 8.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")


def evaluate_both(checkpoint: Path, data: Path, out: Path, frames: int) -> dict:
    from momentseg.evaluate import EvalOptions, evaluate

    options = EvalOptions(method={"keyframes": frames, "force_answer": True}, progress=False)
    refvos = evaluate(str(checkpoint), f"mevis={data / 'mevis'}", out / "mevis", options)["summary"]
    tsg = evaluate(str(checkpoint), f"charades-sta={data / 'charades-sta'}", out / "charades", options)["summary"]
    return {
        "J&F": refvos.get("J&F", 0.0) / 100,
        "J": refvos.get("J", 0.0) / 100,
        "F": refvos.get("F", 0.0) / 100,
        "R@0.5": tsg["R@0.5"] / 100,
        "mIoU": tsg["mIoU"] / 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_run")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--train-clips", type=int, default=300)
    parser.add_argument("--test-clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--actions", nargs="+", default=["moves"])
    parser.add_argument("--distractors", type=int, default=0)
    parser.add_argument("--tsg-weight", type=float, default=8.0, help="share of TSG samples relative to RefVOS")
    parser.add_argument("--positive-weight", type=float, default=1.0, help="λ_p of L_find (official: 2)")
    parser.add_argument("--find-weight", type=float, default=2.0, help="weight of L_find in the loss (official: 1)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from momentseg.data.synthetic import SyntheticOptions, generate
    from momentseg.model.tiny import write_tiny_checkpoint
    from momentseg.train.config import TrainConfig
    from momentseg.train.loop import train

    out = Path(args.out)
    data = generate(
        out / "data",
        args.train_clips,
        args.test_clips,
        args.seed,
        SyntheticOptions(frames=args.frames, actions=tuple(args.actions), distractors=args.distractors),
    )
    base = write_tiny_checkpoint(out / "base_sa2va", "sa2va", args.seed)
    untrained = write_tiny_checkpoint(out / "untrained_official", "official", args.seed)

    start = time.perf_counter()
    before = evaluate_both(untrained, data, out / "eval_before", args.frames)
    eval_seconds = time.perf_counter() - start

    config = TrainConfig(
        base=str(base),
        data=[f"charades-sta={data / 'charades-sta'}:{args.tsg_weight}", f"mevis={data / 'mevis'}"],
        out=str(out / "train"),
        device="cpu",
        max_steps=args.steps,
        batch_size=1,
        lr=args.lr,
        warmup_ratio=0.05,
        save_every=max(args.steps // 4, 1),
        num_workers=1,
        seed=args.seed,
        lora_rank=32,
        lora_alpha=64,
        positive_weight=args.positive_weight,
        find_weight=args.find_weight,
        tsg_frames=args.frames,
        temporal_frames=args.frames // 2,
        tsg_min_pixels=4 * 4 * 28 * 28,
        tsg_pixels=4 * 4 * 28 * 28,
        temporal_min_pixels=4 * 28 * 28,
        temporal_pixels=4 * 28 * 28,
        image_min_pixels=4 * 4 * 28 * 28,
        image_pixels=4 * 4 * 28 * 28,
        mask_points=64 * 64,
        answer_variants="first",
    )
    start = time.perf_counter()
    checkpoint = train(config, progress=False)
    train_seconds = time.perf_counter() - start
    after = evaluate_both(checkpoint, data, out / "eval_after", args.frames)

    log = [json.loads(line) for line in (out / "train" / "train_log.jsonl").read_text().splitlines()]
    first, last = log[: max(len(log) // 10, 1)], log[-max(len(log) // 10, 1) :]

    def mean(rows, key):
        values = [r[key] for r in rows if r[key] is not None]
        return sum(values) / max(1, len(values))

    print(
        f"training: {len(log)} steps in {train_seconds:.0f} s on {os.cpu_count()} CPU cores "
        f"({train_seconds / len(log):.2f} s/step); evaluation of {args.test_clips} clips: {eval_seconds:.0f} s"
    )
    for key in ("loss", "loss_text", "loss_find", "loss_mask"):
        print(f"  {key:<10} first 10 %: {mean(first, key):.3f}   last 10 %: {mean(last, key):.3f}")
    print(f"{'held-out':<10} {'J&F':>6} {'J':>6} {'F':>6} {'R@0.5':>6} {'mIoU':>6}")
    for name, row in (("before", before), ("after", after)):
        print(f"{name:<10} " + " ".join(f"{row[k]:>6.3f}" for k in ("J&F", "J", "F", "R@0.5", "mIoU")))
    print(f"checkpoint: {checkpoint}")
    clip, sentence = first_held_out_expression(data / "mevis" / "valid_u")
    print(
        f"try it: momentseg segment {clip} --prompt {sentence!r} --checkpoint {checkpoint} --force-answer "
        f"--out {out / 'segment'}"
    )


def first_held_out_expression(split: Path) -> tuple[Path, str]:
    """A held-out clip and its sentence, for the command the demo ends with."""
    videos = json.loads((split / "meta_expressions.json").read_text())["videos"]
    name = sorted(videos)[0]
    expression = next(iter(videos[name]["expressions"].values()))["exp"]
    return split / "JPEGImages" / name, expression


if __name__ == "__main__":
    main()
