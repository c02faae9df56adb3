"""Training: the Trainer wiring, the papers' recipes and the ``train`` command's arguments.

Above the models, data and metrics; below :mod:`..commands` and the CLI.
"""

from .arguments import MODEL_TYPES, DataArguments, ModelArguments, ReportGenerationTrainingArguments
from .build import build_trainer, load_report_datasets, predict_test_split, run_training
from .recipes import load_recipe, parse_with_recipe, resolve_recipe_path
from .trainer import (
    FinalEvaluationCallback,
    ReportGenerationTrainer,
    SeededAugmentationCollator,
    TimeLimitCallback,
    learning_rate_groups,
)

__all__ = [
    "MODEL_TYPES",
    "DataArguments",
    "FinalEvaluationCallback",
    "ModelArguments",
    "ReportGenerationTrainer",
    "ReportGenerationTrainingArguments",
    "SeededAugmentationCollator",
    "TimeLimitCallback",
    "build_trainer",
    "learning_rate_groups",
    "load_recipe",
    "load_report_datasets",
    "parse_with_recipe",
    "predict_test_split",
    "resolve_recipe_path",
    "run_training",
]
