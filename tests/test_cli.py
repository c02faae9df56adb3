"""The `rrg-mamba` command line: generate (files, folders, DICOM, heatmaps), evaluate, demo, usage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_demo_model, save_tiny_emrrg, save_tiny_llm
from PIL import Image
from pydicom.data import get_testdata_file

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.commands.demo import BASELINE_NAMES, DEMO_DATA, MODEL_NAME
from modeling_rrg_mamba.commands.generate import collect_images, group_studies
from modeling_rrg_mamba.commands.heatmaps import PANEL, grid_maps, key_word_positions, word_cross_attention
from modeling_rrg_mamba.rrg_mamba import (
    RRGMambaForConditionalGeneration,
    RRGMambaProcessor,
)

DEMO_IMAGES = sorted((DEMO_DATA / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A tiny random RRG-Mamba with its processor, saved the way `rrg-mamba train` saves it."""
    return save_demo_model(tmp_path_factory.mktemp("model"))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------------------------- generate


def test_generate_decodes_with_the_saved_generation_config_unless_told_otherwise(saved_model, tmp_path):
    """Without --num_beams / --max_new_tokens, the model's own generation_config.json (its recipe's decoding)
    decides; the flags override it."""
    import shutil

    from transformers import GenerationConfig

    folder = tmp_path / "model"
    shutil.copytree(saved_model, folder)
    settings = GenerationConfig.from_pretrained(folder)
    # <pad> <bos> <eos> <unk> suppressed: every report is exactly as long as the decoding settings allow
    settings.update(max_new_tokens=2, num_beams=1, suppress_tokens=[0, 1, 2, 3])
    settings.save_pretrained(folder)
    film = tmp_path / "film.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 80), dtype=np.uint8)).save(film)
    main(["generate", "--model", str(folder), "--images", str(film), "--output", str(tmp_path / "saved.jsonl")])
    assert len(read_jsonl(tmp_path / "saved.jsonl")[0]["prediction"].split()) == 2
    main(
        [
            "generate",
            "--model",
            str(folder),
            "--images",
            str(film),
            "--output",
            str(tmp_path / "flag.jsonl"),
            "--max_new_tokens",
            "5",
        ]
    )
    assert len(read_jsonl(tmp_path / "flag.jsonl")[0]["prediction"].split()) == 5


def test_generate_reads_files_folders_and_dicom_and_draws_heatmaps(saved_model, tmp_path):
    folder = tmp_path / "films"
    folder.mkdir()
    for image in DEMO_IMAGES[:3]:
        shutil.copy(image, folder / image.name)
    dicom = get_testdata_file("CT_small.dcm")
    output, heatmaps = tmp_path / "reports.jsonl", tmp_path / "heatmaps"
    code = main(
        [
            "generate",
            "--model",
            str(saved_model),
            "--images",
            str(folder),
            dicom,
            "--output",
            str(output),
            "--heatmaps",
            str(heatmaps),
            "--batch_size",
            "2",
            "--num_beams",
            "2",
            "--max_new_tokens",
            "6",
        ]
    )
    assert code == 0
    records = read_jsonl(output)
    assert [r["images"] for r in records] == [[str(p)] for p in sorted(folder.iterdir())] + [[dicom]]
    for record in records:
        assert isinstance(record["prediction"], str)
        png = Image.open(record["heatmap"])
        assert png.size == (PANEL * max(1, len(record["heatmap_words"])), PANEL + 18)
        assert set(record["heatmap_words"]) <= set(record["prediction"].split())


def test_generate_groups_views_into_studies_and_draws_one_row_per_view(saved_model, tmp_path):
    output, heatmaps = tmp_path / "reports.jsonl", tmp_path / "heatmaps"
    images = [str(p) for p in DEMO_IMAGES[:4]]
    main(
        [
            "generate",
            "--model",
            str(saved_model),
            "--images",
            *images,
            "--views_per_study",
            "2",
            "--output",
            str(output),
            "--heatmaps",
            str(heatmaps),
            "--num_beams",
            "1",
            "--max_new_tokens",
            "6",
        ]
    )
    records = read_jsonl(output)
    assert [r["images"] for r in records] == [images[:2], images[2:]]
    assert all(Image.open(r["heatmap"]).size[1] == 2 * PANEL + 18 for r in records)


def test_generate_rejects_missing_inputs(saved_model, tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nothere.png: no such image file or folder"):
        collect_images([tmp_path / "nothere.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty: folder holds no image files"):
        collect_images([tmp_path / "empty"])
    with pytest.raises(ValueError, match="3 images do not form studies of 2 views"):
        group_studies(DEMO_IMAGES[:3], 2)
    output = str(tmp_path / "r.jsonl")
    assert (
        main(["generate", "--model", str(tmp_path / "none"), "--images", str(DEMO_IMAGES[0]), "--output", output]) == 2
    )
    assert "no saved model directory" in capsys.readouterr().err
    assert (
        main(["generate", "--model", str(saved_model), "--images", str(DEMO_IMAGES[0]), "--views_per_study", "0"]) == 2
    )
    assert "rrg-mamba: error: --views_per_study" in capsys.readouterr().err


def test_heatmap_attention_is_the_generation_time_cross_attention(saved_model):
    """Teacher forcing on the generated words gives the attention each greedy step actually used."""
    model = RRGMambaForConditionalGeneration.from_pretrained(saved_model).eval()
    pixel_values = RRGMambaProcessor.from_pretrained(saved_model)(images=[str(DEMO_IMAGES[0])])["pixel_values"]
    out = model.generate(
        pixel_values,
        num_beams=1,
        max_new_tokens=5,
        min_new_tokens=5,
        output_attentions=True,
        return_dict_in_generate=True,
    )
    stepwise = torch.stack([step[-1].mean(dim=1)[:, -1] for step in out.cross_attentions], dim=1)  # (1, 5, N)
    torch.testing.assert_close(
        word_cross_attention(model, pixel_values, out.sequences), stepwise, rtol=1e-4, atol=1e-5
    )


def test_heatmap_helpers():
    assert key_word_positions(["the", "heart", ".", "is", "normal", "heart", "size"], 2) == [1, 4]
    attention = torch.arange(10, dtype=torch.float32)  # two views of [global + 2x2 grid]
    first, second = grid_maps(RRGMambaForConditionalGeneration, attention, views=2)
    np.testing.assert_array_equal(first, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(second, [[6, 7], [8, 9]])
    with pytest.raises(ValueError, match="do not split into 3 views"):
        grid_maps(RRGMambaForConditionalGeneration, attention, views=3)


# ----------------------------------------------------------------------------------------------- evaluate


def test_evaluate_prints_and_saves_the_metrics_table(tmp_path, capsys):
    predictions = tmp_path / "predictions.jsonl"
    pairs = [
        (
            "the heart is normal . there is a small left pleural effusion .",
            "the heart is normal . there is a small left pleural effusion .",
        ),
        ("no acute cardiopulmonary abnormality .", "mild cardiomegaly . no pneumothorax ."),
    ]
    predictions.write_text("".join(json.dumps({"prediction": p, "reference": r}) + "\n" for p, r in pairs))
    assert main(["evaluate", "--predictions", str(predictions), "--meteor", "false"]) == 0
    table = capsys.readouterr().out
    assert "BLEU_4" in table and "ce_14_micro_f1" in table and "2 pairs scored" in table
    saved = json.loads((tmp_path / "predictions.metrics.json").read_text())
    assert saved["num_pairs"] == 2 and 0.0 < saved["metrics"]["BLEU_1"] < 1.0
    assert f"{saved['metrics']['BLEU_4']:.4f}" in table


def test_evaluate_rejects_bad_input(tmp_path, capsys):
    assert main(["evaluate", "--predictions", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prediction": "a", "reference": "b"}\n{"prediction": 3}\n')
    assert main(["evaluate", "--predictions", str(broken), "--meteor", "false"]) == 2
    assert "broken.jsonl: line 2" in capsys.readouterr().err


def test_usage_and_unknown_commands(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["fly"]) == 2
    assert "unknown command 'fly'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_runs_end_to_end_offline(tmp_path):
    """`rrg-mamba demo` with two training steps: trains, selects on validation, generates, scores, draws."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [sys.executable, "-m", "modeling_rrg_mamba.cli", "demo", "--output-dir", str(tmp_path), "--max-steps", "2"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not on radiology reports" in result.stdout and "index.html" in result.stdout
    metrics = json.loads((tmp_path / "test_metrics.json").read_text())
    model_scores = metrics["systems"][MODEL_NAME]
    assert metrics["num_test_films"] == 8 and {"BLEU_4", "METEOR", "CIDEr", "ce_14_micro_f1"} <= set(model_scores)
    assert set(metrics["systems"]) == {MODEL_NAME, *BASELINE_NAMES}  # beside the image-blind baselines
    records = read_jsonl(tmp_path / "test_reports.jsonl")
    assert len(records) == 8 and all(r["prediction"] and r["reference"] for r in records)
    assert all(Path(r["heatmap"]).is_file() for r in records)
    state = json.loads((tmp_path / "model" / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and state["best_model_checkpoint"].endswith("checkpoint-2")
    assert any("eval_BLEU_4" in entry for entry in state["log_history"])  # selected on validation metrics
    assert list((tmp_path / "model" / "runs").rglob("events.out.tfevents.*"))  # TensorBoard logs


# ------------------------------------------------------------------------------------------ EMRRG generate


def test_generate_with_an_emrrg_model_returns_only_the_report(tmp_path):
    """EMRRG answers after its prompt: the JSONL holds the generated continuation only; heatmaps are refused."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        save_tiny_emrrg(tmp_path / "emrrg", save_tiny_llm(tmp_path / "llm"), num_hidden_layers=2)
    )
    output = tmp_path / "reports.jsonl"
    main(
        [
            "generate",
            "--model",
            str(tmp_path / "emrrg"),
            "--images",
            str(DEMO_IMAGES[0]),
            "--output",
            str(output),
            "--num_beams",
            "1",
            "--max_new_tokens",
            "4",
        ]
    )
    (record,) = read_jsonl(output)
    # The prompt alone is longer than 4 tokens; at most the 4 new tokens remain.
    assert record["prediction"] and len(tokenizer(record["prediction"], add_special_tokens=False)["input_ids"]) <= 4
    with pytest.raises(ValueError, match="no encoder-decoder cross-attention"):
        main(
            [
                "--debug",
                "generate",
                "--model",
                str(tmp_path / "emrrg"),
                "--images",
                str(DEMO_IMAGES[0]),
                "--output",
                str(output),
                "--overwrite",
                "--heatmaps",
                str(tmp_path / "maps"),
            ]
        )
