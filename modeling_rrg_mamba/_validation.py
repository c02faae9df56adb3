"""Checks of the token ids a model receives, shared by both models: each error names the argument at fault.

Without them a float ``labels`` tensor or an id outside the vocabulary fails deep inside an embedding lookup or the
loss ("index out of range in self", "Target 99999 is out of bounds"), or as a device-side assert on CUDA.
"""

from __future__ import annotations

from collections.abc import Collection

import torch


def check_token_ids(name: str, ids: torch.Tensor, vocab_size: int, ignored: Collection[int] = ()) -> None:
    """Raise ``ValueError`` unless ``ids`` is an integer tensor whose values, other than ``ignored`` ones (``-100``
    in labels, an ``<image>`` placeholder), lie in ``[0, vocab_size)``."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name}: expected a tensor of token ids, got {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer token ids, got dtype {ids.dtype} with shape {tuple(ids.shape)}")
    if ids.numel() == 0 or torch.compiler.is_compiling():
        return
    outside = (ids < 0) | (ids >= vocab_size)
    for value in ignored:
        outside &= ids != value
    if outside.any():
        examples = sorted({int(v) for v in ids[outside].flatten()[:5].tolist()})
        raise ValueError(
            f"{name}: token ids {examples} are outside the vocabulary [0, {vocab_size}) (shape {tuple(ids.shape)}); "
            "were they made with this model's tokenizer?"
        )
