"""Checkpoint folders: which are complete, which one ``--resume_from_checkpoint last`` means, and the output folder
checks made before a run starts.

A checkpoint is complete when its ``trainer_state.json`` parses and its weights file is readable: the Trainer writes
``trainer_state.json`` after the weights, optimizer, scheduler and RNG state (transformers 4.57 and 5.x), so a save
that was killed or ran out of disk lacks it or has it cut short.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..data.outputs import OutputPathError, check_output_dir

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors", "pytorch_model.bin")


def checkpoint_folders(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-<step>`` folders of ``output_dir``, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found)]


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """``None`` for a complete checkpoint, else what is wrong with it."""
    folder = Path(folder)
    state = folder / "trainer_state.json"
    if not state.is_file():
        return "trainer_state.json is missing (the save was interrupted)"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "trainer_state.json is cut short (the save was interrupted)"
    weights = [folder / name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not weights:
        return f"no weights file ({', '.join(WEIGHT_FILES[:1])})"
    if weights[0].name.endswith(".index.json"):
        return _sharded_weights_problem(weights[0])
    if weights[0].suffix == ".safetensors":
        return safetensors_problem(weights[0])
    return None


def safetensors_problem(path: Path) -> str | None:
    """``None`` when the header of a ``.safetensors`` file parses and the file holds every byte it declares (a save
    cut short by a kill or a full disk does not), else what is wrong; reads the header only."""
    size = path.stat().st_size
    with path.open("rb") as file:
        prefix = file.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
        if header_size is None or 8 + header_size > size:
            return f"{path.name} is truncated ({size} bytes, shorter than its header)"
        try:
            header = json.loads(file.read(header_size))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, IndexError, TypeError):
            return f"{path.name} has a damaged header"
    if 8 + header_size + end > size:
        return f"{path.name} is truncated ({size} of {8 + header_size + end} bytes)"
    return None


def _sharded_weights_problem(index: Path) -> str | None:
    """The first problem of the shards a ``model.safetensors.index.json`` lists."""
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return f"{index.name} is cut short or damaged"
    for shard in shards:
        path = index.parent / shard
        problem = f"{shard} is missing" if not path.is_file() else safetensors_problem(path)
        if problem:
            return problem
    return None


def resolve_resume_checkpoint(output_dir: str | os.PathLike, value: str | None) -> str | None:
    """The checkpoint to resume from: ``"last"`` is the newest complete ``checkpoint-*`` of ``output_dir`` (the
    incomplete ones newer than it are named in a warning); a path must be a complete checkpoint."""
    if value is None or value in ("", "False", "false"):
        return None
    if value != "last":
        problem = checkpoint_problem(value) if Path(value).is_dir() else "no such folder"
        if problem:
            raise ValueError(
                f"--resume_from_checkpoint: {value}: {problem}; pass another checkpoint or 'last' "
                "(the newest complete one)"
            )
        return value
    skipped = []
    for folder in reversed(checkpoint_folders(output_dir)):
        problem = checkpoint_problem(folder)
        if problem is None:
            if skipped:
                message = "; ".join(skipped)
                logger.warning("resume_from_checkpoint last: skipped incomplete %s", message)
                print(f"--resume_from_checkpoint last: resuming from {folder}; skipped incomplete {message}")
            return str(folder)
        skipped.append(f"{folder.name} ({problem})")
    raise ValueError(
        f"--resume_from_checkpoint last: {output_dir} holds no complete checkpoint"
        + (f" (incomplete: {'; '.join(skipped)})" if skipped else "")
        + "; start without it"
    )


def prepare_output_dir(
    output_dir: str | os.PathLike,
    resuming: bool,
    overwrite: bool,
    main_process: bool,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> None:
    """Before any work (nothing is created or removed here): ``output_dir`` can be a writable folder, is none of the
    run's ``inputs``, and holds no earlier run unless resuming it or ``overwrite`` (then no input may lie inside it:
    `earlier_run_set_aside` moves its contents away)."""
    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputPathError(f"--output_dir: {folder} is a file, not a folder; choose another output_dir")
    for given in inputs:
        if given is None:
            continue
        source, target = Path(given).resolve(), folder.resolve()
        if source == target or (overwrite and not resuming and target in source.parents):
            where = "is" if source == target else "holds"
            raise OutputPathError(
                f"--output_dir: {folder} {where} the input {given}; training there would "
                f"{'write over' if source == target else 'move away'} it: choose another output_dir"
            )
    contents = earlier_run(folder)
    if contents and not resuming and not overwrite:
        shown = ", ".join(p.name for p in contents[:5]) + (" ..." if len(contents) > 5 else "")
        raise OutputPathError(
            f"--output_dir: {folder} already holds files ({shown}) of an earlier run; resume it "
            "with --resume_from_checkpoint last, pass --overwrite_output_dir to replace it, or "
            "choose an empty folder"
        )
    check_output_dir(folder, "--output_dir")


def earlier_run(folder: Path) -> list[Path]:
    """What ``folder`` holds of an earlier run (hidden entries, e.g. a set-aside run, excluded)."""
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else []


@contextlib.contextmanager
def earlier_run_set_aside(output_dir: str | os.PathLike, active: bool) -> Iterator[None]:
    """``--overwrite_output_dir``: the earlier run's files are moved into a hidden ``.earlier-run-*`` folder while
    the new run trains, so that nothing of it mixes with the new one (``last`` cannot pick its checkpoints, its
    ``all_results.json`` is not merged). They are deleted once the new run has succeeded, put back if it failed
    before writing anything, and otherwise kept aside (a warning says where)."""
    folder = Path(output_dir)
    contents = earlier_run(folder) if active else []
    if not contents:
        yield
        return
    aside = Path(tempfile.mkdtemp(dir=folder, prefix=".earlier-run-"))
    for item in contents:
        item.rename(aside / item.name)
    try:
        yield
    except BaseException:
        if earlier_run(folder):
            logger.warning("the earlier run replaced by --overwrite_output_dir is kept in %s", aside)
        else:
            for item in aside.iterdir():
                item.rename(folder / item.name)
            aside.rmdir()
        raise
    shutil.rmtree(aside)


@contextlib.contextmanager
def no_logs_left_by_an_unlogged_failure(trainer: Any) -> Iterator[None]:
    """A run that fails before it has logged a step (e.g. refused at its first batch) leaves no logging folder of
    its own: the folders its TensorBoard writers created inside ``output_dir`` (holding only the run's arguments
    then) are removed, with the parents they created, so the output_dir checks see nothing written."""
    output = Path(trainer.args.output_dir).absolute()
    before = {path for path in output.rglob("*") if path.is_dir()} if output.is_dir() else set()
    try:
        yield
    except BaseException:
        if not trainer.state.log_history:
            for writer in (getattr(callback, "tb_writer", None) for callback in trainer.callback_handler.callbacks):
                if writer is not None:
                    _remove_new_log_folder(writer, output, before)
        raise


def _remove_new_log_folder(writer: Any, output: Path, before: set[Path]) -> None:
    writer.close()
    folder = Path(writer.get_logdir()).absolute()
    if output not in folder.parents or folder in before:
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if parent == output or parent in before or any(parent.iterdir()):
            break
        parent.rmdir()


__all__ = [
    "checkpoint_folders",
    "checkpoint_problem",
    "earlier_run",
    "earlier_run_set_aside",
    "no_logs_left_by_an_unlogged_failure",
    "prepare_output_dir",
    "resolve_resume_checkpoint",
]
