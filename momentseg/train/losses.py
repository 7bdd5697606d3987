"""The training losses: L_find (Eq. 5, in momentseg.grounding), the text loss, and Sa2VA's mask loss.

The mask loss is Sa2VA's (which MomentSeg keeps): sigmoid cross-entropy (weight 2.0) plus naive Dice
(weight 0.5, ε = 1) on points sampled where the prediction is most uncertain (Mask2Former's point sampling:
12544 points, oversample ×3, 75 % by importance).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NUM_POINTS = 112 * 112
OVERSAMPLE_RATIO = 3.0
IMPORTANCE_RATIO = 0.75


def point_sample(values: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values [M, C, n] of ``values`` [M, C, H, W] at ``coords`` [M, n, 2] in [0, 1]² (x, y)."""
    grid = 2.0 * coords[:, :, None, :] - 1.0
    return F.grid_sample(values, grid.to(values.dtype), align_corners=False)[..., 0]


@torch.no_grad()
def uncertain_points(
    logits: torch.Tensor,
    num_points: int = NUM_POINTS,
    generator: torch.Generator | None = None,
    oversample: float = OVERSAMPLE_RATIO,
    importance: float = IMPORTANCE_RATIO,
) -> torch.Tensor:
    """Point coordinates [M, n, 2]: the ``importance`` share where |logit| is smallest among ``oversample``·n
    random candidates, the rest uniformly random."""
    masks = logits.shape[0]
    candidates = torch.rand(masks, int(num_points * oversample), 2, device=logits.device, generator=generator)
    uncertainty = -point_sample(logits.float(), candidates)[:, 0].abs()
    important = int(importance * num_points)
    index = uncertainty.topk(important, dim=1).indices
    chosen = candidates.gather(1, index[..., None].expand(-1, -1, 2))
    rest = torch.rand(masks, num_points - important, 2, device=logits.device, generator=generator)
    return torch.cat([chosen, rest], dim=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Naive Dice: 1 − (2 Σ σ(x)·y + ε) / (Σ σ(x) + Σ y + ε), mean over masks ([M, n] inputs)."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1) + eps
    denominator = probs.sum(-1) + targets.sum(-1) + eps
    return (1 - numerator / denominator).mean()


def mask_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    *,
    bce_weight: float = 2.0,
    dice_weight: float = 0.5,
    num_points: int = NUM_POINTS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sa2VA's mask loss for logits [M, h, w] against bool/float targets [M, H, W] (any resolution)."""
    logits = logits[:, None].float()
    coords = uncertain_points(logits, num_points, generator)
    point_logits = point_sample(logits, coords)[:, 0]
    point_targets = point_sample(targets[:, None].float(), coords)[:, 0]
    bce = F.binary_cross_entropy_with_logits(point_logits, point_targets)
    return bce_weight * bce + dice_weight * dice_loss(point_logits, point_targets)


def answer_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The text loss: token cross-entropy of the answer (logits [n, V] predicting targets [n])."""
    return F.cross_entropy(logits.float(), targets)
