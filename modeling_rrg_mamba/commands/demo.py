"""``rrg-mamba demo``: the whole pipeline on the bundled sample films, offline, on CPU, in a few minutes.

1. trains a small RRG-Mamba (ResNet-18-style extractor with one block per stage, random init; one GDLM block; a
   1+1-layer report encoder-decoder) on 26 films for at most ``max_minutes``, choosing the checkpoint on the
   6 validation films' BLEU-4 (training logs go to ``<output_dir>/demo.log`` and TensorBoard, not the console);
2. generates reports for the 8 test films (beam 3) and draws their word-to-image heatmaps;
3. scores them beside two image-blind baselines (the most frequent training report; a random training report
   per film) and per slot of the template (view, diagnosis) against the majority rate, prints that one table and
   writes ``<output_dir>/index.html`` (every test film, its reports and heatmaps, the table).

The bundled text is not radiology reports (see ``demo_data/ATTRIBUTION.md``): each film's "report" is a templated
sentence built from its view and a coarse diagnosis label (COVID-19 pneumonia / other pneumonia / no finding).
The splits keep the films of one case together, and the 8 test films hold two films of each view, so an
image-blind model gets at most a quarter of the views right. The scores show whether the model reads the films,
not clinical quality.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import sys
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import transformers
from transformers import TrainerCallback, set_seed

from ..data import write_jsonl
from ..data.atomic import write_text_whole
from ..metrics import NLGEvaluator, compute_report_metrics
from ..training import DataArguments, ModelArguments, ReportGenerationTrainingArguments, run_training
from .arguments import DemoArguments
from .generate import generate_reports
from .report_page import metrics_table_html, write_report_page

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
#: The template of the demo's text: ``"<view phrase> . <diagnosis phrase> ."`` (see ``demo_data/ATTRIBUTION.md``).
VIEW_PHRASES = {
    "PA": "pa view of the chest",
    "AP": "ap view of the chest",
    "AP Supine": "supine ap view of the chest",
    "L": "lateral view of the chest",
}
DIAGNOSIS_PHRASES = {
    "No Finding": "no acute cardiopulmonary abnormality",
    "COVID-19": "findings consistent with covid-19 pneumonia",
    "other": "findings consistent with pneumonia",
}
SLOTS = ("view", "diagnosis")
TABLE_METRICS = (
    ("BLEU_1", "BLEU-1"),
    ("BLEU_4", "BLEU-4"),
    ("METEOR", "METEOR"),
    ("ROUGE_L", "ROUGE-L"),
    ("CIDEr", "CIDEr"),
)
MODEL_NAME = "RRG-Mamba (reads the films)"
BASELINE_NAMES = ("most frequent report", "random train report")
DEMO_TEXT_NOTICE = (
    "Note: the demo trains on templated sentences built from each film's metadata (view + coarse diagnosis label "
    "of the COVID-19 Image Data Collection), not on radiology reports; the table shows whether the model reads "
    "the films (against image-blind baselines), not clinical quality."
)


def templated_report(view: str, finding: str) -> str:
    """The demo's text for one film: its view and its coarse diagnosis label as two short sentences."""
    if view not in VIEW_PHRASES:
        raise ValueError(f"view: no phrase for view {view!r}; known: {sorted(VIEW_PHRASES)}")
    diagnosis = finding if finding in DIAGNOSIS_PHRASES else "COVID-19" if finding.startswith("COVID-19") else "other"
    return f"{VIEW_PHRASES[view]} . {DIAGNOSIS_PHRASES[diagnosis]} ."


def report_slots(report: str) -> dict[str, str]:
    """The template's slots of a (generated or reference) report: its first and second sentence, normalised."""
    sentences = [" ".join(part.split()) for part in report.lower().split(".")]
    sentences = [sentence for sentence in sentences if sentence]
    return {slot: sentences[i] if i < len(sentences) else "" for i, slot in enumerate(SLOTS)}


def slot_accuracy(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Per slot, the fraction of reports whose slot equals the reference's."""
    pairs = [(report_slots(p), report_slots(r)) for p, r in zip(predictions, references)]
    return {slot: sum(p[slot] == r[slot] for p, r in pairs) / max(1, len(pairs)) for slot in SLOTS}


def majority_rates(train_reports: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Per slot, how often the training set's most frequent value is right on ``references``."""
    rates = {}
    for slot in SLOTS:
        majority = Counter(report_slots(r)[slot] for r in train_reports).most_common(1)[0][0]
        rates[slot] = sum(report_slots(r)[slot] == majority for r in references) / max(1, len(references))
    return rates


def most_frequent_report(train_reports: Sequence[str]) -> str:
    """The training report written most often (ties: the one seen first)."""
    return Counter(train_reports).most_common(1)[0][0]


def random_train_reports(train_reports: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` training reports drawn at random (seeded), one per test film, whatever the film shows."""
    generator = random.Random(seed)
    return [generator.choice(list(train_reports)) for _ in range(count)]


def score_systems(
    systems: Mapping[str, Sequence[str]],
    references: Sequence[str],
    evaluator: NLGEvaluator,
    clinical_efficacy: bool = True,
) -> dict[str, dict[str, float]]:
    """NLG (+ CE) metrics and slot accuracies of every system's reports against ``references``."""
    scores = {}
    for name, predictions in systems.items():
        metrics = compute_report_metrics(
            list(predictions), list(references), ce=clinical_efficacy, evaluator=evaluator
        )
        metrics.update({f"{slot}_correct": value for slot, value in slot_accuracy(predictions, references).items()})
        scores[name] = metrics
    return scores


def comparison_rows(
    scores: Mapping[str, Mapping[str, float]], majority: Mapping[str, float]
) -> tuple[list[str], list[list[str]], list[set[int]]]:
    """(header, rows, best columns per row) of the demo's table: a row per metric and per slot, a column per
    system, and the slots' majority rate."""
    names = list(scores)
    header = ["metric", *names, "majority rate"]
    rows, best = [], []
    keys = [(key, label, False) for key, label in TABLE_METRICS if all(key in s for s in scores.values())]
    keys += [(f"{slot}_correct", f"{slot} correct", True) for slot in SLOTS]
    for key, label, is_slot in keys:
        values = [scores[name][key] for name in names]
        cells = [f"{v:.0%}" if is_slot else f"{v:.3f}" for v in values]
        rows.append([label, *cells, f"{majority[key[:-8]]:.0%}" if is_slot else ""])
        top = max(values)
        best.append({1 + i for i, v in enumerate(values) if v == top})
    return header, rows, best


def format_text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(f"{cell:<{w}}" if i == 0 else f"{cell:>{w}}" for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def demo_arguments(args: DemoArguments) -> tuple[ModelArguments, DataArguments, ReportGenerationTrainingArguments]:
    """The demo's settings: paper optimiser (Adam-AMSGrad, 1e-3 extractor / 2e-3 rest, wd 5e-5), small model,
    128 px films, selection on validation BLEU-4, TensorBoard logs, no console logging."""
    model_args = ModelArguments(
        config_overrides=json.dumps(DEMO_MODEL_CONFIG),
        vocabulary_threshold=1,
        max_length=24,
        image_size=128,
        resize_size=144,
    )
    data_args = DataArguments(
        annotation=str(DEMO_DATA / "annotation.json"), image_root=str(DEMO_DATA / "images"), meteor=args.meteor
    )
    fields = ReportGenerationTrainingArguments.__dataclass_fields__
    extra = {"overwrite_output_dir": True} if "overwrite_output_dir" in fields else {}  # a rerun replaces the last
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
        num_train_epochs=100,  # on a slow or busy machine the time budget ends training first
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
        disable_tqdm=True,
        **extra,
    )
    return model_args, data_args, training_args


class EvaluationEcho(TrainerCallback):
    """One console line per validation run (the full logs go to the log file and TensorBoard)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        bleu = (metrics or {}).get("eval_BLEU_4")
        if bleu is not None:
            print(f"  step {state.global_step:>4}: validation BLEU-4 {bleu:.3f}", file=self.stream, flush=True)


@contextlib.contextmanager
def console_to_log(log_path: Path) -> Iterator[TextIO]:
    """Send stdout, stderr, warnings and transformers' logging to ``log_path``; yields the real console."""
    console = sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", encoding="utf-8") as log:
        handler = logging.StreamHandler(log)
        library_logger = logging.getLogger("transformers")  # its remove_handler asserts wrongly on 4.57
        transformers.utils.logging.disable_default_handler()
        library_logger.addHandler(handler)
        logging.captureWarnings(True)
        logging.getLogger("py.warnings").addHandler(handler)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield console
        finally:
            logging.getLogger("py.warnings").removeHandler(handler)
            logging.captureWarnings(False)
            library_logger.removeHandler(handler)
            transformers.utils.logging.enable_default_handler()


def run_demo(args: DemoArguments) -> dict[str, Any]:
    """Train, generate, score against image-blind baselines, write the page; returns paths and scores."""
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir / "demo.log"
    model_args, data_args, training_args = demo_arguments(args)
    print(DEMO_TEXT_NOTICE, flush=True)
    print(
        f"\nTraining for at most {args.max_minutes:g} min (full log: {log_path}; "
        f"TensorBoard: {Path(training_args.output_dir) / 'runs'}) ...",
        flush=True,
    )
    set_seed(args.seed)
    with console_to_log(log_path) as console:
        trainer = run_training(model_args, data_args, training_args, callbacks=[EvaluationEcho(console)])
        print(f"Generating the {len(trainer.test_dataset)} test reports and heatmaps ...", file=console, flush=True)
        test = trainer.test_dataset
        studies = [[Path(p) for p in images] for images in test["images"]]
        records = generate_reports(
            trainer.model,
            trainer.processing_class,
            studies,
            batch_size=8,
            heatmap_dir=output_dir / "heatmaps",
            num_beams=3,
            max_new_tokens=24,
        )
        references = list(test["report"])
        train_reports = list(trainer.train_dataset["report"])
        systems = {
            MODEL_NAME: [r["prediction"] for r in records],
            BASELINE_NAMES[0]: [most_frequent_report(train_reports)] * len(references),
            BASELINE_NAMES[1]: random_train_reports(train_reports, len(references), args.seed),
        }
        with NLGEvaluator(clean_style=model_args.report_style, meteor=args.meteor) as evaluator:
            scores = score_systems(systems, references, evaluator)
    majority = majority_rates(train_reports, references)
    for record, reference in zip(records, references):
        predicted, wanted = report_slots(record["prediction"]), report_slots(reference)
        record["reference"] = reference
        record["slots_correct"] = {slot: predicted[slot] == wanted[slot] for slot in SLOTS}
    reports_path = output_dir / "test_reports.jsonl"
    write_jsonl(reports_path, records)
    metrics_path = output_dir / "test_metrics.json"
    write_text_whole(
        metrics_path,
        json.dumps({"systems": scores, "majority_rate": majority, "num_test_films": len(records)}, indent=1) + "\n",
    )
    header, rows, best = comparison_rows(scores, majority)
    page = write_report_page(
        output_dir,
        records,
        metrics_table_html(header, rows, best),
        title=f"rrg-mamba demo: {len(records)} test films",
        notes=[DEMO_TEXT_NOTICE, TABLE_NOTE],
    )
    summary = {
        "model": training_args.output_dir,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        "steps": trainer.state.global_step,
        "log": str(log_path),
        "tensorboard_logs": str(Path(training_args.output_dir) / "runs"),
        "reports": str(reports_path),
        "metrics": str(metrics_path),
        "page": str(page),
        "heatmaps": [r["heatmap"] for r in records],
        "test_metrics": scores,
        "majority_rate": majority,
    }
    print(f"\nTest films: {len(records)} ({summary['steps']} training steps)\n" + format_text_table(header, rows))
    print("\n" + TABLE_NOTE)
    print(f"\nOpen {page} for every test film with its reports and heatmaps.")
    print(f"Model: {summary['model']}   Log: {log_path}")
    return summary


TABLE_NOTE = (
    "Image-blind baselines: 'most frequent report' writes the training set's most common report for every film; "
    "'random train report' writes a random training report. 'view / diagnosis correct': the sentence of that slot "
    "equals the reference's; 'majority rate': how often the training set's most common value of the slot is "
    "right on the test films."
)

__all__ = [
    "DEMO_DATA",
    "DEMO_MODEL_CONFIG",
    "DIAGNOSIS_PHRASES",
    "VIEW_PHRASES",
    "comparison_rows",
    "demo_arguments",
    "majority_rates",
    "most_frequent_report",
    "random_train_reports",
    "report_slots",
    "run_demo",
    "score_systems",
    "slot_accuracy",
    "templated_report",
]
