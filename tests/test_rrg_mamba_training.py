"""RRG-Mamba learns from images: Seq2SeqTrainer smoke run, and a synthetic image-conditioning task."""

import numpy as np
import pytest
import torch
from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

from modeling_rrg_mamba.rrg_mamba import (
    RRGMambaConfig,
    RRGMambaForConditionalGeneration,
    RRGMambaImageProcessor,
    RRGMambaProcessor,
    RRGMambaTokenizer,
)

# ---------------------------------------------------------------------------------------------------------------
# Synthetic chest films: four independent findings, one per quadrant of a 48 px image (a 2 x 2 feature grid).
# ---------------------------------------------------------------------------------------------------------------

FINDINGS = ("nodule", "effusion", "line", "mass")
SIZE = 48


def draw(present, generator):
    image = 0.05 * torch.randn(SIZE, SIZE, generator=generator)
    half = SIZE // 2
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    if present[0]:
        image[((rows - half // 2) ** 2 + (cols - half // 2) ** 2) < 36] += 1  # disk, top left
    if present[1]:
        image[half + 4 : half + 8, half + 2 : SIZE - 2] += 1  # band, bottom right
    if present[2]:
        image[2 : half - 2, half + 9 : half + 13] += 1  # vertical line, top right
    if present[3]:
        image[half + 4 : half + 16, 4:16] += 1  # block, bottom left
    return image.expand(3, -1, -1)


def sentence(finding, present):
    return f"there is a {finding}" if present else f"no {finding}"


def report(present):
    return " . ".join(sentence(f, p) for f, p in zip(FINDINGS, present)) + " ."


def synthetic_batch(size, generator):
    present = (torch.rand(size, len(FINDINGS), generator=generator) < 0.5).tolist()
    return torch.stack([draw(p, generator) for p in present]), present


def findings_accuracy(texts, present):
    correct = 0
    for text, truth in zip(texts, present):
        sentences = {part.strip(" .") for part in text.split(" . ")}
        correct += sum(sentence(f, p) in sentences for f, p in zip(FINDINGS, truth))
    return correct / (len(FINDINGS) * len(present))


TOKENIZER = RRGMambaTokenizer.from_reports([report([True] * 4), report([False] * 4)], threshold=1)


def conditioning_config(**overrides):
    settings = dict(
        vocab_size=len(TOKENIZER),
        visual_extractor="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [16, 32, 64, 128], "stem_width": 16},
        gdlm_preset=None,
        gdlm_dim=32,
        gdlm_depth=1,
        gdlm_d_state=4,
        gdlm_mlp_ratio=2.0,
        dpb_window=3,
        d_model=64,
        num_attention_heads=4,
        d_ff=128,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.0,
    )
    settings.update(overrides)
    return RRGMambaConfig(**settings)


def train(model, steps, lr, batch_size=32, seed=1):
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        pixel_values, present = synthetic_batch(batch_size, generator)
        encoded = TOKENIZER([report(p) for p in present], padding=True, return_tensors="pt")
        labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
        loss = model(pixel_values=pixel_values, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("use_gdlm", [True, False])
def test_reports_follow_the_image(use_gdlm):
    torch.manual_seed(0)
    model = train(RRGMambaForConditionalGeneration(conditioning_config(use_gdlm=use_gdlm)), steps=STEPS, lr=LR)
    pixel_values, present = synthetic_batch(64, torch.Generator().manual_seed(99))  # held-out films

    def generate(pixels):
        return TOKENIZER.batch_decode(model.generate(pixels, max_new_tokens=24), skip_special_tokens=True)

    assert findings_accuracy(generate(pixel_values), present) >= 0.9
    blank = findings_accuracy(generate(torch.zeros_like(pixel_values)), present)
    assert blank <= 0.7  # without the image the model can only guess (chance = 0.5 per finding)
    # GDLM takes part: its branch gains (zero at initialisation) have grown, and the same weights with the GDLM
    # bypassed give other next-word scores.
    if use_gdlm:
        gains = torch.cat([scale.weight for scale in model.encoder.gdlm.blocks[0].branch_scales()])
        assert gains.abs().max() > 10 * LR
        labels = TOKENIZER([report(p) for p in present], padding=True, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            with_gdlm = model(pixel_values=pixel_values, labels=labels).logits
            gdlm, model.encoder.gdlm = model.encoder.gdlm, None
            without_gdlm = model(pixel_values=pixel_values, labels=labels).logits
            model.encoder.gdlm = gdlm
        change = (with_gdlm.log_softmax(-1) - without_gdlm.log_softmax(-1)).abs().max()
        assert change > 1e-3, (change, gains.abs().max())


# ---------------------------------------------------------------------------------------------------------------
# Seq2SeqTrainer
# ---------------------------------------------------------------------------------------------------------------


class _Studies(torch.utils.data.Dataset):
    def __init__(self, size, seed):
        self.pixel_values, self.present = synthetic_batch(size, torch.Generator().manual_seed(seed))

    def __len__(self):
        return len(self.present)

    def __getitem__(self, index):
        return {"pixel_values": self.pixel_values[index], "report": report(self.present[index])}


def test_seq2seq_trainer_trains_and_evaluates_with_generation(tmp_path):
    processor = RRGMambaProcessor(RRGMambaImageProcessor(size=SIZE, crop_size=SIZE), TOKENIZER, max_length=24)

    def collate(examples):
        labels = processor(reports=[example["report"] for example in examples])["labels"]
        return {"pixel_values": torch.stack([example["pixel_values"] for example in examples]), "labels": labels}

    torch.manual_seed(0)
    model = RRGMambaForConditionalGeneration(conditioning_config())
    model.generation_config.max_new_tokens = 24
    seen = {}

    def compute_metrics(prediction):
        ids = np.where(prediction.predictions < 0, TOKENIZER.pad_token_id, prediction.predictions)
        seen["texts"] = processor.batch_decode(ids, skip_special_tokens=True)
        return {"findings_accuracy": findings_accuracy(seen["texts"], evaluation.present)}

    evaluation = _Studies(8, seed=5)
    arguments = Seq2SeqTrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=8,
        num_train_epochs=10,
        learning_rate=3e-3,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        predict_with_generate=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=arguments,
        train_dataset=_Studies(32, seed=3),
        eval_dataset=evaluation,
        data_collator=collate,
        processing_class=processor,
        compute_metrics=compute_metrics,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 20 and np.mean(losses[-2:]) < 0.5 * np.mean(losses[:2])
    metrics = trainer.evaluate()
    assert "eval_loss" in metrics and "eval_findings_accuracy" in metrics
    texts = seen["texts"]
    assert metrics["eval_findings_accuracy"] == findings_accuracy(texts, evaluation.present)
    # generated reports, not teacher-forced argmaxes: the Trainer's texts are exactly what generate() writes
    model.eval()
    with torch.no_grad():
        direct = model.generate(pixel_values=evaluation.pixel_values.to(model.device))
    assert texts == processor.batch_decode(direct, skip_special_tokens=True)
    # and after 20 steps nearly all of them are whole sentences
    assert len(texts) == 8 and sum(text.endswith(".") for text in texts) >= 6, "\n".join(texts)


STEPS, LR = 300, 3e-3


# ---------------------------------------------------------------------------------------------------------------
# Issue 13: the authors' step decay through the Trainer, and recipes that say where each value comes from
# ---------------------------------------------------------------------------------------------------------------


def _trainer(tmp_path, **overrides):
    from modeling_rrg_mamba.training import ReportGenerationTrainingArguments
    from modeling_rrg_mamba.training.trainer import ReportGenerationTrainer

    settings = dict(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        num_train_epochs=5,
        learning_rate=2e-3,
        visual_extractor_learning_rate=1e-3,
        amsgrad=True,
        lr_scheduler_type="constant",
        lr_decay_epochs=2,
        lr_decay_rate=0.5,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
    )
    settings.update(overrides)
    arguments = ReportGenerationTrainingArguments(**settings)
    model = RRGMambaForConditionalGeneration(conditioning_config())
    return ReportGenerationTrainer(
        model=model, args=arguments, train_dataset=_Studies(10, seed=3), data_collator=lambda examples: examples
    )


def test_step_decay_multiplies_every_group_every_n_epochs(tmp_path):
    trainer = _trainer(tmp_path)  # 10 studies, batch 4: 3 optimiser steps per epoch, decay every 2 epochs
    trainer.create_optimizer_and_scheduler(num_training_steps=15)
    rates = []
    for _ in range(14):
        rates.append([group["lr"] for group in trainer.optimizer.param_groups])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    expected = [[1e-3 * f, 2e-3 * f] for f in [1.0] * 6 + [0.5] * 6 + [0.25] * 2]
    np.testing.assert_allclose(rates, expected)


def test_step_decay_counts_accumulated_steps_and_is_off_by_default(tmp_path):
    trainer = _trainer(tmp_path, gradient_accumulation_steps=2, lr_decay_epochs=1)  # 3 batches -> 2 steps / epoch
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.StepLR) and trainer.lr_scheduler.step_size == 2
    plain = _trainer(tmp_path / "plain", lr_decay_epochs=None)
    plain.create_optimizer_and_scheduler(num_training_steps=10)
    assert not isinstance(plain.lr_scheduler, torch.optim.lr_scheduler.StepLR)
    with pytest.raises(ValueError, match="lr_decay_epochs"):
        _trainer(tmp_path, lr_scheduler_type="linear")


@pytest.mark.parametrize("name", ["rrg_mamba_iu_xray", "rrg_mamba_mimic_cxr", "rrg_mamba_chexpert_plus"])
def test_recipes_follow_the_authors_script_and_name_every_source(name, tmp_path):
    import json

    from transformers import HfArgumentParser

    from modeling_rrg_mamba.training import DataArguments, ModelArguments, ReportGenerationTrainingArguments
    from modeling_rrg_mamba.training.recipes import load_recipe, parse_with_recipe, resolve_recipe_path

    recipe = load_recipe(name)
    overrides = json.loads(recipe["config_overrides"])
    assert (overrides["observation_loss_weight"], overrides["consistency_loss_weight"]) == (1.0, 0.15)
    assert (recipe["lr_decay_epochs"], recipe["lr_decay_rate"], recipe["lr_scheduler_type"]) == (50, 0.8, "constant")
    # The saved model decodes as the recipe evaluates: beam 3 and the recipe's report length.
    assert overrides["generation_num_beams"] == recipe["generation_num_beams"] == 3
    assert overrides["generation_max_length"] == recipe["generation_max_length"] == recipe["max_length"]
    config = RRGMambaConfig(**{k: v for k, v in overrides.items() if k != "pretrained_backbone"})
    assert (config.generation_num_beams, config.generation_max_length) == (3, recipe["max_length"])
    for line in resolve_recipe_path(name).read_text().splitlines():
        if line.strip() and not line.startswith("#") and line.split("#")[0].strip().endswith(":") is False:
            source = line.split("#", 1)[1] if "#" in line else ""
            assert any(word in source for word in ("paper", "script", "R2Gen", "ours")), line
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    _, _, arguments = parse_with_recipe(parser, ["--recipe", name, "--output_dir", str(tmp_path), "--use_cpu", "true"])
    assert (arguments.lr_decay_epochs, arguments.lr_decay_rate) == (50, 0.8)
