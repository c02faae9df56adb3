"""Multi-route selective scan in Triton: every scan route of one mixer in one launch, forward and backward.

For route ``k`` (of ``K``), step ``t``, channel ``d`` and state ``n`` (RRG-Mamba Eq. 10, Mamba's S6):

    Delta_t = softplus(delta_t + bias_k)          h_t = exp(Delta_t A_k) h_{t-1} + Delta_t B_t u_t
    y_t = C_t . h_t + D_k u_t                     out[pos_k(t)] += scale * y_t        (merged routes)
    out = out * SiLU(z)                           (the gate, in token order, after the merge)

``pos_k`` is the route's token order (:mod:`.route_index`), computed in the kernel: no gathered copy of the sequence
is made, and the routes' outputs are summed in the kernel, in fp32, deterministically (one program owns a block of
channels of one sequence and walks all ``K`` routes in turn). Inputs are laid out ``(K, batch, L, dim)`` (``u``,
``delta``) and ``(K, batch, L, d_state)`` (``B``, ``C``), any strides: either in each route's step order (the Mamba
mixer's per-route convolution outputs) or, with ``token_order=True``, in token order (SS2D: one input for all routes,
``x_proj`` applied before the permutation, which it commutes with). bf16 / fp16 / fp32 inputs, fp32 state and sums.

Design for the short sequences of vision backbones (L of 50-1,600): a program per (channel block, sequence) walks
the sequence in chunks of ``BLOCK_T`` steps; inside a chunk the recurrence is a parallel associative scan over
``(BLOCK_T, BLOCK_D, N)`` registers, so every load is a ``BLOCK_T x BLOCK_D`` tile rather than one step. The
backward recomputes: it re-runs the forward, keeping only the state at each chunk start (a transient
``(batch, dim, L / BLOCK_T, N)`` fp32 buffer, nothing saved between forward and backward but the inputs), then walks
the chunks in reverse, recomputing each chunk's states and scanning the adjoint ``g_t = exp(Delta_{t+1} A) g_{t+1} +
C_t gy_t`` backwards, with ``exp(Delta_t A) h_{t-1} = h_t - Delta_t B_t u_t`` (no division). Gradients that sum
over channels (B, C) or sequences (A, D, bias) are written as per-program partial sums and added afterwards (no
atomics: results are bitwise repeatable).

:func:`route_selective_scan` is the op (autograd included); :func:`route_selective_scan_ref` its plain-PyTorch
reference, a step-by-step loop.
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
from .route_index import route_position

Tensor = torch.Tensor


@triton.jit
def _linear_combine(a_left, b_left, a_right, b_right):
    """Composition of two steps of ``h -> a h + b`` (the associative operator of the linear recurrence)."""
    return a_left * a_right, b_left * a_right + b_right


@triton.jit
def _softplus(x):
    return tl.where(x > 20.0, x, tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x))))


@triton.jit
def _rows(
    t,
    length,
    height,
    width,
    cls_position,
    k: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    TOKEN_ORDER: tl.constexpr,
):
    """For steps ``t`` of route ``k``: (token positions, rows of the route's inputs), both int64."""
    clamped = tl.minimum(tl.maximum(t, 0), length - 1)  # padded steps of the last chunk: any valid index, masked
    pos = route_position(
        clamped, length, height, width, cls_position, (TRANSPOSE >> k) & 1, (REVERSE >> k) & 1, (MIDDLE_CLS >> k) & 1
    ).to(tl.int64)
    if TOKEN_ORDER:
        row = pos
    else:
        row = clamped.to(tl.int64)
    return pos, row


@triton.jit
def _chunk_delta(dt_ptr, row, offs_d, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(Delta, delta + bias) of a ``(BLOCK_T, BLOCK_D)`` tile; Delta is 0 outside ``mask`` (an identity step)."""
    raw = tl.load(dt_ptr + row[:, None] + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        raw = raw + bias[None, :]
    if SOFTPLUS:
        delta = _softplus(raw)
    else:
        delta = raw
    return tl.where(mask, delta, 0.0), raw


@triton.jit
def _chunk_states(u, delta, A, Bt, h0):
    """States ``h_t`` ``(BLOCK_T, BLOCK_D, N)`` of one chunk from the state ``h0`` before it, and ``Delta B u``."""
    decay = tl.exp(delta[:, :, None] * A[None, :, :])
    drive = (delta * u)[:, :, None] * Bt[:, None, :]
    decay_prod, partial = tl.associative_scan((decay, drive), 0, _linear_combine)
    return decay_prod * h0[None, :, :] + partial, drive


@triton.jit
def _last_row(tile, steps, LAST: tl.constexpr):
    """Row ``LAST`` of a ``(BLOCK_T, ...)`` register tile."""
    return tl.sum(tl.where(steps[:, None, None] == LAST, tile, 0.0), axis=0)


@triton.jit
def _load_rows(base, rows, row_stride, cols, mask):
    """The fp32 tile ``base[rows, cols]`` (a contiguous last axis), 0 outside ``mask``."""
    return tl.load(base + rows[:, None] * row_stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _route_parameters(
    A_ptr, D_ptr, bias_ptr, k, dim, d_state, offs_d, offs_n, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr
):
    """Route ``k``'s ``A`` ``(BLOCK_D, N)``, D skip and Delta bias ``(BLOCK_D,)`` in fp32 (zeros where absent)."""
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n[None, :] < d_state)
    A = tl.load(A_ptr + (k * dim + offs_d[:, None]) * d_state + offs_n[None, :], mask=mask_dn, other=0.0)
    skip = tl.zeros_like(offs_d).to(tl.float32)
    if HAS_D:
        skip = tl.load(D_ptr + k * dim + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    bias = tl.zeros_like(offs_d).to(tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + k * dim + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    return A.to(tl.float32), skip, bias


@triton.jit
def _chunk_layout(
    t,
    length,
    height,
    width,
    cls_position,
    d_state,
    offs_n,
    mask_d,
    k: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    TOKEN_ORDER: tl.constexpr,
):
    """Steps ``t`` of route ``k``: (token positions, input rows, ``(BLOCK_T, BLOCK_D)`` and ``(BLOCK_T, N)`` masks)."""
    mask_t = t < length
    pos, row = _rows(t, length, height, width, cls_position, k, TRANSPOSE, REVERSE, MIDDLE_CLS, TOKEN_ORDER)
    return pos, row, mask_t[:, None] & mask_d[None, :], mask_t[:, None] & (offs_n[None, :] < d_state)


@triton.jit
def _routed_offsets(route, b, pos, row, s_k, s_b, s_l, offs_d, MERGE: tl.constexpr):
    """Offsets of a ``(BLOCK_T, BLOCK_D)`` tile of a routed tensor (``out``, its gradient, ``z``): merged, one
    tensor in token order (``pos``); unmerged, the route's own rows (``row``)."""
    if MERGE:
        offsets = b * s_b + pos[:, None] * s_l + offs_d[None, :]
    else:
        offsets = route * s_k + b * s_b + row[:, None] * s_l + offs_d[None, :]
    return offsets


@triton.jit
def _route_scan_fwd_kernel(
    u_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    bias_ptr,
    z_ptr,
    acc_ptr,
    out_ptr,
    last_ptr,
    batch,
    length,
    dim,
    d_state,
    height,
    width,
    cls_position,
    scale,
    su_k,
    su_b,
    su_l,
    sdt_k,
    sdt_b,
    sdt_l,
    sB_k,
    sB_b,
    sB_l,
    sC_k,
    sC_b,
    sC_l,
    sz_k,
    sz_b,
    sz_l,
    so_k,
    so_b,
    so_l,
    K: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    TOKEN_ORDER: tl.constexpr,
    MERGE: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_Z: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid ``(cdiv(dim, BLOCK_D), batch)``. The channel axis of every tensor is contiguous (stride 1)."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n[None, :] < d_state)
    steps = tl.arange(0, BLOCK_T)
    for k in tl.static_range(K):
        route = b * 0 + k  # int64, so that route * stride cannot overflow int32 on large batches
        A, skip, bias = _route_parameters(A_ptr, D_ptr, bias_ptr, k, dim, d_state, offs_d, offs_n, HAS_D, HAS_BIAS)
        u_base = u_ptr + route * su_k + b * su_b
        dt_base = dt_ptr + route * sdt_k + b * sdt_b
        B_base = B_ptr + route * sB_k + b * sB_b
        C_base = C_ptr + route * sC_k + b * sC_b
        h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        for start in range(0, length, BLOCK_T):
            pos, row, mask, mask_tn = _chunk_layout(
                start + steps,
                length,
                height,
                width,
                cls_position,
                d_state,
                offs_n,
                mask_d,
                k,
                TRANSPOSE,
                REVERSE,
                MIDDLE_CLS,
                TOKEN_ORDER,
            )
            delta, _ = _chunk_delta(dt_base, row * sdt_l, offs_d, mask, bias, HAS_BIAS, SOFTPLUS)
            u = _load_rows(u_base, row, su_l, offs_d, mask)
            states, _ = _chunk_states(u, delta, A, _load_rows(B_base, row, sB_l, offs_n, mask_tn), h)
            h = _last_row(states, steps, BLOCK_T - 1)
            y = tl.sum(states * _load_rows(C_base, row, sC_l, offs_n, mask_tn)[:, None, :], axis=2)
            y += u * skip[None, :]
            offsets = _routed_offsets(route, b, pos, row, so_k, so_b, so_l, offs_d, MERGE)
            if MERGE:
                y = y * scale
                if k > 0:
                    y += tl.load(acc_ptr + offsets, mask=mask, other=0.0)
            if MERGE and k < K - 1:
                tl.store(acc_ptr + offsets, y, mask=mask)
            else:  # the last route of a merge, or any unmerged route: gate and write out
                if HAS_Z:
                    z_offsets = _routed_offsets(route, b, pos, row, sz_k, sz_b, sz_l, offs_d, MERGE)
                    z = tl.load(z_ptr + z_offsets, mask=mask, other=0.0).to(tl.float32)
                    y = y * z * tl.sigmoid(z)
                tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
        last_offsets = ((k * batch + b) * dim + offs_d[:, None]) * d_state + offs_n[None, :]
        tl.store(last_ptr + last_offsets, h, mask=mask_dn)
        if MERGE:
            tl.debug_barrier()  # the next route reads the sums this one wrote, from other threads


@triton.jit
def _route_scan_bwd_kernel(
    u_ptr,
    dt_ptr,
    A_ptr,
    B_ptr,
    C_ptr,
    D_ptr,
    bias_ptr,
    z_ptr,
    gout_ptr,
    glast_ptr,
    chunk_ptr,
    ysum_ptr,
    du_ptr,
    ddt_ptr,
    dA_ptr,
    dB_ptr,
    dC_ptr,
    dD_ptr,
    dbias_ptr,
    dz_ptr,
    batch,
    length,
    dim,
    d_state,
    height,
    width,
    cls_position,
    scale,
    num_chunks,
    su_k,
    su_b,
    su_l,
    sdt_k,
    sdt_b,
    sdt_l,
    sB_k,
    sB_b,
    sB_l,
    sC_k,
    sC_b,
    sC_l,
    sz_k,
    sz_b,
    sz_l,
    so_k,
    so_b,
    so_l,
    K: tl.constexpr,
    TRANSPOSE: tl.constexpr,
    REVERSE: tl.constexpr,
    MIDDLE_CLS: tl.constexpr,
    TOKEN_ORDER: tl.constexpr,
    MERGE: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    HAS_Z: tl.constexpr,
    SOFTPLUS: tl.constexpr,
    HAS_GRAD_LAST: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """Grid ``(cdiv(dim, BLOCK_D), batch)``. Gradient layouts: ``du``/``ddt`` like ``u``'s logical shape,
    contiguous ``(K, batch, L, dim)``; ``dB``/``dC`` partial ``(channel blocks, K, batch, L, N)``; ``dA``
    ``(batch, K, dim, N)``, ``dD``/``dbias`` ``(batch, K, dim)`` partial over the batch; ``dz`` like ``z``,
    contiguous; ``ysum`` fp32 ``(batch, L, dim)`` scratch; ``chunk`` fp32 ``(batch, channel blocks, chunks,
    BLOCK_D, BLOCK_N)`` scratch for the states at chunk starts."""
    pid_d = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    num_blocks = tl.num_programs(0)
    offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    mask_d = offs_d < dim
    mask_dn = mask_d[:, None] & (offs_n[None, :] < d_state)
    steps = tl.arange(0, BLOCK_T)
    tile = tl.arange(0, BLOCK_D)[:, None] * BLOCK_N + offs_n[None, :]  # a (BLOCK_D, BLOCK_N) state in the scratch
    chunk_base = chunk_ptr + (b * num_blocks + pid_d) * num_chunks * BLOCK_D * BLOCK_N
    for k in tl.static_range(K):
        route = b * 0 + k  # int64, so that route * stride cannot overflow int32 on large batches
        A, skip, bias = _route_parameters(A_ptr, D_ptr, bias_ptr, k, dim, d_state, offs_d, offs_n, HAS_D, HAS_BIAS)
        u_base = u_ptr + route * su_k + b * su_b
        dt_base = dt_ptr + route * sdt_k + b * sdt_b
        B_base = B_ptr + route * sB_k + b * sB_b
        C_base = C_ptr + route * sC_k + b * sC_b
        # Pass 1: the forward again, keeping the state at each chunk start (and the routes' sum for dz).
        h = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        for c in range(0, num_chunks):
            tl.store(chunk_base + c * BLOCK_D * BLOCK_N + tile, h)
            pos, row, mask, mask_tn = _chunk_layout(
                c * BLOCK_T + steps,
                length,
                height,
                width,
                cls_position,
                d_state,
                offs_n,
                mask_d,
                k,
                TRANSPOSE,
                REVERSE,
                MIDDLE_CLS,
                TOKEN_ORDER,
            )
            delta, _ = _chunk_delta(dt_base, row * sdt_l, offs_d, mask, bias, HAS_BIAS, SOFTPLUS)
            u = _load_rows(u_base, row, su_l, offs_d, mask)
            states, _ = _chunk_states(u, delta, A, _load_rows(B_base, row, sB_l, offs_n, mask_tn), h)
            h = _last_row(states, steps, BLOCK_T - 1)
            if MERGE and HAS_Z:
                y = tl.sum(states * _load_rows(C_base, row, sC_l, offs_n, mask_tn)[:, None, :], axis=2)
                y += u * skip[None, :]
                offsets = b * so_b + pos[:, None] * so_l + offs_d[None, :]
                if k > 0:
                    y += tl.load(ysum_ptr + offsets, mask=mask, other=0.0)
                tl.store(ysum_ptr + offsets, y, mask=mask)
        tl.debug_barrier()  # chunk-start states (and sums) written by other threads
        # Pass 2: the chunks in reverse, the adjoint scanned backwards.
        g = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        if HAS_GRAD_LAST:
            last_offsets = ((k * batch + b) * dim + offs_d[:, None]) * d_state + offs_n[None, :]
            g = tl.load(glast_ptr + last_offsets, mask=mask_dn, other=0.0).to(tl.float32)
        dA_acc = tl.zeros((BLOCK_D, BLOCK_N), tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), tl.float32)
        dbias_acc = tl.zeros((BLOCK_D,), tl.float32)
        for i in range(0, num_chunks):
            c = num_chunks - 1 - i
            t = c * BLOCK_T + steps
            pos, row, mask, mask_tn = _chunk_layout(
                t,
                length,
                height,
                width,
                cls_position,
                d_state,
                offs_n,
                mask_d,
                k,
                TRANSPOSE,
                REVERSE,
                MIDDLE_CLS,
                TOKEN_ORDER,
            )
            delta, raw = _chunk_delta(dt_base, row * sdt_l, offs_d, mask, bias, HAS_BIAS, SOFTPLUS)
            u = _load_rows(u_base, row, su_l, offs_d, mask)
            Bt = _load_rows(B_base, row, sB_l, offs_n, mask_tn)
            Ct = _load_rows(C_base, row, sC_l, offs_n, mask_tn)
            h0 = tl.load(chunk_base + c * BLOCK_D * BLOCK_N + tile)
            states, drive = _chunk_states(u, delta, A, Bt, h0)
            # Gradient reaching y_t, and the gate's own gradient where the routes are not merged.
            grad_offsets = _routed_offsets(route, b, pos, row, so_k, so_b, so_l, offs_d, MERGE)
            grad = tl.load(gout_ptr + grad_offsets, mask=mask, other=0.0).to(tl.float32)
            if MERGE:
                grad = grad * scale
            if HAS_Z:
                z_offsets = _routed_offsets(route, b, pos, row, sz_k, sz_b, sz_l, offs_d, MERGE)
                z = tl.load(z_ptr + z_offsets, mask=mask, other=0.0).to(tl.float32)
                sig = tl.sigmoid(z)
                if not MERGE:
                    y = tl.sum(states * Ct[:, None, :], axis=2) + u * skip[None, :]
                    dz = grad * y * sig * (1.0 + z * (1.0 - sig))
                    tl.store(dz_ptr + grad_offsets, dz.to(dz_ptr.dtype.element_ty), mask=mask)
                grad = grad * z * sig
            # exp(Delta_{t+1} A): the decay that carries g_{t+1} back to step t (1 past the end).
            t_next = t + 1
            mask_next = (t_next < length)[:, None] & mask_d[None, :]
            _, row_next = _rows(
                t_next, length, height, width, cls_position, k, TRANSPOSE, REVERSE, MIDDLE_CLS, TOKEN_ORDER
            )
            delta_next, _ = _chunk_delta(dt_base, row_next * sdt_l, offs_d, mask_next, bias, HAS_BIAS, SOFTPLUS)
            decay_next = tl.exp(delta_next[:, :, None] * A[None, :, :])
            adjoint_drive = grad[:, :, None] * Ct[:, None, :]
            carry_prod, partial = tl.associative_scan((decay_next, adjoint_drive), 0, _linear_combine, reverse=True)
            adjoint = partial + carry_prod * g[None, :, :]
            g = _last_row(adjoint, steps, 0)
            through_decay = states - drive  # exp(Delta_t A) h_{t-1}
            du = tl.sum(adjoint * Bt[:, None, :], axis=2) * delta + grad * skip[None, :]
            ddelta = tl.sum(adjoint * (u[:, :, None] * Bt[:, None, :] + A[None, :, :] * through_decay), axis=2)
            dA_acc += tl.sum(adjoint * through_decay * delta[:, :, None], axis=0)
            dD_acc += tl.sum(tl.where(mask, grad * u, 0.0), axis=0)
            if SOFTPLUS:
                ddelta = ddelta * tl.sigmoid(raw)
            ddelta = tl.where(mask, ddelta, 0.0)
            dbias_acc += tl.sum(ddelta, axis=0)
            input_offsets = ((k * batch + b) * length + row[:, None]) * dim + offs_d[None, :]
            tl.store(du_ptr + input_offsets, du.to(du_ptr.dtype.element_ty), mask=mask)
            tl.store(ddt_ptr + input_offsets, ddelta.to(ddt_ptr.dtype.element_ty), mask=mask)
            dB = tl.sum(adjoint * (delta * u)[:, :, None], axis=1)
            dC = tl.sum(grad[:, :, None] * states, axis=1)
            part_offsets = (((pid_d * K + k) * batch + b) * length + row[:, None]) * d_state + offs_n[None, :]
            tl.store(dB_ptr + part_offsets, dB, mask=mask_tn)
            tl.store(dC_ptr + part_offsets, dC, mask=mask_tn)
        tl.store(dA_ptr + ((b * K + k) * dim + offs_d[:, None]) * d_state + offs_n[None, :], dA_acc, mask=mask_dn)
        tl.store(dD_ptr + (b * K + k) * dim + offs_d, dD_acc, mask=mask_d)
        tl.store(dbias_ptr + (b * K + k) * dim + offs_d, dbias_acc, mask=mask_d)
        tl.debug_barrier()  # the next route overwrites the chunk-start states
    if MERGE and HAS_Z:  # dz = scale * grad_out * (sum of the routes) * SiLU'(z), in token order
        for start in range(0, length, BLOCK_T):
            t = (start + steps).to(tl.int64)
            mask = (t < length)[:, None] & mask_d[None, :]
            grad = _load_rows(gout_ptr + b * so_b, t, so_l, offs_d, mask)
            z = _load_rows(z_ptr + b * sz_b, t, sz_l, offs_d, mask)
            sig = tl.sigmoid(z)
            y = _load_rows(ysum_ptr + b * so_b, t, so_l, offs_d, mask)
            dz = grad * scale * y * sig * (1.0 + z * (1.0 - sig))
            tl.store(
                dz_ptr + b * so_b + t[:, None] * so_l + offs_d[None, :], dz.to(dz_ptr.dtype.element_ty), mask=mask
            )


# ----------------------------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------------------------

# Block sizes and warps: the largest tiles that compile for sm_90 without register spills
# (scripts/compile_triton_kernels.py); chosen by ptxas's counts, not yet timed on a GPU.
_BLOCK_T = 8
_FWD_BLOCK_D = 32
_FWD_WARPS = 8
_BWD_BLOCK_D = 16
_BWD_WARPS = 4


def _block_d(dim: int, batch: int, device: torch.device, widest: int) -> int:
    """Channels per program: ``widest`` (a power of two) unless that leaves fewer programs than twice the GPU's
    multiprocessors, then narrower down to 8 (short batches still fill the GPU)."""
    block = min(widest, triton.next_power_of_2(dim))
    if device.type == "cuda":
        wanted = 2 * torch.cuda.get_device_properties(device).multi_processor_count
        while block > 8 and batch * triton.cdiv(dim, block) < wanted:
            block //= 2
    return block


def _route_meta(routes: Routes) -> dict:
    transpose, reverse, middle_cls = routes.flags()
    height, width = routes.grid if routes.grid is not None else (1, routes.length)
    cls_position = -1 if routes.cls_position is None else routes.cls_position
    return dict(
        height=height,
        width=width,
        cls_position=cls_position,
        K=len(routes.directions),
        TRANSPOSE=transpose,
        REVERSE=reverse,
        MIDDLE_CLS=middle_cls,
    )


def _strides3(t: Tensor | None) -> tuple[int, int, int]:
    """(route, batch, step) strides of a ``(K, batch, L, C)`` tensor whose last axis is contiguous."""
    return (0, 0, 0) if t is None else (t.stride(0), t.stride(1), t.stride(2))


def _channels_last(t: Tensor | None) -> Tensor | None:
    """``t`` with a contiguous last axis (a copy only when it has none)."""
    return t if t is None or t.stride(-1) == 1 else t.contiguous()


class _ScanInputs:
    """The launch arguments of both kernels, from the op's tensors."""

    def __init__(self, u, delta, A, B, C, D, delta_bias, z, routes: Routes, scale, token_order, merge, softplus):
        self.u, self.delta, self.B, self.C = (_channels_last(t) for t in (u, delta, B, C))
        self.A = A.contiguous()
        self.D = None if D is None else D.contiguous()
        self.delta_bias = None if delta_bias is None else delta_bias.contiguous()
        self.z = None if z is None else _channels_last(z if z.ndim == 4 else z.unsqueeze(0))
        self.num_routes, self.batch, self.length, self.dim = u.shape
        self.d_state = A.shape[-1]
        self.meta = _route_meta(routes)
        self.flags = dict(
            TOKEN_ORDER=token_order,
            MERGE=merge,
            HAS_D=D is not None,
            HAS_BIAS=delta_bias is not None,
            HAS_Z=z is not None,
            SOFTPLUS=softplus,
        )
        self.scale = float(scale)

    def output_shape(self) -> tuple[int, ...]:
        shape = (self.batch, self.length, self.dim)
        return shape if self.flags["MERGE"] else (self.num_routes, *shape)

    def pointers(self) -> list:
        return [self.u, self.delta, self.A, self.B, self.C, self.D, self.delta_bias, self.z]

    def sizes(self) -> list:
        meta = self.meta
        return [
            self.batch,
            self.length,
            self.dim,
            self.d_state,
            meta["height"],
            meta["width"],
            meta["cls_position"],
            self.scale,
        ]

    def strides(self, out: Tensor) -> list:
        out_strides = (0, *out.stride()[:2]) if self.flags["MERGE"] else out.stride()[:3]
        z_strides = (
            (0, 0, 0) if self.z is None else (0 if self.z.shape[0] == 1 else self.z.stride(0), *self.z.stride()[1:3])
        )
        return [
            *_strides3(self.u),
            *_strides3(self.delta),
            *_strides3(self.B),
            *_strides3(self.C),
            *z_strides,
            *out_strides,
        ]

    def constants(self) -> dict:
        meta = {k: v for k, v in self.meta.items() if k.isupper()}
        return dict(**meta, **self.flags, BLOCK_T=_BLOCK_T, BLOCK_N=max(triton.next_power_of_2(self.d_state), 2))


def _route_scan_forward(inputs: _ScanInputs) -> tuple[Tensor, Tensor]:
    u = inputs.u
    out = u.new_empty(inputs.output_shape())
    merge_sum = inputs.flags["MERGE"] and inputs.num_routes > 1
    acc = torch.empty(out.shape, device=u.device, dtype=torch.float32) if merge_sum else None
    last = torch.empty(
        inputs.num_routes, inputs.batch, inputs.dim, inputs.d_state, device=u.device, dtype=torch.float32
    )
    block_d = _block_d(inputs.dim, inputs.batch, u.device, widest=_FWD_BLOCK_D)
    grid = (triton.cdiv(inputs.dim, block_d), inputs.batch)
    _route_scan_fwd_kernel[grid](
        *inputs.pointers(),
        acc,
        out,
        last,
        *inputs.sizes(),
        *inputs.strides(out),
        **inputs.constants(),
        BLOCK_D=block_d,
        num_warps=_FWD_WARPS,
    )
    return out, last


def _route_scan_backward(inputs: _ScanInputs, grad_out: Tensor, grad_last: Tensor | None) -> tuple:
    u = inputs.u
    device, f32 = u.device, torch.float32
    K, batch, length, dim, n = inputs.num_routes, inputs.batch, inputs.length, inputs.dim, inputs.d_state
    block_d = _block_d(dim, batch, device, widest=_BWD_BLOCK_D)
    blocks = triton.cdiv(dim, block_d)
    constants = inputs.constants()
    num_chunks = triton.cdiv(length, _BLOCK_T)
    chunk_states = torch.empty(batch, blocks, num_chunks, block_d, constants["BLOCK_N"], device=device, dtype=f32)
    merge_z = inputs.flags["MERGE"] and inputs.z is not None
    ysum = torch.empty(batch, length, dim, device=device, dtype=f32) if merge_z else None
    du = torch.empty(K, batch, length, dim, device=device, dtype=u.dtype)
    ddelta = torch.empty(K, batch, length, dim, device=device, dtype=inputs.delta.dtype)
    dB_part = torch.empty(blocks, K, batch, length, n, device=device, dtype=f32)
    dC_part = torch.empty(blocks, K, batch, length, n, device=device, dtype=f32)
    dA_part = torch.empty(batch, K, dim, n, device=device, dtype=f32)
    dD_part = torch.empty(batch, K, dim, device=device, dtype=f32)
    dbias_part = torch.empty(batch, K, dim, device=device, dtype=f32)
    dz = None if inputs.z is None else torch.empty(grad_out.shape, device=device, dtype=inputs.z.dtype)
    grad_out = grad_out.contiguous()
    _route_scan_bwd_kernel[(blocks, batch)](
        *inputs.pointers(),
        grad_out,
        grad_last,
        chunk_states,
        ysum,
        du,
        ddelta,
        dA_part,
        dB_part,
        dC_part,
        dD_part,
        dbias_part,
        dz,
        *inputs.sizes(),
        num_chunks,
        *inputs.strides(grad_out),
        **constants,
        HAS_GRAD_LAST=grad_last is not None,
        BLOCK_D=block_d,
        num_warps=_BWD_WARPS,
    )
    return du, ddelta, dA_part.sum(0), dB_part.sum(0), dC_part.sum(0), dD_part.sum(0), dbias_part.sum(0), dz


class _RouteSelectiveScan(torch.autograd.Function):
    """Autograd wrapper: saves the inputs only, the backward kernel recomputes the states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, z, routes, scale, token_order, merge, softplus):
        inputs = _ScanInputs(u, delta, A, B, C, D, delta_bias, z, routes, scale, token_order, merge, softplus)
        out, last = _route_scan_forward(inputs)
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, z)
        ctx.settings = (routes, scale, token_order, merge, softplus)
        ctx.z_shape = None if z is None else z.shape
        return out, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_last):
        u, delta, A, B, C, D, delta_bias, z = ctx.saved_tensors
        inputs = _ScanInputs(u, delta, A, B, C, D, delta_bias, z, *ctx.settings)
        if grad_out is None:
            grad_out = torch.zeros(inputs.output_shape(), device=u.device, dtype=u.dtype)
        grad_last = None if grad_last is None else grad_last.float().contiguous()
        du, ddelta, dA, dB, dC, dD, dbias, dz = _route_scan_backward(inputs, grad_out, grad_last)
        return (
            du,
            ddelta,
            dA.to(A.dtype),
            dB.to(B.dtype),
            dC.to(C.dtype),
            None if D is None else dD.to(D.dtype),
            None if delta_bias is None else dbias.to(delta_bias.dtype),
            None if z is None else dz.view(ctx.z_shape),
            None,
            None,
            None,
            None,
            None,
        )


def route_selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    routes: Routes,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    z: Tensor | None = None,
    scale: float = 1.0,
    token_order: bool = False,
    merge: bool = True,
    delta_softplus: bool = True,
) -> tuple[Tensor, Tensor]:
    """The selective scans of all ``K`` routes in one launch (see the module docstring).

    Args:
        u, delta: ``(K, batch, L, dim)``, each route's rows in its step order (or token order, ``token_order``).
        A: ``(K, dim, N)``. B, C: ``(K, batch, L, N)``, rows like ``u``'s. D, delta_bias: ``(K, dim)``.
        routes: the :class:`~..routes.Routes` of the ``K`` directions over ``L`` tokens.
        z: gate in token order, ``(batch, L, dim)`` (with ``merge``) or ``(K, batch, L, dim)`` (without).
        scale: factor on the merged sum (``1 / K`` averages the routes).
        merge: sum the routes into token order; without it each route's output stays in its own rows.

    Returns:
        ``out`` ``(batch, L, dim)`` (``(K, batch, L, dim)`` without ``merge``) in ``u``'s dtype, and the last states
        ``(K, batch, dim, N)`` in fp32.
    """
    return _RouteSelectiveScan.apply(
        u, delta, A, B, C, D, delta_bias, z, routes, scale, token_order, merge, delta_softplus
    )


def route_selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    routes: Routes,
    D: Tensor | None = None,
    delta_bias: Tensor | None = None,
    z: Tensor | None = None,
    scale: float = 1.0,
    token_order: bool = False,
    merge: bool = True,
    delta_softplus: bool = True,
) -> tuple[Tensor, Tensor]:
    """Plain-PyTorch reference of :func:`route_selective_scan`: a loop over steps, in at least float32."""
    compute = torch.promote_types(u.dtype, torch.float32)
    K = u.shape[0]
    outputs, lasts = [], []
    for k in range(K):
        order = routes.order[k] if token_order else torch.arange(u.shape[2], device=u.device)
        uk, dk, Bk, Ck = (t[k][:, order].to(compute) for t in (u, delta, B, C))
        if delta_bias is not None:
            dk = dk + delta_bias[k].to(compute)
        if delta_softplus:
            dk = F.softplus(dk)
        Ak = A[k].to(compute)
        h = uk.new_zeros(uk.shape[0], uk.shape[2], Ak.shape[1])
        ys = []
        for t in range(uk.shape[1]):
            h = torch.exp(dk[:, t, :, None] * Ak) * h + (dk[:, t] * uk[:, t])[:, :, None] * Bk[:, t, None, :]
            ys.append((h * Ck[:, t, None, :]).sum(-1))
        y = torch.stack(ys, dim=1)
        if D is not None:
            y = y + uk * D[k].to(compute)
        # y[:, t] belongs to token order[k, t]: back to token rows where the routes merge or came in token order
        outputs.append(y[:, routes.inverse[k]] if merge or token_order else y)
        lasts.append(h)
    last = torch.stack(lasts)
    if not merge:
        out = torch.stack(outputs)
        if z is not None:
            out = out * F.silu(z.to(compute))
        return out.to(u.dtype), last
    out = sum(outputs) * scale
    if z is not None:
        out = out * F.silu(z.to(compute))
    return out.to(u.dtype), last
