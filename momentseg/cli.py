"""The ``momentseg`` command line."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from momentseg.errors import MomentSegError


def _demo_similarity(num_frames: int, seed: int) -> np.ndarray:
    """A synthetic frame-query similarity: noise plus one bump where the 'action' happens."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_frames)
    center, width = 0.6 * num_frames, 0.08 * num_frames
    return np.clip(0.15 + 0.8 * np.exp(-0.5 * ((t - center) / width) ** 2) + 0.05 * rng.standard_normal(num_frames), 0, 1)


def _run_demo(args: argparse.Namespace) -> int:
    from momentseg.grounding import moment_seconds, predict_moment
    from momentseg.sampling import SAMPLERS, moment_center, moment_window

    similarity = _demo_similarity(args.frames, args.seed)
    center = moment_center(similarity, args.keyframes)
    window = moment_window(similarity, args.keyframes)
    start, end = predict_moment(similarity, center, args.threshold, window=window[1] - window[0] + 1)
    result = {
        "frames": args.frames,
        "center_frame": center,
        "keyframes": {name: SAMPLERS[name](similarity, args.keyframes).tolist() for name in SAMPLERS},
        "moment": {"start_frame": start, "end_frame": end, **dict(zip(("start_sec", "end_sec"), moment_seconds(start, end, args.fps)))},
    }
    print(f"frames {args.frames}, moment centre c* = {center}")
    print(f"moment: frames {start}-{end} ({result['moment']['start_sec']:.2f}s-{result['moment']['end_sec']:.2f}s)")
    for name, frames in result["keyframes"].items():
        print(f"{name:>9}: {json.dumps(frames)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="momentseg", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run MCS and moment prediction on a synthetic similarity curve")
    demo.add_argument("--frames", type=int, default=300)
    demo.add_argument("--keyframes", type=int, default=8)
    demo.add_argument("--threshold", type=float, default=0.4)
    demo.add_argument("--fps", type=float, default=30.0)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MomentSegError as error:
        print(f"momentseg: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
