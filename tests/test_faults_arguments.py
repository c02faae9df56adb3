"""Issue 26, part 4: arguments that make a run meaningless are refused before any work, in one line."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_DATA

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig
from modeling_rrg_mamba.training.arguments import ReportGenerationTrainingArguments, check_ranges
from modeling_rrg_mamba.training.build import check_config_keys


def _train(tmp_path, *extra):
    argv = ["train", "--annotation", str(DEMO_DATA / "annotation.json"), "--image_root", str(DEMO_DATA / "images")]
    return main([*argv, "--output_dir", str(tmp_path / "out"), "--use_cpu", *extra])


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--max_steps", "0"),
        ("--max_steps", "-5"),
        ("--learning_rate", "-0.01"),
        ("--learning_rate", "0"),
        ("--num_train_epochs", "0"),
        ("--per_device_train_batch_size", "0"),
        ("--gradient_accumulation_steps", "0"),
        ("--weight_decay", "-1"),
        ("--visual_extractor_learning_rate", "-0.001"),
        ("--max_train_samples", "0"),
        ("--generation_num_beams", "0"),
    ],
)
def test_train_refuses_a_meaningless_number_before_any_work(tmp_path, capsys, flag, value):
    assert _train(tmp_path, f"{flag}={value}") == 2  # "=": argparse reads "-1e-3" alone as a flag
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert flag.lstrip("-") in error and value in error
    assert not (tmp_path / "out").exists()  # nothing written


def test_defaults_pass_the_range_checks(tmp_path):
    args = ReportGenerationTrainingArguments(output_dir=str(tmp_path), use_cpu=True)
    assert args.max_steps == -1 and args.learning_rate > 0


def test_unset_values_pass_and_a_bad_one_names_its_rule():
    class Args:
        count, rate = None, 1.5

    check_ranges(Args, {"count": "count"})
    with pytest.raises(ValueError, match=r"rate: expected a number in \[0, 1\), got 1.5"):
        check_ranges(Args, {"rate": "fraction"})


@pytest.mark.parametrize("flag, value", [("--batch_size", "0"), ("--num_beams", "0"), ("--max_new_tokens", "-1")])
def test_generate_refuses_a_meaningless_number(tmp_path, capsys, flag, value):
    argv = ["generate", "--model", str(tmp_path), "--images", str(DEMO_DATA / "images"), "--output"]
    assert main([*argv, str(tmp_path / "r.jsonl"), flag, value]) == 2
    assert flag in capsys.readouterr().err


@pytest.mark.parametrize("typo, nearest", [("visual_extracter", "visual_extractor"), ("use_gdml", "use_gdlm")])
def test_config_override_typo_is_refused_with_the_nearest_name(tmp_path, capsys, typo, nearest):
    with pytest.raises(ValueError, match=f"unknown key '{typo}'; did you mean '{nearest}'"):
        check_config_keys({typo: 1}, RRGMambaConfig)
    assert _train(tmp_path, "--config_overrides", json.dumps({typo: 1}), "--max_steps", "1") == 2
    assert nearest in capsys.readouterr().err


def test_config_override_far_from_any_name_is_refused():
    with pytest.raises(ValueError, match="RRGMambaConfig has no such field"):
        check_config_keys({"zzzzqqq": 1}, RRGMambaConfig)


@pytest.mark.parametrize("device", ["banana", "cuda:64", "meta"])
def test_generate_checks_the_device_before_any_loading(tmp_path, capsys, device):
    argv = ["generate", "--model", str(tmp_path / "no-model"), "--images", str(DEMO_DATA / "images")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl"), "--device", device]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--device" in error and device in error and "no-model" not in error  # before the model is looked at
    assert not (tmp_path / "out.jsonl").exists()
