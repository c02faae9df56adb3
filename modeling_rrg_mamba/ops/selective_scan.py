"""Selective scan (the S6 recurrence of Mamba), full-sequence and single-step.

For every channel ``d`` and state index ``n`` the scan runs the discretised linear recurrence

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,        y_t = C_t . h_t + D * u_t

and gates the result with ``silu(z)`` when ``z`` is given (Gu & Dao 2023, Alg. 2; RRG-Mamba Eq. 10).

``selective_scan`` has the signature and shapes of mamba-ssm's ``selective_scan_fn``. It runs mamba-ssm's
CUDA kernel when that package is importable and the tensors live on a GPU. On the CPU it runs the fused C kernel
of :mod:`._fused_scan_cpu` (states kept in registers, backward by recomputation, no ``(L, B, D, N)`` buffer; built
with the system C compiler at first use, see that module for why this means) when it can be built, else
:class:`_SelectiveScanCPU`, the reference pure-PyTorch scan whose backward pass is written by hand: the recurrence
runs once forward and once in reverse over a time-major ``(L, B, D, N)`` buffer and everything else is vectorised.
The fallback is automatic, with one warning per process; :func:`set_selective_scan_backend` or the environment
variable ``RRG_MAMBA_SELECTIVE_SCAN`` (``auto``, ``fused``, ``reference``) chooses the CPU path by hand.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

from ._fused_scan_cpu import SelectiveScanFused, load_library
from ._validation import check_floating, check_shape
from .kernels import mamba_ssm_kernels

Tensor = torch.Tensor


def _linear_recurrence_(decay: Tensor, states: Tensor) -> Tensor:
    """In place: turn ``states`` (holding the drive terms b_t) into ``h_t = decay_t * h_{t-1} + b_t``, time on
    dim 0."""
    for t in range(1, states.shape[0]):
        states[t].addcmul_(decay[t], states[t - 1])
    return states


def _reverse_recurrence_(decay: Tensor, grads: Tensor) -> Tensor:
    """In place adjoint of :func:`_linear_recurrence_`: ``g_t = b_t + decay_{t+1} * g_{t+1}``."""
    for t in range(grads.shape[0] - 2, -1, -1):
        grads[t].addcmul_(decay[t + 1], grads[t + 1])
    return grads


def _rowwise(states: Tensor, vector: Tensor, transpose: bool) -> Tensor:
    """Per (t, b, g): ``states (K, N) @ vector (N)`` or, with ``transpose``, ``vector (K) @ states (K, N)``.

    Written as 3-D ``bmm`` on views so that no ``(L, B, G, K, N)`` buffer is copied into another layout.
    """
    *lead, k, n = states.shape
    flat = states.view(-1, k, n)
    if transpose:
        out = torch.bmm(vector.reshape(-1, 1, k), flat)
    else:
        out = torch.bmm(flat, vector.reshape(-1, n, 1))
    return out.view(*lead, -1)


class _SelectiveScanCPU(torch.autograd.Function):
    """Core recurrence on time-major float32 (or float64) tensors.

    Inputs: u, delta ``(L, B, G, K)`` with ``K = D / G``; A ``(G, K, N)``; B, C ``(L, B, G, N)``.
    Outputs: ``y = C . h`` as ``(L, B, G, K)`` and the last state ``(B, G, K, N)``.
    The ``(L, B, G, K, N)`` buffers are few and updated in place: on CPU, fresh large allocations (page
    faults) cost more than the arithmetic.
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor):
        with torch.autocast(u.device.type, enabled=False):  # the scan runs in float32 by design
            return _SelectiveScanCPU._forward(ctx, u, delta, A, B, C)

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_last: Tensor | None):
        with torch.autocast(grad_y.device.type, enabled=False):
            return _SelectiveScanCPU._backward(ctx, grad_y, grad_last)

    @staticmethod
    def _forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor):
        decay = (delta.unsqueeze(-1) * A).exp_()  # exp(delta_t A)
        states = _linear_recurrence_(decay, (delta * u).unsqueeze(-1) * B.unsqueeze(-2))  # from b_t = delta_t B_t u_t
        y = _rowwise(states, C, transpose=False)  # C_t . h_t
        ctx.save_for_backward(u, delta, A, B, C, states, decay)
        return y, states[-1].clone()  # not a view of a saved buffer: callers may update it in place

    @staticmethod
    def _backward(ctx, grad_y: Tensor, grad_last: Tensor | None):
        u, delta, A, B, C, states, decay = ctx.saved_tensors
        grad_y = grad_y.contiguous()  # gradients arrive in the caller's layout
        delta_u = delta * u
        grad_C = _rowwise(states, grad_y, transpose=True)
        grad_states = grad_y.unsqueeze(-1) * C.unsqueeze(-2)
        if grad_last is not None:
            grad_states[-1] += grad_last
        _reverse_recurrence_(decay, grad_states)
        grad_B_dot = _rowwise(grad_states, B, transpose=False)
        grad_B = _rowwise(grad_states, delta_u, transpose=True)
        # d loss / d decay_t = g_t * h_{t-1}; the buffer is reused below for grad_A.
        work = torch.empty_like(states)
        work[0].zero_()
        torch.mul(decay[1:], states[:-1], out=work[1:])
        through_decay = grad_states.mul_(work)  # g_t * decay_t * h_{t-1}; grad_states is not needed any more
        grad_A = torch.mul(through_decay, delta.unsqueeze(-1), out=work).sum((0, 1))
        grad_delta = through_decay.mul_(A).sum(-1).add_(u * grad_B_dot)
        return delta * grad_B_dot, grad_delta, grad_A, grad_B, grad_C


def _check_scan_inputs(u, delta, A, B, C, D, z, delta_bias) -> None:
    check_floating(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=delta_bias)
    check_shape("u", u, ndim=3, names="(batch, dim, length)")
    batch, dim, length = u.shape
    check_shape("delta", delta, expected=(batch, dim, length), names="(batch, dim, length) like u")
    check_shape("A", A, ndim=2, names="(dim, d_state)")
    check_shape("A", A, expected=(dim, A.shape[1]), names="(dim, d_state) with dim of u")
    d_state = A.shape[1]
    for name, tensor in (("B", B), ("C", C)):
        if tensor.ndim == 3:
            check_shape(name, tensor, expected=(batch, d_state, length), names="(batch, d_state, length)")
        else:
            check_shape(name, tensor, ndim=4, names="(batch, d_state, length) or (batch, groups, d_state, length)")
            groups = tensor.shape[1]
            check_shape(
                name, tensor, expected=(batch, groups, d_state, length), names="(batch, groups, d_state, length)"
            )
            if dim % groups:
                raise ValueError(f"{name}: {groups} groups do not divide dim {dim} of u {tuple(u.shape)}")
    if B.ndim == 4 and C.ndim == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"B and C: group counts differ, B {tuple(B.shape)} vs C {tuple(C.shape)}")
    for name, tensor in (("D", D), ("delta_bias", delta_bias)):
        if tensor is not None:
            check_shape(name, tensor, expected=(dim,), names="(dim,)")
    if z is not None:
        check_shape("z", z, expected=(batch, dim, length), names="(batch, dim, length) like u")


def _time_major_groups(x: Tensor, groups: int, dtype: torch.dtype) -> Tensor:
    """``(B, G, N, L)`` or ``(B, N, L)`` -> ``(L, B, G, N)`` in the compute dtype."""
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.shape[1] != groups:
        x = x.expand(-1, groups, -1, -1)
    return x.permute(3, 0, 1, 2).to(dtype).contiguous()


def _num_groups(B: Tensor, C: Tensor) -> int:
    """Number of B/C groups implied by the shapes (1 for the ungrouped 3-D form)."""
    return max(B.shape[1] if B.ndim == 4 else 1, C.shape[1] if C.ndim == 4 else 1)


_BACKENDS = ("auto", "fused", "reference")
_backend_override: str | None = None
_warned_fallback = False


def set_selective_scan_backend(backend: str | None) -> None:
    """Choose the CPU scan for this process: ``"auto"`` (fused when it can be built, else the reference),
    ``"fused"`` (an error if it cannot be built), ``"reference"`` (the pure-PyTorch scan), or ``None`` to follow
    ``RRG_MAMBA_SELECTIVE_SCAN`` again (default ``auto``). The GPU path (mamba-ssm) is not affected."""
    global _backend_override
    if backend is not None and backend not in _BACKENDS:
        raise ValueError(f"backend: expected one of {_BACKENDS} or None, got {backend!r}")
    _backend_override = backend


def _requested_backend() -> str:
    if _backend_override is not None:
        return _backend_override
    value = os.environ.get("RRG_MAMBA_SELECTIVE_SCAN", "auto").strip().lower() or "auto"
    if value not in _BACKENDS:
        raise ValueError(f"RRG_MAMBA_SELECTIVE_SCAN: expected one of {_BACKENDS}, got {value!r}")
    return value


def selective_scan_backend() -> str:
    """The CPU scan that :func:`selective_scan` runs now: ``"fused"`` or ``"reference"`` (builds the fused
    kernel if that is needed to know)."""
    requested = _requested_backend()
    if requested == "reference":
        return "reference"
    lib, reason = load_library()
    if lib is not None:
        return "fused"
    if requested == "fused":
        raise RuntimeError(f"selective scan: the fused CPU kernel was requested but is unavailable: {reason}")
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        warnings.warn(
            f"modeling_rrg_mamba: {reason}; the CPU selective scan falls back to the slower pure-PyTorch "
            "path (set RRG_MAMBA_SELECTIVE_SCAN=reference to choose it and silence this).",
            RuntimeWarning,
            stacklevel=3,
        )
    return "reference"


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """Selective scan with mamba-ssm's ``selective_scan_fn`` signature.

    Args:
        u: input ``(batch, dim, length)``.
        delta: step sizes ``(batch, dim, length)`` (before ``delta_bias`` / softplus).
        A: state matrix ``(dim, d_state)``, real (negative for a stable scan).
        B, C: input / output projections ``(batch, d_state, length)`` or grouped
            ``(batch, groups, d_state, length)``, channel ``d`` using group ``d // (dim // groups)``.
        D: skip connection ``(dim,)``.
        z: gate ``(batch, dim, length)``; the output is multiplied by ``silu(z)``.
        delta_bias: ``(dim,)`` added to ``delta``.
        delta_softplus: apply softplus to ``delta`` (after the bias).
        return_last_state: also return the final state ``(batch, dim, d_state)`` in float32 (float64
            for float64 inputs).

    Returns:
        ``y`` ``(batch, dim, length)`` in the dtype of ``u``, and the last state if asked for.
    """
    _check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    kernels = mamba_ssm_kernels()
    if kernels is not None and u.is_cuda:
        return kernels.selective_scan_fn(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)

    batch, dim, length = u.shape
    groups = _num_groups(B, C)
    per_group = dim // groups
    compute = torch.promote_types(u.dtype, torch.float32)  # float32, or float64 when given float64
    if u.device.type == "cpu" and compute in (torch.float32, torch.float64) and selective_scan_backend() == "fused":

        def prepared(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(compute).contiguous()

        y, last = SelectiveScanFused.apply(
            prepared(u),
            prepared(delta),
            prepared(A),
            B.to(compute),
            C.to(compute),
            prepared(D),
            prepared(z),
            prepared(delta_bias),
            bool(delta_softplus),
            groups,
        )
        y = y.to(u.dtype)
        return (y, last) if return_last_state else y
    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    u_c = u.to(compute)
    # Contiguous time-major inputs: every (L, B, G, K, N) buffer computed from them is then contiguous too.
    y, last = _SelectiveScanCPU.apply(
        u_c.permute(2, 0, 1).reshape(length, batch, groups, per_group).contiguous(),
        delta.permute(2, 0, 1).reshape(length, batch, groups, per_group).contiguous(),
        A.to(compute).reshape(groups, per_group, -1),
        _time_major_groups(B, groups, compute),
        _time_major_groups(C, groups, compute),
    )
    y = y.reshape(length, batch, dim).permute(1, 2, 0)
    if D is not None:
        y = y + u_c * D.to(compute)[:, None]
    if z is not None:
        y = y * F.silu(z.to(compute))
    y = y.to(u.dtype)
    if return_last_state:
        return y, last.reshape(batch, dim, -1)
    return y


def _per_channel(t: Tensor, dim: int, dtype: torch.dtype) -> Tensor:
    """``(batch, d_state)`` or ``(batch, groups, d_state)`` -> broadcastable ``(batch, dim|1, d_state)``."""
    t = t.to(dtype)
    return t.unsqueeze(1) if t.ndim == 2 else t.repeat_interleave(dim // t.shape[1], dim=1)


def selective_state_update(
    state: Tensor,
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    dt_bias: Tensor | None = None,
    dt_softplus: bool = False,
) -> Tensor:
    """One step of the scan, updating ``state`` in place (mamba-ssm's ``selective_state_update``).

    Shapes: state ``(batch, dim, d_state)``; x, dt, z ``(batch, dim)``; A ``(dim, d_state)``;
    B, C ``(batch, d_state)`` or ``(batch, groups, d_state)``; D, dt_bias ``(dim,)``. Returns ``(batch, dim)``.
    """
    check_floating(state=state, x=x, dt=dt, A=A, B=B, C=C, D=D, z=z, dt_bias=dt_bias)
    check_shape("state", state, ndim=3, names="(batch, dim, d_state)")
    batch, dim, d_state = state.shape
    for name, tensor in (("x", x), ("dt", dt), ("z", z)):
        if tensor is not None:
            check_shape(name, tensor, expected=(batch, dim), names="(batch, dim) matching state")
    check_shape("A", A, expected=(dim, d_state), names="(dim, d_state) matching state")
    for name, tensor in (("B", B), ("C", C)):
        if tensor.ndim != 2:
            check_shape(name, tensor, ndim=3, names="(batch, d_state) or (batch, groups, d_state)")
            if dim % tensor.shape[1]:
                raise ValueError(
                    f"{name}: {tensor.shape[1]} groups do not divide dim {dim} of state {tuple(state.shape)}"
                )
        check_shape(name, tensor, expected=(batch, *tensor.shape[1:-1], d_state), names="(batch, [groups,] d_state)")
    kernels = mamba_ssm_kernels()
    if kernels is not None and x.is_cuda:
        return kernels.selective_state_update(state, x, dt, A, B, C, D, z=z, dt_bias=dt_bias, dt_softplus=dt_softplus)

    compute = torch.promote_types(torch.promote_types(x.dtype, state.dtype), torch.float32)
    dt = dt.to(compute)
    if dt_bias is not None:
        dt = dt + dt_bias.to(compute)
    if dt_softplus:
        dt = F.softplus(dt)
    B_d, C_d = _per_channel(B, dim, compute), _per_channel(C, dim, compute)
    x_c = x.to(compute)
    new_state = torch.exp(dt.unsqueeze(-1) * A.to(compute)) * state.to(compute) + (dt * x_c).unsqueeze(-1) * B_d
    state.copy_(new_state)
    y = (new_state * C_d).sum(-1)
    if D is not None:
        y = y + x_c * D.to(compute)
    if z is not None:
        y = y * F.silu(z.to(compute))
    return y.to(x.dtype)
