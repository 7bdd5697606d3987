"""The video-level segmentation service behind the Nuclio function and ``momentseg serve``.

Transport-agnostic: ``SegmentService.handle(body) -> (status, json_dict)``. It validates the request
against ``schemas/segment_request.schema.json``, runs the pipeline one request at a time, and answers
every failure with ``{"error": code, "message": ...}`` and a 4xx/5xx status, never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable

import cv2
import jsonschema
import numpy as np

from momentseg.errors import InvalidInputError, MomentSegError
from momentseg.masks import from_cvat_rle
from momentseg.pipeline import MomentSegPipeline, SegmentOptions
from momentseg.video import DEFAULT_FPS, FrameSource

log = logging.getLogger(__name__)

REQUEST_SCHEMA = json.loads(resources.files("momentseg.schemas").joinpath("segment_request.schema.json").read_text())
_VALIDATOR = jsonschema.Draft202012Validator(REQUEST_SCHEMA)


class RequestError(MomentSegError):
    """A request the service refuses, with its HTTP status and error code."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_frames: int = 5000
    max_body_bytes: int = 1 << 30
    max_frame_pixels: int = 4096 * 4096


class EncodedFrames(FrameSource):
    """Base64 JPEG/PNG frames from a request, checked once, then decoded again per visit."""

    def __init__(self, encoded: list[str], fps: float):
        self.images: list[bytes] = []
        size = None
        for index, text in enumerate(encoded):
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(400, "invalid_frame", f"frames[{index}] is not valid base64") from None
            frame = self._decode(data, index)
            if size is None:
                size = frame.shape[:2]
            elif frame.shape[:2] != size:
                raise RequestError(400, "frame_size_mismatch",
                                   f"frames[{index}] is {frame.shape[1]}x{frame.shape[0]}, frames[0] is "
                                   f"{size[1]}x{size[0]}: all frames must have one size")
            self.images.append(data)
        self.fps = fps
        self.names = [f"{i:05d}" for i in range(len(self.images))]

    @staticmethod
    def _decode(data: bytes, index: int) -> np.ndarray:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise RequestError(400, "invalid_frame", f"frames[{index}] is not a decodable JPEG or PNG image")
        return bgr

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        return cv2.cvtColor(self._decode(self.images[index], index), cv2.COLOR_BGR2RGB)


def _schema_error_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "oneOf" and not error.absolute_path:
        return "give exactly one of 'frames' (base64 images) or 'task' (a CVAT task id)"
    where = "/".join(str(p) for p in error.absolute_path) or "request"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
    return f"{where}: {message}"


def _options(request: dict[str, Any]) -> SegmentOptions:
    bap = request.get("bap", {})
    values = {
        "keyframes": request.get("keyframes"), "threshold": request.get("threshold"),
        "sampling": request.get("sampling"), "output": request.get("output"), "label": request.get("label"),
        "anchored_updating": bap.get("anchored_updating"), "adaptive_cleaning": bap.get("adaptive_cleaning"),
        "bidirectional": bap.get("bidirectional"), "lam": bap.get("lambda"),
    }
    try:
        return SegmentOptions(**{k: v for k, v in values.items() if v is not None})
    except InvalidInputError as error:
        raise RequestError(400, "invalid_option", str(error)) from error


TaskReader = Callable[[dict[str, Any], float], FrameSource]


class SegmentService:
    """One model, one request at a time (a lock queues concurrent callers)."""

    def __init__(self, pipeline: MomentSegPipeline | None, *, limits: Limits = Limits(),
                 task_reader: TaskReader | None = None, load_error: str | None = None):
        self.pipeline = pipeline
        self.limits = limits
        self.task_reader = task_reader
        self.load_error = load_error
        self._lock = threading.Lock()

    def handle(self, body: bytes | str | dict | None) -> tuple[int, dict[str, Any]]:
        try:
            with self._lock:
                return 200, self._handle(body)
        except RequestError as error:
            return error.status, {"error": error.code, "message": str(error)}
        except MomentSegError as error:
            status = getattr(error, "status", 400)
            return status, {"error": error.code, "message": str(error)}
        except Exception as error:  # the function must keep serving whatever a request does
            if _is_out_of_memory(error):
                _release_gpu_memory()
                return 503, {"error": "out_of_memory",
                             "message": "the GPU ran out of memory on this video: send fewer or smaller frames"}
            log.exception("internal error while handling a request")
            return 500, {"error": "internal_error", "message": f"internal error ({type(error).__name__})"}

    def _parse(self, body: bytes | str | dict | None) -> dict[str, Any]:
        if isinstance(body, (bytes, bytearray)):
            if len(body) > self.limits.max_body_bytes:
                raise RequestError(413, "request_too_large",
                                   f"the request has {len(body)} bytes; at most {self.limits.max_body_bytes} are accepted")
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise RequestError(400, "malformed_json", "the request body is not UTF-8 JSON") from None
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except json.JSONDecodeError as error:
                raise RequestError(400, "malformed_json", f"the request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise RequestError(400, "malformed_json", "the request body must be a JSON object")
        if isinstance(body.get("frames"), list) and len(body["frames"]) > self.limits.max_frames:
            raise RequestError(413, "too_many_frames",
                               f"{len(body['frames'])} frames sent; at most {self.limits.max_frames} are accepted")
        if "image" in body and "prompt" not in body:
            raise RequestError(400, "needs_prompt", "this function takes a text prompt and a whole video, not "
                               "CVAT's one-frame detector call: use 'momentseg cvat annotate' (see docs/cvat.md)")
        errors = sorted(_VALIDATOR.iter_errors(body), key=lambda e: (len(e.absolute_path), e.path))
        if errors:
            raise RequestError(400, "invalid_request", _schema_error_message(errors[0]))
        if not body["prompt"].strip():
            raise RequestError(400, "invalid_request", "prompt: the prompt is empty")
        return body

    def _frames(self, request: dict[str, Any]) -> tuple[FrameSource, list[int] | None]:
        fps = float(request.get("fps", DEFAULT_FPS))
        if "frames" in request:
            return EncodedFrames(request["frames"], fps), None
        if self.task_reader is None:
            raise RequestError(503, "cvat_not_configured", "this function has no CVAT connection configured")
        frames = self.task_reader(request["task"], fps)
        if len(frames) > self.limits.max_frames:
            raise RequestError(413, "too_many_frames", f"task {request['task']['id']} selects {len(frames)} frames; "
                               f"at most {self.limits.max_frames} are accepted: narrow frame_start/frame_stop")
        return frames, list(frames.numbers)

    def _handle(self, body) -> dict[str, Any]:
        request = self._parse(body)
        if self.pipeline is None:
            raise RequestError(503, "model_not_loaded", f"the model is not loaded: {self.load_error or 'unknown'}")
        options = _options(request)
        frames, numbers = self._frames(request)
        height, width = frames.size
        if height * width > self.limits.max_frame_pixels:
            raise RequestError(413, "frame_too_large", f"frames are {width}x{height}; at most "
                               f"{self.limits.max_frame_pixels} pixels per frame are accepted")
        anchors = self._anchors(request.get("anchors", []), numbers, len(frames), width, height)
        result = self.pipeline.run(frames, request["prompt"], options, human_anchors=anchors)
        response = result.to_dict()
        if numbers is not None:
            response = result.to_task_frames(numbers)
        response["label"] = options.label
        return response

    @staticmethod
    def _anchors(anchors, numbers, total, width, height) -> dict[int, np.ndarray]:
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
                raise RequestError(400, "invalid_anchor", f"anchors[{position}]: the mask does not fit a "
                                   f"{width}x{height} frame ({error})") from None
        return decoded


def _is_out_of_memory(error: Exception) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _release_gpu_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_service_from_env(env: dict[str, str] | None = None) -> SegmentService:
    """The service as the function runs it: weights from ``MOMENTSEG_CHECKPOINT`` on ``MOMENTSEG_DEVICE``
    (``cuda`` by default), limits from ``MOMENTSEG_MAX_FRAMES`` / ``MOMENTSEG_MAX_BODY_BYTES``, and task
    frames read from the CVAT server in ``CVAT_HOST``. A model that fails to load leaves a service that
    answers 503 with the reason."""
    import os

    from momentseg.cvat.connection import TaskFrames, connect_from_env

    env = dict(os.environ if env is None else env)
    limits = Limits(
        max_frames=int(env.get("MOMENTSEG_MAX_FRAMES", Limits.max_frames)),
        max_body_bytes=int(env.get("MOMENTSEG_MAX_BODY_BYTES", Limits.max_body_bytes)),
    )

    def read_task(task: dict[str, Any], fps: float) -> FrameSource:
        return TaskFrames(connect_from_env(env), task["id"], task.get("frame_start"), task.get("frame_stop"),
                          task.get("frame_step"), fps=fps)

    pipeline, load_error = None, None
    checkpoint = env.get("MOMENTSEG_CHECKPOINT")
    try:
        if not checkpoint:
            raise InvalidInputError("MOMENTSEG_CHECKPOINT is not set")
        pipeline = load_pipeline(checkpoint, env.get("MOMENTSEG_DEVICE", "cuda"))
    except MomentSegError as error:
        load_error = str(error)
        log.error("model not loaded: %s", load_error)
    return SegmentService(pipeline, limits=limits, task_reader=read_task, load_error=load_error)


def load_pipeline(checkpoint: str, device: str) -> MomentSegPipeline:
    """Load the checkpoint on ``device``; ``cuda`` without a visible GPU is an error, not a silent CPU run."""
    import torch

    from momentseg.model.checkpoint import load_checkpoint

    if device not in ("cuda", "cpu") and not device.startswith("cuda:"):
        raise InvalidInputError(f"MOMENTSEG_DEVICE must be 'cuda' or 'cpu', got '{device}'")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidInputError("MOMENTSEG_DEVICE is cuda but no GPU is visible to the function")
    return MomentSegPipeline(load_checkpoint(checkpoint, device=device))
