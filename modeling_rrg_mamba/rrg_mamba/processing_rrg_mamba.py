"""RRG-Mamba processor: image processor + word-level report tokenizer in one object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import BatchFeature, ProcessorMixin

from .._compat import subprocessors_by_auto_class
from ..saving import RemoteCodeProcessorMixin


@subprocessors_by_auto_class
class RRGMambaProcessor(RemoteCodeProcessorMixin, ProcessorMixin):
    r"""
    Turns X-ray images and reports into model inputs, and generated ids back into reports.

    ``processor(images=..., reports=reports)`` returns ``pixel_values`` and ``labels`` (cleaned report ids ending
    with ``<eos>``, padded with -100 to the longest report, at most ``max_length`` tokens) and, when
    ``observation_labels`` are given, those as a float tensor. ``processor(images=..., text=prefixes)`` returns
    ``decoder_input_ids`` (``<bos>`` and the cleaned words of each prefix) from which ``generate`` continues the
    report; ``text=""`` starts from ``<bos>`` alone (what ``generate`` does without it), which is how the
    ``image-text-to-text`` pipeline runs the model. ``processor.batch_decode(ids, skip_special_tokens=True)``
    returns clean report strings.

    Args:
        image_processor ([`RRGMambaImageProcessor`]): the X-ray image processor.
        tokenizer ([`RRGMambaTokenizer`]): the word-level report tokenizer.
        max_length (`int`, defaults to 60): longest label sequence, ``<eos>`` included (R2Gen: 60 for IU X-Ray,
            100 for MIMIC-CXR).
    """

    # Sub-processors are loaded with the Auto classes (this package registers RRGMambaImageProcessor /
    # RRGMambaTokenizer for model_type "rrg_mamba").
    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, max_length: int = 60, **kwargs: Any) -> None:
        if max_length < 2:
            raise ValueError(f"max_length: expected at least 2 tokens, got {max_length}")
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        reports: str | Sequence[str] | None = None,
        observation_labels: Any = None,
        do_train_augmentation: bool | None = None,
        max_length: int | None = None,
        return_tensors: str | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """
        Args:
            images: one image or a list of views per study (see [`RRGMambaImageProcessor`]).
            text: report prefixes to continue from in ``generate`` -> ``decoder_input_ids``.
            reports: target reports -> ``labels``.
            observation_labels: ``(batch, 14)`` CheXpert pseudo-labels for the cross-modal adapter's loss.
            do_train_augmentation: random crop / flip of training (defaults to the image processor's setting).
            max_length: longest label sequence (defaults to ``self.max_length``).
            return_tensors: ``"pt"`` or ``None``; the outputs are always PyTorch tensors.
        """
        if images is None and text is None and reports is None:
            raise ValueError("RRGMambaProcessor: give images, text (report prefixes), reports or a combination")
        if text is not None and reports is not None:
            raise ValueError(
                "text / reports: give report prefixes to generate from (text) or target reports to train "
                "on (reports), not both; the decoder inputs of training are the shifted reports"
            )
        if return_tensors not in (None, "pt"):
            raise ValueError(f"return_tensors: RRGMambaProcessor returns PyTorch tensors only, got {return_tensors!r}")
        data: dict[str, Any] = {}
        if images is not None:
            data.update(self.image_processor(images, do_train_augmentation=do_train_augmentation))
        if text is not None:
            data["decoder_input_ids"] = self.encode_prefixes(text)
        if reports is not None:
            data["labels"] = self.encode_reports(reports, max_length or self.max_length)
        batch_sizes = {key: len(value) for key, value in data.items()}
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"images / text / reports: batch sizes differ ({batch_sizes})")
        if observation_labels is not None:
            data["observation_labels"] = torch.as_tensor(observation_labels, dtype=torch.float32)
        return BatchFeature(data)

    def encode_prefixes(self, text: str | Sequence[str]) -> torch.Tensor:
        """Decoder prompts (batch, 1 + words): ``<bos>`` and the cleaned words of each prefix, without ``<eos>``
        (and without the " ." R2Gen's cleaning closes an unfinished last sentence with)."""
        prefixes = [text] if isinstance(text, str) else list(text)
        period = self.tokenizer.convert_tokens_to_ids(".")
        encoded = []
        for index, prefix in enumerate(prefixes):
            if not isinstance(prefix, str):
                raise ValueError(f"text[{index}]: expected a report prefix string, got {type(prefix).__name__}")
            ids = self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
            if ids and ids[-1] == period and not prefix.rstrip().endswith("."):
                ids = ids[:-1]
            encoded.append(ids)
        lengths = [len(ids) for ids in encoded]
        if len(set(lengths)) > 1:
            raise ValueError(f"text: report prefixes of one batch must have the same number of words, got {lengths}")
        return torch.tensor([[self.tokenizer.bos_token_id, *ids] for ids in encoded], dtype=torch.long)

    def encode_reports(self, text: str | Sequence[str], max_length: int) -> torch.Tensor:
        """Report ids (batch, length) ending with ``<eos>``, -100 after it; over-long reports are cut (keeping "
        "``<eos>``)."""
        reports = [text] if isinstance(text, str) else list(text)
        for index, report in enumerate(reports):
            if not isinstance(report, str) or not report.strip(" .\n\t"):
                raise ValueError(f"reports[{index}]: empty report {report!r}")
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
        return ["pixel_values", "decoder_input_ids", "labels"]


__all__ = ["RRGMambaProcessor"]
