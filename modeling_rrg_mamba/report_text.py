"""R2Gen-compatible report cleaning, the text convention of every IU X-Ray / MIMIC-CXR paper.

Reports are lower-cased, split into sentences on ". ", list numbering ("1. ", " 2. ") is dropped, most
punctuation is deleted and the sentences are joined with " . " and closed with " .". The punctuation class
mirrors the one R2Gen uses, including its ``:-[`` character range (so ``; < = > ? @`` and ``[`` go too).
Both the tokenizer and the metrics read text through these functions, so their numbers agree with papers.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_DROPPED = re.compile(r"[.,?;*!%^&_+():-\[\]{}]")
_QUOTES_AND_SLASHES = str.maketrans("", "", "\"/\\'")
_NUMBERING = (
    ("1. ", ""),
    (". 2. ", ". "),
    (". 3. ", ". "),
    (". 4. ", ". "),
    (". 5. ", ". "),
    (" 2. ", ". "),
    (" 3. ", ". "),
    (" 4. ", ". "),
    (" 5. ", ". "),
)


def _collapse(text: str, pair: str, single: str, times: int) -> str:
    for _ in range(times):
        text = text.replace(pair, single)
    return text


def _sentences(text: str) -> list[str]:
    for old, new in _NUMBERING:
        text = text.replace(old, new)
    return text.strip().lower().split(". ")


def _clean_sentence(sentence: str) -> str:
    return _DROPPED.sub("", sentence.translate(_QUOTES_AND_SLASHES).strip().lower())


def _join(sentences: list[str]) -> str:
    return " . ".join(_clean_sentence(s) for s in sentences) + " ."


def clean_report_iu_xray(report: str) -> str:
    """R2Gen's IU X-Ray cleaner."""
    return _join(_sentences(_collapse(report, "..", ".", 3)))


def clean_report_mimic_cxr(report: str) -> str:
    """R2Gen's MIMIC-CXR cleaner: also flattens newlines and runs of underscores / spaces."""
    text = _collapse(report.replace("\n", " "), "__", "_", 7)
    text = _collapse(_collapse(text, "  ", " ", 6), "..", ".", 8)
    return _join(_sentences(text))


REPORT_CLEANERS: dict[str, Callable[[str], str]] = {
    "iu_xray": clean_report_iu_xray,
    "mimic_cxr": clean_report_mimic_cxr,
}


def clean_report(report: str, style: str = "iu_xray") -> str:
    """Clean ``report`` with the named cleaner (``"iu_xray"`` or ``"mimic_cxr"``; CheXpert Plus uses MIMIC's)."""
    if not isinstance(report, str):
        raise ValueError(f"report: expected a string, got {type(report).__name__}")
    try:
        cleaner = REPORT_CLEANERS[style]
    except KeyError:
        raise ValueError(f"style: unknown report cleaner {style!r}; choose from {sorted(REPORT_CLEANERS)}") from None
    return cleaner(report)
