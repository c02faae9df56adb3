"""EMRRG model: configs, X-ray Mamba, hybrid layers (exact step-0 identity, caching, beam search), errors."""

import copy
import warnings

import pytest
import torch
from conftest import IMAGE_TOKEN_ID, TEXT_CONFIGS, TINY_VISION, prompt_ids, randomize_gates
from conftest import tiny_emrrg_config as tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForImageTextToText, PretrainedConfig

from modeling_rrg_mamba.emrrg import (
    EMRRGConfig,
    EMRRGForConditionalGeneration,
    XrayMambaConfig,
    XrayMambaModel,
)  # registers Auto classes
from modeling_rrg_mamba.emrrg.modeling_emrrg import decoder_layers


def test_xray_mamba_presets_sizes_and_views():
    assert XrayMambaConfig.from_preset("base").hidden_size == 768
    assert XrayMambaConfig.from_preset("large").num_hidden_layers == 24
    with pytest.raises(ValueError, match="preset"):
        XrayMambaConfig.from_preset("huge")
    torch.manual_seed(0)
    model = AutoModel.from_config(XrayMambaConfig(**TINY_VISION)).eval()
    assert isinstance(model, XrayMambaModel)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.last_hidden_state.shape == (2, 5, 16)  # 2x2 patches + middle class token
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 2])
    assert model(torch.randn(1, 3, 48, 48)).last_hidden_state.shape == (1, 10, 16)  # interpolated positions
    # four scan routes, each with its own SSM parameters, in/out projections shared
    assert model.layers[0].mixer.ssm.A_log.shape[0] == 4
    with pytest.raises(ValueError, match="patch_size"):
        model(torch.randn(1, 3, 40, 40))


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral", "gpt2"])
def test_step0_equals_bare_llm_exactly_and_gates_condition(family):
    torch.manual_seed(0)
    config = tiny_config(family)
    model = EMRRGForConditionalGeneration(config).eval()
    # the bare LLM: the same weights under the same names in a stock LLM (the cross-attentions are the only extras)
    bare = AutoModelForCausalLM.from_config(config.text_config).eval()
    missing, unexpected = bare.load_state_dict(model.language_model.state_dict(), strict=False)
    assert not missing and unexpected and all(".gated_cross_attn." in key for key in unexpected)
    for layer_attention in model.hybrid_attentions:
        assert not torch.any(layer_attention.gated_cross_attn.gate.weight)
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    out = model(input_ids=ids, pixel_values=pixels)
    embeds = model._merge_visual_tokens(ids, out.image_hidden_states)
    reference = bare(inputs_embeds=embeds).logits
    assert torch.equal(out.logits, reference)
    # with open gates, other images change the logits of the same prompt only through the images
    randomize_gates(model)
    other = model(input_ids=ids, pixel_values=torch.randn(2, 3, 32, 32)).logits
    assert not torch.allclose(model(input_ids=ids, pixel_values=pixels).logits, other)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_cache_equals_no_cache_greedy_and_beam(family):
    torch.manual_seed(1)
    config = tiny_config(family)
    model = EMRRGForConditionalGeneration(config).eval()
    randomize_gates(model, scale=2.0)
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    settings = dict(
        max_new_tokens=6, min_new_tokens=6, do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids)
    )
    for beams in (1, 3):
        cached = model.generate(input_ids=ids, pixel_values=pixels, num_beams=beams, use_cache=True, **settings)
        uncached = model.generate(input_ids=ids, pixel_values=pixels, num_beams=beams, use_cache=False, **settings)
        assert torch.equal(cached, uncached)
    # the visual keys/values sit in the cache after the LLM's own layers, and they matter: the next step with them
    # differs from a text-only step (no pixel_values, no cached visual keys/values: cross-attention skipped)
    out = model(input_ids=ids, pixel_values=pixels, use_cache=True)
    assert len(out[1].layers) == config.text_config.num_hidden_layers + len(config.hybrid_layer_indices)
    step = ids[:, -1:] + 1
    with_images = model(input_ids=step, cache=out[1], attention_mask=torch.ones(2, ids.shape[1] + 1)).logits
    text_only = model(input_ids=step, use_cache=False).logits
    assert with_images.shape == text_only.shape and not torch.allclose(with_images, text_only)


def test_gradient_checkpointing_keeps_hybrid_gradients():
    torch.manual_seed(0)
    config = tiny_config()
    model = EMRRGForConditionalGeneration(config).train()
    randomize_gates(model)
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)

    def gate_and_key_grads():
        model.zero_grad()
        model(input_ids=ids, pixel_values=pixels, labels=ids, use_cache=False).loss.backward()
        return [
            torch.cat(
                [h.gated_cross_attn.gate.weight.grad.flatten(), h.gated_cross_attn.kv_proj.weight.grad.flatten()]
            )
            for h in model.hybrid_attentions
        ]

    plain = gate_and_key_grads()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
    assert [str(w.message) for w in caught if "use_reentrant" in str(w.message)] != []
    assert len([w for w in caught if "use_reentrant" in str(w.message)]) == 1
    for a, b in zip(plain, gate_and_key_grads()):  # fell back to non-reentrant: the cross-attentions still learn
        assert a.abs().sum() > 0 and torch.allclose(a, b, atol=1e-6)
    model.gradient_checkpointing_disable()
    # the entry point of each series: activation_checkpointing_enable (5.x, what its Trainer calls) or
    # gradient_checkpointing_enable (4.57, whose default would be reentrant)
    enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # no deprecation warning of our making
        enable()
    assert all(layer.gradient_checkpointing for layer in decoder_layers(model.language_model))
    checkpointed = gate_and_key_grads()
    for a, b in zip(plain, checkpointed):
        assert a.abs().sum() > 0 and torch.allclose(a, b, atol=1e-6)


def test_multi_view_and_image_count_errors():
    torch.manual_seed(0)
    config = tiny_config(num_views=2)  # views concatenated
    model = EMRRGForConditionalGeneration(config).eval()
    assert config.num_image_tokens == 10
    ids = prompt_ids(2, config.num_image_tokens)
    assert model(input_ids=ids, pixel_values=torch.randn(2, 2, 3, 32, 32)).logits.shape[:2] == ids.shape
    with pytest.raises(ValueError, match="placeholders"):  # one view's worth of placeholders for two views
        model(input_ids=prompt_ids(2, 5), pixel_values=torch.randn(2, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="placeholders"):  # missing image token
        model(input_ids=prompt_ids(2, 0), pixel_values=torch.randn(2, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="3 image sets for 2 prompts"):
        model(input_ids=ids, pixel_values=torch.randn(3, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="no pixel_values"):
        model(input_ids=ids)


def test_config_errors():
    with pytest.raises(ValueError, match="lacks"):
        EMRRGConfig(text_config=PretrainedConfig(), vision_config=TINY_VISION)
    with pytest.raises(ValueError, match="model_type"):
        EMRRGConfig(text_config={"hidden_size": 32})
    with pytest.raises(ValueError, match="hybrid_layer_interval"):
        EMRRGConfig(text_config=TEXT_CONFIGS["llama"], hybrid_layer_interval=3)
    with pytest.raises(ValueError, match="image_size"):
        XrayMambaConfig(image_size=200, patch_size=16)


def test_from_vision_text_pretrained_keeps_llm_and_roundtrips(tmp_path):
    torch.manual_seed(0)
    llm = AutoModelForCausalLM.from_config(AutoConfig.for_model(**TEXT_CONFIGS["qwen2"]))
    llm.save_pretrained(tmp_path / "llm")
    vision = XrayMambaModel(XrayMambaConfig(**TINY_VISION))
    vision.save_pretrained(tmp_path / "vision")
    model = EMRRGForConditionalGeneration.from_vision_text_pretrained(
        str(tmp_path / "vision"), str(tmp_path / "llm"), image_token_id=IMAGE_TOKEN_ID, hybrid_layer_interval=2
    )
    assert [type(m).__name__ for m in model.hybrid_attentions] == ["EMRRGHybridQwen2Attention"]  # layer 0 of 0, 1
    llm_weights = dict(llm.named_parameters())
    for name, parameter in model.language_model.named_parameters():
        if "gated_cross_attn" not in name:
            assert torch.equal(parameter, llm_weights[name]), name  # same names as in the LLM
    assert torch.equal(model.vision_model.embeddings.position_embeddings, vision.embeddings.position_embeddings)
    randomize_gates(model)
    model.save_pretrained(tmp_path / "emrrg")
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path / "emrrg").eval()
    assert isinstance(reloaded, EMRRGForConditionalGeneration)
    assert isinstance(AutoModel.from_config(reloaded.config), EMRRGForConditionalGeneration)
    ids, pixels = prompt_ids(1, reloaded.config.num_image_tokens), torch.randn(1, 3, 32, 32)
    assert torch.equal(
        model.eval()(input_ids=ids, pixel_values=pixels).logits, reloaded(input_ids=ids, pixel_values=pixels).logits
    )
    with pytest.raises(ValueError, match="hidden_size"):
        wider = EMRRGConfig(
            text_config=dict(TEXT_CONFIGS["llama"], hidden_size=64),
            vision_config=TINY_VISION,
            hybrid_layer_interval=1,
            image_token_id=IMAGE_TOKEN_ID,
        )
        EMRRGForConditionalGeneration(wider, language_model=llm)


def test_gpt2_tied_embeddings_survive_save_load(tmp_path):
    torch.manual_seed(0)
    model = EMRRGForConditionalGeneration(tiny_config("gpt2")).eval()
    randomize_gates(model)
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert reloaded.language_model.lm_head.weight is reloaded.language_model.transformer.wte.weight
    ids, pixels = prompt_ids(1, 5), torch.randn(1, 3, 32, 32)
    assert torch.equal(
        model(input_ids=ids, pixel_values=pixels).logits, reloaded(input_ids=ids, pixel_values=pixels).logits
    )


def test_generate_never_emits_the_image_token_when_it_is_in_the_vocabulary():
    torch.manual_seed(0)
    in_vocab = 50
    config = EMRRGConfig(
        text_config=TEXT_CONFIGS["llama"], vision_config=TINY_VISION, hybrid_layer_interval=1, image_token_id=in_vocab
    )
    model = EMRRGForConditionalGeneration(config).eval()
    assert in_vocab in model.generation_config.suppress_tokens
    with torch.no_grad():  # make <image> the most likely next token everywhere
        model.get_output_embeddings().weight[in_vocab] = 50 * model.get_output_embeddings().weight.abs().max()
    ids = torch.tensor([[3] + [in_vocab] * config.num_image_tokens + [4, 5]])
    out = model.generate(
        input_ids=ids,
        pixel_values=torch.randn(1, 3, 32, 32),
        max_new_tokens=4,
        min_new_tokens=4,
        num_beams=2,
        do_sample=False,
    )
    assert not (out[:, ids.shape[1] :] == in_vocab).any()


def test_default_config_builds_and_round_trips(tmp_path):
    config = EMRRGConfig()
    assert config.hybrid_layer_indices == [0]  # the authors' range(0, layers, 8) on the default 8-layer LLM
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)

    def without_path(c):
        return {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}

    assert isinstance(reloaded, EMRRGConfig) and without_path(reloaded) == without_path(config)


def test_token_ids_are_checked_against_the_llm_vocabulary():
    config = tiny_config()
    model = EMRRGForConditionalGeneration(config).eval()
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    # labels = input_ids is the usual Hugging Face pattern: the <image> placeholders (id 60, outside the vocabulary
    # of 60) are accepted there and become -100
    assert torch.isfinite(model(input_ids=ids, pixel_values=pixels, labels=ids).loss)
    with pytest.raises(
        ValueError, match=r"input_ids: token ids \[1003, 1004, .*\] are outside the vocabulary \[0, 60\)"
    ):
        model(input_ids=ids + 1000 * (ids != IMAGE_TOKEN_ID), pixel_values=pixels)
    with pytest.raises(ValueError, match="labels: expected integer token ids"):
        model(input_ids=ids, pixel_values=pixels, labels=ids.float())
    with pytest.raises(ValueError, match=r"labels: expected shape \(2, 9\)"):
        model(input_ids=ids, pixel_values=pixels, labels=ids[:, :3])


@pytest.mark.parametrize("family", sorted(TEXT_CONFIGS))
def test_shift_labels_give_the_loss_of_labels_and_change_it(family):
    """Pre-shifted targets (sequence/context parallelism) are read: same loss as ``labels``, other targets differ."""
    torch.manual_seed(0)
    config = tiny_config(family)
    model = EMRRGForConditionalGeneration(config).eval()
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    shifted = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1)
    with torch.no_grad():
        from_labels = model(input_ids=ids, pixel_values=pixels, labels=ids).loss
        from_shifted = model(input_ids=ids, pixel_values=pixels, shift_labels=shifted).loss
        other = model(
            input_ids=ids,
            pixel_values=pixels,
            shift_labels=shifted.masked_fill(shifted == IMAGE_TOKEN_ID, -100).roll(1, dims=1),
        ).loss
    torch.testing.assert_close(from_shifted, from_labels)
    assert not torch.allclose(other, from_labels)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_a_stock_llm_checkpoint_loads_under_the_base_model_prefix(family, tmp_path):
    """``base_model_prefix`` names where EMRRG keeps its base model, the LLM: transformers' loader prepends it to a
    stock LLM checkpoint's keys, so ``from_pretrained(llm_folder, config=...)`` gives the LLM's weights under
    ``language_model.*``, the new parts initialised (gates closed) and, before any image, the LLM's own logits."""
    torch.manual_seed(0)
    config = tiny_config(family)
    llm = AutoModelForCausalLM.from_config(config.text_config).eval()
    llm.save_pretrained(tmp_path)
    model, info = EMRRGForConditionalGeneration.from_pretrained(tmp_path, config=config, output_loading_info=True)
    assert model.base_model is model.language_model
    assert not info["unexpected_keys"]
    missing_in_llm = [key for key in info["missing_keys"] if key.startswith("language_model.")]
    assert missing_in_llm and all(".gated_cross_attn." in key for key in missing_in_llm)
    assert any(key.startswith("vision_model.") for key in info["missing_keys"])
    loaded = model.language_model.state_dict()
    for key, tensor in llm.state_dict().items():
        torch.testing.assert_close(loaded[key], tensor, rtol=0, atol=0, msg=key)
    for attention in model.hybrid_attentions:
        assert not torch.any(attention.gated_cross_attn.gate.weight)
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(input_ids=ids).logits, llm(ids).logits, rtol=0, atol=0)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_weights_missing_from_a_checkpoint_are_initialised_as_in_a_fresh_model(family, monkeypatch):
    """Built on the meta device with no weights at all (``from_pretrained(None, state_dict={})``), every tensor is
    initialised as a freshly built model's, each module's initialisation seeded alike (transformers' own check, which
    4.57 runs only for models with a 2023+ copyright header). GPT-2 scales ``c_proj`` in its attention and MLP
    modules, which hold no parameters of their own: they must be initialised under GPT-2's rules."""
    from transformers import PreTrainedModel

    initialize = PreTrainedModel._initialize_weights

    def seeded(self, module, *args, **kwargs):
        torch.manual_seed(0)
        initialize(self, module, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "_initialize_weights", seeded)
    config = tiny_config(family)
    fresh = EMRRGForConditionalGeneration(copy.deepcopy(config)).state_dict()
    empty = EMRRGForConditionalGeneration.from_pretrained(None, config=copy.deepcopy(config), state_dict={})
    loaded = empty.state_dict()
    assert sorted(loaded) == sorted(fresh)
    assert not any(tensor.is_meta for tensor in loaded.values())
    assert [key for key, tensor in fresh.items() if not torch.equal(tensor, loaded[key])] == []
