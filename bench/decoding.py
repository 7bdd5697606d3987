"""Decodes per frame, and time per frame forward vs backward, on a long-GOP H.264 file.

Encodes a synthetic clip with PyAV (libx264, one keyframe every ``--gop`` frames), then reads it through
the frame store the way a run does: the TSG pass (100 frames spread over the video), the forward sweep
from c* to the end, the backward sweep from c* to the start, then the overlay pass. Prints decodes per
frame and milliseconds per frame of each sweep, for a cache that holds the whole clip and for one that
spills to disk. Then a sweep through SAM2's input view (resize to 1024², normalise) with a stand-in model
of ``--model-ms`` per frame: the host time left in series with the model, with and without prefetch.
Last, for contrast, what seeking the file per frame costs in a backward sweep (the old way).

Run: .venv/bin/python -m bench.decoding [--frames 600] [--size 720x1280] [--gop 250]
"""

import argparse
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

from momentseg.video import VideoFile, open_video

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def synthetic_frame(index, count, height, width):
    """A textured background with a disc crossing it: something for the encoder to spend bits on."""
    y, x = np.mgrid[:height, :width]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (x + 2 * index) % 256
    frame[..., 1] = (y + index) % 256
    frame[..., 2] = 90
    cv2.circle(frame, (int(index / max(count - 1, 1) * (width - 1)), height // 2), height // 8, (230, 40, 40), -1)
    return frame


def write_long_gop_h264(path, count, height, width, gop, fps=30):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": "veryfast"})
        stream.height, stream.width, stream.pix_fmt, stream.gop_size = height, width, "yuv420p", gop
        stream.codec_context.options = {"preset": "veryfast", "keyint_min": str(gop), "sc_threshold": "0"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(index, count, height, width), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def timed(indices, read):
    start = time.perf_counter()
    for index in indices:
        read(index)
    return (time.perf_counter() - start) / max(len(indices), 1) * 1000


def run_sweeps(path, count, cache_bytes):
    """A run's access order through a fresh store, then a plain forward and backward sweep through another."""
    center = count // 2
    with open_video(path, cache_bytes=cache_bytes) as store:
        tsg = np.unique(np.linspace(0, count - 1, min(count, 100)).round().astype(int))
        row = {
            "tsg": timed(tsg, store.__getitem__),
            "run_forward": timed(range(center, count), store.__getitem__),
            "run_backward": timed(range(center - 1, -1, -1), store.__getitem__),
            "overlay": timed(range(count), store.__getitem__),
        }
        row["decodes_per_frame"] = store.decodes / count
        assert store.source.decodes == store.decodes  # the codec's own count agrees: nothing seeks
        row["spill_mb"] = store.spill_bytes / 2**20
    with open_video(path, cache_bytes=cache_bytes) as store:
        row["forward"] = timed(range(count), store.__getitem__)
        row["backward"] = timed(range(count - 1, -1, -1), store.__getitem__)
        row["sweep_decodes_per_frame"] = store.decodes / count
    return row


def sam2_input(frame, size=1024):
    square = cv2.resize(frame, (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    return ((square - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)


def host_time_beside_model(path, count, cache_bytes, model_ms, prefetch):
    """Wall ms per frame minus the stand-in model's ms, over a backward sweep through SAM2's input view."""
    with open_video(path, cache_bytes=cache_bytes, prefetch=prefetch) as store:
        for index in range(count):  # the TSG pass has decoded the video before propagation starts
            store[index]
        view = store.view("sam2-1024", sam2_input)
        start = time.perf_counter()
        for index in range(count - 1, -1, -1):
            view[index]
            time.sleep(model_ms / 1000)
        return (time.perf_counter() - start) / count * 1000 - model_ms


def seek_per_frame(path, count, samples=10):
    """The old backward sweep: each frame read by seeking the file (decodes from the keyframe before it)."""
    video = VideoFile(path)
    last = min(count - 1, 249)
    video[last]
    indices = list(range(last - 1, max(last - 1 - samples, -1), -1))
    before = video.decodes
    ms = timed(indices, video.__getitem__)
    video.close()
    return ms, (video.decodes - before) / len(indices)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--size", default="720x1280", help="HxW")
    parser.add_argument("--gop", type=int, default=250)
    parser.add_argument("--spill-cache-mb", type=int, default=128, help="a cache smaller than the clip")
    parser.add_argument("--model-ms", type=float, default=40.0, help="stand-in model time per frame")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        start = time.perf_counter()
        write_long_gop_h264(path, args.frames, height, width, args.gop)
        print(
            f"{args.frames} frames {width}x{height} H.264, GOP {args.gop}: encoded in "
            f"{time.perf_counter() - start:.1f}s, {path.stat().st_size / 2**20:.1f} MiB"
        )
        with av.open(str(path)) as container:
            keyframes = sum(packet.is_keyframe for packet in container.demux(container.streams.video[0]))
        print(f"keyframes in the file: {keyframes}\n")
        frame_bytes = height * width * 3
        print("a run's order (TSG pass, forward from c*, backward from c*, overlay), ms per frame read:")
        print(
            f"{'cache':>12} {'decodes/frame':>14} {'TSG':>7} {'forward':>8} {'backward':>9} {'overlay':>8} "
            f"{'spill MiB':>10}"
        )
        rows = {}
        for label, cache in (
            ("whole clip", args.frames * frame_bytes * 2),
            (f"{args.spill_cache_mb} MiB", args.spill_cache_mb << 20),
        ):
            row = rows[label] = run_sweeps(path, args.frames, cache)
            print(
                f"{label:>12} {row['decodes_per_frame']:>14.2f} {row['tsg']:>7.2f} {row['run_forward']:>8.2f} "
                f"{row['run_backward']:>9.2f} {row['overlay']:>8.2f} {row['spill_mb']:>10.1f}"
            )
        print("\na fresh store swept front to back (decoding) then back to front, ms per frame:")
        print(f"{'cache':>12} {'decodes/frame':>14} {'forward':>8} {'backward':>9} {'bwd/fwd':>8}")
        for label, row in rows.items():
            print(
                f"{label:>12} {row['sweep_decodes_per_frame']:>14.2f} {row['forward']:>8.2f} "
                f"{row['backward']:>9.2f} {row['backward'] / row['forward']:>8.2f}"
            )
        print(
            f"\nSAM2 input view (1024², normalised), backward sweep beside a {args.model_ms:.0f} ms stand-in "
            f"model, {args.spill_cache_mb} MiB cache: host ms per frame in series with the model"
        )
        for prefetch in (0, 4):
            extra = host_time_beside_model(path, args.frames, args.spill_cache_mb << 20, args.model_ms, prefetch)
            print(f"  prefetch {prefetch}: {extra:.2f} ms")
        ms, decodes = seek_per_frame(path, args.frames)
        print(
            f"\nfor contrast, seeking per frame backward inside a GOP: {ms:.1f} ms/frame, {decodes:.0f} decodes/frame"
        )


if __name__ == "__main__":
    main()
