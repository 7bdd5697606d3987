"""BAP driving the real sam2 video predictor: memory holds and loses what the official BAP says."""

import numpy as np
import pytest
import torch

from momentseg.model.sam2_tracker import LazyFrames, Sam2Tracker, sam2_autocast
from momentseg.propagation import Anchor, BAPOptions, BidirectionalAnchorPropagation

from conftest import synthetic_frames


class RecordingTracker(Sam2Tracker):
    """Snapshots SAM2's memory (conditioning / tracked frames) and the decoder's inputs around every BAP action."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []
        self.prompt_on_track = []

    def _snapshot(self):
        return sorted(self.memory["cond_frame_outputs"]), sorted(self.memory["non_cond_frame_outputs"])

    def track(self, frame, *, reverse):
        tracked = super().track(frame, reverse=reverse)
        self.log.append(("track", frame, self._snapshot()))
        return tracked

    def clear_around(self, frame, reach):
        before = self._snapshot()
        removed = super().clear_around(frame, reach)
        self.log.append(("clear", frame, before, self._snapshot()))
        return removed


@pytest.fixture
def prompt():
    torch.manual_seed(0)
    return torch.randn(256)


def test_bap_on_sam2_conditions_the_side_then_clears_seven_frames_around_an_anchor(tiny_model, prompt):
    frames = synthetic_frames(12)
    tracker = RecordingTracker(tiny_model.predictor, frames, prompt=prompt)
    decoded = {k: tracker.decode_prompt(k, prompt) for k in (1, 5, 9)}
    anchors = [Anchor(k, d, d.iou, d.object_score_logit) for k, d in decoded.items()]
    # λ = 1.01: any tracked frame (σ(o) < 1) against an anchor of the same σ(o) makes U = 1
    bap = BidirectionalAnchorPropagation(tracker, anchors, 5, 12, BAPOptions(lam=1.01))
    outputs = list(bap)

    assert [o.frame for o in outputs] == [5, 6, 7, 8, 9, 10, 11, 4, 3, 2, 1, 0]
    tracks = [entry for entry in tracker.log if entry[0] == "track"]
    # forward: c* and keyframe 9 are conditioning before the first tracked frame
    assert tracks[0] == ("track", 6, ([5, 9], [6]))
    clear_9 = next(e for e in tracker.log if e[:2] == ("clear", 9))
    assert clear_9[2] == ([5, 9], [6, 7, 8]) and clear_9[3] == ([5, 9], [])
    # backward: a fresh memory with c* and keyframe 1 only
    assert ("track", 4, ([1, 5], [4])) in tracks
    assert [(d.frame, d.reverse, d.cleared, d.removed) for d in bap.decisions] == [
        (9, False, True, [6, 7, 8]),
        (1, True, True, [2, 3, 4]),
    ]
    by_frame = {o.frame: o for o in outputs}
    assert by_frame[9].anchor and by_frame[9].mask is decoded[9]
    assert by_frame[0].mask.shape == (48, 64) and not by_frame[0].anchor


def test_the_seg_prompt_reaches_the_decoder_on_tracked_frames(tiny_model, prompt):
    frames = synthetic_frames(4)
    with_prompt = Sam2Tracker(tiny_model.predictor, frames, prompt=prompt)
    without = Sam2Tracker(tiny_model.predictor, frames)
    scores = []
    for tracker in (with_prompt, without):
        start = tracker.decode_prompt(0, prompt)
        tracker.reset()
        tracker.condition(0, start)
        scores.append(tracker.track(1, reverse=False).object_score_logit)
    assert scores[0] != scores[1]


def test_a_persons_mask_conditions_memory_and_masks_stay_when_the_object_score_is_negative(tiny_model, prompt):
    predictor = tiny_model.predictor
    frames = synthetic_frames(3)
    tracker = Sam2Tracker(predictor, frames, prompt=prompt)
    hand = np.zeros((48, 64), bool)
    hand[10:30, 10:30] = True
    tracker.condition(0, hand)
    bias = predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias.fill_(-50.0)  # every frame scored absent
        kept = tracker.track(1, reverse=False)
        predictor.keep_masks_without_object = False
        tracker.reset()
        tracker.condition(0, hand)
        blanked = tracker.track(1, reverse=False)
    finally:
        predictor.keep_masks_without_object = True
        with torch.no_grad():
            bias.copy_(saved)
    assert kept.object_score_logit < 0 and blanked.object_score_logit < 0
    assert not blanked.mask.any()  # sam2's own behaviour
    assert kept.mask.any()  # the official one: the decoder's mask is kept


def test_official_and_direct_mask_upsampling_differ_only_at_edges(tiny_model, prompt):
    frames = synthetic_frames(2, 50, 70)
    official = Sam2Tracker(tiny_model.predictor, frames, mask_upsampling="official").decode_prompt(0, prompt)
    direct = Sam2Tracker(tiny_model.predictor, frames, mask_upsampling="direct").decode_prompt(0, prompt)
    assert official.mask.shape == direct.mask.shape == (50, 70)
    assert (official.mask != direct.mask).mean() < 0.05


def test_bfloat16_autocast_runs_the_same_code_on_cpu(tiny_model, prompt):
    frames = synthetic_frames(3)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        tracker = Sam2Tracker(tiny_model.predictor, frames, prompt=prompt, dtype=dtype)
        start = tracker.decode_prompt(1, prompt)
        tracker.condition(1, start)
        results[dtype] = (start, tracker.track(2, reverse=False))
    full, half = results[torch.float32], results[torch.bfloat16]
    assert half[0].output["pred_masks"].dtype == torch.float32  # sam2 returns float logits either way
    assert abs(full[1].object_score_logit - half[1].object_score_logit) < 0.5
    assert (full[1].mask == half[1].mask).mean() > 0.9
    assert isinstance(sam2_autocast(torch.device("cpu"), torch.bfloat16), torch.autocast)


def test_tracked_memory_stays_bounded_on_a_long_pass(tiny_model):
    frames = synthetic_frames(20)
    tracker = Sam2Tracker(tiny_model.predictor, frames)
    mask = np.zeros((48, 64), bool)
    mask[10:30, 10:30] = True
    tracker.condition(0, mask)
    sizes = []
    for frame in range(1, 20):
        tracker.track(frame, reverse=False)
        sizes.append(len(tracker.memory["non_cond_frame_outputs"]))
    assert max(sizes) == 16 and sizes[-1] == 16


def test_lazy_frames_resize_like_pil_and_normalise_one_frame_at_a_time():
    frames = synthetic_frames(3)
    lazy = LazyFrames(frames, 32)
    assert len(lazy) == 3
    image = lazy[1]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    # ImageNet normalisation: the grey background (60/255) maps to (0.235 - mean) / std
    assert abs(float(image[0, 0, 0]) - (60 / 255 - 0.485) / 0.229) < 0.02
