"""Where a run's wall time goes: LMM passes, SAM2, frames, masks, encoding, outputs (tiny model, CPU).

Runs the whole pipeline once on an H.264 file through the frame store and splits the run's wall time
by timing the model's forward passes and the host work around them (hooks and wrappers installed for the
measurement only; the code that runs is the product's). "Outside the models" is everything but the LMM,
the heads and SAM2; the goal is at most 5 % of wall time. The tiny model makes the models cheap, so the
share printed here is an upper bound of what a full-size model would see; ``bench/gpu.py`` prints the
same breakdown for the full-size model on a GPU.

Run: .venv/bin/python -m bench.stages [--frames 120] [--size 720x1280] [--gop 250]
"""

import argparse
import functools
import json
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

MODEL_CATEGORIES = ("LMM", "heads", "SAM2")


class StageClock:
    """Main-thread wall time per category; a region nested in another timed region counts for the outer one."""

    def __init__(self, sync=None):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._sync = sync or (lambda: None)
        self._active = threading.local()
        self._undo: list = []

    def _enter(self):
        if threading.current_thread() is not threading.main_thread() or getattr(self._active, "on", False):
            return None
        self._sync()
        self._active.on = True
        return time.perf_counter()

    def _exit(self, category, start):
        if start is None:
            return
        self._sync()
        self.seconds[category] += time.perf_counter() - start
        self.calls[category] += 1
        self._active.on = False

    def wrap(self, owner, name, category):
        """Time every call of ``owner.name`` (a function, method or class attribute); absent names are skipped."""
        original = getattr(owner, name, None)
        if original is None:
            return
        clock = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            start = clock._enter()
            try:
                return original(*args, **kwargs)
            finally:
                clock._exit(category, start)

        had_own = name in vars(owner) if hasattr(owner, "__dict__") else False
        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original) if had_own else delattr(owner, name))

    def hook(self, module, category):
        """Time every forward of an ``nn.Module``."""
        if module is None:
            return
        starts = []
        handles = [
            module.register_forward_pre_hook(lambda *_: starts.append(self._enter())),
            module.register_forward_hook(lambda *_: self._exit(category, starts.pop())),
        ]
        self._undo.extend(handle.remove for handle in handles)

    def restore(self):
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()


def instrument(clock, model, store):
    """Install the timers for one run of ``model`` over ``store``."""
    import momentseg.model.lmm as lmm
    import momentseg.model.sam2_tracker as sam2_tracker
    import momentseg.pipeline as pipeline

    clock.hook(model.lmm.model.model, "LMM")
    clock.hook(model.lmm.model.lm_head, "LMM")
    clock.hook(model.seg_projector, "heads")
    clock.hook(model.find_head, "heads")
    clock.wrap(model.predictor, "forward_image", "SAM2")
    clock.wrap(model.predictor, "track_step", "SAM2")
    # SAM2's input (resize, normalise) is a view of the store: its cost shows under frames
    clock.wrap(store, "_item", "frames (decode waits, spill reads, views)")
    for name in ("normalized_frame", "vision_patches", "downscale_to_budget"):
        clock.wrap(lmm, name, "frames to LMM input (resize, patches)")
    clock.wrap(pipeline, "downscale_to_budget", "frames to LMM input (resize, patches)")
    clock.wrap(sam2_tracker.Sam2Tracker, "video_mask", "masks to video resolution")
    clock.wrap(pipeline, "_encode", "masks encoded (RLE / polygons)")


def timed_decoder(video):
    """Wrap a VideoFile's sequential decoding to measure the decoder thread's time (it overlaps the run)."""
    spent = [0.0]
    original = video.iter_frames

    def iter_frames():
        frames = original()
        while True:
            start = time.perf_counter()
            frame = next(frames, None)
            spent[0] += time.perf_counter() - start
            if frame is None:
                return
            yield frame

    video.iter_frames = iter_frames
    return spent


def report(clock, wall, timings, extra_rows=()):
    """Print the breakdown; returns the share of wall time outside the models."""
    print(f"pipeline stages (s): {json.dumps(timings)}")
    print(f"\n{'where the wall time goes':<46} {'s':>8} {'%':>6} {'calls':>7}")
    accounted = 0.0
    for category, seconds in sorted(clock.seconds.items(), key=lambda item: -item[1]):
        accounted += seconds
        print(f"{category:<46} {seconds:>8.3f} {100 * seconds / wall:>6.1f} {clock.calls[category]:>7}")
    other = wall - accounted
    print(f"{'other host work (pipeline, BAP, Python)':<46} {other:>8.3f} {100 * other / wall:>6.1f}")
    print(f"{'total (pipeline.run)':<46} {wall:>8.3f} {100.0:>6.1f}")
    models = sum(clock.seconds.get(category, 0.0) for category in MODEL_CATEGORIES)
    outside = 1 - models / wall
    print(f"\noutside the models: {100 * outside:.1f} % of wall time (goal ≤ 5 %)")
    for label, value in extra_rows:
        print(f"{label:<46} {value}")
    return outside


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--size", default="720x1280", help="HxW")
    parser.add_argument("--gop", type=int, default=250)
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    from bench.decoding import write_long_gop_h264
    from momentseg.model.tiny import build_tiny_model
    from momentseg.pipeline import MomentSegPipeline, SegmentOptions
    from momentseg.video import FrameStore, VideoFile
    from momentseg.visualize import write_overlay_video, write_similarity_plot

    height, width = (int(v) for v in args.size.split("x"))
    model = build_tiny_model()
    with tempfile.TemporaryDirectory() as folder:
        path = write_long_gop_h264(Path(folder) / "clip.mp4", args.frames, height, width, args.gop)
        video = VideoFile(path)
        decoding = timed_decoder(video)
        store = FrameStore(video)
        clock = StageClock()
        instrument(clock, model, store)
        start = time.perf_counter()
        # teacher-forced answers, as in bench/gpu.py: random weights would generate max_new_tokens
        result = MomentSegPipeline(model).run(store, "the red ball", SegmentOptions(force_answer=True))
        wall = time.perf_counter() - start
        clock.restore()
        outputs = {}
        start = time.perf_counter()
        (Path(folder) / "result.json").write_text(json.dumps(result.to_dict()))
        outputs["result.json"] = time.perf_counter() - start
        start = time.perf_counter()
        write_overlay_video(store, result, Path(folder) / "overlay.mp4")
        outputs["overlay.mp4"] = time.perf_counter() - start
        start = time.perf_counter()
        write_similarity_plot(result, Path(folder) / "similarity.png")
        outputs["similarity.png"] = time.perf_counter() - start
        print(
            f"{args.frames} frames {width}x{height} H.264 (GOP {args.gop}), tiny random-weight model, CPU, "
            f"{store.decodes / args.frames:.2f} decodes per frame"
        )
        report(
            clock,
            wall,
            result.timings,
            [
                ("decoder thread, overlapped (s)", f"{decoding[0]:.3f}"),
                *((f"after the run: {name} (s)", f"{seconds:.3f}") for name, seconds in outputs.items()),
            ],
        )
        store.close()


if __name__ == "__main__":
    main()
