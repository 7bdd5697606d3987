"""Temporal sentence grounding with the [FIND] token (paper §3.2.1, Eq. 5; spec §2).

Pure maths over embeddings and per-frame scores: numpy for inference, torch for the training loss.
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
    "find_matching_loss",
    "frame_query_similarity",
    "moment_seconds",
    "patch_scores_to_frames",
    "predict_moment",
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

        f = F.normalize(find_embedding.float(), dim=-1)
        v = F.normalize(temporal_embeddings.float(), dim=-1)
        return f @ v.transpose(-1, -2) / tau
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


def _runs_above(probs: np.ndarray, theta: float) -> list[tuple[int, int]]:
    above = np.concatenate([[False], probs >= theta, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def predict_moment(
    probs, center: int, theta: float = DEFAULT_THETA, *, window: int | None = None
) -> tuple[int, int]:
    """TSG post-processing (spec §2, App. E.4): the predicted moment [t0, t1], inclusive frames.

    The maximal run of frames with p ≥ θ that contains c*; if p(c*) < θ, the run with the largest
    Σp; if no frame reaches θ, the MCS window of width w (default: that of N = 8 keyframes) around c*.
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise InvalidInputError(f"probabilities must be a non-empty 1-D array, got shape {p.shape}")
    if not 0 <= center < p.size:
        raise InvalidInputError(f"moment centre {center} is outside the video's {p.size} frames")
    runs = _runs_above(p, theta)
    for start, end in runs:
        if start <= center <= end:
            return start, end
    if runs:
        return max(runs, key=lambda run: p[run[0] : run[1] + 1].sum())
    width = window or default_window(p.size, INFERENCE_KEYFRAMES)
    start = int(np.clip(center - width // 2, 0, p.size - min(width, p.size)))
    return start, start + min(width, p.size) - 1


def moment_seconds(start: int, end: int, fps: float) -> tuple[float, float]:
    """[t0, t1] in seconds for an inclusive frame range: [start / fps, (end + 1) / fps]."""
    if not fps > 0:
        raise InvalidInputError(f"fps must be > 0, got {fps}")
    return start / fps, (end + 1) / fps
