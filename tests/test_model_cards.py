"""Model cards as the Hub reads them: YAML front matter with `metrics`, a `model-index` of the evaluation results,
`base_model`, and the saved decoding settings in the text."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import SMALLEST_RRG_MAMBA
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from modeling_rrg_mamba.emrrg import EMRRGConfig, EMRRGForConditionalGeneration, EMRRGProcessor
from modeling_rrg_mamba.hub import render_model_card
from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor
from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration

METRICS = {
    "metrics": {
        "BLEU_1": 0.5123,
        "BLEU_2": 0.35,
        "BLEU_3": 0.25,
        "BLEU_4": 0.2046,
        "METEOR": 0.21,
        "ROUGE_L": 0.4,
        "CIDEr": 0.45,
        "ce_14_micro_precision": 0.31,
        "ce_14_micro_recall": 0.22,
        "ce_14_micro_f1": 0.257,
    },
    "num_pairs": 590,
    "clean_style": "iu_xray",
}
PROMPT = "Human: <Img>{image}</Img> describe the film . Assistant:"


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


@pytest.fixture(scope="module")
def rrg_mamba():
    torch.manual_seed(0)
    config = RRGMambaConfig(**SMALLEST_RRG_MAMBA)
    return RRGMambaForConditionalGeneration(config).eval()


@pytest.fixture(scope="module")
def emrrg():
    backend = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.train_from_iterator(
        [PROMPT, "heart size is normal ."],
        trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]),
    )
    backend.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]"
    )
    processor = EMRRGProcessor(
        XrayImageProcessor(size=32, crop_size=32), tokenizer, image_seq_length=5, prompt_template=PROMPT
    )
    config = EMRRGConfig(
        vision_config=dict(hidden_size=16, num_hidden_layers=1, image_size=32, patch_size=16, d_state=4),
        text_config=dict(
            model_type="llama",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=len(tokenizer) - 1,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
        ),
        hybrid_layer_interval=1,
        image_token_id=processor.image_token_id,
    )
    return EMRRGForConditionalGeneration(config).eval()


def test_front_matter_has_metrics_and_model_index(rrg_mamba):
    card = render_model_card(
        rrg_mamba, METRICS, repo_id="me/tiny", datasets=["iu-xray"], dataset_name="IU X-Ray (test split)"
    )
    meta = front_matter(card)
    assert set(meta["metrics"]) == {"bleu", "meteor", "rouge", "cider", "precision", "recall", "f1"}
    (entry,) = meta["model-index"]
    assert entry["name"] == "me/tiny"
    (result,) = entry["results"]
    assert result["task"]["type"] == "image-text-to-text"
    assert result["dataset"] == {"type": "iu-xray", "name": "IU X-Ray (test split)", "split": "test"}
    scores = {metric["name"]: metric["value"] for metric in result["metrics"]}
    assert scores["BLEU-4"] == pytest.approx(0.2046) and scores["CIDEr"] == pytest.approx(0.45)
    assert scores["CE-14 micro f1"] == pytest.approx(0.257)
    assert {metric["type"] for metric in result["metrics"] if metric["name"].startswith("BLEU")} == {"bleu"}
    assert len(scores) == 10
    assert "base_model" not in meta  # trained from scratch
    assert "| BLEU-4 | 0.205 |" in card


def test_huggingface_hub_reads_the_evaluation_results(rrg_mamba, tmp_path):
    from huggingface_hub import ModelCard, metadata_load

    path = tmp_path / "README.md"
    path.write_text(
        render_model_card(
            rrg_mamba, METRICS, repo_id="me/tiny", datasets=["iu-xray"], base_model="someone/source-model"
        )
    )
    assert metadata_load(path)["base_model"] == "someone/source-model"
    card = ModelCard.load(path)
    results = {result.metric_name: result for result in card.data.eval_results}
    assert results["BLEU-1"].metric_value == pytest.approx(0.5123)
    assert results["BLEU-1"].dataset_type == "iu-xray" and results["BLEU-1"].task_type == "image-text-to-text"
    assert "Converted from [`someone/source-model`](https://huggingface.co/someone/source-model)." in card.text


def test_no_metrics_no_model_index(rrg_mamba):
    meta = front_matter(render_model_card(rrg_mamba, repo_id="me/tiny"))
    assert "model-index" not in meta and "metrics" not in meta
    assert meta["pipeline_tag"] == "image-text-to-text"


def test_saved_decoding_settings_are_printed(rrg_mamba):
    rrg_mamba.generation_config.num_beams = 3
    rrg_mamba.generation_config.max_new_tokens = 60
    rrg_mamba.generation_config.no_repeat_ngram_size = 3
    try:
        card = render_model_card(rrg_mamba, repo_id="me/tiny")
    finally:
        rrg_mamba.generation_config.num_beams = 1
        rrg_mamba.generation_config.max_new_tokens = None
        rrg_mamba.generation_config.no_repeat_ngram_size = None
    assert "`num_beams=3`, `max_new_tokens=60`, `no_repeat_ngram_size=3`." in card
    assert "`generation_config.json`" in card


def test_default_decoding_settings_are_printed_too(rrg_mamba):
    assert "`num_beams=1`" in render_model_card(rrg_mamba, repo_id="me/tiny")
    saved_length = rrg_mamba.generation_config.max_length
    rrg_mamba.generation_config.max_length = 40  # no max_new_tokens: the card shows max_length
    try:
        card = render_model_card(rrg_mamba, repo_id="me/tiny")
    finally:
        rrg_mamba.generation_config.max_length = saved_length
    assert "`num_beams=1`, `max_length=40`" in card


def test_emrrg_base_model_is_its_language_model(emrrg):
    emrrg.config.text_config._name_or_path = "some-org/tiny-llm"
    meta = front_matter(render_model_card(emrrg, repo_id="me/tiny-emrrg"))
    assert meta["base_model"] == "some-org/tiny-llm"
    emrrg.config.text_config._name_or_path = "/models/local-llm"  # a local path is no Hub link
    card = render_model_card(emrrg, repo_id="me/tiny-emrrg")
    assert "base_model" not in front_matter(card) and "Base language model" not in card


def test_base_model_must_be_a_repo_id(rrg_mamba, tmp_path):
    with pytest.raises(ValueError, match="not Hub repository ids"):
        render_model_card(rrg_mamba, repo_id="me/tiny", base_model=str(tmp_path))
    meta = front_matter(render_model_card(rrg_mamba, repo_id="me/tiny", base_model=["a/b", "c/d"]))
    assert meta["base_model"] == ["a/b", "c/d"]
