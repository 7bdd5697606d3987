"""BAP driving the real sam2 video predictor: memory is cleared and re-anchored where Eq. 8 says."""

import numpy as np
import torch

from momentseg.model.sam2_tracker import LazyFrames, Sam2Tracker
from momentseg.propagation import Anchor, BidirectionalAnchorPropagation

from conftest import synthetic_frames


class RecordingTracker(Sam2Tracker):
    """Snapshots SAM2's memory (which frames are conditioning / tracked) around every BAP action."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def _snapshot(self):
        self.predictor.propagate_in_video_preflight(self.state)
        return sorted(self.memory["cond_frame_outputs"]), sorted(self.memory["non_cond_frame_outputs"])

    def clear_memory(self, keep):
        before = self._snapshot()
        super().clear_memory(keep)
        self.log.append(("clear", before, self._snapshot()))

    def condition(self, frame, mask):
        super().condition(frame, mask)
        self.log.append(("condition", frame, self._snapshot()))


def test_bap_on_sam2_clears_and_reanchors_as_eq8_says(tiny_model):
    frames = synthetic_frames(12)
    tracker = RecordingTracker(tiny_model.predictor, frames)
    mask = np.zeros((48, 64), bool)
    mask[14:34, 10:30] = True
    anchors = [
        Anchor(5, mask, iou=1.0, object_score_logit=50.0),
        Anchor(8, np.roll(mask, 12, axis=1), iou=1.0, object_score_logit=50.0),  # S^p = 1: U = 1
        Anchor(2, np.roll(mask, -6, axis=1), iou=1e-3, object_score_logit=50.0),  # S^p ≈ 0: U = 0
    ]
    bap = BidirectionalAnchorPropagation(tracker, anchors, 5, 12)
    outputs = list(bap)

    assert sorted(o.frame for o in outputs) == list(range(12))
    assert [(d.frame, d.reverse, d.update, d.cleared) for d in bap.decisions] == [
        (8, False, True, True),
        (2, True, False, False),
    ]
    # the S^t product BAP compared is what SAM2 reported on the tracked frames 6 and 7
    scores = {o.frame: o.score for o in outputs}
    assert bap.decisions[0].tracking_confidence == scores[6] * scores[7]
    assert bap.decisions[0].tracking_confidence < 0.9

    clear_at_8, clear_between_passes = [entry for entry in tracker.log if entry[0] == "clear"]
    assert clear_at_8[1] == ([5], [6, 7]) and clear_at_8[2] == ([5], [])
    condition_8 = next(e for e in tracker.log if e[:2] == ("condition", 8))
    assert condition_8[2] == ([5, 8], [])
    # forward pass done: tracked frames 9..11 in memory; the backward pass starts from c* alone
    assert clear_between_passes[1] == ([5, 8], [9, 10, 11]) and clear_between_passes[2] == ([5], [])
    # U = 0 at frame 2: memory of frames 4, 3 is kept and frame 2 becomes a conditioning frame
    condition_2 = next(e for e in tracker.log if e[:2] == ("condition", 2))
    assert condition_2[2] == ([2, 5], [3, 4])
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[8].anchor and (by_frame[8].mask == anchors[1].mask).all()
    assert by_frame[0].mask.shape == (48, 64) and not by_frame[0].anchor


def test_tracked_memory_stays_bounded_on_a_long_pass(tiny_model):
    frames = synthetic_frames(40)
    tracker = Sam2Tracker(tiny_model.predictor, frames)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 10:30] = True
    tracker.condition(0, mask)
    sizes = [len(tracker.memory["non_cond_frame_outputs"]) for _ in tracker.propagate(0, reverse=False)]
    assert max(sizes) == 16 and sizes[-1] == 16


def test_lazy_frames_normalise_one_frame_at_a_time():
    frames = synthetic_frames(3)
    lazy = LazyFrames(frames, 32)
    assert len(lazy) == 3
    image = lazy[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    # ImageNet normalisation: the grey background (60/255) maps to (0.235 - mean) / std
    assert abs(float(image[0, 0, 0]) - (60 / 255 - 0.485) / 0.229) < 0.02
