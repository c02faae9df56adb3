"""Rotary position embeddings in one and two dimensions (RoFormer; RRG-Mamba Eq. 9's RoPE).

Channel pairs ``(x_i, x_{i + C/2})`` are rotated by ``position * base^(-2i/C)``. In 2-D the channels are split
in two halves, the first rotated by the row index and the second by the column index, so the dot product of
two rotated tokens depends only on their relative offset ``(dh, dw)``.
"""

from __future__ import annotations

import torch
from torch import nn

Tensor = torch.Tensor


def apply_rotary(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate the half-split channel pairs of ``x`` (..., C) by ``angles`` (..., C/2), broadcast over leading dims."""
    first, second = x.chunk(2, dim=-1)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)


def inverse_frequencies(dim: int, base: float) -> Tensor:
    """``base^(-2i/dim)`` for ``i < dim/2``: the rotation speed of each channel pair."""
    return base ** (-torch.arange(0, dim // 2, dtype=torch.float32) / (dim // 2))


class RotaryEmbedding1D(nn.Module):
    """1-D RoPE over the last dimension of ``(batch, length, dim)`` tokens."""

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim: RotaryEmbedding1D needs an even channel count, got {dim}")
        self.dim, self.base = dim, base
        self.register_buffer("inv_freq", inverse_frequencies(dim, base), persistent=False)

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Recompute ``inv_freq`` (not saved in checkpoints: a model built on the meta device needs it rebuilt)."""
        self.inv_freq.copy_(inverse_frequencies(self.dim, self.base))

    def angles(self, positions: Tensor) -> Tensor:
        """``(length,)`` positions -> ``(length, dim/2)`` rotation angles."""
        return positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq

    def forward(self, x: Tensor, positions: Tensor | None = None) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"x: expected last dimension {self.dim}, got shape {tuple(x.shape)}")
        if positions is None:
            positions = torch.arange(x.shape[-2], device=x.device)
        return apply_rotary(x, self.angles(positions))


class RotaryEmbedding2D(nn.Module):
    """2-D RoPE: half the channels rotate with the row index, half with the column index."""

    def __init__(self, dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"dim: RotaryEmbedding2D needs a channel count divisible by 4, got {dim}")
        self.dim = dim
        self.axis = RotaryEmbedding1D(dim // 2, base)

    def angles(self, rows: Tensor, cols: Tensor) -> Tensor:
        """Per-token angles ``(length, dim/2)`` from row and column indices ``(length,)``."""
        return torch.cat([self.axis.angles(rows), self.axis.angles(cols)], dim=-1)

    def forward(self, x: Tensor, rows: Tensor | None = None, cols: Tensor | None = None) -> Tensor:
        """Rotate ``x`` given as a grid ``(batch, H, W, dim)``, or as tokens ``(batch, L, dim)`` with ``rows`` and
        ``cols``."""
        if x.shape[-1] != self.dim:
            raise ValueError(f"x: expected last dimension {self.dim}, got shape {tuple(x.shape)}")
        if x.ndim == 4:
            height, width = x.shape[1:3]
            grid_rows, grid_cols = torch.meshgrid(
                torch.arange(height, device=x.device), torch.arange(width, device=x.device), indexing="ij"
            )
            return apply_rotary(x, self.angles(grid_rows.reshape(-1), grid_cols.reshape(-1)).view(height, width, -1))
        if rows is None or cols is None:
            raise ValueError(f"rows/cols: token input of shape {tuple(x.shape)} needs row and column indices")
        return apply_rotary(x, self.angles(rows, cols))
