"""Score text-only baselines on an R2Gen-style annotation: the floor an image-conditioned model has to beat.

    python examples/score_text_only_baselines.py --annotation iu_xray/annotation.json --split test \
        --output baselines.json

Two baselines, both blind to the images, scored with the package's metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr on
R2Gen-cleaned text; CheXpert-style CE from the rule-based labeler):

* ``most_frequent_report``: every study gets the training split's most frequent (cleaned) report, the "normal
  study" template that dominates IU X-Ray;
* ``random_training_report``: every study gets a training report drawn at random (seeded), which keeps the training
  reports' distribution but carries no information about the study.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from modeling_rrg_mamba.metrics import NLGEvaluator, compute_report_metrics
from modeling_rrg_mamba.report_text import clean_report

SHOWN = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "ce_14_micro_f1")


def baseline_predictions(train_reports: list[str], count: int, clean_style: str, seed: int) -> dict[str, list[str]]:
    """``count`` predictions per baseline, built from the training reports only."""
    if not train_reports:
        raise ValueError("train split: no reports to build the baselines from")
    most_frequent, _ = Counter(clean_report(r, clean_style) for r in train_reports).most_common(1)[0]
    drawn = random.Random(seed).choices(train_reports, k=count)
    return {"most_frequent_report": [most_frequent] * count, "random_training_report": drawn}


def read_split(annotation: dict, split: str, path: Path) -> list[str]:
    if split not in annotation:
        raise ValueError(f"{path}: no split {split!r} (has {sorted(annotation)})")
    return [entry["report"] for entry in annotation[split]]


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotation", type=Path, required=True, help="R2Gen-style annotation.json")
    parser.add_argument("--split", default="test", help="split to score (IU X-Ray text in ../shared has train/val)")
    parser.add_argument("--clean_style", default="iu_xray", choices=["iu_xray", "mimic_cxr"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the scores as JSON here")
    args = parser.parse_args(argv)

    annotation = json.loads(args.annotation.read_text(encoding="utf-8"))
    references = read_split(annotation, args.split, args.annotation)
    predictions = baseline_predictions(
        read_split(annotation, "train", args.annotation), len(references), args.clean_style, args.seed
    )
    with NLGEvaluator(clean_style=args.clean_style) as evaluator:
        scores = {
            name: compute_report_metrics(texts, references, evaluator=evaluator) for name, texts in predictions.items()
        }
    print(f"{args.annotation} [{args.split}]: {len(references)} studies")
    print(" | ".join(["baseline", *SHOWN]))
    for name, values in scores.items():
        print(" | ".join([name, *(f"{values[key]:.3f}" for key in SHOWN)]))
    if args.output:
        args.output.write_text(
            json.dumps({"split": args.split, "num_studies": len(references), "scores": scores}, indent=2)
        )
    return scores


if __name__ == "__main__":
    main()
