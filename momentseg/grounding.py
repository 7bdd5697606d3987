"""Temporal sentence grounding with the [FIND] token (paper §3.2.1, Eq. 5; official MM:400-422, 1094-1104).

Pure maths over embeddings and per-frame scores: numpy for inference, torch for the training loss.
The defaults follow the authors' released code (``docs/official.md`` §3): the
pooled frame embeddings T^v are interpolated to the T video frames before the similarity, and the
moment is the longest run of the smoothed similarity strictly above θ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from momentseg.errors import InvalidInputError
from momentseg.sampling import default_window

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_TAU",
    "DEFAULT_THETA",
    "MOMENT_RULES",
    "find_matching_loss",
    "frame_query_similarity",
    "frame_similarity",
    "interpolate_temporal_embeddings",
    "longest_moment",
    "moment_around_center",
    "moment_seconds",
    "patch_scores_to_frames",
    "sigmoid",
]

DEFAULT_TAU = 0.07
DEFAULT_THETA = 0.4
INFERENCE_KEYFRAMES = 8


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def frame_query_similarity(find_embedding, temporal_embeddings, tau: float = DEFAULT_TAU):
    """ℓ_ij = (T^f_i · T^v_j) / (‖T^f_i‖ ‖T^v_j‖ τ): cosine similarity over temperature τ.

    ``find_embedding`` is T^f ([C] or [Q, C]), ``temporal_embeddings`` is T^v ([L_t, C]).
    Returns ℓ with shape [L_t] (or [Q, L_t]); works on numpy arrays and torch tensors alike.
    """
    if tau <= 0:
        raise InvalidInputError(f"temperature tau must be > 0, got {tau}")
    if _is_torch(find_embedding):
        import torch.nn.functional as F

        find = F.normalize(find_embedding.float(), dim=-1)
        frames = F.normalize(temporal_embeddings.float(), dim=-1)
        return find @ frames.transpose(-1, -2) / tau
    f = np.asarray(find_embedding, dtype=np.float64)
    v = np.asarray(temporal_embeddings, dtype=np.float64)
    f = f / np.maximum(np.linalg.norm(f, axis=-1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return f @ v.T / tau


def sigmoid(logits) -> np.ndarray:
    """σ(ℓ), numerically stable."""
    x = np.asarray(logits, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def find_matching_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    positive_weight: float = 2.0,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 5: L_find = (1/|Ω|) Σ_Ω [ −λ_p y log σ(ℓ) − (1 − y) log(1 − σ(ℓ)) ].

    ``logits`` are ℓ (already divided by τ, see :func:`frame_query_similarity`), ``targets`` y ∈ {0, 1}
    (1 where temporal patch j lies inside the ground-truth moment), ``positive_weight`` λ_p and
    ``valid`` the mask of pairs Ω (all pairs when None).
    """
    import torch
    import torch.nn.functional as F

    y = targets.to(logits.dtype)
    per_pair = F.binary_cross_entropy_with_logits(
        logits, y, pos_weight=torch.as_tensor(positive_weight, dtype=logits.dtype), reduction="none"
    )
    if valid is None:
        return per_pair.mean()
    valid = valid.to(torch.bool)
    if not valid.any():
        return per_pair.sum() * 0.0
    return per_pair[valid].mean()


def _linear_resize(values: np.ndarray, size: int) -> np.ndarray:
    """1-D bilinear resize with half-pixel centres (``F.interpolate(mode="linear")``)."""
    src = (np.arange(size) + 0.5) * values.size / size - 0.5
    return np.interp(src, np.arange(values.size), values)


def patch_scores_to_frames(patch_scores, sampled_frames, num_frames: int) -> np.ndarray:
    """Map per-temporal-patch scores (L_t) onto every one of the T video frames.

    The L_t scores are bilinearly resized to the L sampled frames, then linearly interpolated over
    frame time onto 0..T-1 (``sampled_frames`` are the video indices of the L sampled frames).
    """
    scores = np.asarray(patch_scores, dtype=np.float64)
    sampled = np.asarray(sampled_frames, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise InvalidInputError(f"patch scores must be a non-empty 1-D array, got shape {scores.shape}")
    if sampled.ndim != 1 or sampled.size == 0 or np.any(np.diff(sampled) <= 0):
        raise InvalidInputError("sampled_frames must be a non-empty, strictly increasing list of frame indices")
    if num_frames < 1 or sampled[0] < 0 or sampled[-1] >= num_frames:
        raise InvalidInputError(f"sampled_frames must lie inside the video's {num_frames} frames")
    per_sampled = _linear_resize(scores, sampled.size)
    return np.interp(np.arange(num_frames), sampled, per_sampled)


def interpolate_temporal_embeddings(pooled, num_frames: int) -> np.ndarray:
    """T^v over frames: the L_t pooled patch embeddings [L_t, C] linearly resized along time to the T
    video frames with ``align_corners=True`` (official MM:410-411, ``F.interpolate(mode="linear")``)."""
    v = np.asarray(pooled, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] == 0:
        raise InvalidInputError(f"pooled embeddings must be [L_t, C] with L_t >= 1, got shape {v.shape}")
    if num_frames < 1:
        raise InvalidInputError(f"the video must have at least one frame, got {num_frames}")
    positions = np.linspace(0, v.shape[0] - 1, num_frames)
    return np.stack([np.interp(positions, np.arange(v.shape[0]), channel) for channel in v.T], axis=1)


def frame_similarity(
    find_embedding,
    pooled,
    num_frames: int,
    tau: float = DEFAULT_TAU,
    *,
    interpolation: str = "features",
    sampled_frames=None,
) -> np.ndarray:
    """s_j = σ(ℓ_j), the frame-query similarity on every one of the T frames.

    ``interpolation="features"`` (official): T^v is interpolated to T frames, then ℓ = cos/τ per frame.
    ``"scores"`` (the paper's wording): σ(ℓ) per temporal patch, resized to the L ``sampled_frames`` and
    interpolated over frame time (:func:`patch_scores_to_frames`).
    """
    if interpolation == "features":
        return sigmoid(frame_query_similarity(find_embedding, interpolate_temporal_embeddings(pooled, num_frames), tau))
    if interpolation == "scores":
        if sampled_frames is None:
            raise InvalidInputError("interpolation 'scores' needs the sampled frames")
        return patch_scores_to_frames(
            sigmoid(frame_query_similarity(find_embedding, pooled, tau)), sampled_frames, num_frames
        )
    raise InvalidInputError(f"interpolation must be 'features' or 'scores', got {interpolation!r}")


def _as_probabilities(probs) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise InvalidInputError(f"probabilities must be a non-empty 1-D array, got shape {p.shape}")
    return p


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[False], mask, [False]]).astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def longest_moment(probs, theta: float = DEFAULT_THETA) -> tuple[int, int]:
    """TSG post-processing (official ``find_longest_left_right_index``, MM:1094-1104): the moment [t0, t1].

    The longest run of consecutive frames with S > θ (strict; the first on ties); the whole video
    when no frame exceeds θ.
    """
    p = _as_probabilities(probs)
    runs = _runs(p > theta)
    if not runs:
        return 0, p.size - 1
    return max(runs, key=lambda run: run[1] - run[0])


def moment_around_center(
    probs, center: int, theta: float = DEFAULT_THETA, *, window: int | None = None
) -> tuple[int, int]:
    """TSG post-processing as the project spec read the paper (an option): the moment [t0, t1].

    The maximal run of frames with p ≥ θ that contains c*; if p(c*) < θ, the run with the largest
    Σp; if no frame reaches θ, the MCS window of width w (default: that of N = 8 keyframes) around c*.
    """
    p = _as_probabilities(probs)
    if not 0 <= center < p.size:
        raise InvalidInputError(f"moment centre {center} is outside the video's {p.size} frames")
    runs = _runs(p >= theta)
    for start, end in runs:
        if start <= center <= end:
            return start, end
    if runs:
        return max(runs, key=lambda run: p[run[0] : run[1] + 1].sum())
    width = window or default_window(p.size, INFERENCE_KEYFRAMES)
    start = int(np.clip(center - width // 2, 0, p.size - min(width, p.size)))
    return start, start + min(width, p.size) - 1


MOMENT_RULES = ("longest", "around_center")


def moment_seconds(start: int, end: int, fps: float) -> tuple[float, float]:
    """[t0, t1] in seconds for an inclusive frame range: [start / fps, (end + 1) / fps]."""
    if not fps > 0:
        raise InvalidInputError(f"fps must be > 0, got {fps}")
    return start / fps, (end + 1) / fps
