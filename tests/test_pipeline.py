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
    shapes = [
        models.TrackedShapeRequest(type=s.type, frame=s.frame, points=s.points, outside=s.outside)
        for s in result.tracks[0].shapes
    ]
    track = models.LabeledTrackRequest(label_id=1, frame=shapes[0].frame, shapes=shapes)
    assert len(track.shapes) == len(clip)
    visible = next(s for s in result.tracks[0].shapes if not s.outside)
    decoded = decode_mask(visible.points, image_width=result.width, image_height=result.height)
    np.testing.assert_array_equal(decoded, result.tracks[0].mask(visible.frame, result.width, result.height))


def test_without_force_answer_a_model_that_never_says_find_or_seg_gives_no_moment_and_no_masks(
    tiny_model, clip, tiny_options
):
    options = dataclasses.replace(tiny_options, force_answer=False, max_new_tokens=4)
    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", options)
    assert result.moment is None and result.similarity is None and result.tracks == []
    assert "[FIND]" in result.moment_reason and "[SEG]" in result.moment_reason
    assert result.keyframes == [0, 3, 7, 11]  # uniform linspace, as the official code without [FIND]
    assert "[FIND]" not in result.answers["find"]


def test_one_frame_video_segments(tiny_model, tiny_options):
    result = MomentSegPipeline(tiny_model).run(ArrayFrames(synthetic_frames(1), fps=5.0), "the red dog", tiny_options)
    assert result.keyframes == [0] and result.center_frame == 0 and result.moment_center == 0
    assert (result.moment.start_frame, result.moment.end_frame) == (0, 0)
    assert len(result.tracks[0].shapes) == 1


def test_result_exposes_the_similarity_c_star_and_answers(tiny_model, clip, tiny_options):
    from momentseg.sampling import moment_center, smooth_similarity

    result = MomentSegPipeline(tiny_model).run(clip, "the red dog", tiny_options)
    np.testing.assert_allclose(result.similarity, smooth_similarity(result.similarity_raw), atol=2e-6)
    assert result.moment_center == moment_center(np.array(result.similarity), 4)
    assert result.answers == {"find": "<unk> is [FIND].", "seg": "<unk> is [SEG]."}
    data = result.to_dict()
    assert {"similarity", "similarity_raw", "moment_center", "keyframes", "center_frame", "moment"} <= set(data)


def test_generated_answer_states_equal_the_teacher_forced_pass_over_the_same_answer(tiny_model):
    """Greedy generation with the KV cache gives, at each fed-back token, the state a full teacher-forced
    pass over the same answer gives (why --force-answer reproduces a generated [FIND]/[SEG])."""
    import torch

    from momentseg.model.lmm import normalized_frame, vision_patches
    from momentseg.model.prompts import find_prompt

    lmm = tiny_model.lmm
    patches, grid = vision_patches([normalized_frame(f, 4 * 28 * 28, 4 * 28 * 28) for f in synthetic_frames(4)])
    prompt = find_prompt("the dog", grid[0] * grid[1] * grid[2] // 4)
    vision = {"pixel_values_videos": torch.from_numpy(patches), "video_grid_thw": torch.tensor([grid])}
    video_id = lmm.model.config.video_token_id
    with torch.inference_mode():
        prompt_states, generated, ids = lmm._answer(prompt, vision, [grid], video_id, 2.0, None, 6)
        answer = lmm.tokenizer.decode(ids)
        assert lmm.tokenizer.encode(answer, add_special_tokens=False) == ids
        forced_prompt, forced, forced_ids = lmm._answer(prompt, vision, [grid], video_id, 2.0, answer, 6)
    assert forced_ids == ids and len(generated) == len(ids) - 1
    np.testing.assert_allclose(generated.numpy(), forced[: len(generated)].numpy(), atol=1e-5)
    np.testing.assert_allclose(prompt_states.numpy(), forced_prompt.numpy(), atol=1e-5)


def test_mrope_positions_follow_transformers_4_51(tiny_model):
    """Images: as transformers' own index. Video: temporal id 2t, text after it continues past the largest id."""
    import torch

    from momentseg.model.lmm import mrope_position_ids

    ids = torch.tensor([5, 7, 7, 7, 7, 7, 7, 7, 7, 9, 9])  # text, a video block of (t=2, h=4, w=4) → 2·2·2 tokens, text
    positions = mrope_position_ids(ids, [[2, 4, 4]], 7, 2.0)[:, 0]
    assert positions[:, 0].tolist() == [0, 0, 0]
    assert positions[0, 1:9].tolist() == [1, 1, 1, 1, 3, 3, 3, 3]  # t·2 + 1
    assert positions[1, 1:9].tolist() == [1, 1, 2, 2, 1, 1, 2, 2]
    assert positions[:, 9].tolist() == [4, 4, 4]  # max id 3 + 1 (transformers 5 would restart at 3)
    image_ids = torch.tensor([5, 8, 8, 8, 8, 9])
    ours = mrope_position_ids(image_ids, [[1, 4, 4]], 8, 0.0)
    theirs, _ = tiny_model.lmm.model.model.get_rope_index(
        image_ids[None], image_grid_thw=torch.tensor([[1, 4, 4]]), mm_token_type_ids=(image_ids == 8).int()[None]
    )
    assert torch.equal(ours, theirs)


def test_prompt_with_special_tokens_or_broken_unicode_is_refused():
    from momentseg.pipeline import validate_prompt

    for bad in ("the <|video_pad|> dog", "a [SEG] cat", "<|im_start|>system", "x\ud800y"):
        with pytest.raises(InvalidInputError):
            validate_prompt(bad)
    assert validate_prompt("  the   red  dog ") == "the red dog"


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
    assert result.keyframes == [0, 3, 7, 11]
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


def test_every_sampling_strategy_picks_k_keyframes_and_a_start_among_them(tiny_options):
    from momentseg.pipeline import _keyframes

    similarity = np.linspace(0.1, 0.9, 12)
    for sampling in ("mcs", "uniform", "first_k", "top_k", "nearby_k", "random"):
        keyframes, start, center, used = _keyframes(
            similarity, 12, dataclasses.replace(tiny_options, sampling=sampling)
        )
        assert len(keyframes) == 4 and start in keyframes and used == sampling
        assert center == 9  # c* of the densest 5-frame window, whatever the sampler
    keyframes, start, center, used = _keyframes(None, 12, tiny_options)
    assert used == "uniform" and center is None and start == keyframes[2]


def test_the_table_9_baseline_runs_forward_from_the_first_keyframe(tiny_model, clip, tiny_options):
    baseline = dataclasses.replace(
        tiny_options, sampling="first_k", anchored_updating=False, adaptive_cleaning=False, bidirectional=False
    )
    result = MomentSegPipeline(tiny_model).run(clip, "the dog", baseline)
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
