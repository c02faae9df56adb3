"""EMRRGProcessor: prompt expansion, label masking, padding sides, chat templates (the instruction, LLaVA-style
messages through apply_chat_template and the image-text-to-text pipeline), save/load, bad input."""

import numpy as np
import pytest
import torch
from conftest import PROMPT, TEXT_CONFIGS, TINY_VISION, randomize_gates, tiny_tokenizer
from PIL import Image
from transformers import AutoProcessor, pipeline

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration, EMRRGProcessor
from modeling_rrg_mamba.emrrg.processing_emrrg import DEFAULT_INSTRUCTION
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
    with pytest.raises(ValueError, match=r"reports\[1\]: expected a string, got NoneType"):
        proc(images=films(2), reports=["opacity .", None])
    with pytest.raises(ValueError, match=r"text\[0\]: expected a string, got int"):
        proc(images=films(1), text=[5])
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="max_report_tokens: expected a positive integer"):
            proc(images=films(1), reports=["opacity ."], max_report_tokens=bad)


# ------------------------------------------------------------------------------- chat messages (LLaVA style)

# Chat templates of two chat-tuned LLM families, as their tokenizers ship them: ChatML (Qwen) and Llama-2-chat (which
# writes BOS itself and takes the system turn into the first user turn).
CHAT_TEMPLATES = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'"
        " + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
    "llama2": (
        "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
        "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
        "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
        "{% if loop.index0 == 0 and system_message != false %}"
        "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
        "{% else %}{% set content = message['content'] %}{% endif %}"
        "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
}
CHAT_TOKENS = {"chatml": ["<|im_start|>", "<|im_end|>"], "llama2": ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"]}
EXPECTED_PROMPTS = {
    "chatml": "<|im_start|>system\nYou read chest films .<|im_end|>\n<|im_start|>user\n<Img><image></Img> describe "
    "the film .<|im_end|>\n<|im_start|>assistant\n",
    "llama2": "[BOS][INST] <<SYS>>\nYou read chest films .\n<</SYS>>\n\n<Img><image></Img> describe the film . "
    "[/INST]",
}


def chat_processor(style: str, **kwargs) -> EMRRGProcessor:
    """The test tokenizer made chat-tuned: the family's template and its control tokens (before ``<image>``)."""
    tokenizer = tiny_tokenizer()
    tokenizer.add_tokens(CHAT_TOKENS[style], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATES[style]
    return EMRRGProcessor(XrayImageProcessor(size=32, crop_size=32), tokenizer, image_seq_length=SEQ, **kwargs)


def chat(views: int = 1, text: str = "describe the film .") -> list[dict]:
    images = [{"type": "image", "image": Image.fromarray((film * 255).astype(np.uint8))} for film in films(views)]
    return [
        {"role": "system", "content": [{"type": "text", "text": "You read chest films ."}]},
        {"role": "user", "content": [*images, {"type": "text", "text": text}]},
    ]


@pytest.mark.parametrize("style", ["chatml", "llama2"])
def test_apply_chat_template_renders_llava_messages_with_the_llm_template(style):
    proc = chat_processor(style)
    messages = chat()
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == EXPECTED_PROMPTS[style]
    batch = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    ids = batch["input_ids"][0]
    assert int((ids == proc.image_token_id).sum()) == SEQ
    assert batch["pixel_values"].shape[0] == 1 and batch["pixel_values"].shape[-3:] == (3, 32, 32)
    # one BOS: written by the Llama-2 template (the tokenizer adds none then), added by the tokenizer for ChatML
    bos = proc.tokenizer.bos_token_id
    assert ids[0] == bos and int((ids == bos).sum()) == 1
    for token in CHAT_TOKENS[style][:2]:  # the control tokens stay single tokens
        assert proc.tokenizer.convert_tokens_to_ids(token) in ids.tolist()
    direct = proc(images=films(1), text=[prompt], add_special_tokens=style == "chatml")["input_ids"]
    assert torch.equal(batch["input_ids"], direct)


def test_chat_views_of_one_study_share_one_placeholder():
    messages = chat(views=2)
    for fusion, tokens in (("mean", SEQ), ("concat", 2 * SEQ)):
        proc = chat_processor("chatml", multi_view_fusion=fusion)
        assert proc.apply_chat_template(messages, add_generation_prompt=True).count("<image>") == 1
        batch = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
        assert batch["pixel_values"].shape == (1, 2, 3, 32, 32)
        assert int((batch["input_ids"] == proc.image_token_id).sum()) == tokens


def test_chat_without_any_template_gives_the_papers_prompt():
    proc = EMRRGProcessor(XrayImageProcessor(size=32, crop_size=32), tiny_tokenizer(), image_seq_length=SEQ)
    instruction = DEFAULT_INSTRUCTION.replace("<Img>{image}</Img> ", "")
    messages = chat(text=instruction)[1:]
    assert proc.apply_chat_template(messages, add_generation_prompt=True) == proc.default_prompt()
    batch = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert torch.equal(batch["input_ids"], proc(images=films(1))["input_ids"])


def test_chat_template_survives_save_and_load(tmp_path):
    proc = chat_processor("chatml")
    proc.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert loaded.apply_chat_template(chat(), add_generation_prompt=True) == EXPECTED_PROMPTS["chatml"]


def test_a_processor_chat_template_of_its_own_is_used_as_is():
    own = (
        "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}"
        "{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
    )
    proc = chat_processor("chatml", chat_template=own)
    assert proc.apply_chat_template(chat()[1:]) == "<image>describe the film ."


def tiny_chat_model(proc: EMRRGProcessor) -> EMRRGForConditionalGeneration:
    """A random EMRRG whose LLM knows every token of ``proc`` but the image placeholder (the last id)."""
    tokenizer = proc.tokenizer
    text = dict(
        TEXT_CONFIGS["llama"],
        vocab_size=len(tokenizer) - 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    config = EMRRGConfig(
        text_config=text, vision_config=TINY_VISION, image_token_id=proc.image_token_id, hybrid_layer_interval=1
    )
    model = EMRRGForConditionalGeneration(config).eval()
    randomize_gates(model)
    return model


@pytest.mark.parametrize("style", ["chatml", "llama2"])
def test_image_text_to_text_pipeline_continues_a_chat(style):
    proc = chat_processor(style)
    model = tiny_chat_model(proc)
    messages = chat()
    decoding = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, num_beams=1)
    inputs = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    with torch.no_grad():
        ids = model.generate(**inputs, **decoding)
    expected = proc.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
    pipe = pipeline("image-text-to-text", model=model, processor=proc)
    output = pipe(text=messages, return_full_text=False, generate_kwargs=dict(decoding))
    assert output[0]["generated_text"].strip() == expected.strip() != ""
