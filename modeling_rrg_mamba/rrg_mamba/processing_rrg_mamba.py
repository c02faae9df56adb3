"""RRG-Mamba processor: image processor + word-level report tokenizer in one object."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin


class RRGMambaProcessor(ProcessorMixin):
    r"""
    Turns X-ray images and reports into model inputs, and generated ids back into reports.

    ``processor(images=..., text=reports)`` returns ``pixel_values`` and ``labels`` (cleaned report ids ending
    with ``<eos>``, padded with -100 to the longest report, at most ``max_length`` tokens) and, when
    ``observation_labels`` are given, those as a float tensor. ``processor.batch_decode(ids,
    skip_special_tokens=True)`` returns clean report strings.

    Args:
        image_processor ([`RRGMambaImageProcessor`]): the X-ray image processor.
        tokenizer ([`RRGMambaTokenizer`]): the word-level report tokenizer.
        max_length (`int`, defaults to 60): longest label sequence, ``<eos>`` included (R2Gen: 60 for IU X-Ray,
            100 for MIMIC-CXR).
    """

    # Sub-processors are found from the __init__ parameter names and loaded with the Auto classes (this package
    # registers RRGMambaImageProcessor / RRGMambaTokenizer for model_type "rrg_mamba").

    def __init__(self, image_processor=None, tokenizer=None, max_length: int = 60, **kwargs: Any) -> None:
        if max_length < 2:
            raise ValueError(f"max_length: expected at least 2 tokens, got {max_length}")
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        observation_labels: Any = None,
        do_train_augmentation: bool | None = None,
        max_length: int | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        if images is None and text is None:
            raise ValueError("RRGMambaProcessor: give images, text or both")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, do_train_augmentation=do_train_augmentation))
        if text is not None:
            data["labels"] = self.encode_reports(text, max_length or self.max_length)
        if images is not None and text is not None and data["pixel_values"].shape[0] != data["labels"].shape[0]:
            raise ValueError(
                f"images and text: {data['pixel_values'].shape[0]} studies but {data['labels'].shape[0]} reports"
            )
        if observation_labels is not None:
            data["observation_labels"] = torch.as_tensor(observation_labels, dtype=torch.float32)
        return BatchFeature(data)

    def encode_reports(self, text: str | Sequence[str], max_length: int) -> torch.Tensor:
        """Report ids (batch, length) ending with ``<eos>``, -100 after it; over-long reports are cut (keeping ``<eos>``)."""
        reports = [text] if isinstance(text, str) else list(text)
        for index, report in enumerate(reports):
            if not isinstance(report, str) or not report.strip(" .\n\t"):
                raise ValueError(f"text[{index}]: empty report {report!r}")
        encoded = self.tokenizer(reports, truncation=True, max_length=max_length)["input_ids"]
        eos = self.tokenizer.eos_token_id
        longest = max(len(ids) for ids in encoded)
        labels = torch.full((len(encoded), longest), -100, dtype=torch.long)
        for row, ids in enumerate(encoded):
            if ids[-1] != eos:  # truncation cut the closing <eos>
                ids = ids[:-1] + [eos]
            labels[row, : len(ids)] = torch.tensor(ids)
        return labels

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["pixel_values", "labels"]


__all__ = ["RRGMambaProcessor"]
