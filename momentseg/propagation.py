"""Bidirectional Anchor-updated Propagation (paper §3.2.3, Eq. 8, Table 9; spec §5).

The policy decides, frame by frame, when to keep tracking, when to re-anchor on a keyframe mask and
when to clear the tracker's memory. It never looks at masks: they are opaque values handed between
the anchors and a :class:`Tracker` (the SAM2 adapter in ``momentseg.model``, or a scripted one in tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterator, Protocol, Sequence

from momentseg.errors import InvalidInputError

__all__ = [
    "Anchor",
    "AnchorDecision",
    "BAPOptions",
    "BidirectionalAnchorPropagation",
    "PropagatedFrame",
    "TrackedFrame",
    "Tracker",
    "anchor_update",
    "confidence_score",
]


@dataclass(frozen=True)
class TrackedFrame:
    """One frame a tracker propagated to: the mask and the raw scores behind S^t."""

    frame: int
    mask: Any
    iou: float
    object_score_logit: float


class Tracker(Protocol):
    """A video object tracker with an explicit memory, as BAP needs it.

    Frames are 0-based. The caller conditions at least one frame before propagating.
    """

    def condition(self, frame: int, mask: Any) -> None:
        """Make ``mask`` the object's conditioning memory at ``frame``; it must not be tracked yet."""

    def propagate(self, start: int, *, reverse: bool) -> Iterator[TrackedFrame]:
        """Track from the conditioned frame ``start`` and yield frames start±1, start±2, ... in order
        until the video ends. The caller may stop early; untaken frames are not computed."""

    def clear_memory(self, keep: Collection[int]) -> None:
        """Forget every tracked frame and every conditioning frame not in ``keep``."""


def confidence_score(iou: float, object_score_logit: float) -> float:
    """S = IoU · σ(o): predicted mask IoU times object presence (spec §5 defines S^t and S^p so)."""
    if object_score_logit >= 0:
        presence = 1.0 / (1.0 + math.exp(-object_score_logit))
    else:
        presence = math.exp(object_score_logit) / (1.0 + math.exp(object_score_logit))
    return float(iou) * presence


def anchor_update(tracking_confidence: float, prompt_score: float, lam: float = 0.9) -> bool:
    """Eq. 8: U_i = 1 when Π_j S^t_j < λ · S^p_i, i.e. the anchor's mask is trusted over the track."""
    return tracking_confidence < lam * prompt_score


@dataclass(frozen=True)
class Anchor:
    """A keyframe with a mask to re-anchor on: a [SEG]-decoded keyframe, or a person's mask."""

    frame: int
    mask: Any
    iou: float = 1.0
    object_score_logit: float = math.inf
    human: bool = False

    @classmethod
    def from_person(cls, frame: int, mask: Any) -> Anchor:
        """A human correction: S^p = 1, always re-conditions memory, never overwritten."""
        return cls(frame=frame, mask=mask, human=True)


@dataclass(frozen=True)
class BAPOptions:
    """The Table 9 switches and the scores of Eq. 8."""

    anchored_updating: bool = True
    adaptive_cleaning: bool = True
    bidirectional: bool = True
    lam: float = 0.9
    tracking_score: Callable[[float, float], float] = confidence_score
    prompt_score: Callable[[float, float], float] = confidence_score

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam:
            raise InvalidInputError(f"lambda must be >= 0, got {self.lam}")


@dataclass(frozen=True)
class AnchorDecision:
    """What BAP did on reaching an anchor: the Eq. 8 inputs, U_i and the memory actions."""

    frame: int
    reverse: bool
    tracking_confidence: float
    prompt_score: float
    update: bool
    cleared: bool
    conditioned: bool
    human: bool


@dataclass(frozen=True)
class PropagatedFrame:
    """One output frame: an anchor's mask where BAP conditioned on it, else the tracked mask."""

    frame: int
    mask: Any
    score: float
    anchor: bool = False
    human: bool = False


@dataclass
class BidirectionalAnchorPropagation:
    """Runs BAP over ``num_frames`` frames and yields each frame's result once, as it is decided.

    ``start`` is the moment centre c*; it must be one of the anchors. With ``bidirectional`` off the
    run starts at the earliest anchor instead (the Sa2VA-style baseline) and tracks forward; frames
    before it are then reached backward from it.
    """

    tracker: Tracker
    anchors: Sequence[Anchor]
    start: int
    num_frames: int
    options: BAPOptions = field(default_factory=BAPOptions)
    decisions: list[AnchorDecision] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        by_frame: dict[int, Anchor] = {}
        for anchor in self.anchors:
            if not 0 <= anchor.frame < self.num_frames:
                raise InvalidInputError(f"anchor frame {anchor.frame} is outside the video's {self.num_frames} frames")
            if anchor.frame in by_frame and by_frame[anchor.frame].human and not anchor.human:
                continue  # a person's mask is never replaced by the model's
            by_frame[anchor.frame] = anchor
        self._anchors = by_frame
        if not self.options.bidirectional and by_frame:
            self.start = min(by_frame)
        if self.start not in by_frame:
            raise InvalidInputError(f"the start frame {self.start} has no anchor mask")

    def _prompt_score(self, anchor: Anchor) -> float:
        return 1.0 if anchor.human else self.options.prompt_score(anchor.iou, anchor.object_score_logit)

    def _as_output(self, anchor: Anchor) -> PropagatedFrame:
        return PropagatedFrame(anchor.frame, anchor.mask, self._prompt_score(anchor), anchor=True, human=anchor.human)

    def __iter__(self) -> Iterator[PropagatedFrame]:
        start_anchor = self._anchors[self.start]
        self.tracker.condition(self.start, start_anchor.mask)
        yield self._as_output(start_anchor)
        yield from self._sweep(reverse=False)
        if self.start > 0:
            self.tracker.clear_memory(keep={self.start})
            yield from self._sweep(reverse=True)

    def _uses(self, anchor: Anchor) -> bool:
        return anchor.human or self.options.anchored_updating or self.options.adaptive_cleaning

    def _sweep(self, *, reverse: bool) -> Iterator[PropagatedFrame]:
        step = -1 if reverse else 1
        conditioned = {self.start}
        confidence = 1.0
        position = self.start
        while True:
            stream = self.tracker.propagate(position, reverse=reverse)
            try:
                frame = position
                while True:
                    frame += step
                    if not 0 <= frame < self.num_frames:
                        return
                    anchor = self._anchors.get(frame)
                    if anchor is not None and self._uses(anchor) and self._decide(anchor, confidence, reverse):
                        break
                    tracked = next(stream)
                    if tracked.frame != frame:
                        raise RuntimeError(f"tracker yielded frame {tracked.frame}, expected {frame}")
                    score = self.options.tracking_score(tracked.iou, tracked.object_score_logit)
                    confidence *= score
                    yield PropagatedFrame(frame, tracked.mask, score)
            finally:
                stream.close()
            decision = self.decisions[-1]
            if decision.cleared:
                self.tracker.clear_memory(keep=conditioned)
                confidence = 1.0
            self.tracker.condition(frame, anchor.mask)
            conditioned.add(frame)
            yield self._as_output(anchor)
            position = frame

    def _decide(self, anchor: Anchor, confidence: float, reverse: bool) -> bool:
        """Records the decision at ``anchor`` and says whether BAP re-conditions memory on it."""
        prompt_score = self._prompt_score(anchor)
        update = anchor_update(confidence, prompt_score, self.options.lam)
        cleared = self.options.adaptive_cleaning and update
        conditioned = anchor.human or cleared or self.options.anchored_updating
        self.decisions.append(
            AnchorDecision(anchor.frame, reverse, confidence, prompt_score, update, cleared, conditioned, anchor.human)
        )
        return conditioned
