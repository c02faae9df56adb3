"""RRG-Mamba model: save/load, Auto classes, KV-cached generation, attentions, losses, ablations, bad input."""

import json

import pytest
import torch
from conftest import GRID
from conftest import RRG_MAMBA_LABELS as LABELS
from conftest import rrg_mamba_images as images
from conftest import tiny_rrg_mamba as tiny_model
from conftest import tiny_rrg_mamba_config as tiny_config
from transformers import AutoConfig, AutoModel, AutoModelForImageTextToText, EncoderDecoderCache

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration


def test_save_load_round_trip_and_auto_classes(tmp_path):
    model = tiny_model()
    pixel_values = images()
    with torch.no_grad():
        logits = model(pixel_values=pixel_values, labels=LABELS).logits
    beams = model.generate(pixel_values, num_beams=3, max_new_tokens=6)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), RRGMambaConfig)
    for loader in (RRGMambaForConditionalGeneration, AutoModel, AutoModelForImageTextToText):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, RRGMambaForConditionalGeneration)
        with torch.no_grad():
            torch.testing.assert_close(loaded(pixel_values=pixel_values, labels=LABELS).logits, logits, rtol=0, atol=0)
        assert torch.equal(loaded.generate(pixel_values, num_beams=3, max_new_tokens=6), beams)


class _DecoderInputRecorder:
    """Records the decoder input length of every forward call and counts visual-extractor runs."""

    def __init__(self, model):
        self.decoder_lengths, self.encoder_calls = [], 0
        model.decoder.register_forward_pre_hook(self._decoder, with_kwargs=False)
        model.encoder.visual_extractor.register_forward_hook(self._encoder)

    def _decoder(self, module, args):
        self.decoder_lengths.append(args[0].shape[1])

    def _encoder(self, module, args, output):
        self.encoder_calls += 1


@pytest.mark.parametrize("num_beams", [1, 3])
def test_kv_cache_is_used_and_matches_no_cache(num_beams):
    model = tiny_model()
    # Forbid <eos> so every run takes all steps and compares full-length outputs.
    settings = dict(
        num_beams=num_beams,
        max_new_tokens=7,
        suppress_tokens=[model.config.eos_token_id],
        output_scores=True,
        return_dict_in_generate=True,
    )
    recorder = _DecoderInputRecorder(model)
    cached = model.generate(images(), use_cache=True, **settings)
    assert recorder.encoder_calls == 1  # encoder (prefill) once per generate, not per step
    assert recorder.decoder_lengths == [1] * 7  # one new token per step: the past came from the cache
    assert isinstance(cached.past_key_values, EncoderDecoderCache)
    assert cached.past_key_values.get_seq_length() == 7
    recorder.decoder_lengths.clear()
    uncached = model.generate(images(), use_cache=False, **settings)
    assert recorder.decoder_lengths == list(range(1, 8))  # without a cache the whole prefix is re-run
    assert torch.equal(cached.sequences, uncached.sequences)
    for with_cache, without_cache in zip(cached.scores, uncached.scores):
        torch.testing.assert_close(with_cache, without_cache, rtol=1e-4, atol=1e-4)


def test_generate_continues_a_decoder_prefix_as_greedy_decoding_would():
    model = tiny_model()
    settings = dict(do_sample=False, suppress_tokens=[model.config.eos_token_id])
    from_bos = model.generate(images(), max_new_tokens=6, **settings)
    assert (from_bos[:, 0] == model.config.decoder_start_token_id).all()
    for use_cache in (True, False):  # the 3-token prefix is prefilled at once, then decoding goes on from it
        continued = model.generate(
            images(), decoder_input_ids=from_bos[:, :3], max_new_tokens=4, use_cache=use_cache, **settings
        )
        assert torch.equal(continued, from_bos)


def test_sampling_and_num_return_sequences_with_cache():
    model = tiny_model()
    settings = dict(do_sample=True, top_k=0, num_return_sequences=3, max_new_tokens=6)
    torch.manual_seed(7)
    cached = model.generate(images(), use_cache=True, **settings)
    torch.manual_seed(7)
    uncached = model.generate(images(), use_cache=False, **settings)
    assert cached.shape[0] == 6
    assert torch.equal(cached, uncached)
    beams = model.generate(images(), num_beams=3, num_return_sequences=3, max_new_tokens=6)
    assert beams.shape[0] == 6


def test_output_attentions_gives_cross_attention_over_image_tokens():
    model = tiny_model()
    out = model.generate(
        images(batch=1),
        num_beams=1,
        max_new_tokens=4,
        suppress_tokens=[2],
        output_attentions=True,
        return_dict_in_generate=True,
    )
    tokens = 2 * (1 + GRID * GRID)  # two views, each a global token and a 2 x 2 grid
    assert len(out.cross_attentions) == 4  # one entry per generated word
    for step in out.cross_attentions:
        assert len(step) == model.config.decoder_layers
        assert step[-1].shape == (1, model.config.num_attention_heads, 1, tokens)
        torch.testing.assert_close(step[-1].sum(-1), torch.ones(1, model.config.num_attention_heads, 1))


def test_loss_terms_are_exposed_and_combined():
    model = tiny_model()
    observation_labels = torch.tensor([[1.0] * 7 + [0.0] * 7, [-1.0] * 14])  # second study: all uncertain
    out = model(pixel_values=images(), labels=LABELS, observation_labels=observation_labels)
    config = model.config
    expected = (
        out.report_loss
        + config.observation_loss_weight * out.observation_loss
        + config.consistency_loss_weight * out.consistency_loss
    )
    torch.testing.assert_close(out.loss, expected)
    assert out.observation_logits.shape == (2, 14)
    only_first = torch.nn.functional.binary_cross_entropy_with_logits(out.observation_logits[0], observation_labels[0])
    torch.testing.assert_close(out.observation_loss, only_first)
    out.loss.backward()
    gdlm_grad = sum(p.grad.abs().sum() for p in model.encoder.gdlm.parameters() if p.grad is not None)
    assert gdlm_grad > 0  # the GDLM sits on the path to the loss
    without_cma = tiny_model(use_cma=False)(
        pixel_values=images(), labels=LABELS, observation_labels=observation_labels
    )
    assert without_cma.observation_loss is None and without_cma.consistency_loss is None
    torch.testing.assert_close(without_cma.loss, without_cma.report_loss)


def test_consistency_loss_pulls_attention_toward_foreground_map():
    from modeling_rrg_mamba.rrg_mamba.modeling_rrg_mamba import consistency_loss

    foreground = torch.tensor([[0.0, 1.0, 0.0]])
    states = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.0, -1.0]]])
    token = torch.tensor([[1.0, 0.0]])
    labels = torch.tensor([[4, 5, 6, -100]])  # three words; k = 0.5 keeps ceil(1.5) = 2: positions 0 and 2
    attention = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])
    loss = consistency_loss(attention, states, foreground, token, labels, word_ratio=0.5)
    torch.testing.assert_close(loss, torch.tensor((0.0 + 0.5) / 2))  # word 2: 0.25 + 0.25


def _parameter_count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "switch, removed",
    [("use_gdlm", "encoder.gdlm."), ("use_dpb", ".position_bias"), ("use_cma", None), ("use_rope", None)],
)
def test_ablation_switches_change_parameters_and_output(switch, removed):
    full = tiny_model()
    with torch.no_grad():  # unit-gain weights and GDLM branch gains instead of the std-0.02 and zero starts
        for module in full.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.normal_(0.0, module.in_features**-0.5)
        for block in full.encoder.gdlm.blocks:
            for scale in block.branch_scales():
                scale.weight.fill_(1.0)
    ablated = RRGMambaForConditionalGeneration(tiny_config(**{switch: False})).eval()
    missing, unexpected = ablated.load_state_dict(full.state_dict(), strict=False)
    assert not missing  # every remaining weight is shared with the full model
    full_names = dict(full.named_parameters())
    removed_count = sum(full_names[name].numel() for name in unexpected)
    assert _parameter_count(full) - _parameter_count(ablated) == removed_count
    if switch == "use_rope":
        assert removed_count == 0  # RoPE has no parameters
    elif switch == "use_cma":
        assert set(unexpected) == {
            "encoder.observation_head.classifier.weight",
            "encoder.observation_head.classifier.bias",
            "adapter_projection.weight",
            "adapter_projection.bias",
        }
    else:
        assert unexpected and all(removed in name for name in unexpected)
    with torch.no_grad():
        full_out = full(pixel_values=images(), labels=LABELS)
        ablated_out = ablated(pixel_values=images(), labels=LABELS)
    logits_change = (full_out.logits - ablated_out.logits).norm() / full_out.logits.norm()
    assert logits_change > 1e-2
    memory_change = (full_out.encoder_last_hidden_state - ablated_out.encoder_last_hidden_state).norm()
    relative = memory_change / full_out.encoder_last_hidden_state.norm()
    if switch == "use_cma":
        assert relative == 0  # the adapter acts after the encoder
    else:
        assert relative > 1e-2  # the visual switches change the memory the decoder reads


def test_gdlm_presets_and_paper_size_configuration():
    from modeling_rrg_mamba.rrg_mamba import GDLM_PRESETS

    assert RRGMambaConfig(gdlm_preset="tiny").gdlm_depth == GDLM_PRESETS["tiny"]["gdlm_depth"]
    base = RRGMambaConfig(gdlm_preset="base")
    assert (base.gdlm_dim, base.gdlm_depth, base.gdlm_mlp_ratio) == (384, 21, 3.0)  # MLLA-B stage 3, fitted ratio
    assert RRGMambaConfig().gdlm_preset == "base"
    assert RRGMambaConfig(gdlm_preset="base", gdlm_mlp_ratio=4.0).gdlm_mlp_ratio == 4.0  # explicit values win
    assert RRGMambaConfig(gdlm_preset=None, gdlm_dim=8, gdlm_depth=1).gdlm_mlp_ratio == 4.0
    with pytest.raises(ValueError, match="gdlm_preset"):
        RRGMambaConfig(gdlm_preset="huge")


def test_single_view_and_vit_backbone():
    model = tiny_model()
    assert model.generate(images()[:, 0], max_new_tokens=3).shape[0] == 2
    vit = tiny_model(visual_extractor="test_vit", backbone_kwargs={"img_size": 64})
    out = vit(pixel_values=torch.randn(1, 3, 64, 64), labels=LABELS[:1])
    patches = (64 // vit.encoder.visual_extractor.backbone.patch_embed.patch_size[0]) ** 2
    assert out.encoder_last_hidden_state.shape[1] == 1 + patches


def test_bad_inputs_raise_clear_errors():
    model = tiny_model()
    with pytest.raises(ValueError, match="pixel_values: expected"):
        model(pixel_values=torch.randn(3, 64, 64), labels=LABELS[:1])
    with pytest.raises(ValueError, match="3 channels"):
        model(pixel_values=torch.randn(2, 2, 1, 64, 64), labels=LABELS)
    with pytest.raises(ValueError, match="batch 2 does not match the images' batch 3"):
        model(pixel_values=torch.randn(3, 3, 64, 64), labels=LABELS)
    with pytest.raises(ValueError, match="labels: expected"):
        model(pixel_values=images(), labels=torch.zeros(2, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="observation_labels: expected shape"):
        model(pixel_values=images(), labels=LABELS, observation_labels=torch.zeros(2, 13))
    with pytest.raises(ValueError, match="pixel_values"):
        model.generate(torch.randn(2, 2, 2, 3, 64, 64), max_new_tokens=2)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients():
    """GDLM blocks and encoder / decoder layers recompute their activations in backward, with equal results."""
    grads = []
    for checkpointing in (False, True):
        model = tiny_model().train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert all(
                layer.gradient_checkpointing for layer in model.modules() if hasattr(layer, "gradient_checkpointing")
            )
        loss = model(pixel_values=images(), labels=LABELS).loss
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    assert grads[1][1].keys() == grads[0][1].keys() and len(grads[0][1]) > 0
    for name, grad in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][name], grad, rtol=1e-5, atol=1e-7, msg=name)


# ---------------------------------------------------------------------------------------------------------------
# Issue 13: the paper's size, decoding settings and attention; issue 19: return_dict, missing weights, base_model
# ---------------------------------------------------------------------------------------------------------------


def test_default_parameter_count_matches_paper():
    """Paper Table 3: 66.56 M parameters with DenseNet-121; the default configuration is within 2 %."""
    from modeling_rrg_mamba.rrg_mamba.configuration_rrg_mamba import PAPER_PARAMETERS

    with torch.device("meta"):
        model = RRGMambaForConditionalGeneration(RRGMambaConfig())
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert abs(count - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.02, count
    assert model.encoder.visual_extractor.num_features == 1024  # DenseNet-121's last feature map


def test_new_gdlm_is_the_identity():
    """Every GDLM residual branch has a zero gain, so a new GDLM maps v_S to itself (issues 13 and 24), while the
    branches themselves start random (so the report loss reaches each gain from the first step)."""
    model = tiny_model(gdlm_depth=2)
    grid = model.encoder.grid_norm(torch.randn(2, GRID, GRID, model.config.gdlm_dim))
    with torch.no_grad():
        torch.testing.assert_close(model.encoder.gdlm(grid), grid, rtol=1e-5, atol=1e-5)
    for block in model.encoder.gdlm.blocks:
        assert len(block.branch_scales()) == 4 and all(
            scale.weight.abs().sum() == 0 for scale in block.branch_scales()
        )
        assert block.ss2d.in_proj.weight.std() > 0.01 and block.ss2d.conv2d.weight.std() > 0.01
        assert block.ss2d.out_proj.weight.std() > 0.01 and block.mlp[-1].weight.std() > 0.01


def test_generation_config_carries_the_recipe_decoding(tmp_path):
    model = tiny_model(generation_num_beams=3, generation_max_length=7)
    assert (model.generation_config.num_beams, model.generation_config.max_new_tokens) == (3, 7)
    pixel_values = images()
    expected = model.generate(pixel_values, num_beams=3, max_new_tokens=7, min_new_tokens=0)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "generation_config.json").read_text())
    assert (saved["num_beams"], saved["max_new_tokens"]) == (3, 7)
    loaded = RRGMambaForConditionalGeneration.from_pretrained(tmp_path).eval()
    out = loaded.generate(pixel_values)
    assert torch.equal(out, expected)
    batches = []
    loaded.decoder.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    assert loaded.generate(pixel_values, suppress_tokens=[2]).shape[1] == 1 + 7  # <bos> + max_new_tokens
    assert set(batches) == {2 * 3}  # three beams per study
    assert loaded.generate(pixel_values, max_length=4, suppress_tokens=[2]).shape[1] == 4  # the caller's length wins


def test_sdpa_is_the_default_and_matches_eager(tmp_path, monkeypatch):
    model = tiny_model()
    assert model.config._attn_implementation == "sdpa" and model._supports_sdpa
    model.save_pretrained(tmp_path)
    eager = RRGMambaForConditionalGeneration.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])  # a left-padded decoder input
    with torch.no_grad():
        fast = model(pixel_values=images(), labels=LABELS, decoder_attention_mask=mask)
        sdpa_calls = len(calls)
        slow = eager(pixel_values=images(), labels=LABELS, decoder_attention_mask=mask)
    assert sdpa_calls > 0 and len(calls) == sdpa_calls  # eager never calls SDPA
    torch.testing.assert_close(fast.logits, slow.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast.loss, slow.loss, rtol=1e-5, atol=1e-5)
    assert torch.equal(
        model.generate(images(), num_beams=3, max_new_tokens=6),
        eager.generate(images(), num_beams=3, max_new_tokens=6),
    )
    with torch.no_grad():  # attention maps are still available with SDPA (computed eagerly when asked for)
        attentions = model(pixel_values=images(), labels=LABELS, decoder_attention_mask=mask, output_attentions=True)
    assert len(attentions.cross_attentions) == model.config.decoder_layers
    assert len(attentions.encoder_attentions) == model.config.encoder_layers
    torch.testing.assert_close(attentions.logits, slow.logits, rtol=1e-5, atol=1e-5)


def test_sdpa_and_eager_gradients_match():
    torch.manual_seed(0)
    grads = []
    for implementation in ("sdpa", "eager"):
        model = tiny_model(use_cma=False).train()
        model.config._attn_implementation = implementation
        model(pixel_values=images(), labels=LABELS).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grad, grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("use_cma", [True, False])
def test_return_dict_false_is_honoured(use_cma):
    model = tiny_model(use_cma=use_cma)
    with torch.no_grad():
        encoded = model.encoder(images(), output_hidden_states=True, return_dict=False)
        assert isinstance(encoded, tuple)
        assert len(encoded) == (4 if use_cma else 1) + 1  # memory, CMA fields, hidden states
        as_dict = model.encoder(images(), output_hidden_states=True)
        assert not isinstance(as_dict, tuple)
        torch.testing.assert_close(encoded[0], as_dict.last_hidden_state)
        reference = model(pixel_values=images(), labels=LABELS)
        from_tuple = model(encoder_outputs=encoded, labels=LABELS)
        torch.testing.assert_close(from_tuple.logits, reference.logits)
        torch.testing.assert_close(from_tuple.loss, reference.loss)
        as_tuple = model(pixel_values=images(), labels=LABELS, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], reference.loss)
    torch.testing.assert_close(as_tuple[1], reference.logits)
    model.config.return_dict = False
    with torch.no_grad():
        assert isinstance(model.encoder(images()), tuple)


def test_base_model_is_the_model_itself():
    model = tiny_model()
    assert model.base_model is model
    assert not hasattr(model, model.base_model_prefix)
    assert not any(key.startswith(model.base_model_prefix + ".") for key in model.state_dict())


def test_weights_missing_from_a_checkpoint_are_initialised(tmp_path):
    """Delete one tensor of every module type from a saved checkpoint: on load each is finite and initialised as a
    new model initialises it; every tensor still in the checkpoint keeps its saved value."""
    from safetensors.torch import load_file, save_file

    model = tiny_model()
    model.save_pretrained(tmp_path)
    state = load_file(tmp_path / "model.safetensors")
    block = "encoder.gdlm.blocks.0."
    missing = {
        block + "conv.weight": "conv",
        block + "conv.bias": "small",  # GDLM v_con depthwise conv
        block + "conv_scale.weight": "zero",  # the branch gains: zero, so a new block is the identity
        block + "ss2d_scale.weight": "zero",
        block + "mlp_scale.weight": "zero",
        block + "position_bias_scale.weight": "zero",
        block + "ss2d.conv2d.weight": "conv",
        block + "ss2d.conv2d.bias": "small",  # SS2D depthwise conv
        block + "ss2d.out_proj.weight": "normal",
        block + "mlp.2.weight": "normal",
        block + "ss2d.in_proj.weight": "normal",
        block + "ss2d.ssm.A_log": "a_log",
        block + "ss2d.ssm.D": "one",
        block + "ss2d.ssm.x_proj_weight": "small",
        block + "ss2d.ssm.dt_proj_bias": "finite",
        block + "position_bias.mlp.0.weight": "normal",
        block + "position_bias.mlp.1.weight": "one",
        block + "norm.weight": "one",
        block + "norm.bias": "zero",
        "encoder.gdlm.norm.weight": "one",
        "encoder.visual_extractor.backbone.conv1.weight": "conv",
        "encoder.visual_extractor.backbone.bn1.weight": "one",
        "encoder.visual_extractor.backbone.bn1.bias": "zero",
        "encoder.visual_extractor.backbone.bn1.running_var": "one",
        "encoder.visual_extractor.backbone.bn1.running_mean": "zero",
        "encoder.observation_head.classifier.weight": "normal",
        "encoder.layers.0.self_attn.q_proj.weight": "normal",
        "decoder.embed_tokens.weight": "normal",
        "lm_head.weight": "normal",
        "lm_head.bias": "zero",
        "adapter_projection.weight": "normal",
        "decoder.layers.0.cross_attn_norm.weight": "one",
    }
    assert set(missing) <= set(state), sorted(set(missing) - set(state))
    save_file(
        {k: v for k, v in state.items() if k not in missing}, tmp_path / "model.safetensors", metadata={"format": "pt"}
    )
    loaded = RRGMambaForConditionalGeneration.from_pretrained(tmp_path)
    tensors = loaded.state_dict()
    for key, value in state.items():
        if key not in missing:
            assert torch.equal(tensors[key], value), key
    for key, kind in missing.items():
        tensor = tensors[key].float()
        assert torch.isfinite(tensor).all(), key
        if kind == "zero":
            assert tensor.abs().max() == 0, key
        elif kind == "one":
            assert torch.equal(tensor, torch.ones_like(tensor)), key
        elif kind == "a_log":
            expected = torch.log(torch.arange(1, tensor.shape[-1] + 1, dtype=torch.float32)).expand_as(tensor)
            torch.testing.assert_close(tensor, expected, msg=key)
        elif kind == "normal":
            assert 0.01 < tensor.std() < 0.03 and tensor.mean().abs() < 0.01, (key, tensor.std())
        elif kind == "conv":
            assert 0.02 < tensor.std() < 2.0, (key, tensor.std())
        elif kind == "small":
            assert 0 < tensor.abs().max() <= 1.0, key
    assert loaded.decoder.embed_tokens.weight[loaded.config.pad_token_id].abs().max() == 0
    with torch.no_grad():
        assert torch.isfinite(loaded(pixel_values=images(), labels=LABELS).logits).all()


def test_pretrained_backbone_offline_fails_at_once_naming_the_flag_and_backbone(monkeypatch):
    """HF_HUB_OFFLINE with no cached ImageNet weights: one clear OSError, no generic hub error, no retries."""
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", "/nonexistent-rrg-mamba-cache")  # nothing cached
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", "/nonexistent-rrg-mamba-cache/hub")
    with pytest.raises(OSError, match=r"pretrained_backbone=True.*'resnet18'.*HF_HUB_OFFLINE"):
        RRGMambaForConditionalGeneration(tiny_config(pretrained_backbone=True, backbone_kwargs={}))


@pytest.mark.parametrize(
    "labels, message",
    [
        (LABELS[:1].float(), "labels: expected integer token ids, got dtype torch.float32"),
        (torch.tensor([[5, 99999, 2]]), r"labels: token ids \[99999\] are outside the vocabulary \[0, 24\)"),
        (torch.tensor([[5, -7, 2]]), r"labels: token ids \[-7\] are outside the vocabulary"),
    ],
    ids=["float", "too-large", "negative"],
)
def test_token_ids_outside_the_vocabulary_are_named(labels, message):
    with pytest.raises(ValueError, match=message):
        tiny_model()(pixel_values=images(batch=1), labels=labels)


def test_padding_label_minus_100_is_accepted():
    assert torch.isfinite(tiny_model()(pixel_values=images(), labels=LABELS).loss)


@pytest.mark.parametrize("tied", [False, True])
def test_resize_token_embeddings_keeps_the_head_in_step(tied, tmp_path):
    """Resizing grows or shrinks the decoder's word embedding, the output layer (weight and bias) and
    ``config.vocab_size`` together; ``tie_word_embeddings`` ties the output weight to the embedding through save /
    load and resize, and the default (R2Gen's) keeps them apart."""
    model = tiny_model(tie_word_embeddings=tied)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) is tied
    model.save_pretrained(tmp_path)
    reloaded = RRGMambaForConditionalGeneration.from_pretrained(tmp_path)
    assert (reloaded.lm_head.weight is reloaded.decoder.embed_tokens.weight) is tied
    torch.testing.assert_close(reloaded.lm_head.weight, model.lm_head.weight, rtol=0, atol=0)
    for size in (31, 17):
        embeddings = reloaded.resize_token_embeddings(size)
        head = reloaded.get_output_embeddings()
        assert embeddings.weight.shape[0] == head.weight.shape[0] == head.bias.shape[0] == size
        assert reloaded.config.vocab_size == size
        assert (head.weight is embeddings.weight) is tied
        ids = torch.tensor([[1, size - 1, 2]])
        logits = reloaded(pixel_values=images(batch=1), decoder_input_ids=ids).logits
        assert logits.shape == (1, 3, size)
