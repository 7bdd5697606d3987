"""What a person looks at: mask overlays on the video and the frame-query similarity plot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from momentseg.result import SegmentResult
from momentseg.video import FrameSource

MASK_COLOUR = np.array([255, 64, 32], np.float32)


def write_overlay_video(frames: FrameSource, result: SegmentResult, path: str | Path, max_side: int = 960) -> Path:
    """An MP4 of the video with the mask tinted in and keyframes / the moment marked."""
    path = Path(path)
    scale = min(1.0, max_side / max(result.width, result.height))
    size = (max(2, round(result.width * scale) // 2 * 2), max(2, round(result.height * scale) // 2 * 2))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), result.fps, size)
    track = result.tracks[0] if result.tracks else None
    keyframes = set(result.keyframes)
    try:
        for index in range(result.num_frames):
            frame = frames[index].astype(np.float32)
            if track is not None:
                mask = track.mask(index, result.width, result.height)
                frame[mask] = 0.5 * frame[mask] + 0.5 * MASK_COLOUR
            image = cv2.resize(cv2.cvtColor(frame.astype(np.uint8), cv2.COLOR_RGB2BGR), size)
            label = f"{index}"
            if result.moment and result.moment.start_frame <= index <= result.moment.end_frame:
                label += " moment"
            if index in keyframes:
                label += " keyframe"
            cv2.putText(image, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            writer.write(image)
    finally:
        writer.release()
    return path


def write_similarity_plot(result: SegmentResult, path: str | Path, width: int = 900, height: int = 300) -> Path:
    """A PNG of s over frames, the θ line, the moment shaded and the keyframes as ticks."""
    path = Path(path)
    canvas = np.full((height, width, 3), 255, np.uint8)
    margin = 30
    plot_w, plot_h = width - 2 * margin, height - 2 * margin
    total = max(result.num_frames - 1, 1)

    def x_of(frame: float) -> int:
        return margin + round(frame / total * plot_w)

    def y_of(value: float) -> int:
        return margin + round((1 - value) * plot_h)

    if result.moment:
        cv2.rectangle(canvas, (x_of(result.moment.start_frame), margin), (x_of(result.moment.end_frame), margin + plot_h),
                      (200, 235, 200), -1)
    threshold = result.options.get("threshold", 0.4)
    cv2.line(canvas, (margin, y_of(threshold)), (margin + plot_w, y_of(threshold)), (160, 160, 160), 1)
    if result.similarity is not None:
        points = np.array([[x_of(i), y_of(v)] for i, v in enumerate(result.similarity)], np.int32)
        cv2.polylines(canvas, [points.reshape(-1, 1, 2)], False, (200, 80, 0), 2)
    for frame in result.keyframes:
        cv2.line(canvas, (x_of(frame), margin + plot_h), (x_of(frame), margin + plot_h - 15), (0, 0, 220), 2)
    cv2.line(canvas, (x_of(result.center_frame), margin), (x_of(result.center_frame), margin + plot_h), (0, 0, 120), 1)
    cv2.rectangle(canvas, (margin, margin), (margin + plot_w, margin + plot_h), (0, 0, 0), 1)
    title = "frame-query similarity" if result.similarity is not None else "no [FIND] head: no similarity"
    cv2.putText(canvas, title, (margin, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    cv2.imwrite(str(path), canvas)
    return path
