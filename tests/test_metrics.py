"""NLG metric parity with pycocoevalcap, CE metrics, the Trainer compute_metrics, the evaluate module, JSONL "
"scoring."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

from modeling_rrg_mamba.labeler import OBSERVATIONS
from modeling_rrg_mamba.metrics import (
    REPORT_METRICS_PATH,
    MeteorScorer,
    NLGEvaluator,
    ReportGenerationMetrics,
    compute_ce_scores,
    compute_report_metrics,
    decode_token_ids,
    multilabel_scores,
    read_prediction_jsonl,
    score_prediction_file,
)
from modeling_rrg_mamba.report_text import clean_report

IU_ANNOTATION = Path(__file__).resolve().parents[2] / "shared" / "data" / "iu-xray-reports" / "annotation.json"
if not IU_ANNOTATION.is_file():
    IU_ANNOTATION = Path("/work/shared/data/iu-xray-reports/annotation.json")


@pytest.fixture(scope="module")
def report_pairs():
    if not IU_ANNOTATION.is_file():
        pytest.skip(f"IU X-Ray reports not found at {IU_ANNOTATION}")
    reports = [e["report"] for e in json.loads(IU_ANNOTATION.read_text())["train"]]
    rng = random.Random(0)
    references = reports[:300]
    # Mix unrelated reports, shuffled-sentence variants and exact copies so every metric sees a range of values.
    predictions = []
    for i, ref in enumerate(references):
        if i % 3 == 0:
            predictions.append(rng.choice(reports))
        elif i % 3 == 1:
            sentences = ref.split(". ")
            rng.shuffle(sentences)
            predictions.append(". ".join(sentences[: max(1, len(sentences) - 1)]))
        else:
            predictions.append(ref)
    return predictions, references


@pytest.fixture(scope="module")
def evaluator():
    with NLGEvaluator(clean_style="iu_xray") as nlg:
        yield nlg


def _pycocoevalcap_scores(gts, res):
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    meteor = Meteor()
    try:
        meteor_score, _ = meteor.compute_score(gts, res)
    finally:
        del meteor
    return {
        "BLEU_1": bleu[0],
        "BLEU_2": bleu[1],
        "BLEU_3": bleu[2],
        "BLEU_4": bleu[3],
        "METEOR": meteor_score,
        "ROUGE_L": Rouge().compute_score(gts, res)[0],
        "CIDEr": Cider().compute_score(gts, res)[0],
    }


@pytest.mark.slow
def test_nlg_parity_with_pycocoevalcap_on_300_pairs_and_multi_reference(evaluator, report_pairs):
    predictions, references = report_pairs
    gts = {i: [clean_report(r)] for i, r in enumerate(references)}
    res = {i: [clean_report(p)] for i, p in enumerate(predictions)}
    # Multi-reference pairs exercise "closest" BLEU lengths, max-over-references ROUGE and METEOR.
    multi_refs = [[r, references[(i + 7) % len(references)]] for i, r in enumerate(references[:40])]
    for i, refs in enumerate(multi_refs):
        gts[len(references) + i] = [clean_report(r) for r in refs]
        res[len(references) + i] = [clean_report(predictions[i])]
    expected = _pycocoevalcap_scores(gts, res)
    ours = evaluator.compute(predictions + predictions[:40], references + multi_refs)
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert abs(ours[name] - value) <= 1e-6, (name, ours[name], value)
    assert 0.2 < ours["BLEU_1"] < 1.0 and ours["CIDEr"] > 0.0


@pytest.mark.slow
def test_identical_reports_score_top_and_evaluator_reuses_one_jvm(evaluator):
    meteor_process = evaluator._meteor._process
    texts = ["The heart is normal in size. The lungs are clear.", "No pneumothorax or effusion. Mild atelectasis."]
    scores = evaluator.compute(texts, texts)
    assert scores["BLEU_4"] == pytest.approx(1.0, abs=1e-6)
    assert scores["ROUGE_L"] == pytest.approx(1.0)
    assert scores["METEOR"] > 0.99
    assert evaluator._meteor._process is meteor_process and meteor_process.poll() is None


@pytest.mark.slow
def test_meteor_scorer_closes_its_jvm():
    # Scoring through a scorer is covered by the parity test; here only the lifecycle (no paraphrase loading).
    with MeteorScorer() as scorer:
        process = scorer._process
        assert process.poll() is None
    assert process.poll() is not None
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(["a"], [["a"]])
    scorer.close()  # idempotent


@pytest.mark.slow
def test_nlg_input_errors(evaluator):
    with pytest.raises(ValueError, match="lengths differ"):
        evaluator.compute(["a ."], ["a .", "b ."])
    with pytest.raises(ValueError, match="empty"):
        evaluator.compute([], [])
    with pytest.raises(ValueError, match="predictions\\[1\\]"):
        evaluator.compute(["a", None], ["a", "b"])
    with pytest.raises(ValueError, match="references\\[0\\]"):
        evaluator.compute(["a"], [[]])
    with pytest.raises(ValueError, match="style"):
        NLGEvaluator(clean_style="chexpert", meteor=False)


def test_multilabel_scores_match_hand_computation():
    target = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1]])
    scores = multilabel_scores(predicted, target)
    # Pooled: TP = 3 (r0c0, r1c1, r2c1), predicted positives 6, gold positives 5.
    assert scores["micro_precision"] == pytest.approx(3 / 6)
    assert scores["micro_recall"] == pytest.approx(3 / 5)
    assert scores["micro_f1"] == pytest.approx(2 * (3 / 6) * (3 / 5) / (3 / 6 + 3 / 5))
    # Per class P: c0 1/1, c1 2/3, c2 0/2; R: c0 1/2, c1 2/2, c2 0/1.
    assert scores["macro_precision"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert scores["macro_recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    # Per example P: 1/2, 1/1, 1/2, 0/1 ; R: 1/2, 1/1, 1/2, 0/0 -> 0 ; F1: 2*1/4, 2/2, 2/4, 0.
    assert scores["example_precision"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert scores["example_recall"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert scores["example_f1"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    with pytest.raises(ValueError, match="shapes"):
        multilabel_scores(predicted, target[:2])


def test_ce_scores_subsets_and_uncertain_policy():
    references = ["Cardiomegaly. Small left pleural effusion.", "Possible pneumonia.", "No acute disease."]
    predictions = ["Cardiomegaly. No pleural effusion.", "Pneumonia in the right lower lobe.", "Normal chest."]
    zeros = compute_ce_scores(predictions, references, uncertain="negative")
    ones = compute_ce_scores(predictions, references, uncertain="positive")
    assert {k.split("_")[1] for k in zeros} == {"14", "5"}
    assert len(zeros) == 2 * 9
    # Common five: gold {Cardiomegaly, Effusion}; predicted {Cardiomegaly} -> P 1, R 1/2.
    assert zeros["ce_5_micro_precision"] == pytest.approx(1.0)
    assert zeros["ce_5_micro_recall"] == pytest.approx(0.5)
    # Uncertain "possible pneumonia" counts as positive only under U-Ones, which turns a FP into a TP.
    assert ones["ce_14_micro_precision"] > zeros["ce_14_micro_precision"]
    perfect = compute_ce_scores(references, references, uncertain="positive")
    assert perfect["ce_14_micro_f1"] == pytest.approx(1.0) and perfect["ce_14_example_f1"] == pytest.approx(1.0)
    # Under U-Zeros "Possible pneumonia" has no positive label at all: that report scores 0 (zero_division=0).
    assert compute_ce_scores(references, references)["ce_14_example_f1"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="uncertain"):
        compute_ce_scores(predictions, references, uncertain="drop")


class _WordTokenizer:
    """A minimal tokenizer: ids index a word list; 0 is padding and a special token."""

    def __init__(self, words):
        self.vocab = ["<pad>"] + sorted(set(words))
        self.ids = {w: i for i, w in enumerate(self.vocab)}

    def encode(self, text):
        return [self.ids[w] for w in text.split()]

    def batch_decode(self, rows, skip_special_tokens=False):
        return [" ".join(self.vocab[t] for t in row if not (skip_special_tokens and t == 0)) for row in rows]


@pytest.mark.slow
def test_trainer_compute_metrics_decodes_ids_with_padding_and_ignore_index(evaluator):
    texts = ["the heart is normal in size .", "there is a small left pleural effusion .", "no pneumothorax ."]
    generated = ["the heart is normal .", "small left pleural effusion .", "no pneumothorax is seen ."]
    tokenizer = _WordTokenizer(" ".join(texts + generated).split())
    width = 12
    preds = np.array([tokenizer.encode(t) + [0] * (width - len(t.split())) for t in generated])
    labels = np.array([tokenizer.encode(t) + [-100] * (width - len(t.split())) for t in texts])
    metrics = ReportGenerationMetrics(tokenizer, clean_style=None)
    metrics._evaluator = NLGEvaluator.__new__(NLGEvaluator)  # share the running JVM of the module evaluator
    metrics._evaluator.clean_style, metrics._evaluator._meteor = None, evaluator._meteor
    result = metrics(SimpleNamespace(predictions=(preds,), label_ids=labels))
    expected = compute_report_metrics(generated, texts, evaluator=metrics._evaluator)
    assert result == expected
    assert decode_token_ids(tokenizer, labels) == texts
    with pytest.raises(ValueError, match="3-D"):
        metrics(SimpleNamespace(predictions=np.zeros((2, 3, 5)), label_ids=labels))
    with_refs = ReportGenerationMetrics(
        lambda rows: [" ".join(map(str, r)) for r in rows], clean_style=None, ce=False, reference_texts=["only one"]
    )
    with pytest.raises(ValueError, match="reference_texts"):
        with_refs(SimpleNamespace(predictions=preds, label_ids=labels))


@pytest.mark.slow
def test_evaluate_module_loads_offline_from_the_package(evaluator, report_pairs, tmp_path):
    predictions, references = (list(x[:25]) for x in report_pairs)
    script = (
        "import json, sys, evaluate\n"
        f"metric = evaluate.load({REPORT_METRICS_PATH!r})\n"
        "data = json.load(sys.stdin)\n"
        "print(json.dumps(metric.compute(predictions=data['p'], references=data['r'])))\n"
    )
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        https_proxy="http://127.0.0.1:9",
        http_proxy="http://127.0.0.1:9",
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps({"p": predictions, "r": references}),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = json.loads(completed.stdout.strip().splitlines()[-1])
    expected = compute_report_metrics(predictions, references, evaluator=evaluator)
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        assert loaded[name] == pytest.approx(value, abs=1e-9), name


@pytest.mark.slow
def test_score_prediction_file_writes_metrics_json(evaluator, tmp_path):
    lines = [
        {"prediction": "The heart is normal. No effusion.", "reference": "Heart size normal. No effusion."},
        {"prediction": "Cardiomegaly.", "reference": ["The heart is enlarged.", "Cardiomegaly."]},
    ]
    source = tmp_path / "predictions.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    output = tmp_path / "metrics.json"
    result = score_prediction_file(source, output, evaluator=evaluator)
    written = json.loads(output.read_text())
    assert written == json.loads(json.dumps(result))
    assert written["num_pairs"] == 2 and written["ce_uncertain_policy"] == "negative"
    assert set(written["metrics"]) >= {"BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "ce_14_micro_f1", "ce_5_macro_f1"}
    assert written["metrics"]["ce_14_micro_f1"] > 0


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"prediction": "a", "reference": "b"}\nnot json\n', "line 2 is not valid JSON"),
        ('{"prediction": "a"}\n', "line 1: field 'reference'"),
        ("[1, 2]\n", "line 1 is not a JSON object"),
        ("\n", "no prediction/reference records"),
    ],
)
def test_bad_prediction_files_name_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_prediction_jsonl(path)


def test_score_predictions_script_help_runs():
    script = Path(__file__).resolve().parents[1] / "processing" / "score_predictions.py"
    completed = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0 and "JSONL" in completed.stdout


def test_observation_order_is_chexpert_order():
    assert OBSERVATIONS[0] == "No Finding" and OBSERVATIONS[-1] == "Support Devices" and len(OBSERVATIONS) == 14


@pytest.mark.slow
def test_text_only_baselines_example_scores_the_training_mode_and_seeded_draws(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    try:
        import score_text_only_baselines as baselines
    finally:
        sys.path.pop(0)
    train = [
        "The heart is normal. The lungs are clear.",
        "the heart is normal . the lungs are clear .",
        "Small left pleural effusion. Mild cardiomegaly.",
    ]
    predictions = baselines.baseline_predictions(train, 4, "iu_xray", seed=3)
    assert predictions["most_frequent_report"] == ["the heart is normal . the lungs are clear ."] * 4
    assert (
        predictions["random_training_report"]
        == baselines.baseline_predictions(train, 4, "iu_xray", 3)["random_training_report"]
    )
    assert set(predictions["random_training_report"]) <= set(train)
    annotation = tmp_path / "annotation.json"
    annotation.write_text(
        json.dumps(
            {"train": [{"report": r} for r in train], "test": [{"report": train[0]}] * 3 + [{"report": train[2]}]}
        )
    )
    scores = baselines.main(["--annotation", str(annotation), "--output", str(tmp_path / "scores.json")])
    # the mode (10 tokens, periods included) matches three test reports fully and only the two "." of the fourth:
    # BLEU-1 = 32 clipped matches / 40 predicted tokens (no brevity penalty: 40 >= 38 reference tokens)
    assert scores["most_frequent_report"]["BLEU_1"] == pytest.approx(32 / 40, abs=1e-6)
    assert json.loads((tmp_path / "scores.json").read_text())["num_studies"] == 4
    with pytest.raises(ValueError, match="no split 'val'"):
        baselines.main(["--annotation", str(annotation), "--split", "val"])
