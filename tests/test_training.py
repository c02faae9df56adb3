"""Training core: optimiser groups, reproducible augmentation, recipes, kill-and-resume, two-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TRAIN_CONFIG
from safetensors.torch import load_file
from transformers import HfArgumentParser

from modeling_rrg_mamba.commands.demo import DEMO_DATA
from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration
from modeling_rrg_mamba.training import (
    DataArguments,
    ModelArguments,
    ReportGenerationTrainer,
    ReportGenerationTrainingArguments,
    SeededAugmentationCollator,
    learning_rate_groups,
    load_recipe,
    parse_with_recipe,
    run_training,
)
from modeling_rrg_mamba.training.recipes import CONFIGURATION_DIR


def tiny_train_argv(output_dir: Path, max_steps: int, save_steps: int, train_samples: int = 12) -> list[str]:
    """A few-second `rrg-mamba train` run on the bundled films (64 px, batch 4, dropout on, augmentation on)."""
    return [
        "--annotation",
        str(DEMO_DATA / "annotation.json"),
        "--image_root",
        str(DEMO_DATA / "images"),
        "--config_overrides",
        json.dumps(TRAIN_CONFIG),
        "--vocabulary_threshold",
        "1",
        "--max_length",
        "16",
        "--image_size",
        "64",
        "--resize_size",
        "72",
        "--max_train_samples",
        str(train_samples),
        "--output_dir",
        str(output_dir),
        "--use_cpu",
        "--seed",
        "7",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "2e-3",
        "--visual_extractor_learning_rate",
        "1e-3",
        "--weight_decay",
        "5e-5",
        "--amsgrad",
        "--max_steps",
        str(max_steps),
        "--save_steps",
        str(save_steps),
        "--logging_steps",
        "1",
        "--eval_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
    ]


def run_python(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def tiny_model() -> RRGMambaForConditionalGeneration:
    return RRGMambaForConditionalGeneration(RRGMambaConfig(vocab_size=20, **TRAIN_CONFIG))


# ------------------------------------------------------------------------------------------------ optimiser


def test_learning_rate_groups_split_visual_extractor_from_rest():
    model = tiny_model()
    groups = learning_rate_groups(model, learning_rate=2e-3, visual_extractor_learning_rate=1e-3, weight_decay=5e-5)
    by_name = {group["name"]: group for group in groups}
    visual_ids = {id(p) for p in model.encoder.visual_extractor.parameters()}
    assert {id(p) for p in by_name["visual_extractor"]["params"]} == visual_ids
    assert by_name["visual_extractor"]["lr"] == 1e-3 and by_name["rest"]["lr"] == 2e-3
    grouped = [id(p) for group in groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # a partition: nothing twice, nothing lost
    assert all(group["weight_decay"] == 5e-5 for group in groups)


def test_learning_rate_groups_skip_frozen_parameters_and_reject_a_frozen_model():
    model = tiny_model()
    model.encoder.visual_extractor.requires_grad_(False)
    groups = learning_rate_groups(model, 2e-3, 1e-3, 0.0)
    assert [group["name"] for group in groups] == ["rest"]
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        learning_rate_groups(model, 2e-3, 1e-3, 0.0)


def test_trainer_builds_adam_amsgrad_with_the_paper_rates(tmp_path):
    args = ReportGenerationTrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        learning_rate=2e-3,
        visual_extractor_learning_rate=1e-3,
        weight_decay=5e-5,
        amsgrad=True,
        report_to="none",
    )
    optimizer = ReportGenerationTrainer(model=tiny_model(), args=args).create_optimizer()
    assert type(optimizer) is torch.optim.Adam
    assert [(g["name"], g["lr"], g["weight_decay"], g["amsgrad"]) for g in optimizer.param_groups] == [
        ("visual_extractor", 1e-3, 5e-5, True),
        ("rest", 2e-3, 5e-5, True),
    ]


def test_trainer_without_amsgrad_uses_the_configured_optimizer_with_two_rates(tmp_path):
    args = ReportGenerationTrainingArguments(
        output_dir=str(tmp_path),
        use_cpu=True,
        learning_rate=2e-3,
        visual_extractor_learning_rate=1e-3,
        report_to="none",
    )
    optimizer = ReportGenerationTrainer(model=tiny_model(), args=args).create_optimizer()
    assert type(optimizer) is torch.optim.AdamW
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 2e-3]


# ------------------------------------------------------------------------------------------- augmentation


def random_collator(examples):
    return torch.rand(len(examples))


def test_seeded_augmentation_is_a_function_of_epoch_and_ids_and_leaves_the_global_rng_alone():
    collator = SeededAugmentationCollator(random_collator, seed=3)
    batch = [{"id": "a"}, {"id": "b"}]
    torch.manual_seed(0)
    first = collator(batch)
    after_call = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(torch.rand(3), after_call)  # the global stream did not move
    assert torch.equal(collator(batch), first)
    assert not torch.equal(collator([{"id": "a"}, {"id": "c"}]), first)
    collator.epoch = 1
    assert not torch.equal(collator(batch), first)


# ------------------------------------------------------------------------------------------------- recipes

RECIPES = sorted(p.name for p in CONFIGURATION_DIR.glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_parses_into_the_train_arguments(recipe):
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    extra = ["--text_model_name_or_path", "llm"] if recipe.startswith("emrrg") else []
    argv = ["--recipe", str(CONFIGURATION_DIR / recipe), "--output_dir", "out", "--deepspeed", "", "--bf16", "false"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_args, _, training_args = parse_with_recipe(parser, [*argv, *extra])
    # the recipes' checkpointing switch reaches the installed release under the name it reads without a warning
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    checkpointing = getattr(training_args, "activation_checkpointing", False) or training_args.gradient_checkpointing
    assert checkpointing == recipe.startswith("emrrg")
    assert model_args.model_type == ("emrrg" if recipe.startswith("emrrg") else "rrg_mamba")
    assert training_args.load_best_model_at_end and training_args.metric_for_best_model == "BLEU_4"
    assert isinstance(model_args.overrides(), dict)


@pytest.mark.parametrize("flag", ["--gradient_checkpointing", "--activation_checkpointing"])
def test_command_line_turns_the_recipes_checkpointing_off_under_either_name(flag):
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    known = {action.dest for action in parser._actions}
    if flag[2:] not in known:
        pytest.skip(f"{flag} does not exist in this transformers release")
    argv = ["--recipe", "emrrg_iu_xray", "--output_dir", "out", "--text_model_name_or_path", "llm", flag, "false"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # the old name warns on 5.24: the user's choice here
        _, _, args = parse_with_recipe(parser, [*argv, "--deepspeed", "", "--bf16", "false"])
    assert not args.gradient_checkpointing and not getattr(args, "activation_checkpointing", False)


def test_rrg_mamba_recipe_holds_the_paper_optimiser_and_command_line_overrides_it():
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    model_args, _, args = parse_with_recipe(parser, ["--recipe", "rrg_mamba_iu_xray", "--output_dir", "out"])
    assert (args.learning_rate, args.visual_extractor_learning_rate, args.weight_decay, args.amsgrad) == (
        2e-3,
        1e-3,
        5e-5,
        True,
    )
    assert (args.generation_num_beams, model_args.max_length, model_args.vocabulary_threshold) == (3, 60, 3)
    assert model_args.overrides()["visual_extractor"] == "densenet121"
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    _, _, args = parse_with_recipe(
        parser, ["--recipe=rrg_mamba_iu_xray", "--output_dir", "out", "--learning_rate", "1e-4"]
    )
    assert args.learning_rate == 1e-4 and args.visual_extractor_learning_rate == 1e-3


def test_emrrg_recipe_resolves_its_deepspeed_and_generation_files():
    recipe = load_recipe("emrrg_iu_xray")
    deepspeed = json.loads(Path(recipe["deepspeed"]).read_text())
    assert deepspeed["zero_optimization"]["stage"] == 2
    generation = json.loads(Path(recipe["generation_config"]).read_text())
    assert (generation["num_beams"], generation["repetition_penalty"]) == (5, 2.0)
    assert recipe["in_proj_lora"] == "partial"


def test_bad_recipes_raise_errors_naming_the_file(tmp_path):
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("learning_rate: 1.0e-3\nlearnig_rate: 2.0e-3\n")
    with pytest.raises(ValueError, match=r"unknown\.yaml: unknown argument\(s\) \['learnig_rate'\]"):
        parse_with_recipe(parser, ["--recipe", str(unknown)])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a valid recipe"):
        load_recipe(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml: a recipe must be a mapping"):
        load_recipe(listed)
    with pytest.raises(FileNotFoundError, match="no recipe file"):
        load_recipe(tmp_path / "missing.yaml")


def test_model_arguments_validate():
    with pytest.raises(ValueError, match="model_type"):
        ModelArguments(model_type="r2gen")
    with pytest.raises(ValueError, match="config_overrides: not valid JSON"):
        ModelArguments(config_overrides="{bad").overrides()
    with pytest.raises(ValueError, match="image_size"):
        ModelArguments(image_size=300, resize_size=256)
    with pytest.raises(ValueError, match="text_model_name_or_path"):
        ModelArguments(model_type="emrrg")


# ------------------------------------------------------------------------------- precision and memory flags


def train_two_steps(output_dir: Path, *extra: str) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    trainer = run_training(*parse_with_recipe(parser, [*tiny_train_argv(output_dir, 2, 100), *extra]))
    return trainer.state.log_history


def test_do_predict_writes_test_reports_scored_against_the_full_references(tmp_path):
    train_two_steps(
        tmp_path,
        "--do_predict",
        "--max_test_samples",
        "3",
        "--meteor",
        "false",
        "--generation_max_length",
        "8",
        "--generation_num_beams",
        "2",
    )
    records = [json.loads(line) for line in (tmp_path / "test_predictions.jsonl").read_text().splitlines()]
    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    assert [r["reference"] for r in records] == [e["report"] for e in annotation["test"][:3]]
    assert all(isinstance(r["prediction"], str) for r in records)
    results = json.loads((tmp_path / "test_results.json").read_text())
    assert {"test_BLEU_4", "test_ROUGE_L", "test_ce_14_micro_f1"} <= set(results) and "test_METEOR" not in results


def test_bf16_mixed_precision_training_runs(tmp_path):
    history = train_two_steps(tmp_path, "--bf16")
    assert all(torch.isfinite(torch.tensor(entry["loss"])) for entry in history if "loss" in entry)


def test_activation_checkpointing_training_runs(tmp_path):
    history = train_two_steps(tmp_path, "--gradient_checkpointing")
    assert any("loss" in entry for entry in history)


# -------------------------------------------------------------------------------------- kill and resume

KILL_AFTER_SAVE = textwrap.dedent("""
    import os, sys
    from transformers import HfArgumentParser, TrainerCallback
    from modeling_rrg_mamba.training import (DataArguments, ModelArguments, ReportGenerationTrainingArguments,
                                             parse_with_recipe, run_training)

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == int(os.environ["KILL_AT_STEP"]):
                os._exit(17)  # as abrupt as a killed job: no clean-up, no final save

    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    run_training(*parse_with_recipe(parser, sys.argv[1:]), callbacks=[KillAfterSave()])
""")


def logged_losses(output_dir: Path) -> dict[int, float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return {entry["step"]: entry["loss"] for entry in state["log_history"] if "loss" in entry}


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_data_order_and_no_lost_steps(tmp_path):
    """12 studies, batch 4: 3 steps per epoch; 7 steps cross two epoch boundaries. The run is killed right after
    the checkpoint of step 2 (mid-epoch), resumed with `rrg-mamba train --resume_from_checkpoint`, and must end
    with the losses and weights of a run that was never interrupted (dropout and augmentation are on)."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    result = run_python(["-m", "modeling_rrg_mamba.cli", "train", *tiny_train_argv(straight, 7, 2)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    script = tmp_path / "kill_after_save.py"
    script.write_text(KILL_AFTER_SAVE)
    os.environ["KILL_AT_STEP"] = "2"
    try:
        result = run_python([str(script), *tiny_train_argv(killed, 7, 2)], tmp_path)
    finally:
        del os.environ["KILL_AT_STEP"]
    assert result.returncode == 17, result.stderr[-3000:]
    assert (killed / "checkpoint-2").is_dir() and not (killed / "model.safetensors").exists()

    argv = [*tiny_train_argv(killed, 7, 2), "--resume_from_checkpoint", str(killed / "checkpoint-2")]
    result = run_python(["-m", "modeling_rrg_mamba.cli", "train", *argv], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    reference, resumed = logged_losses(straight), logged_losses(killed)
    assert sorted(reference) == list(range(1, 8)) and sorted(resumed) == list(range(1, 8))  # no step lost or repeated
    assert resumed == pytest.approx(reference, rel=1e-6, abs=1e-7)
    expected, actual = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-6, atol=1e-7, msg=name)
    initial = load_file(killed / "checkpoint-2" / "model.safetensors")
    assert any(not torch.equal(initial[name], actual[name]) for name in actual)  # training went on after the kill


# --------------------------------------------------------------------------------------------- two processes

DDP_DRIVER = textwrap.dedent("""
    import json, sys, torch
    from safetensors.torch import save_file
    from transformers import HfArgumentParser
    from modeling_rrg_mamba.training import (DataArguments, ModelArguments, ReportGenerationTrainingArguments,
                                             build_trainer, parse_with_recipe)

    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    model_args, data_args, training_args = parse_with_recipe(parser, sys.argv[1:])
    trainer = build_trainer(model_args, data_args, training_args)
    rank, world = training_args.process_index, training_args.world_size
    # Parameters only: DDP keeps them in sync; buffers (BatchNorm running statistics) are broadcast from rank 0 at
    # each forward and then updated locally, so they legitimately differ after the last step.
    state = lambda: {k: v.detach().clone().contiguous() for k, v in trainer.model.named_parameters()}
    seen, collate = [], trainer.train_data_collator.collator
    trainer.train_data_collator.collator = lambda examples: seen.extend(e["id"] for e in examples) or collate(examples)
    before = state()
    trainer.train()
    json.dump(seen, open(f"{training_args.output_dir}/ids-rank{rank}.json", "w"))
    save_file(before, f"{training_args.output_dir}/initial-rank{rank}.safetensors")
    save_file(state(), f"{training_args.output_dir}/final-rank{rank}-of-{world}.safetensors")
""")


LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    # accelerate's --multi_gpu means "multi-process data parallel" and runs on CPU with gloo (its --cpu flag would
    # start a single process)
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_cpu_processes_train_in_data_parallel_and_end_with_identical_weights(tmp_path, launcher):
    """Two processes on CPU (gloo), under torchrun and under accelerate launch: both ranks end with the same
    parameters, changed by training, each having seen its own half of the data."""
    script = tmp_path / "ddp_driver.py"
    script.write_text(DDP_DRIVER)
    argv = [*tiny_train_argv(tmp_path / "ddp", 2, 100, train_samples=16), "--ddp_backend", "gloo"]
    result = run_python([*LAUNCHERS[launcher], str(script), *argv], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [load_file(tmp_path / "ddp" / f"final-rank{r}-of-2.safetensors") for r in (0, 1)]
    initial = load_file(tmp_path / "ddp" / "initial-rank0.safetensors")
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert any(not torch.equal(initial[name], ranks[0][name]) for name in initial)
    seen = [set(json.loads((tmp_path / "ddp" / f"ids-rank{r}.json").read_text())) for r in (0, 1)]
    assert seen[0] and seen[1] and not seen[0] & seen[1]  # each rank trained on its own shard of the data


# ------------------------------------------------------------------------------------------------ examples

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
def test_train_iu_xray_example_runs_its_smoke_setting(tmp_path):
    result = run_python(
        [str(EXAMPLES / "train_iu_xray.py"), "--smoke", "--output_dir", str(tmp_path / "run")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and any("eval_BLEU_4" in entry for entry in state["log_history"])


@pytest.mark.slow
def test_finetune_emrrg_partial_lora_example_runs_its_smoke_setting(tmp_path):
    result = run_python([str(EXAMPLES / "finetune_emrrg_partial_lora.py"), "--smoke"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Partial-LoRA recipe:" in result.stdout and "adapter saved" in result.stdout
