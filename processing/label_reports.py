#!/usr/bin/env python
"""Label the reports of an R2Gen-layout annotation.json with the 14 CheXpert observations (offline, rule-based).

Example:
    python processing/label_reports.py --annotation iu_xray/annotation.json --output iu_xray/labels.csv

Writes a CSV like the CheXpert labeler's: split, id, then one column per observation with
1 (positive), 0 (negative), -1 (uncertain) or empty (blank).
"""

import argparse
import csv
import math
import sys

from modeling_rrg_mamba.data import read_annotation
from modeling_rrg_mamba.labeler import OBSERVATIONS, label_reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotation", required=True)
    parser.add_argument("--report-field", default="report")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    annotation = read_annotation(args.annotation)
    with open(args.output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "id", *OBSERVATIONS])
        for split, entries in annotation.items():
            reports = [e.get(args.report_field) for e in entries]
            missing = [e.get("id") for e, r in zip(entries, reports) if not isinstance(r, str)]
            if missing:
                raise ValueError(f"{args.annotation}: {split} entry id={missing[0]!r} has no {args.report_field!r}")
            for entry, row in zip(entries, label_reports(reports)):
                writer.writerow([split, entry["id"], *("" if math.isnan(v) else int(v) for v in row)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
