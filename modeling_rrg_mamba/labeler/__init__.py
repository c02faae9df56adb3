"""Offline CheXpert-style labeling of radiology reports (14 observations) and an optional CheXbert scorer."""

from .lexicon import COMMON_OBSERVATIONS, OBSERVATIONS
from .rules import (
    BLANK,
    NEGATIVE,
    POSITIVE,
    UNCERTAIN,
    Mention,
    aggregate,
    binarize_labels,
    extract_mentions,
    label_report,
    label_reports,
)

__all__ = [
    "BLANK",
    "COMMON_OBSERVATIONS",
    "Mention",
    "NEGATIVE",
    "OBSERVATIONS",
    "POSITIVE",
    "UNCERTAIN",
    "aggregate",
    "binarize_labels",
    "extract_mentions",
    "label_report",
    "label_reports",
]
