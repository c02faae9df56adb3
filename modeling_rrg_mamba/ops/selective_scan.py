"""Selective scan (the S6 recurrence of Mamba), full-sequence and single-step.

For every channel ``d`` and state index ``n`` the scan runs the discretised linear recurrence

    h_t = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t,        y_t = C_t . h_t + D * u_t

and gates the result with ``silu(z)`` when ``z`` is given (Gu & Dao 2023, Alg. 2; RRG-Mamba Eq. 10).

``selective_scan`` has the signature and shapes of mamba-ssm's ``selective_scan_fn``. Paths
(:func:`selective_scan_backend`):

* GPU, ``triton`` (the default wherever Triton imports; it ships with PyTorch's CUDA wheels): this package's
  Triton kernels (:mod:`.triton.selective_scan_routes`), no build step;
* GPU, ``mamba_ssm``: mamba-ssm's CUDA kernel (the ``cuda`` extra);
* CPU, ``fused``: the fused C kernel of :mod:`._fused_scan_cpu` (states kept in registers, backward by
  recomputation; built with the system C compiler at first use, see that module for why this means);
* anywhere, ``reference``: :class:`_SelectiveScanChunked`, the pure-PyTorch scan with a hand-written backward,
  a chunk of steps at a time so that its memory is ``O(chunk B D N)`` (the GPU fallback when neither kernel is
  installed: a full ``(L, B, D, N)`` buffer took 77 GiB for X-ray Mamba-B at batch 64).

The fallback is automatic (one warning per process when the C kernel cannot be built);
:func:`set_selective_scan_backend`, the environment variable ``RRG_MAMBA_SELECTIVE_SCAN`` or a model config's
``selective_scan_backend`` names a path.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.nn.functional as F

from ._fused_scan_cpu import SelectiveScanFused, load_library
from ._validation import check_floating, check_shape
from .kernels import mamba_ssm_kernels, triton_kernels
from .routes import scan_routes

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


def _chunk_states(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
    """Decays ``exp(delta_t A)`` and states ``h_t`` of one chunk of steps (time on dim 0), from the state ``h0``
    before it."""
    decay = (delta.unsqueeze(-1) * A).exp_()
    states = (delta * u).unsqueeze(-1) * B.unsqueeze(-2)  # the drive terms b_t = delta_t B_t u_t
    states[0].addcmul_(decay[0], h0)
    return decay, _linear_recurrence_(decay, states)


class _SelectiveScanChunked(torch.autograd.Function):
    """Core recurrence on time-major float32 (or float64) tensors, ``chunk`` steps at a time.

    Inputs: u, delta ``(L, B, G, K)`` with ``K = D / G``; A ``(G, K, N)``; B, C ``(L, B, G, N)``.
    Outputs: ``y = C . h`` as ``(L, B, G, K)`` and the last state ``(B, G, K, N)``.
    Memory is ``O(chunk B D N)``, not ``O(L B D N)``: the forward keeps only the state at each chunk start, the
    backward walks the chunks in reverse and recomputes each chunk's states from it. Within a chunk the
    ``(chunk, B, G, K, N)`` buffers are few and updated in place (on CPU, fresh large allocations cost more than the
    arithmetic).
    """

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int):
        with torch.autocast(u.device.type, enabled=False):  # the scan runs in float32 by design
            h = u.new_zeros(*u.shape[1:], A.shape[-1])
            starts, ys = [], []
            for start in range(0, u.shape[0], chunk):
                steps = slice(start, start + chunk)
                starts.append(h)
                _, states = _chunk_states(u[steps], delta[steps], A, B[steps], h)
                ys.append(_rowwise(states, C[steps], transpose=False))  # C_t . h_t
                h = states[-1].clone()  # not a view of the chunk buffer: callers may update it in place
            ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts))
            ctx.chunk = chunk
            return torch.cat(ys), h

    @staticmethod
    def backward(ctx, grad_y: Tensor, grad_last: Tensor | None):
        with torch.autocast(grad_y.device.type, enabled=False):
            u, delta, A, B, C, starts = ctx.saved_tensors
            grad_y = grad_y.contiguous()  # gradients arrive in the caller's layout
            grad_u, grad_delta = torch.empty_like(u), torch.empty_like(delta)
            grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
            grad_A = torch.zeros_like(A)
            carry = torch.zeros_like(starts[0]) if grad_last is None else grad_last
            for index in range(starts.shape[0] - 1, -1, -1):
                steps = slice(index * ctx.chunk, (index + 1) * ctx.chunk)
                carry = _chunk_backward(
                    (u[steps], delta[steps], A, B[steps], C[steps], starts[index]),
                    (grad_u[steps], grad_delta[steps], grad_A, grad_B[steps], grad_C[steps]),
                    grad_y[steps],
                    carry,
                )
            return grad_u, grad_delta, grad_A, grad_B, grad_C, None


def _chunk_backward(inputs: tuple, grads: tuple, grad_y: Tensor, carry: Tensor) -> Tensor:
    """Gradients of one chunk, written into ``grads`` (``grad_A`` accumulated), given the gradient ``carry`` of its
    last state; returns the gradient of the state before the chunk."""
    u, delta, A, B, C, h0 = inputs
    grad_u, grad_delta, grad_A, grad_B, grad_C = grads
    decay, states = _chunk_states(u, delta, A, B, h0)
    grad_C.copy_(_rowwise(states, grad_y, transpose=True))
    grad_states = grad_y.unsqueeze(-1) * C.unsqueeze(-2)
    grad_states[-1] += carry
    _reverse_recurrence_(decay, grad_states)
    grad_B_dot = _rowwise(grad_states, B, transpose=False)
    grad_B.copy_(_rowwise(grad_states, delta * u, transpose=True))
    carry = decay[0] * grad_states[0]  # d loss / d h0
    # d loss / d decay_t = g_t * h_{t-1}; the buffer is reused below for grad_A.
    work = torch.empty_like(states)
    torch.mul(decay[0], h0, out=work[0])
    torch.mul(decay[1:], states[:-1], out=work[1:])
    through_decay = grad_states.mul_(work)  # g_t * decay_t * h_{t-1}; grad_states is not needed any more
    grad_A.add_(torch.mul(through_decay, delta.unsqueeze(-1), out=work).sum((0, 1)))
    grad_delta.copy_(through_decay.mul_(A).sum(-1).add_(u * grad_B_dot))
    grad_u.copy_(delta * grad_B_dot)
    return carry


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


#: The scan paths a process or a model config can ask for (``RRG_MAMBA_SELECTIVE_SCAN``, a config's
#: ``selective_scan_backend``): ``auto`` picks per device, the others name a path (see :func:`selective_scan_backend`).
SELECTIVE_SCAN_BACKENDS = ("auto", "triton", "mamba_ssm", "fused", "reference")
_backend_override: str | None = None
_warned_fallback = False
#: Elements of one ``(chunk, batch, dim, N)`` buffer of the reference scan: the chunk length follows from it.
_REFERENCE_CHUNK_ELEMENTS = 1 << 24


def set_selective_scan_backend(backend: str | None) -> None:
    """Choose the scan path for this process (one of :data:`SELECTIVE_SCAN_BACKENDS`), or ``None`` to follow
    ``RRG_MAMBA_SELECTIVE_SCAN`` again (default ``auto``). A model whose config names a backend uses that one."""
    global _backend_override
    if backend is not None and backend not in SELECTIVE_SCAN_BACKENDS:
        raise ValueError(f"backend: expected one of {SELECTIVE_SCAN_BACKENDS} or None, got {backend!r}")
    _backend_override = backend


def _requested_backend(requested: str | None) -> str:
    if requested is not None and requested != "auto":
        if requested not in SELECTIVE_SCAN_BACKENDS:
            raise ValueError(f"selective_scan_backend: expected one of {SELECTIVE_SCAN_BACKENDS}, got {requested!r}")
        return requested
    if _backend_override is not None:
        return _backend_override
    value = os.environ.get("RRG_MAMBA_SELECTIVE_SCAN", "auto").strip().lower() or "auto"
    if value not in SELECTIVE_SCAN_BACKENDS:
        raise ValueError(f"RRG_MAMBA_SELECTIVE_SCAN: expected one of {SELECTIVE_SCAN_BACKENDS}, got {value!r}")
    return value


def _cuda_backend(requested: str) -> str:
    """GPU: Triton's kernels, else mamba-ssm's, else the chunked PyTorch scan; a named path that is not installed
    is an error (``fused``, a CPU kernel, means ``auto`` here)."""
    if requested == "reference":
        return "reference"
    missing = {
        "triton": ("triton", triton_kernels, "Triton does not import (it ships with PyTorch's CUDA wheels)"),
        "mamba_ssm": ("mamba_ssm", mamba_ssm_kernels, 'mamba-ssm does not import (pip install -e ".[cuda]")'),
    }
    if requested in missing:
        name, available, reason = missing[requested]
        if available() is None:
            raise RuntimeError(f"selective scan: the {name} path was requested but is unavailable: {reason}")
        return name
    if triton_kernels() is not None:
        return "triton"
    return "mamba_ssm" if mamba_ssm_kernels() is not None else "reference"


def _cpu_backend(requested: str) -> str:
    """CPU: the fused C kernel, else the PyTorch scan (one warning); ``triton`` runs the kernels under Triton's
    interpreter where ``TRITON_INTERPRET=1`` (slow: for tests), ``mamba_ssm`` means ``auto`` here."""
    if requested == "reference":
        return "reference"
    kernels = triton_kernels()
    if requested == "triton" and kernels is not None and kernels.interpreted:
        return "triton"
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
            stacklevel=4,
        )
    return "reference"


def selective_scan_backend(device: torch.device | str = "cpu", requested: str | None = None) -> str:
    """The scan path for tensors on ``device``: ``"triton"``, ``"mamba_ssm"``, ``"fused"`` or ``"reference"``.

    ``requested`` (a model config's choice) wins over the process setting (:func:`set_selective_scan_backend`,
    else ``RRG_MAMBA_SELECTIVE_SCAN``) unless it is ``None`` or ``"auto"``. ``auto`` takes, on a GPU, the Triton
    kernels (the default wherever Triton imports), else mamba-ssm's, else the chunked PyTorch scan; on the CPU, the
    fused C kernel (built at first use), else the PyTorch scan. A path named for a device it does not run on
    (``fused`` on a GPU, ``mamba_ssm`` or ``triton`` on the CPU) falls back to that device's ``auto``; one named for a
    device it runs on but not installed is an error.
    """
    requested = _requested_backend(requested)
    if torch.device(device).type == "cuda":
        return _cuda_backend(requested)
    return _cpu_backend(requested)


def _reference_chunk(length: int, batch: int, dim: int, d_state: int) -> int:
    """Steps per chunk of the reference scan: its buffers stay near :data:`_REFERENCE_CHUNK_ELEMENTS` elements."""
    return max(16, min(length, _REFERENCE_CHUNK_ELEMENTS // max(1, batch * dim * d_state)))


def _triton_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, groups) -> tuple[Tensor, Tensor]:
    """:func:`selective_scan` by the Triton route kernel: each group of channels a "forward" route of its own,
    routes not merged (layouts moved to the kernel's channels-last form and back)."""
    batch, dim, length = u.shape
    per_group = dim // groups

    def channels_last(t: Tensor) -> Tensor:  # (batch, dim, L) -> (groups, batch, L, dim / groups)
        return t.reshape(batch, groups, per_group, length).permute(1, 0, 3, 2)

    def state_rows(t: Tensor) -> Tensor:  # (batch, [groups,] N, L) -> (groups, batch, L, N)
        t = t.unsqueeze(1) if t.ndim == 3 else t
        return t.expand(batch, groups, *t.shape[2:]).permute(1, 0, 3, 2)

    def per_route(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.reshape(groups, per_group, *t.shape[1:])

    routes = scan_routes(("forward",) * groups, length, device=u.device)
    out, last = triton_kernels().route_selective_scan(
        channels_last(u),
        channels_last(delta),
        per_route(A),
        state_rows(B),
        state_rows(C),
        routes,
        D=per_route(D),
        delta_bias=per_route(delta_bias),
        z=None if z is None else channels_last(z),
        merge=False,
        delta_softplus=delta_softplus,
    )
    return out.permute(1, 0, 3, 2).reshape(batch, dim, length), last.transpose(0, 1).reshape(batch, dim, -1)


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
    backend: str | None = None,
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
        backend: the path to take (:func:`selective_scan_backend`'s ``requested``); ``None`` follows the process
            setting.

    Returns:
        ``y`` ``(batch, dim, length)`` in the dtype of ``u``, and the last state if asked for.
    """
    _check_scan_inputs(u, delta, A, B, C, D, z, delta_bias)
    backend = selective_scan_backend(u.device, backend)
    if backend == "mamba_ssm":
        return mamba_ssm_kernels().selective_scan_fn(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )

    batch, dim, length = u.shape
    groups = _num_groups(B, C)
    per_group = dim // groups
    compute = torch.promote_types(u.dtype, torch.float32)  # float32, or float64 when given float64
    if backend == "triton":
        y, last = _triton_selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, groups)
        return (y, last) if return_last_state else y
    if backend == "fused" and compute in (torch.float32, torch.float64):

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
    # Contiguous time-major inputs: every (chunk, B, G, K, N) buffer computed from them is then contiguous too.
    y, last = _SelectiveScanChunked.apply(
        u_c.permute(2, 0, 1).reshape(length, batch, groups, per_group).contiguous(),
        delta.permute(2, 0, 1).reshape(length, batch, groups, per_group).contiguous(),
        A.to(compute).reshape(groups, per_group, -1),
        _time_major_groups(B, groups, compute),
        _time_major_groups(C, groups, compute),
        _reference_chunk(length, batch, dim, A.shape[1]),
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
