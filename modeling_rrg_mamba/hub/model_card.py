"""Model cards for the Hub: one Jinja template per architecture (``model_cards/<model_type>.md``), filled from the
model's config, its generation settings, the packages its exported code imports and an evaluation JSON.

The evaluation JSON is what ``modeling_rrg_mamba.metrics`` writes: either a flat ``{metric: score}`` dict (keys
``BLEU_1`` .. ``BLEU_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr`` and
``ce_{14|5}_{micro|macro|example}_{precision|recall|f1}``,
optionally with Trainer's ``eval_`` / ``test_`` prefix), or ``score_prediction_file``'s
``{"metrics": {...}, "num_pairs": ..., "clean_style": ..., "ce_labeler": ..., "ce_uncertain_policy": ...}``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..metrics.nlg import NLG_METRIC_NAMES

MetricsSource = str | os.PathLike | Mapping[str, Any]

#: Folder of the card templates (``model_cards/`` at the root of the repository).
MODEL_CARD_DIR = Path(__file__).resolve().parents[1] / "model_cards"  # the repository's model_cards/, packaged

CE_SUBSETS = (("14", "all 14 CheXpert observations"), ("5", "5 common observations"))
CE_AVERAGES = ("micro", "macro", "example")
CE_SCORES = ("precision", "recall", "f1")
SPLIT_PREFIXES = ("eval_", "test_", "predict_", "validation_")
# Import names whose PyPI distribution is named differently.
PYPI_NAMES = {"PIL": "pillow", "sklearn": "scikit-learn", "yaml": "pyyaml"}
# Decoding settings worth showing on the card, in this order.
GENERATION_SETTINGS = (
    "num_beams",
    "max_new_tokens",
    "max_length",
    "min_new_tokens",
    "min_length",
    "do_sample",
    "temperature",
    "top_p",
    "repetition_penalty",
    "length_penalty",
    "no_repeat_ngram_size",
    "early_stopping",
)
#: Decoding settings always shown when the generation config holds them, default or not.
CORE_GENERATION_SETTINGS = ("num_beams", "max_new_tokens", "max_length")
CARD_TAGS = ("radiology-report-generation", "chest-x-ray", "medical", "mamba", "state-space-model", "custom_code")
#: Hub metric ids (``metrics:`` and ``model-index`` ``type``) of the card's metric names.
HUB_METRIC_TYPES = {"BLEU": "bleu", "METEOR": "meteor", "ROUGE-L": "rouge", "CIDEr": "cider"}
TASK_TYPE = "image-text-to-text"
TASK_NAME = "Radiology report generation"
#: A Hub repository id (``owner/name``); anything else (a local path) is not a valid ``base_model``.
_REPO_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass
class Evaluation:
    """Scores for the card: NLG rows ``(name, score)``, CE rows per observation subset, and how they were made."""

    nlg: list[tuple[str, float]] = field(default_factory=list)
    ce: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _display_name(metric: str) -> str:
    return metric.replace("BLEU_", "BLEU-").replace("ROUGE_L", "ROUGE-L")


def _strip_split_prefix(key: str) -> str:
    for prefix in SPLIT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _read_metrics(source: MetricsSource) -> tuple[dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), "model_card_metrics"
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: evaluation JSON not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    return data, str(path)


def load_evaluation(source: MetricsSource) -> Evaluation:
    """Parse an evaluation dict or JSON file (see the module docstring) into card rows."""
    data, where = _read_metrics(source)
    details = {}
    if isinstance(data.get("metrics"), Mapping):
        details = {key: value for key, value in data.items() if key != "metrics" and value is not None}
        data = dict(data["metrics"])
    scores: dict[str, float] = {}
    for key, value in data.items():
        name = _strip_split_prefix(key)
        if name not in NLG_METRIC_NAMES and not name.startswith("ce_"):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: metric {key!r} should be a number, got {value!r}")
        scores[name] = float(value)
    evaluation = Evaluation(details=details)
    evaluation.nlg = [(_display_name(name), scores[name]) for name in NLG_METRIC_NAMES if name in scores]
    for subset, description in CE_SUBSETS:
        for average in CE_AVERAGES:
            keys = [f"ce_{subset}_{average}_{score}" for score in CE_SCORES]
            if all(key in scores for key in keys):
                evaluation.ce.append(
                    {"subset": description, "average": average, **{s: scores[k] for s, k in zip(CE_SCORES, keys)}}
                )
    if not evaluation.nlg and not evaluation.ce:
        raise ValueError(
            f"{where}: no known metric keys; expected some of {list(NLG_METRIC_NAMES)} or "
            "ce_{14|5}_{micro|macro|example}_{precision|recall|f1}"
        )
    return evaluation


def required_packages(code_folder: str | os.PathLike) -> list[str]:
    """PyPI packages the ``.py`` files of ``code_folder`` import (what a remote-code user must have installed)."""
    from transformers.dynamic_module_utils import get_imports

    modules = {name for path in sorted(Path(code_folder).glob("*.py")) for name in get_imports(path)}
    return sorted(PYPI_NAMES.get(name, name) for name in modules if name not in sys.stdlib_module_names)


def _generation_settings(model: Any) -> dict[str, Any]:
    """The decoding settings ``generate()`` uses by default (what ``generation_config.json`` holds): always
    ``num_beams`` and the length limit (``max_new_tokens``, else ``max_length``), then every other setting of
    `GENERATION_SETTINGS` that differs from transformers' defaults."""
    generation_config = getattr(model, "generation_config", None)
    if generation_config is None:
        return {}
    changed = generation_config.to_diff_dict()
    full = generation_config.to_dict()
    settings = {"num_beams": full.get("num_beams") or 1}
    if full.get("max_new_tokens") is not None:
        settings["max_new_tokens"] = full["max_new_tokens"]
    elif full.get("max_length") is not None:
        settings["max_length"] = full["max_length"]
    settings.update(
        {key: changed[key] for key in GENERATION_SETTINGS if key in changed and key not in CORE_GENERATION_SETTINGS}
    )
    return settings


def is_hub_repo_id(name: Any) -> bool:
    """``owner/name`` made of the Hub's characters and not an existing local path."""
    if not isinstance(name, str) or name.count("/") != 1 or os.path.exists(name):
        return False
    owner, repo = name.split("/")
    return bool(owner) and bool(repo) and set(owner + repo) <= _REPO_ID_CHARS and not repo.startswith(".")


def default_base_model(model: Any) -> list[str]:
    """The card's ``base_model`` when none is given: EMRRG's language model (``text_config._name_or_path``) when
    it names a Hub repository; nothing for a model trained from scratch (RRG-Mamba)."""
    text_config = getattr(model.config, "text_config", None)
    name = getattr(text_config, "_name_or_path", None) if text_config is not None else None
    return [name] if is_hub_repo_id(name) else []


def _base_models(model: Any, base_model: str | Sequence[str] | None) -> list[str]:
    if base_model is None:
        names = default_base_model(model)
    else:
        names = [base_model] if isinstance(base_model, str) else list(base_model)
    invalid = [name for name in names if not is_hub_repo_id(name)]
    if invalid:
        raise ValueError(
            f"base_model: {invalid} are not Hub repository ids (owner/name); the card's base_model "
            "links to the model this one was fine-tuned or converted from"
        )
    return names


def _metric_rows(evaluation: Evaluation) -> list[tuple[str, str, float]]:
    """(Hub metric type, display name, value) of every score on the card."""
    rows = [
        (HUB_METRIC_TYPES.get(name.split("-")[0] if name.startswith("BLEU") else name, name.lower()), name, value)
        for name, value in evaluation.nlg
    ]
    for row in evaluation.ce:
        subset = "14" if row["subset"].startswith("all 14") else "5"
        for score in CE_SCORES:
            rows.append((score, f"CE-{subset} {row['average']} {score}", row[score]))
    return rows


def eval_results(
    evaluation: Evaluation, model_name: str, dataset_name: str | None, datasets: Sequence[str]
) -> list[Any]:
    """``huggingface_hub.EvalResult`` rows (the card's ``model-index``) of ``evaluation``."""
    from huggingface_hub import EvalResult

    dataset_type = datasets[0] if datasets else (dataset_name or "unspecified").lower().replace(" ", "-")
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=dataset_type,
            dataset_name=dataset_name or dataset_type,
            dataset_split=_split_of(dataset_name),
            metric_type=metric_type,
            metric_name=name,
            metric_value=round(float(value), 4),
        )
        for metric_type, name, value in _metric_rows(evaluation)
    ]


def _split_of(dataset_name: str | None) -> str | None:
    """``"test"`` from a name such as "IU X-Ray (test split)"; None when the name says no split."""
    lowered = (dataset_name or "").lower()
    return next((split for split in ("test", "validation", "train") if split in lowered), None)


def render_model_card(
    model: Any,
    metrics: MetricsSource | None = None,
    *,
    repo_id: str,
    license: str = "apache-2.0",
    datasets: Sequence[str] = (),
    dataset_name: str | None = None,
    code_folder: str | os.PathLike | None = None,
    template_dir: str | os.PathLike = MODEL_CARD_DIR,
    base_model: str | Sequence[str] | None = None,
) -> str:
    """The README.md (YAML front matter + text) of ``model``, from ``<template_dir>/<model_type>.md``.

    Args:
        model: the model; its ``config.model_type`` picks the template.
        metrics: evaluation dict or JSON path for the metrics table (the card says "not evaluated" without one).
        repo_id: repository id used in the usage snippet.
        license / datasets: front-matter fields.
        dataset_name: name of the evaluation data shown with the metrics.
        code_folder: folder with the exported code, to list the packages it needs.
        template_dir: folder of the templates.
        base_model: Hub id(s) of the model this one was fine-tuned or converted from (a converted checkpoint: its
            source); default: EMRRG's language model when its config names a Hub repository, else none.

    With ``metrics``, the front matter holds ``metrics`` (Hub metric ids) and a ``model-index`` with every score
    (task ``image-text-to-text``, the dataset of ``datasets[0]`` / ``dataset_name``).
    """
    import jinja2
    from huggingface_hub import ModelCard, ModelCardData

    model_type = model.config.model_type
    template_dir = Path(template_dir)
    template_path = template_dir / f"{model_type}.md"
    if not template_path.is_file():
        raise FileNotFoundError(f"{template_path}: no model-card template for model_type {model_type!r}")
    evaluation = load_evaluation(metrics) if metrics is not None else None
    base_models = _base_models(model, base_model)
    results = eval_results(evaluation, repo_id, dataset_name, datasets) if evaluation is not None else None
    card_data = ModelCardData(
        license=license,
        library_name="transformers",
        pipeline_tag=TASK_TYPE,
        tags=[*CARD_TAGS, model_type.replace("_", "-")],
        datasets=list(datasets) or None,
        base_model=(base_models[0] if len(base_models) == 1 else base_models) or None,
        metrics=sorted({result.metric_type for result in results}) if results else None,
        model_name=repo_id if results else None,
        eval_results=results,
    )
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    content = environment.get_template(template_path.name).render(
        card_data=card_data.to_yaml(),
        repo_id=repo_id,
        config=model.config,
        num_parameters=sum(p.numel() for p in model.parameters()),
        generation=_generation_settings(model),
        evaluation=evaluation,
        base_models=base_models,
        dataset_name=dataset_name,
        requirements=required_packages(code_folder) if code_folder is not None else ["torch", "transformers"],
    )
    return str(ModelCard(content))


__all__ = [
    "Evaluation",
    "MODEL_CARD_DIR",
    "default_base_model",
    "eval_results",
    "is_hub_repo_id",
    "load_evaluation",
    "render_model_card",
    "required_packages",
]
