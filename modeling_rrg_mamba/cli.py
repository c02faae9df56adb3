"""The ``rrg-mamba`` command: ``train``, ``evaluate``, ``generate`` and ``demo``.

Every command parses its arguments with `transformers.HfArgumentParser` (``rrg-mamba <command> --help`` lists
them). ``train`` accepts every `Seq2SeqTrainingArguments` flag and a ``--recipe`` (JSON/YAML in ``configuration/``)
whose values the command line overrides; it runs unchanged under ``torchrun`` / ``accelerate launch``.

Examples::

    rrg-mamba train --recipe configuration/rrg_mamba_iu_xray.yaml --annotation iu_xray/annotation.json \
        --image_root iu_xray/images --output_dir runs/iu
    rrg-mamba train --recipe rrg_mamba_iu_xray ... --resume_from_checkpoint runs/iu/checkpoint-500
    rrg-mamba generate --model runs/iu --images scans/ film.dcm --output reports.jsonl --heatmaps heatmaps/
    rrg-mamba evaluate --predictions runs/iu/test_predictions.jsonl
    rrg-mamba demo
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

from transformers import HfArgumentParser

COMMANDS_HELP = {
    "train": "train a model (Seq2SeqTrainer; recipes in configuration/)",
    "evaluate": "score predictions vs references (JSONL) with the NLG + CE metrics",
    "generate": "images (files, folders, DICOM) -> reports as JSONL, with optional heatmaps",
    "demo": "train, evaluate and generate on the bundled sample films (offline, CPU, a few minutes)",
}


def train(argv: Sequence[str]) -> None:
    from .training import DataArguments, ModelArguments, ReportGenerationTrainingArguments, parse_with_recipe, run_training

    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments), prog="rrg-mamba train")
    parser.add_argument("--recipe", help="JSON/YAML recipe file (or its name in configuration/); flags override it")
    model_args, data_args, training_args = parse_with_recipe(parser, argv)
    run_training(model_args, data_args, training_args)


def evaluate(argv: Sequence[str]) -> None:
    from .commands.arguments import EvaluateArguments
    from .commands.evaluate import format_metrics_table, score_predictions

    (args,) = HfArgumentParser(EvaluateArguments, prog="rrg-mamba evaluate").parse_args_into_dataclasses(args=list(argv))
    result = score_predictions(args.predictions, args.output, clean_style=args.clean_style,
                               clinical_efficacy=args.clinical_efficacy, meteor=args.meteor,
                               prediction_key=args.prediction_key, reference_key=args.reference_key)
    print(format_metrics_table(result["metrics"]))
    print(f"{result['num_pairs']} pairs scored; metrics written to {result['output']}")


def load_processor(model_dir: str):
    """The processor saved with an RRG-Mamba or EMRRG model (only that model's package is imported)."""
    import json

    config_file = Path(model_dir) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"--model: no saved model directory {model_dir} (config.json missing)")
    model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    if model_type == "rrg_mamba":
        from .rrg_mamba import RRGMambaProcessor as processor_class
    elif model_type == "emrrg":
        from .emrrg import EMRRGProcessor as processor_class
    else:
        raise ValueError(f"{config_file}: model_type {model_type!r} is not 'rrg_mamba' or 'emrrg'")
    return processor_class.from_pretrained(model_dir)


def generate(argv: Sequence[str]) -> None:
    from transformers import AutoModelForImageTextToText

    from .commands.arguments import GenerateArguments
    from .commands.generate import collect_images, generate_reports, group_studies
    from .data import write_jsonl

    (args,) = HfArgumentParser(GenerateArguments, prog="rrg-mamba generate").parse_args_into_dataclasses(args=list(argv))
    processor = load_processor(args.model)  # registers the model type with the Auto classes
    model = AutoModelForImageTextToText.from_pretrained(args.model).to(args.device)
    studies = group_studies(collect_images(args.images), args.views_per_study)
    records = generate_reports(model, processor, studies, batch_size=args.batch_size, heatmap_dir=args.heatmaps,
                               heatmap_words=args.heatmap_words, num_beams=args.num_beams,
                               max_new_tokens=args.max_new_tokens)
    write_jsonl(args.output, records)
    print(f"{len(records)} reports written to {args.output}" + (f"; heatmaps in {args.heatmaps}" if args.heatmaps else ""))


def demo(argv: Sequence[str]) -> None:
    from .commands.arguments import DemoArguments
    from .commands.demo import run_demo

    (args,) = HfArgumentParser(DemoArguments, prog="rrg-mamba demo").parse_args_into_dataclasses(args=list(argv))
    run_demo(args)


COMMANDS: dict[str, Callable[[Sequence[str]], None]] = {"train": train, "evaluate": evaluate, "generate": generate, "demo": demo}


def usage() -> str:
    lines = ["usage: rrg-mamba {" + ",".join(COMMANDS) + "} [--help] [arguments]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS_HELP.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rrg-mamba: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    COMMANDS[command](rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
