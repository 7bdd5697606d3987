"""Frame sources, and the frame store that decodes each frame of a run once.

A source (a folder of images, a video file, frames in memory) is a sequence of RGB uint8 [H, W, 3] frames
of one size with an ``fps`` and frame ``names``. :class:`FrameStore` sits in front of any source and is
what a run reads: a video file is decoded front to back once, on a background thread; frames (and the
per-consumer views of them, e.g. SAM2's 1024² input or the LMM's downscaled frames) are kept in an LRU
cache bounded in bytes; frames the cache evicts go to a spill file on disk (JPEG) and are read back from
it, so visiting frames in any order, the backward sweep included, never seeks the video and host memory
stays flat in the video's length.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import os
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import av
import cv2
import numpy as np

from momentseg.errors import InvalidInputError, plain_reason

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
DEFAULT_FPS = 30.0
DEFAULT_CACHE_BYTES = 256 << 20
# how many frames a view reads ahead of a consumer walking it frame by frame
PREFETCH_FRAMES = 4
# how far the decoder runs ahead of the furthest frame asked for (fewer when frames are large)
RUN_AHEAD_FRAMES = 64
SPILL_JPEG_QUALITY = 95
BASE = ""  # the view name of the frames themselves


class FrameSource(abc.ABC):
    """A video as a lazily decoded sequence of frames, read one index at a time (no slices: a slice of a
    video would decode all of it at once)."""

    fps: float
    names: list[str]

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def __getitem__(self, index: int) -> np.ndarray: ...

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[index] for index in range(len(self)))

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return self[0].shape[:2]

    def close(self) -> None:  # noqa: B027 (not abstract: most sources hold nothing to release)
        """Release files and threads; a no-op for sources that hold none."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@runtime_checkable
class SequentialSource(Protocol):
    """A source read fastest front to back (a video file): :class:`FrameStore` decodes it on a thread."""

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame, front to back, each decoded once."""
        ...


def _check_frame(frame, index: int, expected: tuple[int, int] | None) -> np.ndarray:
    if frame is None:
        raise InvalidInputError(f"frame {index} cannot be decoded")
    if expected is not None and frame.shape[:2] != expected:
        raise InvalidInputError(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the video is "
            f"{expected[1]}x{expected[0]}: all frames must have one size"
        )
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
    """A video file decoded with PyAV.

    ``iter_frames`` decodes front to back (what :class:`FrameStore` uses). Indexing reads on when asked
    for the next frame and otherwise seeks to the keyframe before it: fine for a few frames, never for a
    sweep. ``decodes`` counts every frame the codec produced.
    """

    def __init__(self, path: str | Path, fps: float | None = None):
        self.path = Path(path)
        with _open_container(self.path) as container:
            stream = container.streams.video[0]
            self._count = stream.frames or _count_packets(container)
            rate = stream.average_rate or stream.guessed_rate
            height, width = stream.codec_context.height, stream.codec_context.width
        if self._count <= 0:
            raise InvalidInputError(f"'{path}' has no frames")
        self.fps = float(fps or (rate and float(rate)) or DEFAULT_FPS)
        self.names = [f"{i:05d}" for i in range(self._count)]
        self.decodes = 0
        self._size = (height, width) if height and width else None
        self._container: av.container.InputContainer | None = None  # opened on the first indexed read
        self._timestamps: list[int | None] = []  # pts of each frame read by index so far, to seek back to it
        self._reader: Iterator[tuple[int | None, np.ndarray]] | None = None
        self._next = 0

    def __len__(self) -> int:
        return self._count

    def _decode(self, container: av.container.InputContainer) -> Iterator[tuple[int | None, np.ndarray]]:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                self.decodes += 1
                yield frame.pts, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise InvalidInputError(
                f"'{self.path}' cannot be decoded past frame {self.decodes}: {plain_reason(error)}"
            ) from None

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame, front to back, each decoded once (a container of its own: indexing is unaffected)."""
        container = _open_container(self.path)
        try:
            for index, (_, frame) in enumerate(self._decode(container)):
                if index >= self._count:
                    return
                yield _check_frame(frame, index, self._size)
                self._size = frame.shape[:2]
        finally:
            container.close()

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self._count:
            raise IndexError(index)
        if self._container is None:
            self._container = _open_container(self.path)
        reader = self._reader
        if reader is None or index < self._next:
            reader = self._seek(self._container, index)
        for pts, frame in reader:
            position = self._next
            if position == len(self._timestamps):
                self._timestamps.append(pts)
            self._next += 1
            if position == index:
                self._size = _check_frame(frame, index, self._size).shape[:2]
                return frame
        raise InvalidInputError(f"frame {index} cannot be decoded: '{self.path}' ends after {self._next} frames")

    def _seek(self, container: av.container.InputContainer, index: int) -> Iterator[tuple[int | None, np.ndarray]]:
        """Position the reader at the keyframe before ``index`` (known by the timestamps read so far)."""
        target = self._timestamps[index] if index < len(self._timestamps) else None
        if target is not None:
            container.seek(target, stream=container.streams.video[0], backward=True)
            reader = self._decode(container)
            first = next(reader, None)
            if first is not None and first[0] is not None and first[0] in self._timestamps[: index + 1]:
                self._reader = itertools.chain([first], reader)
                self._next = self._timestamps.index(first[0])
                return self._reader
        container.seek(0)
        self._reader, self._next = self._decode(container), 0
        return self._reader

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise InvalidInputError(f"'{path}' cannot be opened as a video: {plain_reason(error)}") from None
    if not container.streams.video:
        container.close()
        raise InvalidInputError(f"'{path}' cannot be opened as a video: it has no video stream")
    container.streams.video[0].thread_type = "AUTO"  # frame threads: decoding keeps up with the model
    return container


def _count_packets(container: av.container.InputContainer) -> int:
    """Frame count of a container that does not store it (e.g. WebM): count packets without decoding."""
    return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


class ArrayFrames(FrameSource):
    """Frames already in memory (decoded images of one size)."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = DEFAULT_FPS, names: list[str] | None = None):
        if len(frames) == 0:
            raise InvalidInputError("the video has no frames")
        size = np.asarray(frames[0]).shape[:2]
        for index, frame in enumerate(frames):
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise InvalidInputError(
                    f"frame {index} must be an RGB uint8 [H, W, 3] array, got {frame.dtype} {frame.shape}"
                )
            _check_frame(frame, index, size)
        self.frames = frames
        self.fps = fps
        self.names = names or [f"{i:05d}" for i in range(len(frames))]

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        return np.asarray(self.frames[index])


def _nbytes(value: Any) -> int:
    """Host bytes a cached value holds: numpy arrays and torch tensors (without importing torch)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return value.element_size() * value.nelement()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 64


class _Spill:
    """Evicted frames of a run, JPEG-encoded in one unlinked temp file (gone when closed or on exit)."""

    def __init__(self, folder: str | Path | None, quality: int):
        self._file = tempfile.TemporaryFile(dir=folder, prefix="momentseg-frames-")  # noqa: SIM115 (closed in close())
        self._quality = quality
        self._where: dict[int, tuple[int, int]] = {}
        self._end = 0
        self._lock = threading.Lock()

    def __contains__(self, index: int) -> bool:
        return index in self._where

    def write(self, index: int, frame: np.ndarray) -> None:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise RuntimeError(f"frame {index} cannot be JPEG-encoded for the spill file")
        with self._lock:
            offset, self._end = self._end, self._end + data.nbytes
        os.pwrite(self._file.fileno(), data.tobytes(), offset)
        with self._lock:
            self._where[index] = (offset, data.nbytes)

    def read(self, index: int) -> np.ndarray:
        offset, length = self._where[index]
        data = np.frombuffer(os.pread(self._file.fileno(), length, offset), np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if bgr is None:
            raise RuntimeError(f"frame {index} cannot be read back from the spill file")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    @property
    def bytes(self) -> int:
        return self._end

    def close(self) -> None:
        self._file.close()


class _Cache:
    """LRU cache bounded in bytes; frames it evicts go to the spill (when there is one) before they leave."""

    def __init__(self, budget: int, spill: _Spill | None):
        self.budget = budget
        self.spill = spill
        self.bytes = 0
        self._items: OrderedDict[tuple[str, int], tuple[Any, int]] = OrderedDict()  # (view, frame): (value, bytes)
        self._spilling: dict[int, np.ndarray] = {}  # evicted, being written to the spill
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int]) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item[0]
            if key[0] == BASE:
                return self._spilling.get(key[1])
        return None

    def __contains__(self, key: tuple[str, int]) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: tuple[str, int], value: Any) -> None:
        size = _nbytes(value)
        spill = self.spill
        to_spill: list[tuple[int, np.ndarray]] = []
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.budget and len(self._items) > 1:
                (name, index), (evicted, evicted_size) = self._items.popitem(last=False)
                self.bytes -= evicted_size
                if name == BASE and spill is not None and index not in spill:
                    self._spilling[index] = evicted
                    to_spill.append((index, evicted))
        if spill is None:  # then nothing was set aside to spill
            return
        for index, frame in to_spill:
            spill.write(index, frame)
            with self._lock:
                self._spilling.pop(index, None)  # another thread may have evicted and spilled it too

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0


class _Decoder:
    """The background thread that decodes a sequential source front to back, once.

    It holds no reference to the store, so a store nobody holds is collected and its finalizer stops it.
    """

    def __init__(self, frames: Iterator[np.ndarray], length: int, cache: _Cache):
        self.decoded = 0
        self.done = False
        self.error: Exception | None = None
        self._wanted = -1
        self._closed = False
        self._ahead = RUN_AHEAD_FRAMES
        self._condition = threading.Condition()
        self._thread = threading.Thread(
            target=self._run, args=(frames, length, cache), daemon=True, name="momentseg-decoder"
        )
        self._thread.start()

    def _run(self, frames: Iterator[np.ndarray], length: int, cache: _Cache) -> None:
        try:
            for index in range(length):
                with self._condition:
                    self._condition.wait_for(partial(self._may_decode, index))
                    if self._closed:
                        return
                frame = next(frames, None)
                if frame is None:
                    return
                if index == 0:  # bound the run-ahead to a quarter of the cache
                    self._ahead = max(1, min(RUN_AHEAD_FRAMES, cache.budget // (4 * max(frame.nbytes, 1))))
                cache.put((BASE, index), frame)
                with self._condition:
                    self.decoded = index + 1
                    self._condition.notify_all()
        except Exception as error:  # handed to the reader waiting for the frame
            self.error = error
        finally:
            getattr(frames, "close", lambda: None)()
            with self._condition:
                self.done = True
                self._condition.notify_all()

    def _may_decode(self, index: int) -> bool:
        """Closed (to stop), or ``index`` is within the run-ahead of the furthest frame asked for."""
        return self._closed or index <= self._wanted + self._ahead

    def wait_for(self, index: int) -> None:
        """Block until frame ``index`` is decoded; raise if the source ends or fails first."""
        with self._condition:
            self._wanted = max(self._wanted, index)
            self._condition.notify_all()
            self._condition.wait_for(lambda: self.decoded > index or self.done or self._closed)
            if self.decoded > index:
                return
            if self._closed:
                raise RuntimeError("the frame store is closed")
        if isinstance(self.error, InvalidInputError):
            raise self.error
        reason = f": {self.error}" if self.error else f" (the video ends after {self.decoded} frames)"
        raise InvalidInputError(f"frame {index} cannot be decoded{reason}")

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


class FrameView:
    """A store's frames through the transform registered under ``name``, each computed once and cached."""

    def __init__(self, store: FrameStore, name: str):
        self.store, self.name = store, name

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> Any:
        return self.store._item(self.name, index)

    def __iter__(self) -> Iterator[Any]:
        return (self[index] for index in range(len(self)))


def _release(decoder: _Decoder | None, prefetcher: ThreadPoolExecutor, cache: _Cache, spill: _Spill | None) -> None:
    if decoder is not None:
        decoder.close()
    # queued prefetches still run (they end fast once the decoder is closed) so no one waits on them forever;
    # a store dropped by its own prefetch thread cannot wait for that thread
    prefetcher.shutdown(wait=not threading.current_thread().name.startswith("momentseg-prefetch"))
    cache.clear()
    if spill is not None:
        spill.close()


class FrameStore(FrameSource):
    """Each frame of ``source`` decoded once per run, then served from memory or the spill file.

    A sequential source (one with ``iter_frames``, i.e. a video file) is decoded on a background thread,
    at most a bounded run-ahead past the furthest frame asked for. Frames and their views share one LRU
    cache of ``cache_bytes``; evicted frames of a sequential source are JPEG-spilled to ``spill_dir`` (the
    system temp folder by default) and read back from there, so no frame is decoded twice. A random-access
    source (images, arrays) is simply read again when an evicted frame is needed. Walking a view frame by
    frame (forward or backward) prefetches the next ``prefetch`` items on a worker thread.
    """

    def __init__(
        self,
        source: FrameSource,
        *,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        prefetch: int = PREFETCH_FRAMES,
        spill_dir: str | Path | None = None,
        spill_quality: int = SPILL_JPEG_QUALITY,
    ):
        self.source = source
        self.fps = float(source.fps)
        self._length = len(source)
        if self._length == 0:
            raise InvalidInputError("the video has no frames")
        self.names = list(getattr(source, "names", None) or [f"{i:05d}" for i in range(self._length)])
        self.prefetch = prefetch
        sequential = isinstance(source, SequentialSource)
        self._spill = _Spill(spill_dir, spill_quality) if sequential else None
        self._cache = _Cache(cache_bytes, self._spill)
        self._decoder = (
            _Decoder(source.iter_frames(), self._length, self._cache) if isinstance(source, SequentialSource) else None
        )
        self._reads = 0
        self._transforms: dict[str, Callable[[np.ndarray], Any]] = {}  # no views: they hold the store, not back
        self._last: dict[str, int] = {}
        self._pending: dict[tuple[str, int], Future] = {}
        self._lock = threading.Lock()
        self._prefetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="momentseg-prefetch")
        self._finalizer = weakref.finalize(self, _release, self._decoder, self._prefetcher, self._cache, self._spill)

    def __len__(self) -> int:
        return self._length

    @property
    def decodes(self) -> int:
        """Frames taken from the source: codec decodes for a video file, image reads for a folder."""
        return self._decoder.decoded if self._decoder is not None else self._reads

    @property
    def cache_bytes(self) -> int:
        """Bytes held in memory by the cache now (at most its budget, plus the item being added)."""
        return self._cache.bytes

    @property
    def spill_bytes(self) -> int:
        return self._spill.bytes if self._spill is not None else 0

    def __getitem__(self, index: int) -> np.ndarray:
        return self._item(BASE, index)

    def view(self, name: str, fn: Callable[[np.ndarray], Any]) -> FrameView:
        """A sequence of ``fn(frame)``, cached per frame. The first ``fn`` given a name is the one used for
        it, so the name must encode every parameter of ``fn`` (e.g. ``f"sam2-input-{size}"``)."""
        if not name or name == BASE:
            raise ValueError("a view needs a non-empty name")
        with self._lock:
            self._transforms.setdefault(name, fn)
        return FrameView(self, name)

    def _index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"frame {index} is outside the video's {self._length} frames")
        return index

    def _item(self, name: str, index: int) -> Any:
        index = self._index(index)
        key = (name, index)
        value = self._cache.get(key)
        if value is None:
            with self._lock:
                pending = self._pending.get(key)
                if pending is None:  # claim it, so a prefetch of the same item waits instead of redoing it
                    claimed = self._pending[key] = Future()
            value = pending.result() if pending is not None else self._fill(key, claimed)
        self._prefetch_after(name, index, _nbytes(value))
        return value

    def _fill(self, key: tuple[str, int], future: Future) -> Any:
        try:
            value = self._compute(*key)
        except BaseException as error:
            future.set_exception(error)
            raise
        finally:
            with self._lock:
                self._pending.pop(key, None)
        future.set_result(value)
        return value

    def _compute(self, name: str, index: int) -> Any:
        if name != BASE:
            value = self._transforms[name](self._item_quiet(index))
        elif self._decoder is not None:
            value = self._sequential_frame(index)
        else:
            value = self.source[index]
            with self._lock:
                self._reads += 1
        self._cache.put((name, index), value)
        return value

    def _item_quiet(self, index: int) -> np.ndarray:
        """A frame for computing a view, without counting it as a walk over the frames."""
        frame = self._cache.get((BASE, index))
        return frame if frame is not None else self._compute(BASE, index)

    def _sequential_frame(self, index: int) -> np.ndarray:
        assert self._spill is not None and self._decoder is not None, "only a sequential source has a decoder"
        for _ in range(2):
            frame = self._cache.get((BASE, index))
            if frame is not None:
                return frame
            if index in self._spill:
                return self._spill.read(index)
            self._decoder.wait_for(index)
        raise RuntimeError(f"frame {index} was decoded but is neither cached nor spilled")

    def _prefetch_after(self, name: str, index: int, item_bytes: int) -> None:
        """Walking frame by frame: compute the next items on the worker while the caller works."""
        with self._lock:
            last, self._last[name] = self._last.get(name), index
        # never read so far ahead that the cache evicts prefetched items before they are used
        depth = min(self.prefetch, self._cache.budget // (4 * max(item_bytes, 1)))
        if depth <= 0 or last is None or abs(index - last) != 1 or not self._finalizer.alive:
            return
        step = index - last
        for ahead in range(1, depth + 1):
            key = (name, index + step * ahead)
            if not 0 <= key[1] < self._length or key in self._cache:
                continue
            with self._lock:
                if key in self._pending:
                    continue
                claimed = self._pending[key] = Future()
            try:
                self._prefetcher.submit(self._fill_quietly, key, claimed)
            except RuntimeError:  # the store was closed meanwhile
                claimed.set_exception(RuntimeError("the frame store is closed"))
                return

    def _fill_quietly(self, key: tuple[str, int], future: Future) -> None:
        """A prefetch: its error, if any, reaches whoever asks for the item."""
        with contextlib.suppress(BaseException):
            self._fill(key, future)

    @property
    def threads_alive(self) -> bool:
        """Whether a decoder or prefetch thread of this store still runs."""
        decoding = self._decoder is not None and self._decoder.alive
        return decoding or any(t.is_alive() for t in self._prefetcher._threads)

    def close(self) -> None:
        """Stop the decoder and prefetch threads, drop the cache and delete the spill file."""
        self._finalizer()


def as_store(frames: FrameSource, **options) -> FrameStore:
    """``frames`` itself when it is a store already, else a store in front of it."""
    return frames if isinstance(frames, FrameStore) else FrameStore(frames, **options)


def open_video(path: str | Path, fps: float | None = None, **store_options) -> FrameStore:
    """A folder of images or a video file, behind a :class:`FrameStore`."""
    path = Path(path)
    if path.is_dir():
        return FrameStore(FrameFolder(path, fps or DEFAULT_FPS), **store_options)
    if path.is_file():
        return FrameStore(VideoFile(path, fps), **store_options)
    raise InvalidInputError(f"video '{path}' does not exist")
