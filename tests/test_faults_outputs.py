"""Issue 26: output files are never mixed or misread; annotations with a key given twice are refused."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_DATA, save_demo_model
from safetensors.torch import load_file, save_file

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.data import JsonlWriter, OutputPathError, read_jsonl_records
from modeling_rrg_mamba.data.annotation import BadEntry, read_annotation

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
