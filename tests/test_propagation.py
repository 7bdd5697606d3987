"""BAP policy against scripted trackers whose scores force each branch of Eq. 8."""

import pytest

from momentseg.errors import InvalidInputError
from momentseg.propagation import (
    Anchor,
    BAPOptions,
    BidirectionalAnchorPropagation,
    TrackedFrame,
    anchor_update,
    confidence_score,
)

SURE = 60.0  # object-score logit with σ(o) == 1 in float


class ScriptedTracker:
    """Yields a scripted IoU per frame and records every call, lazily like SAM2's generator."""

    def __init__(self, ious):
        self.ious = ious
        self.calls = []

    def condition(self, frame, mask):
        self.calls.append(("condition", frame, mask))

    def propagate(self, start, *, reverse):
        self.calls.append(("propagate", start, "back" if reverse else "fwd"))
        step = -1 if reverse else 1
        frame = start + step
        while 0 <= frame < len(self.ious):
            self.calls.append(("track", frame))
            yield TrackedFrame(frame, f"tracked{frame}", self.ious[frame], SURE)
            frame += step

    def clear_memory(self, keep):
        self.calls.append(("clear", sorted(keep)))


def seg_anchor(frame, score):
    return Anchor(frame, f"seg{frame}", iou=score, object_score_logit=SURE)


def run(ious, anchors, start, **options):
    tracker = ScriptedTracker(ious)
    bap = BidirectionalAnchorPropagation(tracker, anchors, start, len(ious), BAPOptions(**options))
    outputs = list(bap)
    return tracker, bap, outputs


IOUS = [0.95, 0.95, 0.5, 0.95, 0.95, 1.0, 0.5, 0.9, 0.9, 0.9]
ANCHORS = [seg_anchor(5, 1.0), seg_anchor(7, 0.8), seg_anchor(2, 0.8)]


def test_eq8_clears_on_low_confidence_and_keeps_memory_on_high():
    tracker, bap, outputs = run(IOUS, ANCHORS, start=5)
    assert tracker.calls == [
        ("condition", 5, "seg5"),
        ("propagate", 5, "fwd"),
        ("track", 6),  # Π S^t = 0.5 < 0.9 · 0.8 at anchor 7: U = 1
        ("clear", [5]),
        ("condition", 7, "seg7"),
        ("propagate", 7, "fwd"),
        ("track", 8),
        ("track", 9),
        ("clear", [5]),  # backward pass starts from the same memory at c*
        ("propagate", 5, "back"),
        ("track", 4),
        ("track", 3),  # Π S^t = 0.9025 >= 0.72 at anchor 2: U = 0, anchored updating keeps memory
        ("condition", 2, "seg2"),
        ("propagate", 2, "back"),
        ("track", 1),
        ("track", 0),
    ]
    assert [(d.frame, d.update, d.cleared, d.conditioned) for d in bap.decisions] == [
        (7, True, True, True),
        (2, False, False, True),
    ]
    assert bap.decisions[0].tracking_confidence == pytest.approx(0.5)
    assert bap.decisions[1].tracking_confidence == pytest.approx(0.95 * 0.95)
    assert sorted(o.frame for o in outputs) == list(range(10))
    assert {o.frame: o.mask for o in outputs if o.anchor} == {5: "seg5", 7: "seg7", 2: "seg2"}


def test_without_adaptive_cleaning_anchors_condition_but_never_clear():
    tracker, bap, _ = run(IOUS, ANCHORS, start=5, adaptive_cleaning=False)
    clears = [c for c in tracker.calls if c[0] == "clear"]
    assert clears == [("clear", [5])]  # only the switch between directions
    assert [(d.frame, d.update, d.cleared, d.conditioned) for d in bap.decisions] == [
        (7, True, False, True),
        (2, False, False, True),
    ]


def test_without_anchored_updating_only_u1_anchors_condition():
    tracker, bap, outputs = run(IOUS, ANCHORS, start=5, anchored_updating=False)
    assert ("condition", 7, "seg7") in tracker.calls
    assert ("condition", 2, "seg2") not in tracker.calls
    assert ("track", 2) in tracker.calls
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[2].mask == "tracked2" and not by_frame[2].anchor


def test_product_resets_after_a_clear():
    ious = [1.0] * 12
    ious[1] = 0.5
    ious[4] = 0.7
    anchors = [seg_anchor(0, 1.0), seg_anchor(3, 1.0), seg_anchor(6, 1.0)]
    _, bap, _ = run(ious, anchors, start=0)
    # at 3: Π = 0.5 -> U = 1, reset; at 6: Π = 0.7 (frames 4, 5 only) < 0.9 -> U = 1
    assert [(d.frame, round(d.tracking_confidence, 6), d.update) for d in bap.decisions] == [
        (3, 0.5, True),
        (6, 0.7, True),
    ]


def test_baseline_without_switches_ignores_model_anchors_and_starts_at_earliest():
    tracker, bap, outputs = run(
        IOUS, ANCHORS, start=5, anchored_updating=False, adaptive_cleaning=False, bidirectional=False
    )
    assert bap.decisions == []
    assert tracker.calls[:3] == [("condition", 2, "seg2"), ("propagate", 2, "fwd"), ("track", 3)]
    assert [c for c in tracker.calls if c[0] == "condition"] == [("condition", 2, "seg2")]
    assert sorted(o.frame for o in outputs) == list(range(10))


def test_bidirectional_off_starts_at_the_earliest_anchor():
    tracker, _, _ = run(IOUS, ANCHORS, start=5, bidirectional=False)
    assert tracker.calls[0] == ("condition", 2, "seg2")
    assert ("propagate", 2, "back") in tracker.calls  # frames 0, 1 still get masks


def test_human_anchor_always_conditions_and_is_never_overwritten():
    anchors = ANCHORS + [Anchor.from_person(8, "hand8"), seg_anchor(8, 0.99)]
    tracker, bap, outputs = run(IOUS, anchors, start=5, anchored_updating=False, adaptive_cleaning=False)
    assert ("condition", 8, "hand8") in tracker.calls
    human = [d for d in bap.decisions if d.human]
    assert len(human) == 1 and human[0].prompt_score == 1.0
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[8].mask == "hand8" and by_frame[8].human


def test_human_anchor_clears_when_track_is_below_lambda():
    anchors = [seg_anchor(5, 1.0), Anchor.from_person(7, "hand7")]
    tracker, bap, _ = run(IOUS, anchors, start=5)
    assert ("clear", [5]) == tracker.calls[3]
    assert bap.decisions[0].update and bap.decisions[0].cleared


def test_start_frame_zero_runs_forward_only():
    tracker, _, outputs = run([1.0] * 4, [seg_anchor(0, 1.0)], start=0)
    assert not any(c[0] == "propagate" and c[2] == "back" for c in tracker.calls)
    assert [o.frame for o in outputs] == [0, 1, 2, 3]


def test_start_without_anchor_or_anchor_outside_video_is_an_error():
    with pytest.raises(InvalidInputError, match="start frame"):
        BidirectionalAnchorPropagation(ScriptedTracker(IOUS), [seg_anchor(2, 1.0)], 5, 10)
    with pytest.raises(InvalidInputError, match="outside"):
        BidirectionalAnchorPropagation(ScriptedTracker(IOUS), [seg_anchor(12, 1.0)], 12, 10)


def test_scores():
    assert confidence_score(0.8, 0.0) == pytest.approx(0.4)
    assert confidence_score(1.0, -800.0) == 0.0
    assert anchor_update(0.5, 0.8, 0.9) and not anchor_update(0.8, 0.8, 0.9)
    custom = BAPOptions(tracking_score=lambda iou, logit: 1.0)
    _, bap, _ = run(IOUS, ANCHORS, start=5, tracking_score=custom.tracking_score)
    assert all(d.tracking_confidence == 1.0 for d in bap.decisions)
