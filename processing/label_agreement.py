#!/usr/bin/env python
"""Per-observation agreement of the rule labeler with a golden set of labeled sentences.

Example:
    python processing/label_agreement.py                      # tests/data/labeler_golden.tsv
    python processing/label_agreement.py --golden my.tsv --show-errors

The golden file is a TSV with a header ``sentence`` + the 14 CheXpert observations, cells 1 / 0 / -1 / empty.
Prints, per observation, how many sentences carry each label in the golden set, the exact-match agreement
over all sentences and over the sentences where either side is non-blank, and the confusions.
"""

import argparse
import csv
import math
import sys
from collections import Counter
from pathlib import Path

from modeling_rrg_mamba.labeler import OBSERVATIONS, label_reports

DEFAULT = Path(__file__).resolve().parent.parent / "tests" / "data" / "labeler_golden.tsv"
NAMES = {"1": "pos", "0": "neg", "-1": "unc", "": "blank"}


def _code(value: float) -> str:
    return "" if math.isnan(value) else str(int(value))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--golden", default=str(DEFAULT))
    parser.add_argument("--show-errors", action="store_true")
    args = parser.parse_args(argv)
    with open(args.golden, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader)
        if header != ["sentence", *OBSERVATIONS]:
            raise ValueError(f"{args.golden}: header must be 'sentence' + the 14 observations, got {header}")
        rows = list(reader)
    predicted = label_reports([row[0] for row in rows])
    print(f"{len(rows)} sentences: {args.golden}")
    print(
        f"{'observation':28s} {'pos':>4s} {'neg':>4s} {'unc':>4s} {'blank':>5s}  "
        f"{'agree':>7s}  {'agree|mentioned':>15s}"
    )
    total_ok = total = 0
    for column, observation in enumerate(OBSERVATIONS):
        gold = [row[column + 1] for row in rows]
        pred = [_code(v) for v in predicted[:, column]]
        counts = Counter(gold)
        ok = sum(g == p for g, p in zip(gold, pred))
        mentioned = [(g, p) for g, p in zip(gold, pred) if g or p]
        ok_mentioned = sum(g == p for g, p in mentioned)
        total_ok, total = total_ok + ok, total + len(rows)
        share = f"{ok_mentioned}/{len(mentioned)}" if mentioned else "-"
        print(
            f"{observation:28s} {counts['1']:4d} {counts['0']:4d} {counts['-1']:4d} {counts['']:5d}  "
            f"{ok / len(rows):7.1%}  {share:>15s}"
        )
        confusions = Counter((NAMES[g], NAMES[p]) for g, p in zip(gold, pred) if g != p)
        for (g, p), n in sorted(confusions.items()):
            print(f"{'':30s}gold {g} -> labeler {p}: {n}")
    print(f"{'all labels':28s} {'':>4s} {'':>4s} {'':>4s} {'':>5s}  {total_ok / total:7.1%}")
    if args.show_errors:
        for row, labels in zip(rows, predicted):
            got = [_code(v) for v in labels]
            diffs = [f"{o}: {w!r}->{g!r}" for o, w, g in zip(OBSERVATIONS, row[1:], got) if w != g]
            if diffs:
                print(f"{row[0]!r}: {'; '.join(diffs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
