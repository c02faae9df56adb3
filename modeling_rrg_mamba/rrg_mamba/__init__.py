"""RRG-Mamba (Hou et al., IJCAI 2025) as a transformers model; importing this package registers it with the Auto
classes (AutoConfig, AutoModel, AutoModelForImageTextToText, AutoModelForVision2Seq where it exists,
AutoImageProcessor, AutoTokenizer, AutoProcessor)."""

import transformers
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
)

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
AutoModel.register(RRGMambaConfig, RRGMambaForConditionalGeneration, exist_ok=True)
AutoModelForImageTextToText.register(RRGMambaConfig, RRGMambaForConditionalGeneration, exist_ok=True)
if hasattr(transformers, "AutoModelForVision2Seq"):  # removed in transformers 5
    transformers.AutoModelForVision2Seq.register(RRGMambaConfig, RRGMambaForConditionalGeneration, exist_ok=True)
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
