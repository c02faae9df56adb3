"""Rule-based CheXpert-style labeler: mention extraction, negation / uncertainty, aggregation, No Finding.

The stages follow the CheXpert labeler's design (Irvin et al., AAAI 2019, Sec. "Report labeling"), with this
package's own lexicon (:mod:`.lexicon`) and context rules:

1. *Mention extraction.* Each sentence is tokenised and scanned for the longest lexicon phrase at every
   position. A phrase is either a finding by itself ("cardiomegaly") or a *subject* ("heart size") whose
   polarity comes from the nearest attribute ("enlarged" -> positive, "normal" -> negative,
   "borderline" -> uncertain), looked for first after the subject, then just before it.
2. *Classification.* A mention is uncertain or negative when the nearest trigger before it (within a few
   words, no scope terminator such as "but" in between) is an uncertainty or negation phrase; failing that,
   a trigger right after it ("... cannot be excluded", "... is not seen") decides. A mention in an "X or Y"
   differential with no other trigger is uncertain. Otherwise it is positive.
3. *Aggregation.* Per observation: positive if any mention is positive, else uncertain if any is uncertain,
   else negative if any is negative, else blank.
4. *No Finding* is positive when no observation other than Support Devices is positive or uncertain, and
   blank otherwise.

Labels use the CheXpert CSV codes: 1 positive, 0 negative, -1 uncertain, NaN blank.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, FrozenSet, Generic, Iterable, List, Mapping, Optional, Sequence, Tuple, TypeVar

import numpy as np

from . import lexicon

POSITIVE, NEGATIVE, UNCERTAIN, BLANK = 1.0, 0.0, -1.0, math.nan
_STATUS_VALUE = {"positive": POSITIVE, "negative": NEGATIVE, "uncertain": UNCERTAIN}

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_BREAK = re.compile(r"(?<!\d)\.(?!\d)|[;!?\n]")

# Scope limits in tokens between a trigger and the mention it governs.
_NEGATION_REACH = 12
_UNCERTAINTY_REACH = 8
_POST_REACH = 6
_DISJUNCTION_REACH = 3
_ATTRIBUTE_AFTER = 8
_ATTRIBUTE_BEFORE = 3

T = TypeVar("T")


def _fold(token: str) -> str:
    """Light plural folding so lexicon entries match singular and plural forms alike."""
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 4 and token.endswith("sses"):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> List[str]:
    """Lower-case word tokens with plural folding (hyphens and punctuation separate words)."""
    return [_fold(word) for word in _WORD.findall(text.lower())]


def split_sentences(text: str) -> List[str]:
    """Split report text into sentences on full stops (not decimal points), semicolons, ?, ! and newlines."""
    return [part for part in _SENTENCE_BREAK.split(text) if part.strip()]


@dataclass(frozen=True)
class PhraseMatch(Generic[T]):
    start: int
    end: int
    payload: T


class PhraseMatcher(Generic[T]):
    """Leftmost-longest, non-overlapping matching of token phrases."""

    def __init__(self, phrases: Mapping[str, T]):
        self._by_first: Dict[str, List[Tuple[Tuple[str, ...], T]]] = {}
        for phrase, payload in phrases.items():
            tokens = tuple(tokenize(phrase))
            if not tokens:
                raise ValueError(f"lexicon phrase {phrase!r} has no word characters")
            self._by_first.setdefault(tokens[0], []).append((tokens, payload))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: -len(item[0]))

    def find(self, tokens: Sequence[str]) -> List[PhraseMatch[T]]:
        matches: List[PhraseMatch[T]] = []
        position = 0
        while position < len(tokens):
            for phrase, payload in self._by_first.get(tokens[position], ()):
                if tuple(tokens[position:position + len(phrase)]) == phrase:
                    matches.append(PhraseMatch(position, position + len(phrase), payload))
                    position += len(phrase)
                    break
            else:
                position += 1
        return matches


def _roles() -> Dict[str, FrozenSet[str]]:
    table: Dict[str, set] = {}
    for role, phrases in (("negation_pre", lexicon.NEGATION_PRE), ("negation_post", lexicon.NEGATION_POST),
                          ("uncertainty_pre", lexicon.UNCERTAINTY_PRE),
                          ("uncertainty_post", lexicon.UNCERTAINTY_POST), ("neutral", lexicon.NEUTRAL),
                          ("terminator", lexicon.TERMINATORS), ("disjunction", lexicon.DISJUNCTIONS)):
        for phrase in phrases:
            table.setdefault(" ".join(tokenize(phrase)), set()).add(role)
    return {phrase: frozenset(roles) for phrase, roles in table.items()}


@dataclass(frozen=True)
class _Entry:
    observations: Tuple[str, ...]
    needs_attribute: bool


_MENTIONS = PhraseMatcher({**{p: _Entry(o, False) for p, o in lexicon.MENTIONS.items()},
                           **{p: _Entry(o, True) for p, o in lexicon.SUBJECTS.items()}})
_ATTRIBUTES = PhraseMatcher(dict(lexicon.ATTRIBUTES))
_TRIGGERS = PhraseMatcher(_roles())


@dataclass(frozen=True)
class Mention:
    """One classified mention: the observation, the matched words, and positive / negative / uncertain."""

    observation: str
    text: str
    status: str
    sentence: str


def _nearest_attribute(subject: PhraseMatch, attributes: List[PhraseMatch[str]],
                       terminators: List[PhraseMatch]) -> Optional[PhraseMatch[str]]:
    def blocked(lo: int, hi: int) -> bool:
        return any(lo <= t.start < hi for t in terminators)

    after = [a for a in attributes if subject.end <= a.start <= subject.end + _ATTRIBUTE_AFTER
             and not blocked(subject.end, a.start)]
    if after:
        return min(after, key=lambda a: a.start)
    before = [a for a in attributes if subject.start - _ATTRIBUTE_BEFORE <= a.end <= subject.start
              and not blocked(a.end, subject.start)]
    return max(before, key=lambda a: a.end) if before else None


def _classify(start: int, end: int, triggers: List[PhraseMatch[FrozenSet[str]]]) -> str:
    """Status of the mention spanning tokens [start, end) from the context triggers of its sentence."""
    terminators = [t for t in triggers if "terminator" in t.payload]

    def open_between(lo: int, hi: int) -> bool:
        return not any(lo <= t.start and t.end <= hi for t in terminators)

    def reaches(t: PhraseMatch[FrozenSet[str]]) -> bool:
        if start < t.start and t.end <= end:  # inside a subject-attribute span ("heart may be enlarged")
            return True
        limit = _UNCERTAINTY_REACH if "uncertainty_pre" in t.payload else _NEGATION_REACH
        return t.end <= start and start - t.end <= limit and open_between(t.end, start)

    pre = [t for t in triggers if t.payload & {"negation_pre", "uncertainty_pre"} and reaches(t)]
    if pre:
        nearest = max(pre, key=lambda t: t.end)
        return "uncertain" if "uncertainty_pre" in nearest.payload else "negative"
    post = [t for t in triggers if t.start >= end and t.start - end <= _POST_REACH
            and t.payload & {"negation_post", "uncertainty_post"} and open_between(end, t.start)]
    if post:
        nearest = min(post, key=lambda t: t.start)
        return "uncertain" if "uncertainty_post" in nearest.payload else "negative"
    if any("disjunction" in t.payload and (0 <= start - t.end <= _DISJUNCTION_REACH
                                           or 0 <= t.start - end <= _DISJUNCTION_REACH)
           for t in triggers):
        return "uncertain"
    return "positive"


def _sentence_mentions(sentence: str) -> List[Mention]:
    tokens = tokenize(sentence)
    triggers = _TRIGGERS.find(tokens)
    terminators = [t for t in triggers if "terminator" in t.payload]
    attributes = _ATTRIBUTES.find(tokens)
    found: List[Mention] = []
    for match in _MENTIONS.find(tokens):
        entry: _Entry = match.payload
        start, end = match.start, match.end
        if entry.needs_attribute:
            attribute = _nearest_attribute(match, attributes, terminators)
            if attribute is None:
                continue
            start, end = min(start, attribute.start), max(end, attribute.end)
            if attribute.payload != "positive":
                status = "negative" if attribute.payload == "normal" else "uncertain"
                found.extend(Mention(o, " ".join(tokens[start:end]), status, sentence) for o in entry.observations)
                continue
        status = _classify(start, end, triggers)
        found.extend(Mention(o, " ".join(tokens[start:end]), status, sentence) for o in entry.observations)
    return found


def extract_mentions(report: str) -> List[Mention]:
    """All classified mentions of the 14 observations in ``report``, in reading order."""
    if not isinstance(report, str):
        raise ValueError(f"report: expected a string, got {type(report).__name__}")
    return [mention for sentence in split_sentences(report) for mention in _sentence_mentions(sentence)]


def aggregate(mentions: Iterable[Mention]) -> np.ndarray:
    """Aggregate mentions to one label per observation (CheXpert codes), then apply the No Finding rule."""
    labels = np.full(len(lexicon.OBSERVATIONS), BLANK)
    index = {name: i for i, name in enumerate(lexicon.OBSERVATIONS)}
    rank = {"positive": 3, "uncertain": 2, "negative": 1}
    best: Dict[str, str] = {}
    for mention in mentions:
        if rank[mention.status] > rank.get(best.get(mention.observation, ""), 0):
            best[mention.observation] = mention.status
    for observation, status in best.items():
        labels[index[observation]] = _STATUS_VALUE[status]
    findings = [index[o] for o in lexicon.OBSERVATIONS if o not in lexicon.NO_FINDING_EXEMPT]
    if not any(labels[i] in (POSITIVE, UNCERTAIN) for i in findings):
        labels[index["No Finding"]] = POSITIVE
    else:
        labels[index["No Finding"]] = BLANK
    return labels


@lru_cache(maxsize=65536)
def _label_one(report: str) -> Tuple[float, ...]:
    return tuple(aggregate(extract_mentions(report)))


def label_report(report: str) -> np.ndarray:
    """The 14 CheXpert labels of one report (order :data:`OBSERVATIONS`; 1 / 0 / -1 / NaN)."""
    if not isinstance(report, str):
        raise ValueError(f"report: expected a string, got {type(report).__name__}")
    return np.array(_label_one(report))


def label_reports(reports: Sequence[str]) -> np.ndarray:
    """Label many reports: an ``(N, 14)`` float array of CheXpert codes (1 / 0 / -1 / NaN = blank)."""
    if isinstance(reports, str):
        raise ValueError("reports: expected a sequence of strings, got a single string")
    out = np.empty((len(reports), len(lexicon.OBSERVATIONS)))
    for row, report in enumerate(reports):
        if not isinstance(report, str):
            raise ValueError(f"reports[{row}]: expected a string, got {type(report).__name__}")
        out[row] = _label_one(report)
    return out


def binarize_labels(labels: np.ndarray, uncertain: str = "negative") -> np.ndarray:
    """Map CheXpert codes to 0/1 targets: positive -> 1, negative and blank -> 0, uncertain per ``uncertain``.

    ``uncertain="negative"`` (U-Zeros) is the convention of R2Gen-style CE evaluation; ``"positive"`` (U-Ones)
    is the other common choice.
    """
    if uncertain not in ("negative", "positive"):
        raise ValueError(f"uncertain: expected 'negative' or 'positive', got {uncertain!r}")
    labels = np.asarray(labels, dtype=float)
    binary = (labels == POSITIVE).astype(np.int64)
    if uncertain == "positive":
        binary |= (labels == UNCERTAIN).astype(np.int64)
    return binary
