#!/usr/bin/env python
"""Build an R2Gen-layout annotation.json for IU X-Ray from the Open-i XML reports and PNG images.

Example:
    python processing/build_iu_xray.py --reports ecgen-radiology --images NLMCXR_png \
        --projections projections.csv --output iu_xray/annotation.json

FINDINGS is the report; studies without findings or with fewer than --min-images images are dropped.
Splits: --reference-annotation (e.g. R2Gen's annotation.json, matched by study id) or a seeded 7:1:2 split.
"""

import argparse
import logging
import sys

from modeling_rrg_mamba.data import (
    build_dataset_dict,
    iu_xray_annotation,
    read_annotation,
    read_projections,
    write_annotation,
)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", required=True, help="folder of Open-i XML reports (ecgen-radiology)")
    parser.add_argument("--images", help="image folder; if given, every referenced image must exist in it")
    parser.add_argument("--output", required=True, help="annotation.json to write")
    parser.add_argument("--projections", help="CSV with columns image,projection (frontal/lateral) per image id")
    parser.add_argument("--image-suffix", default=".png")
    parser.add_argument("--min-images", type=int, default=2)
    parser.add_argument("--max-images", type=int, default=2)
    parser.add_argument("--ratios", type=float, nargs=3, default=(0.7, 0.1, 0.2), metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reference-annotation", help="take each study's split from this R2Gen annotation.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    reference = None
    if args.reference_annotation:
        reference = {
            str(e["id"]): split
            for split, entries in read_annotation(args.reference_annotation).items()
            for e in entries
        }
    annotation = iu_xray_annotation(
        args.reports,
        image_suffix=args.image_suffix,
        projections=read_projections(args.projections) if args.projections else None,
        min_images=args.min_images,
        max_images=args.max_images,
        ratios=tuple(args.ratios),
        seed=args.seed,
        reference_splits=reference,
    )
    if args.images:
        build_dataset_dict(annotation, image_root=args.images, source=args.output)  # raises on missing images
    write_annotation(annotation, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
