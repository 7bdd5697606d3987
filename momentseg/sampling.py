"""Keyframe sampling: Moment-Centric Sampling (paper §3.2.2, Eq. 6-7) and the Table 8 baselines.

Every sampler has the call shape ``sampler(similarity, k, **options) -> np.ndarray`` and returns
sorted, distinct frame indices, exactly ``min(k, T)`` of them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.ndimage import gaussian_filter1d

from momentseg.errors import InvalidInputError

__all__ = [
    "SAMPLERS",
    "default_window",
    "first_k",
    "moment_center",
    "moment_centric_sampling",
    "moment_window",
    "nearby_k",
    "random_k",
    "smooth_similarity",
    "top_k",
    "uniform",
]


def _as_similarity(similarity) -> np.ndarray:
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise InvalidInputError(f"similarity must be a non-empty 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise InvalidInputError("similarity contains NaN or infinite values")
    if np.any(s < 0):
        raise InvalidInputError("similarity must be non-negative (pass sigma(l), not logits)")
    return s


def _budget(k: int, num_frames: int) -> int:
    if int(k) != k or k < 1:
        raise InvalidInputError(f"the keyframe budget k must be a positive integer, got {k!r}")
    return min(int(k), num_frames)


def smooth_similarity(similarity, sigma: float = 1.0) -> np.ndarray:
    """S = Gaussian-smooth(s): the smoothed frame-query similarity of MCS step 1.

    The kernel is scipy's ``gaussian_filter1d`` with mirrored borders; ``sigma = 0`` is no smoothing.
    """
    s = _as_similarity(similarity)
    if sigma < 0:
        raise InvalidInputError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return s
    return gaussian_filter1d(s, sigma, mode="reflect")


def default_window(num_frames: int, k: int) -> int:
    """w = max(1, ⌊T / K + 0.5⌋), capped at T: the moment window when none is given."""
    return min(num_frames, max(1, int(np.floor(num_frames / k + 0.5))))


def _window(num_frames: int, k: int, window: int | None) -> int:
    if window is None:
        return default_window(num_frames, k)
    if int(window) != window or window < 1:
        raise InvalidInputError(f"window must be a positive integer, got {window!r}")
    return min(int(window), num_frames)


def _window_start(smoothed: np.ndarray, width: int) -> int:
    """i* = argmax_i Σ_{j=i}^{i+w-1} S_j, the first maximum on ties (Eq. 6).

    Window sums come from a prefix sum (O(T)); sums equal up to rounding count as ties.
    """
    prefix = np.concatenate([[0.0], np.cumsum(smoothed)])
    sums = prefix[width:] - prefix[:-width]
    tolerance = 1e-9 * max(1.0, prefix[-1])
    return int(np.argmax(sums >= sums.max() - tolerance))


def moment_center(similarity, k: int, *, sigma: float = 1.0, window: int | None = None) -> int:
    """Eq. 6: the moment centre c* = i* + ⌊w/2⌋ of the densest window of the smoothed similarity."""
    s = smooth_similarity(similarity, sigma)
    width = _window(s.size, _budget(k, s.size), window)
    return _window_start(s, width) + width // 2


def moment_window(similarity, k: int, *, sigma: float = 1.0, window: int | None = None) -> tuple[int, int]:
    """The densest window [i*, i* + w - 1] of Eq. 6 (inclusive frames); its centre is c*."""
    s = smooth_similarity(similarity, sigma)
    width = _window(s.size, _budget(k, s.size), window)
    start = _window_start(s, width)
    return start, start + width - 1


def _side_budgets(smoothed: np.ndarray, center: int, k: int) -> tuple[int, int, bool]:
    """Eq. 7 budget split: k_L = ⌊(K-1)·w_L / (w_L + w_R) + 0.5⌋, k_R = K - 1 - k_L.

    Returns (k_L, k_R, flat): ``flat`` says both masses were zero and the split follows frame counts.
    """
    last = smoothed.size - 1
    rest = k - 1
    if center == 0:
        return 0, rest, False
    if center == last:
        return rest, 0, False
    mass_left = smoothed[:center].sum()
    mass_right = smoothed[center + 1 :].sum()
    if mass_left + mass_right == 0:
        k_left = int(np.floor(rest * center / last + 0.5))
        return k_left, rest - k_left, True
    k_left = int(np.floor(rest * mass_left / (mass_left + mass_right) + 0.5))
    return k_left, rest - k_left, False


def _inverse_cdf_samples(weights: np.ndarray, count: int, offset: int) -> np.ndarray:
    """Stratified inverse-CDF sampling: i_m = min{i : F(i) ≥ (m - 0.5)/k}, m = 1..k."""
    if count == 0 or weights.size == 0:
        return np.empty(0, dtype=np.int64)
    total = weights.sum()
    cdf = np.cumsum(weights / total) if total > 0 else np.arange(1, weights.size + 1) / weights.size
    quantiles = (np.arange(1, count + 1) - 0.5) / count
    picks = np.minimum(np.searchsorted(cdf, quantiles, side="left"), weights.size - 1)
    return picks + offset


def _fill_to_budget(draws: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """Replace each repeated draw by its nearest unused frame (higher S first, then earlier)."""
    used = np.zeros(smoothed.size, dtype=bool)
    repeated = []
    for frame in draws.tolist():
        if used[frame]:
            repeated.append(frame)
        used[frame] = True
    for frame in repeated:
        for distance in range(1, smoothed.size):
            candidates = [f for f in (frame - distance, frame + distance) if 0 <= f < smoothed.size and not used[f]]
            if candidates:
                used[max(candidates, key=lambda f: (smoothed[f], -f))] = True
                break
    return np.flatnonzero(used)


def moment_centric_sampling(similarity, k: int, *, sigma: float = 1.0, window: int | None = None) -> np.ndarray:
    """Moment-Centric Sampling (paper §3.2.2, Eq. 6-7; spec §3).

    Smooths s into S, finds the moment centre c* (Eq. 6), splits the remaining K - 1 frames between
    the two sides by their similarity mass (Eq. 7) and draws each side by stratified inverse-CDF
    sampling. Returns exactly min(K, T) sorted distinct frames, c* among them.
    """
    smoothed = smooth_similarity(similarity, sigma)
    num_frames = smoothed.size
    k = _budget(k, num_frames)
    width = _window(num_frames, k, window)
    center = _window_start(smoothed, width) + width // 2
    k_left, k_right, flat = _side_budgets(smoothed, center, k)
    weights = np.ones_like(smoothed) if flat else smoothed
    left = _inverse_cdf_samples(weights[:center], k_left, 0)
    right = _inverse_cdf_samples(weights[center + 1 :], k_right, center + 1)
    draws = np.concatenate([[center], left, right]).astype(np.int64)
    chosen = np.unique(draws)
    if chosen.size == k:
        return chosen
    return _fill_to_budget(draws, smoothed)


def first_k(similarity, k: int) -> np.ndarray:
    """FirstK baseline: the first K frames."""
    s = _as_similarity(similarity)
    return np.arange(_budget(k, s.size))


def uniform(similarity, k: int) -> np.ndarray:
    """Uniform baseline: the centre frame of each of K equal segments."""
    s = _as_similarity(similarity)
    k = _budget(k, s.size)
    return np.floor((np.arange(k) + 0.5) * s.size / k).astype(np.int64)


def random_k(similarity, k: int, *, seed: int = 0) -> np.ndarray:
    """Random baseline: K distinct frames drawn without replacement, reproducible by ``seed``."""
    s = _as_similarity(similarity)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(s.size, size=_budget(k, s.size), replace=False))


def top_k(similarity, k: int) -> np.ndarray:
    """TopK baseline: the K most similar frames (earlier frame first on ties)."""
    s = _as_similarity(similarity)
    order = np.argsort(-s, kind="stable")
    return np.sort(order[: _budget(k, s.size)])


def nearby_k(similarity, k: int) -> np.ndarray:
    """NearbyK baseline: K consecutive frames centred on the most similar frame."""
    s = _as_similarity(similarity)
    k = _budget(k, s.size)
    start = int(np.clip(int(np.argmax(s)) - k // 2, 0, s.size - k))
    return np.arange(start, start + k)


SAMPLERS: dict[str, Callable[..., np.ndarray]] = {
    "mcs": moment_centric_sampling,
    "first_k": first_k,
    "uniform": uniform,
    "random": random_k,
    "top_k": top_k,
    "nearby_k": nearby_k,
}
