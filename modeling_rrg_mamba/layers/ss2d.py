"""SS2D: VMamba's 2-D selective scan, used by RRG-Mamba's GDLM (Eq. 9-11).

    [x | z] = in_proj(v);   x = SiLU(DWConv2d(x))  (+ 2-D RoPE, Eq. 9)
    y = LN( sum_k order_k^{-1}( S6_k(order_k(x)) ) )        k in {row, col, row reversed, col reversed}
    out = out_proj( y * SiLU(z) )                            (gate branch, Eq. 10-11)

Each of the four routes over the (H, W) grid has its own ``x_proj`` / ``dt_proj`` / ``A`` / ``D``; the four
scans run together (:func:`~modeling_rrg_mamba.ops.multi_route_selective_scan`: on a GPU one Triton launch that reads
the grid through the routes' index maps, no gathered copy) and their outputs are summed back onto the grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import GRID_DIRECTIONS, scan_routes
from .rotary import RotaryEmbedding2D
from .selective_ssm import SelectiveSSM, resolve_dt_rank

Tensor = torch.Tensor


class SS2D(nn.Module):
    """2-D selective scan block over a token grid ``(batch, H, W, d_model)``."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 3,
        dt_rank: int | str = "auto",
        use_rope: bool = True,
        bias: bool = False,
        conv_bias: bool = True,
        rope_base: float = 10000.0,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        if d_conv % 2 == 0:
            raise ValueError(f"d_conv: SS2D's 2-D convolution needs an odd kernel size, got {d_conv}")
        self.d_model, self.d_inner = d_model, expand * d_model
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv2d = nn.Conv2d(
            self.d_inner, self.d_inner, d_conv, padding=d_conv // 2, groups=self.d_inner, bias=conv_bias
        )
        self.rope = RotaryEmbedding2D(self.d_inner, rope_base) if use_rope else None
        self.ssm = SelectiveSSM(
            self.d_inner,
            d_state,
            resolve_dt_rank(dt_rank, d_model),
            num_directions=len(GRID_DIRECTIONS),
            scan_backend=scan_backend,
        )
        self.out_norm = nn.LayerNorm(self.d_inner)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def scan(self, x: Tensor) -> Tensor:
        """The four-route selective scan of a grid ``(batch, H, W, d_inner)``, summed back onto the grid."""
        batch, height, width, dim = x.shape
        tokens = x.reshape(batch, height * width, dim)
        routes = scan_routes(GRID_DIRECTIONS, height * width, (height, width), device=x.device)
        return self.ssm(tokens, routes).reshape(batch, height, width, dim)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[-1] != self.d_model:
            raise ValueError(f"x: expected a token grid (batch, H, W, {self.d_model}), got shape {tuple(x.shape)}")
        inner, gate = self.in_proj(x).chunk(2, dim=-1)
        inner = F.silu(self.conv2d(inner.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        if self.rope is not None:
            inner = self.rope(inner)
        return self.out_proj(self.out_norm(self.scan(inner)) * F.silu(gate))
