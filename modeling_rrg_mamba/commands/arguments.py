"""Arguments of the ``rrg-mamba`` commands other than ``train`` (whose arguments live in :mod:`..training`)."""

from __future__ import annotations

from dataclasses import dataclass, field

BAD_IMAGE_POLICIES = ("error", "skip")
GENERATE_RANGES = dict.fromkeys(
    ("views_per_study", "batch_size", "heatmap_words", "num_beams", "max_new_tokens"), "count"
)


def check_numbers(args: object, rules: dict[str, str]) -> None:
    """The train command's range rules (`training.arguments.check_ranges`), with its one-line ``--flag`` error."""
    from ..training.arguments import check_ranges

    check_ranges(args, rules, prefix="--")


@dataclass
class GenerateArguments:
    """``rrg-mamba generate``: images (files, folders, DICOM) or an annotation split -> reports as JSONL."""

    model: str = field(
        default=None, metadata={"help": "(required) Saved model directory (with its processor).", "required": True}
    )
    images: list[str] = field(
        default=None,
        metadata={
            "help": "(required unless --annotation) Image files (PNG, JPEG, DICOM) and/or folders.",
            "nargs": "+",
        },
    )
    annotation: str | None = field(
        default=None,
        metadata={
            "help": "Instead of --images: an R2Gen annotation.json; the records then carry the "
            "study ids and references, ready for `rrg-mamba evaluate`."
        },
    )
    image_root: str | None = field(default=None, metadata={"help": "With --annotation: folder of its image paths."})
    split: str = field(default="test", metadata={"help": "With --annotation: the split to generate for."})
    output: str = field(
        default="reports.jsonl",
        metadata={"help": "JSONL file to write, one report per study, written as each batch is done."},
    )
    resume: bool = field(default=False, metadata={"help": "Keep the reports already in --output; generate the rest."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an --output that already holds reports."})
    on_bad_image: str = field(
        default="error",
        metadata={
            "help": "An unreadable image: 'error' stops (reports so far are kept), 'skip' "
            "leaves its study out and lists it at the end."
        },
    )
    views_per_study: int = field(
        default=1, metadata={"help": "Consecutive images (in the order given, folders sorted) that form one study."}
    )
    batch_size: int = field(default=8, metadata={"help": "Studies per generate() call."})
    num_beams: int | None = field(
        default=None, metadata={"help": "Beam width (default: the model's saved generation config; RRG-Mamba: 3)."}
    )
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Longest report in tokens (default: the model's saved generation config)."}
    )
    heatmaps: str | None = field(
        default=None,
        metadata={"help": "Folder for one PNG per report: the image with each key word's cross-attention."},
    )
    heatmap_words: int = field(default=6, metadata={"help": "Key words shown per heatmap PNG."})
    device: str = field(default="cpu", metadata={"help": "Torch device to generate on."})

    def __post_init__(self) -> None:
        if self.model is None:
            raise ValueError("--model: give the saved model directory")
        if not self.images and self.annotation is None:
            raise ValueError("--images: give at least one image file or folder (or --annotation)")
        if self.images and self.annotation is not None:
            raise ValueError("--images / --annotation: give one or the other")
        if self.on_bad_image not in BAD_IMAGE_POLICIES:
            raise ValueError(f"--on_bad_image: expected one of {BAD_IMAGE_POLICIES}, got {self.on_bad_image!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume / --overwrite: give at most one")
        check_numbers(self, GENERATE_RANGES)  # None (num_beams, max_new_tokens): the model's generation config
        check_device(self.device)


def check_device(name: str, flag: str = "--device") -> None:
    """A one-line error, before any loading, for a device name torch rejects or this machine does not have."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{flag}: {name!r} is not a torch device ({error})") from None
    if device.type == "cpu":
        return
    backend = getattr(torch, device.type, None)  # torch.cuda, torch.mps, torch.xpu, ...
    is_available = getattr(backend, "is_available", None)
    device_count = getattr(backend, "device_count", None)
    count = device_count() if callable(is_available) and callable(device_count) and is_available() else 0
    if (device.index or 0) >= count:
        raise ValueError(f"{flag}: {name!r} is not available on this machine ({count} {device.type} devices)")


@dataclass
class EvaluateArguments:
    """``rrg-mamba evaluate``: predictions vs references (JSONL) -> the NLG + CE metrics table."""

    predictions: str = field(
        default=None, metadata={"help": "JSONL with 'prediction' and 'reference' per line.", "required": True}
    )
    output: str | None = field(
        default=None, metadata={"help": "JSON file for the scores (default: <predictions>.metrics.json)."}
    )
    clean_style: str = field(default="iu_xray", metadata={"help": "R2Gen cleaner applied to both sides."})
    clinical_efficacy: bool = field(default=True, metadata={"help": "Score the CE (CheXpert) metrics."})
    meteor: bool = field(default=True, metadata={"help": "Score METEOR (starts one Java process)."})
    prediction_key: str = field(default="prediction", metadata={"help": "JSONL field of the generated report."})
    reference_key: str = field(default="reference", metadata={"help": "JSONL field of the reference report."})
    empty_text: str = field(
        default="error",
        metadata={
            "help": "A prediction or reference empty after cleaning: 'error' names its line; "
            "'zero' scores the pair 0 and lists it in the output."
        },
    )
    chexbert: str | None = field(
        default=None,
        metadata={
            "help": "CheXbert weights (a folder or file with the original chexbert.pth, or a Hub "
            "id) to label the CE metrics as papers do; default: the offline rule labeler."
        },
    )
    chexbert_tokenizer: str = field(
        default="bert-base-uncased", metadata={"help": "Tokenizer (folder or Hub id) for --chexbert."}
    )

    def __post_init__(self) -> None:
        if self.predictions is None:
            raise ValueError("--predictions: give the JSONL file to score")
        if self.empty_text not in ("error", "zero"):
            raise ValueError(f"--empty_text: expected 'error' or 'zero', got {self.empty_text!r}")


@dataclass
class VerifyArguments:
    """``rrg-mamba verify``: decode every image of an annotation and list every bad file and bad entry."""

    annotation: str = field(default=None, metadata={"help": "R2Gen annotation.json to check.", "required": True})
    image_root: str = field(
        default=None, metadata={"help": "Folder the image paths are relative to.", "required": True}
    )
    allow_split_overlap: bool = field(default=False, metadata={"help": "Accept a study in two splits."})

    def __post_init__(self) -> None:
        if self.annotation is None or self.image_root is None:
            raise ValueError("--annotation / --image_root: give both")


@dataclass
class DemoArguments:
    """``rrg-mamba demo``: train, evaluate and generate with the bundled sample films, offline, on CPU."""

    output_dir: str = field(
        default="rrg-mamba-demo", metadata={"help": "Folder for the model, metrics, reports, heatmaps."}
    )
    max_minutes: float = field(default=3.0, metadata={"help": "Training time budget in minutes."})
    max_steps: int = field(
        default=-1, metadata={"help": "Stop after this many optimiser steps (-1: time budget only)."}
    )
    seed: int = field(default=42, metadata={"help": "Random seed."})
    meteor: bool = field(default=True, metadata={"help": "Score METEOR (starts one Java process)."})

    def __post_init__(self) -> None:
        check_numbers(self, {"max_minutes": "positive", "max_steps": "steps"})


CONVERT_KINDS = ("auto", "emrrg", "xray_mamba")


@dataclass
class ConvertArguments:
    """``rrg-mamba convert``: an EMRRG authors' checkpoint (EMRRG-CXP.pth, MambaXrayCLIP-B.pth) -> a model folder."""

    checkpoint: str = field(
        default=None,
        metadata={"help": "(required) The authors' .pth file (EMRRG model or X-ray Mamba).", "required": True},
    )
    output_dir: str = field(
        default=None,
        metadata={"help": "(required) Folder to write the converted model (and processor) to.", "required": True},
    )
    kind: str = field(
        default="auto",
        metadata={"help": "emrrg, xray_mamba, or auto (emrrg when the file has the projector llama_proj)."},
    )
    text_model: str = field(
        default="meta-llama/Llama-2-7b-chat-hf",
        metadata={"help": "The LLM (Hub id or local folder) of an EMRRG checkpoint, with its tokenizer."},
    )
    backbone_checkpoint: str = field(
        default=None, metadata={"help": "MambaXrayCLIP-B.pth, for an EMRRG file saved without its backbone."}
    )
    num_views: int = field(default=1, metadata={"help": "Films per study (averaged, as the authors' code)."})
    allow_pickle: bool = field(
        default=False,
        metadata={"help": "Read a file holding Python objects (the authors' argparse settings): trusted files only."},
    )
    dtype: str = field(default=None, metadata={"help": "Save the weights in this dtype (float16, bfloat16, ...)."})
    overwrite: bool = field(
        default=False, metadata={"help": "Replace a non-empty --output_dir (e.g. an earlier model) whole."}
    )

    def __post_init__(self) -> None:
        if self.checkpoint is None or self.output_dir is None:
            raise ValueError("--checkpoint / --output_dir: give both")
        if self.kind not in CONVERT_KINDS:
            raise ValueError(f"--kind: expected one of {CONVERT_KINDS}, got {self.kind!r}")
        check_numbers(self, {"num_views": "count"})


__all__ = [
    "BAD_IMAGE_POLICIES",
    "CONVERT_KINDS",
    "ConvertArguments",
    "DemoArguments",
    "EvaluateArguments",
    "GenerateArguments",
    "VerifyArguments",
]
