"""Rule-based CheXpert-style labeler: mention extraction, negation / uncertainty, aggregation, No Finding.

The stages follow the CheXpert labeler (Irvin et al., AAAI 2019; github.com/stanfordmlgroup/chexpert-labeler),
with this package's own lexicon (:mod:`.lexicon`) and token-window context rules instead of CheXpert's
dependency-parse patterns (no parser, thousands of reports per second inside the CE metric):

1. *Sentences.* Report text is split on full stops (not decimal points), ``;`` ``?`` ``!`` ``:`` newlines and
   numbered-list markers ("1. ... 2. ..."), so every item of an impression list is its own sentence. IU X-Ray's
   ``XXXX`` anonymisation tokens stay ordinary words: they break nothing and match nothing.
2. *Mentions.* Each sentence is tokenised (commas are remembered) and scanned for the longest lexicon phrase
   at every position. A phrase is either a finding by itself ("cardiomegaly") or a *subject* ("heart size")
   whose polarity comes from the nearest attribute ("enlarged" -> positive, "normal" -> negative, "borderline"
   -> uncertain, "stable" -> uncertain for heart / mediastinum), looked for first after the subject, then just
   before it. Excluded phrases ("pericardial effusion", "surgical clips") hide the shorter phrase they contain.
3. *Classification*, in CheXpert's order: (a) *pre-negation uncertainty* ("cannot exclude X", "X is not
   excluded", "no new X") -> uncertain; else (b) *negation* ("no", "without", "free of", "X is not seen",
   "resolved X", "X has been removed") -> negative; else (c) *post-negation uncertainty* (hedges, "X or Y",
   "X versus Y") -> uncertain; else positive. Because negation is decided before hedges, a hedge that modifies
   one item of a negated list ("No focal consolidation, suspicious pulmonary opacity, pleural effusion, or
   pneumothorax") cannot take over the negation of the others. Scopes: a negation (or a clause-level hedge
   such as "may represent") before a mention reaches it across a coordinated list ("A, B, or C") up to a
   terminator ("but", "however", "which", "there is", ...); across a comma only when the list is coordinated
   or a bare run of three or more short items ("no consolidation, effusion, pneumothorax"), the item itself
   carrying no asserting modifier ("..., mild cardiomegaly" stays positive), or when the comma only separates
   adjectives ("no acute, displaced rib fracture");
   an item-level hedge ("possible", "suspicious", "likely") reaches only its own list item; triggers after a
   mention ("... cannot be excluded", "... is not seen") reach back a few words. "No (significant / interval)
   change in X", "unchanged X", "stable X", "no increase in X", "partially resolved X" are neutral: X keeps
   the status it has (present) -- except a stable heart / mediastinum, uncertain as in CheXpert.
4. *Aggregation.* Per observation: positive if any mention is positive, else uncertain if any is uncertain,
   else negative if any is negative, else blank. A positive or uncertain "CHF" / "heart failure" also adds an
   uncertain Cardiomegaly mention (CheXpert's rule).
5. *No Finding* is positive when no observation other than Support Devices is positive or uncertain *and* no
   other abnormality outside the 14 (emphysema, granuloma, calcification, scoliosis, degenerative change,
   hernia, hyperinflation, ...; CheXpert's "no finding" phrase list) is positive or uncertain; blank otherwise.

Labels use the CheXpert CSV codes: 1 positive, 0 negative, -1 uncertain, NaN blank.

Deliberate differences from the CheXpert labeler's rules (and why):

* Subjects without an attribute are no mention. CheXpert labels "the heart", "heart size", "contour",
  "mediastinum" positive unless a negation pattern fires, so "The mediastinum is midline" or "Pacemaker over
  the heart" would be Cardiomegaly / Enlarged Cardiomediastinum positive; we require an attribute
  ("midline", "normal" -> negative). "Pulmonary vascularity is normal" and "costophrenic angles are sharp" are
  read as negative Edema / Pleural Effusion (CheXpert: blank); increased vascularity and blunted angles are
  uncertain, like CheXpert's congestion / blunting rules.
* Support Devices: sternotomy / sternal / cerclage wires, stents and chest ports are devices (CheXpert's list
  has no "wire", "stent" or "port"); surgical clips and staples are not, as in CheXpert. Nipple and skin
  "markers" are not devices (CheXpert counts "marker"); "tracheostomy" and "defibrillator" count as Support
  Devices only (CheXpert also lists them among "no finding" blockers).
* "Fibrosis" is Lung Opacity, "pleural fibrosis" is Pleural Other (CheXpert files bare "fibrosis" under Pleural
  Other). "Density" in the lungs, "haziness", "ground glass", "reticulonodular" are Lung Opacity (CheXpert:
  only "increased density"; bare "density" only blocks No Finding). "Lesion", "malignancy", "cavitation",
  "pulmonary metastases" are Lung Lesion (CheXpert: mass / nodule / tumor / carcinoma / neoplasm / lump /
  cavitary lesion; metastasis only blocks No Finding). "Mediastinal mass" is Lung Lesion and Enlarged
  Cardiomediastinum. Hydropneumothorax is Pneumothorax and Pleural Effusion (CheXpert: Pneumothorax only).
* "Compression deformity" is Fracture (CheXpert: "deformity", a No Finding blocker only). Pleural plaques /
  calcification, pleural caps and mesothelioma are Pleural Other (CheXpert: "plaque" only blocks No Finding).
  "Kerley lines", "fluid overload" are Edema. "Pneumonitis" is Pneumonia.
* "X was not appreciated" is negative (CheXpert: uncertain, a quirk of its parse rule); "Heart size at the
  upper limits of normal" is negative as in CheXpert, "borderline" uncertain, "mildly prominent" positive.
* "X or Y" leaves in doubt only the observations its two sides do not share: "pacemaker / defibrillator" is a
  Support Device either way (CheXpert: uncertain), "effusion or atelectasis" leaves both uncertain as in CheXpert.
  Pacemaker leads, generators, nerve stimulators, joint prostheses and internal fixation are Support Devices.
  "Prior granulomatous infection" is an old, other abnormality, not Pneumonia; "dextro- / levoscoliosis" and
  spinal "curvature" block No Finding like scoliosis.
* "Bronchiectasis" and "osteophytes" block No Finding as other abnormalities; a bare "fissure" does not
  (CheXpert lists "fissure", which would make "the minor fissure is normal in position" abnormal).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np

from . import lexicon

#: Label values, as in CheXpert: positive 1, negative 0, uncertain -1, not mentioned (blank) NaN.
POSITIVE, NEGATIVE, UNCERTAIN, BLANK = 1.0, 0.0, -1.0, math.nan
_STATUS_VALUE = {"positive": POSITIVE, "negative": NEGATIVE, "uncertain": UNCERTAIN}

_WORD = re.compile(r"[a-z0-9]+|,")
# Sentence breaks: full stops that are not decimal points, ; ? ! newlines, ": " and numbered-list markers.
_SENTENCE_BREAK = re.compile(r"(?<!\d)\.(?!\d)|[;!?\n]|:(?=\s|$)|(?:(?<=\s)|^)\(?\d{1,2}[.)](?!\d)")
_SLASH = re.compile(r"(?<=[a-z])\s*/\s*(?=[a-z])")

# Scope limits in tokens between a trigger and the mention it governs.
_REACH = {"first_pre": 14, "neg_pre": 14, "unc_pre": 10, "unc_item": 6, "neg_item": 3}
_SHORT_NEGATIONS = {"not": 4}
_POST_REACH = {"first_post": 8, "neg_post": 6, "unc_post": 6}
_DISJUNCTION_REACH = 3
# An unconjoined list ("no consolidation, effusion, pneumothorax") carries a negation across its commas when it has
# at least this many commas, items of at most _LIST_ITEM_TOKENS tokens, and the item asserts nothing of its own.
_LIST_MIN_COMMAS = 2
_LIST_ITEM_TOKENS = 5
# Adjectives a negation may be separated from its finding by, with a comma: "no acute, displaced rib fracture".
_COMMA_ADJECTIVES = frozenset(
    {"acute", "new", "definite", "focal", "obvious", "displaced", "significant", "visible", "discrete", "gross"}
)
_ASSERTING_MODIFIERS = frozenset(
    {"mild", "mildly", "small", "moderate", "large", "severe", "new", "increased", "increasing", "persistent"}
)
_ATTRIBUTE_AFTER = 8
_ATTRIBUTE_BEFORE = 3
_CLAUSE_PRE = ("first_pre", "neg_pre", "unc_pre")
_ATTRIBUTE_BLOCKERS = frozenset(
    {"but", "however", "although", "though", "whereas", "while", "which", "except", "otherwise"}
)

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


def _words_and_commas(text: str) -> tuple[list[str], frozenset[int]]:
    """Folded word tokens, and the indices of tokens that follow a comma."""
    words: list[str] = []
    commas: set[int] = set()
    for item in _WORD.findall(_SLASH.sub(" or ", text.lower().replace("and/or", "and or"))):
        if item == ",":
            commas.add(len(words))
        else:
            words.append(_fold(item))
    return words, frozenset(commas)


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens with plural folding (hyphens and punctuation separate words)."""
    return _words_and_commas(text)[0]


def split_sentences(text: str) -> list[str]:
    """Split report text into sentences on full stops (not decimal points), ; ? ! ": ", newlines and
    numbered-list markers ("1. ", "2) ")."""
    return [part for part in _SENTENCE_BREAK.split(text) if part and part.strip()]


@dataclass(frozen=True)
class PhraseMatch(Generic[T]):
    start: int
    end: int
    payload: T


class PhraseMatcher(Generic[T]):
    """Leftmost-longest, non-overlapping matching of token phrases."""

    def __init__(self, phrases: Mapping[str, T]):
        self._by_first: dict[str, list[tuple[tuple[str, ...], T]]] = {}
        for phrase, payload in phrases.items():
            tokens = tuple(tokenize(phrase))
            if not tokens:
                raise ValueError(f"lexicon phrase {phrase!r} has no word characters")
            self._by_first.setdefault(tokens[0], []).append((tokens, payload))
        for candidates in self._by_first.values():
            candidates.sort(key=lambda item: -len(item[0]))

    def find(self, tokens: Sequence[str]) -> list[PhraseMatch[T]]:
        matches: list[PhraseMatch[T]] = []
        position = 0
        by_first = self._by_first
        n = len(tokens)
        while position < n:
            candidates = by_first.get(tokens[position])
            if candidates:
                for phrase, payload in candidates:
                    length = len(phrase)
                    if length == 1 or tuple(tokens[position : position + length]) == phrase:
                        matches.append(PhraseMatch(position, position + length, payload))
                        position += length
                        break
                else:
                    position += 1
            else:
                position += 1
        return matches


_CLOSING_NEUTRAL = (
    "change",
    "changed",
    "increase",
    "worsening",
    "resolved",
    "resolution",
    "difference",
    "development",
    "different",
)


def _roles() -> dict[str, frozenset[str]]:
    table: dict[str, set] = {}
    for role, phrases in (
        ("first_pre", lexicon.UNCERTAINTY_FIRST_PRE),
        ("first_post", lexicon.UNCERTAINTY_FIRST_POST),
        ("neg_pre", lexicon.NEGATION_PRE),
        ("neg_post", lexicon.NEGATION_POST),
        ("neg_item", lexicon.NEGATION_ITEM),
        ("unc_item", lexicon.UNCERTAINTY_ITEM),
        ("unc_pre", lexicon.UNCERTAINTY_PRE),
        ("unc_post", lexicon.UNCERTAINTY_POST),
        ("neutral", lexicon.NEUTRAL),
        ("terminator", lexicon.TERMINATORS),
        ("disjunction", lexicon.DISJUNCTIONS),
        ("coordinator", lexicon.COORDINATORS),
    ):
        for phrase in phrases:
            table.setdefault(" ".join(tokenize(phrase)), set()).add(role)
    out = {}
    for phrase, roles in table.items():
        if "neg_item" in roles:
            roles.discard("neg_pre")
        if "neutral" in roles:
            closing = any(word in phrase.split() for word in _CLOSING_NEUTRAL)
            roles = {"neutral", "terminator"} if closing or "terminator" in roles else {"neutral"}
        out[phrase] = frozenset(roles)
    return out


@dataclass(frozen=True)
class _Entry:
    observations: tuple[str, ...]
    needs_attribute: bool
    weak: bool


_MENTIONS = PhraseMatcher(
    {
        **{p: _Entry(o, False, False) for p, o in lexicon.MENTIONS.items()},
        **{p: _Entry(o, False, True) for p, o in lexicon.WEAK_MENTIONS.items()},
        **{p: _Entry(o, True, False) for p, o in lexicon.SUBJECTS.items()},
    }
)
_ATTRIBUTES = PhraseMatcher(dict(lexicon.ATTRIBUTES))
_TRIGGERS = PhraseMatcher(_roles())
_WEAK_SUBJECTS = frozenset({"Edema", "Pleural Effusion"})


@dataclass(frozen=True)
class Mention:
    """One classified mention: the observation, the matched words, and positive / negative / uncertain."""

    observation: str
    text: str
    status: str
    sentence: str


def _nearest_attribute(
    subject: PhraseMatch, attributes: list[PhraseMatch[str]], tokens: Sequence[str], allow_stable: bool
) -> PhraseMatch[str] | None:
    def blocked(lo: int, hi: int) -> bool:
        return any(tokens[i] in _ATTRIBUTE_BLOCKERS for i in range(lo, hi))

    usable = [a for a in attributes if allow_stable or a.payload != "stable"]
    after = [
        a
        for a in usable
        if subject.end <= a.start <= subject.end + _ATTRIBUTE_AFTER and not blocked(subject.end, a.start)
    ]
    before = [
        a
        for a in usable
        if subject.start - _ATTRIBUTE_BEFORE <= a.end <= subject.start and not blocked(a.end, subject.start)
    ]
    chosen = min(after, key=lambda a: a.start) if after else (max(before, key=lambda a: a.end) if before else None)
    if chosen is not None and chosen.payload == "stable":
        # "stable and normal", "normal and stable", "stable normal": the normal / enlarged word decides.
        near = [
            a
            for a in usable
            if a.payload != "stable" and (0 <= a.start - chosen.end <= 2 or 0 <= chosen.start - a.end <= 2)
        ]
        if near:
            chosen = near[0]
    return chosen


class _Context:
    """Triggers of one sentence with the index structures the scope rules need."""

    def __init__(self, tokens: list[str], commas: frozenset[int]):
        self.tokens = tokens
        self.commas = commas
        self.triggers = [t for t in _TRIGGERS.find(tokens) if t.payload - {"neutral"}]
        self.terminator_starts = sorted(t.start for t in self.triggers if "terminator" in t.payload)
        self.coordinators = [t.start for t in self.triggers if "coordinator" in t.payload]
        self.clause_pre = [t for t in self.triggers if t.payload & set(_CLAUSE_PRE)]
        self.has_disjunction = any("disjunction" in t.payload for t in self.triggers)

    def terminated(self, lo: int, hi: int) -> bool:
        """A terminator starts in [lo, hi)."""
        return any(lo <= s < hi for s in self.terminator_starts)

    def clause_end(self, position: int) -> int:
        for s in self.terminator_starts:
            if s >= position:
                return s
        return len(self.tokens)

    def comma_between(self, lo: int, hi: int) -> int | None:
        hits = [c for c in self.commas if lo <= c <= hi]
        return min(hits) if hits else None


def _adjectives_before_comma(ctx: _Context, lo: int, start: int) -> bool:
    """Tokens [lo, start) are adjectives, one comma, and at most three words before the mention ("no acute,
    displaced rib fracture"): the comma separates adjectives, not list items."""
    commas = [c for c in ctx.commas if lo < c <= start]
    if len(commas) != 1 or start - commas[0] > 3:
        return False
    return commas[0] > lo and all(token in _COMMA_ADJECTIVES for token in ctx.tokens[lo : commas[0]])


def _bare_list(ctx: _Context, lo: int, start: int) -> bool:
    """The clause from ``lo`` on is an unconjoined list of short items, and the mention at ``start`` is one of them
    without an asserting modifier ("no consolidation, effusion, pneumothorax"; not "..., mild cardiomegaly")."""
    end = ctx.clause_end(start)
    commas = sorted(c for c in ctx.commas if lo < c < end)
    if len(commas) < _LIST_MIN_COMMAS:
        return False
    bounds = [lo, *commas, end]
    if any(b - a > _LIST_ITEM_TOKENS for a, b in zip(bounds, bounds[1:])):
        return False
    item = max(b for b in bounds if b <= start), min(b for b in bounds if b > start)
    return not _ASSERTING_MODIFIERS.intersection(ctx.tokens[item[0] : item[1]])


def _pre_reaches(ctx: _Context, t: PhraseMatch, role: str, start: int) -> bool:
    if role not in t.payload or t.end > start:
        return False
    reach = (
        _SHORT_NEGATIONS.get(" ".join(ctx.tokens[t.start : t.end]), _REACH[role])
        if role == "neg_pre"
        else _REACH[role]
    )
    if start - t.end > reach or ctx.terminated(t.end, start):
        return False
    comma = ctx.comma_between(t.end, start)
    if role in ("unc_item", "neg_item"):
        return comma is None
    if comma is not None:
        # Across a comma only inside a list: coordinated ("no A, B, or C") or a bare run of items ("no A, B, C").
        end = ctx.clause_end(start)
        if not (
            any(comma <= c < end for c in ctx.coordinators)
            or _bare_list(ctx, t.end, start)
            or _adjectives_before_comma(ctx, t.end, start)
        ):
            return False
    # A clause-level trigger's scope ends at the next negation / pre-negation uncertainty.
    if role in _CLAUSE_PRE:
        for other in ctx.clause_pre:
            if (
                other is not t
                and t.end <= other.start
                and other.end <= start
                and other.payload & {"first_pre", "neg_pre"}
            ):
                return False
    return True


def _disjuncts(ctx: _Context, matches: list[PhraseMatch[_Entry]]) -> dict[int, frozenset[str]]:
    """The mentions next to an "or" / "versus" ("X or Y": a differential), each with the observations the
    differential leaves in doubt: those its alternative does not name too ("pacemaker or defibrillator" is a support
    device either way; "effusion or atelectasis" leaves both in doubt)."""
    doubts: dict[int, set[str]] = {}
    for t in ctx.triggers:
        if "disjunction" not in t.payload:
            continue
        before = [
            i
            for i, m in enumerate(matches)
            if m.end <= t.start and t.start - m.end <= _DISJUNCTION_REACH and not ctx.terminated(m.end, t.start)
        ]
        after = [
            i
            for i, m in enumerate(matches)
            if m.start >= t.end and m.start - t.end <= _DISJUNCTION_REACH and not ctx.terminated(t.end, m.start)
        ]
        pair = [
            i
            for i in (
                max(before, key=lambda i: matches[i].end, default=None),
                min(after, key=lambda i: matches[i].start, default=None),
            )
            if i is not None
        ]
        named = [set(matches[i].payload.observations) for i in pair]
        shared = set.intersection(*named) if len(named) == 2 else set()
        for i, observations in zip(pair, named):
            doubts.setdefault(i, set()).update(observations - shared)
    return {i: frozenset(observations) for i, observations in doubts.items()}


def _classify(start: int, end: int, ctx: _Context) -> str:
    """Status of the mention spanning tokens [start, end) from the context triggers of its sentence."""
    found: set[str] = set()
    for t in ctx.triggers:
        payload = t.payload
        if start < t.start and t.end <= end:  # inside a subject-attribute span ("heart may be enlarged")
            for role in ("first_pre", "neg_pre", "unc_pre", "unc_item", "neg_item", "first_post", "unc_post"):
                if role in payload:
                    found.add(role)
            continue
        if t.end <= start:
            for role in ("first_pre", "neg_pre", "neg_item", "unc_pre", "unc_item"):
                if role in payload and _pre_reaches(ctx, t, role, start):
                    found.add(role)
        elif t.start >= end:
            for role, reach in _POST_REACH.items():
                if role in payload and t.start - end <= reach and not ctx.terminated(end, t.start):
                    found.add(role)
    if found & {"first_pre", "first_post"}:
        return "uncertain"
    if found & {"neg_pre", "neg_post", "neg_item"}:
        return "negative"
    if found & {"unc_pre", "unc_post", "unc_item"}:
        return "uncertain"
    return "positive"


@lru_cache(maxsize=131072)
def _sentence_statuses(sentence: str) -> tuple[tuple[str, str, str], ...]:
    tokens, commas = _words_and_commas(sentence)
    if not tokens:
        return ()
    ctx = _Context(tokens, commas)
    attributes: list[PhraseMatch[str]] | None = None
    found: list[tuple[str, str, str]] = []
    matches = _MENTIONS.find(tokens)
    doubts = _disjuncts(ctx, matches) if ctx.has_disjunction else {}
    for number, match in enumerate(matches):
        entry: _Entry = match.payload
        if not entry.observations:
            continue
        start, end = match.start, match.end
        weak = entry.weak
        if entry.needs_attribute:
            if attributes is None:
                attributes = _ATTRIBUTES.find(tokens)
            allow_stable = any(o in lexicon.STABLE_UNCERTAIN for o in entry.observations)
            attribute = _nearest_attribute(match, attributes, tokens, allow_stable)
            if attribute is None:
                continue
            start, end = min(start, attribute.start), max(end, attribute.end)
            text = " ".join(tokens[start:end])
            if attribute.payload in ("normal", "uncertain", "stable"):
                status = "negative" if attribute.payload == "normal" else "uncertain"
                found.extend((o, text, status) for o in entry.observations)
                continue
            weak = any(o in _WEAK_SUBJECTS for o in entry.observations)
        status = _classify(start, end, ctx)
        doubted = doubts.get(number, frozenset())
        text = " ".join(tokens[start:end])
        for observation in entry.observations:
            sure = status == "positive" and not weak and observation not in doubted
            found.append((observation, text, status if status != "positive" or sure else "uncertain"))
    return tuple(found)


def extract_mentions(report: str) -> list[Mention]:
    """All classified mentions of the 14 observations (and of other abnormalities, observation
    ``"Other Finding"``) in ``report``, in reading order."""
    if not isinstance(report, str):
        raise ValueError(f"report: expected a string, got {type(report).__name__}")
    return [
        Mention(observation, text, status, sentence)
        for sentence in split_sentences(report)
        for observation, text, status in _sentence_statuses(sentence.strip())
    ]


_HEART_FAILURE = frozenset({"chf", "heart failure", "congestive heart failure"})


def aggregate(mentions: Iterable[Mention]) -> np.ndarray:
    """Aggregate mentions to one label per observation (CheXpert codes), then apply the No Finding rule."""
    labels = np.full(len(lexicon.OBSERVATIONS), BLANK)
    index = {name: i for i, name in enumerate(lexicon.OBSERVATIONS)}
    rank = {"positive": 3, "uncertain": 2, "negative": 1}
    best: dict[str, str] = {}

    def add(observation: str, status: str) -> None:
        if rank[status] > rank.get(best.get(observation, ""), 0):
            best[observation] = status

    other_finding = False
    for mention in mentions:
        if mention.observation == lexicon.OTHER_FINDING:
            other_finding = other_finding or mention.status != "negative"
            continue
        if mention.observation not in index:
            continue
        add(mention.observation, mention.status)
        if mention.observation == "Edema" and mention.status != "negative" and mention.text in _HEART_FAILURE:
            add("Cardiomegaly", "uncertain")
    for observation, status in best.items():
        labels[index[observation]] = _STATUS_VALUE[status]
    findings = [index[o] for o in lexicon.OBSERVATIONS if o not in lexicon.NO_FINDING_EXEMPT]
    if other_finding or any(labels[i] in (POSITIVE, UNCERTAIN) for i in findings):
        labels[index["No Finding"]] = BLANK
    else:
        labels[index["No Finding"]] = POSITIVE
    return labels


@lru_cache(maxsize=65536)
def _label_one(report: str) -> tuple[float, ...]:
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
