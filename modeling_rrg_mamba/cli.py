"""The ``rrg-mamba`` command: ``train``, ``evaluate``, ``generate``, ``verify``, ``demo`` and ``convert``.

Every command parses its arguments with `transformers.HfArgumentParser` (``rrg-mamba <command> --help`` lists
them). ``train`` accepts every `Seq2SeqTrainingArguments` flag and a ``--recipe`` (JSON/YAML in ``configuration/``)
whose values the command line overrides; it runs unchanged under ``torchrun`` / ``accelerate launch``.

Examples::

    rrg-mamba verify --annotation iu_xray/annotation.json --image_root iu_xray/images
    rrg-mamba train --recipe configuration/rrg_mamba_iu_xray.yaml --annotation iu_xray/annotation.json \\
        --image_root iu_xray/images --output_dir runs/iu
    rrg-mamba train --recipe rrg_mamba_iu_xray ... --resume_from_checkpoint last
    rrg-mamba generate --model runs/iu --images scans/ film.dcm --output reports.jsonl --heatmaps heatmaps/
    rrg-mamba generate --model runs/iu --annotation ann.json --image_root images --split test --output test.jsonl
    rrg-mamba evaluate --predictions test.jsonl
    rrg-mamba demo
    rrg-mamba convert --checkpoint EMRRG-CXP.pth --output_dir emrrg-cxp --allow_pickle

Errors. A problem with the user's input -- any ``ValueError`` (which covers ``UnicodeDecodeError``, JSON errors and
the package's own validation errors such as ``BadEntry``) or ``OSError`` (missing files, permissions, a full disk)
-- is printed as one line, ``rrg-mamba: error: <message>``, with exit code 2: the package's messages name the file,
line or flag and say what to do. Any other exception (``TypeError``, ``AttributeError``, ``KeyError``,
``RuntimeError``, ...) is a bug and keeps its traceback. ``--debug`` (anywhere on the command line, without a value)
or ``RRG_MAMBA_DEBUG=1`` shows the traceback of user errors too.

Only the command that runs imports torch / transformers: ``rrg-mamba <command> --help`` is built from the argument
dataclasses without them (``train --help`` reads its own arguments from the source of ``training/arguments.py`` and
points to ``train --help-all``, which lists every TrainingArguments flag and does load transformers).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

COMMANDS_HELP = {
    "train": "train a model (Seq2SeqTrainer; recipes in configuration/)",
    "evaluate": "score predictions vs references (JSONL) with the NLG + CE metrics",
    "generate": "images (files, folders, DICOM) or an annotation split -> reports as JSONL, with optional heatmaps",
    "verify": "decode every image of an annotation and list every bad file before training",
    "demo": "train, evaluate and generate on the bundled sample films (offline, CPU, a few minutes)",
    "convert": "an EMRRG authors' checkpoint (EMRRG-CXP.pth, MambaXrayCLIP-B.pth) -> a model folder",
}
DEBUG_ENV = "RRG_MAMBA_DEBUG"


def parse(dataclass_type: type, argv: Sequence[str], prog: str) -> Any:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(dataclass_type, prog=prog).parse_args_into_dataclasses(args=list(argv))
    return args


def train(argv: Sequence[str]) -> None:
    from transformers import HfArgumentParser

    from .training import (
        DataArguments,
        ModelArguments,
        ReportGenerationTrainingArguments,
        parse_with_recipe,
        run_training,
    )

    parser = HfArgumentParser(
        (ModelArguments, DataArguments, ReportGenerationTrainingArguments), prog="rrg-mamba train"
    )
    parser.add_argument("--recipe", help="JSON/YAML recipe file (or its name in configuration/); flags override it")
    try:
        model_args, data_args, training_args = parse_with_recipe(parser, argv)
    except FileExistsError as error:  # transformers 4.57 creates output_dir while parsing
        raise ValueError(
            f"--output_dir: {error.filename} is a file, not a folder; choose another output_dir"
        ) from error
    run_training(model_args, data_args, training_args)


def evaluate(argv: Sequence[str]) -> None:
    from .commands.arguments import EvaluateArguments

    args = parse(EvaluateArguments, argv, "rrg-mamba evaluate")
    from .commands.evaluate import format_metrics_table, score_predictions

    result = score_predictions(
        args.predictions,
        args.output,
        clean_style=args.clean_style,
        clinical_efficacy=args.clinical_efficacy,
        meteor=args.meteor,
        prediction_key=args.prediction_key,
        reference_key=args.reference_key,
        empty_text=args.empty_text,
        chexbert=args.chexbert,
        chexbert_tokenizer=args.chexbert_tokenizer,
    )
    print(format_metrics_table(result["metrics"]))
    empty = len(set(result["empty_predictions"]) | set(result["empty_references"]))
    print(
        f"{result['num_pairs']} pairs scored"
        + (f" ({empty} with an empty text, scored 0)" if empty else "")
        + f"; metrics written to {result['output']}"
    )


def load_processor(model_dir: str) -> Any:
    """The processor saved with an RRG-Mamba or EMRRG model (only that model's package is imported)."""
    from .data.model_folders import saved_model_type

    if saved_model_type(model_dir, "--model") == "rrg_mamba":
        from .rrg_mamba import RRGMambaProcessor as processor_class
    else:
        from .emrrg import EMRRGProcessor as processor_class
    tokenizer_files = ("tokenizer.json", "tokenizer_config.json")
    if not any((Path(model_dir) / name).is_file() for name in tokenizer_files):
        raise FileNotFoundError(
            f"--model: {model_dir} has no tokenizer ({' and '.join(tokenizer_files)} missing); save the processor "
            "with the model (processor.save_pretrained(folder))"
        )
    return processor_class.from_pretrained(model_dir)


def generate(argv: Sequence[str]) -> None:
    from .commands.arguments import GenerateArguments

    args = parse(GenerateArguments, argv, "rrg-mamba generate")
    from .commands import generate as command
    from .data import JsonlWriter, check_output_dir, check_output_file
    from .data.atomic import nothing_left_on_failure
    from .data.model_folders import saved_model_type
    from .data.outputs import model_fingerprint

    inputs = [args.model, args.annotation, args.image_root, *(args.images or ())]
    output = check_output_file(args.output, "--output", inputs)  # every output checked before any work
    if args.heatmaps:
        check_output_dir(args.heatmaps, "--heatmaps", inputs)
    saved_model_type(args.model, "--model")  # a folder of another kind: one line before anything loads
    skipped: list[dict[str, Any]] = []
    if args.annotation is not None:
        studies, metadata = command.annotation_studies(
            args.annotation, args.image_root, args.split, args.on_bad_image, skipped
        )
    else:
        ignored: list[Path] = []
        images = command.collect_images(args.images, ignored)
        studies, metadata = command.group_studies(images, args.views_per_study), None
        report_ignored(ignored)
    producer = {
        "model": str(Path(args.model).resolve()),
        "weights": model_fingerprint(args.model),
        "num_beams": args.num_beams,
        "max_new_tokens": args.max_new_tokens,
    }  # in every record: which model and decoding settings wrote it (None = the model's generation_config)
    todo, done = command.pending_studies(output, studies, metadata, args.resume, args.overwrite, producer)
    heatmap_start = command.first_heatmap_number(args.heatmaps, args.resume) if args.heatmaps else 0
    with nothing_left_on_failure([output, args.heatmaps]):  # a failed run leaves no empty file or folder
        processor = load_processor(args.model)  # registers the model type with the Auto classes
        model = command.load_checked_model(args.model).to(args.device)
        if done:
            print(f"{output}: {done} studies already written, {len(todo)} to go")
        # resume appends (never drops earlier records); --overwrite replaces the file whole at the end
        writer = JsonlWriter(output, append=args.resume and not args.overwrite, replace=args.overwrite)
        try:
            with writer as write:
                command.generate_reports(
                    model,
                    processor,
                    [studies[i] for i in todo],
                    batch_size=args.batch_size,
                    heatmap_dir=args.heatmaps,
                    heatmap_words=args.heatmap_words,
                    metadata=[metadata[i] for i in todo] if metadata else None,
                    on_record=lambda record: write({**record, "producer": producer}),
                    on_bad_image=args.on_bad_image,
                    skipped=skipped,
                    heatmap_start=heatmap_start,
                    **{
                        name: getattr(args, name)
                        for name in ("num_beams", "max_new_tokens")
                        if getattr(args, name) is not None
                    },
                )
        except (OSError, ValueError) as error:
            kind = OSError if isinstance(error, OSError) else ValueError
            kept = f"{output} left as it was" if args.overwrite and not writer.count else None
            raise kind(
                f"{error} ({kept or f'{writer.count + done} reports kept in {output}'}; fix the problem and re-run "
                "with --resume, or pass --on_bad_image skip)"
            ) from error
    print(
        f"{writer.count} reports written to {output}"
        + (f" ({done} were there already)" if done else "")
        + (f"; heatmaps in {args.heatmaps}" if args.heatmaps else "")
    )
    report_skipped(skipped)


def report_ignored(ignored: Sequence[Path]) -> None:
    """Every file the command saw is accounted for: those of the --images folders that are not images are named."""
    if ignored:
        shown = ", ".join(map(str, ignored[:5])) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        print(
            f"{len(ignored)} files in the --images folders are not images and were not read: {shown}", file=sys.stderr
        )


def report_skipped(skipped: Sequence[dict[str, Any]]) -> None:
    if skipped:
        print(f"{len(skipped)} studies skipped (missing or unreadable images):", file=sys.stderr)
        for item in skipped:
            print(f"  {item['reason']}", file=sys.stderr)


def verify(argv: Sequence[str]) -> int:
    from .commands.arguments import VerifyArguments

    args = parse(VerifyArguments, argv, "rrg-mamba verify")
    from .commands.verify import verify_annotation

    problems = verify_annotation(args.annotation, args.image_root, args.allow_split_overlap)
    for problem in problems:
        print(problem)
    print(f"{args.annotation}: " + (f"{len(problems)} problem(s)" if problems else "every entry and image is usable"))
    return 1 if problems else 0


def demo(argv: Sequence[str]) -> None:
    from .commands.arguments import DemoArguments

    args = parse(DemoArguments, argv, "rrg-mamba demo")
    from .commands.demo import run_demo

    run_demo(args)


def convert(argv: Sequence[str]) -> None:
    from .commands.arguments import ConvertArguments

    args = parse(ConvertArguments, argv, "rrg-mamba convert")
    from .commands.convert import run_convert

    print(run_convert(args))


COMMANDS: dict[str, Callable[[Sequence[str]], int | None]] = {
    "train": train,
    "evaluate": evaluate,
    "generate": generate,
    "verify": verify,
    "demo": demo,
    "convert": convert,
}
LIGHT_HELP = {
    "evaluate": "EvaluateArguments",
    "generate": "GenerateArguments",
    "verify": "VerifyArguments",
    "demo": "DemoArguments",
    "convert": "ConvertArguments",
}


def usage() -> str:
    lines = ["usage: rrg-mamba [--debug] {" + ",".join(COMMANDS) + "} [--help] [arguments]", "", "commands:"]
    lines += [f"  {name:<9} {text}" for name, text in COMMANDS_HELP.items()]
    lines += ["", f"--debug (or {DEBUG_ENV}=1): show the traceback of errors in the input too"]
    return "\n".join(lines)


def light_help(command: str) -> str:
    """``--help`` built from the argument dataclass with argparse alone (no torch / transformers import)."""
    import argparse
    import dataclasses

    from .commands import arguments

    dataclass_type = getattr(arguments, LIGHT_HELP[command])
    parser = argparse.ArgumentParser(prog=f"rrg-mamba {command}", description=dataclass_type.__doc__)
    for item in dataclasses.fields(dataclass_type):
        default = None if item.default is dataclasses.MISSING else item.default
        text = item.metadata.get("help", "")
        text += "" if item.metadata.get("required") or default is None else f" (default: {default})"
        parser.add_argument(
            f"--{item.name}",
            metavar=item.name.upper(),
            help=text,
            required=bool(item.metadata.get("required")),
            nargs=item.metadata.get("nargs"),
        )
    return parser.format_help()


TRAIN_ARGUMENT_CLASSES = ("ModelArguments", "DataArguments", "ReportGenerationTrainingArguments")


def _literal(node: Any) -> Any:
    import ast

    try:
        return ast.literal_eval(node)
    except ValueError:  # an f-string or a name: not shown
        return None


def _help_text(metadata: Any) -> str:
    """The ``"help"`` entry of a ``metadata={...}`` node; an f-string shows its placeholders as written."""
    import ast

    if not isinstance(metadata, ast.Dict):
        return ""
    for key, value in zip(metadata.keys, metadata.values):
        if isinstance(key, ast.Constant) and key.value == "help":
            if isinstance(value, ast.JoinedStr):
                return ast.unparse(value)[2:-1]
            text = _literal(value)
            return text if isinstance(text, str) else ""
    return ""


def train_fields() -> list[tuple[str, Any, str]]:
    """(name, default, help) of the train command's own arguments, read from training/arguments.py's source: its
    import would load transformers and torch (``Seq2SeqTrainingArguments``), which ``--help`` must not need."""
    import ast

    source = Path(__file__).with_name("training") / "arguments.py"
    fields = []
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if not (isinstance(node, ast.ClassDef) and node.name in TRAIN_ARGUMENT_CLASSES):
            continue
        for item in node.body:
            if (
                isinstance(item, ast.AnnAssign)
                and isinstance(item.value, ast.Call)
                and isinstance(item.target, ast.Name)
            ):
                keywords = {k.arg: k.value for k in item.value.keywords}
                text = _help_text(keywords.get("metadata"))
                default = _literal(keywords["default"]) if "default" in keywords else None
                fields.append((item.target.id, default, text))
    return fields


def light_train_help() -> str:
    lines = [
        "usage: rrg-mamba train [--recipe RECIPE] [--<argument> VALUE ...]",
        "",
        "Train a model (Seq2SeqTrainer). Its own arguments are below; every Seq2SeqTrainingArguments flag "
        "(--output_dir, --learning_rate, --bf16, --resume_from_checkpoint last, ...) works too: "
        "`rrg-mamba train --help-all` lists them all (slower: it loads transformers).",
        "",
        "  --recipe RECIPE       JSON/YAML recipe file (or its name in configuration/); flags override it",
    ]
    for name, default, text in train_fields():
        shown = "" if default is None else f" (default: {default})"
        lines.append(f"  --{name:<20} {text}{shown}")
    return "\n".join(lines)


def pop_debug(argv: list[str]) -> bool:
    """Remove a bare ``--debug`` (not TrainingArguments' ``--debug <option>``); True if it was there."""
    for position, item in enumerate(argv):
        if item == "--debug" and (
            position + 1 == len(argv) or argv[position + 1].startswith("-") or argv[position + 1] in COMMANDS
        ):
            del argv[position]
            return True
    return False


def run(command: str, rest: list[str]) -> int:
    if command in LIGHT_HELP and any(item in ("-h", "--help") for item in rest):
        print(light_help(command))
        return 0
    if command == "train" and any(item in ("-h", "--help") for item in rest):
        print(light_train_help())
        return 0
    if command == "train" and "--help-all" in rest:
        rest = [("--help" if item == "--help-all" else item) for item in rest]
    return COMMANDS[command](rest) or 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = pop_debug(argv) or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"rrg-mamba: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        return run(command, rest)
    except KeyboardInterrupt:
        print("rrg-mamba: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"rrg-mamba: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
