"""RRG-Mamba tokenizer (R2Gen vocabulary) and processor."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

from modeling_rrg_mamba.rrg_mamba import (
    RRGMambaConfig,
    RRGMambaImageProcessor,
    RRGMambaImageProcessorFast,
    RRGMambaProcessor,
    RRGMambaTokenizer,
)

IU_REPORTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu-xray-reports" / "annotation.json"
REPORTS = [
    "The heart is normal in size. The lungs are clear.",
    "1. No acute cardiopulmonary abnormality. 2. Stable cardiomegaly.",
    "Heart size normal. Lungs are clear. No pneumothorax.",
    "The lungs are clear. No effusion. Heart size is normal.",
]


@pytest.mark.skipif(not IU_REPORTS.is_file(), reason="shared iu-xray-reports data not present")
def test_iu_train_vocabulary_matches_r2gen():
    train = [entry["report"] for entry in json.loads(IU_REPORTS.read_text())["train"]]
    tokenizer = RRGMambaTokenizer.from_reports(train, threshold=3, report_style="iu_xray")
    # The dataset README: 760 entries including <unk> at threshold 3 (1502 at threshold 1); <pad>/<bos>/<eos> on top.
    assert tokenizer.report_vocabulary_size == 760
    assert len(tokenizer) == 763
    assert RRGMambaTokenizer.from_reports(train, threshold=1).report_vocabulary_size == 1502


def test_encoding_cleans_appends_eos_and_maps_rare_words_to_unk():
    tokenizer = RRGMambaTokenizer.from_reports(REPORTS, threshold=2)
    ids = tokenizer("The LUNGS are clear. Zebra.")["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["the", "lungs", "are", "clear", ".", "<unk>", ".", "<eos>"]
    assert tokenizer.decode(ids) == "the lungs are clear . <unk> . <eos>"
    assert tokenizer.decode(ids, skip_special_tokens=True) == "the lungs are clear . ."  # <unk> is special too


def test_tokenizer_save_load_and_auto(tmp_path):
    tokenizer = RRGMambaTokenizer.from_reports(REPORTS, threshold=1, report_style="mimic_cxr")
    tokenizer.save_pretrained(tmp_path)
    RRGMambaConfig(vocab_size=len(tokenizer)).save_pretrained(tmp_path)
    for loaded in (RRGMambaTokenizer.from_pretrained(tmp_path), AutoTokenizer.from_pretrained(tmp_path)):
        assert isinstance(loaded, RRGMambaTokenizer)
        assert loaded.report_style == "mimic_cxr"
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert loaded(REPORTS)["input_ids"] == tokenizer(REPORTS)["input_ids"]


def _processor(**kwargs):
    tokenizer = RRGMambaTokenizer.from_reports(REPORTS, threshold=1)
    return RRGMambaProcessor(RRGMambaImageProcessor(size=40, crop_size=32), tokenizer, **kwargs)


def test_processor_returns_model_ready_tensors_and_decodes():
    processor = _processor()
    image = np.zeros((50, 40), np.uint8)
    batch = processor(images=[[image, image]] * 2, reports=REPORTS[:2], observation_labels=np.ones((2, 14)))
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32)
    labels = batch["labels"]
    assert labels.dtype == torch.long and (labels[1] == -100).any() and not (labels[0] == -100).any()
    assert batch["observation_labels"].dtype == torch.float32
    decoded = processor.batch_decode(labels.clamp_min(0), skip_special_tokens=True)
    assert decoded == [processor.tokenizer.clean(report) for report in REPORTS[:2]]
    assert decoded[1] == "no acute cardiopulmonary abnormality . stable cardiomegaly ."


def test_processor_truncates_but_keeps_eos():
    processor = _processor(max_length=5)
    labels = processor(reports=REPORTS)["labels"]
    assert labels.shape[1] == 5
    assert (labels[:, -1] == processor.tokenizer.eos_token_id).all()


def test_processor_rejects_empty_reports_and_count_mismatch():
    processor = _processor()
    with pytest.raises(ValueError, match=r"reports\[1\]: empty report"):
        processor(reports=["heart normal.", "  "])
    with pytest.raises(ValueError, match=r"reports\[0\]: empty report"):
        processor(reports=[" . "])
    image = np.zeros((40, 40), np.uint8)
    with pytest.raises(ValueError, match=r"batch sizes differ .*pixel_values.: 2, .labels.: 1"):
        processor(images=[image, image], reports=["heart normal."])


def test_processor_save_load_with_auto_classes(tmp_path):
    processor = _processor(max_length=42)
    processor.save_pretrained(tmp_path)
    RRGMambaConfig(vocab_size=len(processor.tokenizer)).save_pretrained(tmp_path)
    for loaded in (RRGMambaProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, RRGMambaProcessor)
        # transformers 5 loads the fast (torchvision) image processor by default, 4.57 the slow one: same outputs
        assert isinstance(loaded.image_processor, (RRGMambaImageProcessor, RRGMambaImageProcessorFast))
        assert loaded.max_length == 42 and loaded.image_processor.crop_size == 32
        image = np.zeros((40, 40), np.uint8)
        torch.testing.assert_close(
            loaded(images=[image], reports=REPORTS[:1])["labels"], processor(reports=REPORTS[:1])["labels"]
        )
        film = np.random.default_rng(0).integers(0, 255, (48, 40), dtype=np.uint8)
        torch.testing.assert_close(
            loaded(images=[film])["pixel_values"], processor(images=[film])["pixel_values"], rtol=1e-5, atol=1e-5
        )
    image_processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(image_processor, (RRGMambaImageProcessor, RRGMambaImageProcessorFast))
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path, use_fast=False), RRGMambaImageProcessor)


def test_text_gives_decoder_prompts_that_generate_continues():
    processor = _processor()
    bos = processor.tokenizer.bos_token_id
    assert processor(text="")["decoder_input_ids"].tolist() == [[bos]]
    prompts = processor(text=["The heart is", "Lungs clear."])["decoder_input_ids"]
    # an unfinished prefix loses the " ." the R2Gen cleaner closes it with; a finished one keeps it
    assert [processor.tokenizer.convert_ids_to_tokens(row[1:]) for row in prompts.tolist()] == [
        ["the", "heart", "is"],
        ["lungs", "clear", "."],
    ]
    assert processor.batch_decode(prompts, skip_special_tokens=True) == ["the heart is", "lungs clear ."]
    with pytest.raises(ValueError, match=r"same number of words, got \[3, 1\]"):
        processor(text=["the heart is", "normal"])
    with pytest.raises(ValueError, match="return_tensors"):
        processor(text="", return_tensors="np")
    assert set(processor(images=[np.zeros((40, 40), np.uint8)], text="the heart")) == {
        "pixel_values",
        "decoder_input_ids",
    }
    with pytest.raises(ValueError, match="not both"):
        processor(text="the heart", reports="the heart is normal.")
