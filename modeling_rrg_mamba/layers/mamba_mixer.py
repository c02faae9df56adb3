"""The Mamba mixer with configurable scan directions (Mamba, Gu & Dao 2023, Fig. 3; Vim / EMRRG's multi-route form).

    [x | z] = in_proj(h);   x_k = SiLU(DWConv_k(order_k(x)));   y_k = S6_k(x_k)
    out = out_proj( mean_k order_k^{-1}(y_k)  *  SiLU(z) )

With ``directions=("forward",)`` this is exactly Mamba's block mixer, parameter for parameter the same computation
as transformers' ``MambaMixer``. With several directions it is the Vim / EMRRG mixer: ``in_proj`` and ``out_proj``
shared, each direction with its own convolution and S6 parameters, outputs averaged. Everything between the two
projections (route orders, convolutions, scans, average, gate) is one call of
:func:`~modeling_rrg_mamba.ops.multi_route_selective_scan` through :class:`~.selective_ssm.SelectiveSSM`, the core
the mixer shares with :class:`~.ss2d.SS2D`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..ops import DIRECTIONS, scan_routes
from .selective_ssm import SelectiveSSM, resolve_dt_rank

Tensor = torch.Tensor


class MambaMixer(nn.Module):
    """Mamba mixer over ``(batch, length, d_model)`` tokens, in one or several scan directions."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        directions: Sequence[str] = ("forward",),
        bias: bool = False,
        conv_bias: bool = True,
        layer_idx: int | None = None,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        directions = tuple(directions)
        unknown = [d for d in directions if d not in DIRECTIONS]
        if not directions or unknown:
            raise ValueError(f"directions: expected a non-empty subset of {DIRECTIONS}, got {directions}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.directions, self.layer_idx = directions, layer_idx
        k = len(directions)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        # One depthwise causal convolution per direction, stored as a single grouped convolution.
        self.conv1d = nn.Conv1d(
            k * self.d_inner, k * self.d_inner, d_conv, groups=k * self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.ssm = SelectiveSSM(
            self.d_inner, d_state, resolve_dt_rank(dt_rank, d_model), num_directions=k, scan_backend=scan_backend
        )
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def forward(
        self, hidden_states: Tensor, grid: tuple[int, int] | None = None, cls_position: int | None = None
    ) -> Tensor:
        """Mix ``hidden_states`` ``(batch, length, d_model)``; ``grid=(H, W)`` is needed by the 2-D directions, and
        ``cls_position`` marks a token outside the grid (Vim's middle class token)."""
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(
                f"hidden_states: expected (batch, length, {self.d_model}), got shape {tuple(hidden_states.shape)}"
            )
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        routes = scan_routes(self.directions, hidden_states.shape[1], grid, cls_position, hidden_states.device)
        k = len(self.directions)
        conv_weight = self.conv1d.weight.view(k, self.d_inner, self.d_conv)
        conv_bias = None if self.conv1d.bias is None else self.conv1d.bias.view(k, self.d_inner)
        y = self.ssm(x, routes, z=z, scale=1.0 / k, conv_weight=conv_weight, conv_bias=conv_bias)
        return self.out_proj(y)
