"""Word-level report tokenizer of RRG-Mamba (R2Gen-compatible), built on the `tokenizers` library.

Reports are cleaned with R2Gen's rules (`modeling_rrg_mamba.report_text`), split on whitespace, and every word
seen at least ``threshold`` times in the training reports gets an id (R2Gen: 3 for IU X-Ray, 10 for MIMIC-CXR);
other words map to ``<unk>``. Encoding appends ``<eos>``; the decoder starts from ``<bos>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from .._compat import TOKENIZER_ENCODES_IN_BATCH_METHOD
from ..report_text import REPORT_CLEANERS, clean_report

PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN]  # ids 0, 1, 2, 3


class RRGMambaTokenizer(PreTrainedTokenizerFast):
    r"""
    Word-level report tokenizer. Build one from training reports with [`RRGMambaTokenizer.from_reports`];
    `save_pretrained` / `from_pretrained` keep the vocabulary (``tokenizer.json``) and the cleaning style.

    Args:
        report_style (`str`, defaults to `"iu_xray"`): R2Gen cleaner applied to every text before encoding
            (`"iu_xray"` or `"mimic_cxr"`).
        clean_reports (`bool`, defaults to `True`): clean texts before encoding (set `False` for text that is
            already clean).

    The vocabulary holds ``<pad>`` (0), ``<bos>`` (1), ``<eos>`` (2), ``<unk>`` (3) and the words.
    ``batch_decode(ids, skip_special_tokens=True)`` gives the cleaned report text (words joined by spaces,
    sentences separated by " . ").
    """

    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, *args: Any, report_style: str = "iu_xray", clean_reports: bool = True, **kwargs: Any) -> None:
        if report_style not in REPORT_CLEANERS:
            raise ValueError(f"report_style: unknown cleaner {report_style!r}; choose from {sorted(REPORT_CLEANERS)}")
        for name, token in (
            ("pad_token", PAD_TOKEN),
            ("bos_token", BOS_TOKEN),
            ("eos_token", EOS_TOKEN),
            ("unk_token", UNK_TOKEN),
        ):
            kwargs.setdefault(name, token)
        super().__init__(*args, report_style=report_style, clean_reports=clean_reports, **kwargs)
        self.report_style = report_style
        self.clean_reports = clean_reports

    @classmethod
    def convert_to_native_format(cls, trust_remote_code: bool = False, **kwargs: Any) -> dict[str, Any]:
        # tokenizer.json is the whole backend (word-level model, whitespace split, <eos> template); transformers 5
        # would rebuild the backend from the bare vocabulary for a class with its own __init__, so load it as is.
        return super().convert_to_native_format(trust_remote_code=True, **kwargs)

    @classmethod
    def from_reports(
        cls, reports: Iterable[str], threshold: int = 3, report_style: str = "iu_xray", **kwargs: Any
    ) -> RRGMambaTokenizer:
        """Build the vocabulary from (training) reports: every cleaned word seen at least ``threshold`` times."""
        if threshold < 1:
            raise ValueError(f"threshold: expected a frequency >= 1, got {threshold}")
        cleaned = [clean_report(report, report_style) for report in reports]
        if not cleaned:
            raise ValueError("reports: got no training reports to build the vocabulary from")
        backend = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        trainer = trainers.WordLevelTrainer(
            min_frequency=threshold, special_tokens=SPECIAL_TOKENS, show_progress=False
        )
        backend.train_from_iterator(cleaned, trainer=trainer)
        eos_id = backend.token_to_id(EOS_TOKEN)
        backend.post_processor = processors.TemplateProcessing(
            single=f"$A {EOS_TOKEN}", pair=f"$A {EOS_TOKEN} $B {EOS_TOKEN}", special_tokens=[(EOS_TOKEN, eos_id)]
        )
        return cls(tokenizer_object=backend, report_style=report_style, **kwargs)

    @property
    def report_vocabulary_size(self) -> int:
        """Entries of the R2Gen vocabulary: the words plus ``<unk>`` (R2Gen's count; no pad/bos/eos)."""
        return len(self) - 3

    def clean(self, text: str) -> str:
        """The report as this tokenizer sees it (R2Gen cleaning with ``report_style``)."""
        return clean_report(text, self.report_style)

    # Every encoding passes through one of these two once: transformers 5 encodes everything in `_encode_plus`;
    # 4.57 routes single texts and batches alike to `_batch_encode_plus`, which 5 no longer has.
    def _encode_plus(self, text: Any, text_pair: Any = None, is_split_into_words: bool = False, **kwargs: Any):
        if self.clean_reports and not is_split_into_words and not TOKENIZER_ENCODES_IN_BATCH_METHOD:
            text = self._clean_input(text)
            text_pair = self._clean_input(text_pair)
        return super()._encode_plus(text, text_pair, is_split_into_words=is_split_into_words, **kwargs)

    def _batch_encode_plus(
        self, batch_text_or_text_pairs: Any, *args: Any, is_split_into_words: bool = False, **kwargs: Any
    ):
        if self.clean_reports and not is_split_into_words:
            batch_text_or_text_pairs = [self._clean_input(item) for item in batch_text_or_text_pairs]
        return super()._batch_encode_plus(
            batch_text_or_text_pairs, *args, is_split_into_words=is_split_into_words, **kwargs
        )

    def _clean_input(self, text: Any) -> Any:
        if isinstance(text, str):
            return self.clean(text)
        if isinstance(text, (list, tuple)) and all(isinstance(item, str) for item in text):
            return type(text)(self.clean(item) for item in text)
        return text


__all__ = ["RRGMambaTokenizer"]
