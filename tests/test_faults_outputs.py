"""Issue 26: output files are never mixed or misread; annotations with a key given twice are refused."""

import contextlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_DATA, save_demo_model
from safetensors.torch import load_file, save_file

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.data import JsonlWriter, OutputPathError, read_jsonl_records
from modeling_rrg_mamba.data.annotation import BadEntry, read_annotation
from modeling_rrg_mamba.data.outputs import check_new_output_dir, replaced_dir

DEMO_IMAGES = sorted((DEMO_DATA / "images").glob("*.jpg"))


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', "3"])
def test_resume_refuses_a_line_that_is_not_a_record(tmp_path, line):
    path = tmp_path / "reports.jsonl"
    path.write_text('{"images": ["a.png"]}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(OutputPathError, match="line 2"):
        read_jsonl_records(path)


def test_resume_refuses_a_record_with_a_key_twice(tmp_path):
    path = tmp_path / "reports.jsonl"
    path.write_text('{"report": "a", "report": "b"}\n', encoding="utf-8")
    with pytest.raises(OutputPathError, match="line 1"):
        read_jsonl_records(path)


def test_second_writer_on_the_same_output_is_refused(tmp_path):
    path = tmp_path / "reports.jsonl"
    with JsonlWriter(path) as write:
        write({"n": 1})
        with pytest.raises(OutputPathError, match="another run"), JsonlWriter(path, append=True):
            pass
    with JsonlWriter(path, append=True) as write:  # the lock is gone once the first writer is done
        write({"n": 2})
    assert [r["n"] for r in read_jsonl_records(path)] == [1, 2]
    assert not (tmp_path / "reports.jsonl.lock").exists()


@pytest.mark.parametrize("key", ["test", "train"])
def test_annotation_with_a_split_given_twice_is_refused(tmp_path, key):
    path = tmp_path / "annotation.json"
    entry = json.dumps([{"id": "a", "report": "r", "image_path": ["x.png"]}])
    path.write_text(f'{{"{key}": {entry}, "val": [], "{key}": {entry}}}', encoding="utf-8")
    with pytest.raises(BadEntry, match=f'"{key}" appears twice'):
        read_annotation(path)


# ------------------------------------------------------------------------------------------- generate --resume


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    return save_demo_model(tmp_path_factory.mktemp("model"))


def _records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _generate(model, images, output, *extra):
    argv = ["generate", "--model", str(model), "--images", *map(str, images), "--output", str(output)]
    return main([*argv, "--num_beams", "1", "--max_new_tokens", "4", "--batch_size", "1", *extra])


def test_resume_with_other_images_keeps_the_earlier_records(saved_model, tmp_path):
    output = tmp_path / "reports.jsonl"
    assert _generate(saved_model, DEMO_IMAGES[:1], output) == 0
    assert _generate(saved_model, DEMO_IMAGES[1:2], output, "--resume") == 0
    assert [Path(r["images"][0]).name for r in _records(output)] == [p.name for p in DEMO_IMAGES[:2]]


def test_resume_compares_resolved_paths(saved_model, tmp_path, monkeypatch):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(DEMO_IMAGES[0], films / DEMO_IMAGES[0].name)
    output = tmp_path / "reports.jsonl"
    monkeypatch.chdir(tmp_path)
    assert _generate(saved_model, [Path("films")], output) == 0
    assert _generate(saved_model, [films.resolve()], output, "--resume") == 0
    assert len(_records(output)) == 1  # the same film given by another path is not generated twice


@pytest.mark.parametrize("change", ["settings", "weights"])
def test_resume_refuses_a_file_of_another_model_or_settings(saved_model, tmp_path, capsys, change):
    output = tmp_path / "reports.jsonl"
    assert _generate(saved_model, DEMO_IMAGES[:1], output) == 0
    before = output.read_bytes()
    model = saved_model
    extra = ["--num_beams", "2"] if change == "settings" else []
    if change == "weights":
        model = tmp_path / "other"
        shutil.copytree(saved_model, model)
        save_file({k: v + 1 for k, v in load_file(model / "model.safetensors").items()}, model / "model.safetensors")
    assert _generate(model, DEMO_IMAGES[1:2], output, "--resume", *extra) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "record 1" in error and ("num_beams" in error if change == "settings" else "weights" in error)
    assert output.read_bytes() == before  # nothing written


def test_every_record_names_its_model_and_settings(saved_model, tmp_path):
    output = tmp_path / "reports.jsonl"
    assert _generate(saved_model, DEMO_IMAGES[:2], output) == 0
    producers = [r["producer"] for r in _records(output)]
    assert producers[0] == producers[1]
    assert producers[0]["model"] == str(saved_model.resolve()) and len(producers[0]["weights"]) == 12
    assert producers[0]["num_beams"] == 1 and producers[0]["max_new_tokens"] == 4


def test_resume_refuses_records_that_do_not_name_their_model(saved_model, tmp_path, capsys):
    output = tmp_path / "reports.jsonl"
    output.write_text(json.dumps({"id": "x", "images": [str(DEMO_IMAGES[0])], "prediction": "a"}) + "\n")
    assert _generate(saved_model, DEMO_IMAGES[:2], output, "--resume") == 2
    assert "producer" in capsys.readouterr().err


# ------------------------------------------------------------------- outputs never over inputs or over a model


def _trained_folder(path):
    path.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        (path / name).write_text(name)
    return {name: (path / name).read_text() for name in ("config.json", "model.safetensors", "tokenizer.json")}


def test_convert_refuses_an_existing_model_folder(tmp_path, capsys):
    before = _trained_folder(tmp_path / "model")
    argv = ["convert", "--checkpoint", str(tmp_path / "x.pth"), "--output_dir", str(tmp_path / "model")]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "already holds a saved model" in error and "--overwrite" in error
    assert {name: (tmp_path / "model" / name).read_text() for name in before} == before


@pytest.mark.parametrize("where", ["same", "parent"])
def test_convert_refuses_an_output_that_is_or_holds_its_input(tmp_path, capsys, where):
    checkpoint = tmp_path / "in" / "x.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    out = checkpoint if where == "same" else checkpoint.parent
    assert main(["convert", "--checkpoint", str(checkpoint), "--output_dir", str(out), "--overwrite"]) == 2
    assert "the input" in capsys.readouterr().err and checkpoint.read_bytes() == b"weights"


def test_a_failed_convert_leaves_no_folder_behind(tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    out = tmp_path / "new" / "nested" / "model"
    assert main(["convert", "--checkpoint", str(tmp_path / "bad.pth"), "--output_dir", str(out)]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.pth"]


def test_convert_overwrite_replaces_the_folder_whole(tmp_path):
    import torch
    from test_emrrg_convert import AuthorsArm, randomized

    torch.save(randomized(AuthorsArm()).state_dict(), tmp_path / "backbone.pth")
    out = tmp_path / "model"
    _trained_folder(out)
    argv = ["convert", "--checkpoint", str(tmp_path / "backbone.pth"), "--output_dir", str(out), "--kind"]
    assert main([*argv, "xray_mamba", "--overwrite"]) == 0
    assert not (out / "tokenizer.json").exists()  # nothing of the old model is left beside the new weights
    assert json.loads((out / "config.json").read_text())["model_type"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.pth", "model"]


def test_replaced_dir_keeps_the_old_folder_when_writing_fails(tmp_path):
    before = _trained_folder(tmp_path / "model")
    with pytest.raises(RuntimeError), replaced_dir(tmp_path / "model") as staging:
        (staging / "config.json").write_text("new")
        raise RuntimeError("disk full")
    assert {name: (tmp_path / "model" / name).read_text() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_new_output_dir_accepts_an_empty_folder_and_creates_nothing(tmp_path):
    (tmp_path / "empty").mkdir()
    assert check_new_output_dir(tmp_path / "empty", "--output_dir") == tmp_path / "empty"
    check_new_output_dir(tmp_path / "a" / "b", "--output_dir")
    assert not (tmp_path / "a").exists()


def test_evaluate_refuses_to_write_its_metrics_over_the_predictions(tmp_path, capsys):
    predictions = tmp_path / "reports.jsonl"
    predictions.write_text(json.dumps({"prediction": "a", "reference": "a"}) + "\n")
    before = predictions.read_bytes()
    argv = ["evaluate", "--predictions", str(predictions), "--output", str(predictions), "--no_meteor"]
    assert main(argv) == 2
    assert "the input" in capsys.readouterr().err and predictions.read_bytes() == before


def test_generate_refuses_to_write_over_an_input_image(saved_model, tmp_path, capsys):
    image = tmp_path / DEMO_IMAGES[0].name
    shutil.copy(DEMO_IMAGES[0], image)
    before = image.read_bytes()
    assert _generate(saved_model, [image], image, "--overwrite") == 2
    assert "the input" in capsys.readouterr().err and image.read_bytes() == before


def test_a_dangling_link_in_an_images_folder_is_named_or_listed_as_skipped(saved_model, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(DEMO_IMAGES[0], films / "a.jpg")
    (films / "b.jpg").symlink_to(tmp_path / "gone.jpg")
    assert _generate(saved_model, [films], tmp_path / "r.jsonl") == 2
    assert "b.jpg" in capsys.readouterr().err
    assert _generate(saved_model, [films], tmp_path / "s.jsonl", "--on_bad_image", "skip") == 0
    assert "b.jpg" in capsys.readouterr().err and len(_records(tmp_path / "s.jsonl")) == 1


# -------------------------------------------------- every file written whole, nothing left by a failed command


def test_replaced_file_replaces_whole_or_leaves_the_earlier_file(tmp_path):
    from modeling_rrg_mamba.data.atomic import replaced_file, write_text_whole

    path = tmp_path / "metrics.json"
    write_text_whole(path, "earlier")
    with pytest.raises(OSError, match="disk full"), replaced_file(path) as partial:
        partial.write_text("half of the new")
        raise OSError("disk full")
    assert path.read_text() == "earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    write_text_whole(path, "new")
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def _evaluate(predictions, output, *extra):
    argv = ["evaluate", "--predictions", str(predictions), "--output", str(output), "--no_meteor"]
    return main([*argv, "--no_clinical_efficacy", *extra])


def test_evaluate_metrics_file_is_never_half_written(tmp_path, monkeypatch):
    import os

    predictions = tmp_path / "reports.jsonl"
    predictions.write_text(json.dumps({"prediction": "no effusion", "reference": "no effusion"}) + "\n")
    output = tmp_path / "metrics.json"
    assert _evaluate(predictions, output) == 0
    before = output.read_bytes()

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert _evaluate(predictions, output) == 2
    assert output.read_bytes() == before and json.loads(before)["num_pairs"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "reports.jsonl"]  # no partial file


def test_a_failed_evaluate_leaves_no_folder_behind(tmp_path):
    predictions = tmp_path / "reports.jsonl"
    predictions.write_text(json.dumps({"prediction": "...", "reference": "no effusion"}) + "\n")  # empty cleaned
    assert _evaluate(predictions, tmp_path / "new" / "deep" / "metrics.json") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports.jsonl"]


def _bad_films(tmp_path, bad_first):
    films = tmp_path / "films"
    films.mkdir()
    for index, image in enumerate(DEMO_IMAGES[:2]):
        shutil.copy(image, films / f"{index}.jpg")
    (films / ("0.jpg" if bad_first else "1.jpg")).write_bytes(b"\xff\xd8 not a jpeg")
    return films


def test_a_failed_generate_leaves_no_empty_output_or_folder(saved_model, tmp_path):
    films = _bad_films(tmp_path, bad_first=True)
    output, heatmaps = tmp_path / "new" / "deep" / "reports.jsonl", tmp_path / "maps" / "run"
    assert _generate(saved_model, [films], output, "--heatmaps", str(heatmaps)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films"]


@pytest.mark.parametrize("bad_first", [True, False])
def test_generate_overwrite_replaces_the_file_whole(saved_model, tmp_path, bad_first):
    """--overwrite: the earlier reports stay as they were until the new run has a record; then the file holds the
    new run's records only (never the earlier file cut in place)."""
    output = tmp_path / "reports.jsonl"
    assert _generate(saved_model, DEMO_IMAGES[2:5], output) == 0
    before = output.read_bytes()
    films = _bad_films(tmp_path, bad_first)
    assert _generate(saved_model, [films], output, "--overwrite") == 2
    if bad_first:
        assert output.read_bytes() == before
    else:
        assert [Path(r["images"][0]).name for r in _records(output)] == ["0.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["films", "reports.jsonl"]  # no partial, no lock


def test_heatmaps_never_mix_with_inputs_or_an_earlier_run(saved_model, tmp_path, capsys):
    films = tmp_path / "films"
    films.mkdir()
    shutil.copy(DEMO_IMAGES[0], films / "a.jpg")
    assert _generate(saved_model, [films], tmp_path / "r.jsonl", "--heatmaps", str(films / "maps")) == 2
    assert "inside the input folder" in capsys.readouterr().err and sorted(films.iterdir()) == [films / "a.jpg"]
    maps = tmp_path / "maps"
    assert _generate(saved_model, [films], tmp_path / "r.jsonl", "--heatmaps", str(maps)) == 0
    assert _generate(saved_model, [films], tmp_path / "s.jsonl", "--heatmaps", str(maps)) == 2
    assert "already holds 1 files" in capsys.readouterr().err and not (tmp_path / "s.jsonl").exists()


def test_resumed_heatmaps_continue_the_numbering(saved_model, tmp_path):
    maps, output = tmp_path / "maps", tmp_path / "r.jsonl"
    assert _generate(saved_model, DEMO_IMAGES[:1], output, "--heatmaps", str(maps)) == 0
    assert _generate(saved_model, DEMO_IMAGES[:2], output, "--heatmaps", str(maps), "--resume") == 0
    assert [Path(r["heatmap"]).name[:4] for r in _records(output)] == ["0000", "0001"]
    assert len(list(maps.iterdir())) == 2


# ------------------------------------------------------------------------------------------- train output_dir


def _train(output_dir, *extra):
    argv = ["train", "--annotation", str(DEMO_DATA / "annotation.json"), "--image_root", str(DEMO_DATA / "images")]
    return main([*argv, "--output_dir", str(output_dir), "--use_cpu", "--max_steps", "1", *extra])


def test_train_refuses_an_output_dir_that_is_an_input(saved_model, tmp_path, capsys):
    before = {p.name: p.read_bytes() for p in saved_model.iterdir() if p.is_file()}
    assert _train(saved_model, "--model_name_or_path", str(saved_model), "--overwrite_output_dir") == 2
    assert "is the input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in saved_model.iterdir() if p.is_file()} == before
    assert _train(DEMO_DATA / "images") == 2
    assert "is the input" in capsys.readouterr().err


def test_train_overwrite_refuses_an_input_inside_the_output_dir(tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(DEMO_DATA, run / "data")
    argv = [
        "train",
        "--annotation",
        str(run / "data" / "annotation.json"),
        "--image_root",
        str(run / "data" / "images"),
    ]
    assert main([*argv, "--output_dir", str(run), "--use_cpu", "--overwrite_output_dir"]) == 2
    assert "holds the input" in capsys.readouterr().err and (run / "data" / "annotation.json").is_file()


def test_a_failed_train_leaves_no_output_dir(tmp_path):
    annotation = tmp_path / "annotation.json"
    annotation.write_text(json.dumps({"test": json.loads((DEMO_DATA / "annotation.json").read_text())["test"]}))
    argv = ["train", "--annotation", str(annotation), "--image_root", str(DEMO_DATA / "images")]
    assert main([*argv, "--output_dir", str(tmp_path / "runs" / "new"), "--use_cpu", "--max_steps", "1"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotation.json"]


def test_earlier_run_set_aside_until_the_new_run_succeeds(tmp_path, caplog):
    from modeling_rrg_mamba.training.checkpoints import earlier_run_set_aside

    def earlier(run):
        (run / "checkpoint-8").mkdir(parents=True)
        (run / "all_results.json").write_text('{"old": 1}')

    def names(run):
        return sorted(p.name for p in run.iterdir())

    for outcome in ("success", "failed before writing", "failed after writing"):
        run = tmp_path / outcome.replace(" ", "_")
        earlier(run)
        expected = pytest.raises(RuntimeError) if outcome != "success" else contextlib.nullcontext()
        with expected, earlier_run_set_aside(run, active=True):
            assert names(run)[0].startswith(".earlier-run-") and len(names(run)) == 1  # nothing to mix with
            if outcome != "failed before writing":
                (run / "checkpoint-1").mkdir()
            if outcome != "success":
                raise RuntimeError("killed")
        if outcome == "success":
            assert names(run) == ["checkpoint-1"]
        elif outcome == "failed before writing":
            assert names(run) == ["all_results.json", "checkpoint-8"]  # put back as it was
        else:
            aside = [name for name in names(run) if name.startswith(".earlier-run-")]
            assert len(aside) == 1 and sorted(p.name for p in (run / aside[0]).iterdir()) == [
                "all_results.json",
                "checkpoint-8",
            ]
            assert aside[0] in caplog.text


@pytest.mark.parametrize("report_to", [[], ["--report_to", "tensorboard"]], ids=["unset", "tensorboard"])
def test_a_train_refused_at_its_first_batch_leaves_no_output_dir(tmp_path, report_to):
    """Refused once training has begun (every film unreadable): on every transformers release, with or without
    TensorBoard logs, nothing is left of the run (no output_dir/runs/... holding only its arguments)."""
    images = tmp_path / "images"
    shutil.copytree(DEMO_DATA / "images", images)
    for film in images.rglob("*.jpg"):
        film.write_bytes(b"")
    overrides = '{"visual_extractor": "resnet18", "backbone_kwargs": {"layers": [1, 1, 1, 1]}, "gdlm_preset": null}'
    argv = ["train", "--annotation", str(DEMO_DATA / "annotation.json"), "--image_root", str(images)]
    argv += ["--output_dir", str(tmp_path / "runs" / "new"), "--use_cpu", "--max_steps", "1"]
    assert main([*argv, "--config_overrides", overrides, *report_to]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]
