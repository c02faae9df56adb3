"""Depthwise causal 1-D convolution, full-sequence and single-step (RRG-Mamba Eq. 9's DWConv in 1-D).

``y[b, d, t] = bias[d] + sum_k weight[d, k] * x[b, d, t - (W - 1) + k]`` with zeros before the sequence,
followed by an optional SiLU. Same signatures as the causal-conv1d package, whose CUDA kernels are used when
it is installed and the tensors live on a GPU. On the CPU the full-sequence form runs the C kernel of
:mod:`._fused_scan_cpu` (one pass forward, one backward that recomputes the pre-activation with the SiLU's
derivative fused in; PyTorch's depthwise ``conv1d`` backward cost several times more) whenever the fused selective
scan is in use, else ``F.conv1d``. (The multi-route mixer's convolution on a GPU is
:func:`~.triton.causal_conv1d_routes.route_causal_conv1d`, which reads the routes' orders itself.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._fused_scan_cpu import CausalConv1dFused
from ._validation import check_floating, check_shape
from .kernels import causal_conv1d_kernels
from .selective_scan import selective_scan_backend

Tensor = torch.Tensor
_ACTIVATIONS = (None, "silu", "swish")


def _check_activation(activation: str | None) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation: expected one of {_ACTIVATIONS}, got {activation!r}")


def _activate(x: Tensor, activation: str | None) -> Tensor:
    return x if activation is None else F.silu(x)


def _fused_applies(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """The fused C kernel runs on CPU tensors of one float32 / float64 dtype."""
    same_dtype = weight.dtype == x.dtype and (bias is None or bias.dtype == x.dtype)
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and same_dtype


def causal_conv1d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
    return_final_states: bool = False,
    backend: str | None = None,
):
    """Depthwise causal convolution of ``x`` ``(batch, dim, length)`` with ``weight`` ``(dim, width)``.

    With ``return_final_states`` also returns the last ``width - 1`` inputs ``(batch, dim, width - 1)``
    (zero-padded on the left for short inputs): the state :func:`causal_conv1d_update` continues from.
    ``backend`` follows :func:`~.selective_scan.selective_scan_backend` (``reference`` keeps PyTorch's ``conv1d``).
    """
    check_floating(x=x, weight=weight, bias=bias)
    _check_activation(activation)
    check_shape("x", x, ndim=3, names="(batch, dim, length)")
    check_shape("weight", weight, ndim=2, names="(dim, width)")
    dim, width = weight.shape
    if x.shape[1] != dim:
        raise ValueError(
            f"x: channel dim {x.shape[1]} of shape {tuple(x.shape)} does not match weight {tuple(weight.shape)}"
        )
    if bias is not None:
        check_shape("bias", bias, expected=(dim,), names="(dim,)")
    path = selective_scan_backend(x.device, backend)
    kernels = causal_conv1d_kernels()
    if kernels is not None and x.is_cuda and path != "reference" and not return_final_states:
        return kernels.causal_conv1d_fn(x, weight, bias, activation=activation)
    if path == "fused" and _fused_applies(x, weight, bias) and not return_final_states:
        return CausalConv1dFused.apply(
            x.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(), activation is not None
        )
    padded = F.pad(x, (width - 1, 0))
    y = F.conv1d(padded, weight.unsqueeze(1).to(x.dtype), None if bias is None else bias.to(x.dtype), groups=dim)
    y = _activate(y, activation)
    if not return_final_states:
        return y
    return y, padded[..., padded.shape[-1] - (width - 1) :].contiguous()


def causal_conv1d_update(
    x: Tensor,
    conv_state: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    activation: str | None = None,
) -> Tensor:
    """One step: ``x`` ``(batch, dim)``; ``conv_state`` ``(batch, dim, width - 1)``, the previous inputs,
    updated in place. Returns ``(batch, dim)``."""
    check_floating(x=x, conv_state=conv_state, weight=weight, bias=bias)
    _check_activation(activation)
    check_shape("weight", weight, ndim=2, names="(dim, width)")
    dim, width = weight.shape
    check_shape("x", x, expected=(x.shape[0], dim), names="(batch, dim) matching weight")
    check_shape("conv_state", conv_state, expected=(x.shape[0], dim, width - 1), names="(batch, dim, width - 1)")
    kernels = causal_conv1d_kernels()
    if kernels is not None and x.is_cuda:
        return kernels.causal_conv1d_update(x, conv_state, weight, bias, activation)
    window = torch.cat([conv_state, x.unsqueeze(-1)], dim=-1)
    y = (window * weight.to(window.dtype)).sum(-1)
    if bias is not None:
        y = y + bias.to(y.dtype)
    conv_state.copy_(window[..., 1:])
    return _activate(y, activation)
