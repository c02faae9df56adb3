"""Per-route depthwise causal convolution + SiLU in Triton, reading the tokens through the routes' index maps.

The Mamba mixer convolves each route's sequence in its own scan order before the selective scan (Vim / EMRRG, one
convolution per route; RRG-Mamba Eq. 9's DWConv in 1-D):

    xs[k, b, t, d] = SiLU( bias[k, d] + sum_j weight[k, d, j] * x[b, pos_k(t - W + 1 + j), d] )    (0 before t = 0)

The forward reads ``x`` ``(batch, L, dim)`` in token order through ``pos_k`` (:mod:`.route_index`) and writes the
routes' convolved inputs ``(K, batch, L, dim)`` in step order, which is what the per-route ``x_proj`` GEMM and the
scan (:mod:`.selective_scan_routes`) read: the only per-route copy the mixer makes is this one, which it needs. The
backward is token-major: a program owns a tile of token positions, finds each route's step of them with the inverse
map, recomputes the pre-activations of the ``W`` outputs each token feeds, and sums the routes' gradients into
``dx`` in registers (no scatter, no atomics); the weight and bias gradients are per-program partial sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # the module is imported only where Triton is installed (see the package docstring)
    import triton
    import triton.language as tl
except ImportError as error:  # pragma: no cover - guarded by the callers
    raise ImportError("modeling_rrg_mamba.ops.triton needs the triton package") from error

from ..routes import Routes
from .route_index import route_position, route_step

Tensor = torch.Tensor


@triton.jit
def _route_tokens(
    x_base,
    s,
    length,
    height,
    width,
    cls_position,
    offs_d,
    mask_td,
    sx_l,
    k: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
):
    """Tokens at steps ``s`` of route ``k``, ``(BLOCK_T, BLOCK_D)`` in fp32, 0 outside the sequence."""
    inside = (s >= 0) & (s < length)
    clamped = tl.minimum(tl.maximum(s, 0), length - 1)
    pos = route_position(
        clamped, length, height, width, cls_position, (TRANSPOSE >> k) & 1, (REVERSE >> k) & 1, (MIDDLE_CLS >> k) & 1
    ).to(tl.int64)
    mask = inside[:, None] & mask_td
    return tl.load(x_base + pos[:, None] * sx_l + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _route_conv_fwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    out_ptr,
    batch,
    length,
    dim,
    height,
    width,
    cls_position,
    sx_b,
    sx_l,
    K: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Grid ``(cdiv(L, BLOCK_T), cdiv(dim, BLOCK_D), batch)``; ``out`` contiguous ``(K, batch, L, dim)``."""
    t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    b = tl.program_id(2).to(tl.int64)
    mask_d = offs_d < dim
    mask = (t < length)[:, None] & mask_d[None, :]
    x_base = x_ptr + b * sx_b
    for k in tl.static_range(K):
        acc = tl.zeros((BLOCK_T, BLOCK_D), tl.float32)
        if HAS_BIAS:
            acc += tl.load(bias_ptr + k * dim + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
        for j in tl.static_range(WIDTH):
            tokens = _route_tokens(
                x_base,
                t - (WIDTH - 1) + j,
                length,
                height,
                width,
                cls_position,
                offs_d,
                mask,
                sx_l,
                k,
                TRANSPOSE,
                REVERSE,
                MIDDLE_CLS,
            )
            w = tl.load(w_ptr + (k * dim + offs_d) * WIDTH + j, mask=mask_d, other=0.0).to(tl.float32)
            acc += tokens * w[None, :]
        if SILU:
            acc = acc * tl.sigmoid(acc)
        offsets = ((k * batch + b) * length + t[:, None]) * dim + offs_d[None, :]
        tl.store(out_ptr + offsets, acc.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _route_conv_bwd_kernel(
    x_ptr,
    w_ptr,
    bias_ptr,
    gout_ptr,
    dx_ptr,
    dw_ptr,
    dbias_ptr,
    batch,
    length,
    dim,
    height,
    width,
    cls_position,
    sx_b,
    sx_l,
    K: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Grid ``(cdiv(L, BLOCK_T), cdiv(dim, BLOCK_D), batch)`` over token tiles. ``dx`` contiguous ``(batch, L,
    dim)``; ``dw`` ``(batch, token tiles, K, dim, WIDTH)`` and ``dbias`` ``(batch, token tiles, K, dim)`` partial."""
    pid_l = tl.program_id(0)
    tiles = tl.num_programs(0)
    tokens = pid_l * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    b = tl.program_id(2).to(tl.int64)
    mask_d = offs_d < dim
    mask = (tokens < length)[:, None] & mask_d[None, :]
    x_base = x_ptr + b * sx_b
    x_here = tl.load(x_base + tokens[:, None].to(tl.int64) * sx_l + offs_d[None, :], mask=mask, other=0.0)
    x_here = x_here.to(tl.float32)
    dx = tl.zeros((BLOCK_T, BLOCK_D), tl.float32)
    for k in tl.static_range(K):
        s = route_step(
            tl.minimum(tokens, length - 1),
            length,
            height,
            width,
            cls_position,
            (TRANSPOSE >> k) & 1,
            (REVERSE >> k) & 1,
            (MIDDLE_CLS >> k) & 1,
        )
        bias = tl.zeros((BLOCK_D,), tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + k * dim + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        part = ((b * tiles + pid_l) * K + k) * dim + offs_d
        for j in tl.static_range(WIDTH):
            # The token is tap j of the output at step r = s + W - 1 - j: recompute that output's pre-activation.
            r = s + (WIDTH - 1) - j
            mask_r = (r < length)[:, None] & mask
            pre = tl.zeros((BLOCK_T, BLOCK_D), tl.float32) + bias[None, :]
            for i in tl.static_range(WIDTH):
                taps = _route_tokens(
                    x_base,
                    r - (WIDTH - 1) + i,
                    length,
                    height,
                    width,
                    cls_position,
                    offs_d,
                    mask_r,
                    sx_l,
                    k,
                    TRANSPOSE,
                    REVERSE,
                    MIDDLE_CLS,
                )
                w_i = tl.load(w_ptr + (k * dim + offs_d) * WIDTH + i, mask=mask_d, other=0.0).to(tl.float32)
                pre += taps * w_i[None, :]
            r_rows = tl.minimum(r, length - 1).to(tl.int64)
            grad = tl.load(
                gout_ptr + ((k * batch + b) * length + r_rows[:, None]) * dim + offs_d[None, :], mask=mask_r, other=0.0
            ).to(tl.float32)
            if SILU:
                sig = tl.sigmoid(pre)
                grad = grad * sig * (1.0 + pre * (1.0 - sig))
            w_j = tl.load(w_ptr + (k * dim + offs_d) * WIDTH + j, mask=mask_d, other=0.0).to(tl.float32)
            dx += grad * w_j[None, :]
            tl.store(dw_ptr + part * WIDTH + j, tl.sum(grad * x_here, axis=0), mask=mask_d)
            if j == WIDTH - 1:  # r = s: each output counted once over all tokens
                tl.store(dbias_ptr + part, tl.sum(grad, axis=0), mask=mask_d)
    offsets = (b * length + tokens[:, None].to(tl.int64)) * dim + offs_d[None, :]
    tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# Tile: the largest that compiles for sm_90 without register spills (scripts/compile_triton_kernels.py).
_BLOCK_T = 16
_BLOCK_D = 32
_NUM_WARPS = 4


def _launch_arguments(x: Tensor, routes: Routes) -> tuple[tuple, list, dict]:
    """(grid, size/stride arguments, route constants) shared by both kernels."""
    batch, length, dim = x.shape
    transpose, reverse, middle_cls = routes.flags()
    height, width = routes.grid if routes.grid is not None else (1, length)
    cls_position = -1 if routes.cls_position is None else routes.cls_position
    block_d = min(_BLOCK_D, triton.next_power_of_2(dim))
    grid = (triton.cdiv(length, _BLOCK_T), triton.cdiv(dim, block_d), batch)
    sizes = [batch, length, dim, height, width, cls_position, x.stride(0), x.stride(1)]
    constants = dict(
        K=len(routes.directions),
        TRANSPOSE=transpose,
        REVERSE=reverse,
        MIDDLE_CLS=middle_cls,
        BLOCK_T=_BLOCK_T,
        BLOCK_D=block_d,
    )
    return grid, sizes, constants


class _RouteCausalConv1d(torch.autograd.Function):
    """Autograd wrapper: saves the inputs; the backward recomputes the pre-activations."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, routes: Routes, silu: bool) -> Tensor:
        x = x if x.stride(-1) == 1 else x.contiguous()
        weight = weight.contiguous()
        bias = None if bias is None else bias.contiguous()
        batch, length, dim = x.shape
        out = x.new_empty(len(routes.directions), batch, length, dim)
        grid, sizes, constants = _launch_arguments(x, routes)
        _route_conv_fwd_kernel[grid](
            x,
            weight,
            bias,
            out,
            *sizes,
            **constants,
            WIDTH=weight.shape[-1],
            HAS_BIAS=bias is not None,
            SILU=silu,
            num_warps=_NUM_WARPS,
        )
        ctx.save_for_backward(x, weight, bias)
        ctx.routes, ctx.silu = routes, silu
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, weight, bias = ctx.saved_tensors
        K, _, width = weight.shape
        batch, length, dim = x.shape
        grid, sizes, constants = _launch_arguments(x, ctx.routes)
        dx = torch.empty(batch, length, dim, device=x.device, dtype=x.dtype)
        dw_part = torch.empty(batch, grid[0], K, dim, width, device=x.device, dtype=torch.float32)
        dbias_part = torch.empty(batch, grid[0], K, dim, device=x.device, dtype=torch.float32)
        _route_conv_bwd_kernel[grid](
            x,
            weight,
            bias,
            grad_out.contiguous(),
            dx,
            dw_part,
            dbias_part,
            *sizes,
            **constants,
            WIDTH=width,
            HAS_BIAS=bias is not None,
            SILU=ctx.silu,
            num_warps=_NUM_WARPS,
        )
        dbias = None if bias is None else dbias_part.sum((0, 1)).to(bias.dtype)
        return dx, dw_part.sum((0, 1)).to(weight.dtype), dbias, None, None


def route_causal_conv1d(
    x: Tensor, weight: Tensor, bias: Tensor | None, routes: Routes, activation: str | None = "silu"
) -> Tensor:
    """Each route's depthwise causal convolution (+ SiLU) of the tokens ``x`` ``(batch, L, dim)`` in its scan order.

    ``weight`` ``(K, dim, W)``, ``bias`` ``(K, dim)``; returns ``(K, batch, L, dim)`` in ``x``'s dtype, route ``k``'s
    rows in its step order.
    """
    return _RouteCausalConv1d.apply(x, weight, bias, routes, activation is not None)


def route_causal_conv1d_ref(
    x: Tensor, weight: Tensor, bias: Tensor | None, routes: Routes, activation: str | None = "silu"
) -> Tensor:
    """Plain-PyTorch reference of :func:`route_causal_conv1d`: gather each route, ``conv1d``, SiLU."""
    compute = torch.promote_types(x.dtype, torch.float32)
    outputs = []
    for k in range(weight.shape[0]):
        sequence = x[:, routes.order[k]].transpose(1, 2).to(compute)  # (batch, dim, L) in step order
        padded = F.pad(sequence, (weight.shape[-1] - 1, 0))
        conv_bias = None if bias is None else bias[k].to(compute)
        y = F.conv1d(padded, weight[k].unsqueeze(1).to(compute), conv_bias, groups=x.shape[-1])
        outputs.append(y if activation is None else F.silu(y))
    return torch.stack(outputs).transpose(2, 3).to(x.dtype)
