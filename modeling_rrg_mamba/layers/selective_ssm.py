"""The selective state-space parameters of one or several scan directions (Mamba's S6 layer).

For direction ``k`` and input ``x`` (after the convolution) the layer computes the input-dependent
``(Delta, B, C) = split(x_proj_k(x))``, ``Delta = softplus(dt_proj_k(Delta) + bias_k)`` and runs the
selective scan with ``A_k = -exp(A_log_k)`` and skip ``D_k`` (RRG-Mamba Eq. 10, the SSM inside SS2D).
All directions are scanned together by :func:`~modeling_rrg_mamba.ops.multi_route_selective_scan` (one Triton
launch on a GPU, one grouped scan elsewhere).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import SELECTIVE_SCAN_BACKENDS, Routes, multi_route_selective_scan

Tensor = torch.Tensor


def _at_least_float32(t: Tensor) -> Tensor:
    """SSM parameters enter the scan in float32 (or float64), whatever the module's dtype."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def resolve_dt_rank(dt_rank: int | str, d_model: int) -> int:
    """``"auto"`` -> ``ceil(d_model / 16)`` as in Mamba."""
    if dt_rank == "auto":
        return math.ceil(d_model / 16)
    if not isinstance(dt_rank, int) or dt_rank < 1:
        raise ValueError(f"dt_rank: expected a positive int or 'auto', got {dt_rank!r}")
    return dt_rank


class SelectiveSSM(nn.Module):
    """Per-direction ``x_proj``, ``dt_proj``, ``A_log`` and ``D``, stacked on a leading direction axis, and the
    multi-route scan that uses them."""

    def __init__(
        self,
        d_inner: int,
        d_state: int = 16,
        dt_rank: int = 16,
        num_directions: int = 1,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        scan_backend: str | None = None,
    ) -> None:
        super().__init__()
        if scan_backend is not None and scan_backend not in SELECTIVE_SCAN_BACKENDS:
            raise ValueError(
                f"selective_scan_backend: expected one of {SELECTIVE_SCAN_BACKENDS} or None, got {scan_backend!r}"
            )
        #: The scan path (:func:`~modeling_rrg_mamba.ops.selective_scan_backend`'s ``requested``); ``None``: the
        #: process setting.
        self.scan_backend = scan_backend
        self.d_inner, self.d_state, self.dt_rank, self.num_directions = d_inner, d_state, dt_rank, num_directions
        self.dt_min, self.dt_max, self.dt_init_floor = dt_min, dt_max, dt_init_floor
        k = num_directions
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner))
        self.dt_proj_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank))
        self.dt_proj_bias = nn.Parameter(torch.empty(k, d_inner))
        self.A_log = nn.Parameter(torch.empty(k, d_inner, d_state))
        self.D = nn.Parameter(torch.empty(k, d_inner))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Mamba's initialisation: S4D-real ``A = -(1..N)``, ``D = 1``, ``Delta`` log-uniform in [dt_min, dt_max]."""
        nn.init.uniform_(self.x_proj_weight, -(self.d_inner**-0.5), self.d_inner**-0.5)
        nn.init.uniform_(self.dt_proj_weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        log_dt = torch.rand_like(self.dt_proj_bias) * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(
            self.dt_min
        )
        dt = log_dt.exp().clamp(min=self.dt_init_floor)
        self.dt_proj_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).expand_as(self.A_log))
        self.D.fill_(1.0)

    def forward(
        self,
        x: Tensor,
        routes: Routes,
        z: Tensor | None = None,
        scale: float = 1.0,
        conv_weight: Tensor | None = None,
        conv_bias: Tensor | None = None,
    ) -> Tensor:
        """Scan the tokens ``x`` ``(batch, length, d_inner)`` along every route (after each route's causal
        convolution ``conv_weight`` ``(directions, d_inner, width)``, if given) and merge them back into token
        order, ``scale`` times their sum, gated by ``SiLU(z)`` if given; returns ``(batch, length, d_inner)``."""
        if x.ndim != 3 or x.shape[-1] != self.d_inner or len(routes.directions) != self.num_directions:
            raise ValueError(
                f"x: expected (batch, length, {self.d_inner}) scanned along {self.num_directions} routes, got shape "
                f"{tuple(x.shape)} and {len(routes.directions)} routes"
            )
        return multi_route_selective_scan(
            x,
            routes,
            self.x_proj_weight,
            self.dt_proj_weight,
            _at_least_float32(self.dt_proj_bias),
            -torch.exp(_at_least_float32(self.A_log)),
            D=_at_least_float32(self.D),
            conv_weight=conv_weight,
            conv_bias=conv_bias,
            z=z,
            scale=scale,
            backend=self.scan_backend,
        )
