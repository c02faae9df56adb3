"""Optional kernels, imported once and only if installed: mamba-ssm and causal-conv1d (CUDA), and this package's
own Triton kernels (:mod:`.triton`; Triton ships with PyTorch's CUDA wheels)."""

from __future__ import annotations

import functools
import os
import types


@functools.cache
def mamba_ssm_kernels() -> types.SimpleNamespace | None:
    """mamba-ssm's ``selective_scan_fn`` and ``selective_state_update``, or ``None`` when unavailable."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    except Exception:  # not installed, or built without CUDA: the PyTorch path is used
        return None
    return types.SimpleNamespace(selective_scan_fn=selective_scan_fn, selective_state_update=selective_state_update)


@functools.cache
def causal_conv1d_kernels() -> types.SimpleNamespace | None:
    """causal-conv1d's ``causal_conv1d_fn`` and ``causal_conv1d_update``, or ``None`` when unavailable."""
    try:
        from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
    except Exception:  # not installed, or built without CUDA
        return None
    return types.SimpleNamespace(causal_conv1d_fn=causal_conv1d_fn, causal_conv1d_update=causal_conv1d_update)


@functools.cache
def triton_kernels() -> types.SimpleNamespace | None:
    """The package's Triton kernels (``route_selective_scan``, ``route_causal_conv1d``), or ``None`` when Triton
    does not import. They run on CUDA tensors, and on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``
    set before the first call: the kernels are compiled or interpreted from then on)."""
    try:
        from .triton.causal_conv1d_routes import route_causal_conv1d
        from .triton.selective_scan_routes import route_selective_scan
    except Exception:  # no Triton (e.g. a CPU-only PyTorch wheel), or one too old for the kernels
        return None
    return types.SimpleNamespace(
        route_selective_scan=route_selective_scan,
        route_causal_conv1d=route_causal_conv1d,
        interpreted=os.environ.get("TRITON_INTERPRET", "0") == "1",
    )
