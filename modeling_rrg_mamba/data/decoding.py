"""Decoding settings of one run written over a model's saved generation config, keeping one length limit, so
transformers never warns "Both max_new_tokens and max_length" at every batch: shared by ``rrg-mamba generate`` and
the Trainer's evaluation with ``predict_with_generate``."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from torch import nn
from transformers import GenerationConfig


def one_length_limit(config: GenerationConfig, settings: dict[str, Any]) -> tuple[GenerationConfig, dict[str, Any]]:
    """(a copy of ``config`` with ``settings`` written in, the settings a generation config does not hold).

    The length asked for wins and is the only one kept: a ``max_length`` given without ``max_new_tokens`` clears the
    saved ``max_new_tokens``; a ``max_new_tokens`` (given or saved) puts ``max_length`` back to the release's default
    (an LLM's 4096, say, is not a second limit transformers would warn about)."""
    config = copy.deepcopy(config)
    if settings.get("max_length") is not None and settings.get("max_new_tokens") is None:
        config.max_new_tokens = None
    rest = config.update(**settings)
    if config.max_new_tokens is not None:
        config.max_length = GenerationConfig().max_length
    return config, rest


@contextlib.contextmanager
def decoding_settings(model: nn.Module, settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The model's generation config replaced by `one_length_limit` of it and ``settings`` for the block (restored
    after); yields the settings the config does not hold, to pass to ``generate`` as keyword arguments."""
    saved = model.generation_config
    model.generation_config, rest = one_length_limit(saved, settings)
    try:
        yield rest
    finally:
        model.generation_config = saved


__all__ = ["decoding_settings", "one_length_limit"]
