"""Frame sources: a folder of images, a video file, or frames in memory, decoded lazily per frame.

Every source is a sequence of RGB uint8 [H, W, 3] frames of one size with an ``fps``; nothing decodes
the whole video at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from momentseg.errors import InvalidInputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_FPS = 30.0


class FrameSource(Sequence[np.ndarray]):
    """A video as a lazily decoded sequence of frames."""

    fps: float
    names: list[str]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return self[0].shape[:2]


def _check_frame(frame, index: int, expected: tuple[int, int] | None) -> np.ndarray:
    if frame is None:
        raise InvalidInputError(f"frame {index} cannot be decoded")
    if expected is not None and frame.shape[:2] != expected:
        raise InvalidInputError(f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the video is "
                                f"{expected[1]}x{expected[0]}: all frames must have one size")
    return frame


class FrameFolder(FrameSource):
    """Images in a folder, in natural order of their names (``2.jpg`` before ``10.jpg``)."""

    def __init__(self, folder: str | Path, fps: float = DEFAULT_FPS):
        self.folder = Path(folder)
        files = [p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise InvalidInputError(f"'{folder}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.sort(key=lambda p: (len(p.stem), p.stem) if p.stem.isdigit() else (float("inf"), p.stem))
        self.files = files
        self.names = [p.stem for p in files]
        self.fps = fps
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        bgr = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        frame = _check_frame(bgr, index, self._size)
        self._size = frame.shape[:2]
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class VideoFile(FrameSource):
    """A video file decoded with OpenCV; sequential access reads on, other access seeks."""

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        self._capture = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            raise InvalidInputError(f"'{path}' cannot be opened as a video")
        self._count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if self._count <= 0:
            raise InvalidInputError(f"'{path}' has no frames")
        self.fps = fps or self._capture.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        self.names = [f"{i:05d}" for i in range(self._count)]
        self._next = 0
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self._count:
            raise IndexError(index)
        if index != self._next:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = self._capture.read()
        self._next = index + 1
        frame = _check_frame(bgr if ok else None, index, self._size)
        self._size = frame.shape[:2]
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class ArrayFrames(FrameSource):
    """Frames already in memory (decoded images of one size)."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS, names: list[str] | None = None):
        if len(frames) == 0:
            raise InvalidInputError("the video has no frames")
        size = np.asarray(frames[0]).shape[:2]
        for index, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise InvalidInputError(f"frame {index} must be an RGB uint8 [H, W, 3] array, got "
                                        f"{frame.dtype} {frame.shape}")
            _check_frame(frame, index, size)
        self.frames = frames
        self.fps = fps
        self.names = names or [f"{i:05d}" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.frames[index])


def open_video(path: str | Path, fps: float | None = None) -> FrameSource:
    """A folder of images or a video file."""
    path = Path(path)
    if path.is_dir():
        return FrameFolder(path, fps or DEFAULT_FPS)
    if path.is_file():
        return VideoFile(path, fps)
    raise InvalidInputError(f"video '{path}' does not exist")
