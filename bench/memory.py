"""Host memory and per-stage timings of the whole pipeline on long synthetic videos (tiny model, CPU).

Prints peak RSS against the number of frames: it must stay flat in T because frames and their SAM2
inputs live in the frame store's byte-bounded cache and SAM2's tracked memory is pruned. Each length
runs in a fresh process so peaks don't mix. With ``--h264`` the frames come from an H.264 file (long
GOP) through the frame store, which then decodes each frame once and spills what its cache evicts.

Run: .venv/bin/python -m bench.memory [--frames 250 500 1000 2000] [--size 720x1280] [--h264]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

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


def run_one(frames, height, width, checkpoint, video_file=None):
    from momentseg.model.checkpoint import load_checkpoint
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions
    from momentseg.video import as_store, open_video

    model = load_checkpoint(checkpoint, device="cpu")
    # teacher-forced "[SEG]": random weights would rarely say it, and then nothing would be propagated
    options = SegmentOptions(force_answer=True)
    with open_video(video_file) if video_file else as_store(SyntheticVideo(frames, height, width)) as store:
        result = MomentSegPipeline(model).run(store, "the red ball", options)
        row = {
            "frames": frames,
            "decodes_per_frame": round(store.decodes / frames, 2),
            "spill_mb": round(store.spill_bytes / 2**20),
        }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({**row, "peak_rss_mb": round(peak_mb), "timings": result.timings}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--size", default="720x1280", help="HxW of the synthetic frames")
    parser.add_argument("--h264", action="store_true", help="read the frames from an H.264 file (GOP 250)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--video-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    if args.one:
        run_one(args.frames[0], height, width, args.checkpoint, args.video_file)
        return
    from bench.decoding import write_long_gop_h264
    from momentseg.model.tiny import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = write_tiny_checkpoint(Path(folder) / "checkpoint")
        print(f"{'frames':>7} {'peak RSS MB':>12} {'decodes/frame':>14} {'spill MB':>9}  stage timings (s)")
        for frames in args.frames:
            command = [
                sys.executable,
                "-m",
                "bench.memory",
                "--one",
                "--frames",
                str(frames),
                "--size",
                args.size,
                "--checkpoint",
                str(checkpoint),
            ]
            if args.h264:
                video = write_long_gop_h264(Path(folder) / f"{frames}.mp4", frames, height, width, 250)
                command += ["--video-file", str(video)]
            out = (
                subprocess.run(
                    command,
                    check=True,
                    capture_output=True,
                    text=True,
                    cwd=Path(__file__).parents[1],
                    env={"TQDM_DISABLE": "1", **os.environ},
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            row = json.loads(out)
            print(
                f"{row['frames']:>7} {row['peak_rss_mb']:>12} {row['decodes_per_frame']:>14} {row['spill_mb']:>9}  "
                f"{json.dumps(row['timings'])}"
            )


if __name__ == "__main__":
    main()
