"""A saved model folder given to a command is of the expected kind, checked from its ``config.json`` before anything
loads (a wrong folder is one line naming it, not a load report of every weight followed by a traceback)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

#: The model types this package saves; a command accepts those it can run.
PACKAGE_MODEL_TYPES = ("rrg_mamba", "emrrg")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json")


def _expected(types: Sequence[str]) -> str:
    if len(types) > 3:  # e.g. every causal LM transformers knows
        return f"one of {len(types)} model types"
    return " or ".join(repr(name) for name in types)


def saved_model_type(
    folder: str | os.PathLike,
    flag: str,
    expected: Sequence[str] = PACKAGE_MODEL_TYPES,
    hint: str = "",
    adapters: bool = False,
) -> str | None:
    """The ``model_type`` of the saved model in ``folder``; a ``ValueError`` / ``FileNotFoundError`` naming the flag,
    the folder, the type found and the ``expected`` ones (then ``hint``) when it is not one of them or there is no
    model. With ``adapters``, a PEFT adapter folder (Partial LoRA) is judged by its local base model; ``None`` when
    that base is not a local folder (the load decides)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{flag}: no saved model directory {folder} (no such folder)")
    config_file = folder / "config.json"
    adapter_file = folder / "adapter_config.json"
    if adapters and not config_file.is_file() and adapter_file.is_file():
        try:
            base = json.loads(adapter_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            raise ValueError(f"{adapter_file}: not a JSON adapter config; save the model again") from None
        if not isinstance(base, str) or not Path(base).is_dir():
            return None
        return saved_model_type(base, f"{flag} (base model of the adapter in {folder})", expected, hint)
    if not config_file.is_file():
        processor_only = any((folder / name).is_file() for name in PROCESSOR_FILES)
        what = "a processor but no model" if processor_only else "no saved model"
        raise FileNotFoundError(
            f"{flag}: {folder} holds {what} (config.json missing), expected {_expected(expected)}{hint}: give the "
            "folder the model was saved to"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{config_file}: not a JSON config ({error}); save the model again") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in expected:
        found = "no model_type" if model_type is None else f"a {model_type!r} model"
        raise ValueError(f"{flag}: {folder} holds {found} (config.json), expected {_expected(expected)}{hint}")
    return model_type


__all__ = ["PACKAGE_MODEL_TYPES", "saved_model_type"]
