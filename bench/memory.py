"""Host memory and per-stage timings of the whole pipeline on long synthetic videos (tiny model, CPU).

Prints peak RSS against the number of frames: it must stay flat in T because frames are decoded per
visit and SAM2's tracked memory is pruned. Each length runs in a fresh process so peaks don't mix.

Run: .venv/bin/python bench/memory.py [--frames 250 500 1000 2000] [--size 720x1280]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile

import numpy as np


class SyntheticVideo:
    """A moving disc rendered on demand: T frames of any size without holding them."""

    def __init__(self, count, height, width, fps=30.0):
        self.count, self.height, self.width, self.fps = count, height, width, fps
        self.names = [f"{i:05d}" for i in range(count)]

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        import cv2

        frame = np.full((self.height, self.width, 3), 80, np.uint8)
        x = int((index / max(self.count - 1, 1)) * (self.width - 1))
        cv2.circle(frame, (x, self.height // 2), self.height // 8, (230, 40, 40), -1)
        return frame


def run_one(frames, height, width, checkpoint):
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions

    model = load_checkpoint(checkpoint, device="cpu")
    result = MomentSegPipeline(model).run(SyntheticVideo(frames, height, width), "the red ball", SegmentOptions())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "peak_rss_mb": round(peak_mb), "timings": result.timings}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--size", default="720x1280", help="HxW of the synthetic frames")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    if args.one:
        run_one(args.frames[0], height, width, args.checkpoint)
        return
    from momentseg.model.tiny import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_tiny_checkpoint(folder)
        print(f"{'frames':>7} {'peak RSS MB':>12}  stage timings (s)")
        for frames in args.frames:
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--frames", str(frames), "--size", args.size,
                 "--checkpoint", str(checkpoint)],
                check=True, capture_output=True, text=True, env={"TQDM_DISABLE": "1", **__import__("os").environ},
            ).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            print(f"{row['frames']:>7} {row['peak_rss_mb']:>12}  {json.dumps(row['timings'])}")


if __name__ == "__main__":
    main()
