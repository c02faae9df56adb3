"""Paper-scale trainable share of EMRRG's recipe, computed on the meta device (no weights allocated).

X-ray Mamba base (768 x 12, expand 1) + Llama-2-7B shapes; the model's defaults (the authors' hybrid layers: layers
0/8/16/24, their self-attention queries with one new ``kv_proj`` each and a one-scalar-per-token gate); the recipe's
defaults (Partial LoRA r=16, scale 1 on the backbone's in_proj as their launch scripts; LoRA r=16 on the LLM's
q_proj/v_proj, ours; projector and hybrid cross-attentions trained in full). The share is against full fine-tuning
(every parameter of the model before wrapping), as the paper's 2.3 % counts it. Nothing here is tuned to reach it.

Run: ``python benchmarks/emrrg_trainable_fraction.py``.
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration, XrayMambaConfig, apply_emrrg_recipe
from modeling_rrg_mamba.emrrg.partial_lora import TrainableParameters

PAPER_FRACTION = 0.023


def llama2_7b_config() -> LlamaConfig:
    """Llama-2-7B's shapes (the paper's LLM)."""
    return LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
        max_position_embeddings=4096,
    )


def paper_scale_counts(
    text_lora: bool = True, **config_kwargs
) -> tuple[EMRRGConfig, TrainableParameters, dict[str, int]]:
    """Trainable / total parameters of the recipe at paper scale, and the trainable ones per part."""
    config = EMRRGConfig(
        vision_config=XrayMambaConfig.from_preset("base"),
        text_config=llama2_7b_config(),
        image_token_id=32000,
        **config_kwargs,
    )
    with torch.device("meta"):
        model = EMRRGForConditionalGeneration(config)
    peft_model, counts = apply_emrrg_recipe(model, **({} if text_lora else {"text_lora_targets": ()}))
    parts = {"backbone Partial LoRA": 0, "LLM LoRA": 0, "projector": 0, "hybrid cross-attention": 0}
    for name, parameter in peft_model.named_parameters():
        if not parameter.requires_grad:
            continue
        part = (
            "hybrid cross-attention"
            if "gated_cross_attn" in name
            else "projector"
            if "multi_modal_projector" in name
            else "backbone Partial LoRA"
            if "vision_model" in name
            else "LLM LoRA"
        )
        parts[part] += parameter.numel()
    return config, counts, parts


def main() -> None:
    for title, text_lora, kwargs in (
        ("defaults (their hybrid layers; LoRAP r16 s1; LLM LoRA q/v r16)", True, {}),
        ("as their launch scripts (LLM without LoRA)", False, {}),
        (
            "our former hybrid layers (7/15/23/31, own q/k/v/o with 8 heads, per-channel gate)",
            True,
            dict(hybrid_layer_start=7, cross_attention_queries="separate", cross_attention_gate="channel"),
        ),
    ):
        config, counts, parts = paper_scale_counts(text_lora, **kwargs)
        print(f"{title}: hybrid layers {config.hybrid_layer_indices}")
        print(f"  {counts}  ->  {100 * counts.fraction:.2f}% vs paper {100 * PAPER_FRACTION:.1f}%")
        print("  " + ", ".join(f"{part} {n / 1e6:.2f} M" for part, n in parts.items()))


if __name__ == "__main__":
    main()
