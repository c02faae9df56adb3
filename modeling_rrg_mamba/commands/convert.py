"""``rrg-mamba convert``: an EMRRG authors' checkpoint -> a model folder this package (and ``transformers``) loads.

An EMRRG file (``EMRRG-CXP.pth``) becomes an ``EMRRGForConditionalGeneration`` + ``EMRRGProcessor`` folder, written
by :func:`~..hub.save_for_hub` (weights, processor, model card, and the code for ``trust_remote_code``); a backbone
file (``MambaXrayCLIP-B.pth``) becomes an ``XrayMambaModel`` folder. The mapping itself lives with the model:
:mod:`modeling_rrg_mamba.emrrg` (``convert_emrrg_checkpoint`` / ``convert_xray_mamba_checkpoint``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.model_folders import saved_model_type
from ..data.outputs import check_new_output_dir, replaced_dir
from ..emrrg import (
    ConversionReport,
    authors_checkpoint_kind,
    convert_emrrg_checkpoint,
    convert_xray_mamba_checkpoint,
    load_authors_checkpoint,
)
from ..hub import save_for_hub
from .arguments import ConvertArguments


def _dtype(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"--dtype: {name!r} is not a torch dtype (e.g. float32, float16, bfloat16)")
    return dtype


def causal_lm_types() -> tuple[str, ...]:
    """The model types transformers' ``AutoModelForCausalLM`` loads (the LLM of an EMRRG checkpoint)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return tuple(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def run_convert(args: ConvertArguments) -> ConversionReport:
    """Convert ``args.checkpoint`` into ``args.output_dir``; returns what was loaded and dropped."""
    text_model = args.text_model if Path(args.text_model).exists() else None
    inputs = (args.checkpoint, args.backbone_checkpoint, text_model)
    check_new_output_dir(args.output_dir, "--output_dir", inputs, overwrite=args.overwrite)
    if text_model is not None and args.kind != "xray_mamba":  # a local LLM folder: its type before any loading
        saved_model_type(text_model, "--text_model", causal_lm_types(), ": a causal language model such as 'llama'")
    dtype = _dtype(args.dtype)
    state_dict = load_authors_checkpoint(args.checkpoint, allow_pickle=args.allow_pickle)
    kind = authors_checkpoint_kind(state_dict) if args.kind == "auto" else args.kind
    if kind == "xray_mamba":
        model, report = convert_xray_mamba_checkpoint(state_dict)
        if dtype is not None:
            model.to(dtype)
        with replaced_dir(args.output_dir) as staging:
            model.save_pretrained(staging)
    else:
        backbone = None
        if args.backbone_checkpoint is not None:
            backbone = load_authors_checkpoint(args.backbone_checkpoint, allow_pickle=args.allow_pickle)
        model, processor, report = convert_emrrg_checkpoint(
            state_dict,
            text_model_name_or_path=args.text_model,
            backbone_checkpoint=backbone,
            num_views=args.num_views,
            dtype=dtype,
        )
        with replaced_dir(args.output_dir) as staging:
            save_for_hub(model, processor, staging, repo_id=Path(args.output_dir).resolve().name)
    report.source = args.checkpoint
    return report
