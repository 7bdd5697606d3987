"""BAP policy against scripted trackers whose scores force each branch of Eq. 8, and against the
official run's SAM2 events (the parity reference, docs/official.md)."""

import json
import math

import pytest

from momentseg.errors import InvalidInputError
from momentseg.propagation import (
    Anchor,
    BAPOptions,
    BidirectionalAnchorPropagation,
    TrackedFrame,
    anchor_update,
    confidence_score,
    object_presence,
)


def logit(p):
    return math.log(p / (1 - p))


class ScriptedTracker:
    """Returns a scripted S^t per frame and keeps a memory like SAM2's: conditioning and tracked outputs."""

    def __init__(self, presence):
        self.presence = presence  # frame -> σ(o) the tracker reports when it tracks that frame
        self.calls = []
        self.cond, self.tracked = set(), set()

    def reset(self):
        self.calls.append(("reset",))
        self.cond, self.tracked = set(), set()

    def condition(self, frame, mask):
        self.calls.append(("condition", frame, mask))
        self.cond.add(frame)

    def track(self, frame, *, reverse):
        self.calls.append(("track", frame))
        self.tracked.add(frame)
        return TrackedFrame(frame, f"tracked{frame}", 0.5, logit(self.presence[frame]))

    def clear_around(self, frame, reach):
        removed = sorted(f for f in self.tracked if reach is None or abs(f - frame) <= reach)
        self.tracked -= set(removed)
        self.calls.append(("clear", frame, removed))
        return removed


def seg_anchor(frame, presence):
    return Anchor(frame, f"seg{frame}", iou=0.5, object_score_logit=logit(presence))


def run(presence, anchors, start, **options):
    tracker = ScriptedTracker(presence)
    bap = BidirectionalAnchorPropagation(tracker, anchors, start, len(presence), BAPOptions(**options))
    outputs = list(bap)
    return tracker, bap, outputs


PRESENCE = [0.95, 0.95, 0.5, 0.95, 0.95, 0.99, 0.5, 0.9, 0.9, 0.9]
ANCHORS = [seg_anchor(5, 0.99), seg_anchor(7, 0.8), seg_anchor(2, 0.8)]


def test_each_pass_conditions_its_side_first_then_tracks_and_clears_by_eq8():
    tracker, bap, outputs = run(PRESENCE, ANCHORS, start=5)
    assert tracker.calls == [
        ("reset",),
        ("condition", 5, "seg5"),
        ("condition", 7, "seg7"),
        ("track", 6),
        ("clear", 7, [6]),  # Π S^t = 0.5 < 0.9 · 0.8 at anchor 7: U = 1
        ("track", 8),
        ("track", 9),
        ("reset",),  # the backward pass starts from an empty memory
        ("condition", 5, "seg5"),
        ("condition", 2, "seg2"),
        ("track", 4),
        ("track", 3),  # Π S^t = 0.9025 >= 0.72 at anchor 2: U = 0, memory kept
        ("track", 1),
        ("track", 0),
    ]
    assert [(d.frame, d.reverse, d.update, d.cleared, d.removed) for d in bap.decisions] == [
        (7, False, True, True, [6]),
        (2, True, False, False, []),
    ]
    assert bap.decisions[0].tracking_confidence == pytest.approx(0.5)
    assert bap.decisions[1].tracking_confidence == pytest.approx(0.95 * 0.95)
    assert [o.frame for o in outputs] == [5, 6, 7, 8, 9, 4, 3, 2, 1, 0]
    assert {o.frame: o.mask for o in outputs if o.anchor} == {5: "seg5", 7: "seg7", 2: "seg2"}


def test_clear_reaches_only_seven_frames_by_default_and_all_when_asked():
    presence = [0.5] * 20
    anchors = [seg_anchor(0, 0.99), seg_anchor(15, 0.99)]
    tracker, bap, _ = run(presence, anchors, start=0)
    assert bap.decisions[0].removed == list(range(8, 15))
    tracker, bap, _ = run(presence, anchors, start=0, clear_reach=None)
    assert bap.decisions[0].removed == list(range(1, 15))


def test_the_product_runs_since_the_last_clear_not_since_the_last_anchor():
    presence = [0.99] * 12
    presence[1] = 0.95
    presence[4] = 0.95
    anchors = [seg_anchor(0, 0.99), seg_anchor(3, 0.99), seg_anchor(6, 0.99)]
    _, bap, _ = run(presence, anchors, start=0)
    # at 3: Π = .95·.99 = .94 >= .891, kept; at 6: Π = .95·.99·.95·.99 = .885 < .891, cleared
    assert [(d.frame, round(d.tracking_confidence, 4), d.update) for d in bap.decisions] == [
        (3, round(0.95 * 0.99, 4), False),
        (6, round((0.95 * 0.99) ** 2, 4), True),
    ]


def test_an_anchor_right_after_a_clear_or_the_start_never_updates():
    _, bap, _ = run([0.1] * 4, [seg_anchor(0, 0.99), seg_anchor(1, 0.99)], start=0)
    assert bap.decisions[0].tracking_confidence is None and not bap.decisions[0].update


def test_without_adaptive_cleaning_anchors_are_memory_but_never_clear():
    tracker, bap, _ = run(PRESENCE, ANCHORS, start=5, adaptive_cleaning=False)
    assert not any(c[0] == "clear" for c in tracker.calls)
    assert [(d.frame, d.update, d.cleared, d.conditioned) for d in bap.decisions] == [
        (7, True, False, True),
        (2, False, False, True),
    ]


def test_without_anchored_updating_only_cleared_anchors_join_memory():
    tracker, bap, outputs = run(PRESENCE, ANCHORS, start=5, anchored_updating=False)
    assert tracker.calls[:3] == [("reset",), ("condition", 5, "seg5"), ("track", 6)]
    assert tracker.calls[3:5] == [("clear", 7, [6]), ("condition", 7, "seg7")]
    assert ("condition", 2, "seg2") not in tracker.calls and ("track", 2) in tracker.calls
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[2].mask == "tracked2" and not by_frame[2].anchor
    assert by_frame[7].anchor


def test_baseline_without_switches_ignores_model_anchors_and_starts_at_earliest():
    tracker, bap, outputs = run(
        PRESENCE, ANCHORS, start=5, anchored_updating=False, adaptive_cleaning=False, bidirectional=False
    )
    assert bap.decisions == []
    # forward from 2, then backward from 2 after a reset: frame 2 is the only memory of either pass
    assert [c for c in tracker.calls if c[0] == "condition"] == [("condition", 2, "seg2")] * 2
    assert tracker.calls[:3] == [("reset",), ("condition", 2, "seg2"), ("track", 3)]
    assert sorted(o.frame for o in outputs) == list(range(10))


def test_bidirectional_off_starts_at_the_earliest_anchor_and_still_reaches_earlier_frames():
    tracker, _, outputs = run(PRESENCE, ANCHORS, start=5, bidirectional=False)
    assert tracker.calls[1] == ("condition", 2, "seg2")
    assert [o.frame for o in outputs] == [2, 3, 4, 5, 6, 7, 8, 9, 1, 0]


def test_human_anchor_is_always_memory_and_never_overwritten():
    anchors = ANCHORS + [Anchor.from_person(8, "hand8"), seg_anchor(8, 0.99)]
    tracker, bap, outputs = run(PRESENCE, anchors, start=5, anchored_updating=False, adaptive_cleaning=False)
    assert ("condition", 8, "hand8") in tracker.calls
    human = [d for d in bap.decisions if d.human]
    assert len(human) == 1 and human[0].prompt_score == 1.0
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[8].mask == "hand8" and by_frame[8].human and by_frame[8].score == 1.0


def test_human_anchor_clears_when_the_track_is_below_lambda():
    tracker, bap, _ = run(PRESENCE, [seg_anchor(5, 0.99), Anchor.from_person(7, "hand7")], start=5)
    assert ("clear", 7, [6]) in tracker.calls
    assert bap.decisions[0].update and bap.decisions[0].cleared


def test_start_frame_zero_runs_forward_only():
    tracker, _, outputs = run([0.9] * 4, [seg_anchor(0, 0.99)], start=0)
    assert tracker.calls.count(("reset",)) == 1
    assert [o.frame for o in outputs] == [0, 1, 2, 3]


def test_start_without_anchor_or_anchor_outside_video_is_an_error():
    with pytest.raises(InvalidInputError, match="start frame"):
        BidirectionalAnchorPropagation(ScriptedTracker(PRESENCE), [seg_anchor(2, 0.9)], 5, 10)
    with pytest.raises(InvalidInputError, match="outside"):
        BidirectionalAnchorPropagation(ScriptedTracker(PRESENCE), [seg_anchor(12, 0.9)], 12, 10)


def test_scores():
    assert object_presence(0.3, 0.0) == pytest.approx(0.5)
    assert confidence_score(0.8, 0.0) == pytest.approx(0.4)
    assert confidence_score(1.0, -800.0) == 0.0
    assert anchor_update(0.5, 0.8, 0.9) and not anchor_update(0.8, 0.8, 0.9) and not anchor_update(None, 1.0)
    _, bap, _ = run(PRESENCE, ANCHORS, start=5, tracking_score=confidence_score, prompt_score=confidence_score)
    assert bap.decisions[0].tracking_confidence == pytest.approx(0.5 * 0.5)
    assert bap.decisions[0].prompt_score == pytest.approx(0.5 * 0.8)


def test_official_run_decisions_are_reproduced_from_its_object_scores(official_reference):
    """Replay the official BAP's per-frame object scores: same clears, same removed frames, same order."""
    reference = json.loads((official_reference / "outputs/official_reference_tiny_fp32.json").read_text())
    events = reference["sam2_events"]
    path = reference["refvos_path"]
    tracked = {}  # (frame, reverse) -> object score logit
    keyframe_logit = {}
    for event in events:
        if event["kind"] == "sam_decode":
            if event["is_init_cond_frame"]:
                keyframe_logit[event["frame"]] = event["object_score_logit"]
            else:
                tracked[event["frame"], event["reverse"]] = event["object_score_logit"]

    class ReplayTracker(ScriptedTracker):
        def track(self, frame, *, reverse):
            self.tracked.add(frame)
            return TrackedFrame(frame, f"tracked{frame}", 0.5, tracked[frame, reverse])

    anchors = [Anchor(k, f"seg{k}", 0.5, keyframe_logit[k]) for k in path["keyframes"]]
    start = path["keyframes"][path["center_index_in_keyframes"]]
    tracker = ReplayTracker({})
    bap = BidirectionalAnchorPropagation(tracker, anchors, start, reference["num_frames"])
    outputs = list(bap)

    clears = [
        (e["phase"] == "bap_reverse", e["at_keyframe"], e["removed_noncond_frames"])
        for e in events
        if e["kind"] == "memory_clear"
    ]
    assert [(d.reverse, d.frame, d.removed) for d in bap.decisions if d.cleared] == clears
    assert clears == [(False, 23, [20, 22]), (True, 14, [15, 17]), (True, 9, [10, 11, 13])]
    official_order = [e["frame"] for e in events if e["kind"] == "bap_output"]
    assert [o.frame for o in outputs] == [f for i, f in enumerate(official_order) if f != start or i == 0]
    scores = {e["frame"]: e["object_score"] for e in events if e["kind"] == "bap_output"}
    assert all(o.score == pytest.approx(scores[o.frame], abs=1e-6) for o in outputs)
