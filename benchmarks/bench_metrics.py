#!/usr/bin/env python
"""Time all report metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, CE) on 1,000 IU X-Ray report pairs.

    python benchmarks/bench_metrics.py [--annotation /path/to/iu-xray-reports/annotation.json] [--pairs 1000]

Prints the time with a warm METEOR JVM, and, as a same-process reference, pycocoevalcap's own wrappers
(its Meteor answers one request per round trip) on the same cleaned pairs.
"""

import argparse
import json
import random
import time

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from modeling_rrg_mamba.metrics import NLGEvaluator, compute_report_metrics, prepare_pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotation", default="/work/shared/data/iu-xray-reports/annotation.json")
    parser.add_argument("--pairs", type=int, default=1000)
    args = parser.parse_args()
    with open(args.annotation, encoding="utf-8") as handle:
        annotation = json.load(handle)
    reports = [e["report"] for split in annotation.values() for e in split]
    rng = random.Random(0)
    references = reports[: args.pairs]
    predictions = [rng.choice(reports) for _ in references]

    with NLGEvaluator(clean_style="iu_xray") as evaluator:
        start = time.perf_counter()
        evaluator.compute(predictions[:20], references[:20])
        print(f"METEOR JVM start + warm-up: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        scores = compute_report_metrics(predictions, references, evaluator=evaluator)
        ours = time.perf_counter() - start
    print(f"{len(references)} pairs, all metrics (NLG + CE), warm JVM: {ours:.2f} s")
    print({k: round(v, 4) for k, v in scores.items() if not k.startswith("ce_") or k.endswith("micro_f1")})

    gts, res = prepare_pairs(predictions, references)
    meteor = Meteor()
    meteor.compute_score({0: gts[0]}, {0: res[0]})
    start = time.perf_counter()
    Bleu(4).compute_score(gts, res, verbose=0)
    meteor.compute_score(gts, res)
    Rouge().compute_score(gts, res)
    Cider().compute_score(gts, res)
    reference = time.perf_counter() - start
    print(
        f"pycocoevalcap wrappers, NLG only, warm JVM: {reference:.2f} s  (ours / reference = {ours / reference:.2f})"
    )


if __name__ == "__main__":
    main()
