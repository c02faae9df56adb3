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


@pytest.mark.parametrize(
    "flag, value",
    [("--heatmap_words", "0"), ("--views_per_study", "0"), ("--num_beams", "-2"), ("--batch_size", "-1")],
)
def test_generate_refuses_every_meaningless_number_before_any_work(tmp_path, capsys, flag, value):
    argv = ["generate", "--model", str(tmp_path / "no-model"), "--images", str(DEMO_DATA / "images")]
    assert main([*argv, "--output", str(tmp_path / "r.jsonl"), f"{flag}={value}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"rrg-mamba: error: {flag}: expected") and value in error and "no-model" not in error
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--lora_dropout", "1.5"),
        ("--lora_r", "0"),
        ("--max_length", "0"),
        ("--vocabulary_threshold", "0"),
        ("--image_size", "-1"),
        ("--lora_alpha", "0"),
        ("--max_grad_norm", "-1"),
    ],
)
def test_train_refuses_a_meaningless_model_argument(tmp_path, capsys, flag, value):
    assert _train(tmp_path, f"{flag}={value}") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"rrg-mamba: error: {flag}: expected") and value in error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--max_steps=0"],
        ["demo", "--max_minutes=0"],
        ["convert", "--checkpoint", "x.pth", "--output_dir", "out", "--num_views=0"],
    ],
)
def test_demo_and_convert_refuse_a_meaningless_number(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    flag, value = argv[-1].split("=")
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"rrg-mamba: error: {flag}: expected") and value in error
    assert sorted(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_study_scored_twice(tmp_path, capsys):
    records = [{"id": "a", "prediction": "no effusion", "reference": "no effusion"}] * 2
    predictions = tmp_path / "reports.jsonl"
    predictions.write_text("".join(json.dumps(record) + "\n" for record in records))
    assert main(["evaluate", "--predictions", str(predictions), "--no_meteor"]) == 2
    error = capsys.readouterr().err
    assert "line 2 repeats the study of line 1" in error and sorted(tmp_path.iterdir()) == [predictions]
