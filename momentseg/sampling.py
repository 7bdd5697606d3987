"""Keyframe sampling: Moment-Centric Sampling (paper §3.2.2, Eq. 6-7) and the Table 8 baselines.

The defaults follow the authors' released code (``docs/official.md`` §4): a
fixed 5-frame moment window, Python rounding of the budget split, and uniform keyframes when two
draws coincide. Every entry of :data:`SAMPLERS` has the call shape ``sampler(S, k, **options) ->
np.ndarray`` and returns sorted, distinct frame indices, exactly ``min(k, T)`` of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter1d

from momentseg.errors import InvalidInputError

# the official moment window: a constant 5 frames (MM:417, ``find_max_window_center(p, 5)``)
OFFICIAL_WINDOW = 5

__all__ = [
    "OFFICIAL_WINDOW",
    "SAMPLERS",
    "default_window",
    "first_k",
    "inverse_cdf_samples",
    "mcs",
    "moment_center",
    "moment_centric_sampling",
    "moment_window",
    "nearby_k",
    "random_k",
    "smooth_similarity",
    "split_budget",
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
    """S = Gaussian-smooth(s): the smoothed frame-query similarity of MCS step 1 (official MM:415).

    The kernel is scipy's ``gaussian_filter1d`` with its defaults (mirrored borders, radius 4σ);
    ``sigma = 0`` is no smoothing.
    """
    s = _as_similarity(similarity)
    if sigma < 0:
        raise InvalidInputError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return s
    return gaussian_filter1d(s, sigma, mode="reflect")


def default_window(num_frames: int, k: int) -> int:
    """w = max(1, ⌊T / K + 0.5⌋), capped at T: the project spec's window, an option beside the official 5."""
    return min(num_frames, max(1, int(np.floor(num_frames / k + 0.5))))


def _window(num_frames: int, k: int, window: int | None) -> int:
    if window is None:
        return default_window(num_frames, k)
    if int(window) != window or window < 1:
        raise InvalidInputError(f"window must be a positive integer, got {window!r}")
    return int(window)


def moment_window(smoothed, k: int = 8, *, window: int | None = OFFICIAL_WINDOW) -> tuple[int, int]:
    """Eq. 6: the densest window [i*, i* + w - 1] of S (inclusive, clipped to the video).

    i* = argmax_i Σ_{j=i}^{i+w-1} S_j, the first maximum (official ``np.convolve(S, ones(w), "valid")``,
    MM:1106-1117). ``window`` None is the spec's w = ⌊T/K + 0.5⌋. A video shorter than w is one window.
    """
    s = _as_similarity(smoothed)
    width = _window(s.size, _budget(k, s.size), window)
    if s.size < width:
        return 0, s.size - 1
    start = int(np.argmax(np.convolve(s, np.ones(width), "valid")))
    return start, start + width - 1


def moment_center(smoothed, k: int = 8, *, window: int | None = OFFICIAL_WINDOW) -> int:
    """Eq. 6: the moment centre c* = i* + ⌊w/2⌋; T // 2 when the video is shorter than w (official)."""
    s = _as_similarity(smoothed)
    width = _window(s.size, _budget(k, s.size), window)
    if s.size < width:
        return s.size // 2
    return moment_window(s, k, window=width)[0] + width // 2


def split_budget(smoothed: np.ndarray, center: int, rest: int) -> tuple[int, int]:
    """Eq. 7 budget: k_L = round(rest · w_L / (w_L + w_R)) with Python's round (official MM:1132-1138),
    k_R = rest - k_L, where w_L = Σ_{j<c*} S_j and w_R = Σ_{j>c*} S_j.

    When both masses are 0 (not reachable from σ(ℓ) > 0) the split follows the frame counts instead.
    """
    mass_left = float(smoothed[:center].sum())
    mass_right = float(smoothed[center + 1 :].sum())
    if mass_left + mass_right == 0:
        mass_left, mass_right = center, smoothed.size - 1 - center
    if mass_left + mass_right == 0:
        return 0, 0
    k_left = round(rest * mass_left / (mass_left + mass_right))
    return k_left, rest - k_left


def inverse_cdf_samples(weights: np.ndarray, count: int) -> np.ndarray:
    """Eq. 7 stratified inverse-CDF sampling: i_m = min{i : F(i) ≥ (m - 0.5)/k}, m = 1..k.

    ``np.searchsorted`` over the cumulative distribution (official MM:1141-1161); an all-zero side
    is sampled evenly (``linspace``). Indices are relative to the side.
    """
    if count == 0 or weights.size == 0:
        return np.empty(0, dtype=np.int64)
    total = weights.sum()
    if total == 0:
        return np.linspace(0, weights.size - 1, count, dtype=np.int64)
    cdf = np.cumsum(weights / total)
    quantiles = (np.arange(count) + 0.5) / count
    return np.minimum(np.searchsorted(cdf, quantiles), weights.size - 1).astype(np.int64)


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


def moment_centric_sampling(
    smoothed, k: int, *, window: int | None = OFFICIAL_WINDOW, duplicates: str = "uniform"
) -> tuple[np.ndarray, int | None]:
    """Moment-Centric Sampling (paper §3.2.2, Eq. 6-7; official ``proportional_weighted_sampling``).

    ``smoothed`` is S (see :func:`smooth_similarity`). Finds c* (Eq. 6), splits the other K - 1 frames
    between the two sides by their similarity mass and draws each side by stratified inverse-CDF
    sampling (Eq. 7). Returns the sorted keyframes and c*, the frame BAP starts from.

    Where two draws hit one frame, ``duplicates="uniform"`` (official MM:667-669) returns uniform
    keyframes and no centre (BAP then starts at the middle keyframe); ``"fill"`` (the project spec)
    replaces each repeat by the nearest unused frame. A video with fewer than K frames: every frame,
    no centre (official MM:646-647).
    """
    s = _as_similarity(smoothed)
    k = int(k)
    _budget(k, s.size)
    if duplicates not in ("uniform", "fill"):
        raise InvalidInputError(f"duplicates must be 'uniform' or 'fill', got {duplicates!r}")
    if s.size < k:
        return np.arange(s.size), None
    center = moment_center(s, k, window=window)
    k_left, k_right = split_budget(s, center, k - 1)
    left = inverse_cdf_samples(s[:center], k_left)
    right = inverse_cdf_samples(s[center + 1 :], k_right) + center + 1
    draws = np.concatenate([left, [center], right]).astype(np.int64)
    if np.unique(draws).size == draws.size:
        return np.sort(draws), center
    if duplicates == "uniform":
        return uniform(s, k), None
    return _fill_to_budget(draws, s), center


def mcs(smoothed, k: int, *, window: int | None = OFFICIAL_WINDOW, duplicates: str = "uniform") -> np.ndarray:
    """MCS keyframes alone, in the call shape of the Table 8 baselines."""
    return moment_centric_sampling(smoothed, k, window=window, duplicates=duplicates)[0]


def first_k(similarity, k: int) -> np.ndarray:
    """FirstK baseline: the first K frames."""
    s = _as_similarity(similarity)
    return np.arange(_budget(k, s.size))


def uniform(similarity, k: int) -> np.ndarray:
    """Uniform baseline: ``np.linspace(0, T - 1, K, dtype=int)``, as the official code samples without [FIND]."""
    s = _as_similarity(similarity)
    return np.linspace(0, s.size - 1, _budget(k, s.size), dtype=np.int64)


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
    "mcs": mcs,
    "first_k": first_k,
    "uniform": uniform,
    "random": random_k,
    "top_k": top_k,
    "nearby_k": nearby_k,
}
