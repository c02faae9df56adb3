"""Kernels of the state-space layers: each op has a pure-PyTorch path, a fused CPU path, and GPU paths (this
package's Triton kernels by default, mamba-ssm's CUDA kernels when installed).

Lowest level of the package: nothing here imports from ``layers`` or the models.
"""

from .causal_conv1d import causal_conv1d, causal_conv1d_update
from .kernels import causal_conv1d_kernels, mamba_ssm_kernels, triton_kernels
from .multi_route_scan import multi_route_selective_scan
from .routes import DIRECTIONS, GRID_DIRECTIONS, Routes, gather_directions, merge_directions, scan_order, scan_routes
from .selective_scan import (
    SELECTIVE_SCAN_BACKENDS,
    selective_scan,
    selective_scan_backend,
    selective_state_update,
    set_selective_scan_backend,
)

__all__ = [
    "DIRECTIONS",
    "GRID_DIRECTIONS",
    "SELECTIVE_SCAN_BACKENDS",
    "Routes",
    "causal_conv1d",
    "causal_conv1d_kernels",
    "causal_conv1d_update",
    "gather_directions",
    "mamba_ssm_kernels",
    "merge_directions",
    "multi_route_selective_scan",
    "scan_order",
    "scan_routes",
    "selective_scan",
    "selective_scan_backend",
    "selective_state_update",
    "set_selective_scan_backend",
    "triton_kernels",
]
