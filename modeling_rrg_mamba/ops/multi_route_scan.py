"""The multi-route selective scan of a Mamba mixer or SS2D, end to end from the tokens (as mamba-ssm's
``mamba_inner_fn`` takes a mixer's weights):

    x_k = SiLU(conv_k(order_k(x)))   (optional per-route causal convolution; else x_k = order_k(x))
    (Delta_k, B_k, C_k) = split(x_proj_k(x_k));   Delta_k = dt_proj_k(Delta_k)
    out = scale * sum_k order_k^{-1}( S6_k(x_k; Delta_k, A_k, B_k, C_k, D_k, dt_bias_k) )  [* SiLU(z)]

Each path moves the data its own way:

* ``triton`` (GPU): the convolution kernel reads ``x`` through the routes' index maps and writes the routes'
  inputs ``(K, batch, L, dim)``; ``x_proj`` / ``dt_proj`` are batched GEMMs over the routes; the scan kernel runs
  all routes in one launch and merges them, with the gate, in token order. Without a convolution (SS2D) nothing is
  gathered at all: the projections commute with the permutation, so they run once on ``x`` in token order and the
  kernel reads every input through the index maps.
* every other path (CPU fused C kernel, PyTorch reference, mamba-ssm): one ``gather`` into ``(batch, K, dim, L)``,
  :func:`~.causal_conv1d.causal_conv1d`, the projections, :func:`~.selective_scan.selective_scan` with one group per
  route, and one ``gather`` back (:func:`~.routes.merge_directions`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .causal_conv1d import causal_conv1d
from .kernels import triton_kernels
from .routes import Routes, gather_directions, merge_directions
from .selective_scan import selective_scan, selective_scan_backend

Tensor = torch.Tensor


def _check_inputs(x: Tensor, routes: Routes, x_proj_weight: Tensor, A: Tensor, conv_weight: Tensor | None) -> None:
    if x.ndim != 3:
        raise ValueError(f"x: expected tokens (batch, length, dim), got shape {tuple(x.shape)}")
    num_routes, dim = len(routes.directions), x.shape[-1]
    if routes.length != x.shape[1]:
        raise ValueError(f"routes: built for {routes.length} tokens, x has {x.shape[1]} (shape {tuple(x.shape)})")
    if x_proj_weight.ndim != 3 or x_proj_weight.shape[0] != num_routes or x_proj_weight.shape[2] != dim:
        raise ValueError(
            f"x_proj_weight: expected ({num_routes}, dt_rank + 2 d_state, {dim}), got {tuple(x_proj_weight.shape)}"
        )
    if A.shape[:2] != (num_routes, dim):
        raise ValueError(f"A: expected ({num_routes}, {dim}, d_state), got {tuple(A.shape)}")
    if conv_weight is not None and conv_weight.shape[:2] != (num_routes, dim):
        raise ValueError(f"conv_weight: expected ({num_routes}, {dim}, width), got {tuple(conv_weight.shape)}")


def multi_route_selective_scan(
    x: Tensor,
    routes: Routes,
    x_proj_weight: Tensor,
    dt_proj_weight: Tensor,
    dt_proj_bias: Tensor,
    A: Tensor,
    D: Tensor | None = None,
    conv_weight: Tensor | None = None,
    conv_bias: Tensor | None = None,
    z: Tensor | None = None,
    scale: float = 1.0,
    backend: str | None = None,
) -> Tensor:
    """The selective scans of ``K`` routes over the tokens ``x`` ``(batch, L, dim)``, merged in token order.

    Args:
        x: tokens ``(batch, L, dim)`` in token order (any strides).
        routes: :class:`~.routes.Routes` of the ``K`` scan directions over the ``L`` tokens.
        x_proj_weight: ``(K, dt_rank + 2 d_state, dim)``; dt_proj_weight ``(K, dim, dt_rank)``; dt_proj_bias
            ``(K, dim)``; A ``(K, dim, d_state)`` (negative); D ``(K, dim)``.
        conv_weight, conv_bias: ``(K, dim, width)`` / ``(K, dim)``: each route's causal depthwise convolution
            (+ SiLU) before its scan, as in the Mamba mixer; ``None`` scans ``x`` as it is (SS2D).
        z: gate ``(batch, L, dim)``: the merged output is multiplied by ``SiLU(z)``.
        scale: factor on the sum over routes (``1 / K`` averages).
        backend: :func:`~.selective_scan.selective_scan_backend`'s ``requested`` (a model config's choice).

    Returns:
        ``(batch, L, dim)`` in ``x``'s dtype.
    """
    _check_inputs(x, routes, x_proj_weight, A, conv_weight)
    path = selective_scan_backend(x.device, backend)
    if path == "triton":
        return _triton_scan(
            x, routes, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, conv_weight, conv_bias, z, scale
        )
    batch, length, dim = x.shape
    num_routes, d_state = A.shape[0], A.shape[-1]
    xs = gather_directions(x, routes)  # (batch, K, dim, L)
    if conv_weight is not None:
        flat_bias = None if conv_bias is None else conv_bias.reshape(-1)
        flat = causal_conv1d(
            xs.reshape(batch, num_routes * dim, length),
            conv_weight.reshape(num_routes * dim, -1),
            flat_bias,
            activation="silu",
            backend=path,
        )
        xs = flat.view_as(xs)
    projected = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.to(xs.dtype))
    dt, B, C = projected.split([dt_proj_weight.shape[-1], d_state, d_state], dim=-2)
    dt = torch.einsum("bkrl,kdr->bkdl", dt, dt_proj_weight.to(xs.dtype))
    y = selective_scan(
        xs.reshape(batch, num_routes * dim, length),
        dt.reshape(batch, num_routes * dim, length),
        A.reshape(num_routes * dim, d_state),
        B.contiguous(),
        C.contiguous(),
        D=None if D is None else D.reshape(-1),
        delta_bias=dt_proj_bias.reshape(-1),
        delta_softplus=True,
        backend=path,
    )
    merged = merge_directions(y.view(batch, num_routes, dim, length), routes, scale)
    return merged if z is None else merged * F.silu(z)


def _triton_scan(x, routes, x_proj_weight, dt_proj_weight, dt_proj_bias, A, D, conv_weight, conv_bias, z, scale):
    """The Triton path (see the module docstring)."""
    kernels = triton_kernels()
    batch, length, dim = x.shape
    num_routes, width = x_proj_weight.shape[:2]
    d_state, dt_rank = A.shape[-1], dt_proj_weight.shape[-1]
    weight = x_proj_weight.to(x.dtype)
    if conv_weight is not None:
        xs = kernels.route_causal_conv1d(x, conv_weight, conv_bias, routes)  # (K, batch, L, dim), step order
        projected = torch.matmul(xs.view(num_routes, batch * length, dim), weight.transpose(1, 2))
        projected = projected.view(num_routes, batch, length, width)
    else:
        xs = x.unsqueeze(0).expand(num_routes, -1, -1, -1)  # every route reads x in token order
        projected = F.linear(x, weight.reshape(num_routes * width, dim))
        projected = projected.view(batch, length, num_routes, width).permute(2, 0, 1, 3)
    dt, B, C = projected.split([dt_rank, d_state, d_state], dim=-1)
    dt = torch.matmul(dt, dt_proj_weight.to(x.dtype).transpose(1, 2).unsqueeze(1))  # (K, batch, L, dim)
    out, _ = kernels.route_selective_scan(
        xs,
        dt,
        A,
        B,
        C,
        routes,
        D=D,
        delta_bias=dt_proj_bias,
        z=z,
        scale=scale,
        token_order=conv_weight is None,
    )
    return out
