#!/usr/bin/env python
"""Build an R2Gen-layout annotation.json for MIMIC-CXR(-JPG): one entry per image, FINDINGS as report.

Example:
    python processing/build_mimic_cxr.py --split-csv mimic-cxr-2.0.0-split.csv \
        --reports mimic-cxr-reports/files --metadata-csv mimic-cxr-2.0.0-metadata.csv \
        --output mimic_cxr/annotation.json

Images whose study report has no FINDINGS section are dropped (counted in the log), as in R2Gen.
"""

import argparse
import logging
import sys

from modeling_rrg_mamba.data import mimic_cxr_annotation, write_annotation


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split-csv", required=True, help="mimic-cxr-2.0.0-split.csv")
    parser.add_argument("--reports", required=True, help="report root holding p10/p10000032/s50414267.txt")
    parser.add_argument("--metadata-csv", help="mimic-cxr-2.0.0-metadata.csv (adds the view column)")
    parser.add_argument("--section", default="FINDINGS", help="report section to keep (default FINDINGS)")
    parser.add_argument("--image-suffix", default=".jpg")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    annotation = mimic_cxr_annotation(
        args.split_csv,
        args.reports,
        metadata_csv=args.metadata_csv,
        section=args.section,
        image_suffix=args.image_suffix,
    )
    write_annotation(annotation, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
