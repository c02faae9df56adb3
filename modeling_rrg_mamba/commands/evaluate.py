"""``rrg-mamba evaluate``: score a predictions JSONL and print the metrics as a table."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.atomic import nothing_left_on_failure
from ..data.outputs import check_output_file
from ..metrics import NLG_METRIC_NAMES, NLGEvaluator, score_prediction_file
from ..metrics.report_metrics import check_empty_texts, find_empty_texts, read_prediction_jsonl


def format_metrics_table(metrics: Mapping[str, float]) -> str:
    """A two-column text table: the NLG metrics first (papers' order), then the CE metrics, then anything else."""
    nlg = [name for name in NLG_METRIC_NAMES if name in metrics]
    ce = sorted(name for name in metrics if name.startswith("ce_"))
    rest = sorted(set(metrics) - set(nlg) - set(ce))
    width = max(len(name) for name in metrics) if metrics else 6
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{name:<{width}}  {metrics[name]:.4f}" for name in nlg + ce + rest]
    return "\n".join(lines)


def score_predictions(
    predictions: str | os.PathLike,
    output: str | os.PathLike | None = None,
    clean_style: str = "iu_xray",
    clinical_efficacy: bool = True,
    meteor: bool = True,
    prediction_key: str = "prediction",
    reference_key: str = "reference",
    empty_text: str = "error",
    chexbert: str | os.PathLike | None = None,
    chexbert_tokenizer: str = "bert-base-uncased",
) -> dict[str, Any]:
    """Score ``predictions`` (JSONL) and write the result as JSON to ``output`` (default ``<file>.metrics.json``).

    The file is read and checked, and ``output`` checked writable, before METEOR's Java process starts; progress
    goes to stderr. ``chexbert`` (weights, see :func:`~modeling_rrg_mamba.metrics.chexbert.load_chexbert`) labels the
    CE metrics with CheXbert instead of the rule labeler."""
    if not Path(predictions).is_file():
        raise FileNotFoundError(f"--predictions: no such file {predictions}")
    output = check_output_file(output or Path(predictions).with_suffix(".metrics.json"), "--output", [predictions])
    predictions_, references, lines = read_prediction_jsonl(
        predictions, prediction_key, reference_key, with_lines=True
    )
    check_empty_texts(predictions, find_empty_texts(predictions_, references, lines, clean_style), empty_text)
    check_each_study_once(predictions)
    say(f"read {len(predictions_)} pairs from {predictions}")
    labeler = None
    if chexbert is not None and clinical_efficacy:
        from ..metrics.chexbert import load_chexbert

        say(f"loading CheXbert from {chexbert} ...")
        labeler = load_chexbert(chexbert, tokenizer=chexbert_tokenizer)
    if meteor:
        say("starting METEOR (a Java process; this takes a few seconds) ...")
    with nothing_left_on_failure([output]), NLGEvaluator(clean_style=clean_style, meteor=meteor) as evaluator:
        say(
            "scoring BLEU, METEOR, ROUGE-L, CIDEr"
            + (" and the clinical-efficacy labels" if clinical_efficacy else "")
            + " ..."
        )
        result = score_prediction_file(
            predictions,
            output,
            prediction_key=prediction_key,
            reference_key=reference_key,
            ce=clinical_efficacy,
            evaluator=evaluator,
            empty_text=empty_text,
            ce_labeler=labeler,
        )
    result["output"] = os.fspath(output)
    return result


def check_each_study_once(predictions: str | os.PathLike) -> None:
    """A study (same ``id``, or same ``images`` when there is no id) on two lines would be scored twice: an error
    naming both lines (files concatenated, or a run's output appended to itself)."""
    first: dict[str, int] = {}
    for number, raw in enumerate(Path(predictions).read_bytes().splitlines(), start=1):
        record = json.loads(raw) if raw.strip() else None  # already validated by read_prediction_jsonl
        key = record.get("id", record.get("images")) if isinstance(record, dict) else None
        if key is None:
            continue
        key = json.dumps(key)
        if key in first:
            raise ValueError(
                f"{predictions}: line {number} repeats the study of line {first[key]} ({key}); each study is scored "
                "once: remove one of them"
            )
        first[key] = number


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = ["check_each_study_once", "format_metrics_table", "score_predictions"]
