"""``rrg-mamba demo``: the whole pipeline on the bundled sample films, offline, on CPU, in a few minutes.

1. trains a small RRG-Mamba (ResNet-18-style extractor with one block per stage, random init; one GDLM block; a
   1+1-layer report encoder-decoder) on 28 films for at most ``max_minutes`` (3) or 400 steps, choosing the
   checkpoint on the 6 validation films' BLEU-4;
2. generates reports for the 6 test films (beam 3) and draws their word-to-image heatmaps;
3. scores the test reports (NLG + CE) and prints where everything is.

The bundled text is not radiology reports (see ``demo_data/ATTRIBUTION.md``): each film's "report" is a templated
sentence built from its view and diagnosis label. The scores show the pipeline working end to end, not clinical
quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..data import write_jsonl
from ..training import DataArguments, ModelArguments, ReportGenerationTrainingArguments, run_training
from .arguments import DemoArguments
from .evaluate import format_metrics_table, score_predictions
from .generate import generate_reports

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo_data"
DEMO_MODEL_CONFIG: dict[str, Any] = {
    "visual_extractor": "resnet18",
    "backbone_kwargs": {"layers": [1, 1, 1, 1]},
    "gdlm_preset": None,
    "gdlm_dim": 128,
    "gdlm_depth": 1,
    "d_model": 128,
    "d_ff": 256,
    "num_attention_heads": 4,
    "encoder_layers": 1,
    "decoder_layers": 1,
}
DEMO_TEXT_NOTICE = (
    "Note: the demo trains on templated sentences built from each film's metadata (view + diagnosis label of the "
    "COVID-19 Image Data Collection), not on radiology reports; the scores show that training, generation and "
    "evaluation work, not clinical quality."
)


def demo_arguments(args: DemoArguments) -> tuple[ModelArguments, DataArguments, ReportGenerationTrainingArguments]:
    """The demo's settings: paper optimiser (Adam-AMSGrad, 1e-3 extractor / 2e-3 rest, wd 5e-5), small model,
    128 px films, selection on validation BLEU-4, TensorBoard logs."""
    model_args = ModelArguments(config_overrides=json.dumps(DEMO_MODEL_CONFIG), vocabulary_threshold=1,
                                max_length=24, image_size=128, resize_size=144)
    data_args = DataArguments(annotation=str(DEMO_DATA / "annotation.json"), image_root=str(DEMO_DATA / "images"),
                              meteor=args.meteor)
    training_args = ReportGenerationTrainingArguments(
        output_dir=str(Path(args.output_dir) / "model"),
        use_cpu=True,
        seed=args.seed,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=2e-3,
        visual_extractor_learning_rate=1e-3,
        weight_decay=5e-5,
        amsgrad=True,
        lr_scheduler_type="constant",
        num_train_epochs=100,  # 400 steps at most; on a slow or busy machine the time budget ends training first
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="steps",
        save_steps=20,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="BLEU_4",
        greater_is_better=True,
        logging_steps=5,
        report_to=["tensorboard"],
        generation_max_length=24,
        generation_num_beams=3,
        dataloader_num_workers=0,
    )
    return model_args, data_args, training_args


def run_demo(args: DemoArguments) -> dict[str, Any]:
    """Train, generate, score; returns the paths written and the test metrics."""
    output_dir = Path(args.output_dir)
    print(DEMO_TEXT_NOTICE, flush=True)
    set_seed(args.seed)
    model_args, data_args, training_args = demo_arguments(args)
    trainer = run_training(model_args, data_args, training_args)
    test = trainer.test_dataset
    studies = [[Path(p) for p in images] for images in test["images"]]
    heatmap_dir = output_dir / "heatmaps"
    records = generate_reports(trainer.model, trainer.processing_class, studies, batch_size=8, heatmap_dir=heatmap_dir,
                               num_beams=3, max_new_tokens=24)
    for record, reference in zip(records, test["report"]):
        record["reference"] = reference
    reports_path = output_dir / "test_reports.jsonl"
    write_jsonl(reports_path, records)
    scores = score_predictions(reports_path, output_dir / "test_metrics.json", clean_style=model_args.report_style,
                               meteor=args.meteor)
    summary = {
        "model": training_args.output_dir,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "tensorboard_logs": str(Path(training_args.output_dir) / "runs"),
        "reports": str(reports_path),
        "metrics": scores["output"],
        "heatmaps": sorted(str(p) for p in heatmap_dir.glob("*.png")),
        "test_metrics": scores["metrics"],
    }
    print_summary(summary, records)
    return summary


def print_summary(summary: dict[str, Any], records: list[dict[str, Any]]) -> None:
    print(f"\nTest-set metrics ({len(records)} films):\n" + format_metrics_table(summary["test_metrics"]))
    print("\nSample reports:")
    for record in records[:3]:
        print(f"  {record['id']}\n    generated: {record['prediction']}\n    reference: {record['reference']}")
    print("\nWhere everything is:")
    for key in ("model", "best_checkpoint", "tensorboard_logs", "reports", "metrics"):
        print(f"  {key:<17} {summary[key]}")
    print(f"  {'heatmaps':<17} " + "\n                    ".join(summary["heatmaps"]))
    print("\n" + DEMO_TEXT_NOTICE)


__all__ = ["DEMO_DATA", "DEMO_MODEL_CONFIG", "demo_arguments", "run_demo"]
