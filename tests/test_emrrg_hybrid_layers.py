"""EMRRG hybrid layers as the authors built them (issue 12) and the model's issue-19 defects.

Placement, names, TP plan, the self-attention-query form against an independent computation, multi-view averaging,
text-only forwards, ``return_dict=False``, missing-weight initialisation, ``resize_token_embeddings``,
``get_image_features(return_dict=True)`` and ``base_model_prefix``.
"""

import re

import pytest
import torch
import torch.nn.functional as F
from conftest import IMAGE_TOKEN_ID, TEXT_CONFIGS, TINY_VISION, prompt_ids, randomize_gates
from conftest import tiny_emrrg_config as tiny_config
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, LlamaConfig
from transformers.modeling_outputs import BaseModelOutputWithPooling

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration
from modeling_rrg_mamba.emrrg.modeling_emrrg import GatedCrossAttention, decoder_layers


def _matches(pattern: str, name: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", r"\d+"), name) is not None


def llama_7b_shape(**kwargs) -> EMRRGConfig:
    text = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    return EMRRGConfig(text_config=text, vision_config=TINY_VISION, image_token_id=32000, **kwargs)


def test_placement_and_parameter_count_at_7b_scale():
    assert llama_7b_shape().hybrid_layer_indices == [0, 8, 16, 24]  # the authors' range(0, 32, 8)
    assert llama_7b_shape(hybrid_layer_start=7).hybrid_layer_indices == [7, 15, 23, 31]  # ours before
    with torch.device("meta"):
        theirs = GatedCrossAttention(llama_7b_shape())
        ours = GatedCrossAttention(llama_7b_shape(cross_attention_queries="separate", cross_attention_gate="channel"))

    def count(module):
        return sum(p.numel() for p in module.parameters())

    # kv_proj 4096 -> 2 x 32 heads x 128 (+ bias) and one scalar gate per token
    assert count(theirs) == 4096 * 8192 + 8192 + 4096 + 1
    assert theirs.gate.weight.shape == (1, 4096)
    # 8 of 32 heads with own q/k/v/o, and a per-channel gate of 4096^2 + 4096
    assert count(ours) == 4 * 4096 * 1024 + 4096 * 4096 + 4096
    with pytest.raises(ValueError, match="hybrid_layer_start"):
        llama_7b_shape(hybrid_layer_start=32)
    with pytest.raises(ValueError, match="cross_attention_gate"):
        llama_7b_shape(cross_attention_gate="scalar")


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_llm_weight_names_and_tp_plan_are_the_llms(family):
    config = tiny_config(family)
    model = EMRRGForConditionalGeneration(config)
    stock = AutoModelForCausalLM.from_config(config.text_config)
    ours = set(model.language_model.state_dict())
    assert set(stock.state_dict()) == {k for k in ours if ".gated_cross_attn." not in k}
    names = [name for name, _ in model.language_model.base_model.named_modules()]
    for pattern in config.text_config.base_model_tp_plan or {}:
        assert any(_matches(pattern, name) for name in names), pattern
    # the LLM's own plan (as the installed release composes it) applies under language_model. wherever it applies to
    # the stock LLM, and EMRRG's composed plan carries it
    stock_names = [name for name, _ in stock.named_modules()]
    full_names = [name for name, _ in model.named_modules()]
    stock_plan = getattr(stock, "_tp_plan", None) or {}
    assert stock_plan or family == "gpt2"  # GPT-2 has no TP plan
    for pattern in stock_plan:
        if any(_matches(pattern, name) for name in stock_names):
            assert any(_matches(f"language_model.{pattern}", name) for name in full_names), pattern
            assert f"language_model.{pattern}" in model._tp_plan, pattern
    # base_model_prefix names an attribute, and it is the LLM
    assert getattr(model, model.base_model_prefix) is model.language_model is model.base_model


def test_stock_llm_checkpoint_loads_unchanged(tmp_path):
    torch.manual_seed(0)
    config = tiny_config("llama")
    stock = AutoModelForCausalLM.from_config(config.text_config)
    stock.save_pretrained(tmp_path)
    model = EMRRGForConditionalGeneration(config)
    state = load_file(str(tmp_path / "model.safetensors"))
    missing, unexpected = model.language_model.load_state_dict(state, strict=False)
    assert not unexpected and missing and all(".gated_cross_attn." in key for key in missing)
    for name, tensor in state.items():
        assert torch.equal(model.language_model.state_dict()[name], tensor), name


def test_self_attention_query_form_equals_independent_computation():
    """o_proj(ctx_self + g * ctx_cross) with the layer's own RoPE'd queries and [k|v] = kv_proj(norm(V)) (§3.3)."""
    torch.manual_seed(0)
    config = tiny_config("llama")
    model = EMRRGForConditionalGeneration(config).eval()
    randomize_gates(model, scale=1.0)
    layer = decoder_layers(model.language_model)[0]
    attention = layer.self_attn
    hidden = torch.randn(2, 6, 32)
    visual = torch.randn(2, 5, 32)
    positions = torch.arange(6).expand(2, -1)
    cos, sin = model.language_model.model.rotary_emb(hidden, positions)
    out = attention(
        hidden_states=hidden, position_embeddings=(cos, sin), attention_mask=None, cross_attention_states=visual
    )[0]
    self_only = attention(hidden_states=hidden, position_embeddings=(cos, sin), attention_mask=None)[0]
    # independent: heads 4 x 8, 2 kv heads, kv_proj laid out (head, k|v, dim)
    q = attention.q_proj(hidden).view(2, 6, 4, 8).transpose(1, 2)

    def rotate(x):
        return torch.cat([-x[..., 4:], x[..., :4]], dim=-1)

    q = q * cos[:, None] + rotate(q) * sin[:, None]
    kv = attention.gated_cross_attn.kv_proj(layer.input_layernorm(visual)).view(2, 5, 2, 2, 8)
    k, v = kv[..., 0, :].transpose(1, 2), kv[..., 1, :].transpose(1, 2)
    k, v = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
    context = (weights @ v).transpose(1, 2).reshape(2, 6, 32)
    gate = torch.tanh(hidden @ attention.gated_cross_attn.gate.weight.T + attention.gated_cross_attn.gate.bias)
    assert gate.shape == (2, 6, 1)  # one scalar per token
    torch.testing.assert_close(
        out, self_only + F.linear(gate * context, attention.o_proj.weight), atol=1e-6, rtol=1e-5
    )


def test_views_are_averaged_by_default():
    torch.manual_seed(0)
    config = tiny_config(num_views=2, multi_view_fusion="mean")
    model = EMRRGForConditionalGeneration(config).eval()
    assert config.num_image_tokens == 5  # one view's tokens per study
    views = torch.randn(2, 2, 3, 32, 32)
    features = model.get_image_features(views).pooler_output
    per_view = model.vision_model(views.flatten(0, 1)).last_hidden_state.unflatten(0, (2, 2))
    torch.testing.assert_close(features, model.multi_modal_projector(per_view.mean(1)))
    ids = prompt_ids(2, config.num_image_tokens)
    assert model(input_ids=ids, pixel_values=views).logits.shape[:2] == ids.shape


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_text_only_forward_skips_cross_attention(family):
    torch.manual_seed(0)
    config = tiny_config(family)
    model = EMRRGForConditionalGeneration(config).eval()
    randomize_gates(model)
    bare = AutoModelForCausalLM.from_config(config.text_config).eval()
    bare.load_state_dict(model.language_model.state_dict(), strict=False)
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(model(input_ids=ids).logits, bare(input_ids=ids).logits)
    generated = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    assert generated.shape == (1, 7)


def test_return_dict_false_gives_the_tuple():
    torch.manual_seed(0)
    config = tiny_config()
    model = EMRRGForConditionalGeneration(config).eval()
    ids, pixels = prompt_ids(1, config.num_image_tokens), torch.randn(1, 3, 32, 32)
    as_dict = model(input_ids=ids, pixel_values=pixels, labels=ids, use_cache=False)
    as_tuple = model(input_ids=ids, pixel_values=pixels, labels=ids, use_cache=False, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 3  # loss, logits, image_hidden_states
    assert torch.equal(as_tuple[0], as_dict.loss) and torch.equal(as_tuple[1], as_dict.logits)
    assert torch.equal(as_tuple[2], as_dict.image_hidden_states)


@pytest.mark.parametrize("form", ["self_attention", "separate"])
def test_weights_missing_from_a_checkpoint_are_initialised(tmp_path, form):
    torch.manual_seed(0)
    config = tiny_config(
        cross_attention_queries=form, cross_attention_gate="token" if form == "self_attention" else "channel"
    )
    model = EMRRGForConditionalGeneration(config)
    randomize_gates(model)
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    dropped = [k for k in state if ".gated_cross_attn." in k or k.startswith("multi_modal_projector.")]
    assert dropped
    kept_name = "language_model.model.layers.0.self_attn.q_proj.weight"
    save_file(
        {k: v for k, v in state.items() if k not in dropped},
        str(tmp_path / "model.safetensors"),
        metadata={"format": "pt"},
    )
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    reloaded_state = reloaded.state_dict()
    for key in dropped:
        assert torch.isfinite(reloaded_state[key]).all(), key
    for hybrid in reloaded.hybrid_attentions:
        assert not hybrid.gated_cross_attn.gate.weight.any() and not hybrid.gated_cross_attn.gate.bias.any()
    assert reloaded_state["multi_modal_projector.layer_norm.weight"].eq(1).all()
    assert reloaded_state["multi_modal_projector.linear.weight"].std() > 0
    assert torch.equal(reloaded_state[kept_name], state[kept_name])  # loaded weights untouched
    # and with only the projector's LayerNorm missing, its (loaded) Linear is kept
    partial = {k: v for k, v in state.items() if not k.startswith("multi_modal_projector.layer_norm")}
    save_file(partial, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    again = AutoModelForImageTextToText.from_pretrained(tmp_path).state_dict()
    assert torch.equal(again["multi_modal_projector.linear.weight"], state["multi_modal_projector.linear.weight"])
    assert torch.equal(
        again["language_model.model.layers.0.self_attn.gated_cross_attn.gate.weight"],
        state["language_model.model.layers.0.self_attn.gated_cross_attn.gate.weight"],
    )


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_resize_token_embeddings_after_adding_the_image_token(family):
    torch.manual_seed(0)
    config = EMRRGConfig(
        text_config=TEXT_CONFIGS[family],
        vision_config=TINY_VISION,
        hybrid_layer_interval=1,
        image_token_id=IMAGE_TOKEN_ID,
    )  # the <image> id is the first one past the vocabulary
    model = EMRRGForConditionalGeneration(config).eval()
    embeddings = model.resize_token_embeddings(IMAGE_TOKEN_ID + 1)
    assert embeddings.weight.shape[0] == IMAGE_TOKEN_ID + 1 == model.get_output_embeddings().weight.shape[0]
    assert model.config.text_config.vocab_size == IMAGE_TOKEN_ID + 1
    assert IMAGE_TOKEN_ID in model.generation_config.suppress_tokens  # now in the vocabulary: never generated
    ids, pixels = prompt_ids(1, config.num_image_tokens), torch.randn(1, 3, 32, 32)
    assert model(input_ids=ids, pixel_values=pixels).logits.shape[-1] == IMAGE_TOKEN_ID + 1


def test_get_image_features_returns_model_output_when_asked():
    torch.manual_seed(0)
    config = tiny_config()
    model = EMRRGForConditionalGeneration(config).eval()
    pixels = torch.randn(2, 3, 32, 32)
    as_tuple = model.get_image_features(pixels, return_dict=False)
    output = model.get_image_features(pixels, output_hidden_states=True)
    assert isinstance(output, BaseModelOutputWithPooling) and isinstance(as_tuple, tuple)
    assert torch.equal(output.pooler_output, as_tuple[1]) and output.pooler_output.shape == (2, 5, 32)
    assert output.last_hidden_state.shape == (2, 5, TINY_VISION["hidden_size"])
    assert len(output.hidden_states) == TINY_VISION["num_hidden_layers"] + 1


def test_xray_mamba_partly_loaded_embeddings_keep_what_was_loaded(tmp_path):
    from modeling_rrg_mamba.emrrg import XrayMambaConfig, XrayMambaModel

    torch.manual_seed(0)
    model = XrayMambaModel(XrayMambaConfig(**TINY_VISION))
    model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if k != "embeddings.cls_token"},
        str(tmp_path / "model.safetensors"),
        metadata={"format": "pt"},
    )
    reloaded = XrayMambaModel.from_pretrained(tmp_path)
    assert torch.equal(reloaded.embeddings.position_embeddings, state["embeddings.position_embeddings"])
    assert torch.isfinite(reloaded.embeddings.cls_token).all() and reloaded.embeddings.cls_token.abs().max() < 1


def test_loss_is_the_llms_and_honours_the_trainers_token_count():
    torch.manual_seed(0)
    config = tiny_config()
    model = EMRRGForConditionalGeneration(config).eval()
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    out = model(input_ids=ids, pixel_values=pixels, labels=ids, use_cache=False)
    targets = ids.masked_fill(ids == IMAGE_TOKEN_ID, -100)[:, 1:]
    expected = F.cross_entropy(out.logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    count = int((targets != -100).sum())
    summed = model(input_ids=ids, pixel_values=pixels, labels=ids, use_cache=False, num_items_in_batch=count // 2).loss
    torch.testing.assert_close(summed, 2 * expected)
