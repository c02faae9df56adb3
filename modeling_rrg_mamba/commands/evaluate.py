"""``rrg-mamba evaluate``: score a predictions JSONL and print the metrics as a table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..metrics import NLG_METRIC_NAMES, NLGEvaluator, score_prediction_file


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """A two-column text table: the NLG metrics first (papers' order), then the CE metrics, then anything else."""
    nlg = [name for name in NLG_METRIC_NAMES if name in metrics]
    ce = sorted(name for name in metrics if name.startswith("ce_"))
    rest = sorted(set(metrics) - set(nlg) - set(ce))
    width = max(len(name) for name in metrics) if metrics else 6
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {metrics[name]:.4f}" for name in nlg + ce + rest]
    return "\n".join(lines)


def score_predictions(predictions: str | os.PathLike, output: str | os.PathLike | None = None,
                      clean_style: str = "iu_xray", clinical_efficacy: bool = True, meteor: bool = True,
                      prediction_key: str = "prediction", reference_key: str = "reference") -> dict[str, Any]:
    """Score ``predictions`` (JSONL) and write the result as JSON to ``output`` (default ``<file>.metrics.json``)."""
    if not Path(predictions).is_file():
        raise FileNotFoundError(f"--predictions: no such file {predictions}")
    output = output or Path(predictions).with_suffix(".metrics.json")
    with NLGEvaluator(clean_style=clean_style, meteor=meteor) as evaluator:
        result = score_prediction_file(predictions, output, prediction_key=prediction_key, reference_key=reference_key,
                                       ce=clinical_efficacy, evaluator=evaluator)
    result["output"] = os.fspath(output)
    return result


__all__ = ["format_metrics_table", "score_predictions"]
