#!/usr/bin/env python
"""Score generated reports: a JSONL of {"prediction", "reference"} lines -> a metrics JSON.

Example:
    python processing/score_predictions.py predictions.jsonl --output metrics.json --clean-style iu_xray

NLG: BLEU-1..4, METEOR, ROUGE-L, CIDEr (pycocoevalcap, R2Gen-cleaned text). CE: precision / recall / F1
(micro, macro, example-based; 14 and 5 observations) from the offline CheXpert-style labeler.
"""

import argparse
import json
import sys

from modeling_rrg_mamba.metrics import score_prediction_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("predictions", help="JSONL file, one object per line")
    parser.add_argument("--output", required=True, help="metrics JSON to write")
    parser.add_argument("--prediction-key", default="prediction")
    parser.add_argument("--reference-key", default="reference")
    parser.add_argument("--clean-style", default="iu_xray", choices=["iu_xray", "mimic_cxr", "none"])
    parser.add_argument("--no-ce", action="store_true", help="skip the clinical-efficacy metrics")
    parser.add_argument(
        "--uncertain",
        default="negative",
        choices=["negative", "positive"],
        help="uncertain CheXpert labels count as this in CE (default negative)",
    )
    args = parser.parse_args(argv)
    result = score_prediction_file(
        args.predictions,
        args.output,
        prediction_key=args.prediction_key,
        reference_key=args.reference_key,
        clean_style=None if args.clean_style == "none" else args.clean_style,
        ce=not args.no_ce,
        uncertain=args.uncertain,
    )
    print(json.dumps(result["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
