"""Bad inputs and faults of `rrg-mamba generate / evaluate / verify` and the loaders (issue 11): fail early, name the
file, lose nothing. Training faults are in test_faults_training.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from conftest import DEMO_DATA, save_demo_model
from PIL import Image
from safetensors.torch import load_file, save_file

import modeling_rrg_mamba.image_processing_xray as xray_module
from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.data import BadEntry, ReportGenerationCollator, build_dataset_dict
from modeling_rrg_mamba.image_processing_xray import load_xray_image

DEMO_IMAGES = sorted((DEMO_DATA / "images").glob("*.jpg"))
FAST = ["--num_beams", "1", "--max_new_tokens", "4", "--batch_size", "1"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    """A tiny random RRG-Mamba with its processor, saved the way `rrg-mamba train` saves it."""
    return save_demo_model(tmp_path_factory.mktemp("model"))


def model_copy(saved_model: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(saved_model, copy)
    return copy


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("rrg-mamba: error: "), err
    return err[-1]


def films_with_one_bad(tmp_path: Path) -> Path:
    folder = tmp_path / "films"
    folder.mkdir()
    for index, image in enumerate(DEMO_IMAGES[:4]):
        shutil.copy(image, folder / f"{index}.jpg")
    (folder / "2.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    return folder


# --------------------------------------------------------------------------------------------- command line


def test_user_errors_are_one_line_with_exit_2_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    missing = str(tmp_path / "missing.jsonl")
    assert main(["evaluate", "--predictions", missing]) == 2
    assert "no such file" in error_line(capsys) and "Traceback" not in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        main(["--debug", "evaluate", "--predictions", missing])
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--predictions", missing, "--debug"])
    monkeypatch.setenv("RRG_MAMBA_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["evaluate", "--predictions", missing])
    monkeypatch.delenv("RRG_MAMBA_DEBUG")

    def bug(argv):
        raise TypeError("an internal bug")

    monkeypatch.setitem(main.__globals__["COMMANDS"], "evaluate", bug)
    with pytest.raises(TypeError, match="an internal bug"):  # bugs keep their traceback
        main(["evaluate", "--predictions", missing])


HELP_SCRIPT = """
import sys
import modeling_rrg_mamba
package_heavy = "torch" in sys.modules
from modeling_rrg_mamba.cli import main
main([*sys.argv[1:], "--help"])
print("HEAVY" if {"torch", "transformers"} & set(sys.modules) else "LIGHT", "PACKAGE_HEAVY" if package_heavy else "")
"""


@pytest.mark.parametrize("command", ["", "train", "generate", "evaluate", "verify", "demo", "convert"])
def test_help_needs_neither_torch_nor_transformers_and_marks_required_flags(command):
    argv = [command] if command else []
    result = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    if command == "generate":
        assert "--model MODEL" in result.stdout and "(required) Saved model" in result.stdout
        assert "(required unless --annotation)" in result.stdout
    if command == "convert":
        assert "--checkpoint CHECKPOINT" in result.stdout and "(required) The authors'" in result.stdout
    if command == "train":
        for flag in ("--annotation", "--on_bad_image", "--verify_images", "--overwrite_output_dir", "--help-all"):
            assert flag in result.stdout, flag
    if "PACKAGE_HEAVY" in result.stdout:
        pytest.xfail("modeling_rrg_mamba/__init__.py imports both models (torch) eagerly; see issue 11 report")
    assert "LIGHT" in result.stdout


# ------------------------------------------------------------------------------------------------- generate


def test_unreadable_film_stops_generate_keeping_the_reports_so_far_and_resume_skips_them(
    saved_model, tmp_path, capsys
):
    folder, output = films_with_one_bad(tmp_path), tmp_path / "reports.jsonl"
    argv = [
        "generate",
        "--model",
        str(saved_model),
        "--images",
        str(folder),
        "--output",
        str(output),
        *FAST,
        "--heatmaps",
        str(tmp_path / "maps"),
    ]
    assert main(argv) == 2
    line = error_line(capsys)
    assert "2.jpg" in line and "2 reports kept" in line and "--resume" in line
    assert [Path(r["images"][0]).name for r in read_jsonl(output)] == ["0.jpg", "1.jpg"]
    assert main(argv) == 2 and "already holds reports" in error_line(capsys)  # no silent overwrite
    assert main([*argv, "--resume", "--on_bad_image", "skip"]) == 0
    captured = capsys.readouterr()
    assert "1 studies skipped" in captured.err and "2.jpg" in captured.err
    records = read_jsonl(output)
    assert [Path(r["images"][0]).name for r in records] == ["0.jpg", "1.jpg", "3.jpg"]
    assert len({r["heatmap"] for r in records}) == 3 and all(Path(r["heatmap"]).is_file() for r in records)


def test_generate_resume_drops_a_line_cut_short_by_a_kill(saved_model, tmp_path):
    output = tmp_path / "reports.jsonl"
    images = [str(p) for p in DEMO_IMAGES[:2]]
    model = ["generate", "--model", str(saved_model), "--output", str(output), *FAST]
    assert main([*model, "--images", images[0]]) == 0
    with open(output, "a", encoding="utf-8") as handle:
        handle.write('{"id": "y", "ima')  # a second record cut short by a kill
    assert main([*model, "--images", *images, "--resume"]) == 0
    assert [r["images"] for r in read_jsonl(output)] == [[images[0]], [images[1]]]


@pytest.mark.parametrize("case", ["output_is_folder", "output_under_file", "heatmaps_is_file"])
def test_every_output_path_is_checked_before_any_work(tmp_path, capsys, case):
    (tmp_path / "taken").write_text("a file")
    output, extra = str(tmp_path / "reports.jsonl"), []
    if case == "output_is_folder":
        output = str(tmp_path)
    elif case == "output_under_file":
        output = str(tmp_path / "taken" / "reports.jsonl")
    else:
        extra = ["--heatmaps", str(tmp_path / "taken")]
    # The model folder does not exist: the output error must come first, before any loading or generating.
    assert (
        main(
            [
                "generate",
                "--model",
                str(tmp_path / "no-model"),
                "--images",
                str(DEMO_IMAGES[0]),
                "--output",
                output,
                *extra,
            ]
        )
        == 2
    )
    line = error_line(capsys)
    assert ("--heatmaps" if extra else "--output") in line and "config.json" not in line


def corrupt_weights(model_dir: Path, case: str) -> str:
    weights = model_dir / "model.safetensors"
    if case == "unrelated_keys":
        save_file({"encoder.something.weight": torch.zeros(2)}, weights)
        return "weights missing"
    if case == "one_missing":
        tensors = load_file(weights)
        name = sorted(tensors)[0]
        del tensors[name]
        save_file(tensors, weights)
        return name
    if case == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
        return "model.safetensors: not a readable safetensors file"
    if case == "empty":
        weights.write_bytes(b"")
        return "model.safetensors: not a readable safetensors file"
    if case == "config_not_json":
        (model_dir / "config.json").write_text("{not json")
        return "config.json: not a JSON config"
    config = json.loads((model_dir / "config.json").read_text())  # model_type of the other architecture
    config["model_type"] = "emrrg"
    (model_dir / "config.json").write_text(json.dumps(config))
    return "tensors in the weights file are weights of a 'emrrg' model: does config.json's model_type match"


@pytest.mark.parametrize(
    "case", ["unrelated_keys", "one_missing", "truncated", "empty", "config_not_json", "wrong_model_type"]
)
def test_damaged_or_foreign_weights_stop_generate_naming_the_problem(saved_model, tmp_path, capsys, case):
    model_dir = model_copy(saved_model, tmp_path)
    expected = corrupt_weights(model_dir, case)
    output = tmp_path / "reports.jsonl"
    assert (
        main(["generate", "--model", str(model_dir), "--images", str(DEMO_IMAGES[0]), "--output", str(output), *FAST])
        == 2
    )
    line = error_line(capsys)
    assert expected in line and str(model_dir) in line
    assert not output.exists() or output.read_text() == ""


def test_generate_from_an_annotation_split_feeds_evaluate_as_written(saved_model, tmp_path, capsys):
    output = tmp_path / "reports.jsonl"
    assert (
        main(
            [
                "generate",
                "--model",
                str(saved_model),
                "--annotation",
                str(DEMO_DATA / "annotation.json"),
                "--image_root",
                str(DEMO_DATA / "images"),
                "--split",
                "test",
                "--output",
                str(output),
                *FAST,
            ]
        )
        == 0
    )
    records = read_jsonl(output)
    test = json.loads((DEMO_DATA / "annotation.json").read_text())["test"]
    assert [(r["id"], r["reference"]) for r in records] == [(e["id"], e["report"]) for e in test]
    assert all(Path(r["images"][0]).is_file() for r in records)
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(output), "--meteor", "false", "--empty_text", "zero"]) == 0
    captured = capsys.readouterr()
    assert f"{len(test)} pairs scored" in captured.out and f"read {len(test)} pairs" in captured.err  # progress


# ------------------------------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("prediction, reference", [("", ""), ("...", "!!!"), ("heart is normal .", "  ")])
def test_texts_empty_after_cleaning_are_an_error_naming_the_line(tmp_path, capsys, prediction, reference):
    path = tmp_path / "predictions.jsonl"
    path.write_text(
        json.dumps({"prediction": "the heart is normal .", "reference": "the heart is normal ."})
        + "\n"
        + json.dumps({"prediction": prediction, "reference": reference})
        + "\n"
    )
    assert main(["evaluate", "--predictions", str(path), "--meteor", "false"]) == 2
    assert "predictions.jsonl: line 2" in error_line(capsys)
    assert main(["evaluate", "--predictions", str(path), "--meteor", "false", "--empty_text", "zero"]) == 0
    result = json.loads(path.with_suffix(".metrics.json").read_text())
    assert 2 in result["empty_predictions"] + result["empty_references"]
    assert result["metrics"]["BLEU_1"] < 1.0 and result["metrics"]["ROUGE_L"] < 1.0


def test_all_empty_pairs_score_zero_not_perfect(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps({"prediction": "", "reference": ""}) + "\n")
    assert main(["evaluate", "--predictions", str(path), "--meteor", "false", "--empty_text", "zero"]) == 0
    metrics = json.loads(path.with_suffix(".metrics.json").read_text())["metrics"]
    assert metrics["BLEU_1"] < 1e-6 and metrics["ROUGE_L"] == 0.0 and metrics["CIDEr"] == 0.0


def test_non_utf8_predictions_name_file_and_line(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b'{"prediction": "a", "reference": "b"}\n{"prediction": "caf\xe9", "reference": "b"}\n')
    assert main(["evaluate", "--predictions", str(path), "--meteor", "false"]) == 2
    line = error_line(capsys)
    assert "predictions.jsonl: line 2 is not UTF-8" in line


def test_evaluate_checks_its_output_before_scoring(tmp_path, capsys):
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps({"prediction": "a b", "reference": "a b"}) + "\n")
    assert main(["evaluate", "--predictions", str(path), "--output", str(tmp_path), "--meteor", "false"]) == 2
    assert "is a folder" in error_line(capsys)


# --------------------------------------------------------------------------------------------- loaders


def _annotation(tmp_path: Path, splits: dict) -> Path:
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(splits))
    return path


def _entry(study: str, *images: str) -> dict:
    return {"id": study, "report": "the heart is normal .", "image_path": list(images or [f"{study}.png"])}


@pytest.fixture
def film_root(tmp_path) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for name in ("a", "b", "c", "d"):
        Image.new("L", (32, 32), 100).save(root / f"{name}.png")
    return root


def test_duplicate_ids_split_overlap_and_mixed_view_counts_are_named(film_root):
    with pytest.raises(BadEntry, match="duplicate study ids 'a'"):
        build_dataset_dict({"train": [_entry("a"), _entry("a", "b.png")]}, image_root=film_root)
    with pytest.warns(UserWarning, match="duplicate study ids 'a'"):
        kept = build_dataset_dict(
            {"train": [_entry("a"), _entry("a", "b.png")]}, image_root=film_root, on_error="skip"
        )
    assert kept["train"]["id"] == ["a"]
    overlap = {"train": [_entry("a"), _entry("b")], "test": [_entry("a"), _entry("x", "b.png")]}
    with pytest.raises(BadEntry, match=r"2 studies are in more than one split: 'a \(train and test\)', 'x"):
        build_dataset_dict(overlap, image_root=film_root)
    assert build_dataset_dict(overlap, image_root=film_root, allow_split_overlap=True)["test"].num_rows == 2
    mixed = {"train": [_entry("a", "a.png", "b.png"), _entry("c", "c.png", "d.png"), _entry("d")]}
    with pytest.raises(BadEntry, match=r"different numbers of views .*1 with 1 view\(s\): 'd'"):
        build_dataset_dict(mixed, image_root=film_root)


def test_collator_names_the_studies_of_a_batch_with_different_view_counts(film_root):
    collator = ReportGenerationCollator(lambda images, reports: images)
    with pytest.raises(ValueError, match=r"'one': 1, 'two': 2"):
        collator(
            [
                {"id": "one", "images": [str(film_root / "a.png")], "report": "x"},
                {"id": "two", "images": [str(film_root / "b.png"), str(film_root / "c.png")], "report": "x"},
            ]
        )


def test_collator_skip_policy_leaves_a_bad_study_out_and_records_it(film_root, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    collator = ReportGenerationCollator(lambda images, reports: (images, reports), on_bad_image="skip")
    with pytest.warns(UserWarning, match="bad.png"):
        images, reports = collator(
            [
                {"id": "good", "images": [str(film_root / "a.png")], "report": "x"},
                {"id": "bad", "images": [str(tmp_path / "bad.png")], "report": "y"},
            ]
        )
    assert len(images) == 1 and reports == ["x"] and collator.skipped[0][0] == "bad"


@pytest.mark.parametrize(
    "size, message",
    [
        ((1, 1), "1x1 pixels; films need at least"),
        ((1, 2000), "1x2000 pixels; films need at least"),
        ((20, 2000), "20x2000 pixels, an aspect ratio above"),
    ],
)
def test_films_too_small_or_too_elongated_are_refused_naming_file_and_size(tmp_path, size, message):
    path = tmp_path / "strip.png"
    Image.new("L", size, 0).save(path)
    with pytest.raises(ValueError, match=message) as caught:
        load_xray_image(path)
    assert str(path) in str(caught.value)


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses above twice this: a 100x100 film is a "bomb"
    path = tmp_path / "huge.png"
    Image.new("L", (100, 100), 0).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="huge.png: cannot decode the image .*exceeds limit.*downscale the film"):
            load_xray_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # PIL's check off: ours still refuses
    monkeypatch.setattr(xray_module, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(ValueError, match=r"huge.png: image is 100x100 pixels \(0 MP\), more than"):
        load_xray_image(path)


def test_verify_lists_every_bad_file_and_entry(film_root, capsys):
    (film_root / "broken.png").write_bytes(b"\x89PNG broken")
    Image.new("L", (2, 2), 0).save(film_root / "tiny.png")
    path = _annotation(
        film_root.parent,
        {
            "train": [
                _entry("a"),
                _entry("m", "missing.png"),
                _entry("k", "broken.png"),
                _entry("t", "tiny.png"),
                _entry("a", "b.png"),
            ],
            "test": [_entry("c"), _entry("a2", "a.png")],
        },
    )
    assert main(["verify", "--annotation", str(path), "--image_root", str(film_root)]) == 1
    out = capsys.readouterr().out
    for expected in (
        "missing.png",
        "broken.png",
        "tiny.png: image is 2x2",
        "duplicate study ids 'a'",
        "more than one split",
        "problem(s)",
    ):
        assert expected in out, (expected, out)
    good = _annotation(film_root.parent, {"train": [_entry("a")], "test": [_entry("b")]})
    assert main(["verify", "--annotation", str(good), "--image_root", str(film_root)]) == 0


def test_annotation_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "annotation.json"
    path.write_bytes(b'{"train": [{"id": "caf\xe9"}]}')
    assert main(["verify", "--annotation", str(path), "--image_root", str(tmp_path)]) == 2
    assert "annotation.json: not UTF-8" in error_line(capsys)


def test_a_model_folder_without_tokenizer_files_is_named_with_the_missing_files(saved_model, tmp_path, capsys):
    folder = model_copy(saved_model, tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    argv = ["generate", "--model", str(folder), "--images", str(DEMO_DATA / "images")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(folder) in error and "tokenizer.json" in error and "tokenizer_config.json" in error
    assert "sentencepiece" not in error and "tiktoken" not in error
