"""Save a model with its processor as a Hub repository that loads without this package, and push it.

A folder written by :func:`save_for_hub` holds the weights, ``config.json``, ``generation_config.json``, the processor
files, a flat copy of the model code (see :mod:`.remote_code`) with ``auto_map`` entries in every config file, and a
model card (``README.md``). In a Python process that never imported ``modeling_rrg_mamba``::

    model = AutoModelForImageTextToText.from_pretrained(folder_or_repo, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder_or_repo, trust_remote_code=True)

This does what ``register_for_auto_class()`` followed by ``save_pretrained`` does for a single-file model:
transformers' own copier (``custom_object_save``) follows only ``from .module import`` lines and would fail on the
package's ``from ..layers import ...``, so the objects are saved with their ``_auto_class`` unset and the code and
``auto_map`` entries are written here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .model_card import MetricsSource, render_model_card
from .remote_code import export_remote_code, in_package

PACKAGE = __name__.split(".")[0]
#: Auto classes written into config.json for the model. "AutoModelForVision2Seq" is the name transformers 4.x
#: (up to 4.57) uses for image-to-text generators; transformers 5 removed the class and never reads that key.
MODEL_AUTO_CLASSES = ("AutoModel", "AutoModelForImageTextToText", "AutoModelForVision2Seq")


def _class_reference(obj: Any, flat_names: Mapping[str, str]) -> str:
    cls = type(obj)
    return f"{flat_names[cls.__module__]}.{cls.__name__}"


def _is_package_object(obj: Any) -> bool:
    return in_package(type(obj).__module__, PACKAGE)


def _update_auto_map(path: Path, entries: Mapping[str, Any], nested_key: str | None = None) -> None:
    """Merge ``entries`` into the ``auto_map`` of the JSON file ``path`` (of its ``nested_key`` dict if given)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    target = data if nested_key is None else data[nested_key]
    target["auto_map"] = {**target.get("auto_map", {}), **entries}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


@contextlib.contextmanager
def _auto_class_unset(objects: Sequence[Any]) -> Iterator[None]:
    """Hide ``_auto_class`` (set by ``register_for_auto_class``) so ``save_pretrained`` does not copy code itself."""
    saved = []
    for obj in objects:
        if "_auto_class" in vars(type(obj)):
            saved.append((type(obj), type(obj)._auto_class))
            type(obj)._auto_class = None
    try:
        yield
    finally:
        for cls, value in saved:
            cls._auto_class = value


def write_auto_maps(folder: Path, model: Any, processor: Any, flat_names: Mapping[str, str]) -> None:
    """Point every config file of ``folder`` at the flat module defining its class.

    config.json: ``AutoConfig`` and :data:`MODEL_AUTO_CLASSES`; processor_config.json: ``AutoProcessor`` and, in
    its ``image_processor`` entry (transformers 5), ``AutoImageProcessor``; preprocessor_config.json (transformers
    4): ``AutoImageProcessor``; tokenizer_config.json: ``AutoTokenizer`` (only for classes of this package; an
    LLM tokenizer of transformers itself needs no code).
    """
    model_entries = {name: _class_reference(model, flat_names) for name in MODEL_AUTO_CLASSES}
    _update_auto_map(
        folder / "config.json", {"AutoConfig": _class_reference(model.config, flat_names), **model_entries}
    )
    processor_file = folder / "processor_config.json"
    if processor_file.exists():
        _update_auto_map(processor_file, {"AutoProcessor": _class_reference(processor, flat_names)})
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None and _is_package_object(image_processor):
        entry = {"AutoImageProcessor": _class_reference(image_processor, flat_names)}
        if processor_file.exists() and "image_processor" in json.loads(processor_file.read_text(encoding="utf-8")):
            _update_auto_map(processor_file, entry, nested_key="image_processor")
        if (folder / "preprocessor_config.json").exists():
            _update_auto_map(folder / "preprocessor_config.json", entry)
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is not None and _is_package_object(tokenizer) and (folder / "tokenizer_config.json").exists():
        # [slow, fast] as transformers writes it for a tokenizer class whose name does not end in "Fast"
        _update_auto_map(
            folder / "tokenizer_config.json", {"AutoTokenizer": [_class_reference(tokenizer, flat_names), None]}
        )


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
    if not _is_package_object(model):
        raise ValueError(f"model: {type(model).__name__} is not a model of {PACKAGE}; nothing to export")
    if processor is None:
        raise ValueError("processor: required, so that AutoProcessor can load the repository")
    parts = [processor, getattr(processor, "image_processor", None), getattr(processor, "tokenizer", None)]
    with _auto_class_unset([model, model.config, *[part for part in parts if part is not None]]):
        model.save_pretrained(folder, safe_serialization=safe_serialization)
        processor.save_pretrained(folder)
    entry_objects = [model, model.config, *[part for part in parts if part is not None and _is_package_object(part)]]
    home_package = type(model).__module__.rpartition(".")[0]
    flat_names = export_remote_code([type(obj).__module__ for obj in entry_objects], folder, home_package)
    write_auto_maps(folder, model, processor, flat_names)
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


__all__ = ["MODEL_AUTO_CLASSES", "push_to_hub", "save_for_hub", "write_auto_maps"]
