"""Train RRG-Mamba on IU X-Ray from Python, one building block at a time.

``rrg-mamba train --recipe rrg_mamba_iu_xray`` does the same in one command; this script spells the steps out for
readers who want to change one of them (the dataset, the tokenizer, the model config, the trainer).

    python examples/train_iu_xray.py --annotation iu_xray/annotation.json --image_root iu_xray/images \
        --output_dir runs/iu_xray

``--smoke`` runs two steps of a tiny model on the bundled demo films instead (a check that everything is wired).
The paper's model starts from ImageNet DenseNet-121 weights, which timm downloads on first use.
"""

from __future__ import annotations

import argparse

from modeling_rrg_mamba.commands.demo import DEMO_DATA
from modeling_rrg_mamba.data import RRGMambaDataCollator, add_observation_labels, load_r2gen_annotation
from modeling_rrg_mamba.metrics import ReportGenerationMetrics
from modeling_rrg_mamba.rrg_mamba import (
    RRGMambaConfig,
    RRGMambaForConditionalGeneration,
    RRGMambaImageProcessor,
    RRGMambaProcessor,
    RRGMambaTokenizer,
)
from modeling_rrg_mamba.training import (
    FinalEvaluationCallback,
    ReportGenerationTrainer,
    ReportGenerationTrainingArguments,
    SeededAugmentationCollator,
)
from modeling_rrg_mamba.training.trainer import AugmentationEpochCallback

PAPER_MODEL = {"visual_extractor": "densenet121", "pretrained_backbone": True, "gdlm_preset": "base"}
SMOKE_MODEL = {
    "visual_extractor": "resnet18",
    "backbone_kwargs": {"layers": [1, 1, 1, 1]},
    "gdlm_preset": None,
    "gdlm_dim": 32,
    "gdlm_depth": 1,
    "d_model": 32,
    "d_ff": 64,
    "num_attention_heads": 2,
    "encoder_layers": 1,
    "decoder_layers": 1,
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotation", help="R2Gen iu_xray/annotation.json")
    parser.add_argument("--image_root", help="R2Gen iu_xray/images")
    parser.add_argument("--output_dir", default="runs/iu_xray")
    parser.add_argument("--smoke", action="store_true", help="two steps of a tiny model on the bundled demo films")
    args = parser.parse_args()
    if args.smoke:
        args.annotation, args.image_root = str(DEMO_DATA / "annotation.json"), str(DEMO_DATA / "images")
    elif args.annotation is None or args.image_root is None:
        parser.error("--annotation and --image_root are required (or --smoke)")
    return args


def main() -> None:
    args = parse_arguments()
    # 1. Studies (two views each for IU X-Ray) with CheXpert pseudo-labels for the cross-modal adapter.
    dataset = add_observation_labels(load_r2gen_annotation(args.annotation, image_root=args.image_root))
    # 2. R2Gen's word vocabulary (threshold 3) and preprocessing (resize 256, crop 224, flip).
    tokenizer = RRGMambaTokenizer.from_reports(dataset["train"]["report"], threshold=1 if args.smoke else 3)
    size, crop = (72, 64) if args.smoke else (256, 224)
    processor = RRGMambaProcessor(RRGMambaImageProcessor(size=size, crop_size=crop), tokenizer, max_length=60)
    # 3. The model: DenseNet-121 + GDLM-base + cross-modal adapter + 3+3-layer encoder-decoder.
    config = RRGMambaConfig(vocab_size=len(tokenizer), **(SMOKE_MODEL if args.smoke else PAPER_MODEL))
    model = RRGMambaForConditionalGeneration(config)
    # 4. The paper's optimisation: Adam-AMSGrad, 1e-3 for the visual extractor, 2e-3 for the rest, wd 5e-5;
    #    the checkpoint with the best validation BLEU-4 is kept.
    training_args = ReportGenerationTrainingArguments(
        output_dir=args.output_dir,
        learning_rate=2e-3,
        visual_extractor_learning_rate=1e-3,
        weight_decay=5e-5,
        amsgrad=True,
        per_device_train_batch_size=4 if args.smoke else 32,
        num_train_epochs=100,
        max_steps=2 if args.smoke else -1,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="BLEU_4",
        generation_num_beams=3,
        generation_max_length=60,
        report_to=["tensorboard"],
        use_cpu=args.smoke,
    )
    # Training batches are augmented (random crop + flip), reproducibly across resumes; evaluation batches are not.
    train_collator = SeededAugmentationCollator(
        RRGMambaDataCollator(processor, processor_kwargs={"do_train_augmentation": True}), seed=training_args.seed
    )
    trainer = ReportGenerationTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        data_collator=RRGMambaDataCollator(processor),
        train_data_collator=train_collator,
        processing_class=processor,
        compute_metrics=ReportGenerationMetrics(processor, clean_style="iu_xray"),
        # The last step is evaluated too, so model selection sees the final weights.
        callbacks=[AugmentationEpochCallback(train_collator), FinalEvaluationCallback()],
    )
    trainer.train()
    trainer.save_model()
    trainer.save_state()
    print(f"model and processor saved to {args.output_dir}; best checkpoint: {trainer.state.best_model_checkpoint}")


if __name__ == "__main__":
    main()
