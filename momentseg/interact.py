"""CVAT interactor: one frame's mask from a text description, at once.

CVAT ≥ 2.60 forwards ``text_prompts`` to an interactor when an API client sends them (its own UI sends
points and boxes only). The answer is MomentSeg's RefVOS pass on that single image — the LMM's [SEG]
token, projected, prompting SAM2's decoder on the image (paper §3.2.2 with K = 1 keyframe; no grounding,
no propagation). A whole-video run cannot start here: the request carries the frame's pixels and
nothing naming its task, job or frame, so there is nothing to write the video's masks to; that is what
the ``/segment`` issue comment (docs/webhooks.md) and ``momentseg cvat annotate`` are for.

Points and boxes are refused rather than mixed in: SAM2 would follow them and the answer would no
longer be the text's; a person who wants to correct a mask with clicks uses a point interactor.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np

from momentseg.errors import InvalidInputError
from momentseg.masks import mask_to_polygons
from momentseg.model.sam2_tracker import DecodedMask, Sam2Tracker
from momentseg.pipeline import MomentSegPipeline, SegmentOptions, validate_prompt
from momentseg.propagation import object_presence
from momentseg.service import EncodedFrames, RequestError, SegmentService, build_service_from_env
from momentseg.video import FrameSource

MAX_PROMPTS = 8  # descriptions per request: each is one LMM pass
POLYGON_TOLERANCE = 1.0  # pixels, as the pipeline's polygon output

WHOLE_VIDEO_HINT = (
    "for the whole video, write '/segment <what to find>' as a comment on an issue in the job "
    "(docs/webhooks.md) or run 'momentseg cvat annotate'"
)

REQUEST_SCHEMA = {
    "type": "object",
    "required": ["image"],
    "properties": {
        "image": {"type": "string", "minLength": 1},
        "text_prompts": {
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": MAX_PROMPTS}]
        },
        "pos_points": {"type": "array"},
        "neg_points": {"type": "array"},
        "obj_bbox": {"type": ["array", "null"]},
        "force_answer": {"type": "boolean"},
    },
}


@dataclass(frozen=True)
class Interaction:
    """A checked interactor request: the frame (one image) and the descriptions, in order, and the loaded
    model that answers it."""

    pipeline: MomentSegPipeline
    image: EncodedFrames
    prompts: list[str]
    options: SegmentOptions


def segment_image(
    pipeline: MomentSegPipeline, image: FrameSource, prompt: str, options: SegmentOptions
) -> DecodedMask | None:
    """The RefVOS pass on one image: p = text_hidden_fcs(h_[SEG]) from the LMM seeing the image, then
    SAM2's mask decoder prompted by p on that image's features; None when the model answers without
    [SEG]."""
    embedding, _ = pipeline.prompt_embedding(image, np.array([0]), prompt, options)
    if embedding is None:
        return None
    model = pipeline.model
    tracker = Sam2Tracker(
        model.predictor, image, prompt=embedding, dtype=model.lmm.dtype, mask_upsampling=options.mask_upsampling
    )
    return tracker.decode_prompt(0, embedding)


def mask_shape(mask: np.ndarray, confidence: float, label: str) -> dict[str, Any]:
    """A mask the way CVAT reads a function's mask shape: ``mask`` is the 0/1 bitmap of the box area,
    row by row, then [xtl, ytl, xbr, ybr] (inclusive); ``points`` the largest part's polygon, used when
    the annotator asks CVAT for polygons."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, bottom, left, right = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    bitmap = mask[top : bottom + 1, left : right + 1].astype(np.uint8).ravel().tolist()
    parts = [p for p in mask_to_polygons(mask, POLYGON_TOLERANCE) if len(p.exterior) >= 3]
    points = max(parts, key=lambda p: len(p.exterior)).flat() if parts else []
    return {
        "label": label,
        "type": "mask",
        "points": points,
        "mask": [*bitmap, left, top, right, bottom],
        "confidence": round(float(confidence), 4),
    }


class InteractorService:
    """The interactor on a ``SegmentService``'s model and limits; one request at a time (the Nuclio
    function runs one worker)."""

    def __init__(self, service: SegmentService, options: SegmentOptions = SegmentOptions(), label: str = "object"):
        self.service = service
        self.options = options
        self.label = label

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> InteractorService:
        """The model and limits as the video function reads them (docs/deploy.md)."""
        return cls(build_service_from_env(os.environ if env is None else env))

    def handle(self, body: bytes | str | dict | None) -> tuple[int, Any]:
        """(200, a list of mask shapes, one per description the model found) or (4xx/5xx, an error)."""
        try:
            interaction = self.prepare(body)
            shapes = []
            for prompt in interaction.prompts:
                decoded = segment_image(interaction.pipeline, interaction.image, prompt, interaction.options)
                if decoded is not None and decoded.mask.any():
                    confidence = object_presence(decoded.iou, decoded.object_score_logit)
                    shapes.append(mask_shape(decoded.mask, confidence, self.label))
            return 200, shapes
        except Exception as error:  # the function must keep serving whatever a request does
            return self.service.error_response(error)

    def prepare(self, body: bytes | str | dict | None) -> Interaction:
        """Every check that needs no model."""
        request = self._parse(body)
        prompts = request.get("text_prompts") or []
        prompts = [prompts] if isinstance(prompts, str) else prompts
        prompts = [p for p in prompts if p.strip()]
        if not prompts:
            raise RequestError(
                400,
                "needs_text",
                "MomentSeg's interactor segments what a text describes and got "
                "no text: CVAT sends 'text_prompts' to interactors from API clients (CVAT >= 2.60), "
                f"its web UI sends points only; {WHOLE_VIDEO_HINT}",
            )
        if request.get("pos_points") or request.get("neg_points") or request.get("obj_bbox"):
            raise RequestError(
                400,
                "points_not_used",
                "MomentSeg's interactor segments from the text alone: send "
                "'text_prompts' without points or a box (correct a mask with a point interactor "
                "such as SAM2)",
            )
        checked = []
        for index, prompt in enumerate(prompts):
            try:
                checked.append(validate_prompt(prompt))
            except InvalidInputError as error:
                raise RequestError(400, "invalid_request", f"text_prompts[{index}]: {error}") from None
        if self.service.pipeline is None:
            raise RequestError(
                503, "model_not_loaded", f"the model is not loaded: {self.service.load_error or 'unknown'}"
            )
        try:
            image = EncodedFrames([request["image"]], fps=1.0, max_pixels=self.service.limits.max_frame_pixels)
        except RequestError as error:
            raise RequestError(error.status, error.code, str(error).replace("frames[0]", "image")) from None
        options = dataclasses.replace(self.options, force_answer=request.get("force_answer", self.options.force_answer))
        return Interaction(self.service.pipeline, image, checked, options)

    def _parse(self, body: bytes | str | dict | None) -> dict[str, Any]:
        limit = self.service.limits.max_body_bytes
        if isinstance(body, (bytes, bytearray, str)):
            if len(body) > limit:
                raise RequestError(
                    413, "request_too_large", f"the request has more than {limit} bytes (MOMENTSEG_MAX_BODY_BYTES)"
                )
            try:
                body = json.loads(body)
            except (ValueError, RecursionError):
                raise RequestError(400, "malformed_json", "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise RequestError(
                400,
                "malformed_json",
                "the request body must be a JSON object: CVAT's interactor "
                'call {"image", "text_prompts", "pos_points", "neg_points"}',
            )
        try:
            jsonschema.validate(body, REQUEST_SCHEMA)
        except jsonschema.ValidationError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "request"
            raise RequestError(400, "invalid_request", f"{where}: {error.message[:200]}") from None
        return body
