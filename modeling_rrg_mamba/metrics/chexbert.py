"""Optional CheXbert labeler (Smit et al., EMNLP 2020) for clinical-efficacy scores comparable with papers.

The package's offline rule labeler stays the default (:func:`modeling_rrg_mamba.labeler.label_reports`). When the
user has CheXbert's weights (the original ``chexbert.pth`` of stanfordmlgroup/CheXbert, e.g. from the Hub
repository ``StanfordAIMI/RRG_scorers``, or a local path), :func:`load_chexbert` builds the same architecture -
BERT-base (``bert-base-uncased``) whose ``[CLS]`` state goes through dropout to 14 linear heads, 13 with 4 classes
(blank / positive / negative / uncertain) for the 12 conditions and Support Devices, 1 with 2 classes (blank /
positive) for No Finding - loads the checkpoint (its ``module.``-prefixed ``model_state_dict`` keys are mapped) and
returns a labeler for :func:`modeling_rrg_mamba.metrics.compute_ce_scores`::

    labeler = load_chexbert("/path/to/chexbert.pth", tokenizer="/path/to/bert-base-uncased")
    scores = compute_ce_scores(predictions, references, labeler=labeler)

Nothing is downloaded unless ``weights`` / ``tokenizer`` name Hub repositories and the Hub is reachable.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..labeler import OBSERVATIONS

#: CheXbert's head order (stanfordmlgroup/CheXbert ``src/constants.py``): the 13 four-class heads in the CheXpert
#: order, then No Finding (which CheXpert puts first).
CHEXBERT_CONDITIONS = (*OBSERVATIONS[1:], OBSERVATIONS[0])
#: CheXbert's classes as CheXpert codes: 0 blank -> NaN, 1 positive -> 1, 2 negative -> 0, 3 uncertain -> -1.
CLASS_CODES = (math.nan, 1.0, 0.0, -1.0)
DEFAULT_CHECKPOINT_FILE = "chexbert.pth"
MAX_TOKENS = 512


class CheXbert(nn.Module):
    """CheXbert's ``bert_labeler``: BERT, dropout on the ``[CLS]`` state, 13 x Linear(h, 4) + Linear(h, 2)."""

    def __init__(self, config: Any, dropout: float = 0.1) -> None:
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel(config)
        self.dropout = nn.Dropout(dropout)
        hidden = config.hidden_size
        self.linear_heads = nn.ModuleList([nn.Linear(hidden, 4) for _ in range(13)] + [nn.Linear(hidden, 2)])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """14 logit tensors: 13 of shape (B, 4), the last (No Finding) of shape (B, 2)."""
        cls = self.dropout(self.bert(input_ids, attention_mask=attention_mask)[0][:, 0])
        return [head(cls) for head in self.linear_heads]


def original_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The weights of an original CheXbert checkpoint (``{"model_state_dict": {"module.bert....": ...}}``, saved
    from ``nn.DataParallel``) under this module's names; ``position_ids`` buffers (not weights) are dropped."""
    state = checkpoint.get("model_state_dict", checkpoint)
    mapped = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if key.endswith("embeddings.position_ids"):
            continue
        mapped[key] = value
    return mapped


def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> Any:
    """A BertConfig with the checkpoint's sizes (heads: hidden / 64, as in every BERT release)."""
    from transformers import BertConfig

    vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
    layers = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", key)))
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        intermediate_size=state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0],
        max_position_embeddings=state["bert.embeddings.position_embeddings.weight"].shape[0],
        type_vocab_size=state["bert.embeddings.token_type_embeddings.weight"].shape[0],
    )


def _checkpoint_file(weights: str | os.PathLike, filename: str) -> Path:
    path = Path(weights)
    if path.is_file():
        return path
    if path.is_dir():
        if (path / filename).is_file():
            return path / filename
        raise FileNotFoundError(f"{path}: holds no {filename}")
    if os.path.isabs(weights) or str(weights).startswith("."):
        raise FileNotFoundError(f"{weights}: no such CheXbert checkpoint")
    from huggingface_hub import hf_hub_download  # a Hub id: downloaded (or read from the cache) only here

    return Path(hf_hub_download(str(weights), filename))


class CheXbertLabeler:
    """Reports -> ``(N, 14)`` CheXpert codes (1 / 0 / -1 / NaN) in :data:`~modeling_rrg_mamba.labeler.OBSERVATIONS`
    order, the labeler interface of :func:`~modeling_rrg_mamba.metrics.compute_ce_scores`."""

    name = "CheXbert (Smit et al., 2020)"

    def __init__(self, model: CheXbert, tokenizer: Any, batch_size: int = 16, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._columns = [CHEXBERT_CONDITIONS.index(name) for name in OBSERVATIONS]

    @staticmethod
    def clean(report: str) -> str:
        """CheXbert's preprocessing: one line, single spaces (the uncased tokenizer lower-cases)."""
        return " ".join(report.split())

    @torch.no_grad()
    def __call__(self, reports: Sequence[str]) -> np.ndarray:
        classes = []
        for start in range(0, len(reports), self.batch_size):
            batch = [self.clean(r) for r in reports[start : start + self.batch_size]]
            encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            logits = self.model(encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device))
            classes.append(torch.stack([head.argmax(dim=-1) for head in logits], dim=1).cpu())
        if not classes:
            return np.zeros((0, len(OBSERVATIONS)))
        codes = np.asarray(CLASS_CODES)[torch.cat(classes).numpy()]  # (N, 14) in CheXbert's order
        return codes[:, self._columns]


def load_chexbert(
    weights: str | os.PathLike,
    tokenizer: Any = "bert-base-uncased",
    *,
    config: Any = None,
    filename: str = DEFAULT_CHECKPOINT_FILE,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
) -> CheXbertLabeler:
    """A CheXbert labeler from an original checkpoint.

    Args:
        weights: the ``chexbert.pth`` file, a folder holding it, or a Hub repository id holding ``filename``.
        tokenizer: a tokenizer object, or the path / Hub id of ``bert-base-uncased``'s tokenizer.
        config: a ``BertConfig``; default: read from the checkpoint's shapes (BERT-base for the original).
    """
    checkpoint = torch.load(_checkpoint_file(weights, filename), map_location="cpu", weights_only=True)
    state = original_state_dict(checkpoint)
    if config is None:
        try:
            config = config_from_state_dict(state)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{weights}: not a CheXbert checkpoint (no BERT weights: {error})") from None
    model = CheXbert(config)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.endswith("position_ids")]
    if missing or unexpected:
        raise ValueError(f"{weights}: not a CheXbert checkpoint (missing {missing[:5]}, unexpected {unexpected[:5]})")
    if isinstance(tokenizer, (str, os.PathLike)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    return CheXbertLabeler(model, tokenizer, batch_size=batch_size, device=device)


__all__ = [
    "CHEXBERT_CONDITIONS",
    "CLASS_CODES",
    "CheXbert",
    "CheXbertLabeler",
    "config_from_state_dict",
    "load_chexbert",
    "original_state_dict",
]
