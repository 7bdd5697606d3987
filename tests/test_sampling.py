import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from momentseg.errors import InvalidInputError
from momentseg.sampling import (
    SAMPLERS,
    first_k,
    inverse_cdf_samples,
    moment_center,
    moment_centric_sampling,
    moment_window,
    nearby_k,
    random_k,
    smooth_similarity,
    split_budget,
    top_k,
    uniform,
)

similarities = arrays(
    np.float64,
    st.integers(1, 300),
    elements=st.one_of(st.just(0.0), st.floats(0, 1, allow_nan=False), st.just(1.0)),
)


@settings(max_examples=300, deadline=None)
@given(similarities, st.integers(1, 40), st.sampled_from([None, 1, 5, 9]), st.sampled_from(["uniform", "fill"]))
def test_mcs_returns_exactly_min_k_t_sorted_distinct_frames_with_the_centre(s, k, window, duplicates):
    frames, center = moment_centric_sampling(s, k, window=window, duplicates=duplicates)
    assert frames.size == min(k, s.size)
    assert np.all(np.diff(frames) > 0)
    assert frames[0] >= 0 and frames[-1] < s.size
    if s.size < k:
        assert center is None
    elif center is not None:
        assert center == moment_center(s, k, window=window) and center in frames
    else:  # only the official fallback drops the centre: uniform keyframes
        assert duplicates == "uniform"
        np.testing.assert_array_equal(frames, uniform(s, k))
    again, _ = moment_centric_sampling(s.copy(), k, window=window, duplicates=duplicates)
    np.testing.assert_array_equal(frames, again)


def test_centre_is_the_middle_of_the_densest_five_frame_window():
    s = np.zeros(30)
    s[[3, 20, 21, 22]] = [1.0, 0.5, 0.6, 0.5]
    assert moment_window(s) == (18, 22)  # the first of the windows holding 20, 21, 22
    assert moment_center(s) == 20
    assert moment_center(np.ones(4)) == 2  # shorter than the window: T // 2
    assert moment_center(np.arange(30.0), 3, window=None) == 25  # spec window w = round(30 / 3) = 10


def test_mcs_hand_computed_case():
    # T=12, c* = 6 (window 4..8); w_L = 6·0.1 = 0.6, w_R = 5·0.1 + ... ; quantiles (m + .5)/k by searchsorted
    s = np.full(12, 0.1)
    s[4:9] = [0.5, 0.8, 1.0, 0.8, 0.5]
    frames, center = moment_centric_sampling(s, 5)
    assert center == 6
    # w_L = .4 + .5 + .8 = 1.7, w_R = .8 + .5 + .3 = 1.6: k_L = round(4 · 1.7 / 3.3) = round(2.06) = 2, k_R = 2
    # left cdf over 0..5 = [.04 .08 .12 .16 .36 .68 1]: q .25 -> 4, .75 -> 5; right over 7..11 similarly -> 7, 8
    np.testing.assert_array_equal(frames, [4, 5, 6, 7, 8])


def test_mcs_duplicates_fall_back_to_uniform_or_fill_the_budget():
    s = np.zeros(10)
    s[5] = 1.0
    s[6] = 1e-9
    frames, center = moment_centric_sampling(s, 4)
    assert center is None
    np.testing.assert_array_equal(frames, np.linspace(0, 9, 4, dtype=int))
    filled, center = moment_centric_sampling(s, 4, duplicates="fill")
    assert center == 4 and filled.size == 4 and {4, 5} <= set(filled)  # window 2..6 -> c* = 4


def test_budget_split_uses_pythons_round_half_to_even():
    s = np.ones(6)  # c* = 2 -> w_L = 2, w_R = 3; rest 1 -> 1·2/5 = 0.4 -> 0
    assert split_budget(s, 2, 1) == (0, 1)
    s = np.array([1.0, 0.0, 1.0])  # w_L = w_R: rest 1 -> round(0.5) = 0 (half to even), rest 3 -> round(1.5) = 2
    assert split_budget(s, 1, 1) == (0, 1)
    assert split_budget(s, 1, 3) == (2, 1)


def test_inverse_cdf_takes_quantiles_m_plus_half_over_k():
    np.testing.assert_array_equal(inverse_cdf_samples(np.ones(8), 2), [1, 5])
    np.testing.assert_array_equal(inverse_cdf_samples(np.zeros(5), 3), [0, 2, 4])


def test_mcs_with_fewer_frames_than_budget_returns_every_frame_without_a_centre():
    frames, center = moment_centric_sampling([0.2, 0.9, 0.1], 8)
    np.testing.assert_array_equal(frames, [0, 1, 2])
    assert center is None


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


@pytest.mark.parametrize("bad", [[], [[0.1, 0.2]], [0.1, -0.5], [np.nan, 0.2]])
def test_invalid_similarity_is_rejected(bad):
    with pytest.raises(InvalidInputError):
        moment_centric_sampling(bad, 4)


def test_invalid_budget_is_rejected():
    with pytest.raises(InvalidInputError, match="budget"):
        moment_centric_sampling([0.1, 0.2], 0)
    with pytest.raises(InvalidInputError, match="duplicates"):
        moment_centric_sampling([0.1, 0.2], 1, duplicates="drop")


def test_baselines():
    s = np.array([0.1, 0.9, 0.2, 0.8, 0.0, 0.3, 0.7, 0.1, 0.0, 0.2])
    np.testing.assert_array_equal(first_k(s, 3), [0, 1, 2])
    np.testing.assert_array_equal(uniform(s, 5), [0, 2, 4, 6, 9])
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
