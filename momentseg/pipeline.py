"""MomentSeg inference, top to bottom like the paper's Fig. 4: ground → sample → segment → propagate → encode."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from momentseg.errors import InvalidInputError
from momentseg.grounding import DEFAULT_TAU, frame_query_similarity, moment_seconds, patch_scores_to_frames, predict_moment, sigmoid
from momentseg.masks import mask_to_polygons, to_cvat_rle
from momentseg.model.checkpoint import MomentSegModel
from momentseg.model.lmm import downscale_to_budget
from momentseg.model.sam2_tracker import Sam2Tracker
from momentseg.propagation import Anchor, BAPOptions, BidirectionalAnchorPropagation, PropagatedFrame
from momentseg.result import Moment, SegmentResult, Shape, Track
from momentseg.sampling import SAMPLERS, moment_center, moment_window
from momentseg.video import FrameSource

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 1000
# samplers that need a frame-query similarity; without a [FIND] head they fall back to uniform
SIMILARITY_SAMPLERS = {"mcs", "top_k", "nearby_k"}
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SegmentOptions:
    """Inference options (paper App. B.2 defaults); every Table 8/9 choice is one of them."""

    keyframes: int = 8
    sampling: str = "mcs"
    threshold: float = 0.4
    lam: float = 0.9
    sigma: float = 1.0
    window: int | None = None
    tau: float = DEFAULT_TAU
    anchored_updating: bool = True
    adaptive_cleaning: bool = True
    bidirectional: bool = True
    tsg_frames: int = 100
    tsg_pixels: int = 8 * 8 * 28 * 28
    image_pixels: int = 16 * 16 * 28 * 28
    output: str = "mask"
    polygon_tolerance: float = 1.0
    label: str = "object"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.sampling not in SAMPLERS:
            raise InvalidInputError(f"unknown sampling '{self.sampling}': use one of {', '.join(SAMPLERS)}")
        if self.output not in ("mask", "polygon"):
            raise InvalidInputError(f"output must be 'mask' or 'polygon', got '{self.output}'")
        if not 1 <= self.keyframes <= 64:
            raise InvalidInputError(f"keyframes must be between 1 and 64, got {self.keyframes}")
        if not 0 <= self.threshold <= 1:
            raise InvalidInputError(f"threshold must be in [0, 1], got {self.threshold}")
        if not 0 <= self.lam <= 1:
            raise InvalidInputError(f"lambda must be in [0, 1], got {self.lam}")
        if self.tsg_frames < 2 or self.tsg_pixels < 4 * 28 * 28 or self.image_pixels < 4 * 28 * 28:
            raise InvalidInputError("tsg_frames must be >= 2 and pixel budgets >= 4·28·28")


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def validate_prompt(prompt: str) -> str:
    text = " ".join(str(prompt).split())
    if not text:
        raise InvalidInputError("the prompt is empty: describe the object to find")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    return text


class MomentSegPipeline:
    """Frames + prompt + options → masks for every frame, the moment, keyframes and scores."""

    def __init__(self, model: MomentSegModel):
        self.model = model

    def ground(self, frames: FrameSource, prompt: str, options: SegmentOptions) -> np.ndarray:
        """TSG pass: the per-frame frame-query similarity s = σ(ℓ) over all T frames (spec §2)."""
        total = len(frames)
        sampled = np.unique(np.round(np.linspace(0, total - 1, min(total, options.tsg_frames))).astype(int))
        low_res = [downscale_to_budget(frames[int(i)], options.tsg_pixels) for i in sampled]
        effective_fps = frames.fps * (len(sampled) - 1) / max(total - 1, 1) if len(sampled) > 1 else frames.fps
        states = self.model.lmm.encode_tsg(low_res, prompt, effective_fps, options.tsg_pixels)
        head = self.model.find_head
        with torch.inference_mode():
            find = head(states.find)
            frame_tokens = head(states.frame_tokens).mean(dim=1)
            logits = frame_query_similarity(find, frame_tokens, options.tau)
        return patch_scores_to_frames(sigmoid(logits.float().cpu().numpy()), sampled, total)

    def segment_keyframes(self, frames: FrameSource, keyframes: np.ndarray, prompt: str, options: SegmentOptions,
                          tracker: Sam2Tracker) -> list[Anchor]:
        """RefVOS pass: one [SEG] token over the keyframes, decoded by SAM2 on each keyframe ("one token seg all")."""
        images = [downscale_to_budget(frames[int(k)], options.image_pixels) for k in keyframes]
        h_seg = self.model.lmm.encode_seg(images, prompt, options.image_pixels)
        with torch.inference_mode():
            prompt_embedding = self.model.seg_projector(h_seg).float()
        anchors = []
        for frame in keyframes:
            decoded = tracker.decode_prompt(int(frame), prompt_embedding)
            anchors.append(Anchor(int(frame), decoded.mask, decoded.iou, decoded.object_score_logit))
        return anchors

    def run(self, frames: FrameSource, prompt: str, options: SegmentOptions | None = None, *,
            human_anchors: Mapping[int, np.ndarray] | None = None, progress: Progress | None = None) -> SegmentResult:
        options = options or SegmentOptions()
        prompt = validate_prompt(prompt)
        timer = _Timer()
        total = len(frames)
        if total == 0:
            raise InvalidInputError("the video has no frames")
        with timer.stage("decode_first_frame"):
            height, width = frames[0].shape[:2]
        human = _validated_human_anchors(human_anchors or {}, total, height, width)
        report = progress or (lambda stage, done, todo: None)

        # 1. TSG: frame-query similarity from [FIND]
        similarity = None
        reason = None
        if self.model.find_head is not None:
            report("grounding", 0, 1)
            with timer.stage("tsg"):
                similarity = self.ground(frames, prompt, options)
            report("grounding", 1, 1)
        else:
            reason = "the checkpoint has no [FIND] head: no moment is predicted and keyframes are sampled uniformly"
            log.warning(reason)

        # 2. MCS (or a baseline): keyframes, moment centre c*, moment
        with timer.stage("sampling"):
            sampling = options.sampling
            curve = similarity if similarity is not None else np.ones(total)
            if similarity is None and sampling in SIMILARITY_SAMPLERS:
                sampling = "uniform"
            sampler_options = {"sigma": options.sigma, "window": options.window} if sampling == "mcs" else {}
            if sampling == "random":
                sampler_options = {"seed": options.seed}
            keyframes = SAMPLERS[sampling](curve, options.keyframes, **sampler_options)
            center = _start_frame(curve, keyframes, options, has_similarity=similarity is not None)
            moment = None
            if similarity is not None:
                window_start, window_end = moment_window(similarity, options.keyframes, sigma=options.sigma,
                                                         window=options.window)
                start, end = predict_moment(similarity, center, options.threshold,
                                            window=window_end - window_start + 1)
                start_sec, end_sec = moment_seconds(start, end, frames.fps)
                moment = Moment(start, end, round(start_sec, 4), round(end_sec, 4),
                                round(float(similarity[start:end + 1].mean()), 4))

        # 3. RefVOS: [SEG] → SAM2 masks on the keyframes
        tracker = Sam2Tracker(self.model.predictor, frames,
                              on_frame=lambda: report("propagation", len(results), total))
        report("segmenting keyframes", 0, len(keyframes))
        with timer.stage("refvos"):
            anchors = self.segment_keyframes(frames, keyframes, prompt, options, tracker)
        report("segmenting keyframes", len(keyframes), len(keyframes))
        anchors += [Anchor.from_person(frame, mask) for frame, mask in human.items()]

        # 4. BAP: SAM2 propagation from c*, re-anchored at the keyframes (Eq. 8)
        bap = BidirectionalAnchorPropagation(
            tracker, anchors, center, total,
            BAPOptions(anchored_updating=options.anchored_updating, adaptive_cleaning=options.adaptive_cleaning,
                       bidirectional=options.bidirectional, lam=options.lam),
        )
        results: dict[int, Shape | None] = {}
        keyframe_set = set(int(k) for k in keyframes) | set(human)
        with timer.stage("propagation"):
            for output in bap:
                results[output.frame] = _encode(output, options, keyframe_set)
        report("propagation", total, total)

        # 5. Encode: one track, outside where the object is absent
        with timer.stage("encode"):
            tracks = _tracks(results, options.label)
        return SegmentResult(
            prompt=prompt, num_frames=total, width=width, height=height, fps=float(frames.fps),
            moment=moment, moment_reason=reason, center_frame=int(bap.start), keyframes=[int(k) for k in keyframes],
            similarity=None if similarity is None else [round(float(v), 5) for v in similarity],
            tracks=tracks, model=self.model.info.to_dict(),
            options={**asdict(options), "sampling": sampling},
            timings=timer.timings, decisions=[asdict(d) for d in bap.decisions],
            frame_names=list(getattr(frames, "names", [])) or None,
        )


def _start_frame(curve: np.ndarray, keyframes: np.ndarray, options: SegmentOptions, *, has_similarity: bool) -> int:
    """c* for MCS; for a baseline, the keyframe nearest c*; without similarity, the middle keyframe."""
    if not has_similarity:
        return int(keyframes[len(keyframes) // 2])
    center = moment_center(curve, options.keyframes, sigma=options.sigma, window=options.window)
    return int(keyframes[np.argmin(np.abs(keyframes - center))])


def _validated_human_anchors(anchors: Mapping[int, np.ndarray], total: int, height: int, width: int) -> dict[int, np.ndarray]:
    checked = {}
    for frame, mask in anchors.items():
        if not 0 <= int(frame) < total:
            raise InvalidInputError(f"anchor frame {frame} is outside the video's {total} frames")
        mask = np.asarray(mask).astype(bool)
        if mask.shape != (height, width):
            raise InvalidInputError(f"anchor mask at frame {frame} has shape {mask.shape}; the video's frames are "
                                    f"{height}x{width} (height x width)")
        checked[int(frame)] = mask
    return checked


def _encode(output: PropagatedFrame, options: SegmentOptions, keyframes: set[int]) -> Shape | None:
    mask = output.mask
    if not mask.any():
        return None
    if options.output == "polygon":
        parts = mask_to_polygons(mask, options.polygon_tolerance)
        parts = [p for p in parts if len(p.exterior) >= 3]
        if not parts:
            return None
        largest = max(parts, key=lambda p: len(p.exterior))
        points = largest.flat()
    else:
        points = to_cvat_rle(mask)
    return Shape(output.frame, options.output, points, output.frame in keyframes, False, round(float(output.score), 4))


def _tracks(results: dict[int, Shape | None], label: str) -> list[Track]:
    present = np.array(sorted(f for f, s in results.items() if s is not None))
    if present.size == 0:
        return []
    shapes = []
    for frame in sorted(results):
        shape = results[frame]
        if shape is None:
            after = min(int(np.searchsorted(present, frame)), present.size - 1)
            nearest = min(present[max(after - 1, 0)], present[after], key=lambda f: (abs(f - frame), f))
            source = results[int(nearest)]
            shape = Shape(frame, source.type, source.points, False, True, 0.0)
        shapes.append(shape)
    return [Track(label, shapes)]
