"""Command-line arguments of ``rrg-mamba train`` / ``generate`` / ``evaluate`` / ``demo`` as dataclasses for
`transformers.HfArgumentParser`.

``train`` parses [`ModelArguments`], [`DataArguments`] and [`ReportGenerationTrainingArguments`] (a
`Seq2SeqTrainingArguments` with the papers' optimiser settings added), so every `TrainingArguments` flag
(``--bf16``, ``--activation_checkpointing`` (``--gradient_checkpointing`` before transformers 5.24), ``--deepspeed``,
``--report_to tensorboard``, ...) works unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from transformers import Seq2SeqTrainingArguments

from .._compat import report_to_as_in_transformers_5

#: The model families ``rrg-mamba train --model_type`` accepts.
MODEL_TYPES = ("rrg_mamba", "emrrg")


_RANGES = {
    "positive": (lambda v: v > 0, "a positive number"),
    "count": (lambda v: v >= 1, "a positive integer"),
    "non_negative": (lambda v: v >= 0, "a number >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "steps": (lambda v: v == -1 or v >= 1, "a positive integer (or -1: use num_train_epochs)"),
}


def check_ranges(args: Any, rules: dict[str, str], prefix: str = "") -> None:
    """Refuse, before any work, a numeric argument outside its range (``rules``: name -> a key of ``_RANGES``);
    ``None`` means unset and passes."""
    for name, rule in rules.items():
        value = getattr(args, name, None)
        accepts, expected = _RANGES[rule]
        if value is not None and not accepts(value):
            raise ValueError(f"{prefix}{name}: expected {expected}, got {value}")


MODEL_RANGES = {
    "vocabulary_threshold": "count",
    "max_length": "count",
    "image_size": "count",
    "resize_size": "count",
    "lora_r": "count",
    "lora_alpha": "positive",
    "lora_dropout": "fraction",
}


@dataclass
class ModelArguments:
    """Which model to train and how its processor is built."""

    model_type: str = field(default="rrg_mamba", metadata={"help": f"Model family: one of {MODEL_TYPES}."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Local directory of a saved model and processor to start from. Unset: a new model is "
            "built from the config (random weights unless the config asks for a pretrained backbone)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "JSON object of config fields for a new model, e.g. "
            '\'{"visual_extractor": "resnet101"}\' (in a recipe: a mapping).'
        },
    )
    vocabulary_threshold: int = field(
        default=3,
        metadata={"help": "RRG-Mamba: minimum word frequency in the training reports (R2Gen: 3 IU, 10 MIMIC)."},
    )
    report_style: str = field(
        default="iu_xray", metadata={"help": "R2Gen report cleaner: 'iu_xray' or 'mimic_cxr' (tokenizer and metrics)."}
    )
    max_length: int = field(default=60, metadata={"help": "Longest report in tokens (R2Gen: 60 IU, 100 MIMIC)."})
    image_size: int = field(
        default=224, metadata={"help": "Side of the square model input (random crop in training)."}
    )
    resize_size: int = field(
        default=256, metadata={"help": "Training-time resize of the shorter side before the crop."}
    )
    vision_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "EMRRG: local X-ray Mamba checkpoint (unset: a new one from config_overrides)."},
    )
    text_model_name_or_path: str | None = field(
        default=None, metadata={"help": "EMRRG: local causal LM checkpoint with its tokenizer (e.g. Llama-2-7B-chat)."}
    )
    lora_r: int = field(default=8, metadata={"help": "EMRRG: LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "EMRRG: LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "EMRRG: LoRA dropout."})
    in_proj_lora: str = field(
        default="partial",
        metadata={"help": "EMRRG: LoRA on the Mamba in_proj: 'partial' (x half only), 'full', 'none'."},
    )

    def __post_init__(self) -> None:
        check_ranges(self, MODEL_RANGES, prefix="--")
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type: expected one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.image_size > self.resize_size:
            raise ValueError(f"image_size ({self.image_size}) must not exceed resize_size ({self.resize_size})")
        if self.model_type == "emrrg" and self.model_name_or_path is None and self.text_model_name_or_path is None:
            raise ValueError("text_model_name_or_path: EMRRG needs a local causal LM (or model_name_or_path)")

    def overrides(self) -> dict[str, Any]:
        """``config_overrides`` as a dict (empty when unset)."""
        if self.config_overrides is None:
            return {}
        try:
            value = json.loads(self.config_overrides)
        except json.JSONDecodeError as error:
            raise ValueError(f"config_overrides: not valid JSON ({error.msg})") from None
        if not isinstance(value, dict):
            raise ValueError(f"config_overrides: expected a JSON object, got {type(value).__name__}")
        return value


@dataclass
class DataArguments:
    """Where the reports and images are, and how they are scored."""

    annotation: str | None = field(
        default=None,
        metadata={"help": "R2Gen-layout annotation.json (IU X-Ray, MIMIC-CXR) or the CheXpert Plus CSV (*.csv)."},
    )
    image_root: str | None = field(
        default=None, metadata={"help": "Folder the annotation's image paths are relative to."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep only the first N training studies."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep only the first N validation studies."})
    max_test_samples: int | None = field(default=None, metadata={"help": "Keep only the first N test studies."})
    observation_labels: bool = field(
        default=True, metadata={"help": "RRG-Mamba: add CheXpert pseudo-labels for the cross-modal adapter's loss."}
    )
    uncertain_labels: str = field(
        default="positive", metadata={"help": "Uncertain pseudo-labels count as 'positive' (U-Ones) or 'negative'."}
    )
    clinical_efficacy: bool = field(default=True, metadata={"help": "Score CE (CheXpert) metrics as well as NLG."})
    meteor: bool = field(default=True, metadata={"help": "Score METEOR (starts one Java process)."})
    on_bad_image: str = field(
        default="error",
        metadata={
            "help": "A missing or unreadable image: 'error' stops with its file named; 'skip' leaves the "
            "study out (with a warning; summary at the end of training)."
        },
    )
    verify_images: bool = field(
        default=False,
        metadata={
            "help": "Decode every image before training and list every bad file (then stop, or "
            "with --on_bad_image skip drop those studies)."
        },
    )
    allow_split_overlap: bool = field(
        default=False, metadata={"help": "Accept a study (same id or image) in more than one split."}
    )

    def __post_init__(self) -> None:
        if self.uncertain_labels not in ("positive", "negative"):
            raise ValueError(f"uncertain_labels: expected 'positive' or 'negative', got {self.uncertain_labels!r}")
        if self.on_bad_image not in ("error", "skip"):
            raise ValueError(f"on_bad_image: expected 'error' or 'skip', got {self.on_bad_image!r}")
        check_ranges(
            self, dict.fromkeys(("max_train_samples", "max_eval_samples", "max_test_samples"), "count"), prefix="--"
        )


TRAINING_RANGES = {
    "learning_rate": "positive",
    "visual_extractor_learning_rate": "positive",
    "num_train_epochs": "positive",
    "max_steps": "steps",
    "per_device_train_batch_size": "count",
    "per_device_eval_batch_size": "count",
    "gradient_accumulation_steps": "count",
    "weight_decay": "non_negative",
    "warmup_ratio": "fraction",
    "warmup_steps": "non_negative",
    "max_grad_norm": "non_negative",
    "max_minutes": "positive",
    "generation_num_beams": "count",
    "generation_max_length": "count",
    "save_total_limit": "count",
    "logging_steps": "positive",
    "eval_steps": "positive",
    "save_steps": "positive",
}


@dataclass
class ReportGenerationTrainingArguments(Seq2SeqTrainingArguments):
    """`Seq2SeqTrainingArguments` with RRG-Mamba's optimiser settings (R2Gen lineage) and report-generation "
    "defaults."""

    visual_extractor_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the visual extractor's parameters (RRG-Mamba: 1e-3 while learning_rate "
            "is 2e-3 for the rest). Unset: learning_rate for all."
        },
    )
    amsgrad: bool = field(
        default=False,
        metadata={
            "help": "Use torch.optim.Adam with AMSGrad and L2 weight decay on every parameter (R2Gen / "
            "RRG-Mamba) instead of `optim`."
        },
    )
    lr_decay_epochs: float | None = field(
        default=None,
        metadata={
            "help": "Step decay: multiply every group's learning rate by lr_decay_rate every this many epochs "
            "(RRG-Mamba's script: 50, with lr_scheduler_type 'constant' and no warmup). Unset: off."
        },
    )
    lr_decay_rate: float = field(default=0.8, metadata={"help": "Factor of the step decay (RRG-Mamba's script: 0.8)."})
    max_minutes: float | None = field(
        default=None, metadata={"help": "Stop training (then evaluate and save) after this many minutes."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep raw dataset columns: the collators read images and reports from them."}
    )
    predict_with_generate: bool = field(
        default=True, metadata={"help": "Evaluate by generating reports (needed for the NLG / CE metrics)."}
    )

    def __post_init__(self) -> None:
        check_ranges(
            self, TRAINING_RANGES, prefix="--"
        )  # before the Trainer's own checks, which accept e.g. max_steps 0
        self.report_to = report_to_as_in_transformers_5(self.report_to)
        super().__post_init__()
        if self.lr_decay_epochs is not None:
            if self.lr_decay_epochs <= 0 or not 0 < self.lr_decay_rate <= 1:
                raise ValueError(
                    f"lr_decay_epochs / lr_decay_rate: expected a positive period and a rate in (0, 1], got "
                    f"{self.lr_decay_epochs} / {self.lr_decay_rate}"
                )
            scheduler = getattr(self.lr_scheduler_type, "value", self.lr_scheduler_type)
            if scheduler != "constant" or self.warmup_steps or getattr(self, "warmup_ratio", 0):
                raise ValueError(
                    "lr_decay_epochs: the step decay replaces the Trainer's schedule; use it with "
                    f"lr_scheduler_type 'constant' and no warmup (got {scheduler!r})"
                )

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Train into an output_dir that holds an earlier run: it is set aside in a hidden "
            "'.earlier-run-*' folder (so --resume_from_checkpoint last cannot pick its checkpoints), deleted once "
            "the new run succeeds, put back if it fails before writing anything. Without it, and without "
            "--resume_from_checkpoint, a non-empty output_dir is refused."
        },
    )


__all__ = [
    "MODEL_RANGES",
    "TRAINING_RANGES",
    "check_ranges",
    "DataArguments",
    "MODEL_TYPES",
    "ModelArguments",
    "ReportGenerationTrainingArguments",
]
