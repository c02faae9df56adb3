"""Clinical-efficacy (CE) metrics: precision / recall / F1 of CheXpert observations, generated vs reference.

Both report sets are labeled by the same labeler (by default the package's rule-based CheXpert-style labeler,
:func:`modeling_rrg_mamba.labeler.label_reports`), binarised with an explicit uncertain-label policy
(``"negative"``: positive = 1, everything else 0, the R2Gen / CMN convention; ``"positive"``: uncertain counts
as positive), and compared three ways:

* micro: true / false positives and false negatives pooled over observations and reports;
* macro: per-observation precision / recall / F1, averaged over observations;
* example: per-report precision / recall / F1 over its positive observations, averaged over reports.

A zero denominator contributes 0 (scikit-learn's ``zero_division=0``). Scores are given over all 14
observations and over the 5 common ones (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..labeler import COMMON_OBSERVATIONS, OBSERVATIONS, binarize_labels, label_reports
from ._validation import check_pairs

Labeler = Callable[[Sequence[str]], np.ndarray]


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _f1(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    return _safe_divide(2 * precision * recall, precision + recall)


def multilabel_scores(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Micro, macro and example-based precision / recall / F1 of binary ``(N, C)`` label matrices."""
    predicted, target = np.asarray(predicted).astype(bool), np.asarray(target).astype(bool)
    if predicted.shape != target.shape or predicted.ndim != 2:
        raise ValueError(f"predicted/target: expected equal (N, C) shapes, got {predicted.shape} and {target.shape}")
    true_pos = (predicted & target).sum(axis=0)
    pred_pos, gold_pos = predicted.sum(axis=0), target.sum(axis=0)
    scores: dict[str, float] = {}
    micro_p, micro_r = _safe_divide(true_pos.sum(), pred_pos.sum()), _safe_divide(true_pos.sum(), gold_pos.sum())
    scores.update(micro_precision=float(micro_p), micro_recall=float(micro_r), micro_f1=float(_f1(micro_p, micro_r)))
    per_p, per_r = _safe_divide(true_pos, pred_pos), _safe_divide(true_pos, gold_pos)
    scores.update(
        macro_precision=float(per_p.mean()), macro_recall=float(per_r.mean()), macro_f1=float(_f1(per_p, per_r).mean())
    )
    hits = (predicted & target).sum(axis=1)
    scores.update(
        example_precision=float(_safe_divide(hits, predicted.sum(axis=1)).mean()),
        example_recall=float(_safe_divide(hits, target.sum(axis=1)).mean()),
        example_f1=float(_safe_divide(2 * hits, predicted.sum(axis=1) + target.sum(axis=1)).mean()),
    )
    return scores


def compute_ce_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    uncertain: str = "negative",
    labeler: Labeler = label_reports,
) -> dict[str, float]:
    """CE scores of generated vs reference reports, keys ``ce_{14|5}_{micro|macro|example}_{precision|recall|f1}``.

    ``labeler`` maps a list of reports to an ``(N, 14)`` array of CheXpert codes (1 / 0 / -1 / NaN) in
    :data:`~modeling_rrg_mamba.labeler.OBSERVATIONS` order; a CheXbert labeler can be passed instead.
    """
    check_pairs(predictions, references, "CE")
    predicted = binarize_labels(labeler(list(predictions)), uncertain=uncertain)
    target = binarize_labels(labeler(list(references)), uncertain=uncertain)
    common = [OBSERVATIONS.index(name) for name in COMMON_OBSERVATIONS]
    scores: dict[str, float] = {}
    for subset, columns in (("14", slice(None)), ("5", common)):
        for name, value in multilabel_scores(predicted[:, columns], target[:, columns]).items():
            scores[f"ce_{subset}_{name}"] = value
    return scores
