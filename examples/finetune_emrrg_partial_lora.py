"""Fine-tune EMRRG with Partial LoRA (Zhang et al., 2025) from the ``emrrg_iu_xray`` recipe.

The X-ray Mamba and the LLM stay frozen; Partial LoRA adapts the x half of every Mamba ``in_proj``, ordinary LoRA
the LLM's attention projections, and the projector and hybrid cross-attention layers train in full. The script
prints the trainable share (the paper: 2.3 % of full fine-tuning) before training.

    accelerate launch --num_processes 4 examples/finetune_emrrg_partial_lora.py \
        --annotation iu_xray/annotation.json --image_root iu_xray/images --output_dir runs/emrrg_iu_xray \
        --text_model_name_or_path checkpoints/Llama-2-7b-chat-hf \
        --vision_model_name_or_path checkpoints/xray_mamba_base

Any ``rrg-mamba train`` flag overrides the recipe. ``--smoke`` builds a tiny local LLM and runs two CPU steps on the
bundled demo films instead (no downloads, no DeepSpeed).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import HfArgumentParser, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from modeling_rrg_mamba.commands.demo import DEMO_DATA
from modeling_rrg_mamba.emrrg import count_parameters
from modeling_rrg_mamba.training import (
    DataArguments,
    ModelArguments,
    ReportGenerationTrainingArguments,
    build_trainer,
    parse_with_recipe,
)


def save_tiny_llm(folder: Path) -> Path:
    """A 2-layer Llama and a word-level tokenizer of the demo texts, saved like any local LLM checkpoint."""
    annotation = json.loads((DEMO_DATA / "annotation.json").read_text())
    corpus = [entry["report"] for split in annotation.values() for entry in split]
    corpus.append(
        "Human: Generate a comprehensive and detailed diagnosis report for this chest xray image. Assistant:"
    )
    backend = Tokenizer(models.WordLevel(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"]))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def smoke_arguments(folder: Path) -> list[str]:
    vision = {
        "vision_config": {"hidden_size": 32, "num_hidden_layers": 2, "image_size": 64, "d_state": 4},
        "num_views": 1,
        "hybrid_layer_interval": 1,
    }
    return [
        "--text_model_name_or_path",
        str(save_tiny_llm(folder / "llm")),
        "--vision_model_name_or_path",
        "",
        "--config_overrides",
        json.dumps(vision),
        "--image_size",
        "64",
        "--resize_size",
        "72",
        "--annotation",
        str(DEMO_DATA / "annotation.json"),
        "--image_root",
        str(DEMO_DATA / "images"),
        "--output_dir",
        str(folder / "run"),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "1",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--do_predict",
        "false",
        "--bf16",
        "false",
        "--gradient_checkpointing",
        "false",
        "--deepspeed",
        "",
        "--use_cpu",
        "--report_to",
        "none",
    ]


def main(argv: list[str]) -> None:
    smoke = "--smoke" in argv
    argv = [item for item in argv if item != "--smoke"]
    with tempfile.TemporaryDirectory() as folder:
        if smoke:
            argv = smoke_arguments(Path(folder)) + argv
        parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
        model_args, data_args, training_args = parse_with_recipe(parser, ["--recipe", "emrrg_iu_xray", *argv])
        model_args.vision_model_name_or_path = model_args.vision_model_name_or_path or None
        trainer = build_trainer(model_args, data_args, training_args)
        counts = count_parameters(trainer.model)
        print(f"Partial-LoRA recipe: {counts.trainable:,} trainable of {counts.total:,} parameters", flush=True)
        trainer.train()
        trainer.save_model()  # the adapter and the fully trained modules; load with load_emrrg_adapter
        print(f"adapter saved to {training_args.output_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
