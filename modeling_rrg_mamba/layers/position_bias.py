"""Dynamic position bias (CrossFormer's DPB; RRG-Mamba Eq. 7: v_P = v_S + DPB(v_S)).

A small MLP maps each relative offset ``(dh, dw)`` of a ``window x window`` neighbourhood to one weight per
channel; the resulting position-generated kernel is applied depthwise to the token grid. Because the kernel
comes from the offsets rather than a fixed table, it is defined for any grid size, and its cost grows
linearly with the number of tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor


def relative_offsets(window: int) -> Tensor:
    """``(window^2, 2)`` offsets ``(dh, dw)`` of a window around its centre, normalised to [-1, 1] so that the
    MLP sees the same range for every window."""
    radius = window // 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    dh, dw = torch.meshgrid(offsets, offsets, indexing="ij")
    return torch.stack([dh, dw], dim=-1).reshape(-1, 2) / max(radius, 1)


class DynamicPositionBias(nn.Module):
    """DPB(v) for a token grid ``(batch, H, W, dim)``; returns a tensor of the same shape."""

    def __init__(self, dim: int, window: int = 7, hidden_dim: int = 32) -> None:
        super().__init__()
        if window % 2 == 0 or window < 1:
            raise ValueError(f"window: DynamicPositionBias needs an odd positive window, got {window}")
        self.dim, self.window = dim, window
        self.mlp = nn.Sequential(
            nn.Linear(2, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.LayerNorm(hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, dim),
        )
        self.register_buffer("offsets", relative_offsets(window), persistent=False)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute ``offsets`` (not saved in checkpoints: a model built on the meta device needs it rebuilt)."""
        self.offsets.copy_(relative_offsets(self.window))

    def kernel(self) -> Tensor:
        """The position-generated depthwise kernel ``(dim, 1, window, window)``."""
        # the offsets follow the MLP's dtype: a model loaded in half precision rebuilds this buffer in float32
        offsets = self.offsets.to(self.mlp[0].weight.dtype)
        return self.mlp(offsets).t().reshape(self.dim, 1, self.window, self.window)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(f"x: expected a token grid (batch, H, W, {self.dim}), got shape {tuple(x.shape)}")
        grid = x.permute(0, 3, 1, 2)
        bias = F.conv2d(grid, self.kernel().to(x.dtype), padding=self.window // 2, groups=self.dim)
        return bias.permute(0, 2, 3, 1)
