"""Reusable state-space blocks built on :mod:`modeling_rrg_mamba.ops` (and nothing higher)."""

from .mamba_mixer import MambaMixer, MambaState
from .position_bias import DynamicPositionBias
from .rotary import RotaryEmbedding1D, RotaryEmbedding2D, apply_rotary
from .scan_orders import DIRECTIONS, GRID_DIRECTIONS, gather_directions, grid_coordinates, merge_directions, scan_order
from .selective_ssm import SelectiveSSM, resolve_dt_rank
from .ss2d import SS2D

__all__ = [
    "DIRECTIONS",
    "GRID_DIRECTIONS",
    "DynamicPositionBias",
    "MambaMixer",
    "MambaState",
    "RotaryEmbedding1D",
    "RotaryEmbedding2D",
    "SS2D",
    "SelectiveSSM",
    "apply_rotary",
    "gather_directions",
    "grid_coordinates",
    "merge_directions",
    "resolve_dt_rank",
    "scan_order",
]
