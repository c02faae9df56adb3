"""RRG-Mamba (Hou et al., IJCAI 2025) as a transformers model; importing this package registers it with the Auto
classes (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForVision2Seq where it exists,
AutoImageProcessor, AutoTokenizer, AutoProcessor)."""

from transformers import AutoConfig, AutoProcessor, AutoTokenizer

from .._compat import register_auto_model, register_image_processors
from .configuration_rrg_mamba import GDLM_PRESETS, RRGMambaConfig
from .image_processing_rrg_mamba import RRGMambaImageProcessor, RRGMambaImageProcessorFast
from .modeling_rrg_mamba import (
    RRGMambaEncoderOutput,
    RRGMambaForConditionalGeneration,
    RRGMambaPreTrainedModel,
    RRGMambaSeq2SeqLMOutput,
)
from .processing_rrg_mamba import RRGMambaProcessor
from .tokenization_rrg_mamba import RRGMambaTokenizer

AutoConfig.register(RRGMambaConfig.model_type, RRGMambaConfig, exist_ok=True)
register_auto_model(RRGMambaConfig, RRGMambaForConditionalGeneration)
register_image_processors(RRGMambaConfig, RRGMambaImageProcessor, RRGMambaImageProcessorFast)
AutoTokenizer.register(RRGMambaConfig, fast_tokenizer_class=RRGMambaTokenizer, exist_ok=True)
AutoProcessor.register(RRGMambaConfig, RRGMambaProcessor, exist_ok=True)

__all__ = [
    "GDLM_PRESETS",
    "RRGMambaConfig",
    "RRGMambaEncoderOutput",
    "RRGMambaForConditionalGeneration",
    "RRGMambaImageProcessor",
    "RRGMambaImageProcessorFast",
    "RRGMambaPreTrainedModel",
    "RRGMambaProcessor",
    "RRGMambaSeq2SeqLMOutput",
    "RRGMambaTokenizer",
]
