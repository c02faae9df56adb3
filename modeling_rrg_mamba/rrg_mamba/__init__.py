"""RRG-Mamba (Hou et al., IJCAI 2025) as a transformers model; importing this package registers it with the Auto
classes (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForVision2Seq where it exists,
AutoImageProcessor, AutoTokenizer, AutoProcessor)."""

from transformers import AutoConfig, AutoImageProcessor, AutoProcessor, AutoTokenizer

from .._compat import register_auto_model

from .configuration_rrg_mamba import GDLM_PRESETS, RRGMambaConfig
from .image_processing_rrg_mamba import RRGMambaImageProcessor
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
AutoImageProcessor.register(RRGMambaConfig, slow_image_processor_class=RRGMambaImageProcessor, exist_ok=True)
AutoTokenizer.register(RRGMambaConfig, fast_tokenizer_class=RRGMambaTokenizer, exist_ok=True)
AutoProcessor.register(RRGMambaConfig, RRGMambaProcessor, exist_ok=True)

__all__ = [
    "GDLM_PRESETS",
    "RRGMambaConfig",
    "RRGMambaEncoderOutput",
    "RRGMambaForConditionalGeneration",
    "RRGMambaImageProcessor",
    "RRGMambaPreTrainedModel",
    "RRGMambaProcessor",
    "RRGMambaSeq2SeqLMOutput",
    "RRGMambaTokenizer",
]
