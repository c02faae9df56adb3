"""Paper-scale trainable fraction of EMRRG's recipe, computed on the meta device (no weights allocated).

X-ray Mamba base (768 x 12, expand 1) + Llama-2-7B shapes, hybrid layer every 8th LLM layer, default recipe
(Partial LoRA r=8 on the backbone's in_proj, LoRA r=8 on the LLM's q_proj/v_proj, projector and gated
cross-attentions trained in full). The paper reports 2.3 % of full fine-tuning.
"""

import torch
from transformers import LlamaConfig

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration, XrayMambaConfig, apply_emrrg_recipe

PAPER_FRACTION = 0.023


def llama2_7b_config() -> LlamaConfig:
    return LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096)


def main() -> None:
    config = EMRRGConfig(vision_config=XrayMambaConfig.from_preset("base"), text_config=llama2_7b_config(),
                         image_token_id=32000)
    with torch.device("meta"):
        model = EMRRGForConditionalGeneration(config)
    _, counts = apply_emrrg_recipe(model)
    print(f"hybrid layers: {config.hybrid_layer_indices}, cross-attention heads: {config.cross_attention_heads}")
    print(counts)
    print(f"ours {100 * counts.fraction:.2f}%  vs  paper 2.3%  ->  {'at or below' if counts.fraction <= PAPER_FRACTION else 'ABOVE'} the paper")


if __name__ == "__main__":
    main()
