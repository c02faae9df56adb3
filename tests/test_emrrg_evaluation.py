"""EMRRG evaluation during training and ``--do_predict``: generation from the prompt alone (as ``rrg-mamba generate``
feeds it), predictions that are the new tokens only, the loss still on prompt + report, padding that decodes to
nothing."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import DEMO_DATA, TEXT_CONFIGS, save_tiny_emrrg, save_tiny_llm
from peft import PeftModel
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from modeling_rrg_mamba.cli import main
from modeling_rrg_mamba.commands.generate import annotation_studies, generate_reports, load_checked_model
from modeling_rrg_mamba.data import EMRRGDataCollator, load_r2gen_annotation
from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration, EMRRGProcessor, apply_emrrg_recipe
from modeling_rrg_mamba.training import ReportGenerationTrainer, ReportGenerationTrainingArguments
from modeling_rrg_mamba.training.trainer import generating_model, prompt_only_inputs

ANNOTATION = DEMO_DATA / "annotation.json"
IMAGES = DEMO_DATA / "images"
NEW_TOKENS = 8
#: Prompts of different lengths (words the tiny tokenizer does not know become one unknown token each).
PROMPTS = (
    "Human: <Img><image></Img> Generate a report . \nAssistant:",
    "Human: <Img><image></Img> Generate a comprehensive and detailed diagnosis report for this chest xray image "
    "in a few short and plain sentences . \nAssistant:",
    "<image> report:",
)


class PerStudyPromptCollator(EMRRGDataCollator):
    """Each study's own instruction (its ``prompt`` column) instead of one prompt for the whole batch."""

    def processor_call_kwargs(self, examples):
        return {**super().processor_call_kwargs(examples), "text": [example["prompt"] for example in examples]}


def demo_split(size: int | None = None) -> datasets.Dataset:
    split = load_r2gen_annotation(ANNOTATION, image_root=IMAGES)["test"]
    return split if size is None else split.select(range(size))


@pytest.fixture(scope="module")
def emrrg_folder(tmp_path_factory) -> Path:
    """A tiny EMRRG over the tiny Llama (which has a pad token), saved with its processor."""
    root = tmp_path_factory.mktemp("emrrg")
    return save_tiny_emrrg(root / "emrrg", save_tiny_llm(root / "llm"))


@pytest.fixture(scope="module")
def trained(emrrg_folder, tmp_path_factory) -> Path:
    """One step of `rrg-mamba train --model_type emrrg` with evaluation every step and --do_predict, greedy."""
    output = tmp_path_factory.mktemp("run") / "out"
    argv = ["train", "--model_type", "emrrg", "--model_name_or_path", str(emrrg_folder), "--use_cpu"]
    argv += ["--annotation", str(ANNOTATION), "--image_root", str(IMAGES), "--output_dir", str(output)]
    argv += ["--max_steps", "1", "--do_eval", "--eval_strategy", "steps", "--eval_steps", "1", "--do_predict"]
    argv += ["--generation_max_length", str(NEW_TOKENS), "--generation_num_beams", "1", "--report_to", "none"]
    argv += ["--meteor", "false", "--clinical_efficacy", "false", "--per_device_eval_batch_size", "8"]
    assert main(argv) == 0
    return output


def trained_model(emrrg_folder: Path, output: Path) -> EMRRGForConditionalGeneration:
    """The run's final model as its folder holds it: the Partial-LoRA adapter merged into the model it started from,
    loaded the way the commands load a model (missing or unexpected weights raise)."""
    return load_checked_model(output).eval()


def test_the_output_folder_is_the_merged_model_and_keeps_its_adapter(emrrg_folder, trained):
    """``output_dir`` is a whole model folder (no adapter config beside config.json, which transformers would apply
    a second time); the adapter in ``output_dir/adapter`` over the starting model gives the same logits."""
    assert (trained / "config.json").is_file() and not (trained / "adapter_config.json").exists()
    merged = trained_model(emrrg_folder, trained)
    adapter = PeftModel.from_pretrained(
        EMRRGForConditionalGeneration.from_pretrained(emrrg_folder), trained / "adapter"
    )
    processor = EMRRGProcessor.from_pretrained(trained)
    batch = EMRRGDataCollator(processor)([demo_split()[i] for i in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(merged(**batch).logits, adapter.eval()(**batch).logits, rtol=1e-4, atol=1e-4)


def test_generate_command_loads_the_trained_folder(trained, tmp_path):
    """``rrg-mamba generate --model <train output>`` writes the reports ``--do_predict`` wrote for the same films."""
    records = {json.loads(line)["id"]: json.loads(line) for line in (trained / "test_predictions.jsonl").open()}
    output = tmp_path / "reports.jsonl"
    argv = ["generate", "--model", str(trained), "--annotation", str(ANNOTATION), "--image_root", str(IMAGES)]
    argv += ["--split", "test", "--output", str(output), "--num_beams", "1", "--max_new_tokens", str(NEW_TOKENS)]
    assert main(argv) == 0
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert written and all(record["prediction"] == records[record["id"]]["prediction"] for record in written)


def test_do_predict_writes_what_generate_writes_for_the_saved_model(emrrg_folder, trained):
    """Every test prediction is the report the saved model writes for that study through the generate command's
    code (prompt-only, left-padded batches), with the same greedy settings: no prompt, no copied reference."""
    records = [json.loads(line) for line in (trained / "test_predictions.jsonl").read_text().splitlines()]
    model = generating_model(trained_model(emrrg_folder, trained))
    processor = EMRRGProcessor.from_pretrained(trained)
    studies, metadata = annotation_studies(ANNOTATION, IMAGES, "test")
    generated = generate_reports(
        model, processor, studies, batch_size=3, metadata=metadata, max_new_tokens=NEW_TOKENS, num_beams=1
    )
    assert [r["id"] for r in records] == [g["id"] for g in generated]
    assert [r["prediction"] for r in records] == [g["prediction"] for g in generated]
    assert not any("Generate a comprehensive" in r["prediction"] for r in records)


@torch.no_grad()
def direct_loss(model: torch.nn.Module, processor: EMRRGProcessor, split: datasets.Dataset, batch_size: int) -> float:
    """The mean over studies of the per-batch losses of the model's forward on the training-style batches, batched
    as the Trainer's evaluation batches them."""
    collator = EMRRGDataCollator(processor)
    total = 0.0
    for start in range(0, len(split), batch_size):
        examples = [split[i] for i in range(start, min(start + batch_size, len(split)))]
        total += model(**collator(examples)).loss.item() * len(examples)
    return total / len(split)


def test_evaluation_and_test_losses_are_the_loss_on_prompt_and_report(emrrg_folder, trained):
    model = trained_model(emrrg_folder, trained)
    processor = EMRRGProcessor.from_pretrained(trained)
    splits = load_r2gen_annotation(ANNOTATION, image_root=IMAGES)
    test_loss = json.loads((trained / "test_results.json").read_text())["test_loss"]
    assert test_loss == pytest.approx(direct_loss(model, processor, splits["test"], 8), rel=1e-5)
    history = json.loads((trained / "trainer_state.json").read_text())["log_history"]
    (eval_loss,) = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
    assert eval_loss == pytest.approx(direct_loss(model, processor, splits["validation"], 8), rel=1e-5)


def test_prompt_only_inputs_are_the_processors_generation_batch(emrrg_folder):
    """Cut from a training batch of prompts of different lengths, the prompts are token for token the processor's
    left-padded batch without reports, with the same images."""
    processor = EMRRGProcessor.from_pretrained(emrrg_folder)
    examples = [{**demo_split()[i], "prompt": PROMPTS[i % len(PROMPTS)]} for i in range(len(PROMPTS))]
    collator = PerStudyPromptCollator(processor)
    batch = collator(examples)
    expected = processor(images=[collator.study_images(e) for e in examples], text=list(PROMPTS))
    assert expected["attention_mask"].sum(1).unique().numel() == len(PROMPTS)  # three prompt lengths
    prompts = prompt_only_inputs(batch, processor.pad_token_id)
    assert set(prompts) == {"input_ids", "attention_mask", "pixel_values"}
    for key in prompts:
        torch.testing.assert_close(prompts[key], expected[key], rtol=0, atol=0)


def test_prompt_only_inputs_refuse_a_row_without_a_report_token(emrrg_folder):
    processor = EMRRGProcessor.from_pretrained(emrrg_folder)
    batch = EMRRGDataCollator(processor)([demo_split()[0], demo_split()[1]])
    batch["labels"][1] = -100
    with pytest.raises(ValueError, match="labels: row 1 holds no report token"):
        prompt_only_inputs(batch, processor.pad_token_id)


class Captured:
    """A ``compute_metrics`` that keeps what the Trainer hands it."""

    def __init__(self) -> None:
        self.predictions: np.ndarray | None = None

    def __call__(self, prediction) -> dict[str, float]:
        self.predictions = prediction.predictions
        return {}


def evaluation_trainer(tmp_path: Path, folder: Path, collator, batch_size: int, with_processor: bool = True) -> tuple:
    """A ReportGenerationTrainer over the saved EMRRG under the Partial-LoRA recipe (as `rrg-mamba train` wraps
    it), evaluating with generation (with the processor as ``processing_class``, or none), and the
    ``compute_metrics`` it reports to."""
    model, _ = apply_emrrg_recipe(EMRRGForConditionalGeneration.from_pretrained(folder))
    captured = Captured()
    args = ReportGenerationTrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, per_device_eval_batch_size=batch_size, report_to="none"
    )
    trainer = ReportGenerationTrainer(
        model=model.eval(),
        args=args,
        data_collator=collator,
        processing_class=collator.processor if with_processor else None,
        compute_metrics=captured,
    )
    return trainer, captured


@pytest.mark.parametrize("with_processor", [True, False])
def test_trainer_hands_compute_metrics_the_new_tokens_of_left_padded_prompts(emrrg_folder, tmp_path, with_processor):
    """Batches mixing prompts of three lengths: each row of the predictions is what the model generates for that
    study alone (no padding at all), followed by padding only; without a ``processing_class`` the prompts are
    left-padded with the generation config's pad token."""
    processor = EMRRGProcessor.from_pretrained(emrrg_folder)
    collator = PerStudyPromptCollator(processor)
    split = demo_split(5).add_column("prompt", [PROMPTS[i % len(PROMPTS)] for i in range(5)])
    trainer, captured = evaluation_trainer(
        tmp_path, emrrg_folder, collator, batch_size=3, with_processor=with_processor
    )
    metrics = trainer.evaluate(split, max_new_tokens=NEW_TOKENS, num_beams=1)
    assert np.isfinite(metrics["eval_loss"])
    model = generating_model(trainer.model)
    for row, example in enumerate(split):
        alone = processor(images=collator.study_images(example), text=example["prompt"])
        expected = model.generate(**alone, max_new_tokens=NEW_TOKENS, num_beams=1)[0, alone["input_ids"].shape[1] :]
        prediction = captured.predictions[row]
        assert prediction[: len(expected)].tolist() == expected.tolist()
        assert set(prediction[len(expected) :].tolist()) <= {-100, processor.pad_token_id}


def save_gpt2_style_llm(folder: Path) -> Path:
    """A tiny GPT-2 whose tokenizer, like GPT-2's, has no pad token: ``<|endoftext|>`` is its bos and eos."""
    annotation = json.loads(ANNOTATION.read_text())
    corpus = [entry["report"] for split in annotation.values() for entry in split] + ["Human: Assistant: report:"]
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", "<|endoftext|>"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )
    end = tokenizer.eos_token_id
    settings = {k: v for k, v in TEXT_CONFIGS["gpt2"].items() if k != "model_type"}
    settings.update(vocab_size=len(tokenizer), bos_token_id=end, eos_token_id=end)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(**settings)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_an_llm_without_a_pad_token_pads_predictions_with_its_eos(tmp_path):
    """GPT-2 has no pad token: generation that stops at once (eos biased up) leaves rows shorter than the length
    asked for, which the Trainer pads with the processor's pad id, the eos: a special token that decodes to
    nothing."""
    folder = save_tiny_emrrg(tmp_path / "emrrg", save_gpt2_style_llm(tmp_path / "llm"))
    processor = EMRRGProcessor.from_pretrained(folder)
    assert processor.tokenizer.pad_token_id is None
    eos = processor.tokenizer.eos_token_id
    assert processor.pad_token_id == eos and eos in processor.tokenizer.all_special_ids
    trainer, captured = evaluation_trainer(tmp_path, folder, EMRRGDataCollator(processor), batch_size=2)
    prompt_length = processor(images=[EMRRGDataCollator(processor).study_images(demo_split()[0])])["input_ids"].shape
    max_new_tokens = prompt_length[1] + 10  # longer than prompt + answer: the Trainer pads the generated ids
    trainer.evaluate(demo_split(3), max_new_tokens=max_new_tokens, num_beams=1, sequence_bias={(eos,): 100.0})
    assert captured.predictions[:, 0].tolist() == [eos] * 3
    assert set(captured.predictions[:, 1:].flatten().tolist()) <= {-100, eos}
    assert captured.predictions.shape[1] > 2  # padded beyond the one generated token
    assert (
        processor.batch_decode(
            np.where(captured.predictions < 0, eos, captured.predictions).tolist(), skip_special_tokens=True
        )
        == [""] * 3
    )
