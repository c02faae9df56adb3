"""``rrg-mamba generate``: X-ray files (PNG, JPEG, DICOM) and folders -> one generated report per study, as JSONL,
with optional word-to-image heatmaps."""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data.atomic import replaced_file
from ..data.decoding import decoding_settings
from ..data.outputs import OutputPathError
from ..image_processing_xray import load_xray_image
from .heatmaps import grid_maps, key_word_positions, render_heatmaps, word_cross_attention

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")


def collect_images(paths: Sequence[str | os.PathLike], ignored: list[Path] | None = None) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted by path); a folder's other files
    are appended to ``ignored`` (so the command can say it did not read them). The same file given twice (e.g. on
    its own and in its folder) is an error naming it."""
    images: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found, others = [], []
            for entry in sorted(path.rglob("*")):  # a dangling link is kept: reading it fails by name (or skips)
                if entry.is_file() or entry.is_symlink():
                    (found if entry.suffix.lower() in IMAGE_SUFFIXES else others).append(entry)
            if not found:
                raise FileNotFoundError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
            if ignored is not None:
                ignored.extend(others)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image file or folder")
    seen: dict[str, Path] = {}
    for image in images:
        key = os.path.abspath(image)
        if key in seen:
            raise ValueError(f"--images: {image} is given twice (also as {seen[key]}); give each film once")
        seen[key] = image
    return images


def group_studies(images: Sequence[Path], views_per_study: int) -> list[list[Path]]:
    """Consecutive groups of ``views_per_study`` images (IU X-Ray: frontal then lateral)."""
    if len(images) % views_per_study:
        raise ValueError(f"images: {len(images)} images do not form studies of {views_per_study} views each")
    return [list(images[i : i + views_per_study]) for i in range(0, len(images), views_per_study)]


def batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def study_id(study: Sequence[Path]) -> str:
    return study[0].stem if len(study) == 1 else f"{study[0].parent.name}/{study[0].stem}"


def write_heatmap(
    model: torch.nn.Module,
    processor: Any,
    pixel_values: torch.Tensor,
    sequence: torch.Tensor,
    study: Sequence[Path],
    path: Path,
    max_words: int,
) -> list[str]:
    """Draw the cross-attention of the report's key words over the study's films; returns the words drawn."""
    attention = word_cross_attention(model, pixel_values[None], sequence[None])[0]  # (T-1, N)
    tokens = processor.tokenizer.convert_ids_to_tokens(sequence[1:].tolist())
    special = set(processor.tokenizer.all_special_tokens)
    words = [token if token not in special else "." for token in tokens]
    positions = key_word_positions(words, max_words)
    views = 1 if pixel_values.ndim == 3 else pixel_values.shape[0]
    films = [load_xray_image(image) for image in study]
    films = [film if film.ndim == 2 else film.mean(axis=-1) for film in films]
    maps = [grid_maps(model, attention[p], views) for p in positions]
    with replaced_file(path) as partial:  # whole or not at all
        render_heatmaps(films, [words[p] for p in positions], maps).save(partial, format="PNG")
    return [words[p] for p in positions]


HEATMAP_NAME = re.compile(r"^(\d+)_.*\.png$")


def first_heatmap_number(folder: str | os.PathLike, resume: bool) -> int:
    """The number of the first heatmap PNG a run writes into ``folder``: 0 in an empty (or new) folder, after the
    last one there with ``resume``. A folder holding files is refused otherwise (a new run would mix with them)."""
    folder = Path(folder)
    entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    if entries and not resume:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise OutputPathError(
            f"--heatmaps: {folder} already holds {len(entries)} files ({shown}); choose an empty folder, "
            "or --resume the run that wrote them"
        )
    numbers = [int(match.group(1)) for name in entries if (match := HEATMAP_NAME.match(name))]
    return max(numbers, default=-1) + 1


def _process(processor: Any, chunk: Sequence[Sequence[Path]]) -> Any:
    images = [[str(p) for p in study] for study in chunk]
    if all(len(study) == 1 for study in chunk):
        images = [views[0] for views in images]
    return processor(images=images)


def readable_batch(
    processor: Any,
    chunk: Sequence[int],
    studies: Sequence[Sequence[Path]],
    on_bad_image: str,
    skipped: list[dict[str, Any]],
) -> tuple[list[int], Any]:
    """(positions of the studies of ``chunk`` whose images decode, their processor inputs). A bad image raises
    (``on_bad_image="error"``) or its study is left out and added to ``skipped`` (``"skip"``)."""
    try:
        return list(chunk), _process(processor, [studies[i] for i in chunk])
    except (OSError, ValueError):
        if on_bad_image == "error":
            raise
    good = []
    for i in chunk:
        try:
            _process(processor, [studies[i]])
        except (OSError, ValueError) as error:
            skipped.append({"images": [str(p) for p in studies[i]], "reason": str(error)})
            tqdm.write(f"skipping study {study_id(studies[i])}: {error}")
            continue
        good.append(i)
    return good, (_process(processor, [studies[i] for i in good]) if good else None)


@torch.no_grad()
def generate_reports(
    model: torch.nn.Module,
    processor: Any,
    studies: Sequence[Sequence[Path]],
    batch_size: int = 8,
    heatmap_dir: str | os.PathLike | None = None,
    heatmap_words: int = 6,
    metadata: Sequence[dict[str, Any]] | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_bad_image: str = "error",
    skipped: list[dict[str, Any]] | None = None,
    heatmap_start: int = 0,
    **generation_kwargs: Any,
) -> list[dict[str, Any]]:
    """Generate one report per study (batched, with a progress bar); one record per study:
    ``{"id", "images", "prediction"}`` plus ``"heatmap"`` and ``"heatmap_words"`` when ``heatmap_dir`` is set, and
    the study's ``metadata`` entry (e.g. ``{"id", "reference"}``) when given.

    ``on_record`` is called with each record as soon as it exists (``rrg-mamba generate`` writes it to the JSONL
    then, so an error later loses nothing). A study with an unreadable image raises (``on_bad_image="error"``) or is
    left out and appended to ``skipped`` (``"skip"``). Heatmap files are numbered from ``heatmap_start`` (a resumed
    run continues the numbering instead of overwriting the first run's PNGs)."""
    if heatmap_dir is not None and not model.config.is_encoder_decoder:
        raise ValueError(
            f"--heatmaps: {type(model).__name__} has no encoder-decoder cross-attention to draw "
            "(heatmaps are for RRG-Mamba)"
        )
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image: expected 'error' or 'skip', got {on_bad_image!r}")
    skipped = [] if skipped is None else skipped
    model.eval()
    device = next(model.parameters()).device
    records: list[dict[str, Any]] = []
    with (
        decoding_settings(model, generation_kwargs) as generation_kwargs,
        tqdm(total=len(studies), desc="generating reports", unit="study") as progress,
    ):
        for chunk in batches(range(len(studies)), batch_size):
            positions, inputs = readable_batch(processor, chunk, studies, on_bad_image, skipped)
            if positions:
                records += _generate_batch(
                    model,
                    processor,
                    inputs.to(device),
                    [studies[i] for i in positions],
                    [metadata[i] if metadata else {} for i in positions],
                    heatmap_dir,
                    heatmap_words,
                    on_record,
                    heatmap_start + len(records),
                    generation_kwargs,
                )
            progress.update(len(chunk))
    return records


def _generate_batch(
    model: torch.nn.Module,
    processor: Any,
    inputs: Any,
    chunk: Sequence[Sequence[Path]],
    metadata: Sequence[dict[str, Any]],
    heatmap_dir: str | os.PathLike | None,
    heatmap_words: int,
    on_record: Callable[[dict[str, Any]], None] | None,
    first_index: int,
    generation_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    sequences = model.generate(**inputs, **generation_kwargs)
    if not model.config.is_encoder_decoder:  # EMRRG: the LLM returns the prompt too
        sequences = sequences[:, inputs["input_ids"].shape[1] :]
    reports = [report.strip() for report in processor.batch_decode(sequences, skip_special_tokens=True)]
    records = []
    for row, (study, report, extra) in enumerate(zip(chunk, reports, metadata)):
        record = {"id": study_id(study), "images": [str(p) for p in study], "prediction": report, **extra}
        if heatmap_dir is not None:
            path = Path(heatmap_dir) / f"{first_index + row:04d}_{study[0].stem}.png"
            record["heatmap_words"] = write_heatmap(
                model, processor, inputs["pixel_values"][row], sequences[row], study, path, heatmap_words
            )
            record["heatmap"] = str(path)
        if on_record is not None:
            on_record(record)
        records.append(record)
    return records


def annotation_studies(
    annotation: str | os.PathLike,
    image_root: str | os.PathLike | None,
    split: str,
    on_bad_image: str = "error",
    skipped: list[dict[str, Any]] | None = None,
) -> tuple[list[list[Path]], list[dict[str, Any]]]:
    """The studies of one split of an R2Gen annotation, with ``{"id", "reference"}`` for each record, so that the
    JSONL ``rrg-mamba generate`` writes can be scored by ``rrg-mamba evaluate`` as it is. With ``on_bad_image="skip"``
    every entry left out (missing film, path outside the root, ...) is appended to ``skipped``."""
    from ..data import build_dataset_dict, read_annotation
    from ..data.annotation import SPLIT_ALIASES

    if image_root is None:
        raise ValueError("--image_root: give the folder the annotation's image paths are relative to")
    data = read_annotation(annotation)
    wanted = SPLIT_ALIASES.get(split, split)
    key = next((k for k in data if SPLIT_ALIASES.get(k) == wanted), None) if isinstance(data, dict) else None
    if key is None:
        have = sorted(data) if isinstance(data, dict) else []
        raise ValueError(f"--split: {annotation} has no split {split!r} (it has {have})")
    on_error = "skip" if on_bad_image == "skip" else "raise"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset_dict(
            {key: data[key]}, image_root=image_root, on_error=on_error, source=str(annotation)
        )
    for warning in caught:  # the loader's "skipping <entry>: <reason>" become the command's skipped list
        if str(warning.message).startswith("skipping") and skipped is not None:
            skipped.append({"images": [], "reason": str(warning.message)})
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    rows = dataset[wanted]
    studies = [[Path(p) for p in images] for images in rows["images"]]
    return studies, [{"id": i, "reference": r} for i, r in zip(rows["id"], rows["report"])]


def _resolved(images: Sequence[str | os.PathLike]) -> tuple[str, ...]:
    """A study's images as resolved paths: ``films/a.png`` and ``/abs/films/a.png`` are the same study on resume."""
    return tuple(str(Path(image).resolve()) for image in images)


def pending_studies(
    output: Path,
    studies: Sequence[Sequence[Path]],
    metadata: Sequence[dict[str, Any]] | None,
    resume: bool,
    overwrite: bool,
    producer: dict[str, Any] | None = None,
) -> tuple[list[int], int]:
    """(positions of the studies still to generate, number already in ``output``). An ``output`` that holds records
    is resumed (``resume``: studies whose images are already written are skipped; every record must come from the
    same ``producer`` when one is given), replaced (``overwrite``) or refused."""
    from ..data import read_jsonl_records
    from ..data.outputs import check_same_producer

    everything = list(range(len(studies)))
    if not output.is_file() or output.stat().st_size == 0 or overwrite:
        return everything, 0
    if not resume:
        raise ValueError(
            f"--output: {output} already holds reports; pass --resume to generate only the studies it "
            "lacks, or --overwrite to start again"
        )
    records = read_jsonl_records(output, repair=True)
    if producer is not None:
        check_same_producer(output, records, producer)
    done = {_resolved(record.get("images") or ()) for record in records}
    todo = [i for i in everything if _resolved(studies[i]) not in done]
    return todo, len(everything) - len(todo)


def load_checked_model(model_dir: str | os.PathLike, processor_model_type: str | None = None) -> torch.nn.Module:
    """``AutoModelForImageTextToText.from_pretrained(model_dir)`` for the commands: a damaged weights file, missing
    or unexpected weights (which transformers only warns about, leaving random weights) raise ``ValueError`` naming
    the folder, the file and the tensors."""
    from transformers import AutoModelForImageTextToText

    model_dir = Path(model_dir)
    check_weight_files(model_dir)
    try:
        with quiet_transformers():  # its load report lists every weight; the problems are raised below in one line
            model, info = AutoModelForImageTextToText.from_pretrained(model_dir, output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        hint = weights_config_hint(model_dir) or "save it again with save_pretrained or rrg-mamba train"
        detail = " ".join(str(error).split())[:300]
        if "above report" in detail:  # transformers' own table, not shown
            detail = "weights of the wrong shape"
        raise ValueError(
            f"--model: cannot load the model in {model_dir} ({type(error).__name__}: {detail}); {hint}"
        ) from error
    check_loading_info(model_dir, model, info)
    return model


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings and progress bars off for the block (errors still show)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def weights_config_hint(model_dir: Path) -> str | None:
    """After a failed load: do the weight names fit the model config.json describes? (``None`` if unknown)."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForImageTextToText

    try:
        config = AutoConfig.from_pretrained(model_dir)
        with torch.device("meta"):
            expected = set(AutoModelForImageTextToText.from_config(config).state_dict())
        found: set[str] = set()
        for path in model_dir.glob("*.safetensors"):
            with safe_open(str(path), framework="pt") as handle:
                found |= set(handle.keys())
    except Exception:  # only a hint: the original error is reported either way
        return None
    if not found:
        return None
    shared = len(expected & found)
    if shared < len(found) / 2:
        return (
            f"only {shared} of the {len(found)} tensors in the weights file are weights of a "
            f"{config.model_type!r} model: does config.json's model_type match the weights file?"
        )
    return "the weight names match but their shapes do not: config.json's sizes do not match the weights file"


def check_weight_files(model_dir: Path) -> None:
    """A weights file exists, and every safetensors file has a readable header."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    others = ("pytorch_model.bin", "model.safetensors.index.json")
    if not files and not any((model_dir / name).is_file() for name in others):
        raise FileNotFoundError(
            f"--model: {model_dir} holds no weights (model.safetensors); is it a saved model folder?"
        )
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # SafetensorError is not exported under a stable name
            raise ValueError(
                f"{path}: not a readable safetensors file ({error}); the file is empty, truncated or "
                "damaged: copy it again or re-save the model"
            ) from None


def _listed(names: Sequence[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_loading_info(model_dir: Path, model: torch.nn.Module, info: dict[str, Any]) -> None:
    missing, unexpected = sorted(info.get("missing_keys") or ()), sorted(info.get("unexpected_keys") or ())
    mismatched = [
        str(item[0]) if isinstance(item, (tuple, list)) else str(item) for item in info.get("mismatched_keys") or ()
    ]
    if not (missing or unexpected or mismatched):
        return
    total = len(model.state_dict())
    problems = []
    if missing:
        problems.append(f"{len(missing)} of {total} weights missing ({_listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected weights ({_listed(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} weights of the wrong shape ({_listed(mismatched)})")
    hint = "the weights do not belong to this model: save the model again"
    if len(missing) >= total:
        hint = (
            f"no weight matches a {model.config.model_type!r} model: does config.json's model_type match the "
            "weights file, and is the weights file the right one?"
        )
    raise ValueError(f"--model: {model_dir}: {'; '.join(problems)}; {hint}")


__all__ = [
    "IMAGE_SUFFIXES",
    "check_loading_info",
    "check_weight_files",
    "collect_images",
    "first_heatmap_number",
    "generate_reports",
    "annotation_studies",
    "group_studies",
    "load_checked_model",
    "pending_studies",
    "quiet_transformers",
    "readable_batch",
    "write_heatmap",
]
