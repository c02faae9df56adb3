"""Kernels of the state-space layers, each with a pure-PyTorch path and a CUDA path when installed.

Lowest level of the package: nothing here imports from ``layers`` or the models.
"""

from .causal_conv1d import causal_conv1d, causal_conv1d_update
from .kernels import causal_conv1d_kernels, mamba_ssm_kernels
from .selective_scan import selective_scan, selective_scan_backend, selective_state_update, set_selective_scan_backend

__all__ = [
    "causal_conv1d",
    "causal_conv1d_update",
    "causal_conv1d_kernels",
    "mamba_ssm_kernels",
    "selective_scan",
    "selective_scan_backend",
    "selective_state_update",
    "set_selective_scan_backend",
]
