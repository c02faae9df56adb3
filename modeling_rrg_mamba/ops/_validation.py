"""Argument checks shared by the ops: each error names the argument and the shapes at fault."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_floating(**tensors: torch.Tensor | None) -> None:
    """Raise ``ValueError`` for any given tensor that is not a floating-point tensor."""
    for name, tensor in tensors.items():
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(tensor).__name__}")
        if not tensor.is_floating_point():
            raise ValueError(
                f"{name}: expected a floating-point tensor, got dtype {tensor.dtype} with shape {tuple(tensor.shape)}"
            )


def check_shape(
    name: str,
    tensor: torch.Tensor,
    ndim: int | None = None,
    expected: Sequence[int] | None = None,
    names: str = "",
) -> None:
    """Raise ``ValueError`` unless ``tensor`` has ``ndim`` dimensions / exactly the ``expected`` shape."""
    shape = tuple(tensor.shape)
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions {names}, got shape {shape}")
    if expected is not None and shape != tuple(expected):
        raise ValueError(f"{name}: expected shape {tuple(expected)} {names}, got shape {shape}")
