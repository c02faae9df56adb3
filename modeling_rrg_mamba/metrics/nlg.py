"""Natural-language-generation metrics as radiology report generation papers report them.

BLEU-1..4 (corpus level, "closest" reference length), ROUGE-L (beta 1.2) and CIDEr (CIDEr-D style n-gram
TF-IDF with the Gaussian length penalty) are computed by pycocoevalcap itself; METEOR 1.5 runs in one Java
process per :class:`NLGEvaluator`, driven with the same protocol as pycocoevalcap's ``Meteor`` wrapper
(``SCORE`` lines for per-pair statistics, one ``EVAL`` line for the corpus score) but with the requests
streamed from a writer thread, so 1,000 pairs need no 1,000 round trips. Both sides are cleaned with the
R2Gen cleaner (:func:`modeling_rrg_mamba.report_text.clean_report`) and no PTB tokenizer is applied, as in
R2Gen and the papers that follow it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor import meteor as _pycoco_meteor
from pycocoevalcap.rouge.rouge import Rouge

from ..report_text import clean_report
from ._validation import check_pairs

#: Keys of the NLG scores, in pycocoevalcap's names: BLEU-1..4, METEOR, ROUGE-L, CIDEr.
NLG_METRIC_NAMES: tuple[str, ...] = ("BLEU_1", "BLEU_2", "BLEU_3", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr")

References = Sequence[str | Sequence[str]]


def _meteor_jar() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(_pycoco_meteor.__file__)), _pycoco_meteor.METEOR_JAR)


def _meteor_field(text: str) -> str:
    # "|||" separates fields and a newline ends a request in the METEOR stdio protocol.
    return " ".join(text.replace("|||", " ").split())


class MeteorScorer:
    """METEOR 1.5 (``-l en -norm``, pycocoevalcap's settings) in one long-lived Java process.

    Start-up loads the paraphrase tables (several seconds), so keep one scorer and reuse it. Close it with
    :meth:`close`, a ``with`` block, or let garbage collection do it.
    """

    def __init__(self, java: str | None = None, max_memory: str = "2G"):
        java = java or shutil.which("java")
        if java is None:
            raise FileNotFoundError("METEOR needs a Java runtime: no 'java' executable found on PATH")
        jar = _meteor_jar()
        if not os.path.isfile(jar):
            raise FileNotFoundError(f"METEOR jar not found at {jar} (is pycocoevalcap installed completely?)")
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = subprocess.Popen(
            [java, "-jar", f"-Xmx{max_memory}", os.path.basename(jar), "-", "-", "-stdio", "-l", "en", "-norm"],
            cwd=os.path.dirname(jar),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )

    def score(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-pair METEOR for hypotheses against lists of references."""
        if len(hypotheses) != len(references):
            raise ValueError(f"hypotheses/references: lengths differ ({len(hypotheses)} vs {len(references)})")
        score_lines = [
            " ||| ".join(("SCORE", " ||| ".join(_meteor_field(r) for r in refs), _meteor_field(hyp))) + "\n"
            for hyp, refs in zip(hypotheses, references)
        ]
        with self._lock:
            process = self._require_process()
            writer = threading.Thread(target=self._write, args=(process, score_lines), daemon=True)
            writer.start()
            stats = [self._read(process) for _ in score_lines]
            writer.join()
            self._write(process, ["EVAL ||| " + " ||| ".join(stats) + "\n"])
            per_pair = [float(self._read(process)) for _ in stats]
            corpus = float(self._read(process))
        return corpus, per_pair

    def _require_process(self) -> subprocess.Popen:
        if self._process is None:
            raise RuntimeError("MeteorScorer is closed")
        if self._process.poll() is not None:
            raise RuntimeError(f"METEOR's Java process exited with code {self._process.returncode}")
        return self._process

    @staticmethod
    def _write(process: subprocess.Popen, lines: list[str]) -> None:
        process.stdin.write("".join(lines).encode("utf-8"))
        process.stdin.flush()

    @staticmethod
    def _read(process: subprocess.Popen) -> str:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("METEOR's Java process closed its output unexpectedly")
        return line.decode("utf-8").strip()

    def close(self) -> None:
        """Stop the Java process (idempotent)."""
        process, self._process = getattr(self, "_process", None), None
        if process is not None:
            try:
                process.stdin.close()
            finally:
                process.kill()
                process.wait()
                process.stdout.close()

    def __enter__(self) -> MeteorScorer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _as_reference_lists(references: References) -> list[list[str]]:
    lists = []
    for i, refs in enumerate(references):
        refs = [refs] if isinstance(refs, str) else list(refs)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{i}]: expected a string or a non-empty list of strings")
        lists.append(refs)
    return lists


def prepare_pairs(
    predictions: Sequence[str], references: References, clean_style: str | None = "iu_xray"
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """pycocoevalcap's ``(gts, res)`` dictionaries from predictions and references, cleaned with ``clean_style``.

    ``clean_style=None`` keeps the text as given (for text that is already cleaned).
    """
    check_pairs(predictions, references, "NLG")
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, str):
            raise ValueError(f"predictions[{i}]: expected a string, got {type(prediction).__name__}")

    def clean(text: str) -> str:
        return text if clean_style is None else clean_report(text, style=clean_style)

    gts = {i: [clean(r) for r in refs] for i, refs in enumerate(_as_reference_lists(references))}
    res = {i: [clean(p)] for i, p in enumerate(predictions)}
    return gts, res


class NLGEvaluator:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr on R2Gen-cleaned text, with one METEOR JVM for its lifetime.

    Example::

        with NLGEvaluator(clean_style="iu_xray") as evaluator:
            scores = evaluator.compute(predictions, references)   # {"BLEU_1": ..., "CIDEr": ...}
    """

    def __init__(self, clean_style: str | None = "iu_xray", meteor: bool = True):
        if clean_style is not None:
            clean_report("", style=clean_style)  # validates the style name early
        self.clean_style = clean_style
        self._meteor = MeteorScorer() if meteor else None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(n for n in NLG_METRIC_NAMES if n != "METEOR" or self._meteor is not None)

    def compute(self, predictions: Sequence[str], references: References) -> dict[str, float]:
        gts, res = prepare_pairs(predictions, references, self.clean_style)
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores = {f"BLEU_{n + 1}": float(value) for n, value in enumerate(bleu)}
        if self._meteor is not None:
            scores["METEOR"] = self._meteor.score([res[i][0] for i in res], [gts[i] for i in res])[0]
        scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
        return scores

    def close(self) -> None:
        if self._meteor is not None:
            self._meteor.close()

    def __enter__(self) -> NLGEvaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def compute_nlg_scores(
    predictions: Sequence[str], references: References, clean_style: str | None = "iu_xray", meteor: bool = True
) -> dict[str, float]:
    """One-shot NLG scores (starts and stops a METEOR JVM; keep an :class:`NLGEvaluator` for repeated use)."""
    with NLGEvaluator(clean_style=clean_style, meteor=meteor) as evaluator:
        return evaluator.compute(predictions, references)
