"""The converter from the EMRRG authors' checkpoints, checked against an independent forward of their architecture.

The authors' modules are written out here from their definitions (module names and tensor shapes of the ARM
fine-tuning backbone ``arm_base_pz16`` with its Vim ``Mamba`` mixer, bimamba "v3", and of ``MambaXrayVL_DownStream``):
random tensors in their layout, their forward with a sequential (one time step at a time) selective scan, and the
converted model must agree to 1e-5. Nothing here imports the package's layers for the reference.
"""

from __future__ import annotations

import argparse
import math
import os
import site
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import TEXT_CONFIGS, reference_scan, tiny_tokenizer
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from modeling_rrg_mamba.cli import main as cli_main
from modeling_rrg_mamba.emrrg import (
    EMRRGForConditionalGeneration,
    UnmappedKeysError,
    XrayMambaModel,
    convert_emrrg_checkpoint,
    convert_xray_mamba_checkpoint,
)

HIDDEN, DEPTH, IMAGE, PATCH, D_STATE, D_CONV, DT_RANK = 32, 2, 32, 8, 4, 4, 2
FOUR_ROUTES = ("", "_b", "_c", "_c_b")


class AuthorsMamba(nn.Module):
    """Vim's ``Mamba`` (ARM ``mamba_simple.py``) with expand 1: shared in/out_proj, per-route conv and S6 tensors."""

    def __init__(self, routes: tuple[str, ...]) -> None:
        super().__init__()
        self.routes = routes
        self.in_proj = nn.Linear(HIDDEN, 2 * HIDDEN, bias=False)
        for s in routes:
            setattr(self, f"conv1d{s}", nn.Conv1d(HIDDEN, HIDDEN, D_CONV, groups=HIDDEN, padding=D_CONV - 1))
            setattr(self, f"x_proj{s}", nn.Linear(HIDDEN, DT_RANK + 2 * D_STATE, bias=False))
            setattr(self, f"dt_proj{s}", nn.Linear(DT_RANK, HIDDEN))
            self.register_parameter(f"A{s}_log", nn.Parameter(torch.zeros(HIDDEN, D_STATE)))
            self.register_parameter(f"D{s}", nn.Parameter(torch.ones(HIDDEN)))
        self.out_proj = nn.Linear(HIDDEN, HIDDEN, bias=False)

    def route(self, xz: torch.Tensor, s: str) -> torch.Tensor:
        """Their ``mamba_inner_fn_no_out_proj``: conv + SiLU, x_proj, dt_proj, scan, times ``SiLU(z)``."""
        x, z = xz.chunk(2, dim=1)
        length = x.shape[-1]
        x = F.silu(getattr(self, f"conv1d{s}")(x)[..., :length])
        dt, b, c = getattr(self, f"x_proj{s}")(x.transpose(1, 2)).split([DT_RANK, D_STATE, D_STATE], dim=-1)
        dt_proj = getattr(self, f"dt_proj{s}")
        delta = dt_proj.weight @ dt.transpose(1, 2)
        a = -torch.exp(getattr(self, f"A{s}_log"))
        y, _ = reference_scan(
            x, delta, a, b.transpose(1, 2), c.transpose(1, 2), getattr(self, f"D{s}"), z, dt_proj.bias, True
        )
        return y

    @staticmethod
    def transpose_patches(t: torch.Tensor) -> torch.Tensor:
        """Their column route: take the middle class token out, transpose the patch grid, put it back."""
        batch, dim, length = t.shape
        middle, side = length // 2, math.isqrt(length - 1)
        cls, patches = t[..., middle : middle + 1], torch.cat([t[..., :middle], t[..., middle + 1 :]], dim=-1)
        patches = patches.reshape(batch, dim, side, side).transpose(-1, -2).reshape(batch, dim, -1)
        return torch.cat([patches[..., :middle], cls, patches[..., middle:]], dim=-1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        xz = self.in_proj(hidden_states).transpose(1, 2)
        out = self.route(xz, "")
        if "_b" in self.routes:
            out = out + self.route(xz.flip(-1), "_b").flip(-1)
        if "_c" in self.routes:
            xc = self.transpose_patches(xz)
            out_c = self.route(xc, "_c") + self.route(xc.flip(-1), "_c_b").flip(-1)
            out = out + self.transpose_patches(out_c)
        return self.out_proj((out / len(self.routes)).transpose(1, 2))


class AuthorsSwiGLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        width = HIDDEN * 4 * 2 // 3  # their dim*4*2//3 (85 here: not a multiple of 64)
        self.w1, self.w2, self.w3 = nn.Linear(HIDDEN, width), nn.Linear(HIDDEN, width), nn.Linear(width, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(F.silu(self.w1(x)) * self.w2(x))


class AuthorsBlock(nn.Module):
    def __init__(self, routes: tuple[str, ...]) -> None:
        super().__init__()
        self.mixer, self.mlp = AuthorsMamba(routes), AuthorsSwiGLU()
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.mixer(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class AuthorsPatchEmbed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, HIDDEN, PATCH, stride=PATCH)


class AuthorsArm(nn.Module):
    """ARM's fine-tuning model: middle class token, learned positions added after it is inserted, all tokens out."""

    def __init__(self, routes: tuple[str, ...] = FOUR_ROUTES) -> None:
        super().__init__()
        patches = (IMAGE // PATCH) ** 2
        self.patch_embed = AuthorsPatchEmbed()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, HIDDEN))
        self.pos_embed = nn.Parameter(torch.zeros(1, patches + 1, HIDDEN))
        self.layers = nn.ModuleList(AuthorsBlock(routes) for _ in range(DEPTH))
        self.norm_f = nn.LayerNorm(HIDDEN)
        self.head = nn.Linear(HIDDEN, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        middle = x.shape[1] // 2
        x = torch.cat([x[:, :middle], self.cls_token.expand(x.shape[0], -1, -1), x[:, middle:]], dim=1)
        x = x + self.pos_embed
        for layer in self.layers:
            x = layer(x)
        return self.norm_f(x)


def randomized(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random values everywhere (A_log kept the log of positive numbers; norms near identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if name.rsplit(".", 1)[-1].startswith("A") and name.endswith("_log"):
                parameter.copy_(torch.log(1 + torch.rand(parameter.shape, generator=generator) * 4))
            elif "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.1 * noise)
            else:
                parameter.copy_(0.3 * noise)
    return module.eval()


def lora_x_keys(prefix: str = "") -> dict[str, torch.Tensor]:
    """Their training-time LoRA_X adapters (``Adapter(d_model, d_inner // 2, dim_X)``), one per mixer."""
    keys = {}
    for i in range(DEPTH):
        keys[f"{prefix}layers.{i}.mixer.lora_X.adapter_down.weight"] = torch.randn(16, HIDDEN)
        keys[f"{prefix}layers.{i}.mixer.lora_X.adapter_up.weight"] = torch.randn(HIDDEN // 2, 16)
    return keys


def images(batch: int = 2, views: int | None = None, seed: int = 1) -> torch.Tensor:
    shape = (batch, 3, IMAGE, IMAGE) if views is None else (batch, views, 3, IMAGE, IMAGE)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("routes", [FOUR_ROUTES, ("", "_b"), ("",)], ids=["v3", "v2", "one-route"])
def test_backbone_matches_the_authors_forward(tmp_path, routes):
    authors = randomized(AuthorsArm(routes))
    state = {f"visual_encoder.{k}": v for k, v in authors.state_dict().items()}
    state.update(lora_x_keys("visual_encoder."))
    state["text_encoder.embeddings.weight"] = torch.randn(5, 4)  # the CLIP file's text side: not the backbone
    torch.save({"model": state}, tmp_path / "MambaXrayCLIP-B.pth")

    model, report = convert_xray_mamba_checkpoint(tmp_path / "MambaXrayCLIP-B.pth")

    assert model.config.intermediate_size == 85 and model.config.norm_type == "layer_norm"
    pixel_values = images()
    with torch.no_grad():
        expected = authors(pixel_values)
        actual = model(pixel_values).last_hidden_state
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    dropped = " ".join(report.dropped)
    assert "head.weight" in dropped and "lora_X" in dropped and "1 keys outside visual_encoder." in dropped


def test_converted_backbone_round_trips_through_save_pretrained(tmp_path):
    authors = randomized(AuthorsArm())
    model, _ = convert_xray_mamba_checkpoint(authors.state_dict())
    model.save_pretrained(tmp_path / "xray-mamba")
    reloaded = XrayMambaModel.from_pretrained(tmp_path / "xray-mamba")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images()).last_hidden_state, authors(images()), atol=1e-5, rtol=1e-5)


FRESH_BACKBONE_SCRIPT = """
import importlib.util, sys, torch
assert importlib.util.find_spec("modeling_rrg_mamba") is None, "modeling_rrg_mamba is importable"
from transformers import AutoModel
model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
with torch.no_grad():
    out = model(torch.load(sys.argv[2])).last_hidden_state
print(type(model).__module__.startswith("transformers_modules."), float((out - torch.load(sys.argv[3])).abs().max()))
"""


@pytest.mark.slow
def test_converted_backbone_folder_loads_without_the_package(tmp_path):
    """A fresh ``python -S`` (no editable-install .pth), outside the repository, offline: AutoModel with
    trust_remote_code builds the backbone from the folder's own code and computes the same tokens."""
    authors = randomized(AuthorsArm())
    model, _ = convert_xray_mamba_checkpoint(authors.state_dict())
    model.save_pretrained(tmp_path / "xray-mamba")
    torch.save(images(1), tmp_path / "pixels.pt")
    with torch.no_grad():
        torch.save(authors(images(1)), tmp_path / "expected.pt")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "HF_"))}
    env.update(PYTHONPATH=os.pathsep.join(site.getsitepackages()), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    argv = [str(tmp_path / name) for name in ("xray-mamba", "pixels.pt", "expected.pt")]
    done = subprocess.run(
        [sys.executable, "-S", "-c", FRESH_BACKBONE_SCRIPT, *argv],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    from_copied_code, difference = done.stdout.split()[-2:]
    assert from_copied_code == "True" and float(difference) < 1e-5


def test_every_unknown_key_is_named():
    state = randomized(AuthorsArm()).state_dict()
    state["layers.1.mixer.mystery_gate"] = torch.zeros(3)
    state["extra_head.weight"] = torch.zeros(3)
    with pytest.raises(UnmappedKeysError, match=r"layers\.1\.mixer\.mystery_gate.*extra_head\.weight"):
        convert_xray_mamba_checkpoint(state)


def test_a_missing_tensor_is_named():
    state = randomized(AuthorsArm()).state_dict()
    del state["layers.1.mixer.dt_proj_c.bias"]
    with pytest.raises(UnmappedKeysError, match=r"layers\.1\.mixer\.dt_proj_c\.bias: missing"):
        convert_xray_mamba_checkpoint(state)


def test_the_pre_training_layout_is_refused_with_the_reason():
    state = randomized(AuthorsArm()).state_dict()
    del state["cls_token"]
    with pytest.raises(UnmappedKeysError, match="pre-training checkpoint"):
        convert_xray_mamba_checkpoint(state)


def test_an_unrelated_state_dict_is_described_not_mistaken_for_pre_training():
    unrelated = {
        "encoder.conv.weight": torch.zeros(2),
        "encoder.conv.bias": torch.zeros(2),
        "fc.weight": torch.zeros(1),
    }
    with pytest.raises(
        UnmappedKeysError, match=r"not a supported checkpoint.*3 tensors: encoder\.\* \(2\), fc\.\* \(1\)$"
    ):
        convert_xray_mamba_checkpoint(unrelated)


def test_an_rrg_mamba_state_dict_is_recognised_as_needing_no_conversion():
    from conftest import tiny_rrg_mamba

    with pytest.raises(UnmappedKeysError, match="not a supported checkpoint.*looks like an RRG-Mamba model") as error:
        convert_xray_mamba_checkpoint(tiny_rrg_mamba().state_dict())
    assert "pre-training" not in str(error.value)


def test_a_file_with_python_objects_needs_allow_pickle(tmp_path):
    path = tmp_path / "with_settings.pth"
    torch.save({"model": randomized(AuthorsArm()).state_dict(), "config": argparse.Namespace(lora_X=True)}, path)
    with pytest.raises(ValueError, match="allow_pickle"):
        convert_xray_mamba_checkpoint(path)
    model, _ = convert_xray_mamba_checkpoint(path, allow_pickle=True)
    assert isinstance(model, XrayMambaModel)


@pytest.mark.parametrize("content", [b"", b"hello", b"PK\x03\x04 truncated zip"])
def test_a_damaged_file_is_named(tmp_path, content):
    path = tmp_path / "EMRRG-CXP.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"EMRRG-CXP\.pth: not a PyTorch checkpoint"):
        convert_xray_mamba_checkpoint(path, allow_pickle=True)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        convert_xray_mamba_checkpoint(tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------------------------------------
# The whole EMRRG model: their backbone + llama_proj + layer_norm + the (frozen, not saved) LLM it names
# ----------------------------------------------------------------------------------------------------------------

TEXT_HIDDEN = TEXT_CONFIGS["llama"]["hidden_size"]


@pytest.fixture
def text_model_dir(tmp_path):
    """A tiny Llama and a tokenizer in a folder, standing in for meta-llama/Llama-2-7b-chat-hf."""
    torch.manual_seed(3)
    config = AutoConfig.for_model(**TEXT_CONFIGS["llama"])
    folder = tmp_path / "llm"
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def authors_emrrg_state(authors: AuthorsArm, seed: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {f"visual_encoder.{k}": v for k, v in authors.state_dict().items()}
    state.update(lora_x_keys("visual_encoder."))
    state["llama_proj.weight"] = 0.3 * torch.randn(TEXT_HIDDEN, HIDDEN, generator=generator)
    state["llama_proj.bias"] = 0.3 * torch.randn(TEXT_HIDDEN, generator=generator)
    state["layer_norm.weight"] = 1 + 0.1 * torch.randn(TEXT_HIDDEN, generator=generator)
    state["layer_norm.bias"] = 0.1 * torch.randn(TEXT_HIDDEN, generator=generator)
    return state


def authors_logits(authors, state, llm, pixel_values, before, after):
    """``encode_img`` (views averaged) -> ``llama_proj`` -> ``layer_norm`` -> ``[embed(before), image, embed(after)]``
    -> the LLM, as ``MambaXrayVL_DownStream.forward`` / ``prompt_wrap``."""
    tokens = torch.stack([authors(pixel_values[:, v]) for v in range(pixel_values.shape[1])]).mean(0)
    tokens = F.linear(tokens, state["llama_proj.weight"], state["llama_proj.bias"])
    tokens = F.layer_norm(tokens, (TEXT_HIDDEN,), state["layer_norm.weight"], state["layer_norm.bias"])
    embed = llm.get_input_embeddings()
    batch = pixel_values.shape[0]
    inputs_embeds = torch.cat([embed(before).expand(batch, -1, -1), tokens, embed(after).expand(batch, -1, -1)], 1)
    return llm(inputs_embeds=inputs_embeds).logits


def test_emrrg_matches_the_authors_forward(text_model_dir):
    authors = randomized(AuthorsArm())
    state = authors_emrrg_state(authors)
    model, processor, report = convert_emrrg_checkpoint(state, text_model_dir, num_views=2)

    tokens_per_view = (IMAGE // PATCH) ** 2 + 1
    assert processor.image_seq_length == tokens_per_view and processor.image_processor.crop_size == IMAGE
    assert model.generation_config.num_beams == 3 and model.generation_config.repetition_penalty == 2.0
    before, after = torch.tensor([[2, 5, 6]]), torch.tensor([[7, 8, 9, 10]])
    input_ids = torch.cat([before, torch.full((1, tokens_per_view), model.config.image_token_id), after], 1)
    pixel_values = images(views=2)
    llm = AutoModelForCausalLM.from_pretrained(text_model_dir).eval()
    with torch.no_grad():
        expected = authors_logits(authors, state, llm, pixel_values, before, after)
        actual = model(input_ids=input_ids.expand(2, -1), pixel_values=pixel_values).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
    assert any("lora_X" in key for key in report.dropped)


def test_emrrg_converts_into_a_lower_precision(text_model_dir):
    model, _, _ = convert_emrrg_checkpoint(
        authors_emrrg_state(randomized(AuthorsArm())), text_model_dir, dtype=torch.bfloat16
    )
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    input_ids = torch.tensor([[2, 5] + [model.config.image_token_id] * ((IMAGE // PATCH) ** 2 + 1) + [7]])
    with torch.no_grad():
        logits = model(input_ids=input_ids, pixel_values=images(1).to(torch.bfloat16)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_emrrg_trained_hybrid_layer_weights_load_and_gates_start_closed(text_model_dir):
    state = authors_emrrg_state(randomized(AuthorsArm()))
    prefix = "llama_model.model.layers.0."
    kv_width = 2 * TEXT_CONFIGS["llama"]["num_key_value_heads"] * (TEXT_HIDDEN // 4)
    state[prefix + "self_attn.cross_attn_kv_proj.weight"] = torch.randn(kv_width, TEXT_HIDDEN)
    state[prefix + "self_attn.cross_attn_kv_proj.bias"] = torch.randn(kv_width)
    state[prefix + "self_attn.cross_attn_gate_proj.0.weight"] = torch.randn(1, TEXT_HIDDEN)
    state[prefix + "self_attn.cross_attn_gate_proj.0.bias"] = torch.randn(1)
    state[prefix + "self_attn.cross_attn_warm_up_gate"] = torch.ones(1)
    state[prefix + "mlp.down_proj.weight"] = torch.randn(TEXT_HIDDEN, 64)  # their hybrid layers are trained in full

    model, _, report = convert_emrrg_checkpoint(state, text_model_dir)

    layer = model.language_model.model.layers[0]
    assert model.config.hybrid_layer_indices == [0]
    torch.testing.assert_close(layer.mlp.down_proj.weight, state[prefix + "mlp.down_proj.weight"])
    kv_proj = layer.self_attn.gated_cross_attn.kv_proj
    torch.testing.assert_close(kv_proj.weight, state[prefix + "self_attn.cross_attn_kv_proj.weight"])
    assert not layer.self_attn.gated_cross_attn.gate.weight.any()
    assert prefix + "self_attn.cross_attn_warm_up_gate" in report.dropped


def test_emrrg_keys_without_a_place_in_the_llm_are_named(text_model_dir):
    state = authors_emrrg_state(randomized(AuthorsArm()))
    state["llama_model.model.layers.0.self_attn.q_proj.bias"] = torch.zeros(TEXT_HIDDEN)  # Qwen2-style bias
    with pytest.raises(UnmappedKeysError, match=r"llama_model\.model\.layers\.0\.self_attn\.q_proj\.bias"):
        convert_emrrg_checkpoint(state, text_model_dir)


def test_emrrg_file_without_backbone_takes_it_from_the_backbone_file(text_model_dir):
    authors = randomized(AuthorsArm())
    state = authors_emrrg_state(authors)
    head_only = {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
    with pytest.raises(UnmappedKeysError, match="backbone_checkpoint"):
        convert_emrrg_checkpoint(head_only, text_model_dir)
    model, _, _ = convert_emrrg_checkpoint(head_only, text_model_dir, backbone_checkpoint=authors.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(
            model.vision_model(images()).last_hidden_state, authors(images()), atol=1e-5, rtol=1e-5
        )


@pytest.mark.slow
def test_convert_command_writes_a_folder_that_loads(tmp_path, text_model_dir):
    authors = randomized(AuthorsArm())
    state = authors_emrrg_state(authors)
    torch.save({"model": state, "config": argparse.Namespace(lora_X=True)}, tmp_path / "EMRRG-CXP.pth")
    out = tmp_path / "emrrg-cxp"
    argv = ["convert", "--checkpoint", str(tmp_path / "EMRRG-CXP.pth"), "--output_dir", str(out)]
    assert cli_main([*argv, "--text_model", str(text_model_dir)]) == 2  # pickled settings need --allow_pickle
    cli_main([*argv, "--text_model", str(text_model_dir), "--allow_pickle"])

    model = EMRRGForConditionalGeneration.from_pretrained(out).eval()
    direct, _, _ = convert_emrrg_checkpoint(state, text_model_dir)
    input_ids = torch.tensor([[2, 5] + [model.config.image_token_id] * ((IMAGE // PATCH) ** 2 + 1) + [7]])
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=input_ids, pixel_values=images(1)).logits,
            direct(input_ids=input_ids, pixel_values=images(1)).logits,
        )
    assert (out / "processor_config.json").exists() or (out / "preprocessor_config.json").exists()
