"""Data collators: dataset examples -> model batches through the model's processor, decoding images lazily.

Images are opened only here, one batch at a time, from whatever the dataset holds: file paths (the default of
:func:`~modeling_rrg_mamba.data.load_r2gen_annotation`), ``datasets.Image`` values (``{"path", "bytes"}``
dicts or PIL images). The processor is called as ``processor(images=[[views of study 1], ...], reports=[reports])``
with one list of views per study (IU X-Ray: two; MIMIC-CXR / CheXpert Plus: one).

With ``Trainer`` set ``TrainingArguments(remove_unused_columns=False)``: the collators read the raw ``images``
/ ``report`` columns, which the Trainer would otherwise drop because the model's ``forward`` does not name them.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image, UnidentifiedImageError

from ..image_processing_xray import load_xray_image
from .labels import OBSERVATION_LABELS_COLUMN


def _open_file(path: str, where: str) -> Image.Image:
    """Decode an image file with the shared X-ray reader (PNG of any bit depth, JPEG, DICOM) as 8-bit PIL."""
    try:
        return Image.fromarray(load_xray_image(path, output="uint8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{where}: image file {path} does not exist") from None
    except ValueError as error:
        raise ValueError(
            f"{where}: image {path} is unreadable ({error}); on_bad_image='skip' (--on_bad_image skip) "
            "leaves such studies out, --verify_images lists every bad file before training"
        ) from None


def open_image(value: Any, where: str) -> Image.Image:
    """Decode one image value (path, ``{"path", "bytes"}`` dict or PIL image); errors name ``where``."""
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, str):
        return _open_file(value, where)
    if isinstance(value, Mapping) and value.get("bytes"):
        try:
            image = Image.open(io.BytesIO(value["bytes"]))
            image.load()
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{where}: image <bytes> is unreadable ({error})") from None
        return image
    if isinstance(value, Mapping) and value.get("path"):
        return _open_file(value["path"], where)
    raise ValueError(
        f"{where}: expected an image path, a {{'path', 'bytes'}} dict or a PIL image, got {type(value).__name__}"
    )


class ReportGenerationCollator:
    """Turn examples ``{"id", "images", "report", ...}`` into a batch via ``processor(images=..., reports=...)``.

    Args:
        processor: any callable processor (e.g. a ``ProcessorMixin``) returning model tensors.
        image_column / report_column: dataset columns; ``report_column=None`` collates images only (inference).
        image_mode: PIL mode the images are converted to (``None`` keeps the file's mode).
        processor_kwargs: extra keyword arguments for every processor call (e.g. ``return_tensors="pt"``).
        on_bad_image: ``"error"`` (default): an unreadable image raises, naming the study and file; ``"skip"``:
            the study is left out of its batch with a warning and recorded in ``skipped`` (``(id, reason)``).
    """

    def __init__(
        self,
        processor: Any,
        image_column: str = "images",
        report_column: str | None = "report",
        image_mode: str | None = "RGB",
        processor_kwargs: dict[str, Any] | None = None,
        on_bad_image: str = "error",
    ):
        if not callable(processor):
            raise ValueError(f"processor: expected a callable processor, got {type(processor).__name__}")
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image: expected 'error' or 'skip', got {on_bad_image!r}")
        self.on_bad_image = on_bad_image
        self.skipped: list[tuple] = []
        self.processor = processor
        self.image_column = image_column
        self.report_column = report_column
        self.image_mode = image_mode
        self.processor_kwargs = dict(processor_kwargs or {})

    def study_images(self, example: Mapping[str, Any]) -> list[Image.Image]:
        name = f"example id={example.get('id')!r}"
        if self.image_column not in example:
            raise ValueError(f"{name}: column {self.image_column!r} is missing (a text-only dataset has no images)")
        values = example[self.image_column]
        values = values if isinstance(values, (list, tuple)) else [values]
        if not values:
            raise ValueError(f"{name}: column {self.image_column!r} holds no images")
        images = [open_image(v, f"{name}, field {self.image_column}[{i}]") for i, v in enumerate(values)]
        return [im.convert(self.image_mode) if self.image_mode and im.mode != self.image_mode else im for im in images]

    def reports(self, examples: Sequence[Mapping[str, Any]]) -> list[str]:
        texts = []
        for example in examples:
            report = example.get(self.report_column)
            if not isinstance(report, str) or not report.strip():
                raise ValueError(f"example id={example.get('id')!r}: field {self.report_column!r} is missing or empty")
            texts.append(report)
        return texts

    def processor_call_kwargs(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return dict(self.processor_kwargs)

    def readable_examples(self, examples: Sequence[Mapping[str, Any]]) -> tuple:
        """(examples whose images decode, their images); bad studies raise or, with ``skip``, are dropped."""
        kept, images = [], []
        for example in examples:
            try:
                images.append(self.study_images(example))
            except (OSError, ValueError) as error:
                if self.on_bad_image == "error":
                    raise
                warnings.warn(f"skipping study: {error}", UserWarning, stacklevel=3)
                self.skipped.append((str(example.get("id")), str(error)))
                continue
            kept.append(example)
        if not kept:
            ids = [e.get("id") for e in examples]
            raise ValueError(f"every study of the batch has an unreadable image (ids {ids})")
        return kept, images

    @staticmethod
    def check_view_counts(examples: Sequence[Mapping[str, Any]], images: Sequence[Sequence[Any]]) -> None:
        counts = {len(views) for views in images}
        if len(counts) > 1:
            listed = ", ".join(f"{e.get('id')!r}: {len(v)}" for e, v in zip(examples, images))
            raise ValueError(
                f"batch mixes studies with different numbers of views ({listed}); give every study the "
                "same number of views"
            )

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        if not examples:
            raise ValueError("examples: empty batch")
        examples, images = self.readable_examples(examples)
        self.check_view_counts(examples, images)
        self.last_examples = examples
        kwargs = self.processor_call_kwargs(examples)
        if self.report_column is not None:
            kwargs["reports"] = self.reports(examples)
        return self.processor(images=images, **kwargs)


class RRGMambaDataCollator(ReportGenerationCollator):
    """RRG-Mamba batches: processor output plus the 14 CheXpert pseudo-labels of the cross-modal adapter.

    ``label_column`` is the dataset column written by :func:`~modeling_rrg_mamba.data.add_observation_labels`;
    it goes into the batch as ``label_key`` (a float ``(B, 14)`` tensor). ``label_column=None`` leaves it out
    (evaluation without the adapter loss).
    """

    def __init__(
        self,
        processor: Any,
        label_column: str | None = OBSERVATION_LABELS_COLUMN,
        label_key: str = OBSERVATION_LABELS_COLUMN,
        **kwargs: Any,
    ):
        super().__init__(processor, **kwargs)
        self.label_column = label_column
        self.label_key = label_key

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        batch = super().__call__(examples)
        if self.label_column is not None:
            rows = []
            for example in self.last_examples:
                labels = example.get(self.label_column)
                if labels is None or len(labels) != 14:
                    raise ValueError(
                        f"example id={example.get('id')!r}: field {self.label_column!r} must hold 14 "
                        "observation labels (run add_observation_labels first)"
                    )
                rows.append(labels)
            batch[self.label_key] = torch.tensor(rows, dtype=torch.float32)
        return batch


class EMRRGDataCollator(ReportGenerationCollator):
    """EMRRG batches: the reports go to the processor as ``reports=`` (targets, prompt masked in the labels) and
    the instruction ``prompt`` as ``text=``, one per sample (``None`` = the processor's default prompt)."""

    def __init__(self, processor: Any, prompt: str | None = None, **kwargs: Any):
        super().__init__(processor, **kwargs)
        self.prompt = prompt

    def processor_call_kwargs(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        kwargs = super().processor_call_kwargs(examples)
        if self.prompt is not None:
            kwargs["text"] = [self.prompt] * len(examples)
        return kwargs
