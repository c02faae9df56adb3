"""Partial LoRA as a PEFT adapter: z rows untouched, merge / reload / disable, per-layer isolation, recipe."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import IMAGE_TOKEN_ID, TEXT_CONFIGS, prompt_ids
from peft.tuners.lora.layer import Linear as LoraLinear

from modeling_rrg_mamba.emrrg import (
    EMRRGConfig,
    EMRRGForConditionalGeneration,
    PartialLoraLinear,
    apply_emrrg_recipe,
    load_emrrg_adapter,
)

VISION = dict(hidden_size=16, num_hidden_layers=2, image_size=32, patch_size=16, d_state=4)


def tiny_model() -> EMRRGForConditionalGeneration:
    torch.manual_seed(0)
    config = EMRRGConfig(
        text_config=TEXT_CONFIGS["llama"], vision_config=VISION, hybrid_layer_interval=1, image_token_id=IMAGE_TOKEN_ID
    )
    return EMRRGForConditionalGeneration(config)


def in_projs(peft_model):
    return [layer.mixer.in_proj for layer in peft_model.base_model.model.vision_model.layers]


def train_steps(peft_model, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    ids = prompt_ids(2, peft_model.config.num_image_tokens)
    for _ in range(steps):
        loss = peft_model(input_ids=ids, pixel_values=torch.randn(2, 3, 32, 32), labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.fixture(scope="module")
def trained():
    base = tiny_model()
    frozen_copy = copy.deepcopy(base)
    peft_model, counts = apply_emrrg_recipe(base, r=4, lora_alpha=8, lora_dropout=0.0)
    train_steps(peft_model)
    return frozen_copy, peft_model.eval(), counts


def test_z_rows_untouched_x_rows_adapted(trained):
    frozen, peft_model, _ = trained
    x = torch.randn(3, 5, VISION["hidden_size"])
    for layer, in_proj in zip(frozen.vision_model.layers, in_projs(peft_model)):
        assert isinstance(in_proj, PartialLoraLinear)
        rows = in_proj.partial_rows
        lora_B = in_proj.lora_B["default"].weight
        assert lora_B.shape == (2 * rows, 4)  # PEFT's ordinary shape ...
        assert not lora_B[rows:].any() and lora_B[:rows].any()  # ... whose z rows stay zero through training
        base = F.linear(x, layer.mixer.in_proj.weight)
        out = in_proj(x)
        assert torch.equal(out[..., rows:], base[..., rows:])  # z: bit-for-bit the frozen projection
        assert not torch.allclose(out[..., :rows], base[..., :rows])  # x: trained update
        assert torch.equal(in_proj.get_base_layer().weight, layer.mixer.in_proj.weight)  # base weight frozen


def test_merge_equals_adapter_and_keeps_z_rows(trained):
    frozen, peft_model, _ = trained
    ids, pixels = prompt_ids(2, peft_model.config.num_image_tokens), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        adapter_logits = peft_model(input_ids=ids, pixel_values=pixels).logits
        merged = copy.deepcopy(peft_model).merge_and_unload()
        merged_logits = merged(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5)
    for before, after in zip(frozen.vision_model.layers, merged.vision_model.layers):
        rows = before.mixer.d_inner
        assert type(after.mixer.in_proj) is torch.nn.Linear
        assert torch.equal(after.mixer.in_proj.weight[rows:], before.mixer.in_proj.weight[rows:])
        assert not torch.equal(after.mixer.in_proj.weight[:rows], before.mixer.in_proj.weight[:rows])


def test_reload_equals_trained_and_disable_equals_base(trained, tmp_path):
    frozen, peft_model, _ = trained
    ids, pixels = prompt_ids(2, peft_model.config.num_image_tokens), torch.randn(2, 3, 32, 32)
    peft_model.save_pretrained(tmp_path)
    reloaded = load_emrrg_adapter(copy.deepcopy(frozen), str(tmp_path)).eval()
    with torch.no_grad():
        trained_logits = peft_model(input_ids=ids, pixel_values=pixels).logits
        assert torch.equal(reloaded(input_ids=ids, pixel_values=pixels).logits, trained_logits)
        with peft_model.disable_adapter():
            disabled = peft_model(input_ids=ids, pixel_values=pixels).logits
        base_logits = frozen.eval()(input_ids=ids, pixel_values=pixels).logits
    # float-level equality: the scan's summation order may differ once LoRA-wrapped in_proj layers have been trained
    torch.testing.assert_close(disabled, base_logits, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(trained_logits, base_logits)


def test_each_layer_adapter_affects_only_its_layer(trained):
    _, peft_model, _ = trained
    model = copy.deepcopy(peft_model)
    projections = in_projs(model)
    x = torch.randn(2, 5, VISION["hidden_size"])
    before = [p(x) for p in projections]
    with torch.no_grad():
        projections[0].lora_B["default"].weight.add_(1.0)
    after = [p(x) for p in projections]
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1], before[1])
    # and the two layers run different adapters on the same input (no shared / last-layer weights)
    assert not torch.allclose(
        before[0] - F.linear(x, projections[0].get_base_layer().weight),
        before[1] - F.linear(x, projections[1].get_base_layer().weight),
    )


def test_recipe_trains_only_adapters_projector_and_hybrid(trained):
    _, peft_model, counts = trained
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert trainable and all(
        "lora_" in name or "multi_modal_projector" in name or "gated_cross_attn" in name for name in trainable
    )
    assert any("vision_model" in n and "in_proj.lora_B" in n for n in trainable)
    assert any("language_model" in n and "q_proj.lora_A" in n for n in trainable)
    assert not any("to_q.lora" in n for n in trainable)  # cross-attention is trained in full, not LoRA'd
    assert counts.trainable == sum(peft_model.get_parameter(n).numel() for n in trainable)
    assert 0 < counts.fraction < 1


def test_full_lora_mode_does_touch_z_rows():
    peft_model, _ = apply_emrrg_recipe(tiny_model(), r=4, in_proj_lora="full", init_lora_weights=False)
    in_proj = in_projs(peft_model)[0]
    assert type(in_proj) is LoraLinear
    x = torch.randn(2, VISION["hidden_size"])
    rows = in_proj.out_features // 2
    assert not torch.allclose(in_proj(x)[..., rows:], F.linear(x, in_proj.get_base_layer().weight)[..., rows:])
    with pytest.raises(ValueError, match="in_proj_lora"):
        apply_emrrg_recipe(tiny_model(), in_proj_lora="half")


def test_paper_scale_fraction_on_meta_device_adds_up():
    """The benchmark's count at Llama-2-7B scale is the sum of its parts (reported against the paper's 2.3 %, not
    tuned to it)."""
    import runpy
    from pathlib import Path

    script = runpy.run_path(str(Path(__file__).parents[1] / "benchmarks" / "emrrg_trainable_fraction.py"))
    config, counts, parts = script["paper_scale_counts"]()
    assert 6.5e9 < counts.total < 7.5e9 and config.hybrid_layer_indices == [0, 8, 16, 24]
    assert parts["hybrid cross-attention"] == 4 * (4096 * 8192 + 8192 + 4096 + 1)  # kv_proj + one gate per token
    assert parts["backbone Partial LoRA"] == 12 * 16 * (768 + 1536)  # r 16: A (16 x 768), B (1536 x 16)
    assert parts["LLM LoRA"] == 32 * 2 * 16 * (4096 + 4096)
    assert parts["projector"] == 768 * 4096 + 4096 + 2 * 4096
    assert counts.trainable == sum(parts.values())
    assert 0.015 < counts.fraction < 0.03


@pytest.mark.parametrize("family, text_target", [("gpt2", "c_attn"), ("qwen2", "v_proj")])
def test_recipe_on_other_llm_families(family, text_target, tmp_path):
    torch.manual_seed(0)
    config = EMRRGConfig(
        text_config=TEXT_CONFIGS[family], vision_config=VISION, hybrid_layer_interval=1, image_token_id=IMAGE_TOKEN_ID
    )
    base = EMRRGForConditionalGeneration(config)
    frozen = copy.deepcopy(base)
    peft_model, _ = apply_emrrg_recipe(base, r=4, lora_dropout=0.0)
    assert any(f"{text_target}.lora_A" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    train_steps(peft_model, steps=2)
    peft_model.eval().save_pretrained(tmp_path)
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    reloaded = load_emrrg_adapter(frozen, str(tmp_path)).eval()
    with torch.no_grad():
        assert torch.equal(
            reloaded(input_ids=ids, pixel_values=pixels).logits, peft_model(input_ids=ids, pixel_values=pixels).logits
        )


def test_adapter_reloads_the_plain_peft_way_and_merges(trained, tmp_path):
    """``PeftModel.from_pretrained(base, path)`` without any registration: same logits, same merged logits; the
    adapter card names the base model."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    frozen, peft_model, _ = trained
    frozen.save_pretrained(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "adapter")
    base = AutoModelForImageTextToText.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    ids, pixels = prompt_ids(2, peft_model.config.num_image_tokens), torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = peft_model(input_ids=ids, pixel_values=pixels).logits
        torch.testing.assert_close(reloaded(input_ids=ids, pixel_values=pixels).logits, expected, atol=1e-6, rtol=1e-5)
        merged = reloaded.merge_and_unload()
        torch.testing.assert_close(merged(input_ids=ids, pixel_values=pixels).logits, expected, atol=1e-5, rtol=1e-4)
    # a base model loaded from a folder is named in the card PEFT writes; an in-memory one through the recipe
    rewrapped, _ = apply_emrrg_recipe(AutoModelForImageTextToText.from_pretrained(tmp_path / "base"), r=4)
    rewrapped.save_pretrained(tmp_path / "card")
    assert f"base_model: {tmp_path / 'base'}" in (tmp_path / "card" / "README.md").read_text()
    named, _ = apply_emrrg_recipe(tiny_model(), base_model_name_or_path="org/emrrg-base", r=4)
    named.save_pretrained(tmp_path / "named")
    assert "base_model: org/emrrg-base" in (tmp_path / "named" / "README.md").read_text()


def test_peft_private_custom_module_api_is_there_and_only_compat_calls_it():
    """Partial LoRA dispatch rests on PEFT's private ``LoraConfig._register_custom_module``: fail loudly if it goes."""
    from pathlib import Path

    from peft import LoraConfig

    from modeling_rrg_mamba import _compat

    assert callable(getattr(LoraConfig(), "_register_custom_module", None)), (
        "peft renamed/removed LoraConfig._register_custom_module: update _compat.register_peft_custom_module"
    )
    with pytest.raises(RuntimeError, match="_register_custom_module is gone"):
        _compat.register_peft_custom_module(object(), {})
    package = Path(_compat.__file__).parent
    callers = [
        str(f.relative_to(package)) for f in package.rglob("*.py") if "_register_custom_module" in f.read_text()
    ]
    assert callers == ["_compat.py"], callers


FRESH_PROCESS_RELOAD = """
import sys, torch
from peft import PeftModel
from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration, load_emrrg_adapter
base_dir, adapter_dir, inputs_path, out_path = sys.argv[1:]
inputs = torch.load(inputs_path)
def logits(model):
    with torch.no_grad():
        return model.eval()(**inputs).logits
plain = PeftModel.from_pretrained(EMRRGForConditionalGeneration.from_pretrained(base_dir), adapter_dir)
results = {"plain": logits(plain), "merged": logits(plain.merge_and_unload())}
results["loader"] = logits(load_emrrg_adapter(EMRRGForConditionalGeneration.from_pretrained(base_dir), adapter_dir))
torch.save(results, out_path)
"""


def test_fresh_process_plain_peft_reload_keeps_partial_lora(trained, tmp_path):
    """The adapter folder carries the variant: a new process that never builds the recipe reloads it with plain
    ``PeftModel.from_pretrained`` (and merges, and uses ``load_emrrg_adapter``) to the training-time logits."""
    import json
    import subprocess
    import sys

    frozen, peft_model, _ = trained
    frozen.save_pretrained(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and "in_proj" in saved["partial_lora_modules"]
    ids, pixels = prompt_ids(2, peft_model.config.num_image_tokens), torch.randn(2, 3, 32, 32)
    torch.save({"input_ids": ids, "pixel_values": pixels}, tmp_path / "inputs.pt")
    with torch.no_grad():
        expected = peft_model(input_ids=ids, pixel_values=pixels).logits
        without_adapter = frozen(input_ids=ids, pixel_values=pixels).logits
    assert not torch.allclose(expected, without_adapter, atol=1e-4)  # the adapter matters
    args = [str(tmp_path / name) for name in ("base", "adapter", "inputs.pt", "out.pt")]
    subprocess.run([sys.executable, "-c", FRESH_PROCESS_RELOAD, *args], check=True, timeout=600)
    results = torch.load(tmp_path / "out.pt")
    for name, logits in results.items():
        torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


DROPPED_VARIANT_RELOADS = """
import json, sys, warnings
from peft import PeftConfig, PeftModel
base_dir, adapter_dir, unmatched_dir, out_path = sys.argv[1:]
outcomes = {}
def attempt(name, load):
    try:
        load()
        outcomes[name] = "loaded"
    except Exception as error:
        outcomes[name] = f"{type(error).__name__}: {error}"
# 1. The config read before modeling_rrg_mamba is imported: PEFT drops partial_lora_modules (with a warning only).
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    early_config = PeftConfig.from_pretrained(adapter_dir)
from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
from peft.utils import PeftType
from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration, load_emrrg_adapter
base = lambda: EMRRGForConditionalGeneration.from_pretrained(base_dir)
attempt("early_config", lambda: PeftModel.from_pretrained(base(), adapter_dir, config=early_config))
# 2. Another package registers its own LoRA config class after the EMRRGs were built (building one then refuses).
bases = [base() for _ in range(3)]
ours = PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA]
from peft import LoraConfig
class OtherLoraConfig(LoraConfig):
    pass
PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA] = OtherLoraConfig
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    attempt("other_class_plain", lambda: PeftModel.from_pretrained(bases[0], adapter_dir))
    attempt("other_class_merge", lambda: PeftModel.from_pretrained(bases[1], adapter_dir).merge_and_unload())
    attempt("other_class_loader", lambda: load_emrrg_adapter(bases[2], adapter_dir))
    attempt("other_class_build", base)
PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA] = ours
# 3. partial_lora_modules that matches none of the adapted layers.
attempt("unmatched_plain", lambda: PeftModel.from_pretrained(base(), unmatched_dir))
attempt("unmatched_loader", lambda: load_emrrg_adapter(base(), unmatched_dir))
attempt("intact", lambda: PeftModel.from_pretrained(base(), adapter_dir))
json.dump(outcomes, open(out_path, "w"))
"""


def test_reload_that_would_drop_partial_lora_raises_in_a_fresh_process(trained, tmp_path):
    """Every way a saved Partial-LoRA adapter could come back as plain LoRA on an EMRRG raises, naming the field
    (and, through ``load_emrrg_adapter``, the folder); a process that never builds the recipe."""
    import json
    import subprocess
    import sys

    frozen, peft_model, _ = trained
    frozen.save_pretrained(tmp_path / "base")
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.save_pretrained(tmp_path / "unmatched")
    config_path = tmp_path / "unmatched" / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["partial_lora_modules"] = r"vision_model\..*\.out_proj"  # a real module name, never a LoRA target here
    config_path.write_text(json.dumps(config))
    args = [str(tmp_path / name) for name in ("base", "adapter", "unmatched", "out.json")]
    subprocess.run([sys.executable, "-c", DROPPED_VARIANT_RELOADS, *args], check=True, timeout=600)
    outcomes = json.loads((tmp_path / "out.json").read_text())
    assert outcomes.pop("intact") == "loaded"
    # load_emrrg_adapter and EMRRG itself register PartialLoraConfig, and refuse a class that does not extend it
    for name in ("other_class_loader", "other_class_build"):
        assert outcomes.pop(name).startswith("RuntimeError: peft: LoRA configs already load as"), name
    for name, outcome in outcomes.items():
        assert outcome.startswith("PartialLoraDroppedError: "), (name, outcome)
        assert "partial_lora_modules" in outcome, (name, outcome)
    assert "matches none of the" in outcomes["unmatched_plain"]
    assert outcomes["unmatched_loader"].startswith(f"PartialLoraDroppedError: {tmp_path / 'unmatched'}: ")
    assert "OtherLoraConfig" in outcomes["other_class_plain"]


def test_partial_lora_modules_matching_no_target_raises_when_wrapping():
    """``get_peft_model`` with a pattern that names no adapted layer fails at once instead of training plain LoRA."""
    from peft import get_peft_model

    from modeling_rrg_mamba.emrrg import PartialLoraDroppedError, partial_lora_config

    config = partial_lora_config(partial_lora_modules=r".*\.x_proj", target_modules=["in_proj", "q_proj"], r=2)
    with pytest.raises(PartialLoraDroppedError, match=r"partial_lora_modules: .*x_proj.* matches none of the"):
        get_peft_model(tiny_model(), config)
    # plain LoRA on in_proj is said with PartialLoraConfig(partial_lora_modules=None); a bare LoraConfig is refused
    from peft import LoraConfig

    assert get_peft_model(tiny_model(), partial_lora_config(partial_lora_modules=None, target_modules=["in_proj"]))
    with pytest.raises(PartialLoraDroppedError, match="vision_model.layers.0.mixer.in_proj"):
        get_peft_model(tiny_model(), LoraConfig(target_modules=["in_proj"]))


def test_an_adapter_added_after_wrapping_is_checked_at_the_next_forward(trained, tmp_path):
    """PEFT's ``load_adapter`` adds to the wrapped model's ``peft_config`` in place: a second adapter whose
    ``partial_lora_modules`` matches nothing is refused at the next forward instead of running as plain LoRA."""
    import json

    from peft import PeftModel

    from modeling_rrg_mamba.emrrg import PartialLoraDroppedError

    frozen, peft_model, _ = trained
    peft_model.save_pretrained(tmp_path / "good")
    peft_model.save_pretrained(tmp_path / "bad")
    config = json.loads((tmp_path / "bad" / "adapter_config.json").read_text())
    config["partial_lora_modules"] = r"language_model\..*\.in_proj"
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps(config))
    reloaded = PeftModel.from_pretrained(copy.deepcopy(frozen), str(tmp_path / "good")).eval()
    ids, pixels = prompt_ids(1, peft_model.config.num_image_tokens), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reloaded(input_ids=ids, pixel_values=pixels)
        reloaded.load_adapter(str(tmp_path / "bad"), adapter_name="second")
        with pytest.raises(PartialLoraDroppedError, match="adapter 'second' matches none"):
            reloaded(input_ids=ids, pixel_values=pixels)
