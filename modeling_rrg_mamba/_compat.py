"""Every difference between the transformers and PEFT releases rrg-mamba supports, in one place.

Supported: transformers 4.57.x and 5.x (CI tests 4.57, the locked 5.x release and the newest one; README,
"transformers versions"), PEFT >= 0.17. Each item below is small, named for what differs, and says which releases
need it. Items are detected by feature, not by version number, so a release that back-ports or drops a feature is
handled by what it actually has. Nothing else in the package looks at the installed versions.

The remote-code exporter (:mod:`modeling_rrg_mamba.remote_code`) follows the imports of the model files, so
this module travels with every exported model folder.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import transformers
from transformers import PreTrainedTokenizerFast, processing_utils
from transformers.modeling_outputs import CausalLMOutputWithPast

try:  # transformers 5: initialisers that skip tensors already loaded from a checkpoint
    from transformers import initialization as init
except ImportError:  # transformers 4.57: _init_weights only runs on modules with missing weights
    from torch.nn import init

__all__ = [
    "ATTENTION_CACHE_KWARGS",
    "CACHE_NAME",
    "CHECKPOINTING_ARGUMENTS",
    "FastImageProcessorBase",
    "GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP",
    "TOKENIZER_ENCODES_IN_BATCH_METHOD",
    "LegacyCacheNameForMambaClasses",
    "PORTABLE_TOKENIZER_CLASSES",
    "UNSET_REPORT_TO",
    "accepts_legacy_cache_name",
    "cache_field",
    "checkpointing_arguments_as_installed",
    "enable_activation_checkpointing",
    "fractional_warmup_as_ratio",
    "init",
    "output_cache",
    "peft_lora_config_class",
    "portable_tokenizer_config",
    "register_auto_model",
    "register_image_processors",
    "register_peft_custom_module",
    "register_peft_lora_config_class",
    "report_to_as_in_transformers_5",
    "saves_on_this_rank",
    "subprocessors_by_auto_class",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T", bound=type)

# ----------------------------------------------------------------------------------------------------------------
# The cache's name. transformers 5.24 renamed `past_key_values` / `cache_params` to `cache` in model outputs, forward
# keyword arguments and `prepare_inputs_for_generation` (the old names warn until 5.40). Up to 5.23 `generate()`
# hands the cache to `forward` as `past_key_values` (as `cache_params` for a class whose name contains "mamba") and
# reads it back from the output field of that name; from 5.24 on it uses `cache` everywhere.
# ----------------------------------------------------------------------------------------------------------------

CACHE_NAME: str = (
    "cache" if "cache" in {field.name for field in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"
)
"""Name of the cache in model outputs and in the keyword arguments of a language model's ``forward``."""

_LEGACY_CACHE_NAMES = ("past_key_values", "cache_params")

ATTENTION_CACHE_KWARGS: tuple[str, ...] = ("cache", "past_key_values", "past_key_value")
"""Names under which an LLM's decoder layer hands the cache to its attention module: ``cache`` (5.24+),
``past_key_values`` (4.57 - 5.23) and ``past_key_value`` (older 4.x attention signatures some LLMs keep)."""


def cache_field(cache: Any) -> dict[str, Any]:
    """``{CACHE_NAME: cache}``: the cache as a keyword argument of an output class or of an LLM's ``forward``."""
    return {CACHE_NAME: cache}


def output_cache(outputs: Any) -> Any:
    """The cache of a model output, read under this release's name (no deprecation warning on 5.24+)."""
    return getattr(outputs, CACHE_NAME, None)


def accepts_legacy_cache_name(forward: F) -> F:
    """Let ``forward(..., cache=...)`` also take the cache as ``past_key_values`` / ``cache_params``.

    transformers up to 5.23 passes the cache under those names (they are the native ones there, so no warning);
    5.24+ passes ``cache`` and, like its own models, warns once that the old names are deprecated.
    """

    @functools.wraps(forward)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for legacy in _LEGACY_CACHE_NAMES:
            if legacy not in kwargs:
                continue
            value = kwargs.pop(legacy)
            if kwargs.get("cache") is not None and value is not None:
                raise ValueError(f"{legacy}: pass the cache once, as `cache` (got both `cache` and `{legacy}`)")
            if value is not None:
                if CACHE_NAME == "cache":
                    _warn_legacy_cache_name(legacy)
                kwargs["cache"] = value
        return forward(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _warn_legacy_cache_name(name: str) -> None:
    warnings.warn(
        f"`{name}` is deprecated since transformers 5.24 (removed in 5.40); pass the cache as `cache`.",
        FutureWarning,
        stacklevel=3,
    )


if CACHE_NAME == "cache":

    class LegacyCacheNameForMambaClasses:
        """Nothing to do on transformers 5.24+: `generate()` keys every cache as ``cache``."""

else:

    class LegacyCacheNameForMambaClasses:  # type: ignore[no-redef]
        """transformers <= 5.23 keys the generation cache of any class whose name contains "mamba" as
        ``cache_params`` (Mamba's recurrent state) and never builds a key/value cache for it. An attention decoder
        with "Mamba" in its class name (RRG-Mamba) mixes this in before ``GenerationMixin`` to get the usual
        ``EncoderDecoderCache`` / ``DynamicCache`` under ``past_key_values``."""

        def _prepare_cache_for_generation(self, generation_config, model_kwargs: dict[str, Any], *args, **kwargs):
            if model_kwargs.get("past_key_values") is not None:
                model_kwargs["cache_params"] = model_kwargs.pop("past_key_values")
            super()._prepare_cache_for_generation(generation_config, model_kwargs, *args, **kwargs)
            if "cache_params" in model_kwargs:
                model_kwargs["past_key_values"] = model_kwargs.pop("cache_params")


# ----------------------------------------------------------------------------------------------------------------
# Generation inputs. transformers 5 drops `pixel_values` from `prepare_inputs_for_generation` after the prefill step
# when a cache is used; 4.57 passes them at every step (models that cache their visual keys/values drop them).
# ----------------------------------------------------------------------------------------------------------------

GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP: bool = not hasattr(
    transformers.generation.utils, "MULTIMODAL_INPUTS_TO_DROP_OUTSIDE_PREFILL"
)

# ----------------------------------------------------------------------------------------------------------------
# Auto classes. AutoModelForVision2Seq exists up to 4.57 (deprecated there); 5.x removed it.
# ----------------------------------------------------------------------------------------------------------------


def register_auto_model(config_class: type, model_class: type) -> None:
    """Register ``model_class`` with AutoModel, AutoModelForImageTextToText and, where the installed transformers
    still has it (<= 4.57), AutoModelForVision2Seq."""
    transformers.AutoModel.register(config_class, model_class, exist_ok=True)
    transformers.AutoModelForImageTextToText.register(config_class, model_class, exist_ok=True)
    vision2seq = getattr(transformers, "AutoModelForVision2Seq", None)
    if vision2seq is not None:
        vision2seq.register(config_class, model_class, exist_ok=True)


# ----------------------------------------------------------------------------------------------------------------
# Processors. transformers 5 finds a processor's sub-processors from its __init__ parameter names (and warns that
# `image_processor_class` / `tokenizer_class` are deprecated); 4.57 needs those class attributes.
# ----------------------------------------------------------------------------------------------------------------


def subprocessors_by_auto_class(processor_class: T) -> T:
    """Class decorator: on transformers 4.57, load the image processor and tokenizer through the Auto classes."""
    if not hasattr(processing_utils, "MODALITY_TO_AUTOPROCESSOR_MAPPING"):
        processor_class.image_processor_class = "AutoImageProcessor"
        processor_class.tokenizer_class = "AutoTokenizer"
    return processor_class


# ----------------------------------------------------------------------------------------------------------------
# Tokenizers. transformers 5 encodes everything in `_encode_plus`; 4.57 routes single texts and batches alike through
# `_batch_encode_plus` (which 5 no longer has).
# ----------------------------------------------------------------------------------------------------------------

TOKENIZER_ENCODES_IN_BATCH_METHOD: bool = hasattr(PreTrainedTokenizerFast, "_batch_encode_plus")

# ----------------------------------------------------------------------------------------------------------------
# Tokenizer files. transformers 5 saves a tokenizer that has no model-specific class (a `PreTrainedTokenizerFast`
# built from a `tokenizers` object, as many LLM repositories ship) as `"tokenizer_class": "TokenizersBackend"`, and
# its added special tokens as a list `"extra_special_tokens": [...]`. 4.57 has no class of that name ("Tokenizer class
# TokenizersBackend does not exist or is not currently imported") and reads `extra_special_tokens` as a dict of named
# tokens (a list fails). Both series read `PreTrainedTokenizerFast` (5 maps it to `TokenizersBackend`) and the list
# `additional_special_tokens` (5 still accepts it on load).
# ----------------------------------------------------------------------------------------------------------------

#: Tokenizer class names that only transformers 5 knows, and the name every supported series loads them as.
PORTABLE_TOKENIZER_CLASSES: dict[str, str] = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def portable_tokenizer_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of the tokenizer_config.json content ``config`` that transformers 4.57 and 5.x both load.

    A generic ``TokenizersBackend`` class becomes ``PreTrainedTokenizerFast``; a list of ``extra_special_tokens``
    joins ``additional_special_tokens``. Anything else (a dict of named extra tokens, files written by 4.57) is kept.
    """
    portable = dict(config)
    name = portable.get("tokenizer_class")
    if name in PORTABLE_TOKENIZER_CLASSES:
        portable["tokenizer_class"] = PORTABLE_TOKENIZER_CLASSES[name]
    extra = portable.get("extra_special_tokens")
    if isinstance(extra, list):
        del portable["extra_special_tokens"]
        listed = list(portable.get("additional_special_tokens") or [])
        portable["additional_special_tokens"] = listed + [token for token in extra if token not in listed]
    return portable


# ----------------------------------------------------------------------------------------------------------------
# Saving on several processes. transformers 5's `save_pretrained` writes files only where `should_save_on_this_rank`
# says so (the main process and, once a process group is initialised, rank 0 only); 4.57 wherever
# `is_main_process` is true.
# ----------------------------------------------------------------------------------------------------------------


def saves_on_this_rank(model: Any, is_main_process: bool) -> bool:
    """Whether ``model.save_pretrained(..., is_main_process=is_main_process)`` writes files in this process."""
    decide = getattr(model, "should_save_on_this_rank", None)
    return bool(decide(is_main_process)) if decide is not None else is_main_process


# ----------------------------------------------------------------------------------------------------------------
# Training arguments. transformers 5 reads `warmup_steps` below 1 as a share of all steps; 4.57 takes that share as
# `warmup_ratio` (which 5 removed).
# ----------------------------------------------------------------------------------------------------------------


def fractional_warmup_as_ratio(arguments: dict[str, Any], known_fields: set[str]) -> None:
    """In place: move a fractional ``warmup_steps`` to ``warmup_ratio`` where TrainingArguments has that field."""
    steps = arguments.get("warmup_steps")
    if isinstance(steps, float) and 0 < steps < 1 and "warmup_ratio" in known_fields:
        arguments["warmup_ratio"] = arguments.pop("warmup_steps")


#: (name from transformers 5.24 on, name before) of the TrainingArguments that switch activation checkpointing on;
#: 5.24 still reads the old names but warns (FutureWarning, removal in v6), 4.57 knows only the old ones.
CHECKPOINTING_ARGUMENTS = (
    ("activation_checkpointing", "gradient_checkpointing"),
    ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs"),
)


def checkpointing_arguments_as_installed(arguments: dict[str, Any], known_fields: set[str]) -> None:
    """In place: a recipe's activation-checkpointing settings under the names the installed TrainingArguments reads
    without a warning, whichever of the two names the recipe used."""
    for new, old in CHECKPOINTING_ARGUMENTS:
        if new in known_fields and old in arguments:
            arguments[new] = arguments.pop(old)
        elif new not in known_fields and new in arguments:
            arguments[old] = arguments.pop(new)


#: transformers 5's reading of an unset ``report_to``: no integration. 4.57 reads it as every installed one
#: (TensorBoard among them), whose logs go into ``output_dir`` as training starts, so a run refused at its first
#: batch left ``output_dir/runs/...`` behind there only.
UNSET_REPORT_TO = "none"


def report_to_as_in_transformers_5(report_to: str | list[str] | None) -> str | list[str]:
    """``report_to`` as given, or transformers 5's default (no integration) where it was left unset."""
    return UNSET_REPORT_TO if report_to is None else report_to


# ----------------------------------------------------------------------------------------------------------------
# Activation checkpointing. transformers 5 implements it in `_activation_checkpointing_enable` (the public
# `gradient_checkpointing_enable` warns, and its Trainer calls `activation_checkpointing_enable`); 4.57 only has
# `gradient_checkpointing_enable`, and defaults to reentrant checkpointing.
# ----------------------------------------------------------------------------------------------------------------


def enable_activation_checkpointing(model_super: Any, checkpointing_kwargs: dict[str, Any], **kwargs: Any) -> None:
    """Call the installed release's implementation; ``model_super`` is ``super()`` inside the model's override."""
    enable = getattr(model_super, "_activation_checkpointing_enable", None)
    if enable is not None:
        enable(checkpointing_kwargs, **kwargs)
    else:
        model_super.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpointing_kwargs, **kwargs)


# ----------------------------------------------------------------------------------------------------------------
# PEFT. A custom LoRA layer class is dispatched through `LoraConfig._register_custom_module` (PEFT >= 0.15, private
# API: this is the one place that touches it, and a test fails loudly if PEFT renames it).
# ----------------------------------------------------------------------------------------------------------------


def register_peft_custom_module(lora_config: Any, mapping: dict[type, type]) -> Any:
    """Make ``lora_config`` build ``mapping[base_layer_type]`` LoRA layers; returns ``lora_config``."""
    register = getattr(lora_config, "_register_custom_module", None)
    if register is None:
        import peft

        raise RuntimeError(
            f"peft {peft.__version__}: LoraConfig._register_custom_module is gone, so Partial LoRA cannot be "
            "attached; "
            "install a peft release that rrg-mamba's lock file lists (scripts/bootstrap.sh) and report this"
        )
    register(mapping)
    return lora_config


def peft_lora_config_class() -> type:
    """The class PEFT (0.14-0.21: ``PEFT_TYPE_TO_CONFIG_MAPPING``) builds a saved LoRA adapter's config as."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    return PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA]


def register_peft_lora_config_class(config_cls: type) -> None:
    """Make PEFT build ``config_cls`` (a ``LoraConfig`` subclass) for every saved LoRA adapter it loads.

    PEFT (0.14-0.21) picks the config class of ``adapter_config.json`` from ``PEFT_TYPE_TO_CONFIG_MAPPING[peft_type]``;
    a subclass registered there reads (and writes) the fields it adds. Idempotent; a subclass already registered
    by another package stays in place (``config_cls`` must then derive from it) so that neither drops the other's
    fields."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    from peft.utils import PeftType

    current = peft_lora_config_class()
    if issubclass(current, config_cls):
        return
    if not issubclass(config_cls, current):
        raise RuntimeError(
            f"peft: LoRA configs already load as {current.__module__}.{current.__qualname__}, which "
            f"{config_cls.__qualname__} does not extend; Partial LoRA adapters would reload as plain LoRA"
        )
    PEFT_TYPE_TO_CONFIG_MAPPING[PeftType.LORA] = config_cls


# ----------------------------------------------------------------------------------------------------------------
# Fast (torchvision) image processors. transformers 5 calls them the torchvision backend: a subclass of
# `TorchvisionBackend`, registered with AutoImageProcessor as `image_processor_classes={"torchvision": ...}` (with
# only a "pil" class registered, every AutoImageProcessor load warns "Requested torchvision backend is not
# available. Falling back to pil backend."). 4.57 has `BaseImageProcessorFast`, registered as
# `fast_image_processor_class` (its `slow_image_processor_class` attribute must name the slow class).
# ----------------------------------------------------------------------------------------------------------------

try:
    from transformers.image_processing_backends import TorchvisionBackend as FastImageProcessorBase
except ImportError:  # transformers 4.57
    from transformers.image_processing_utils_fast import BaseImageProcessorFast as FastImageProcessorBase


def register_image_processors(config_class: type, slow_class: type, fast_class: type) -> None:
    """Register the slow (PIL / NumPy) and fast (torchvision) image processor of ``config_class``."""
    if "image_processor_classes" in inspect.signature(transformers.AutoImageProcessor.register).parameters:
        transformers.AutoImageProcessor.register(
            config_class, image_processor_classes={"pil": slow_class, "torchvision": fast_class}, exist_ok=True
        )
    else:
        transformers.AutoImageProcessor.register(
            config_class, slow_image_processor_class=slow_class, fast_image_processor_class=fast_class, exist_ok=True
        )
