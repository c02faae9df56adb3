"""All report metrics in one call, a ``compute_metrics`` for (Seq2Seq)Trainer, and JSONL scoring."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..labeler import label_reports
from ..report_text import clean_report
from .clinical_efficacy import Labeler, compute_ce_scores
from .nlg import NLG_METRIC_NAMES, NLGEvaluator, References

Decoder = Callable[[list[list[int]]], list[str]] | Any


def compute_report_metrics(
    predictions: Sequence[str],
    references: References,
    clean_style: str | None = "iu_xray",
    ce: bool = True,
    uncertain: str = "negative",
    evaluator: NLGEvaluator | None = None,
    labeler: Labeler = label_reports,
) -> dict[str, float]:
    """NLG scores (BLEU-1..4, METEOR, ROUGE-L, CIDEr) and, with ``ce=True``, CE scores of the same pairs, labelled by
    ``labeler`` (the rule labeler by default; a :class:`~modeling_rrg_mamba.metrics.chexbert.CheXbertLabeler` too).

    Pass a long-lived ``evaluator`` to reuse its METEOR JVM; without one a temporary evaluator is started
    and closed. Its ``clean_style`` then decides the cleaning of the NLG text. CE labels the cleaned text of
    the first reference of each pair.
    """
    if evaluator is None:
        with NLGEvaluator(clean_style=clean_style) as temporary:
            return compute_report_metrics(predictions, references, clean_style, ce, uncertain, temporary, labeler)
    scores = evaluator.compute(predictions, references)
    if ce:
        first_refs = [r if isinstance(r, str) else r[0] for r in references]
        style = evaluator.clean_style
        scores.update(
            compute_ce_scores(
                [p if style is None else clean_report(p, style) for p in predictions],
                [r if style is None else clean_report(r, style) for r in first_refs],
                uncertain=uncertain,
                labeler=labeler,
            )
        )
    return scores


def decode_token_ids(decoder: Decoder, token_ids: np.ndarray | Sequence[Sequence[int]]) -> list[str]:
    """Decode generated or label ids to text, dropping negative ids (the ``-100`` of ignored label positions).

    ``decoder`` is a tokenizer or processor with ``batch_decode`` (called with ``skip_special_tokens=True``, so
    padding disappears) or a callable taking a list of id lists.
    """
    array = np.asarray(token_ids)
    if array.ndim == 3:
        raise ValueError(
            f"token_ids: got a 3-D array {array.shape} (logits?); evaluate with "
            "predict_with_generate=True or reduce logits with preprocess_logits_for_metrics"
        )
    if array.ndim != 2:
        raise ValueError(f"token_ids: expected a 2-D (batch, length) array, got shape {array.shape}")
    rows = [[int(t) for t in row if t >= 0] for row in array]
    if hasattr(decoder, "batch_decode"):
        return list(decoder.batch_decode(rows, skip_special_tokens=True))
    if callable(decoder):
        return list(decoder(rows))
    raise ValueError(f"decoder: expected a tokenizer/processor with batch_decode or a callable, got {type(decoder)}")


class ReportGenerationMetrics:
    """``compute_metrics`` for ``Seq2SeqTrainer(predict_with_generate=True)``: decodes ids, then scores.

    Example::

        compute_metrics = ReportGenerationMetrics(processor, clean_style="iu_xray")
        trainer = Seq2SeqTrainer(..., compute_metrics=compute_metrics)

    References come from the decoded ``label_ids`` unless ``reference_texts`` (the full reports of the
    evaluation split, in order) is given, which avoids scoring against labels truncated to ``max_length``.
    The METEOR JVM starts on the first evaluation and lives until :meth:`close` or garbage collection.
    """

    def __init__(
        self,
        decoder: Decoder,
        clean_style: str | None = "iu_xray",
        ce: bool = True,
        uncertain: str = "negative",
        reference_texts: Sequence[str] | None = None,
        meteor: bool = True,
    ):
        self.decoder = decoder
        self.clean_style = clean_style
        self.ce = ce
        self.uncertain = uncertain
        self.reference_texts = None if reference_texts is None else list(reference_texts)
        self.meteor = meteor
        self._evaluator: NLGEvaluator | None = None

    def __call__(self, eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        texts = decode_token_ids(self.decoder, predictions)
        if self.reference_texts is not None:
            if len(self.reference_texts) != len(texts):
                raise ValueError(f"reference_texts: {len(self.reference_texts)} reports for {len(texts)} predictions")
            references = self.reference_texts
        else:
            references = decode_token_ids(self.decoder, eval_prediction.label_ids)
        if self._evaluator is None:
            self._evaluator = NLGEvaluator(clean_style=self.clean_style, meteor=self.meteor)
        return compute_report_metrics(
            texts, references, ce=self.ce, uncertain=self.uncertain, evaluator=self._evaluator
        )

    def close(self) -> None:
        if self._evaluator is not None:
            self._evaluator.close()
            self._evaluator = None


def _decode_line(raw: bytes, path: str | os.PathLike, number: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: line {number} is not UTF-8 text (byte {raw[error.start]:#04x} at column "
            f"{error.start + 1}); save the file as UTF-8"
        ) from None


def read_prediction_jsonl(
    path: str | os.PathLike,
    prediction_key: str = "prediction",
    reference_key: str = "reference",
    with_lines: bool = False,
) -> tuple:
    """Read ``(predictions, references)`` from a JSONL file, one ``{prediction, reference}`` object per line
    (``with_lines=True`` adds the line number of each pair as a third list). Errors name the file and line."""
    predictions, references, lines = [], [], []
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode_line(raw, path, number)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            for key in (prediction_key, reference_key):
                value = record.get(key)
                valid = isinstance(value, str) or (
                    key == reference_key
                    and isinstance(value, list)
                    and value
                    and all(isinstance(v, str) for v in value)
                )
                if not valid:
                    raise ValueError(f"{path}: line {number}: field {key!r} is missing or not a string")
            predictions.append(record[prediction_key])
            references.append(record[reference_key])
            lines.append(number)
    if not predictions:
        raise ValueError(f"{path}: no prediction/reference records")
    return (predictions, references, lines) if with_lines else (predictions, references)


def _is_empty(text: str, clean_style: str | None) -> bool:
    cleaned = text if clean_style is None else clean_report(text, clean_style)
    return not any(character.isalnum() for character in cleaned)


def find_empty_texts(
    predictions: Sequence[str], references: References, lines: Sequence[int], clean_style: str | None
) -> dict[str, list[int]]:
    """Line numbers whose prediction / (any) reference has no word left after cleaning."""
    empty: dict[str, list[int]] = {"predictions": [], "references": []}
    for prediction, reference, line in zip(predictions, references, lines):
        if _is_empty(prediction, clean_style):
            empty["predictions"].append(line)
        if any(_is_empty(r, clean_style) for r in ([reference] if isinstance(reference, str) else reference)):
            empty["references"].append(line)
    return empty


def _scores_with_empty_pairs_as_zero(
    predictions: Sequence[str],
    references: References,
    usable: Sequence[bool],
    clean_style: str | None,
    ce: bool,
    uncertain: str,
    evaluator: NLGEvaluator | None,
    labeler: Labeler,
) -> dict[str, float]:
    """``empty_text="zero"``: the NLG metrics of the usable pairs, scaled by their share (an empty pair counts 0; exact
    for the per-pair averages METEOR / ROUGE-L / CIDEr, the same weighting for corpus BLEU); CE labels every pair,
    an empty text having no finding."""
    kept = [i for i, ok in enumerate(usable) if ok]
    share = len(kept) / len(usable)
    if kept:
        nlg = compute_report_metrics(
            [predictions[i] for i in kept],
            [references[i] for i in kept],
            clean_style=clean_style,
            ce=False,
            evaluator=evaluator,
        )
        scores = {name: value * share for name, value in nlg.items()}
    else:
        scores = dict.fromkeys(NLG_METRIC_NAMES if evaluator is None else evaluator.metric_names, 0.0)
    if ce:

        def cleaned(text: str) -> str:
            return text if clean_style is None else clean_report(text, clean_style)

        first_refs = [r if isinstance(r, str) else r[0] for r in references]
        scores.update(
            compute_ce_scores(
                [cleaned(p) for p in predictions],
                [cleaned(r) for r in first_refs],
                uncertain=uncertain,
                labeler=labeler,
            )
        )
    return scores


def check_empty_texts(path: str | os.PathLike, empty: dict[str, list[int]], empty_text: str) -> None:
    if empty_text not in ("error", "zero"):
        raise ValueError(f"empty_text: expected 'error' or 'zero', got {empty_text!r}")
    if empty_text == "zero" or not (empty["predictions"] or empty["references"]):
        return
    side = "prediction" if empty["predictions"] else "reference"
    numbers = empty[f"{side}s"]
    shown = ", ".join(map(str, numbers[:10])) + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")
    raise ValueError(
        f"{path}: line {numbers[0]}: the {side} is empty after cleaning (empty {side}s on line(s) "
        f"{shown}); empty texts would score as perfect matches. Fix them, or score them as 0 with "
        "empty_text='zero' (--empty_text zero)"
    )


def score_prediction_file(
    path: str | os.PathLike,
    output_path: str | os.PathLike | None = None,
    prediction_key: str = "prediction",
    reference_key: str = "reference",
    clean_style: str | None = "iu_xray",
    ce: bool = True,
    uncertain: str = "negative",
    evaluator: NLGEvaluator | None = None,
    empty_text: str = "error",
    ce_labeler: Labeler | None = None,
) -> dict[str, Any]:
    """Score a JSONL of predictions and references; write the result as JSON to ``output_path`` if given.

    A running ``evaluator`` (whose cleaning style then applies) saves the METEOR start-up. A prediction or reference
    with no word left after cleaning raises ``ValueError`` naming its line (``empty_text="error"``), or
    (``empty_text="zero"``) counts 0 in the NLG metrics (see `_scores_with_empty_pairs_as_zero`); the result lists
    the lines under ``empty_predictions`` / ``empty_references``. ``ce_labeler`` replaces the rule labeler for the CE
    metrics (its ``name`` is recorded as ``ce_labeler``).
    """
    labeler = ce_labeler if ce_labeler is not None else label_reports
    predictions, references, lines = read_prediction_jsonl(path, prediction_key, reference_key, with_lines=True)
    if evaluator is not None:
        clean_style = evaluator.clean_style
    empty = find_empty_texts(predictions, references, lines, clean_style)
    check_empty_texts(path, empty, empty_text)
    empty_lines = set(empty["predictions"]) | set(empty["references"])
    if empty_lines:
        metrics = _scores_with_empty_pairs_as_zero(
            predictions,
            references,
            [n not in empty_lines for n in lines],
            clean_style,
            ce,
            uncertain,
            evaluator,
            labeler,
        )
    else:
        metrics = compute_report_metrics(
            predictions,
            references,
            clean_style=clean_style,
            ce=ce,
            uncertain=uncertain,
            evaluator=evaluator,
            labeler=labeler,
        )
    result = {
        "metrics": metrics,
        "num_pairs": len(predictions),
        "clean_style": clean_style,
        "ce_labeler": (
            getattr(labeler, "name", "modeling_rrg_mamba.labeler (rule-based CheXpert-style)") if ce else None
        ),
        "ce_uncertain_policy": uncertain if ce else None,
        "source": os.fspath(path),
        "empty_predictions": empty["predictions"],
        "empty_references": empty["references"],
    }
    if output_path is not None:
        from ..data.atomic import write_text_whole  # a crash never leaves a half-written metrics file

        write_text_whole(output_path, json.dumps(result, indent=2))
    return result
