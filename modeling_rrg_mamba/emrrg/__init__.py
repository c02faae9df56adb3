"""EMRRG (Zhang et al., 2025): X-ray Mamba + Partial LoRA + an LLM with hybrid decoder layers.

Importing this package registers the classes with the ``transformers`` Auto API (model types ``"emrrg"`` and
``"xray_mamba"``).
"""

from transformers import AutoConfig, AutoModel, AutoProcessor

from .._compat import register_auto_model, register_image_processors
from ..image_processing_xray import XrayImageProcessor
from ..image_processing_xray_fast import XrayImageProcessorFast
from .configuration_emrrg import EMRRGConfig, XrayMambaConfig
from .convert_authors_checkpoint import (
    ConversionReport,
    UnmappedKeysError,
    authors_checkpoint_kind,
    convert_emrrg_checkpoint,
    convert_xray_mamba_checkpoint,
    load_authors_checkpoint,
)
from .modeling_emrrg import EMRRGForConditionalGeneration, EMRRGPreTrainedModel, HybridAttention, HybridAttentionMixin
from .modeling_xray_mamba import XrayMambaModel
from .processing_emrrg import EMRRGProcessor

# Partial LoRA needs peft, loaded on first use: the Auto registration that imports this package can run while peft
# itself is being imported (peft -> transformers -> an Auto mapping look-up), when peft's names do not exist yet.
_PARTIAL_LORA_NAMES = (
    "PartialLoraConfig",
    "PartialLoraDroppedError",
    "PartialLoraLinear",
    "PartialLoraVariant",
    "apply_emrrg_recipe",
    "authors_checkpoint_kind",
    "count_parameters",
    "emrrg_lora_config",
    "load_emrrg_adapter",
    "partial_lora_config",
)


def __getattr__(name: str):
    """The Partial-LoRA names, imported from :mod:`.partial_lora` on first access."""
    if name in _PARTIAL_LORA_NAMES:
        from . import partial_lora

        return getattr(partial_lora, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_auto_classes() -> None:
    AutoConfig.register(XrayMambaConfig.model_type, XrayMambaConfig, exist_ok=True)
    AutoConfig.register(EMRRGConfig.model_type, EMRRGConfig, exist_ok=True)
    AutoModel.register(XrayMambaConfig, XrayMambaModel, exist_ok=True)
    register_auto_model(EMRRGConfig, EMRRGForConditionalGeneration)
    register_image_processors(EMRRGConfig, XrayImageProcessor, XrayImageProcessorFast)
    AutoProcessor.register(EMRRGConfig, EMRRGProcessor, exist_ok=True)


_register_auto_classes()

__all__ = [
    "ConversionReport",
    "EMRRGConfig",
    "EMRRGForConditionalGeneration",
    "EMRRGPreTrainedModel",
    "EMRRGProcessor",
    "HybridAttention",
    "HybridAttentionMixin",
    "PartialLoraConfig",
    "PartialLoraDroppedError",
    "PartialLoraLinear",
    "PartialLoraVariant",
    "XrayMambaConfig",
    "UnmappedKeysError",
    "XrayMambaModel",
    "apply_emrrg_recipe",
    "authors_checkpoint_kind",
    "convert_emrrg_checkpoint",
    "convert_xray_mamba_checkpoint",
    "count_parameters",
    "emrrg_lora_config",
    "load_authors_checkpoint",
    "load_emrrg_adapter",
    "partial_lora_config",
]
