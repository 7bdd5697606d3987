"""End to end on CPU through the real transformers and sam2 classes, with tiny random weights."""

import dataclasses

import numpy as np
import pytest
from cvat_sdk import models
from cvat_sdk.masks import decode_mask

from momentseg.errors import InvalidInputError
from momentseg.model.checkpoint import load_checkpoint
from momentseg.pipeline import MomentSegPipeline, SegmentOptions
from momentseg.video import ArrayFrames

from conftest import synthetic_frames


def test_segment_gives_every_frame_a_moment_and_n_keyframes(tiny_model, clip, tiny_options):
    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", tiny_options)
    assert len(result.keyframes) == 4 and len(set(result.keyframes)) == 4
    assert result.center_frame in result.keyframes
    assert 0 <= result.moment.start_frame <= result.moment.end_frame < len(clip)
    assert result.moment.start_sec == result.moment.start_frame / 10.0
    assert len(result.similarity) == len(clip)
    (track,) = result.tracks
    assert [s.frame for s in track.shapes] == list(range(len(clip)))
    assert any(not s.outside for s in track.shapes)
    assert {s.frame for s in track.shapes if s.keyframe} <= set(result.keyframes)
    assert set(result.timings) >= {"tsg", "sampling", "refvos", "propagation", "encode"}
    assert result.model["layout"] == "momentseg" and result.model["heads"] == ["seg", "find"]


def test_shapes_convert_one_to_one_into_cvat_tracked_shapes(tiny_model, clip, tiny_options):
    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", tiny_options)
    shapes = [models.TrackedShapeRequest(type=s.type, frame=s.frame, points=s.points, outside=s.outside)
              for s in result.tracks[0].shapes]
    track = models.LabeledTrackRequest(label_id=1, frame=shapes[0].frame, shapes=shapes)
    assert len(track.shapes) == len(clip)
    visible = next(s for s in result.tracks[0].shapes if not s.outside)
    decoded = decode_mask(visible.points, image_width=result.width, image_height=result.height)
    np.testing.assert_array_equal(decoded, result.tracks[0].mask(visible.frame, result.width, result.height))


def test_seg_embedding_changes_the_decoded_mask(tiny_model, clip):
    import torch

    from momentseg.model.sam2_tracker import Sam2Tracker

    tracker = Sam2Tracker(tiny_model.predictor, clip)
    torch.manual_seed(1)
    first = tracker.decode_prompt(3, torch.randn(256))
    second = tracker.decode_prompt(3, torch.randn(256) * 4)
    assert first.mask.shape == (48, 64)
    assert (first.mask != second.mask).any()
    repeated = tracker.decode_prompt(3, torch.zeros(256))
    again = tracker.decode_prompt(3, torch.zeros(256))
    np.testing.assert_array_equal(repeated.mask, again.mask)


def test_saved_checkpoint_reproduces_the_same_outputs(tmp_path, clip, tiny_options):
    from momentseg.model.checkpoint import save_checkpoint
    from momentseg.model.tiny import build_tiny_model

    built = build_tiny_model("momentseg", seed=3)
    before = MomentSegPipeline(built).run(clip, "the red dog", tiny_options).to_dict()
    loaded = load_checkpoint(save_checkpoint(built, tmp_path / "ck"), device="cpu")
    after = MomentSegPipeline(loaded).run(clip, "the red dog", tiny_options).to_dict()
    for key in ("keyframes", "center_frame", "moment", "similarity", "tracks"):
        assert before[key] == after[key], key


def test_sa2va_layout_runs_with_uniform_sampling_and_no_moment(sa2va_checkpoint, clip, tiny_options):
    model = load_checkpoint(sa2va_checkpoint, device="cpu")
    assert model.find_head is None and model.info.layout == "sa2va"
    result = MomentSegPipeline(model).run(clip, "the red dog", tiny_options)
    assert result.moment is None and "[FIND]" in result.moment_reason
    assert result.similarity is None
    assert result.options["sampling"] == "uniform"
    assert result.keyframes == [1, 4, 7, 10]
    assert result.to_dict()["moment"] is None


def test_human_anchor_is_kept_exactly(tiny_model, clip, tiny_options):
    hand = np.zeros((48, 64), bool)
    hand[5:20, 30:50] = True
    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", tiny_options, human_anchors={7: hand})
    np.testing.assert_array_equal(result.tracks[0].mask(7, 64, 48), hand)
    shape = next(s for s in result.tracks[0].shapes if s.frame == 7)
    assert shape.keyframe and shape.score == 1.0
    assert any(d["frame"] == 7 and d["human"] for d in result.decisions)


def test_polygon_output(tiny_model, clip, tiny_options):
    options = dataclasses.replace(tiny_options, output="polygon")
    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", options)
    visible = [s for s in result.tracks[0].shapes if not s.outside]
    assert visible and all(s.type == "polygon" and len(s.points) >= 6 for s in visible)


def test_every_sampling_strategy_and_bap_switch_runs(tiny_model, clip, tiny_options):
    pipeline = MomentSegPipeline(tiny_model)
    for sampling in ("first_k", "top_k", "nearby_k", "random"):
        result = pipeline.run(clip, "the dog", dataclasses.replace(tiny_options, sampling=sampling))
        assert len(result.keyframes) == 4 and result.options["sampling"] == sampling
    baseline = dataclasses.replace(tiny_options, sampling="first_k", anchored_updating=False,
                                   adaptive_cleaning=False, bidirectional=False)
    result = pipeline.run(clip, "the dog", baseline)
    assert result.center_frame == 0 and result.decisions == []
    assert [s.frame for s in result.tracks[0].shapes] == list(range(len(clip)))


@pytest.mark.parametrize(
    "prompt, anchors, message",
    [
        ("   ", {}, "prompt is empty"),
        ("x" * 1001, {}, "at most 1000"),
        ("the dog", {12: np.zeros((48, 64))}, "outside the video"),
        ("the dog", {3: np.zeros((10, 10))}, "has shape"),
    ],
)
def test_bad_input_is_named(tiny_model, clip, tiny_options, prompt, anchors, message):
    with pytest.raises(InvalidInputError, match=message):
        MomentSegPipeline(tiny_model).run(clip, prompt, tiny_options, human_anchors=anchors)


def test_bad_options_are_named():
    with pytest.raises(InvalidInputError, match="unknown sampling"):
        SegmentOptions(sampling="best")
    with pytest.raises(InvalidInputError, match="threshold"):
        SegmentOptions(threshold=2)
    with pytest.raises(InvalidInputError, match="one size"):
        ArrayFrames(synthetic_frames(2) + synthetic_frames(1, 40, 40))
