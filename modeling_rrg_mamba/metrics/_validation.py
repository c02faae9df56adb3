"""Input checks shared by the NLG and CE metrics."""

from collections.abc import Sequence


def check_pairs(predictions: Sequence, references: Sequence, metrics: str) -> None:
    """Raise ``ValueError`` unless predictions and references are equally long, non-empty sequences."""
    if isinstance(predictions, str) or isinstance(references, str):
        raise ValueError("predictions/references: expected sequences of strings, got a single string")
    if len(predictions) != len(references):
        raise ValueError(f"predictions/references: lengths differ ({len(predictions)} vs {len(references)})")
    if len(predictions) == 0:
        raise ValueError(f"predictions: empty; {metrics} metrics need at least one pair")
