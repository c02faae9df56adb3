"""Training, generation, evaluation and the demo behind the ``rrg-mamba`` command line."""

from .arguments import (
    DataArguments,
    DemoArguments,
    EvaluateArguments,
    GenerateArguments,
    ModelArguments,
    ReportGenerationTrainingArguments,
)
from .build import build_trainer, load_report_datasets, predict_test_split, run_training
from .inference import collect_images, generate_reports, group_studies
from .recipes import load_recipe, parse_with_recipe
from .scoring import format_metrics_table, score_predictions
from .trainer import (
    FinalEvaluationCallback,
    ReportGenerationTrainer,
    SeededAugmentationCollator,
    TimeLimitCallback,
    learning_rate_groups,
)

__all__ = [
    "DataArguments",
    "DemoArguments",
    "EvaluateArguments",
    "FinalEvaluationCallback",
    "GenerateArguments",
    "ModelArguments",
    "ReportGenerationTrainer",
    "ReportGenerationTrainingArguments",
    "SeededAugmentationCollator",
    "TimeLimitCallback",
    "build_trainer",
    "collect_images",
    "format_metrics_table",
    "generate_reports",
    "group_studies",
    "learning_rate_groups",
    "load_recipe",
    "load_report_datasets",
    "parse_with_recipe",
    "predict_test_split",
    "run_training",
    "score_predictions",
]
