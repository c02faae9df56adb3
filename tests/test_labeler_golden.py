"""The rule labeler against a golden set of chest X-ray sentences labeled by the CheXpert rules.

``tests/data/labeler_golden.tsv`` holds sentences written for this project in the style of real findings and
impressions (lists, hedges, comparisons, devices, lesions, normal templates, IU X-Ray text with XXXX), each with
all 14 CheXpert labels (1 positive, 0 negative, -1 uncertain, empty blank; No Finding by CheXpert's rule).
"""

import csv
import math
from pathlib import Path

import pytest

from modeling_rrg_mamba.labeler import OBSERVATIONS, extract_mentions, label_report

GOLDEN = Path(__file__).parent / "data" / "labeler_golden.tsv"


def _rows():
    with GOLDEN.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        assert header == ["sentence", *OBSERVATIONS]
        return [(row[0], row[1:]) for row in reader]


ROWS = _rows()


def _code(value: float) -> str:
    return "" if math.isnan(value) else str(int(value))


def test_golden_set_size_and_coverage():
    assert len(ROWS) >= 400
    assert len({sentence for sentence, _ in ROWS}) == len(ROWS)
    for column, observation in enumerate(OBSERVATIONS):
        values = {labels[column] for _, labels in ROWS}
        wanted = {"1", ""} if observation == "No Finding" else {"1", "0", "-1", ""}
        assert wanted <= values, (observation, values)


def test_golden_no_finding_follows_the_chexpert_rule_on_the_other_labels():
    exempt = {OBSERVATIONS.index("No Finding"), OBSERVATIONS.index("Support Devices")}
    for sentence, labels in ROWS:
        if any(labels[i] in ("1", "-1") for i in range(len(OBSERVATIONS)) if i not in exempt):
            assert labels[0] == "", sentence


@pytest.mark.parametrize("sentence, labels", ROWS, ids=[f"{i:03d}" for i in range(len(ROWS))])
def test_golden_sentence(sentence, labels):
    got = [_code(v) for v in label_report(sentence)]
    diffs = [f"{o}: want {w!r} got {g!r}" for o, w, g in zip(OBSERVATIONS, labels, got) if w != g]
    mentions = [(m.observation, m.text, m.status) for m in extract_mentions(sentence)]
    assert not diffs, f"{sentence!r}: {'; '.join(diffs)}; mentions {mentions}"
