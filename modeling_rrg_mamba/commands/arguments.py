"""Arguments of the ``rrg-mamba`` commands other than ``train`` (whose arguments live in :mod:`..training`)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GenerateArguments:
    """``rrg-mamba generate``: images (files, folders, DICOM) -> reports as JSONL."""

    model: str = field(default=None, metadata={"help": "Saved model directory (with its processor)."})
    images: list[str] = field(default=None, metadata={"help": "Image files (PNG, JPEG, DICOM) and/or folders.", "nargs": "+"})
    output: str = field(default="reports.jsonl", metadata={"help": "JSONL file to write, one report per study."})
    views_per_study: int = field(
        default=1, metadata={"help": "Consecutive images (in the order given, folders sorted) that form one study."}
    )
    batch_size: int = field(default=8, metadata={"help": "Studies per generate() call."})
    num_beams: int = field(default=3, metadata={"help": "Beam width (RRG-Mamba: 3)."})
    max_new_tokens: int = field(default=60, metadata={"help": "Longest report in tokens."})
    heatmaps: str | None = field(
        default=None, metadata={"help": "Folder for one PNG per report: the image with each key word's cross-attention."}
    )
    heatmap_words: int = field(default=6, metadata={"help": "Key words shown per heatmap PNG."})
    device: str = field(default="cpu", metadata={"help": "Torch device to generate on."})

    def __post_init__(self) -> None:
        if self.model is None:
            raise ValueError("--model: give the saved model directory")
        if not self.images:
            raise ValueError("--images: give at least one image file or folder")
        for name in ("views_per_study", "batch_size", "num_beams", "max_new_tokens", "heatmap_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}: expected a positive integer, got {getattr(self, name)}")


@dataclass
class EvaluateArguments:
    """``rrg-mamba evaluate``: predictions vs references (JSONL) -> the NLG + CE metrics table."""

    predictions: str = field(default=None, metadata={"help": "JSONL with 'prediction' and 'reference' per line."})
    output: str | None = field(default=None, metadata={"help": "JSON file for the scores (default: <predictions>.metrics.json)."})
    clean_style: str = field(default="iu_xray", metadata={"help": "R2Gen cleaner applied to both sides."})
    clinical_efficacy: bool = field(default=True, metadata={"help": "Score the CE (CheXpert) metrics."})
    meteor: bool = field(default=True, metadata={"help": "Score METEOR (starts one Java process)."})
    prediction_key: str = field(default="prediction", metadata={"help": "JSONL field of the generated report."})
    reference_key: str = field(default="reference", metadata={"help": "JSONL field of the reference report."})

    def __post_init__(self) -> None:
        if self.predictions is None:
            raise ValueError("--predictions: give the JSONL file to score")


@dataclass
class DemoArguments:
    """``rrg-mamba demo``: train, evaluate and generate with the bundled sample films, offline, on CPU."""

    output_dir: str = field(default="rrg-mamba-demo", metadata={"help": "Folder for the model, metrics, reports, heatmaps."})
    max_minutes: float = field(default=3.0, metadata={"help": "Training time budget in minutes."})
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimiser steps (-1: time budget only)."})
    seed: int = field(default=42, metadata={"help": "Random seed."})
    meteor: bool = field(default=True, metadata={"help": "Score METEOR (starts one Java process)."})

    def __post_init__(self) -> None:
        if self.max_minutes <= 0:
            raise ValueError(f"--max_minutes: expected a positive number, got {self.max_minutes}")


__all__ = ["DemoArguments", "EvaluateArguments", "GenerateArguments"]
