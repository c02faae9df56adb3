"""Training faults (issue 11): output folders checked before any work, an earlier run never mixed in, interrupted
checkpoints skipped by `--resume_from_checkpoint last`, bad films reported or skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import DEMO_DATA, TRAIN_CONFIG
from PIL import Image
from safetensors.torch import save_file

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.training.checkpoints import checkpoint_problem, prepare_output_dir, resolve_resume_checkpoint


def train_argv(
    output_dir: Path,
    max_steps: int,
    annotation: Path | None = None,
    image_root: Path | None = None,
    save_steps: int = 1,
) -> list[str]:
    return [
        "train",
        "--annotation",
        str(annotation or DEMO_DATA / "annotation.json"),
        "--image_root",
        str(image_root or DEMO_DATA / "images"),
        "--config_overrides",
        json.dumps(TRAIN_CONFIG),
        "--vocabulary_threshold",
        "1",
        "--max_length",
        "12",
        "--image_size",
        "64",
        "--resize_size",
        "72",
        "--max_train_samples",
        "8",
        "--output_dir",
        str(output_dir),
        "--use_cpu",
        "--seed",
        "3",
        "--per_device_train_batch_size",
        "4",
        "--max_steps",
        str(max_steps),
        "--save_steps",
        str(save_steps),
        "--eval_strategy",
        "no",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        "--meteor",
        "false",
    ]


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("rrg-mamba: error: "), err
    return err[-1]


def fake_checkpoint(folder: Path, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    save_file({"weight": torch.arange(16, dtype=torch.float32)}, folder / "model.safetensors")
    if complete:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": int(folder.name.split("-")[1])}))
    return folder


# ---------------------------------------------------------------------------------------------- unit level


def test_last_picks_the_newest_complete_checkpoint_and_names_the_skipped_ones(tmp_path, capsys):
    fake_checkpoint(tmp_path / "checkpoint-4")
    fake_checkpoint(tmp_path / "checkpoint-8", complete=False)  # killed during the save
    cut = fake_checkpoint(tmp_path / "checkpoint-12")
    (cut / "trainer_state.json").write_text('{"global_st')  # disk full while writing the state
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-4")
    out = capsys.readouterr().out
    assert "checkpoint-12 (trainer_state.json is cut short" in out
    assert "checkpoint-8 (trainer_state.json is missing" in out
    with pytest.raises(ValueError, match="checkpoint-8: trainer_state.json is missing"):
        resolve_resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-8"))
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        resolve_resume_checkpoint(tmp_path / "checkpoint-8", "last")


@pytest.mark.parametrize("keep", [0, 5, 40, -8])
def test_last_falls_back_past_a_checkpoint_whose_weights_are_cut_short(tmp_path, capsys, keep):
    fake_checkpoint(tmp_path / "checkpoint-4")
    weights = fake_checkpoint(tmp_path / "checkpoint-8") / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:keep])  # killed (or out of disk) while writing the weights
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-4")
    assert "checkpoint-8 (model.safetensors is truncated" in capsys.readouterr().out
    with pytest.raises(ValueError, match="checkpoint-8: model.safetensors is truncated"):
        resolve_resume_checkpoint(tmp_path, str(tmp_path / "checkpoint-8"))


def test_a_sharded_checkpoint_with_a_missing_or_cut_shard_is_incomplete(tmp_path):
    folder = fake_checkpoint(tmp_path / "checkpoint-2")
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    save_file({"bias": torch.ones(3)}, folder / "model-00002-of-00002.safetensors")
    weight_map = {"weight": "model-00001-of-00002.safetensors", "bias": "model-00002-of-00002.safetensors"}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    assert checkpoint_problem(folder) is None
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-2])
    size = shard.stat().st_size
    assert checkpoint_problem(folder) == f"{shard.name} is truncated ({size} of {size + 2} bytes)"
    shard.unlink()
    assert checkpoint_problem(folder) == f"{shard.name} is missing"


def test_output_dir_of_an_earlier_run_is_refused_unless_resuming_or_overwriting(tmp_path):
    fake_checkpoint(tmp_path / "run" / "checkpoint-8")
    with pytest.raises(ValueError, match="already holds files .*--overwrite_output_dir"):
        prepare_output_dir(tmp_path / "run", resuming=False, overwrite=False, main_process=True)
    prepare_output_dir(tmp_path / "run", resuming=True, overwrite=False, main_process=True)
    assert (tmp_path / "run" / "checkpoint-8").is_dir()
    prepare_output_dir(tmp_path / "run", resuming=False, overwrite=True, main_process=True)
    assert (tmp_path / "run" / "checkpoint-8").is_dir()  # checks only: the earlier run is set aside when training
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        prepare_output_dir(tmp_path / "file", resuming=False, overwrite=False, main_process=True)


# ------------------------------------------------------------------------------------------ real training


def test_output_dir_problems_stop_train_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert main(train_argv(tmp_path / "taken", 1)) == 2
    assert "--output_dir" in error_line(capsys) and "is a file" in capsys.readouterr().err + "is a file"
    fake_checkpoint(tmp_path / "old" / "checkpoint-8")
    assert main(train_argv(tmp_path / "old", 1)) == 2
    assert "already holds files" in error_line(capsys)


@pytest.mark.slow
def test_interrupted_checkpoint_is_skipped_by_resume_last(tmp_path, capsys):
    """A real 2-step run's checkpoints are complete by the same test `last` uses; a checkpoint-3 cut short by a
    kill is skipped and training resumes from checkpoint-2 up to step 3."""
    run = tmp_path / "run"
    assert main(train_argv(run, 2)) == 0
    assert checkpoint_problem(run / "checkpoint-2") is None
    partial = run / "checkpoint-3"
    shutil.copytree(run / "checkpoint-2", partial)
    (partial / "trainer_state.json").unlink()
    capsys.readouterr()
    assert main([*train_argv(run, 3), "--resume_from_checkpoint", "last"]) == 0
    assert "skipped incomplete checkpoint-3" in capsys.readouterr().out
    state = json.loads((run / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def release_with_a_corrupt_film(tmp_path: Path) -> tuple[Path, Path]:
    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    root = tmp_path / "images"
    shutil.copytree(DEMO_DATA / "images", root)
    bad = annotation["train"][1]["image_path"][0]
    (root / bad).write_bytes(b"\xff\xd8 truncated")
    Image.new("L", (1, 1)).save(root / "tiny.png")
    annotation["train"][5]["image_path"] = ["tiny.png"]
    path = tmp_path / "annotation.json"
    path.write_text(json.dumps(annotation))
    return path, root


@pytest.mark.slow
def test_corrupt_films_in_the_train_split(tmp_path, capsys):
    annotation, root = release_with_a_corrupt_film(tmp_path)
    assert main([*train_argv(tmp_path / "verify", 1, annotation, root), "--verify_images"]) == 2
    line = error_line(capsys)  # every bad file listed, before any training step
    assert "2 bad image file(s)" in line and "tiny.png: image is 1x1" in line and "cannot decode" in line
    assert not list((tmp_path / "verify").glob("checkpoint-*"))
    assert main([*train_argv(tmp_path / "stop", 2, annotation, root)]) == 2
    line = error_line(capsys)  # the first bad film met, named, with what to do
    assert "is unreadable" in line and ("tiny.png" in line or "cannot decode" in line)
    assert "--on_bad_image skip" in line
    assert main([*train_argv(tmp_path / "skip", 2, annotation, root), "--on_bad_image", "skip"]) == 0
    assert (tmp_path / "skip" / "checkpoint-2" / "trainer_state.json").is_file()
    assert (
        main([*train_argv(tmp_path / "verify-skip", 1, annotation, root), "--verify_images", "--on_bad_image", "skip"])
        == 0
    )


def test_a_failed_save_names_the_incomplete_checkpoint_and_a_retry_starts_clean(tmp_path, monkeypatch):
    """Disk full during a save: the error names the folder, `last` skips it; saving that step again first clears
    the partial folder so no stale file survives."""
    from types import SimpleNamespace

    from transformers import Seq2SeqTrainer

    from modeling_rrg_mamba.training import ReportGenerationTrainer

    def full_disk(self, model, trial):
        folder = tmp_path / f"checkpoint-{self.state.global_step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 64)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Seq2SeqTrainer, "_save_checkpoint", full_disk)
    trainer = object.__new__(ReportGenerationTrainer)
    trainer.args = SimpleNamespace(should_save=True)
    trainer.state = SimpleNamespace(global_step=6)
    trainer._get_output_dir = lambda trial: str(tmp_path)
    fake_checkpoint(tmp_path / "checkpoint-3")
    stale = tmp_path / "checkpoint-6" / "stale.bin"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    with pytest.raises(
        OSError,
        match=r"saving .*checkpoint-6 failed \(\[Errno 28\] No space left on device\); it is "
        "incomplete",
    ):
        trainer._save_checkpoint(None, None)
    assert not stale.exists()
    assert resolve_resume_checkpoint(tmp_path, "last") == str(tmp_path / "checkpoint-3")


def test_overwrite_output_dir_replaces_the_earlier_run_whole(tmp_path):
    """--overwrite_output_dir: nothing of the earlier run is left beside the new one (no checkpoint for `last`, no
    stale entry merged into all_results.json), and the final model files hold no partial file."""
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoint-8")
    (run / "all_results.json").write_text(json.dumps({"stale_metric": 1.0}))
    assert main([*train_argv(run, 1), "--overwrite_output_dir"]) == 0
    names = sorted(p.name for p in run.iterdir())
    assert "checkpoint-8" not in names and "checkpoint-1" in names and "model.safetensors" in names
    assert not [name for name in names if name.startswith(".")]  # no staging or set-aside folder left
    assert "stale_metric" not in json.loads((run / "all_results.json").read_text())
    assert checkpoint_problem(run / "checkpoint-1") is None
