"""The two kinds of entries every reader yields, and the lazily decoded frames behind them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from momentseg.errors import InvalidInputError
from momentseg.video import FrameSource, VideoFile


class DataError(InvalidInputError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file and entry."""

    code = "data_error"


class FrameFiles(FrameSource):
    """Frames from an explicit list of image files, decoded on access (RGB uint8)."""

    def __init__(self, files: Sequence[Path], fps: float, entry: str):
        self.files = list(files)
        self.names = [Path(f).stem for f in self.files]
        self.fps = fps
        self.entry = entry

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> np.ndarray:
        path = self.files[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f"{self.entry}: frame '{path}' is missing or not an image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_video_file(path: Path, entry: str) -> FrameSource:
    """A video file as lazily decoded frames; an unreadable file is a DataError naming it."""
    try:
        return VideoFile(path)
    except InvalidInputError as error:
        raise DataError(f"{entry}: {error}") from None


@dataclass(frozen=True)
class GroundingEntry:
    """A TSG query: ``query`` happens in [start, end] seconds of a video of ``duration`` seconds."""

    dataset: str
    video_id: str
    query: str
    start: float
    end: float
    duration: float
    open_frames: Callable[[], FrameSource] = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.video_id}:{self.start:g}-{self.end:g}"


@dataclass(frozen=True)
class ReferringEntry:
    """A RefVOS expression: the object(s) ``expression`` refers to, masked on every frame.

    ``mask(i)`` is the ground-truth bool mask of frame i (None when the split has no ground truth);
    ``moment`` is the (start, end) frame range where the expression holds, when the data gives one.
    """

    dataset: str
    video_id: str
    expression_id: str
    expression: str
    frame_names: tuple[str, ...]
    open_frames: Callable[[], FrameSource] = field(repr=False, compare=False)
    load_mask: Callable[[int], np.ndarray] | None = field(default=None, repr=False, compare=False)
    type_id: int | None = None
    moment: tuple[int, int] | None = None
    fps: float = 30.0

    @property
    def name(self) -> str:
        return f"{self.dataset}:{self.video_id}/{self.expression_id}"

    @property
    def has_masks(self) -> bool:
        return self.load_mask is not None

    def mask(self, index: int) -> np.ndarray:
        if self.load_mask is None:
            raise DataError(f"{self.name}: this split has no ground-truth masks")
        return self.load_mask(index)


def read_json(path: Path, what: str):
    """JSON from ``path``; missing or malformed is a DataError naming the file."""
    import json

    if not path.is_file():
        raise DataError(f"{what}: '{path}' does not exist")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise DataError(f"{what}: '{path}' is not valid JSON ({error})") from None


def frame_files(folder: Path, names: Sequence[str], entry: str) -> list[Path]:
    """The image file of each frame name in ``folder`` (``.jpg`` first, then ``.png``); a missing one is an error."""
    if not folder.is_dir():
        raise DataError(f"{entry}: frame folder '{folder}' does not exist")
    files = []
    for name in names:
        for suffix in (".jpg", ".png", ".jpeg"):
            path = folder / f"{name}{suffix}"
            if path.exists():
                files.append(path)
                break
        else:
            raise DataError(f"{entry}: frame '{name}' is missing from '{folder}'")
    return files
