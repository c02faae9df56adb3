"""Reusable state-space blocks built on :mod:`modeling_rrg_mamba.ops` (and nothing higher)."""

from .mamba_mixer import MambaMixer
from .position_bias import DynamicPositionBias
from .rotary import RotaryEmbedding1D, RotaryEmbedding2D, apply_rotary
from .scan_orders import (
    DIRECTIONS,
    GRID_DIRECTIONS,
    gather_directions,
    merge_directions,
    multi_route_scan,
    scan_order,
)
from .selective_ssm import SelectiveSSM, resolve_dt_rank
from .ss2d import SS2D

__all__ = [
    "DIRECTIONS",
    "GRID_DIRECTIONS",
    "DynamicPositionBias",
    "MambaMixer",
    "RotaryEmbedding1D",
    "RotaryEmbedding2D",
    "SS2D",
    "SelectiveSSM",
    "apply_rotary",
    "gather_directions",
    "merge_directions",
    "multi_route_scan",
    "resolve_dt_rank",
    "scan_order",
]
