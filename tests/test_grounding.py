import numpy as np
import pytest
import torch

from momentseg.errors import InvalidInputError
from momentseg.grounding import (
    find_matching_loss,
    frame_query_similarity,
    frame_similarity,
    interpolate_temporal_embeddings,
    longest_moment,
    moment_around_center,
    moment_seconds,
    patch_scores_to_frames,
    sigmoid,
)


def test_similarity_is_cosine_over_tau_in_numpy_and_torch():
    find = np.array([1.0, 0.0])
    temporal = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    expected = np.array([1.0, 0.0, 1 / np.sqrt(2)]) / 0.07
    np.testing.assert_allclose(frame_query_similarity(find, temporal), expected)
    torch_result = frame_query_similarity(torch.tensor(find), torch.tensor(temporal), tau=0.5)
    assert isinstance(torch_result, torch.Tensor)
    np.testing.assert_allclose(torch_result.numpy(), expected * 0.07 / 0.5, rtol=1e-6)


def test_similarity_rejects_non_positive_tau():
    with pytest.raises(InvalidInputError, match="tau"):
        frame_query_similarity(np.ones(2), np.ones((3, 2)), tau=0)


def test_find_loss_matches_eq5_by_hand():
    logits = torch.tensor([2.0, -1.0, 0.5])
    y = torch.tensor([1.0, 0.0, 1.0])
    s = torch.sigmoid(logits)
    by_hand = (-2.0 * torch.log(s[0]) - torch.log(1 - s[1]) - 2.0 * torch.log(s[2])) / 3
    assert find_matching_loss(logits, y).item() == pytest.approx(by_hand.item(), rel=1e-6)
    valid = torch.tensor([True, True, False])
    by_hand_valid = (-2.0 * torch.log(s[0]) - torch.log(1 - s[1])) / 2
    assert find_matching_loss(logits, y, valid=valid).item() == pytest.approx(by_hand_valid.item(), rel=1e-6)
    lam1 = (-torch.log(s[0]) - torch.log(1 - s[1]) - torch.log(s[2])) / 3
    assert find_matching_loss(logits, y, positive_weight=1.0).item() == pytest.approx(lam1.item(), rel=1e-6)


def test_find_loss_has_gradients():
    logits = torch.zeros(4, requires_grad=True)
    find_matching_loss(logits, torch.tensor([1, 0, 0, 1])).backward()
    assert logits.grad is not None and logits.grad[0] < 0 < logits.grad[1]


def test_patch_scores_interpolate_like_torch_linear_then_over_frame_time():
    patch = np.array([0.0, 1.0, 0.5])
    sampled = np.arange(0, 60, 10)  # L = 6 sampled frames of a 60-frame video
    frames = patch_scores_to_frames(patch, sampled, 60)
    expected_sampled = torch.nn.functional.interpolate(
        torch.tensor(patch)[None, None], size=6, mode="linear", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(frames[sampled], expected_sampled)
    assert frames.shape == (60,)
    assert frames[15] == pytest.approx((expected_sampled[1] + expected_sampled[2]) / 2)
    assert frames[59] == pytest.approx(expected_sampled[-1])


def test_patch_scores_reject_bad_sampling():
    with pytest.raises(InvalidInputError):
        patch_scores_to_frames([0.1], [3, 2], 10)
    with pytest.raises(InvalidInputError):
        patch_scores_to_frames([0.1], [0, 10], 10)


def test_embeddings_interpolate_like_torch_linear_align_corners():
    pooled = np.random.default_rng(0).normal(size=(12, 5))
    expected = (
        torch.nn.functional.interpolate(torch.tensor(pooled.T)[None], size=24, mode="linear", align_corners=True)[0]
        .numpy()
        .T
    )
    np.testing.assert_allclose(interpolate_temporal_embeddings(pooled, 24), expected, atol=1e-12)
    np.testing.assert_allclose(interpolate_temporal_embeddings(pooled[:1], 3), np.repeat(pooled[:1], 3, 0))


def test_frame_similarity_interpolates_features_before_the_cosine():
    find = np.array([1.0, 0.0])
    pooled = np.array([[1.0, 0.0], [0.0, 1.0]])  # the midpoint (0.5, 0.5) has cos 1/√2, not the mean of 1 and 0
    s = frame_similarity(find, pooled, 3)
    np.testing.assert_allclose(s, sigmoid(np.array([1.0, 1 / np.sqrt(2), 0.0]) / 0.07))
    by_scores = frame_similarity(find, pooled, 3, interpolation="scores", sampled_frames=[0, 2])
    assert by_scores[1] != pytest.approx(s[1])
    with pytest.raises(InvalidInputError, match="interpolation"):
        frame_similarity(find, pooled, 3, interpolation="nearest")


def test_longest_moment_is_the_longest_run_strictly_above_theta():
    p = np.array([0.5, 0.5, 0.1, 0.6, 0.7, 0.8, 0.3, 0.4, 0.9])
    assert longest_moment(p, 0.4) == (3, 5)
    assert longest_moment(np.array([0.4, 0.4, 0.1]), 0.4) == (0, 2)  # nothing > θ: the whole video
    assert longest_moment(np.array([0.5, 0.1, 0.5]), 0.4) == (0, 0)  # ties: the first run


def test_moment_around_center_takes_the_run_containing_the_centre():
    p = np.array([0.1, 0.5, 0.6, 0.2, 0.7, 0.8, 0.9, 0.3])
    assert moment_around_center(p, 5) == (4, 6)
    assert moment_around_center(p, 1) == (1, 2)
    assert moment_around_center(np.array([0.5, 0.0, 0.45, 0.45, 0.45, 0.0, 0.1]), 6) == (2, 4)
    p = np.full(40, 0.1)
    assert moment_around_center(p, 20, window=6) == (17, 22)
    assert moment_around_center(p, 39, window=6) == (34, 39)
    with pytest.raises(InvalidInputError, match="outside"):
        moment_around_center([0.5, 0.5], 2)


def test_moment_seconds_and_sigmoid():
    assert moment_seconds(10, 19, 10.0) == (1.0, 2.0)
    with pytest.raises(InvalidInputError):
        moment_seconds(0, 1, 0)
    np.testing.assert_allclose(sigmoid([-800.0, 0.0, 800.0]), [0.0, 0.5, 1.0])
