"""EMRRGProcessor: prompt expansion, label masking, padding sides, chat template, save/load, bad input."""

import numpy as np
import pytest
import torch
from conftest import PROMPT, tiny_tokenizer
from transformers import AutoProcessor

from modeling_rrg_mamba.emrrg import EMRRGProcessor
from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor
from modeling_rrg_mamba.image_processing_xray_fast import XrayImageProcessorFast

SEQ = 5
CHAT = (
    "{% for m in messages %}[BOS] {{ m['role'] }} : {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}Assistant :{% endif %}"
)


def processor(**kwargs) -> EMRRGProcessor:
    kwargs.setdefault("prompt_template", PROMPT)
    return EMRRGProcessor(XrayImageProcessor(size=32, crop_size=32), tiny_tokenizer(), image_seq_length=SEQ, **kwargs)


def films(n: int, views: int = 0):
    rng = np.random.default_rng(0)
    one = lambda: rng.random((40, 36)).astype(np.float32)  # noqa: E731
    return [[one() for _ in range(views)] if views else one() for _ in range(n)]


def test_training_batch_masks_prompt_and_pads_right():
    proc = processor()
    batch = proc(images=films(2), reports=["opacity left .", "opacity upper right ."])
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert batch["pixel_values"].shape == (2, 3, 32, 32)
    assert ((ids == proc.image_token_id).sum(1) == SEQ).all()
    prompt_length = int((labels[0] == -100).long().cumprod(0).sum())
    assert (ids[:, :prompt_length] == ids[0, :prompt_length]).all()
    report_0 = proc.tokenizer("opacity left .", add_special_tokens=False)["input_ids"] + [proc.tokenizer.eos_token_id]
    assert labels[0, prompt_length : prompt_length + len(report_0)].tolist() == report_0
    assert (labels[0, prompt_length + len(report_0) :] == -100).all() and mask[0, -1] == 0  # right padding
    assert mask[1].all()


def test_generation_batch_pads_left_and_expands_views():
    proc = processor(multi_view_fusion="concat")
    batch = proc(images=films(2, views=2), text=[PROMPT.format(image="<image>"), "describe <image> ."])
    assert batch["pixel_values"].shape == (2, 2, 3, 32, 32)
    assert ((batch["input_ids"] == proc.image_token_id).sum(1) == 2 * SEQ).all()
    # the default, as the authors ran it: the views are averaged, so a study has one view's tokens
    averaged = processor()(images=films(2, views=2))
    assert ((averaged["input_ids"] == proc.image_token_id).sum(1) == SEQ).all()
    assert "labels" not in batch
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()  # left padding


def test_chat_template_renders_instruction():
    proc = processor(use_chat_template=True, instruction="<Img>{image}</Img> describe the film .", chat_template=CHAT)
    prompt = proc.default_prompt()
    assert prompt.startswith("[BOS] user : <Img><image></Img>") and prompt.endswith("Assistant :")
    ids = proc(images=films(1))["input_ids"][0]
    assert ids[0] == proc.tokenizer.bos_token_id and (ids == proc.tokenizer.bos_token_id).sum() == 1
    with pytest.raises(ValueError, match="chat_template"):
        processor(use_chat_template=True).default_prompt()


def test_save_load_roundtrip(tmp_path):
    proc = processor()
    proc.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, EMRRGProcessor)  # transformers 5 loads the fast image processor, 4.57 the slow one
    assert isinstance(loaded.image_processor, (XrayImageProcessor, XrayImageProcessorFast))
    assert (loaded.image_seq_length, loaded.prompt_template, loaded.image_token_id) == (
        SEQ,
        PROMPT,
        proc.image_token_id,
    )
    images = films(2)
    assert torch.equal(loaded(images=images)["input_ids"], proc(images=images)["input_ids"])


def test_bad_input():
    proc = processor()
    with pytest.raises(ValueError, match="exactly one '<image>'"):
        proc(images=films(1), text=["no image here"])
    with pytest.raises(ValueError, match="exactly one '<image>'"):
        proc(images=films(1), text=["<image> and <image>"])
    with pytest.raises(ValueError, match="3 prompts for 2 image sets"):
        proc(images=films(2), text=["<image>"] * 3)
    with pytest.raises(ValueError, match="1 reports for 2 image sets"):
        proc(images=films(2), reports=["opacity ."])
    with pytest.raises(ValueError, match="images"):
        proc(text=["<image>"])
    with pytest.raises(ValueError, match="prompt_template"):
        processor(prompt_template="no placeholder")
