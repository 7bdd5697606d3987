"""Bidirectional Anchor-updated Propagation (paper §3.2.3, Eq. 8, Table 9; official code S2:359-415, 4121-4210).

The policy decides, frame by frame, which anchors are memory, when to track, and when to clear the
tracker's memory. It never looks at masks: they are opaque values handed between the anchors and a
:class:`Tracker` (the SAM2 adapter in ``momentseg.model``, or a scripted one in tests).

The default is the authors' released code (``docs/official.md`` §6): one pass per
direction from c*, each starting from an empty memory in which every anchor on that side is a
conditioning frame before tracking begins; S^t = S^p = σ(object score); Π S^t runs over the frames tracked
since the last clear; a clear removes the non-conditioning outputs within ±7 frames of the anchor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from momentseg.errors import InvalidInputError

__all__ = [
    "OFFICIAL_CLEAR_REACH",
    "SCORES",
    "Anchor",
    "AnchorDecision",
    "BAPOptions",
    "BidirectionalAnchorPropagation",
    "PropagatedFrame",
    "TrackedFrame",
    "Tracker",
    "anchor_update",
    "confidence_score",
    "object_presence",
]

# num_maskmem (7) × memory stride (1): the frames SAM2's mask memory reaches (official S2:3848-3866)
OFFICIAL_CLEAR_REACH = 7


@dataclass(frozen=True)
class TrackedFrame:
    """One frame a tracker propagated to: the mask and the raw scores behind S^t."""

    frame: int
    mask: Any
    iou: float
    object_score_logit: float


class Tracker(Protocol):
    """A video object tracker with an explicit memory, as BAP needs it. Frames are 0-based."""

    def reset(self) -> None:
        """Forget every output and all memory: the start of a pass."""

    def condition(self, frame: int, mask: Any) -> None:
        """Make an anchor's mask a conditioning frame of the memory (before or during tracking)."""

    def track(self, frame: int, *, reverse: bool) -> TrackedFrame:
        """Propagate the memory to ``frame``, the next frame in the direction of travel."""

    def clear_around(self, frame: int, reach: int | None) -> list[int]:
        """Remove the tracked (non-conditioning) outputs within ``reach`` frames of ``frame`` (all of
        them when ``reach`` is None); returns the removed frames, sorted."""


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    return math.exp(logit) / (1.0 + math.exp(logit))


def object_presence(iou: float, object_score_logit: float) -> float:
    """S = σ(o): SAM2's object presence, the official S^t and S^p (official S2:3694, 4166-4177)."""
    return _sigmoid(object_score_logit)


def confidence_score(iou: float, object_score_logit: float) -> float:
    """S = IoU · σ(o): predicted mask IoU times object presence (the project spec's reading of the paper)."""
    return float(iou) * _sigmoid(object_score_logit)


SCORES: dict[str, Callable[[float, float], float]] = {"presence": object_presence, "iou_presence": confidence_score}


def anchor_update(tracking_confidence: float | None, prompt_score: float, lam: float = 0.9) -> bool:
    """Eq. 8: U_i = 1 when Π_j S^t_j < λ · S^p_i, i.e. the anchor's mask is trusted over the track.

    ``tracking_confidence`` is None when no frame was tracked since the last clear: the official code then
    compares 2 (S2:4166), so U_i = 0.
    """
    return tracking_confidence is not None and tracking_confidence < lam * prompt_score


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
        """A human correction: S^p = 1, always a conditioning frame, never overwritten."""
        return cls(frame=frame, mask=mask, human=True)


@dataclass(frozen=True)
class BAPOptions:
    """The Table 9 switches, the scores and λ of Eq. 8, and how far a clear reaches.

    - ``anchored_updating``: every anchor on a pass's side is memory from the start (official). Off, a
      model anchor enters memory only where Eq. 8 clears (re-anchoring); people's anchors always do.
    - ``adaptive_cleaning``: Eq. 8 may clear memory. Off, memory is never cleared.
    - ``bidirectional``: start at c* and run forward then backward. Off, start at the earliest anchor
      (the forward-propagation baseline); frames before it are still reached backward.
    - ``clear_reach``: a clear removes tracked outputs within ±reach frames (official 7); None: all.
    """

    anchored_updating: bool = True
    adaptive_cleaning: bool = True
    bidirectional: bool = True
    lam: float = 0.9
    clear_reach: int | None = OFFICIAL_CLEAR_REACH
    tracking_score: Callable[[float, float], float] = object_presence
    prompt_score: Callable[[float, float], float] = object_presence

    def __post_init__(self) -> None:
        if not self.lam >= 0.0:  # NaN too
            raise InvalidInputError(f"lambda must be >= 0, got {self.lam}")
        if self.clear_reach is not None and self.clear_reach < 0:
            raise InvalidInputError(f"clear_reach must be >= 0 or None, got {self.clear_reach}")


@dataclass(frozen=True)
class AnchorDecision:
    """What BAP did on reaching an anchor: the Eq. 8 inputs, U_i and the memory actions.

    ``tracking_confidence`` is Π S^t since the last clear (None: nothing tracked since); ``removed``
    are the tracked frames the clear took out of memory.
    """

    frame: int
    reverse: bool
    tracking_confidence: float | None
    prompt_score: float
    update: bool
    cleared: bool
    conditioned: bool
    human: bool
    removed: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class PropagatedFrame:
    """One output frame: an anchor's mask where it is memory, else the tracked mask."""

    frame: int
    mask: Any
    score: float
    anchor: bool = False
    human: bool = False


@dataclass
class BidirectionalAnchorPropagation:
    """Runs BAP over ``num_frames`` frames and yields each frame's result once, as it is decided.

    ``start`` is where propagation begins (c*, or the middle keyframe when MCS fell back to uniform);
    it must be one of the anchors. The output is the official ``left[:-1] + right``: the start frame
    and everything after it from the forward pass, everything before it from the backward pass.
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

    def _is_memory(self, anchor: Anchor) -> bool:
        """Is ``anchor`` a conditioning frame from the start of its pass?"""
        return anchor.frame == self.start or anchor.human or self.options.anchored_updating

    def __iter__(self) -> Iterator[PropagatedFrame]:
        yield from self._pass(reverse=False)
        if self.start > 0:
            yield from self._pass(reverse=True)

    def _pass(self, *, reverse: bool) -> Iterator[PropagatedFrame]:
        """One direction: reset, condition the side's anchors, then visit start, start±1, ... (S2:4121-4210)."""
        step = -1 if reverse else 1
        stop = -1 if reverse else self.num_frames
        side = [a for f, a in sorted(self._anchors.items(), reverse=reverse) if (f - self.start) * step >= 0]
        memory = {a.frame for a in side if self._is_memory(a)}
        self.tracker.reset()
        for remembered in side:
            if remembered.frame in memory:
                self.tracker.condition(remembered.frame, remembered.mask)
        scores: list[float] = []  # S^t of the frames tracked since the last clear
        for frame in range(self.start, stop, step):
            anchor = self._anchors.get(frame) if (frame - self.start) * step >= 0 else None
            if (
                anchor is not None
                and frame != self.start
                and (frame in memory or self.options.adaptive_cleaning)
                and self._decide(anchor, scores, reverse, frame in memory)
            ):
                scores = []
                memory.add(frame)
            if anchor is not None and frame in memory:
                if not (reverse and frame == self.start):  # the start frame's output comes from the forward pass
                    yield PropagatedFrame(
                        frame, anchor.mask, self._prompt_score(anchor), anchor=True, human=anchor.human
                    )
                continue
            tracked = self.tracker.track(frame, reverse=reverse)
            if tracked.frame != frame:
                raise RuntimeError(f"tracker returned frame {tracked.frame}, expected {frame}")
            score = self.options.tracking_score(tracked.iou, tracked.object_score_logit)
            scores.append(score)
            yield PropagatedFrame(frame, tracked.mask, score)

    def _decide(self, anchor: Anchor, scores: list[float], reverse: bool, is_memory: bool) -> bool:
        """Eq. 8 at ``anchor``; clears (and, for an anchor not yet in memory, re-anchors). Returns cleared."""
        prompt_score = self._prompt_score(anchor)
        tracking = math.prod(scores) if scores else None
        update = anchor_update(tracking, prompt_score, self.options.lam)
        cleared = update and self.options.adaptive_cleaning
        removed = self.tracker.clear_around(anchor.frame, self.options.clear_reach) if cleared else []
        if cleared and not is_memory:
            self.tracker.condition(anchor.frame, anchor.mask)
        self.decisions.append(
            AnchorDecision(
                anchor.frame,
                reverse,
                tracking,
                prompt_score,
                update,
                cleared,
                is_memory or cleared,
                anchor.human,
                list(removed),
            )
        )
        return cleared
