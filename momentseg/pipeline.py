"""MomentSeg inference, top to bottom like the paper's Fig. 4: ground → sample → segment → propagate → encode.

The defaults reproduce the authors' released inference (``predict_forward_find_seg``, RefVOS evaluation
settings; ``docs/official.md``); every choice is a :class:`SegmentOptions` field
(declared in momentseg.options) so the paper's ablations (Tables 8-9), the spec's readings of the paper and
our extensions still run.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch

from momentseg.errors import InvalidInputError
from momentseg.grounding import (
    frame_similarity,
    longest_moment,
    moment_around_center,
    moment_seconds,
)
from momentseg.masks import mask_to_polygons, to_cvat_rle
from momentseg.model.checkpoint import MomentSegModel
from momentseg.model.prompts import RESERVED_TOKENS
from momentseg.model.sam2_tracker import DecodedMask, Sam2Tracker
from momentseg.options import SegmentOptions
from momentseg.propagation import SCORES, Anchor, BAPOptions, BidirectionalAnchorPropagation, PropagatedFrame
from momentseg.result import Moment, SegmentResult, Shape, Track
from momentseg.sampling import SAMPLERS, default_window, moment_center, moment_centric_sampling, smooth_similarity
from momentseg.video import FrameSource, as_store

log = logging.getLogger(__name__)

MAX_PROMPT_CHARS = 1000
# samplers that need a frame-query similarity; without one they fall back to uniform (as the official code)
SIMILARITY_SAMPLERS = {"mcs", "top_k", "nearby_k"}
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Grounding:
    """The TSG pass's outcome: s = σ(ℓ) and S (smoothed) on every frame, or None without [FIND]."""

    similarity_raw: np.ndarray | None
    similarity: np.ndarray | None
    answer: str


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - start, 4)


def validate_prompt(prompt: str) -> str:
    """The prompt with invisible characters dropped and whitespace collapsed; refuses empty (zero-width
    characters alone count as empty), over-long, special-token or broken-unicode text."""
    # control and format characters (zero-width spaces and joiners, BOM, bidi marks) carry no words
    visible = "".join(char for char in str(prompt) if unicodedata.category(char) not in ("Cc", "Cf") or char.isspace())
    text = " ".join(visible.split())
    if not text:
        raise InvalidInputError("the prompt is empty: describe the object to find")
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidInputError(f"the prompt has {len(text)} characters; at most {MAX_PROMPT_CHARS} are allowed")
    if any(0xD800 <= ord(char) <= 0xDFFF for char in text):
        raise InvalidInputError("the prompt contains an unpaired surrogate: send valid Unicode text")
    reserved = [token for token in RESERVED_TOKENS if token in text]
    if reserved:
        raise InvalidInputError(f"the prompt contains the model's special token {reserved[0]}: remove it")
    return text


def tsg_frame_indices(num_frames: int, max_frames: int = 100) -> np.ndarray:
    """The frames the TSG pass sees: all of them, or ``linspace(0, T-1, max_frames, dtype=int)`` when
    T > max_frames + 1 (official MM:574-578)."""
    if num_frames > max_frames + 1:
        return np.linspace(0, num_frames - 1, max_frames, dtype=np.int64)
    return np.arange(num_frames)


class MomentSegPipeline:
    """Frames + prompt + options → masks for every frame, the moment, keyframes and scores."""

    def __init__(self, model: MomentSegModel):
        self.model = model

    def ground(self, frames: FrameSource, prompt: str, options: SegmentOptions) -> Grounding:
        """TSG pass: s_j = σ(cos(T^f, T^v_j)/τ) and S = Gaussian(s) on all T frames (paper §3.2.1, MM:549-661)."""
        total = len(frames)
        sampled = tsg_frame_indices(total, options.tsg_frames)
        states = self.model.lmm.encode_tsg(
            (frames[int(i)] for i in sampled),
            prompt,
            min_pixels=min(options.tsg_min_pixels, options.tsg_pixels),
            max_pixels=options.tsg_pixels,
            style=options.find_prompt,
            force_answer=options.force_answer,
            max_new_tokens=options.max_new_tokens,
        )
        head = self.model.find_head
        if states.find is None or head is None:
            return Grounding(None, None, states.answer)
        with torch.inference_mode():
            find = head(states.find).float().cpu().numpy()
            pooled = head(states.frame_tokens).mean(dim=1).float().cpu().numpy()
        raw = frame_similarity(
            find, pooled, total, options.tau, interpolation=options.similarity_interpolation, sampled_frames=sampled
        )
        return Grounding(raw, smooth_similarity(raw, options.sigma), states.answer)

    def prompt_embedding(
        self, frames: FrameSource, keyframes: np.ndarray, prompt: str, options: SegmentOptions
    ) -> tuple[torch.Tensor | None, str]:
        """RefVOS pass: p = text_hidden_fcs(h_SEG) over the keyframes as images ("one token seg all"), or
        None when the model answers without [SEG]; and the answer."""
        state = self.model.lmm.encode_seg(
            (frames[int(k)] for k in keyframes),
            prompt,
            min_pixels=min(options.image_min_pixels, options.image_pixels),
            max_pixels=options.image_pixels,
            style=options.seg_prompt,
            force_answer=options.force_answer,
            max_new_tokens=options.max_new_tokens,
        )
        if state.seg is None:
            return None, state.answer
        with torch.inference_mode():
            return self.model.seg_projector(state.seg).float(), state.answer

    def run(
        self,
        frames: FrameSource,
        prompt: str,
        options: SegmentOptions | None = None,
        *,
        human_anchors: Mapping[int, np.ndarray] | None = None,
        progress: Progress | None = None,
    ) -> SegmentResult:
        options = options or SegmentOptions()
        prompt = validate_prompt(prompt)
        if len(frames) == 0:
            raise InvalidInputError("the video has no frames")
        store = as_store(frames)
        try:
            return self._run(store, prompt, options, human_anchors or {}, progress or (lambda stage, done, todo: None))
        finally:
            if store is not frames:
                store.close()

    def _run(
        self,
        frames: FrameSource,
        prompt: str,
        options: SegmentOptions,
        human_anchors: Mapping[int, np.ndarray],
        report: Progress,
    ) -> SegmentResult:
        timer = _Timer()
        total = len(frames)
        with timer.stage("decode_first_frame"):
            height, width = frames[0].shape[:2]
        human = _validated_human_anchors(human_anchors, total, height, width)
        reasons = []

        # 1. TSG: frame-query similarity from [FIND]
        grounding = Grounding(None, None, "")
        if self.model.find_head is not None:
            report("grounding", 0, 1)
            with timer.stage("tsg"):
                grounding = self.ground(frames, prompt, options)
            report("grounding", 1, 1)
            if grounding.similarity is None:
                reasons.append(
                    f"the model answered without [FIND] ('{grounding.answer}'): no moment is predicted "
                    "and keyframes are sampled uniformly"
                )
        else:
            reasons.append(
                "the checkpoint has no [FIND] head: no moment is predicted and keyframes are sampled uniformly"
            )
        similarity = grounding.similarity

        # 2. MCS (or a baseline): keyframes, moment centre c*, moment
        with timer.stage("sampling"):
            keyframes, start, center, sampling = _keyframes(similarity, total, options)
            moment = None
            if similarity is not None and center is not None:
                moment = _moment(similarity, center, options, frames.fps)

        # 3. RefVOS: [SEG] → SAM2 masks on the keyframes
        report("segmenting keyframes", 0, len(keyframes))
        with timer.stage("refvos"):
            embedding, seg_answer = self.prompt_embedding(frames, keyframes, prompt, options)
        results: dict[int, Shape | None] = {}
        decisions = []
        if embedding is None:
            reasons.append(f"the model answered without [SEG] ('{seg_answer}'): no masks")
        else:
            tracker = Sam2Tracker(
                self.model.predictor,
                frames,
                prompt=embedding,
                dtype=self.model.lmm.dtype,
                mask_upsampling=options.mask_upsampling,
                on_frame=lambda: report("propagation", len(results), total),
            )
            with timer.stage("refvos"):
                anchors = []
                for frame in keyframes:
                    decoded = tracker.decode_prompt(int(frame), embedding)
                    anchors.append(Anchor(int(frame), decoded, decoded.iou, decoded.object_score_logit))
            report("segmenting keyframes", len(keyframes), len(keyframes))
            anchors += [Anchor.from_person(frame, mask) for frame, mask in human.items()]

            # 4. BAP: SAM2 propagation from c*, forward then backward, re-anchored at the keyframes (Eq. 8)
            score = SCORES[options.bap_score]
            bap = BidirectionalAnchorPropagation(
                tracker,
                anchors,
                start,
                total,
                BAPOptions(
                    anchored_updating=options.anchored_updating,
                    adaptive_cleaning=options.adaptive_cleaning,
                    bidirectional=options.bidirectional,
                    lam=options.lam,
                    clear_reach=options.clear_reach,
                    tracking_score=score,
                    prompt_score=score,
                ),
            )
            keyframe_set = set(int(k) for k in keyframes) | set(human)
            with timer.stage("propagation"):
                for output in bap:
                    results[output.frame] = _encode(output, options, keyframe_set)
            start = bap.start
            decisions = [asdict(d) for d in bap.decisions]
            report("propagation", total, total)

        # 5. Encode: one track, outside where the object is absent
        with timer.stage("encode"):
            tracks = _tracks(results, options.label)
        return SegmentResult(
            prompt=prompt,
            num_frames=total,
            width=width,
            height=height,
            fps=float(frames.fps),
            moment=moment,
            moment_reason="; ".join(reasons) or None,
            center_frame=int(start),
            keyframes=[int(k) for k in keyframes],
            similarity=None if similarity is None else [round(float(v), 6) for v in similarity],
            tracks=tracks,
            model=self.model.info.to_dict(),
            options={**asdict(options), "sampling": sampling},
            timings=timer.timings,
            decisions=decisions,
            frame_names=list(getattr(frames, "names", [])) or None,
            moment_center=None if center is None else int(center),
            similarity_raw=None
            if grounding.similarity_raw is None
            else [round(float(v), 6) for v in grounding.similarity_raw],
            answers={"find": grounding.answer or None, "seg": seg_answer},
        )


def _keyframes(
    similarity: np.ndarray | None, total: int, options: SegmentOptions
) -> tuple[np.ndarray, int, int | None, str]:
    """Keyframes, the frame BAP starts from, c* and the sampler used.

    MCS gives c* as the start; when it fell back to uniform keyframes, or without a similarity, BAP starts
    at the middle keyframe (official S2:363-365); a baseline starts at the keyframe nearest c*.
    """
    sampling = options.sampling
    center = None if similarity is None else moment_center(similarity, options.keyframes, window=options.window)
    if similarity is None and sampling in SIMILARITY_SAMPLERS:
        sampling = "uniform"
    if sampling == "mcs":
        keyframes, mcs_center = moment_centric_sampling(
            similarity, options.keyframes, window=options.window, duplicates=options.mcs_duplicates
        )
        start = mcs_center if mcs_center is not None else int(keyframes[len(keyframes) // 2])
        return keyframes, int(start), center, sampling
    curve = similarity if similarity is not None else np.ones(total)
    extra = {"seed": options.seed} if sampling == "random" else {}
    keyframes = SAMPLERS[sampling](curve, options.keyframes, **extra)
    if center is None:
        return keyframes, int(keyframes[len(keyframes) // 2]), None, sampling
    return keyframes, int(keyframes[np.argmin(np.abs(keyframes - center))]), center, sampling


def _moment(similarity: np.ndarray, center: int, options: SegmentOptions, fps: float) -> Moment:
    if options.moment_rule == "longest":
        start, end = longest_moment(similarity, options.threshold)
    else:
        window = options.window or default_window(similarity.size, options.keyframes)
        start, end = moment_around_center(similarity, center, options.threshold, window=window)
    start_sec, end_sec = moment_seconds(start, end, fps)
    return Moment(
        start, end, round(start_sec, 4), round(end_sec, 4), round(float(similarity[start : end + 1].mean()), 4)
    )


def _validated_human_anchors(
    anchors: Mapping[int, np.ndarray], total: int, height: int, width: int
) -> dict[int, np.ndarray]:
    checked = {}
    for frame, mask in anchors.items():
        if not 0 <= int(frame) < total:
            raise InvalidInputError(f"anchor frame {frame} is outside the video's {total} frames")
        mask = np.asarray(mask).astype(bool)
        if mask.shape != (height, width):
            raise InvalidInputError(
                f"anchor mask at frame {frame} has shape {mask.shape}; the video's frames are "
                f"{height}x{width} (height x width)"
            )
        checked[int(frame)] = mask
    return checked


def frame_mask(output: PropagatedFrame) -> np.ndarray:
    """The bool [H, W] mask of a BAP output (a keyframe's decode, a person's mask or a tracked mask)."""
    return output.mask.mask if isinstance(output.mask, DecodedMask) else output.mask


def _encode(output: PropagatedFrame, options: SegmentOptions, keyframes: set[int]) -> Shape | None:
    mask = frame_mask(output)
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
    found = {f: s for f, s in results.items() if s is not None}
    present = np.array(sorted(found))
    if present.size == 0:
        return []
    shapes = []
    for frame in sorted(results):
        shape = results[frame]
        if shape is None:
            after = min(int(np.searchsorted(present, frame)), present.size - 1)
            nearest = min(present[max(after - 1, 0)], present[after], key=lambda f: (abs(f - frame), f))
            source = found[int(nearest)]
            shape = Shape(frame, source.type, source.points, False, True, 0.0)
        shapes.append(shape)
    return [Track(label, shapes)]
