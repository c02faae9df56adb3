"""Report-generation metrics: pycocoevalcap NLG scores with one METEOR JVM, CheXpert CE scores, Trainer glue."""

import os

from .clinical_efficacy import compute_ce_scores, multilabel_scores
from .nlg import NLG_METRIC_NAMES, MeteorScorer, NLGEvaluator, compute_nlg_scores, prepare_pairs
from .report_metrics import (
    ReportGenerationMetrics,
    compute_report_metrics,
    decode_token_ids,
    read_prediction_jsonl,
    score_prediction_file,
)

#: Path for ``evaluate.load(REPORT_METRICS_PATH)`` (a local metric script: works offline, no Hub access).
REPORT_METRICS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "radiology_report_metrics")

__all__ = [
    "NLG_METRIC_NAMES",
    "REPORT_METRICS_PATH",
    "MeteorScorer",
    "NLGEvaluator",
    "ReportGenerationMetrics",
    "compute_ce_scores",
    "compute_nlg_scores",
    "compute_report_metrics",
    "decode_token_ids",
    "multilabel_scores",
    "prepare_pairs",
    "read_prediction_jsonl",
    "score_prediction_file",
]
