"""`evaluate` module for radiology report generation: BLEU-1..4, METEOR, ROUGE-L, CIDEr and CheXpert CE.

Load it from the installed package, offline::

    import evaluate
    from modeling_rrg_mamba.metrics import REPORT_METRICS_PATH

    metric = evaluate.load(REPORT_METRICS_PATH)
    metric.compute(predictions=generated, references=ground_truth, clean_style="iu_xray", ce=True)
"""

import datasets
import evaluate

try:  # the metric's code lives in the package: the rule labeler, the R2Gen cleaner, METEOR's one-JVM scorer
    from modeling_rrg_mamba.metrics.nlg import NLGEvaluator
    from modeling_rrg_mamba.metrics.report_metrics import compute_report_metrics
except ImportError as error:  # e.g. this script copied to or loaded from the Hub without the package
    raise ImportError(
        "radiology_report_metrics needs the rrg-mamba package (pip install rrg-mamba; import name "
        "modeling_rrg_mamba) and Java for METEOR; it is not self-contained, see the README's note on Hub metrics"
    ) from error

_DESCRIPTION = """\
Report-generation metrics as IU X-Ray / MIMIC-CXR papers report them: pycocoevalcap BLEU-1..4 (corpus),
METEOR 1.5, ROUGE-L and CIDEr on R2Gen-cleaned text (no PTB tokenizer), plus clinical-efficacy precision /
recall / F1 (micro, macro, example-based; 14 and 5 observations) from an offline CheXpert-style labeler.
"""

_KWARGS_DESCRIPTION = """\
Args:
    predictions: list of generated reports (str).
    references: list of reference reports (str), or list of lists of references.
    clean_style: "iu_xray" (default), "mimic_cxr", or None for text that is already cleaned.
    ce: also compute CE scores (default True).
    uncertain: uncertain-label policy of CE, "negative" (default) or "positive".
Returns:
    dict with BLEU_1..BLEU_4, METEOR, ROUGE_L, CIDEr and ce_{14|5}_{micro|macro|example}_{precision|recall|f1}.
"""

_CITATION = """\
@inproceedings{papineni2002bleu,
  title={BLEU: a method for automatic evaluation of machine translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing}, booktitle={ACL}, year={2002}}
@inproceedings{irvin2019chexpert,
  title={CheXpert: A large chest radiograph dataset with uncertainty labels and expert comparison},
  author={Irvin, Jeremy and others}, booktitle={AAAI}, year={2019}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadiologyReportMetrics(evaluate.Metric):
    """One METEOR JVM per metric object, started on the first ``compute`` for a given cleaning style."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(self, predictions, references, clean_style="iu_xray", ce=True, uncertain="negative"):
        evaluator = getattr(self, "_nlg_evaluator", None)
        if evaluator is None or evaluator.clean_style != clean_style:
            if evaluator is not None:
                evaluator.close()
            evaluator = self._nlg_evaluator = NLGEvaluator(clean_style=clean_style)
        return compute_report_metrics(predictions, references, ce=ce, uncertain=uncertain, evaluator=evaluator)
