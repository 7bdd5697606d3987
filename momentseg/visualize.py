"""What a person looks at: the mask overlay video (H.264, plays in a browser) and the similarity plot."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from momentseg.result import SegmentResult, shape_mask
from momentseg.video import FrameSource

MASK_RGB = np.array([255, 64, 32], np.uint8)
MOMENT_RGB = (60, 200, 90)
KEYFRAME_RGB = (255, 210, 0)
CENTER_RGB = (255, 255, 255)
TIMELINE_HEIGHT = 10
# browsers' <video> decode H.264 in yuv420p only; x264 where PyAV has it, else FFmpeg's own H.264 encoder
H264_ENCODER: Literal["libx264", "h264"] = "libx264" if "libx264" in av.codecs_available else "h264"


def overlay_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled to fit ``max_side``, both even as yuv420p needs."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale) // 2 * 2), max(2, round(height * scale) // 2 * 2)


def overlay_frame(
    frame: np.ndarray, mask: np.ndarray | None, index: int, result: SegmentResult, size: tuple[int, int]
) -> np.ndarray:
    """One RGB frame at ``size``: the mask tinted in, the frame's place in the moment and a timeline."""
    image = frame.copy() if frame.shape[1::-1] == size else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    if mask is not None:
        small = cv2.resize(mask.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).view(bool)
        image[small] = image[small] // 2 + MASK_RGB // 2  # half and half, in uint8 without overflow
    width, height = size
    keyframe = index in result.keyframes
    in_moment = result.moment is not None and result.moment.start_frame <= index <= result.moment.end_frame
    if keyframe:
        cv2.rectangle(image, (1, 1), (width - 2, height - 2), KEYFRAME_RGB, 3)
    label = f"frame {index}  {index / result.fps:.2f}s"
    label += ("  moment" if in_moment else "") + ("  keyframe" if keyframe else "")
    (text_width, text_height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.55, 1)
    cv2.rectangle(image, (4, 4), (12 + text_width, 12 + text_height + baseline), (0, 0, 0), -1)
    cv2.putText(image, label, (8, 8 + text_height), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    _draw_timeline(image, index, result)
    return image


def _draw_timeline(image: np.ndarray, index: int, result: SegmentResult) -> None:
    """A strip along the bottom: the moment, the keyframes, c* and where this frame is."""
    height, width = image.shape[:2]
    top = height - TIMELINE_HEIGHT
    last = max(result.num_frames - 1, 1)

    def x_of(frame: int) -> int:
        return round(frame / last * (width - 1))

    image[top:] = (image[top:] * 0.35).astype(np.uint8)
    if result.moment is not None:
        cv2.rectangle(
            image, (x_of(result.moment.start_frame), top), (x_of(result.moment.end_frame), height - 1), MOMENT_RGB, -1
        )
    for keyframe in result.keyframes:
        cv2.line(image, (x_of(keyframe), top), (x_of(keyframe), height - 1), KEYFRAME_RGB, 1)
    cv2.line(image, (x_of(result.center_frame), top), (x_of(result.center_frame), height - 1), CENTER_RGB, 1)
    cv2.rectangle(image, (x_of(index) - 1, top - 3), (x_of(index) + 1, height - 1), (255, 0, 0), -1)


def write_overlay_video(frames: FrameSource, result: SegmentResult, path: str | Path, max_side: int = 960) -> Path:
    """``overlay.mp4``: H.264 yuv420p at even dimensions with the moov atom first, so a browser plays it."""
    path = Path(path)
    size = overlay_size(result.width, result.height, max_side)
    shapes = {shape.frame: shape for shape in result.tracks[0].shapes} if result.tracks else {}
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(
            H264_ENCODER,
            rate=Fraction(result.fps).limit_denominator(1001),
            options={"preset": "veryfast", "crf": "23"} if H264_ENCODER == "libx264" else {},
        )
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(result.num_frames):
            shape = shapes.get(index)
            mask = shape_mask(shape, result.width, result.height) if shape is not None else None
            image = overlay_frame(frames[index], mask, index, result, size)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def similarity_figure(result: SegmentResult) -> Figure:
    """s over frames (seconds on the top axis), θ, the moment shaded, keyframes and c* marked."""
    figure = Figure(figsize=(10, 3.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    frames = np.arange(result.num_frames)
    threshold = result.options.get("threshold", 0.4)
    if result.moment is not None:
        axes.axvspan(
            result.moment.start_frame,
            result.moment.end_frame,
            color="tab:green",
            alpha=0.2,
            label=f"moment {result.moment.start_sec:.2f}–{result.moment.end_sec:.2f} s",
        )
    if result.similarity is not None:
        similarity = np.asarray(result.similarity)
        axes.plot(frames, similarity, color="tab:blue", label="similarity s")
        axes.axhline(threshold, color="grey", linestyle="--", label=f"θ = {threshold:g}")
        axes.plot(result.keyframes, similarity[result.keyframes], "v", color="tab:orange", label="keyframes")
        axes.set_title("frame-query similarity")
    else:
        axes.plot(result.keyframes, np.zeros(len(result.keyframes)), "v", color="tab:orange", label="keyframes")
        axes.set_title("no [FIND] head: no similarity, keyframes sampled uniformly")
    axes.axvline(result.center_frame, color="tab:red", label=f"c* = {result.center_frame}")
    axes.set_xlim(0, max(result.num_frames - 1, 1))
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("frame")
    axes.set_ylabel("similarity")
    fps = result.fps
    seconds = axes.secondary_xaxis("top", functions=(lambda f: np.asarray(f) / fps, lambda s: np.asarray(s) * fps))
    seconds.set_xlabel("seconds")
    figure.legend(loc="outside right upper", fontsize="small")  # outside: never hides the curve
    return figure


def write_similarity_plot(result: SegmentResult, path: str | Path) -> Path:
    """A PNG of :func:`similarity_figure`."""
    path = Path(path)
    figure = similarity_figure(result)
    FigureCanvasAgg(figure)
    figure.savefig(path)
    return path
