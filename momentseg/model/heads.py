"""The projection heads on the LMM's hidden states (the official MomentSeg's names: ``*_hidden_fcs``)."""

from __future__ import annotations

from torch import nn

SAM2_PROMPT_DIM = 256


class SegProjector(nn.Sequential):
    """p = text_hidden_fcs(h_SEG): Linear(H, H) → ReLU → Linear(H, 256) → Dropout(0).

    The same shape serves the official ``img_hidden_fcs`` (image tokens, used only with ``perframe_seg``).
    """

    def __init__(self, hidden_size: int, out_dim: int = SAM2_PROMPT_DIM):
        super().__init__(
            nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_dim), nn.Dropout(0.0)
        )


class FindHead(nn.Sequential):
    """The MLP shared by [FIND] and the frame tokens before pooling: Linear(H, H) → act → Linear(H, C).

    The official ``find_hidden_fcs`` uses ReLU (and a Dropout(0) after, which holds no weights); the older
    ``find_head.`` layout of this project used GELU, so ``activation`` follows the checkpoint's layout.
    """

    def __init__(self, hidden_size: int, out_dim: int = SAM2_PROMPT_DIM, activation: type[nn.Module] = nn.ReLU):
        super().__init__(
            nn.Linear(hidden_size, hidden_size), activation(), nn.Linear(hidden_size, out_dim), nn.Dropout(0.0)
        )
