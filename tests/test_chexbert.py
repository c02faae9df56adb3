"""The optional CheXbert labeler on a tiny random model of the same architecture (nothing is downloaded): the
original checkpoint's key names load, heads map to CheXpert codes in the package's observation order, and
compute_ce_scores runs with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertTokenizerFast

from modeling_rrg_mamba.labeler import OBSERVATIONS
from modeling_rrg_mamba.metrics import compute_ce_scores
from modeling_rrg_mamba.metrics.chexbert import CHEXBERT_CONDITIONS, CheXbert, load_chexbert

WORDS = [
    "heart",
    "size",
    "is",
    "normal",
    ".",
    "no",
    "effusion",
    "mild",
    "cardiomegaly",
    "edema",
    "lungs",
    "are",
    "clear",
]
REPORTS = ["heart size is normal .", "mild cardiomegaly . no effusion .", "lungs are clear ."]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tokenizer")
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tokenizer_dir):
    """A random CheXbert (hidden 64 -> 1 head, 2 layers), saved as the original: DataParallel 'module.' keys
    under 'model_state_dict', with the position_ids buffer old transformers releases stored."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=1,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    model = CheXbert(config).eval()
    with torch.no_grad():  # fixed classes for some heads, to check the code mapping
        for condition, klass in (("Cardiomegaly", 1), ("Edema", 3), ("Pneumothorax", 2), ("No Finding", 0)):
            head = model.linear_heads[CHEXBERT_CONDITIONS.index(condition)]
            head.weight.zero_()
            head.bias.fill_(-5.0)
            head.bias[klass] = 5.0
    state = {f"module.{key}": value for key, value in model.state_dict().items()}
    state["module.bert.embeddings.position_ids"] = torch.arange(64)[None]
    path = tmp_path_factory.mktemp("chexbert") / "chexbert.pth"
    torch.save({"epoch": 3, "model_state_dict": state}, path)
    return model, path


def test_architecture_is_bert_with_14_heads(tiny):
    model, _ = tiny
    assert [head.out_features for head in model.linear_heads] == [4] * 13 + [2]
    assert CHEXBERT_CONDITIONS[-1] == "No Finding" and sorted(CHEXBERT_CONDITIONS) == sorted(OBSERVATIONS)


def test_original_checkpoint_loads_and_labels_like_the_model(tiny, tokenizer_dir):
    model, path = tiny
    labeler = load_chexbert(path, tokenizer=tokenizer_dir)  # config read from the checkpoint's shapes
    for name, value in model.state_dict().items():
        torch.testing.assert_close(labeler.model.state_dict()[name], value)
    codes = labeler(REPORTS)
    assert codes.shape == (3, 14)
    column = {name: OBSERVATIONS.index(name) for name in OBSERVATIONS}
    assert (codes[:, column["Cardiomegaly"]] == 1).all() and (codes[:, column["Edema"]] == -1).all()
    assert (codes[:, column["Pneumothorax"]] == 0).all() and np.isnan(codes[:, column["No Finding"]]).all()
    encoded = labeler.tokenizer(REPORTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(encoded["input_ids"], encoded["attention_mask"])
    expected = logits[CHEXBERT_CONDITIONS.index("Lung Opacity")].argmax(-1).numpy()
    got = codes[:, column["Lung Opacity"]]
    assert [(math.nan, 1.0, 0.0, -1.0)[k] for k in expected] == pytest.approx(list(got), nan_ok=True)


def test_ce_scores_with_chexbert(tiny, tokenizer_dir):
    labeler = load_chexbert(tiny[1].parent, tokenizer=tokenizer_dir)  # a folder holding chexbert.pth works too
    scores = compute_ce_scores(REPORTS, REPORTS[::-1], labeler=labeler)
    assert set(scores) >= {"ce_14_micro_f1", "ce_5_macro_f1"}
    assert scores["ce_14_micro_precision"] == pytest.approx(1.0)  # Cardiomegaly positive everywhere


def test_wrong_files_are_refused(tmp_path, tokenizer_dir):
    with pytest.raises(FileNotFoundError):
        load_chexbert(tmp_path / "missing.pth", tokenizer=tokenizer_dir)
    with pytest.raises(FileNotFoundError, match="holds no chexbert.pth"):
        load_chexbert(tmp_path, tokenizer=tokenizer_dir)
    torch.save({"model_state_dict": {"module.other.weight": torch.zeros(2)}}, tmp_path / "chexbert.pth")
    with pytest.raises(ValueError, match="not a CheXbert checkpoint"):
        load_chexbert(tmp_path, tokenizer=tokenizer_dir)


def test_evaluate_command_labels_ce_with_chexbert(tiny, tokenizer_dir, tmp_path, capsys):
    """`rrg-mamba evaluate --chexbert`: the CE metrics come from CheXbert, and the output names the labeler."""
    import json

    from modeling_rrg_mamba.cli import main

    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(json.dumps({"prediction": p, "reference": r}) + "\n" for p, r in zip(REPORTS, REPORTS[::-1]))
    )
    argv = [
        "evaluate",
        "--predictions",
        str(predictions),
        "--meteor",
        "false",
        "--chexbert",
        str(tiny[1]),
        "--chexbert_tokenizer",
        str(tokenizer_dir),
    ]
    assert main(argv) == 0
    saved = json.loads((tmp_path / "predictions.metrics.json").read_text())
    assert saved["ce_labeler"].startswith("CheXbert")
    expected = compute_ce_scores(REPORTS, REPORTS[::-1], labeler=load_chexbert(tiny[1], tokenizer=tokenizer_dir))
    assert saved["metrics"]["ce_14_micro_f1"] == pytest.approx(expected["ce_14_micro_f1"])
    assert main(argv[:-4]) == 0  # without --chexbert: the rule labeler
    assert "rule-based" in json.loads((tmp_path / "predictions.metrics.json").read_text())["ce_labeler"]
