"""Where TSG benchmarks keep their videos: a video file, or frames pre-decoded at 1 FPS (the official eval)."""

from __future__ import annotations

from pathlib import Path

from momentseg.data.entries import DataError, open_video_file
from momentseg.video import FrameFolder, FrameSource

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".avi", ".mov")
FRAMES_1FPS_DIR = "videos_1FPS"


def locate_video(root: Path, video_dirs: tuple[str, ...], video_id: str, entry: str) -> Path:
    """The file (or 1-FPS frame folder) of ``video_id``; a DataError listing where it was looked for."""
    candidates = [root / FRAMES_1FPS_DIR / video_id]
    candidates += [root / d / f"{video_id}{s}" for d in video_dirs for s in VIDEO_SUFFIXES]
    for path in candidates:
        if path.exists():
            return path
    looked = ", ".join(str(root / d) for d in (FRAMES_1FPS_DIR, *video_dirs))
    raise DataError(f"{entry}: no video '{video_id}' ({'/'.join(VIDEO_SUFFIXES)} or a 1-FPS frame folder) in {looked}")


def video_opener(path: Path, entry: str):
    """A zero-argument function that opens the video lazily."""

    def open_frames() -> FrameSource:
        if path.is_dir():
            try:
                return FrameFolder(path, fps=1.0)
            except ValueError as error:
                raise DataError(f"{entry}: {error}") from None
        return open_video_file(path, entry)

    return open_frames
