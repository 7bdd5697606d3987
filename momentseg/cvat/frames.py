"""A CVAT task's frames read by chunk: about one request per ``chunk_size`` frames, decoded with PyAV
(video tasks: each chunk is a small video file) or read from the zip (image tasks), a few decoded chunks
kept in memory."""

from __future__ import annotations

import io
import json
import zipfile
from collections import OrderedDict
from collections.abc import Iterable

import av
import cv2
import numpy as np
from cvat_sdk import Client

from momentseg.cvat.connection import cvat_errors
from momentseg.errors import InvalidInputError, plain_reason
from momentseg.video import DEFAULT_FPS, FrameSource


def select_frames(
    size: int, deleted: set[int], start: int | None = None, stop: int | None = None, step: int | None = None
) -> list[int]:
    """Task frame numbers in [start, stop] (inclusive) every ``step``, deleted frames left out."""
    start = 0 if start is None else start
    stop = size - 1 if stop is None else stop
    step = step or 1
    if not 0 <= start < size or not start <= stop < size:
        raise InvalidInputError(f"frame range {start}:{stop} is outside the task's frames 0:{size - 1}")
    numbers = [n for n in range(start, stop + 1, step) if n not in deleted]
    if not numbers:
        raise InvalidInputError(f"no frames left in {start}:{stop}:{step} after removing deleted frames")
    return numbers


def format_ranges(frames: Iterable[int]) -> str:
    """Sorted frame numbers as ``a-b,c-c,d-e`` runs (the compact form of a frame list)."""
    runs: list[list[int]] = []
    for frame in sorted(set(frames)):
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ",".join(f"{a}-{b}" for a, b in runs)


def range_runs(text: str) -> list[tuple[int, int]]:
    """The inclusive runs of an ``a-b,c`` text, checked (ascending, not overlapping) but not expanded."""
    runs: list[tuple[int, int]] = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise InvalidInputError(f"frames '{text[:40]}' must look like 0-9,12-12,14-20")
        run = (int(first), int(last or first))
        if run[1] < run[0] or (runs and run[0] <= runs[-1][1]):
            raise InvalidInputError(f"frames '{text[:40]}': runs must ascend without overlapping")
        runs.append(run)
    return runs


def parse_ranges(text: str) -> list[int]:
    """The frame numbers an ``a-b,c`` text names, in order."""
    return [n for a, b in range_runs(text) for n in range(a, b + 1)]


def decode_video_chunk(data: bytes) -> list[np.ndarray]:
    """Every frame of a video chunk, RGB uint8, in presentation order."""
    with av.open(io.BytesIO(data), mode="r") as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def decode_image_chunk(data: bytes) -> list[np.ndarray]:
    """Every image of a zip chunk, RGB uint8, in the archive's order."""
    frames = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            bgr = cv2.imdecode(np.frombuffer(archive.read(name), np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise InvalidInputError(f"image '{name}' in a CVAT chunk cannot be decoded")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


class TaskFrames(FrameSource):
    """Selected frames of a CVAT task, fetched chunk by chunk as they are visited; decoded chunks are kept
    up to ``cache_bytes`` (least recently used first out)."""

    def __init__(
        self,
        client: Client,
        task_id: int,
        start: int | None = None,
        stop: int | None = None,
        step: int | None = None,
        fps: float | None = None,
        numbers: list[int] | None = None,
        cache_bytes: int = 256 * 2**20,
    ):
        api = client.api_client.tasks_api
        with cvat_errors(f"task {task_id}"):
            # plain JSON: cvat-sdk's models may not match an older server's answers field for field
            task = json.loads(api.retrieve(task_id, _parse_response=False)[1].data)
            meta = json.loads(api.retrieve_data_meta(task_id, _parse_response=False)[1].data)
        if not meta.get("size") or not meta.get("frames"):
            raise InvalidInputError(f"task {task_id} has no video or images")
        size, frames = meta["size"], meta["frames"]
        self.client, self.task_id = client, task_id
        self.chunk_size = int(meta.get("chunk_size") or size)
        self.is_video = task.get("data_original_chunk_type") == "video"
        deleted = set(meta.get("deleted_frames") or [])
        if numbers is None:
            self.numbers = select_frames(size, deleted, start, stop, step)
        else:
            self.numbers = [n for n in numbers if 0 <= n < size and n not in deleted]
            if not self.numbers:
                raise InvalidInputError(f"none of the requested frames exist in task {task_id}")
        per_frame = len(frames) == size and not self.is_video
        # a video has no frame files: its frames are named as DAVIS/YouTube-VOS name theirs
        self.names = [frames[n]["name"] if per_frame else f"{n:05d}" for n in self.numbers]
        sizes = (
            {(frames[n]["height"], frames[n]["width"]) for n in self.numbers}
            if per_frame
            else {(frames[0]["height"], frames[0]["width"])}
        )
        if len(sizes) > 1:
            raise InvalidInputError(
                f"task {task_id} has images of {len(sizes)} different sizes; "
                "MomentSeg needs a video or images of one size"
            )
        self._size = sizes.pop()
        self.fps = fps or DEFAULT_FPS
        self.requests = 0
        self._cache: OrderedDict[int, list[np.ndarray]] = OrderedDict()
        self._cache_bytes = cache_bytes

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def __len__(self) -> int:
        return len(self.numbers)

    def _chunk(self, index: int) -> list[np.ndarray]:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        with cvat_errors(f"chunk {index} of task {self.task_id}"):
            _, response = self.client.api_client.tasks_api.retrieve_data(
                self.task_id, type="chunk", number=index, quality="original", _parse_response=False
            )
            data = response.data
        self.requests += 1
        try:
            frames = decode_video_chunk(data) if self.is_video else decode_image_chunk(data)
        except (av.error.FFmpegError, zipfile.BadZipFile) as error:
            raise InvalidInputError(
                f"chunk {index} of task {self.task_id} cannot be decoded ({plain_reason(error)})"
            ) from None
        self._cache[index] = frames
        # the newest chunk always stays; older ones go once the cache holds more than cache_bytes
        while len(self._cache) > 1 and sum(f.nbytes for c in self._cache.values() for f in c) > self._cache_bytes:
            self._cache.popitem(last=False)
        return frames

    def __getitem__(self, index: int) -> np.ndarray:
        number = self.numbers[index]
        chunk = self._chunk(number // self.chunk_size)
        offset = number % self.chunk_size
        if offset >= len(chunk):
            raise InvalidInputError(
                f"chunk {number // self.chunk_size} of task {self.task_id} holds {len(chunk)} "
                f"frames; frame {number} is missing from it"
            )
        frame = chunk[offset]
        if frame.shape[:2] != self._size:
            raise InvalidInputError(
                f"frame {number} of task {self.task_id} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the task says {self._size[1]}x{self._size[0]}"
            )
        return frame
