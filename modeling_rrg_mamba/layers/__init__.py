"""Reusable state-space blocks built on :mod:`modeling_rrg_mamba.ops` (and nothing higher)."""

from .mamba_mixer import MambaMixer
from .position_bias import DynamicPositionBias
from .rotary import RotaryEmbedding1D, RotaryEmbedding2D, apply_rotary
from .selective_ssm import SelectiveSSM, resolve_dt_rank
from .ss2d import SS2D

__all__ = [
    "DynamicPositionBias",
    "MambaMixer",
    "RotaryEmbedding1D",
    "RotaryEmbedding2D",
    "SS2D",
    "SelectiveSSM",
    "apply_rotary",
    "resolve_dt_rank",
]
