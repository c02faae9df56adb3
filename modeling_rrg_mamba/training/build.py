"""From parsed arguments to a ready `ReportGenerationTrainer`: datasets, processor, model, collators, metrics.

Model selection uses the validation split only (``eval_dataset`` is ``validation``); the test split is touched once,
after training, by [`predict_test_split`].
"""

from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path
from typing import Any

import datasets
from transformers import TrainerCallback, set_seed

from ..data import (
    EMRRGDataCollator,
    RRGMambaDataCollator,
    add_observation_labels,
    load_chexpert_plus,
    load_r2gen_annotation,
    write_jsonl,
)
from ..data.atomic import nothing_left_on_failure
from ..data.model_folders import saved_model_type
from ..data.verify import format_bad_images, scan_images
from ..metrics import ReportGenerationMetrics, decode_token_ids
from .arguments import DataArguments, ModelArguments, ReportGenerationTrainingArguments
from .checkpoints import (
    earlier_run_set_aside,
    no_logs_left_by_an_unlogged_failure,
    prepare_output_dir,
    resolve_resume_checkpoint,
)
from .trainer import AugmentationEpochCallback, ReportGenerationTrainer, SeededAugmentationCollator, default_callbacks

logger = logging.getLogger(__name__)


def check_config_keys(overrides: dict[str, Any], config_class: type, where: str = "config_overrides") -> None:
    """Refuse a key ``config_class`` does not know (a typo would be stored and ignored), naming the nearest one."""
    known = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    known |= set(config_class().to_dict())
    for key in overrides:
        if key not in known:
            near = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; {config_class.__name__} has no such field"
            raise ValueError(f"{where}: unknown key {key!r}{hint}")


def load_report_datasets(data_args: DataArguments) -> datasets.DatasetDict:
    """The annotation's splits (``train`` / ``validation`` / ``test``), cut to the ``max_*_samples`` limits."""
    if data_args.annotation is None:
        raise ValueError("--annotation: give an R2Gen annotation.json or the CheXpert Plus CSV")
    if data_args.image_root is None:
        raise ValueError("--image_root: give the folder the annotation's image paths are relative to")
    on_error = "skip" if data_args.on_bad_image == "skip" else "raise"
    loader = load_chexpert_plus if str(data_args.annotation).endswith(".csv") else load_r2gen_annotation
    dataset = loader(
        data_args.annotation,
        image_root=data_args.image_root,
        on_error=on_error,
        allow_split_overlap=data_args.allow_split_overlap,
    )
    limits = {
        "train": data_args.max_train_samples,
        "validation": data_args.max_eval_samples,
        "test": data_args.max_test_samples,
    }
    for split, limit in limits.items():
        if split in dataset and limit is not None:
            dataset[split] = dataset[split].select(range(min(limit, len(dataset[split]))))
    if data_args.verify_images:
        dataset = drop_bad_images(dataset, data_args)
    if "train" not in dataset or len(dataset["train"]) == 0:
        raise ValueError(f"{data_args.annotation}: no training split (need 'train' entries)")
    return dataset


def drop_bad_images(dataset: datasets.DatasetDict, data_args: DataArguments) -> datasets.DatasetDict:
    """``--verify_images``: decode every image; list every bad file and stop, or (``--on_bad_image skip``) drop the
    studies that have one."""
    bad = scan_images(dict(dataset.items()))
    if not bad:
        return dataset
    if data_args.on_bad_image == "error":
        raise ValueError(
            f"{data_args.annotation}: {len(bad)} bad image file(s): "
            + "; ".join(map(str, bad))
            + " (fix them, or pass --on_bad_image skip to leave those studies out)"
        )
    logger.warning(
        "leaving out %d studies with bad images:\n%s",
        len({(b.split, b.study_id) for b in bad}),
        format_bad_images(bad),
    )
    bad_ids = {(b.split, b.study_id) for b in bad}
    return datasets.DatasetDict(
        {split: part.filter(lambda row, s=split: (s, row["id"]) not in bad_ids) for split, part in dataset.items()}
    )


def build_rrg_mamba(model_args: ModelArguments, train_reports: list[str]):
    """A saved RRG-Mamba (``model_name_or_path``) or a new one with a tokenizer built from ``train_reports``."""
    from ..rrg_mamba import (
        RRGMambaConfig,
        RRGMambaForConditionalGeneration,
        RRGMambaImageProcessor,
        RRGMambaProcessor,
        RRGMambaTokenizer,
    )

    if model_args.model_name_or_path is not None:
        processor = RRGMambaProcessor.from_pretrained(model_args.model_name_or_path)
        model = RRGMambaForConditionalGeneration.from_pretrained(model_args.model_name_or_path)
        return model, processor
    tokenizer = RRGMambaTokenizer.from_reports(
        train_reports, threshold=model_args.vocabulary_threshold, report_style=model_args.report_style
    )
    image_processor = RRGMambaImageProcessor(size=model_args.resize_size, crop_size=model_args.image_size)
    processor = RRGMambaProcessor(image_processor, tokenizer, max_length=model_args.max_length)
    check_config_keys(model_args.overrides(), RRGMambaConfig)
    config = RRGMambaConfig(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        **model_args.overrides(),
    )
    return RRGMambaForConditionalGeneration(config), processor


def build_emrrg(model_args: ModelArguments):
    """EMRRG from a saved model, or from an X-ray Mamba and a local LLM, wrapped with the Partial-LoRA recipe."""
    from transformers import AutoTokenizer

    from ..emrrg import (
        EMRRGConfig,
        EMRRGForConditionalGeneration,
        EMRRGProcessor,
        XrayMambaConfig,
        apply_emrrg_recipe,
    )
    from ..image_processing_xray import XrayImageProcessor

    if model_args.model_name_or_path is not None:
        processor = EMRRGProcessor.from_pretrained(model_args.model_name_or_path)
        model = EMRRGForConditionalGeneration.from_pretrained(model_args.model_name_or_path)
    else:
        overrides = model_args.overrides()
        check_config_keys(overrides.get("vision_config", {}), XrayMambaConfig, "config_overrides.vision_config")
        check_config_keys({k: v for k, v in overrides.items() if k != "vision_config"}, EMRRGConfig)
        vision_config = XrayMambaConfig(**{"image_size": model_args.image_size, **overrides.pop("vision_config", {})})
        tokenizer = AutoTokenizer.from_pretrained(model_args.text_model_name_or_path)
        image_processor = XrayImageProcessor(size=model_args.resize_size, crop_size=model_args.image_size)
        processor = EMRRGProcessor(
            image_processor,
            tokenizer,
            image_seq_length=vision_config.num_tokens(),
            multi_view_fusion=overrides.get("multi_view_fusion", "mean"),
        )
        model = EMRRGForConditionalGeneration.from_vision_text_pretrained(
            model_args.vision_model_name_or_path or vision_config,
            model_args.text_model_name_or_path,
            image_token_id=processor.image_token_id,
            **overrides,
        )
    model, counts = apply_emrrg_recipe(
        model,
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        in_proj_lora=model_args.in_proj_lora,
    )
    logger.info("EMRRG Partial-LoRA recipe: %s", counts)
    return model, processor


def build_collators(model_args: ModelArguments, data_args: DataArguments, processor: Any, seed: int):
    """(training collator with seeded augmentation, evaluation collator without augmentation); both follow
    ``--on_bad_image``."""
    policy = {"on_bad_image": data_args.on_bad_image}
    if model_args.model_type == "emrrg":
        train = EMRRGDataCollator(processor, processor_kwargs={"do_train_augmentation": True}, **policy)
        evaluation = EMRRGDataCollator(processor, **policy)
    else:
        labels = "observation_labels" if data_args.observation_labels else None
        train = RRGMambaDataCollator(
            processor, label_column=labels, processor_kwargs={"do_train_augmentation": True}, **policy
        )
        evaluation = RRGMambaDataCollator(processor, label_column=labels, **policy)
    return SeededAugmentationCollator(train, seed), evaluation


def build_trainer(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ReportGenerationTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> ReportGenerationTrainer:
    """Everything ``rrg-mamba train`` needs, as a trainer (``trainer.test_dataset`` holds the test split, if any)."""
    dataset = load_report_datasets(data_args)
    if model_args.model_type == "emrrg":
        model, processor = build_emrrg(model_args)
    else:
        model, processor = build_rrg_mamba(model_args, list(dataset["train"]["report"]))
        if data_args.observation_labels:
            dataset = add_observation_labels(dataset, uncertain=data_args.uncertain_labels)
    train_collator, eval_collator = build_collators(model_args, data_args, processor, training_args.seed)
    compute_metrics = ReportGenerationMetrics(
        processor, clean_style=model_args.report_style, ce=data_args.clinical_efficacy, meteor=data_args.meteor
    )
    trainer = ReportGenerationTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset.get("validation"),
        data_collator=eval_collator,
        train_data_collator=train_collator,
        processing_class=processor,
        compute_metrics=compute_metrics,
        callbacks=[AugmentationEpochCallback(train_collator), *default_callbacks(training_args), *(callbacks or [])],
    )
    trainer.test_dataset = dataset.get("test")
    return trainer


def predict_test_split(
    trainer: ReportGenerationTrainer, data_args: DataArguments, report_style: str
) -> dict[str, Any]:
    """Generate reports for the test split, write ``test_predictions.jsonl`` and score them against the full
    (untruncated) reference reports; returns the metrics (also written as ``test_results.json``)."""
    test = trainer.test_dataset
    if test is None or len(test) == 0:
        raise ValueError(f"{data_args.annotation}: no test split to predict")
    references = list(test["report"])
    validation_metrics, trainer.compute_metrics = (
        trainer.compute_metrics,
        ReportGenerationMetrics(
            trainer.processing_class,
            clean_style=report_style,
            ce=data_args.clinical_efficacy,
            reference_texts=references,
            meteor=data_args.meteor,
        ),
    )
    validation_metrics.close()
    output = trainer.predict(test, metric_key_prefix="test")
    trainer.compute_metrics.close()
    predictions = decode_token_ids(trainer.processing_class, output.predictions)
    records = [
        {"id": example["id"], "images": example["images"], "prediction": prediction, "reference": reference}
        for example, prediction, reference in zip(test, predictions, references)
    ]
    if trainer.is_world_process_zero():
        write_jsonl(Path(trainer.args.output_dir) / "test_predictions.jsonl", records)
    trainer.save_metrics("test", output.metrics)
    return output.metrics


def report_skipped_studies(trainer: ReportGenerationTrainer) -> None:
    """``--on_bad_image skip``: one summary of the studies the collators left out (same process only)."""
    skipped = []
    for collator in (getattr(trainer.train_data_collator, "collator", None), trainer.data_collator):
        skipped += getattr(collator, "skipped", [])
    if skipped:
        logger.warning(
            "%d studies were left out of their batches (unreadable images):\n%s",
            len(skipped),
            "\n".join(f"  id={study!r}: {reason}" for study, reason in skipped),
        )


def check_model_types(model_args: ModelArguments, resume: str | None) -> None:
    """Before any loading: the model to start from and the checkpoint to resume are of ``--model_type`` (a wrong
    folder is one line, not a load report of every weight)."""
    expected, hint = (model_args.model_type,), f" (--model_type {model_args.model_type})"
    if model_args.model_name_or_path is not None:
        saved_model_type(model_args.model_name_or_path, "--model_name_or_path", expected, hint, adapters=True)
    if resume is not None and any((Path(resume) / name).is_file() for name in ("config.json", "adapter_config.json")):
        saved_model_type(resume, "--resume_from_checkpoint", expected, hint, adapters=True)


def run_training(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: ReportGenerationTrainingArguments,
    callbacks: list[TrainerCallback] | None = None,
) -> ReportGenerationTrainer:
    """Train (resuming from ``resume_from_checkpoint`` when set), keep the model chosen on validation metrics,
    save it with its processor to ``output_dir``, then predict the test split if ``do_predict``; an adapter-trained
    model (EMRRG) is saved merged last, its adapter in ``output_dir/adapter``."""
    resume = resolve_resume_checkpoint(training_args.output_dir, training_args.resume_from_checkpoint)
    check_model_types(model_args, resume)
    overwrite = training_args.overwrite_output_dir and resume is None
    inputs = (
        data_args.annotation,
        data_args.image_root,
        model_args.model_name_or_path,
        model_args.vision_model_name_or_path,
        model_args.text_model_name_or_path,
    )
    prepare_output_dir(
        training_args.output_dir,
        resuming=resume is not None,
        overwrite=training_args.overwrite_output_dir,
        main_process=training_args.should_save,
        inputs=[path for path in inputs if path is not None and Path(path).exists()],
    )
    with nothing_left_on_failure([training_args.output_dir]):  # a failed new run leaves no empty folder
        set_seed(training_args.seed)
        trainer = build_trainer(model_args, data_args, training_args, callbacks)
        with (
            earlier_run_set_aside(training_args.output_dir, overwrite and training_args.should_save),
            no_logs_left_by_an_unlogged_failure(trainer),
        ):
            result = trainer.train(resume_from_checkpoint=resume)
            report_skipped_studies(trainer)
            trainer.save_model()
            trainer.log_metrics("train", result.metrics)
            trainer.save_metrics("train", result.metrics)
            trainer.save_state()
    if training_args.do_predict:
        metrics = predict_test_split(trainer, data_args, model_args.report_style)
        trainer.log_metrics("test", metrics)
    trainer.save_merged_model()
    return trainer


__all__ = [
    "build_collators",
    "build_emrrg",
    "build_rrg_mamba",
    "build_trainer",
    "check_model_types",
    "load_report_datasets",
    "predict_test_split",
    "run_training",
]
