"""Save a model with its processor as a Hub repository that loads without this package, and push it.

A folder written by :func:`save_for_hub` holds the weights, ``config.json``, ``generation_config.json``, the processor
files, a flat copy of the model code (see :mod:`modeling_rrg_mamba.remote_code`) with ``auto_map`` entries in every
config file, and a model card (``README.md``). In a Python process that never imported ``modeling_rrg_mamba``::

    model = AutoModelForImageTextToText.from_pretrained(folder_or_repo, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder_or_repo, trust_remote_code=True)

The code and ``auto_map`` entries are what the models' and processors' own ``save_pretrained`` writes
(:mod:`modeling_rrg_mamba.saving`); :func:`save_for_hub` adds the model card and keeps the exported files apart from
whatever else the folder holds, so that :func:`push_to_hub` uploads only those.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..saving import is_package_object
from .model_card import MetricsSource, render_model_card

PACKAGE = __name__.split(".")[0]


def save_for_hub(
    model: Any,
    processor: Any,
    folder: str | os.PathLike,
    model_card_metrics: MetricsSource | None = None,
    *,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    datasets: Sequence[str] = (),
    dataset_name: str | None = None,
    safe_serialization: bool = True,
) -> Path:
    """Write ``model`` + ``processor`` to ``folder`` as a self-contained, ``trust_remote_code`` loadable repository.

    Args:
        model: an ``RRGMambaForConditionalGeneration`` or ``EMRRGForConditionalGeneration`` (any model whose class
            lives in this package and has a model-card template).
        processor: its processor (``RRGMambaProcessor`` / ``EMRRGProcessor``).
        folder: output folder (created if missing; existing files of the same names are overwritten).
        model_card_metrics: evaluation scores for the model card's table: a dict, or the path of a JSON file as
            written by ``modeling_rrg_mamba.metrics.score_prediction_file`` / the training CLI.
        repo_id: Hub repository id shown in the card's usage snippet (the folder name if unset).
        license: SPDX id for the card's front matter (check the licence of the training data first).
        datasets: Hub dataset ids for the front matter.
        dataset_name: human-readable name of the evaluation data, shown above the metrics table.
        safe_serialization: save weights as safetensors.

    Returns:
        The folder. Files it held before that are not part of the export (a training run's ``optimizer.pt``,
        ``rng_state.pth``, ``training_args.bin``, checkpoints, ...) are left alone, named in a warning, and never
        uploaded by :func:`push_to_hub`.
    """
    folder, exported = _save_for_hub(
        model,
        processor,
        folder,
        model_card_metrics,
        repo_id=repo_id,
        license=license,
        datasets=datasets,
        dataset_name=dataset_name,
        safe_serialization=safe_serialization,
    )
    others = sorted(set(_listing(folder)) - set(exported))
    if others:
        shown = ", ".join(others[:8]) + (f" and {len(others) - 8} more" if len(others) > 8 else "")
        warnings.warn(
            f"{folder} also holds files that are not part of the model repository ({shown}); push_to_hub "
            "uploads only the exported files, so do not upload the folder by other means",
            UserWarning,
            stacklevel=2,
        )
    return folder


def _listing(folder: Path) -> dict[str, int]:
    """Relative path -> size of every file under ``folder`` (hidden export staging folders left out)."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in folder.rglob("*")
        if p.is_file() and not p.relative_to(folder).parts[0].startswith(".export-")
    }


def _save_for_hub(
    model: Any, processor: Any, folder: str | os.PathLike, model_card_metrics: MetricsSource | None, **options: Any
) -> tuple[Path, list[str]]:
    """:func:`save_for_hub`'s work; also returns the files it wrote (relative paths)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options["repo_id"] = options.get("repo_id") or folder.resolve().name
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as staging:
        _write_export(model, processor, Path(staging), model_card_metrics, **options)
        exported = sorted(_listing(Path(staging)))
        for name in exported:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(Path(staging) / name, folder / name)
    return folder, exported


def _write_export(
    model: Any,
    processor: Any,
    folder: Path,
    model_card_metrics: MetricsSource | None,
    *,
    repo_id: str | None,
    license: str,
    datasets: Sequence[str],
    dataset_name: str | None,
    safe_serialization: bool,
) -> None:
    if hasattr(model, "merge_and_unload"):
        raise ValueError(
            f"model: {type(model).__name__} carries PEFT adapters; merge them first (model.merge_and_unload()) "
            "or save the adapter with model.save_pretrained"
        )
    if not is_package_object(model):
        raise ValueError(f"model: {type(model).__name__} is not a model of {PACKAGE}; nothing to export")
    if processor is None:
        raise ValueError("processor: required, so that AutoProcessor can load the repository")
    if not is_package_object(processor):
        raise ValueError(f"processor: {type(processor).__name__} is not a processor of {PACKAGE}; pass the model's")
    # both write their code and auto_map entries themselves (modeling_rrg_mamba.saving)
    model.save_pretrained(folder, safe_serialization=safe_serialization)
    processor.save_pretrained(folder)
    card = render_model_card(
        model,
        metrics=model_card_metrics,
        repo_id=repo_id or folder.name,
        license=license,
        datasets=datasets,
        dataset_name=dataset_name,
        code_folder=folder,
    )
    (folder / "README.md").write_text(card, encoding="utf-8")


def push_to_hub(
    model: Any,
    processor: Any,
    repo_id: str,
    folder: str | os.PathLike,
    model_card_metrics: MetricsSource | None = None,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str = "Upload model, processor, remote code and model card",
    license: str = "apache-2.0",
    datasets: Sequence[str] = (),
    dataset_name: str | None = None,
) -> Any:
    """:func:`save_for_hub` into ``folder``, then create ``repo_id`` (private by default) and upload the folder.

    Only the files the export wrote are uploaded, whatever else ``folder`` holds (a training output folder's
    optimizer / RNG / ``training_args.bin`` pickles stay local). Returns the ``CommitInfo`` of the upload. Needs
    network access and a token with write access.
    """
    from huggingface_hub import HfApi

    folder, exported = _save_for_hub(
        model,
        processor,
        folder,
        model_card_metrics,
        repo_id=repo_id,
        license=license,
        datasets=datasets,
        dataset_name=dataset_name,
        safe_serialization=True,
    )
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        repo_type="model",
        allow_patterns=exported,
    )


__all__ = ["push_to_hub", "save_for_hub"]
