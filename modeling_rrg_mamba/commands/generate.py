"""``rrg-mamba generate``: X-ray files (PNG, JPEG, DICOM) and folders -> one generated report per study, as JSONL,
with optional word-to-image heatmaps."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..image_processing_xray import load_xray_image
from .heatmaps import grid_maps, key_word_positions, render_heatmaps, word_cross_attention

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom", ".tif", ".tiff", ".bmp")


def collect_images(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders expanded to their image files (recursively, sorted by path)."""
    images: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            images.extend(found)
        elif path.is_file():
            images.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image file or folder")
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


def write_heatmap(model: torch.nn.Module, processor: Any, pixel_values: torch.Tensor, sequence: torch.Tensor,
                  study: Sequence[Path], path: Path, max_words: int) -> list[str]:
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
    path.parent.mkdir(parents=True, exist_ok=True)
    render_heatmaps(films, [words[p] for p in positions], maps).save(path)
    return [words[p] for p in positions]


@torch.no_grad()
def generate_reports(model: torch.nn.Module, processor: Any, studies: Sequence[Sequence[Path]], batch_size: int = 8,
                     heatmap_dir: str | os.PathLike | None = None, heatmap_words: int = 6,
                     **generation_kwargs: Any) -> list[dict[str, Any]]:
    """Generate one report per study (batched, with a progress bar); one record per study:
    ``{"id", "images", "prediction"}`` plus ``"heatmap"`` and ``"heatmap_words"`` when ``heatmap_dir`` is set."""
    if heatmap_dir is not None and not model.config.is_encoder_decoder:
        raise ValueError(f"--heatmaps: {type(model).__name__} has no encoder-decoder cross-attention to draw "
                         "(heatmaps are for RRG-Mamba)")
    model.eval()
    device = next(model.parameters()).device
    records: list[dict[str, Any]] = []
    with tqdm(total=len(studies), desc="generating reports", unit="study") as progress:
        for chunk in batches(studies, batch_size):
            images = [[str(p) for p in study] for study in chunk]
            if all(len(study) == 1 for study in chunk):
                images = [views[0] for views in images]
            inputs = processor(images=images).to(device)
            sequences = model.generate(**inputs, **generation_kwargs)
            if not model.config.is_encoder_decoder:  # EMRRG: the LLM returns the prompt too
                sequences = sequences[:, inputs["input_ids"].shape[1] :]
            reports = [report.strip() for report in processor.batch_decode(sequences, skip_special_tokens=True)]
            for row, (study, report) in enumerate(zip(chunk, reports)):
                record = {"id": study_id(study), "images": [str(p) for p in study], "prediction": report}
                if heatmap_dir is not None:
                    path = Path(heatmap_dir) / f"{len(records):04d}_{study[0].stem}.png"
                    record["heatmap_words"] = write_heatmap(
                        model, processor, inputs["pixel_values"][row], sequences[row], study, path, heatmap_words)
                    record["heatmap"] = str(path)
                records.append(record)
            progress.update(len(chunk))
    return records


__all__ = ["IMAGE_SUFFIXES", "collect_images", "generate_reports", "group_studies", "write_heatmap"]
