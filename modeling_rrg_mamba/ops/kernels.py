"""Optional CUDA kernels: mamba-ssm and causal-conv1d, imported once and only if installed."""

from __future__ import annotations

import functools
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
