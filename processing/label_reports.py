#!/usr/bin/env python
"""Label the reports of an R2Gen-layout annotation.json with the 14 CheXpert observations (offline, rule-based).

Example:
    python processing/label_reports.py --annotation iu_xray/annotation.json --output iu_xray/labels.csv

Writes a CSV like the CheXpert labeler's: split, id, then one column per observation with
1 (positive), 0 (negative), -1 (uncertain) or empty (blank). ``--summary`` also prints, per observation, how many
reports are positive / negative / uncertain / blank, and the labeling speed.
"""

import argparse
import csv
import math
import sys
import time

import numpy as np

from modeling_rrg_mamba.data import read_annotation
from modeling_rrg_mamba.labeler import OBSERVATIONS, label_reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotation", required=True)
    parser.add_argument("--report-field", default="report")
    parser.add_argument("--output", required=True)
    parser.add_argument("--summary", action="store_true", help="print label counts per observation and speed")
    args = parser.parse_args(argv)
    annotation = read_annotation(args.annotation)
    all_labels, seconds = [], 0.0
    with open(args.output, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["split", "id", *OBSERVATIONS])
        for split, entries in annotation.items():
            reports = [e.get(args.report_field) for e in entries]
            missing = [e.get("id") for e, r in zip(entries, reports) if not isinstance(r, str)]
            if missing:
                raise ValueError(f"{args.annotation}: {split} entry id={missing[0]!r} has no {args.report_field!r}")
            started = time.perf_counter()
            labels = label_reports(reports)
            seconds += time.perf_counter() - started
            all_labels.append(labels)
            for entry, row in zip(entries, labels):
                writer.writerow([split, entry["id"], *("" if math.isnan(v) else int(v) for v in row)])
    if args.summary and all_labels:
        print_summary(np.concatenate(all_labels), seconds)
    return 0


def print_summary(labels, seconds):
    """Per-observation counts of positive / negative / uncertain / blank labels, and reports per second."""
    print(f"{len(labels)} reports labeled in {seconds:.3f} s ({len(labels) / max(seconds, 1e-9):.0f} reports/s)")
    print(f"{'observation':28s} {'pos':>5s} {'neg':>5s} {'unc':>5s} {'blank':>5s}")
    for column, observation in enumerate(OBSERVATIONS):
        values = labels[:, column]
        print(
            f"{observation:28s} {int((values == 1).sum()):5d} {int((values == 0).sum()):5d} "
            f"{int((values == -1).sum()):5d} {int(np.isnan(values).sum()):5d}"
        )


if __name__ == "__main__":
    sys.exit(main())
