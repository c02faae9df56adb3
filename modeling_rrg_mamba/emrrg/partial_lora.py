"""Partial LoRA (LoRAP, EMRRG §3.2) as a PEFT LoRA layer, and the paper's fine-tuning recipe in one call.

A Mamba ``in_proj`` maps ``h`` to ``[x | z]``: ``x`` (the first ``d_inner`` output rows) is scanned, ``z`` gates the
scan's output. Partial LoRA adds the low-rank update to the ``x`` rows only:

    [x | z] = W h + (alpha / r) [B_x ; 0] A h,      B_x in R^{d_inner x r}, A in R^{r x d_model}

``lora_B`` keeps PEFT's ordinary shape ``(out_features, r)`` with its ``z`` rows zero: they are zeroed at creation and
never read (the forward and the merge use ``B_x`` only), so they get no gradient and stay zero.

The adapter folder carries the variant: :class:`PartialLoraConfig` adds ``partial_lora_modules`` (a regex over module
names) to ``adapter_config.json``, and it is registered as the config class PEFT builds for LoRA adapters whenever
this module is imported or an EMRRG model is built. So plain ``PeftModel.from_pretrained(EMRRG..., path)`` in a fresh
process, :func:`load_emrrg_adapter` and ``merge_and_unload`` all compute the training-time outputs. An adapter whose
Partial LoRA would be lost raises :class:`PartialLoraDroppedError` when PEFT wraps the EMRRG
(:func:`check_partial_lora_adapters`).
It is a ``peft`` LoRA layer through a :class:`LoraVariant`:
``get_peft_model``, ``save_pretrained``, ``merge_and_unload``, ``disable_adapter`` and multiple adapters all work.
Within a :class:`PartialLoraConfig`, every targeted ``nn.Linear`` whose name matches ``partial_lora_modules`` gets
Partial LoRA; every other targeted layer gets ordinary LoRA.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora.layer import Linear as LoraLinear
from peft.tuners.lora.layer import LoraLayer, LoraVariant
from torch import nn

from .._compat import peft_lora_config_class, register_peft_custom_module, register_peft_lora_config_class

Tensor = torch.Tensor

PARTIAL_LORA_MODULE_NAME = "in_proj"


class PartialLoraVariant(LoraVariant):
    """LoRA whose update covers only output rows ``[0, module.partial_rows)`` of the layer (the ``x`` half)."""

    def supports_lora_conversion(self) -> bool:
        return False

    @staticmethod
    def init(module: PartialLoraLinear, adapter_name: str, **kwargs: Any) -> None:
        """Zero the ``z`` rows of ``lora_B`` (built by PEFT for every output row): they are never read."""
        lora_B = module.lora_B[adapter_name]
        with torch.no_grad():
            lora_B.weight[module.partial_rows :].zero_()
            if lora_B.bias is not None:
                lora_B.bias[module.partial_rows :].zero_()

    @staticmethod
    def merge_safe(module: PartialLoraLinear, active_adapter: str, orig_weight: Tensor) -> Tensor:
        return orig_weight + module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def merge_unsafe(module: PartialLoraLinear, active_adapter: str, orig_weight: Tensor) -> None:
        orig_weight.data += module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def unmerge(module: PartialLoraLinear, active_adapter: str, orig_weight: Tensor) -> Tensor:
        return orig_weight - module.get_delta_weight(active_adapter).to(orig_weight.dtype)

    @staticmethod
    def forward(module: PartialLoraLinear, active_adapter: str, x: Tensor, result: Tensor, **kwargs: Any) -> Tensor:
        """``[x | z] + (alpha / r) [B_x A h ; 0]``: the ``z`` columns of ``result`` pass through untouched."""
        lora_A, lora_B = module.lora_A[active_adapter], module.lora_B[active_adapter]
        rows = module.partial_rows
        bias = lora_B.bias[:rows] if lora_B.bias is not None else None
        hidden = lora_A(module.lora_dropout[active_adapter](x))
        update = F.linear(hidden, lora_B.weight[:rows], bias) * module.scaling[active_adapter]
        return torch.cat([result[..., :rows] + update.to(result.dtype), result[..., rows:]], dim=-1)


class PartialLoraLinear(LoraLinear):
    """PEFT LoRA ``Linear`` that uses :class:`PartialLoraVariant` when the target is a Mamba ``in_proj``.

    The ``x`` half is the first ``out_features // 2`` rows (Mamba's ``[x | z]`` layout).
    """

    def update_layer(self, adapter_name: str, r: int, lora_alpha: int, config: LoraConfig, **kwargs: Any) -> None:
        target = kwargs.get("target_name") or ""
        pattern = getattr(config, "partial_lora_modules", None)
        self.partial_target = pattern is not None and re.fullmatch(pattern, target) is not None
        if self.partial_target:
            out_features = self.get_base_layer().out_features
            if out_features % 2:
                raise ValueError(
                    f"{target}: a Mamba in_proj has an even number of outputs ([x | z]), got {out_features}"
                )
            self.partial_rows = out_features // 2
        super().update_layer(adapter_name, r, lora_alpha, config, **kwargs)

    def resolve_lora_variant(self, *, config: LoraConfig, **kwargs: Any) -> LoraVariant | None:
        if self.partial_target:
            if config.use_dora:
                raise ValueError("use_dora: Partial LoRA on a Mamba in_proj cannot be combined with DoRA")
            return PartialLoraVariant()
        return super().resolve_lora_variant(config=config, **kwargs)

    def get_delta_weight(self, adapter: str) -> Tensor:
        """``(out_features, in_features)`` update; zero on the ``z`` rows of a partial adapter."""
        if not isinstance(self.lora_variant.get(adapter), PartialLoraVariant):
            return super().get_delta_weight(adapter)
        lora_A, lora_B = self.lora_A[adapter].weight, self.lora_B[adapter].weight
        delta = torch.zeros(self.out_features, self.in_features, device=lora_B.device, dtype=torch.float32)
        delta[: self.partial_rows] = (lora_B[: self.partial_rows].float() @ lora_A.float()) * self.scaling[adapter]
        return delta.to(lora_B.dtype)


PARTIAL_LORA_MODULES: dict[type[nn.Module], type[nn.Module]] = {nn.Linear: PartialLoraLinear}

DEFAULT_PARTIAL_LORA_MODULES = rf".*\.{PARTIAL_LORA_MODULE_NAME}"

#: The X-ray Mamba's ``in_proj`` layers inside an EMRRG: the recipe's Partial-LoRA targets.
EMRRG_IN_PROJ_MODULES = rf"vision_model\..*\.{PARTIAL_LORA_MODULE_NAME}"


@dataclass
class PartialLoraConfig(LoraConfig):
    """``LoraConfig`` whose targets matching ``partial_lora_modules`` get Partial LoRA (EMRRG's LoRAP).

    The field is saved in ``adapter_config.json``, so the folder itself says which layers are partial.
    """

    partial_lora_modules: str | None = field(
        default=None,
        metadata={"help": "Regex (full match) over module names: targeted nn.Linear layers that get Partial LoRA."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.partial_lora_modules is not None:
            try:
                re.compile(self.partial_lora_modules)
            except re.error as error:
                raise ValueError(
                    f"partial_lora_modules: not a regex ({error}): {self.partial_lora_modules!r}"
                ) from None
            register_peft_custom_module(self, PARTIAL_LORA_MODULES)


def register_partial_lora_config() -> None:
    """Make PEFT load every LoRA ``adapter_config.json`` as a :class:`PartialLoraConfig` (idempotent)."""
    register_peft_lora_config_class(PartialLoraConfig)


register_partial_lora_config()


def partial_lora_config(partial_lora_modules: str = DEFAULT_PARTIAL_LORA_MODULES, **lora_kwargs: Any) -> LoraConfig:
    """A :class:`PartialLoraConfig` (``LoraConfig``'s arguments) whose ``in_proj`` targets get Partial LoRA."""
    return PartialLoraConfig(partial_lora_modules=partial_lora_modules, **lora_kwargs)


class PartialLoraDroppedError(ValueError):
    """An adapter meant as Partial LoRA would run as plain LoRA (wrong outputs, no error otherwise)."""


def check_partial_lora_adapters(model: nn.Module, configs: Mapping[str, Any]) -> None:
    """Raise :class:`PartialLoraDroppedError` where a LoRA adapter on ``model`` (an EMRRG) would silently lose its
    Partial LoRA (EMRRG §3.2).

    * ``partial_lora_modules`` that matches none of the adapter's LoRA layers, or a matching layer that got plain LoRA.
    * LoRA on the X-ray Mamba ``in_proj`` layers from a config that is not a :class:`PartialLoraConfig`: that is what
      PEFT builds from an ``adapter_config.json`` whose ``partial_lora_modules`` it dropped (another LoRA config class
      registered with PEFT, or the config read before this module was imported). Plain LoRA there is
      ``PartialLoraConfig(partial_lora_modules=None)``.
    """
    for adapter, config in configs.items():
        if getattr(config, "peft_type", None) != "LORA":
            continue
        layers = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, LoraLayer) and adapter in module.lora_A
        }
        if not layers:
            continue
        pattern = getattr(config, "partial_lora_modules", None)
        if pattern is not None:
            wanted = sorted(name for name in layers if re.fullmatch(pattern, name))
            if not wanted:
                raise PartialLoraDroppedError(
                    f"partial_lora_modules: {pattern!r} of adapter {adapter!r} matches none of the {len(layers)} "
                    f"layers it adapts (e.g. {min(layers)}), so its Partial LoRA would run as plain LoRA"
                )
            plain = [name for name in wanted if not _is_partial(layers[name], adapter)]
            if plain:
                raise PartialLoraDroppedError(
                    f"partial_lora_modules: {plain[0]} of adapter {adapter!r} matches {pattern!r} but got plain LoRA "
                    f"({type(layers[plain[0]]).__name__}); the Partial-LoRA layer was not dispatched"
                )
        elif not isinstance(config, PartialLoraConfig):
            in_projs = sorted(name for name in layers if re.fullmatch(EMRRG_IN_PROJ_MODULES, name))
            if in_projs:
                raise PartialLoraDroppedError(
                    f"partial_lora_modules: adapter {adapter!r} puts LoRA on {in_projs[0]} (and {len(in_projs) - 1} "
                    f"more in_proj layers) with a {type(config).__qualname__}, not a PartialLoraConfig, so a saved "
                    f"partial_lora_modules may have been dropped (PEFT builds LoRA configs as "
                    f"{peft_lora_config_class().__qualname__}); load the adapter with load_emrrg_adapter, or "
                    "configure plain LoRA on in_proj as PartialLoraConfig(partial_lora_modules=None)"
                )


def _is_partial(layer: LoraLayer, adapter: str) -> bool:
    return isinstance(layer.lora_variant.get(adapter), PartialLoraVariant)


def load_emrrg_adapter(model: nn.Module, adapter_path: str, is_trainable: bool = False, **kwargs: Any) -> PeftModel:
    """``PeftModel.from_pretrained`` for EMRRG adapters: Partial LoRA comes from ``adapter_config.json``; an adapter
    whose Partial LoRA would be lost raises :class:`PartialLoraDroppedError` naming the folder."""
    register_partial_lora_config()
    try:
        return PeftModel.from_pretrained(model, adapter_path, is_trainable=is_trainable, **kwargs)
    except PartialLoraDroppedError as error:
        raise PartialLoraDroppedError(f"{adapter_path}: {error}") from None


@dataclass
class TrainableParameters:
    """Trainable and total parameter counts of a model (tied parameters counted once)."""

    trainable: int
    total: int

    @property
    def fraction(self) -> float:
        return self.trainable / self.total

    def __str__(self) -> str:
        return f"trainable params: {self.trainable:,} / {self.total:,} ({100 * self.fraction:.2f}%)"


def count_parameters(model: nn.Module) -> TrainableParameters:
    """Counts every parameter once (works on the meta device: only shapes are read)."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return TrainableParameters(trainable=trainable, total=total)


def _text_lora_targets(language_model: nn.Module) -> tuple[str, ...]:
    names = {name.rsplit(".", 1)[-1] for name, _ in language_model.named_modules()}
    for candidates in (("q_proj", "v_proj"), ("c_attn",), ("query_key_value",), ("qkv_proj",)):
        if set(candidates) <= names:
            return candidates
    raise ValueError(
        f"text_lora_targets: cannot guess the attention projections of {type(language_model).__name__}; pass them"
    )


def emrrg_lora_config(
    model: nn.Module,
    r: int = 16,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
    in_proj_lora: str = "partial",
    text_lora_targets: Sequence[str] | None = None,
    train_projector: bool = True,
    train_hybrid_layers: bool = True,
    **lora_kwargs: Any,
) -> LoraConfig:
    """The LoRA config of EMRRG's recipe for ``model`` (an :class:`EMRRGForConditionalGeneration`).

    Rank 16 at scale 1 (``lora_alpha = r``) as the authors' launch scripts run LoRAP (``--dim_X 16 --s_X 1.0``).

    * X-ray Mamba: frozen; ``in_proj`` of every mixer gets Partial LoRA (``in_proj_lora="partial"``), ordinary
      LoRA (``"full"``) or nothing (``"none"``).
    * LLM: frozen; ordinary LoRA on its attention projections (``text_lora_targets``, guessed if unset:
      ``q_proj``/``v_proj``, or GPT-2's ``c_attn``; ``()`` for none).
    * Projector and the hybrid layers' gated cross-attentions: trained in full (``modules_to_save``).
    """
    if in_proj_lora not in ("partial", "full", "none"):
        raise ValueError(f"in_proj_lora: expected 'partial', 'full' or 'none', got {in_proj_lora!r}")
    text_targets = tuple(_text_lora_targets(model.language_model) if text_lora_targets is None else text_lora_targets)
    patterns = []
    if in_proj_lora != "none":
        patterns.append(EMRRG_IN_PROJ_MODULES)
    if text_targets:
        patterns.append(rf"language_model\..*\.({'|'.join(map(re.escape, text_targets))})")
    if not patterns:
        raise ValueError("in_proj_lora/text_lora_targets: the recipe needs at least one LoRA target")
    modules_to_save = (["multi_modal_projector"] if train_projector else []) + (
        ["gated_cross_attn"] if train_hybrid_layers else []
    )
    partial = EMRRG_IN_PROJ_MODULES if in_proj_lora == "partial" else None
    return PartialLoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=rf"^({'|'.join(patterns)})$",
        modules_to_save=modules_to_save or None,
        partial_lora_modules=partial,
        **lora_kwargs,
    )


def apply_emrrg_recipe(
    model: nn.Module, base_model_name_or_path: str | None = None, **recipe: Any
) -> tuple[PeftModel, TrainableParameters]:
    """Wrap ``model`` for EMRRG fine-tuning (see :func:`emrrg_lora_config` for ``recipe``).

    ``base_model_name_or_path`` names the base model in the adapter's config and card (PEFT's ``base_model``) when
    ``model`` was not loaded from a checkpoint (otherwise its path is used). Returns the ``PeftModel`` and its
    trainable
    parameters against the total of full fine-tuning (the parameters of ``model`` before wrapping, as the paper's
    2.3 % counts them).
    """
    if base_model_name_or_path is not None:
        model.config._name_or_path = base_model_name_or_path
    total = count_parameters(model).total
    peft_model = get_peft_model(model, emrrg_lora_config(model, **recipe))
    return peft_model, TrainableParameters(trainable=count_parameters(peft_model).trainable, total=total)
