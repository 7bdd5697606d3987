"""The two projection heads on the LMM's hidden states."""

from __future__ import annotations

from torch import nn

SAM2_PROMPT_DIM = 256


class SegProjector(nn.Sequential):
    """p = text_hidden_fcs(h_SEG): Linear(H, H) → ReLU → Linear(H, 256) → Dropout(0) (Sa2VA's names)."""

    def __init__(self, hidden_size: int, out_dim: int = SAM2_PROMPT_DIM):
        super().__init__(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_dim), nn.Dropout(0.0))


class FindHead(nn.Sequential):
    """The MLP shared by [FIND] and the frame tokens before pooling: Linear(H, H) → GELU → Linear(H, C).

    Ours (the paper publishes no weights); its checkpoint keys start with ``find_head.``.
    """

    def __init__(self, hidden_size: int, out_dim: int = SAM2_PROMPT_DIM):
        super().__init__(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, out_dim))
