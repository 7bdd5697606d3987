import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from momentseg.errors import InvalidInputError
from momentseg.sampling import (
    SAMPLERS,
    default_window,
    first_k,
    moment_center,
    moment_centric_sampling,
    moment_window,
    nearby_k,
    random_k,
    smooth_similarity,
    top_k,
    uniform,
)

similarities = arrays(
    np.float64,
    st.integers(1, 300),
    elements=st.one_of(st.just(0.0), st.floats(0, 1, allow_nan=False), st.just(1.0)),
)


@settings(max_examples=300, deadline=None)
@given(similarities, st.integers(1, 40), st.sampled_from([0.0, 0.5, 1.0, 3.0]))
def test_mcs_returns_exactly_min_k_t_sorted_distinct_frames_with_the_centre(s, k, sigma):
    frames = moment_centric_sampling(s, k, sigma=sigma)
    assert frames.size == min(k, s.size)
    assert np.all(np.diff(frames) > 0)
    assert frames[0] >= 0 and frames[-1] < s.size
    assert moment_center(s, k, sigma=sigma) in frames
    np.testing.assert_array_equal(frames, moment_centric_sampling(s.copy(), k, sigma=sigma))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 200), st.integers(1, 20))
def test_mcs_on_flat_and_all_zero_input_spreads_frames_over_the_video(t, k):
    for s in (np.zeros(t), np.ones(t)):
        frames = moment_centric_sampling(s, k)
        assert frames.size == min(k, t)
        if k <= t and k > 2:
            # both halves of the video get frames: no clustering when nothing stands out
            assert frames[0] < t / 2 <= frames[-1] + 1


@settings(max_examples=100, deadline=None)
@given(st.integers(20, 400), st.integers(2, 16), st.data())
def test_mcs_on_a_single_spike_centres_on_the_spike(t, k, data):
    spike = data.draw(st.integers(0, t - 1))
    s = np.zeros(t)
    s[spike] = 1.0
    assert abs(moment_center(s, k, sigma=0) - spike) <= default_window(t, k) // 2
    assert spike in moment_centric_sampling(s, k, sigma=0) or default_window(t, k) > 1


def test_mcs_hand_computed_spiky_case():
    # T=10, K=3, no smoothing: w = floor(10/3 + .5) = 3; window sums [1,2,2,1,0,...] -> i* = 1, c* = 2.
    # w_L = 0, w_R = 1 -> k_L = 0, k_R = 2; both right quantiles hit frame 3; the repeat is filled by
    # the nearest unused frame, 4.
    s = np.array([0, 0, 1, 1, 0, 0, 0, 0, 0, 0], float)
    assert moment_center(s, 3, sigma=0) == 2
    np.testing.assert_array_equal(moment_centric_sampling(s, 3, sigma=0), [2, 3, 4])


def test_mcs_hand_computed_flat_case():
    # T=9, K=3, flat: i* = 0 (first maximum), c* = 1; w_L = 1, w_R = 7 -> k_L = floor(2/8 + .5) = 0,
    # k_R = 2; right side frames 2..8 with F = m/7: quantile .25 -> frame 3, .75 -> frame 7.
    np.testing.assert_array_equal(moment_centric_sampling(np.ones(9), 3, sigma=0), [1, 3, 7])


def test_mcs_budget_follows_the_similarity_mass():
    # mass 3 left of c*=5 and 1 right: of K-1 = 4 frames, k_L = floor(4*3/4 + .5) = 3 go left.
    s = np.array([1, 1, 1, 0, 0, 5, 0, 0, 0, 1.0])
    frames = moment_centric_sampling(s, 5, sigma=0, window=1)
    assert moment_center(s, 5, sigma=0, window=1) == 5
    assert (frames < 5).sum() == 3 and (frames > 5).sum() == 1


def test_mcs_with_fewer_frames_than_budget_returns_every_frame():
    np.testing.assert_array_equal(moment_centric_sampling([0.2, 0.9, 0.1], 8), [0, 1, 2])


def test_smoothing_is_scipys_mirrored_gaussian():
    s = np.zeros(9)
    s[0] = 1.0
    smoothed = smooth_similarity(s, 1.0)
    kernel = np.exp(-0.5 * np.arange(-4, 5) ** 2)
    kernel /= kernel.sum()
    # the border mirrors 'd c b a | a b c d': frame 0 counts once more at offset -1
    assert smoothed[0] == pytest.approx(kernel[4] + kernel[3])
    assert smoothed[3] == pytest.approx(kernel[1] + kernel[0])  # distance 3, and 4 to the mirror image
    np.testing.assert_array_equal(smooth_similarity(s, 0), s)


def test_moment_window_is_centred_on_c_star():
    s = np.zeros(100)
    s[40:50] = 1
    start, end = moment_window(s, 10, sigma=0)
    assert end - start + 1 == 10
    assert start + 5 == moment_center(s, 10, sigma=0)
    assert (start, end) == (40, 49)


@pytest.mark.parametrize("bad", [[], [[0.1, 0.2]], [0.1, -0.5], [np.nan, 0.2]])
def test_invalid_similarity_is_rejected(bad):
    with pytest.raises(InvalidInputError):
        moment_centric_sampling(bad, 4)


def test_invalid_budget_is_rejected():
    with pytest.raises(InvalidInputError, match="budget"):
        moment_centric_sampling([0.1, 0.2], 0)


def test_baselines():
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.0, 0.3, 0.7, 0.1, 0.0, 0.2])
    np.testing.assert_array_equal(first_k(s, 3), [0, 1, 2])
    np.testing.assert_array_equal(uniform(s, 5), [1, 3, 5, 7, 9])
    np.testing.assert_array_equal(top_k(s, 3), [1, 3, 6])
    np.testing.assert_array_equal(nearby_k(s, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(nearby_k(s[::-1], 4), [6, 7, 8, 9])
    np.testing.assert_array_equal(random_k(s, 4, seed=3), random_k(s, 4, seed=3))
    assert not np.array_equal(random_k(np.ones(1000), 10, seed=1), random_k(np.ones(1000), 10, seed=2))


@settings(max_examples=100, deadline=None)
@given(similarities, st.integers(1, 30), st.sampled_from(sorted(SAMPLERS)))
def test_every_sampler_returns_min_k_t_sorted_distinct_frames(s, k, name):
    frames = SAMPLERS[name](s, k)
    assert frames.size == min(k, s.size)
    assert np.all(np.diff(frames) > 0) and frames[0] >= 0 and frames[-1] < s.size
