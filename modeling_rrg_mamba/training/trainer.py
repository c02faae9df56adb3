"""`Seq2SeqTrainer` for report generation: the papers' optimiser, reproducible augmentation, time budgets.

* [`ReportGenerationTrainer`] builds two learning-rate groups (visual extractor / rest, RRG-Mamba Sec. 4.2:
  1e-3 / 2e-3) with Adam + AMSGrad when asked, decays them stepwise when asked (``lr_decay_epochs``: RRG-Mamba's
  script multiplies them by 0.8 every 50 epochs), and collates training batches with augmentation while evaluation
  batches are collated without it.
* [`SeededAugmentationCollator`] draws each training batch's random crops and flips from a generator seeded by
  (seed, epoch, example ids), so a run resumed with ``--resume_from_checkpoint`` sees exactly the images the
  uninterrupted run saw (the Trainer restores the global RNG only after it has pre-fetched the next batch).
* [`TimeLimitCallback`] stops training after ``max_minutes``; [`FinalEvaluationCallback`] makes the last step
  evaluate and save, so the best checkpoint is chosen on validation metrics up to the very end.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import (
    GenerationConfig,
    Seq2SeqTrainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from ..data.atomic import replaced_file, write_text_whole
from ..data.decoding import decoding_settings
from .arguments import ReportGenerationTrainingArguments


def generating_model(model: nn.Module) -> nn.Module:
    """The model itself, or the one a PEFT wrapper holds (whose ``generate`` reads its own generation config)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def visual_extractor(model: nn.Module) -> nn.Module | None:
    """The model's image backbone (its ``get_vision_backbone()``; PEFT-wrapped or not), or ``None`` if it has none."""
    base = generating_model(model)
    get_backbone = getattr(base, "get_vision_backbone", None)
    return get_backbone() if get_backbone is not None else None


def learning_rate_groups(
    model: nn.Module, learning_rate: float, visual_extractor_learning_rate: float | None, weight_decay: float
) -> list[dict[str, Any]]:
    """Optimiser parameter groups: the visual extractor at its own rate, every other trainable parameter at
    ``learning_rate``; weight decay on all (R2Gen's Adam applies it to every parameter). Empty groups are left out."""
    backbone = visual_extractor(model)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("model: no trainable parameters to optimise")
    visual = [p for p in trainable if id(p) in backbone_ids]
    rest = [p for p in trainable if id(p) not in backbone_ids]
    visual_rate = learning_rate if visual_extractor_learning_rate is None else visual_extractor_learning_rate
    groups = [
        {"params": visual, "lr": visual_rate, "weight_decay": weight_decay, "name": "visual_extractor"},
        {"params": rest, "lr": learning_rate, "weight_decay": weight_decay, "name": "rest"},
    ]
    return [group for group in groups if group["params"]]


def update_steps_per_epoch(
    dataset_size: int, batch_size: int, world_size: int, accumulation: int, drop_last: bool
) -> int:
    """Optimiser steps in one epoch, as the Trainer counts them (the last partial accumulation counts as a step)."""
    batches = dataset_size / (batch_size * world_size)
    batches = math.floor(batches) if drop_last else math.ceil(batches)
    return max(1, math.ceil(batches / accumulation))


def epoch_seed(seed: int, epoch: int, example_ids: Sequence[Any]) -> int:
    """A 63-bit seed determined by the run's seed, the epoch and the batch's example ids."""
    digest = hashlib.sha256(repr((seed, epoch, [str(i) for i in example_ids])).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def batch_pad_token_id(processing_class: Any, generation_config: GenerationConfig) -> int:
    """The id the processor (or tokenizer) pads batches with: its pad token, else its eos token; without either, the
    model's generation config's pad (else first eos) token."""
    for source in (processing_class, generation_config):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None)
            value = value[0] if isinstance(value, (list, tuple)) and value else value
            if isinstance(value, int):
                return value
    raise ValueError(
        "processing_class: no pad_token_id or eos_token_id (nor in the model's generation config) to left-pad the "
        "evaluation prompts of a decoder-only model with; pass the model's processor as processing_class"
    )


def prompt_only_inputs(inputs: Mapping[str, Any], pad_token_id: int) -> dict[str, Any]:
    """A decoder-only model's training-style batch (``prompt + report + eos`` with ``labels`` ``-100`` on the prompt
    and the padding) cut back to its generation batch: each row's prompt (the tokens of the leading ``-100`` run of
    its labels that the attention mask keeps), left-padded with ``pad_token_id``; the other inputs (``pixel_values``)
    as they are, ``labels`` left out. For a batch of `EMRRGProcessor` this is token for token what the processor
    builds without ``reports=`` (the prompt is tokenized on its own before the report is appended), i.e. what
    ``rrg-mamba generate`` feeds the model."""
    input_ids, labels = inputs["input_ids"], inputs["labels"]
    mask = inputs.get("attention_mask")
    mask = torch.ones_like(input_ids) if mask is None else mask
    is_target = labels != -100
    empty = (~is_target.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"labels: row {empty[0]} holds no report token (all -100), so it has no prompt to generate from"
        )
    ends = is_target.int().argmax(dim=1).tolist()  # the first report token of each row
    prompts = [row[:end][keep[:end].bool()] for row, keep, end in zip(input_ids, mask, ends)]
    length = max(len(prompt) for prompt in prompts)
    prompt_ids = input_ids.new_full((len(prompts), length), pad_token_id)
    prompt_mask = torch.zeros_like(prompt_ids, dtype=mask.dtype)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, length - len(prompt) :] = prompt
        prompt_mask[row, length - len(prompt) :] = 1
    rest = {key: value for key, value in inputs.items() if key not in ("input_ids", "attention_mask", "labels")}
    return {**rest, "input_ids": prompt_ids, "attention_mask": prompt_mask}


def move_folder_into(staging: Path, target: Path) -> None:
    """Every file of ``staging`` renamed into ``target`` (a folder of the same name replaced whole), then ``staging``
    removed: no file in ``target`` is ever half-written."""
    for item in sorted(staging.iterdir()):
        if item.is_dir() and (target / item.name).is_dir():
            shutil.rmtree(target / item.name)
        os.replace(item, target / item.name)
    staging.rmdir()


class SeededAugmentationCollator:
    """Wraps a collator whose processor augments with the global torch RNG (image processor ``seed=None``): each
    batch is collated under a forked RNG seeded by `epoch_seed`, so augmentation neither depends on nor disturbs the
    global RNG stream (dropout keeps the exact sequence it has in an uninterrupted run).

    DataLoader workers get a copy of the collator when an epoch's iterator starts, after
    `AugmentationEpochCallback` has set the epoch; with ``dataloader_persistent_workers`` they would keep the
    first epoch's value (same crops every epoch), so leave that option off."""

    def __init__(self, collator: Callable[[Sequence[Mapping[str, Any]]], Any], seed: int) -> None:
        self.collator = collator
        self.seed = seed
        self.epoch = 0

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(epoch_seed(self.seed, self.epoch, [e.get("id") for e in examples]))
            return self.collator(examples)


class AugmentationEpochCallback(TrainerCallback):
    """Tells a `SeededAugmentationCollator` which epoch starts (``floor(state.epoch)``, right on resume too)."""

    def __init__(self, collator: SeededAugmentationCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.collator.epoch = int(state.epoch or 0)


class TimeLimitCallback(TrainerCallback):
    """Stops training once ``max_minutes`` of training time have passed (checked after every optimiser step)."""

    def __init__(self, max_minutes: float) -> None:
        if max_minutes <= 0:
            raise ValueError(f"max_minutes: expected a positive number, got {max_minutes}")
        self.max_seconds = 60.0 * max_minutes
        self.start: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        self.start = time.monotonic()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if self.start is not None and time.monotonic() - self.start >= self.max_seconds:
            control.should_training_stop = True


class FinalEvaluationCallback(TrainerCallback):
    """When training is about to stop (max_steps, time limit), evaluate and save at that step as well, so model
    selection on the validation metrics sees the final weights. Must run after the callbacks that stop training."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any):
        if control.should_training_stop:
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"


class ReportGenerationTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` with the report-generation optimiser groups and a separate training collator.

    Evaluation with ``predict_with_generate`` decodes with the model's generation config, with the settings of
    ``generation_config`` (a file) written over it, then the Trainer's ``generation_max_length`` /
    ``generation_num_beams`` (or ``evaluate(max_new_tokens=...)``) over those, keeping one length limit (no
    transformers warning at every batch). For a decoder-only model (EMRRG, whose prompt holds the image tokens)
    ``generation_max_length`` limits the report's new tokens, the reports are generated from the prompts alone (as
    ``rrg-mamba generate`` does) and the predictions are the new tokens only.

    Args:
        train_data_collator: collator of the training batches (augmentation on); ``data_collator`` serves evaluation
            and prediction. Defaults to ``data_collator``.
        Other arguments as for `Seq2SeqTrainer`; ``args`` should be a [`ReportGenerationTrainingArguments`].
    """

    def __init__(self, *args: Any, train_data_collator: Callable | None = None, **kwargs: Any) -> None:
        model = kwargs.get("model", args[0] if args else None)
        own_config = None if model is None else getattr(generating_model(model), "generation_config", None)
        super().__init__(*args, **kwargs)
        self.train_data_collator = train_data_collator or self.data_collator
        if self.args.generation_config is not None and own_config is not None:
            self._write_generation_file_over(own_config)

    def _write_generation_file_over(self, own_config: GenerationConfig) -> None:
        """``generation_config`` (a file of decoding settings) over the model's own config: the file wins where it
        says something, the model's token ids and other settings fill the rest. (Seq2SeqTrainer replaces the config
        whole, losing e.g. ``decoder_start_token_id``, and on a PEFT model sets it on the wrapper, which ``generate``
        never reads.)"""
        generating = generating_model(self.model)
        merged = copy.deepcopy(self.model.generation_config)
        if generating is not self.model:
            vars(self.model).pop("generation_config", None)  # the wrapper reads the generating model's again
        for key, value in own_config.to_dict().items():
            if getattr(merged, key, None) is None and value is not None:
                setattr(merged, key, value)
        generating.generation_config = merged

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
        **gen_kwargs: Any,
    ):
        """The Seq2SeqTrainer's step, generating under `decoding_settings`: the lengths and beams asked for
        (``generation_max_length`` / ``generation_num_beams`` or ``evaluate``'s keywords) written into the model's
        generation config with one length limit, so the asked length holds and transformers never warns "Both
        max_new_tokens and max_length" at every batch."""
        if not self.args.predict_with_generate or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        asked = gen_kwargs or getattr(self, "_gen_kwargs", {})
        settings = {key: value for key, value in asked.items() if value is not None}
        generating = generating_model(self.model)
        if not generating.config.is_encoder_decoder and "max_length" in settings:  # the prompt is not the report
            settings.setdefault("max_new_tokens", settings.pop("max_length"))
        trainer_kwargs = self.__dict__.get("_gen_kwargs")
        try:
            with decoding_settings(generating, settings) as rest:
                self._gen_kwargs = rest  # what the Seq2SeqTrainer's step reads when no keywords are passed
                if generating.config.is_encoder_decoder:
                    return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys, **rest)
                return self._decoder_only_prediction_step(model, inputs, ignore_keys, rest)
        finally:
            if trainer_kwargs is None:
                self.__dict__.pop("_gen_kwargs", None)
            else:
                self._gen_kwargs = trainer_kwargs

    def _decoder_only_prediction_step(
        self, model: nn.Module, inputs: dict[str, Any], ignore_keys: list[str] | None, gen_kwargs: dict[str, Any]
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """A decoder-only model's step (EMRRG): the loss on the batch as collated (``prompt + report``, so
        ``eval_loss`` is the training loss), the generation from the prompts alone (`prompt_only_inputs`), and the
        new tokens only as the predictions (an LLM's ``generate`` returns the prompt too).

        The prompts are cut from the labelled batch rather than built a second time by the collator (under extra
        keys the loss forward would have to skip): the labels already mark them, the result is the processor's own
        generation batch token for token, the images are processed once, and any collator of the processor's
        training batches works unchanged. A batch without labels is already a generation batch. Rows that stop early
        are padded with the processor's ``pad_token_id`` (a special token) by the Seq2SeqTrainer's step, and with
        ``-100`` across batches by the evaluation loop."""
        loss = None
        prompts = inputs
        if "labels" in inputs:
            loss, _, _ = super().prediction_step(model, inputs, True, ignore_keys=ignore_keys)
            pad = batch_pad_token_id(self.processing_class, generating_model(self.model).generation_config)
            prompts = prompt_only_inputs(inputs, pad)
        _, generated, _ = super().prediction_step(model, prompts, False, ignore_keys, **gen_kwargs)
        return loss, generated[:, prompts["input_ids"].shape[1] :], inputs.get("labels")

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """The Trainer's save, into a fresh ``checkpoint-<step>`` (a partial folder left by an interrupted save is
        removed first, so old files never mix with new ones); a failed save says which folder is incomplete."""
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.args.should_save and os.path.isdir(folder):
            shutil.rmtree(folder)
        try:
            super()._save_checkpoint(model, trial)
        except OSError as error:
            raise OSError(
                f"saving {folder} failed ({error}); it is incomplete, and --resume_from_checkpoint last "
                "resumes from the newest complete checkpoint"
            ) from error

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The Trainer's save of the final model, staged in a hidden folder and then renamed file by file into
        ``output_dir``: a crash never leaves a half-written weights file there (checkpoint saves are unchanged: an
        incomplete checkpoint is recognised by `checkpoints.checkpoint_problem`)."""
        if _internal_call or self.args.push_to_hub:
            super().save_model(output_dir, _internal_call)
            return
        target = Path(output_dir or self.args.output_dir)
        staging = target / ".model.partial"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)
        super().save_model(str(staging), _internal_call)
        if self.args.should_save:
            move_folder_into(staging, target)

    def save_merged_model(self) -> None:
        """A PEFT-wrapped model (EMRRG's Partial LoRA) saved as a whole model: the adapter is merged into its base
        (W + BA, Eq. of LoRA) and ``output_dir`` becomes a model folder that `from_pretrained` and ``rrg-mamba
        generate`` load as it is; the adapter the Trainer saved there moves to ``output_dir/adapter`` (transformers
        would read an ``adapter_config.json`` beside ``config.json`` as an adapter to apply on top of its base).
        The merge is in place, so this comes last; a model without an adapter is left as it is."""
        if not hasattr(self.model, "merge_and_unload"):
            return
        merged = self.model.merge_and_unload()  # on every rank, before anything in output_dir moves
        self.model = self.model_wrapped = merged
        if self.args.should_save:
            target = Path(self.args.output_dir)
            adapter = target / "adapter"
            shutil.rmtree(adapter, ignore_errors=True)
            adapter.mkdir()
            for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md"):
                if (target / name).is_file():
                    os.replace(target / name, adapter / name)
            staging = target / ".model.partial"
            shutil.rmtree(staging, ignore_errors=True)
            merged.save_pretrained(staging)
            move_folder_into(staging, target)

    def save_metrics(self, split: str, metrics: dict[str, float], combined: bool = True) -> None:
        """The Trainer's ``save_metrics``, each JSON file written whole (a temporary file renamed over it)."""
        if not self.is_world_process_zero():
            return
        folder = Path(self.args.output_dir)
        write_text_whole(folder / f"{split}_results.json", json.dumps(metrics, indent=4, sort_keys=True))
        if combined:
            path = folder / "all_results.json"
            merged = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
            write_text_whole(path, json.dumps({**merged, **metrics}, indent=4, sort_keys=True))

    def save_state(self) -> None:
        """The Trainer's ``save_state``, ``trainer_state.json`` written whole."""
        if self.is_world_process_zero():
            with replaced_file(Path(self.args.output_dir) / "trainer_state.json") as partial:
                self.state.save_to_json(str(partial))

    def get_train_dataloader(self) -> DataLoader:
        evaluation_collator = self.data_collator
        self.data_collator = self.train_data_collator
        try:
            return super().get_train_dataloader()
        finally:
            self.data_collator = evaluation_collator

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        if self.optimizer is not None:
            return self.optimizer
        args = self.args
        visual_rate = getattr(args, "visual_extractor_learning_rate", None)
        groups = learning_rate_groups(model or self.model, args.learning_rate, visual_rate, args.weight_decay)
        if getattr(args, "amsgrad", False):
            optimizer_cls, optimizer_kwargs = (
                torch.optim.Adam,
                {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon, "amsgrad": True},
            )
        else:
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(args, model or self.model)
        optimizer_kwargs = {k: v for k, v in optimizer_kwargs.items() if k not in ("lr", "weight_decay")}
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """With ``lr_decay_epochs``: RRG-Mamba's step decay (its script: every group's rate x ``lr_decay_rate``
        every ``lr_decay_epochs`` epochs, counted in optimiser steps); otherwise the Trainer's schedule."""
        decay_epochs = getattr(self.args, "lr_decay_epochs", None)
        if decay_epochs is None or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        args = self.args
        per_epoch = update_steps_per_epoch(
            len(self.train_dataset),
            args.train_batch_size,
            args.world_size,
            args.gradient_accumulation_steps,
            args.dataloader_drop_last,
        )
        period = max(1, round(decay_epochs * per_epoch))
        self.lr_scheduler = torch.optim.lr_scheduler.StepLR(optimizer or self.optimizer, period, args.lr_decay_rate)
        self._created_lr_scheduler = True
        return self.lr_scheduler


def default_callbacks(args: ReportGenerationTrainingArguments) -> list[TrainerCallback]:
    """Time limit (when ``max_minutes`` is set) followed by the final evaluation."""
    callbacks: list[TrainerCallback] = []
    if getattr(args, "max_minutes", None):
        callbacks.append(TimeLimitCallback(args.max_minutes))
    callbacks.append(FinalEvaluationCallback())
    return callbacks


__all__ = [
    "AugmentationEpochCallback",
    "FinalEvaluationCallback",
    "ReportGenerationTrainer",
    "SeededAugmentationCollator",
    "TimeLimitCallback",
    "batch_pad_token_id",
    "default_callbacks",
    "epoch_seed",
    "generating_model",
    "learning_rate_groups",
    "prompt_only_inputs",
    "update_steps_per_epoch",
    "visual_extractor",
]
