#!/usr/bin/env python
"""Build an R2Gen-layout annotation.json from the CheXpert Plus CSV (df_chexpert_plus_240401.csv).

Example:
    python processing/build_chexpert_plus.py --csv df_chexpert_plus_240401.csv --frontal-only \
        --output chexpert_plus/annotation.json

The report is the findings section by default (--sections picks others, joined in order); rows whose
sections are all empty are dropped with a warning.
"""

import argparse
import logging
import sys

from modeling_rrg_mamba.data import chexpert_plus_annotation, write_annotation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", required=True)
    parser.add_argument("--sections", nargs="+", default=["section_findings"])
    parser.add_argument("--frontal-only", action="store_true")
    parser.add_argument("--split-column", default="split")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    annotation = chexpert_plus_annotation(
        args.csv, sections=args.sections, frontal_only=args.frontal_only, split_column=args.split_column
    )
    for split, entries in annotation.items():
        empty = [e["id"] for e in entries if not e["report"]]
        if empty:
            logging.warning(
                "%s: dropped %d rows with empty %s (first: %s)", split, len(empty), args.sections, empty[0]
            )
        annotation[split] = [e for e in entries if e["report"]]
    write_annotation(annotation, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
