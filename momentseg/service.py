"""The video-level segmentation service behind the Nuclio function and ``momentseg serve``.

Transport-agnostic. ``SegmentService.prepare`` checks a request completely — JSON, schema, caller,
limits, frame headers, anchors — without the model; ``execute`` runs a prepared request on the model,
one at a time, and gives the model back when the request's deadline passes or its caller is gone.
``handle(body) -> (status, json_dict)`` does both and answers every failure with
``{"error": code, "message": ...}`` and a 4xx/5xx status, never a stack trace, path or host.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import cv2
import jsonschema
import numpy as np

from momentseg.devices import check_device, default_device
from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.limits import ImageTooLargeError, image_size, numbers_from_env
from momentseg.masks import from_cvat_rle
from momentseg.options import SegmentOptions, options_from_request, request_options
from momentseg.pipeline import MomentSegPipeline, validate_prompt
from momentseg.schemas import request_schema
from momentseg.video import DEFAULT_FPS, FrameSource

if TYPE_CHECKING:  # a task reader's frames come from the CVAT adapter, named here only as a type
    from momentseg.cvat.frames import TaskFrames

log = logging.getLogger(__name__)

REQUEST_SCHEMA = request_schema()
# JSON Schema counts 42.0 as an integer; a task id or frame number must be written as one
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
_VALIDATOR = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES)(REQUEST_SCHEMA)

# the schema nests 4 levels (request → anchors → anchor → mask → count); anything deeper is refused unread
MAX_JSON_DEPTH = 8
MAX_TEXT_CHARS = 10_000  # any string but a frame


class RequestError(MomentSegError):
    """A request the service refuses, with its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how long it may hold the model (waiting included)."""

    max_frames: int = 20_000
    max_body_bytes: int = 1 << 30
    max_frame_pixels: int = 4096 * 4096
    max_anchor_pixels: int = 1 << 30  # decoded anchor masks kept for one request, one byte per pixel
    request_timeout_s: float = 3300.0  # under function.yaml's eventTimeout (3600 s): the service answers first
    max_waiting_runs: int = 4  # task runs of momentseg serve waiting for the model (momentseg.service_runs)
    run_keep_s: float = 600.0  # how long a finished run waits for its result to be fetched

    ENV: ClassVar[Mapping[str, str]] = {
        "max_frames": "MOMENTSEG_MAX_FRAMES",
        "max_body_bytes": "MOMENTSEG_MAX_BODY_BYTES",
        "max_frame_pixels": "MOMENTSEG_MAX_FRAME_PIXELS",
        "max_anchor_pixels": "MOMENTSEG_MAX_ANCHOR_PIXELS",
        "request_timeout_s": "MOMENTSEG_REQUEST_TIMEOUT",
        "max_waiting_runs": "MOMENTSEG_MAX_WAITING_RUNS",
        "run_keep_s": "MOMENTSEG_RUN_KEEP",
    }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        return cls(**numbers_from_env(cls, env))


@dataclass
class Job:
    """A request that passed every check, ready for the model."""

    prompt: str
    options: SegmentOptions
    frames: FrameSource
    numbers: list[int] | None  # CVAT task frame numbers in task mode
    anchors: dict[int, np.ndarray]


class EncodedFrames(FrameSource):
    """Base64 JPEG/PNG frames from a request: sizes read from the headers, pixels decoded per visit."""

    def __init__(self, encoded: list[str], fps: float, max_pixels: int = Limits.max_frame_pixels):
        self.images: list[bytes] = []
        first: tuple[int, int] | None = None
        for index, text in enumerate(encoded):
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, "invalid_frame", f"frames[{index}] is not valid base64") from None
            try:
                size = image_size(data, max_pixels)
            except ImageTooLargeError as error:
                raise RequestError(413, "frame_too_large", f"frames[{index}]: {error}") from None
            except InvalidInputError as error:
                raise RequestError(400, "invalid_frame", f"frames[{index}]: {error}") from None
            if first is None:
                first = size
            elif size != first:
                raise RequestError(
                    400,
                    "frame_size_mismatch",
                    f"frames[{index}] is {size[1]}x{size[0]}, frames[0] is "
                    f"{first[1]}x{first[0]}: all frames must have one size",
                )
            self.images.append(data)
        if first is None:
            raise RequestError(400, "invalid_request", "frames: at least one frame is needed")
        self._size: tuple[int, int] = first
        self.fps = fps
        self.names = [f"{i:05d}" for i in range(len(self.images))]

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(self.images[index], np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.shape[:2] != self._size:
            raise RequestError(
                400,
                "invalid_frame",
                f"frames[{index}] cannot be decoded as the {self._size[1]}x{self._size[0]} image its header declares",
            )
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class _Watched(FrameSource):
    """A frame source that ends the run at the next frame once ``check`` raises (deadline, caller gone)."""

    def __init__(self, frames: FrameSource, check: Callable[[], None]):
        self.frames = frames
        self.check = check
        self.fps = frames.fps
        self.names = list(getattr(frames, "names", []))

    @property
    def size(self) -> tuple[int, int]:
        return self.frames.size

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> np.ndarray:
        self.check()
        return self.frames[index]


def _schema_error_message(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "request"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{where}: {message}"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key '{key[:40]}' appears twice in one object")
            seen.add(key)
    return result


def _check_values(request: dict[str, Any]) -> None:
    """Refuse, without recursion, what JSON parsing lets through: deep nesting, unpaired surrogates,
    non-finite or huge numbers, long text outside ``frames``."""
    stack: list[tuple[Any, tuple]] = [(request, ())]
    while stack:
        value, path = stack.pop()
        where = "/".join(str(p) for p in path) or "request"
        if len(path) > MAX_JSON_DEPTH:
            raise RequestError(400, "invalid_request", f"{where}: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((item, (*path, str(key)[:40])) for key, item in value.items())
            for key in value:
                _check_text(key, where, MAX_TEXT_CHARS)
        elif isinstance(value, list):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, str):
            _check_text(
                value, where, math.inf if path[:1] == ("frames",) or path == ("task", "frames") else MAX_TEXT_CHARS
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise RequestError(400, "invalid_request", f"{where}: numbers must be finite")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
            raise RequestError(400, "invalid_request", f"{where}: the number is out of range")


def _check_text(text: str, where: str, max_chars: float) -> None:
    if len(text) > max_chars:
        raise RequestError(
            400, "invalid_request", f"{where}: text of {len(text)} characters; at most {max_chars} are accepted"
        )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(
                400, "invalid_request", f"{where}: contains an unpaired surrogate (not valid Unicode text)"
            ) from None


def _options(request: dict[str, Any]) -> SegmentOptions:
    try:
        return options_from_request(request)
    except InvalidInputError as error:
        raise RequestError(400, "invalid_option", str(error)) from error


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


TaskReader = Callable[[dict[str, Any], float], "TaskFrames"]


class SegmentService:
    """One model, one request at a time; everything that can be refused is refused before the model."""

    def __init__(
        self,
        pipeline: MomentSegPipeline | None,
        *,
        limits: Limits = Limits(),
        task_reader: TaskReader | None = None,
        load_error: str | None = None,
        task_token: str | None = None,
        internal: Mapping[str, str] | None = None,
    ):
        """``task_token``: the shared token a caller must present for task mode (None: task mode is off).
        ``internal``: configuration values (paths, hosts) never shown to a caller, each with the name
        shown instead."""
        self.pipeline = pipeline
        self.limits = limits
        self.task_reader = task_reader
        self.task_token = task_token
        self._internal = sorted((internal or {}).items(), key=lambda item: -len(item[0]))
        self.load_error = self.public(load_error) if load_error else None
        self._lock = threading.Lock()

    def handle(
        self, body: bytes | str | dict | None, *, token: str | None = None, cancel: threading.Event | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Check and run one request; ``token`` is the caller's bearer token, ``cancel`` set when it left."""
        deadline = time.monotonic() + self.limits.request_timeout_s
        try:
            return 200, self.execute(self.prepare(body, token=token), cancel=cancel, deadline=deadline)
        except Exception as error:  # the function must keep serving whatever a request does
            return self.error_response(error)

    def error_response(self, error: BaseException) -> tuple[int, dict[str, Any]]:
        """The status and JSON body for a failure; internal values never reach the caller."""
        if isinstance(error, RecursionError):
            return 400, {"error": "invalid_request", "message": "the request is nested too deeply"}
        if isinstance(error, MomentSegError):
            status = getattr(error, "status", 400)
            message = str(error) if isinstance(error, RequestError) else self.public(str(error))
            return status, {"error": getattr(error, "code", "error"), "message": message}
        if _is_out_of_memory(error):
            _release_gpu_memory()
            return 503, {
                "error": "out_of_memory",
                "message": "the GPU ran out of memory on this video: send fewer or smaller frames",
            }
        log.error("internal error while handling a request", exc_info=error)
        return 500, {
            "error": "internal_error",
            "message": f"internal error ({type(error).__name__}); the function's log has the details",
        }

    def public(self, message: str) -> str:
        """``message`` with configured paths and hosts replaced by the names of their settings."""
        for value, name in self._internal:
            message = re.sub(r"(?<![\w.-])" + re.escape(value) + r"(?![\w.-])", name, message)
        return message

    def prepare(self, body: bytes | str | dict | None, *, token: str | None = None) -> Job:
        """Every check of a request that needs no model: cheap, and never waits for the model."""
        request = self._parse(body)
        if "task" in request:
            self.authorise(token)
        errors = sorted(islice(_VALIDATOR.iter_errors(request), 50), key=lambda e: (len(e.absolute_path), e.path))
        if errors:
            raise RequestError(400, "invalid_request", _schema_error_message(errors[0]))
        if not request["prompt"].strip():
            raise RequestError(400, "invalid_request", "prompt: the prompt is empty")
        try:
            prompt = validate_prompt(request["prompt"])
        except InvalidInputError as error:
            raise RequestError(400, "invalid_request", f"prompt: {error}") from None
        if self.pipeline is None:
            raise RequestError(503, "model_not_loaded", f"the model is not loaded: {self.load_error or 'unknown'}")
        options = _options(request)
        frames, numbers = self._frames(request)
        height, width = frames.size
        if height * width > self.limits.max_frame_pixels:
            raise RequestError(
                413,
                "frame_too_large",
                f"frames are {width}x{height}; at most {self.limits.max_frame_pixels} pixels per frame are accepted",
            )
        anchors = self._anchors(request.get("anchors", []), numbers, len(frames), width, height)
        return Job(prompt, options, frames, numbers, anchors)

    def execute(
        self,
        job: Job,
        *,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Run a prepared request on the model; past ``deadline`` (monotonic) or once ``cancel`` is set,
        the run stops at the next frame and the model is free for the next request. ``progress`` hears
        the pipeline's stages (stage, done, total)."""
        timeout = self.limits.request_timeout_s
        deadline = time.monotonic() + timeout if deadline is None else deadline
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RequestError(
                503,
                "busy",
                f"the model was busy with other requests for {timeout:g} s: try again later",
                headers={"Retry-After": "30"},
            )
        try:

            def check() -> None:
                if cancel is not None and cancel.is_set():
                    raise RequestError(499, "cancelled", "the caller went away")
                if time.monotonic() > deadline:
                    raise RequestError(
                        503,
                        "processing_timeout",
                        f"the request did not finish in {timeout:g} s (MOMENTSEG_REQUEST_TIMEOUT): send fewer frames",
                    )

            def report(stage: str, done: int, total: int) -> None:
                check()
                if progress is not None:
                    progress(stage, done, total)

            check()
            if self.pipeline is None:
                raise RequestError(503, "model_not_loaded", f"the model is not loaded: {self.load_error or 'unknown'}")
            log.info("running %d frames with options %s", len(job.frames), json.dumps(request_options(job.options)))
            result = self.pipeline.run(
                _Watched(job.frames, check), job.prompt, job.options, human_anchors=job.anchors, progress=report
            )
        finally:
            self._lock.release()
        response = result.to_dict() if job.numbers is None else result.to_task_frames(job.numbers)
        response["model"] = dict(response["model"], checkpoint=self.public(str(response["model"]["checkpoint"])))
        response["label"] = job.options.label
        return response

    def authorise(self, token: str | None) -> None:
        """Task mode (and its runs) only for callers holding the shared token."""
        if self.task_token is None:
            raise RequestError(
                403,
                "task_mode_disabled",
                "task mode is off on this function (no MOMENTSEG_TASK_TOKEN is configured): send the video as 'frames'",
            )
        given = (token or "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, self.task_token.encode("utf-8")):
            raise RequestError(
                401,
                "unauthorized",
                "task mode needs the function's shared token in an 'Authorization: Bearer <token>' header",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def _parse(self, body: bytes | str | dict | None) -> dict[str, Any]:
        limit = self.limits.max_body_bytes
        if isinstance(body, (bytes, bytearray, memoryview, str)):
            too_large = RequestError(
                413, "request_too_large", f"the request has more than {limit} bytes (MOMENTSEG_MAX_BODY_BYTES)"
            )
            if len(body) > limit:  # a text is refused before it is encoded: each character is at least a byte
                raise too_large
            raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
            if len(raw) > limit:
                raise too_large
            try:
                # parsed as Nuclio parses a JSON body (NaN, 1e999 and long integers pass here and are
                # refused by _check_values), so serve and the Nuclio function give the same answers
                body = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys)
            except UnicodeDecodeError:
                raise RequestError(400, "malformed_json", "the request body is not UTF-8 JSON") from None
            except RecursionError:
                raise RequestError(400, "malformed_json", "the request body is nested too deeply") from None
            except ValueError as error:
                raise RequestError(
                    400, "malformed_json", f"the request body is not valid JSON: {str(error)[:200]}"
                ) from None
        if not isinstance(body, dict):
            raise RequestError(400, "malformed_json", "the request body must be a JSON object")
        _check_values(body)
        if "image" in body and "prompt" not in body:
            raise RequestError(
                400,
                "needs_prompt",
                "this function takes a text prompt and a whole video, not "
                "CVAT's one-frame detector call: use 'momentseg cvat annotate' (see docs/cvat.md)",
            )
        if ("frames" in body) == ("task" in body):
            raise RequestError(
                400, "invalid_request", "give exactly one of 'frames' (base64 images) or 'task' (a CVAT task id)"
            )
        for key, limit in (("frames", self.limits.max_frames), ("anchors", self.limits.max_frames)):
            if isinstance(body.get(key), list) and len(body[key]) > limit:
                raise RequestError(413, f"too_many_{key}", f"{len(body[key])} {key} sent; at most {limit} are accepted")
        return body

    def _frames(self, request: dict[str, Any]) -> tuple[FrameSource, list[int] | None]:
        fps = float(request.get("fps", DEFAULT_FPS))
        if "frames" in request:
            return EncodedFrames(request["frames"], fps, self.limits.max_frame_pixels), None
        task = request["task"]
        if "frames" in task:
            self._check_frame_list(task)
        if self.task_reader is None:
            raise RequestError(503, "cvat_not_configured", "this function has no CVAT connection configured")
        frames = self.task_reader(task, fps)
        if len(frames) > self.limits.max_frames:
            raise RequestError(
                413,
                "too_many_frames",
                f"task {request['task']['id']} selects {len(frames)} frames; "
                f"at most {self.limits.max_frames} are accepted: narrow frame_start/frame_stop",
            )
        return frames, list(frames.numbers)

    def _check_frame_list(self, task: dict[str, Any]) -> None:
        """An explicit frame list: on its own, well formed, and within the frame limit before it is expanded."""
        from momentseg.cvat.frames import range_runs

        if any(key in task for key in ("frame_start", "frame_stop", "frame_step")):
            raise RequestError(
                400, "invalid_request", "task: give 'frames' or frame_start/frame_stop/frame_step, not both"
            )
        try:
            runs = range_runs(task["frames"])
        except InvalidInputError as error:
            raise RequestError(400, "invalid_request", f"task/frames: {error}") from None
        count = sum(last - first + 1 for first, last in runs)
        if count > self.limits.max_frames:
            raise RequestError(
                413,
                "too_many_frames",
                f"task/frames names {count} frames; at most {self.limits.max_frames} are accepted",
            )

    def _anchors(self, anchors, numbers, total, width, height) -> dict[int, np.ndarray]:
        if len(anchors) * width * height > self.limits.max_anchor_pixels:
            raise RequestError(
                413,
                "too_many_anchors",
                f"{len(anchors)} anchor masks of {width}x{height} exceed "
                f"{self.limits.max_anchor_pixels} pixels (MOMENTSEG_MAX_ANCHOR_PIXELS)",
            )
        index_of = {n: i for i, n in enumerate(numbers)} if numbers is not None else None
        decoded = {}
        for position, anchor in enumerate(anchors):
            frame = anchor["frame"]
            index = index_of.get(frame) if index_of is not None else (frame if frame < total else None)
            if index is None:
                raise RequestError(400, "invalid_anchor", f"anchors[{position}]: frame {frame} is not in the video")
            try:
                decoded[index] = from_cvat_rle(anchor["mask"], width, height)
            except InvalidInputError as error:
                raise RequestError(
                    400,
                    "invalid_anchor",
                    f"anchors[{position}]: the mask does not fit a {width}x{height} frame ({error})",
                ) from None
        return decoded


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from the variable ``name``, or from the file named in ``name``_FILE (Docker/K8s secrets)."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except (OSError, UnicodeDecodeError):
            raise InvalidInputError(f"{name}_FILE names a file that cannot be read") from None
    return env.get(name) or None


def _internal_values(env: Mapping[str, str]) -> dict[str, str]:
    """Configured paths and hosts, each mapped to the setting's name shown to callers instead."""
    from urllib.parse import urlsplit

    internal = {}
    checkpoint = env.get("MOMENTSEG_CHECKPOINT")
    if checkpoint and (Path(checkpoint).is_absolute() or Path(checkpoint).exists()):
        internal[checkpoint] = internal[str(Path(checkpoint).resolve())] = "MOMENTSEG_CHECKPOINT"
    host = env.get("CVAT_HOST", "")
    if host:
        parts = urlsplit(host if "://" in host else f"http://{host}")
        address = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
        for value in (host, host.rstrip("/"), parts.netloc, f"{parts.scheme}://{address}", address, parts.hostname):
            if value:
                internal[value] = "CVAT_HOST"
    return internal


def build_service_from_env(
    env: Mapping[str, str] | None = None, *, pipeline: MomentSegPipeline | None = None
) -> SegmentService:
    """The service as the function runs it, configured by the environment (docs/deploy.md):
    weights from ``MOMENTSEG_CHECKPOINT`` on ``MOMENTSEG_DEVICE`` (function.yaml: ``cuda``) in
    ``MOMENTSEG_DTYPE``; limits from ``MOMENTSEG_MAX_*`` and ``MOMENTSEG_REQUEST_TIMEOUT``; task mode
    for callers holding ``MOMENTSEG_TASK_TOKEN`` (or the file in ``MOMENTSEG_TASK_TOKEN_FILE``), its
    frames read from ``CVAT_HOST`` with the credentials of ``cvat.connection.credentials_from_env``.
    A model or setting that fails leaves a service that answers 503 with the reason. ``pipeline``:
    one already loaded (``momentseg serve`` loads it first to report a bad checkpoint to its user)."""
    import os

    from momentseg.cvat.connection import connect_from_env
    from momentseg.cvat.frames import TaskFrames, parse_ranges

    env = dict(os.environ if env is None else env)
    errors = []
    limits = Limits()
    try:
        limits = Limits.from_env(env)
    except InvalidInputError as error:
        errors.append(str(error))
    task_token = None
    try:
        task_token = read_secret(env, "MOMENTSEG_TASK_TOKEN")
    except InvalidInputError as error:
        errors.append(str(error))

    def read_task(task: dict[str, Any], fps: float) -> TaskFrames:
        return TaskFrames(
            connect_from_env(env),
            task["id"],
            task.get("frame_start"),
            task.get("frame_stop"),
            task.get("frame_step"),
            fps=fps,
            numbers=parse_ranges(task["frames"]) if "frames" in task else None,
        )

    checkpoint = env.get("MOMENTSEG_CHECKPOINT")
    if not errors and pipeline is None:
        try:
            if not checkpoint:
                raise InvalidInputError("MOMENTSEG_CHECKPOINT is not set")
            pipeline = load_pipeline(
                checkpoint, env.get("MOMENTSEG_DEVICE") or default_device(), env.get("MOMENTSEG_DTYPE") or None
            )
        except (MomentSegError, OSError) as error:
            errors.append(
                str(error)
                if isinstance(error, MomentSegError)
                else f"the checkpoint cannot be read ({error.strerror or error})"
            )
    service = SegmentService(
        pipeline,
        limits=limits,
        task_reader=read_task,
        load_error="; ".join(errors) or None,
        task_token=task_token,
        internal=_internal_values(env),
    )
    if service.load_error:
        log.error("model not loaded: %s", service.load_error)
    return service


def load_pipeline(checkpoint: str, device: str, dtype: str | None = None) -> MomentSegPipeline:
    """Load the checkpoint on ``device`` in ``dtype`` (None: bfloat16 on CUDA, float32 on CPU); ``cuda``
    without a visible GPU is an error, not a silent CPU run."""
    from momentseg.model.checkpoint import load_checkpoint

    check_device(device, "MOMENTSEG_DEVICE")
    return MomentSegPipeline(load_checkpoint(checkpoint, device=device, dtype=dtype))
