"""Issue 26, part 6: no noise hides the line that matters -- no transformers warning repeated at every batch of
`generate`, and a model folder of the wrong kind is one line naming it (not a load report of every weight)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from conftest import DEMO_DATA, save_demo_model, save_tiny_emrrg, save_tiny_llm

from modeling_rrg_mamba.cli import main

DEMO_IMAGES = sorted((DEMO_DATA / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """Saved folders of every kind a user may give by mistake: both models, plain GPT-2 / BERT, a processor alone."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("folders")
    llm = save_tiny_llm(root / "llm")
    found = {"rrg_mamba": save_demo_model(root / "rrg_mamba"), "emrrg": save_tiny_emrrg(root / "emrrg", llm)}
    found["llm"] = llm
    GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)).save_pretrained(root / "gpt2")
    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(root / "bert")
    found["gpt2"], found["bert"] = root / "gpt2", root / "bert"
    found["processor_only"] = root / "processor_only"
    found["processor_only"].mkdir()
    for item in found["rrg_mamba"].iterdir():
        if item.name.startswith(("processor", "tokenizer", "preprocessor")):
            shutil.copy(item, found["processor_only"] / item.name)
    return found


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def with_both_length_limits(source: Path, folder: Path, max_new_tokens: int) -> Path:
    """A copy whose saved generation config has a max_length (an LLM's 4096, or an older save's) beside its
    max_new_tokens, and no end-of-sequence token, so that every report is exactly as long as the limit allows."""
    shutil.copytree(source, folder)
    config_file = folder / "generation_config.json"
    config = json.loads(config_file.read_text())
    config.update(max_length=4096, max_new_tokens=max_new_tokens, eos_token_id=None, num_beams=1)
    config_file.write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("kind", ["rrg_mamba", "emrrg"])
@pytest.mark.parametrize("max_new_tokens", [None, 2])
def test_generate_never_warns_about_both_length_limits_and_keeps_max_new_tokens(
    folders, tmp_path, capfd, monkeypatch, kind, max_new_tokens
):
    from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration
    from modeling_rrg_mamba.rrg_mamba import RRGMambaForConditionalGeneration

    model = with_both_length_limits(folders[kind], tmp_path / "model", max_new_tokens=5)
    model_class = RRGMambaForConditionalGeneration if kind == "rrg_mamba" else EMRRGForConditionalGeneration
    original, new_tokens = model_class.generate, []

    def counting_generate(self, *args, **kwargs):
        sequences = original(self, *args, **kwargs)
        prompt = 1 if self.config.is_encoder_decoder else kwargs["input_ids"].shape[1]
        new_tokens.append(sequences.shape[1] - prompt)
        return sequences

    monkeypatch.setattr(model_class, "generate", counting_generate)
    handler = Records()
    logging.getLogger("transformers").addHandler(handler)
    argv = ["generate", "--model", str(model), "--images", *map(str, DEMO_IMAGES[:3]), "--batch_size", "1"]
    argv += ["--output", str(tmp_path / "reports.jsonl")]
    try:
        assert main(argv + ([] if max_new_tokens is None else ["--max_new_tokens", str(max_new_tokens)])) == 0
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    captured = capfd.readouterr()
    printed = captured.out + captured.err + "\n".join(handler.messages)
    assert "max_new_tokens" not in printed and "max_length" not in printed
    assert new_tokens == [max_new_tokens or 5] * 3  # three batches, each exactly as long as max_new_tokens says
    assert json.loads((model / "generation_config.json").read_text())["max_length"] == 4096  # the folder untouched


def _output_lines(capfd) -> list[str]:
    captured = capfd.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if line.strip()]


@pytest.mark.parametrize(
    "folder, found", [("gpt2", "'gpt2'"), ("bert", "'bert'"), ("llm", "'llama'"), ("processor_only", "a processor")]
)
def test_generate_with_a_folder_of_another_kind_is_one_line(folders, tmp_path, capfd, folder, found):
    argv = ["generate", "--model", str(folders[folder]), "--images", str(DEMO_IMAGES[0])]
    assert main([*argv, "--output", str(tmp_path / "reports.jsonl")]) == 2
    lines = _output_lines(capfd)
    assert len(lines) == 1, lines
    assert str(folders[folder]) in lines[0] and found in lines[0] and "'rrg_mamba' or 'emrrg'" in lines[0]
    assert not (tmp_path / "reports.jsonl").exists()


def train_argv(output_dir: Path, model_type: str, *extra: str) -> list[str]:
    argv = ["train", "--annotation", str(DEMO_DATA / "annotation.json"), "--image_root", str(DEMO_DATA / "images")]
    argv += ["--output_dir", str(output_dir), "--use_cpu", "--max_steps", "1", "--model_type", model_type]
    return [*argv, *extra]


@pytest.mark.parametrize(
    "model_type, folder, found",
    [
        ("emrrg", "rrg_mamba", "'rrg_mamba'"),
        ("rrg_mamba", "emrrg", "'emrrg'"),
        ("rrg_mamba", "gpt2", "'gpt2'"),
        ("emrrg", "bert", "'bert'"),
        ("rrg_mamba", "processor_only", "a processor"),
    ],
)
def test_train_from_a_folder_of_another_kind_is_one_line(folders, tmp_path, capfd, model_type, folder, found):
    argv = train_argv(tmp_path / "out", model_type, "--model_name_or_path", str(folders[folder]))
    assert main(argv) == 2
    lines = _output_lines(capfd)
    assert len(lines) == 1, lines
    assert str(folders[folder]) in lines[0] and found in lines[0] and f"expected '{model_type}'" in lines[0]
    assert not (tmp_path / "out").exists()


def test_train_resuming_a_checkpoint_of_another_kind_is_one_line(folders, tmp_path, capfd):
    checkpoint = tmp_path / "out" / "checkpoint-1"
    shutil.copytree(folders["rrg_mamba"], checkpoint)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    argv = train_argv(tmp_path / "out", "emrrg", "--text_model_name_or_path", str(folders["llm"]))
    assert main([*argv, "--resume_from_checkpoint", "last"]) == 2
    lines = _output_lines(capfd)
    assert len(lines) == 1, lines
    assert str(checkpoint) in lines[0] and "'rrg_mamba'" in lines[0] and "expected 'emrrg'" in lines[0]


def test_generate_with_foreign_weights_shows_no_load_report(folders, tmp_path, capfd):
    """config.json says RRG-Mamba, the weights are another model's: the error line, without transformers' table."""
    model = tmp_path / "model"
    shutil.copytree(folders["rrg_mamba"], model)
    shutil.copy(folders["gpt2"] / "model.safetensors", model / "model.safetensors")
    argv = ["generate", "--model", str(model), "--images", str(DEMO_IMAGES[0]), "--output", str(tmp_path / "r.jsonl")]
    assert main([*argv, "--num_beams", "1", "--max_new_tokens", "2"]) == 2
    lines = _output_lines(capfd)
    assert "LOAD REPORT" not in "\n".join(lines) and len(lines) <= 2, lines
    assert lines[-1].startswith("rrg-mamba: error: --model") and str(model) in lines[-1]


@pytest.mark.parametrize(
    "folder, found", [("rrg_mamba", "'rrg_mamba'"), ("emrrg", "'emrrg'"), ("processor_only", "a processor")]
)
def test_convert_with_a_text_model_of_another_kind_is_one_line(folders, tmp_path, capfd, folder, found):
    checkpoint = tmp_path / "EMRRG-CXP.pth"
    checkpoint.write_bytes(b"not read: the text model is checked first")
    argv = ["convert", "--checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "out")]
    assert main([*argv, "--text_model", str(folders[folder])]) == 2
    lines = _output_lines(capfd)
    assert len(lines) == 1, lines
    assert "--text_model" in lines[0] and str(folders[folder]) in lines[0] and found in lines[0]
    assert "causal language model" in lines[0] and not (tmp_path / "out").exists()


def length_case_arguments(folder: Path, case: str) -> list[str]:
    """Command-line settings of a length case: none (the saved max_new_tokens), the Trainer's
    --generation_max_length, a --generation_config file of decoding settings, or both."""
    settings_file = folder / "decoding.json"
    settings_file.write_text(json.dumps({"max_new_tokens": 2, "num_beams": 1}))
    found = {"saved": [], "trainer": ["--generation_max_length", "4"]}
    found["file"] = ["--generation_config", str(settings_file)]
    found["file_and_trainer"] = found["file"] + found["trainer"]
    return found[case]


@pytest.mark.parametrize("kind", ["rrg_mamba", "emrrg"])
@pytest.mark.parametrize("case", ["saved", "trainer", "file", "file_and_trainer"])
def test_training_evaluation_never_warns_about_both_length_limits_and_keeps_the_asked_length(
    folders, tmp_path, capfd, monkeypatch, kind, case
):
    """Evaluation during training (predict_with_generate, one study per batch): the saved config holds an LLM's
    max_length beside max_new_tokens; whatever the run asks for is the one limit used, and nothing warns."""
    from transformers import HfArgumentParser

    from modeling_rrg_mamba.training import DataArguments, ModelArguments, ReportGenerationTrainingArguments
    from modeling_rrg_mamba.training.build import build_trainer
    from modeling_rrg_mamba.training.trainer import generating_model

    model = with_both_length_limits(folders[kind], tmp_path / "model", max_new_tokens=5)
    argv = train_argv(tmp_path / "out", kind, "--model_name_or_path", str(model))[1:]
    argv += ["--per_device_eval_batch_size", "1", "--max_eval_samples", "3", "--report_to", "none"]
    argv += ["--generation_num_beams", "1", *length_case_arguments(tmp_path, case)]
    parser = HfArgumentParser((ModelArguments, DataArguments, ReportGenerationTrainingArguments))
    trainer = build_trainer(*parser.parse_args_into_dataclasses(argv))
    generating = generating_model(trainer.model)
    token_ids = {name: getattr(generating.generation_config, name) for name in ("bos_token_id", "pad_token_id")}
    original, new_tokens = type(generating).generate, []

    def counting_generate(self, *args, **kwargs):
        sequences = original(self, *args, **kwargs)
        prompt = 1 if self.config.is_encoder_decoder else kwargs["input_ids"].shape[1]
        new_tokens.append(sequences.shape[1] - prompt)
        return sequences

    monkeypatch.setattr(type(generating), "generate", counting_generate)
    capfd.readouterr()
    handler = Records()
    logging.getLogger("transformers").addHandler(handler)
    try:
        trainer.evaluate()
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    captured = capfd.readouterr()
    printed = captured.out + captured.err + "\n".join(handler.messages)
    assert "max_new_tokens" not in printed and "max_length" not in printed
    if "trainer" in case:  # --generation_max_length 4 wins; an encoder-decoder's max_length counts its start token
        expected = 4 - 1 if generating.config.is_encoder_decoder else 4
    else:
        expected = 2 if case == "file" else 5
    assert new_tokens == [expected] * 3
    assert {name: getattr(generating.generation_config, name) for name in token_ids} == token_ids
    assert generating.generation_config.max_new_tokens == (2 if "file" in case else 5)  # restored after evaluation
