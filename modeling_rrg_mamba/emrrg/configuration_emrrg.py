"""Configurations of EMRRG (Zhang et al., 2025): the X-ray Mamba vision backbone and the composite model.

``XrayMambaConfig`` describes the Vim-style backbone (§3.2 of the paper); ``EMRRGConfig`` joins it to any
causal language model known to ``AutoConfig`` (``text_config``) and holds the settings of the projector and of
the hybrid decoder layers (§3.3).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

from transformers import AutoConfig, PretrainedConfig

XRAY_MAMBA_PRESETS: dict[str, dict[str, int]] = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24},
}


def _swiglu_width(hidden_size: int) -> int:
    """SwiGLU hidden width with the parameter count of a 4x GELU MLP (8/3 of the model width, rounded up to 64)."""
    return 64 * math.ceil(8 * hidden_size / 3 / 64)


class XrayMambaConfig(PretrainedConfig):
    r"""Configuration of :class:`XrayMambaModel`, the Vim-style X-ray Mamba of EMRRG.

    Args:
        image_size (`int`, defaults to 224): side of the square input the position embeddings are laid out for.
            Other sizes divisible by ``patch_size`` (e.g. 192) work through interpolation of the embeddings.
        patch_size (`int`, defaults to 16): side of the square patches embedded by one convolution.
        num_channels (`int`, defaults to 3): channels of the input images.
        hidden_size (`int`, defaults to 768): width ``D`` of every token (768 base, 1024 large).
        num_hidden_layers (`int`, defaults to 12): number of blocks (12 base, 24 large).
        intermediate_size (`int`, *optional*): hidden width of the SwiGLU MLP; ``ceil(8D/3)`` rounded to 64 if unset.
        d_state (`int`, defaults to 16): state size ``N`` of every selective scan.
        d_conv (`int`, defaults to 4): kernel of the depthwise causal convolution before each scan.
        expand (`int`, defaults to 1): inner width of the mixer is ``expand * hidden_size``.
        dt_rank (`int` or `"auto"`, defaults to `"auto"`): rank of the step-size projection (``ceil(D/16)``).
        scan_directions (`list[str]`): the four scan routes, each with its own conv/x_proj/dt_proj/A/D.
        rms_norm_eps (`float`, defaults to 1e-5): epsilon of the pre-norm RMSNorms.
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of linear layers.
    """

    model_type = "xray_mamba"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        intermediate_size: Optional[int] = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 1,
        dt_rank: Union[int, str] = "auto",
        scan_directions: tuple[str, ...] | list[str] = ("row", "row_reversed", "col", "col_reversed"),
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        if image_size % patch_size:
            raise ValueError(f"image_size: {image_size} is not a multiple of patch_size {patch_size}")
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.intermediate_size = intermediate_size or _swiglu_width(hidden_size)
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.dt_rank = dt_rank
        self.scan_directions = list(scan_directions)
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> "XrayMambaConfig":
        """The paper's ``"base"`` (768 x 12) or ``"large"`` (1024 x 24) backbone; ``kwargs`` override fields."""
        if preset not in XRAY_MAMBA_PRESETS:
            raise ValueError(f"preset: unknown X-ray Mamba preset {preset!r}; choose from {sorted(XRAY_MAMBA_PRESETS)}")
        return cls(**{**XRAY_MAMBA_PRESETS[preset], **kwargs})

    def num_tokens(self, image_size: Optional[int] = None) -> int:
        """Tokens per view: the patches of an ``image_size`` square plus the middle class token."""
        side = (image_size or self.image_size) // self.patch_size
        return side * side + 1


REQUIRED_TEXT_CONFIG_ATTRIBUTES = ("hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size")


class EMRRGConfig(PretrainedConfig):
    r"""Configuration of :class:`EMRRGForConditionalGeneration`.

    Args:
        vision_config (`XrayMambaConfig` or `dict`, *optional*): the X-ray Mamba backbone (base preset if unset).
        text_config (`PretrainedConfig` or `dict`, *optional*): any causal LM config known to ``AutoConfig``
            (Llama, Qwen2, Mistral, GPT-2, ...); a tiny 8-layer Llama if unset. It needs ``hidden_size``,
            ``num_attention_heads``, ``num_hidden_layers`` and ``vocab_size`` (directly or via ``attribute_map``).
        image_token_id (`int`, defaults to 32000): id of the ``<image>`` placeholder. The processor repeats it once
            per visual token; the model writes the projected visual tokens at those positions. It may lie outside
            the LLM's vocabulary (its embedding is never read).
        num_views (`int`, defaults to 1): images per study (IU X-Ray uses 2). Only used to size the image-token run.
        hybrid_layer_interval (`int`, defaults to 8): every ``n``-th LLM layer (layers ``n-1, 2n-1, ...``) becomes a
            hybrid layer, its self-attention running in parallel with gated cross-attention to the visual tokens.
        cross_attention_heads (`int`, *optional*): heads of that cross-attention, each as wide as one LLM head;
            a quarter of the LLM's heads if unset (keeps the trainable share near the paper's 2.3 %).
        projector_layer_norm_eps (`float`, defaults to 1e-5): epsilon of the projector's LayerNorm.
    """

    model_type = "emrrg"
    sub_configs = {"vision_config": XrayMambaConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: Optional[Union[XrayMambaConfig, dict]] = None,
        text_config: Optional[Union[PretrainedConfig, dict]] = None,
        image_token_id: int = 32000,
        num_views: int = 1,
        hybrid_layer_interval: int = 8,
        cross_attention_heads: Optional[int] = None,
        projector_layer_norm_eps: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        if isinstance(vision_config, dict):
            vision_config = XrayMambaConfig(**vision_config)
        self.vision_config = vision_config if vision_config is not None else XrayMambaConfig()
        if isinstance(text_config, dict):
            if "model_type" not in text_config:
                raise ValueError("text_config: a dict text_config needs a 'model_type' (e.g. 'llama', 'qwen2', 'gpt2')")
            text_config = dict(text_config)
            text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        if text_config is None:
            text_config = AutoConfig.for_model(
                "llama", hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=1000)
        missing = [name for name in REQUIRED_TEXT_CONFIG_ATTRIBUTES if getattr(text_config, name, None) is None]
        if missing:
            raise ValueError(f"text_config: {type(text_config).__name__} lacks {missing}, needed to build hybrid layers")
        self.text_config = text_config
        if hybrid_layer_interval < 1 or hybrid_layer_interval > text_config.num_hidden_layers:
            raise ValueError(
                f"hybrid_layer_interval: expected 1..{text_config.num_hidden_layers} (the LLM's layers), "
                f"got {hybrid_layer_interval}; no layer would become hybrid")
        heads = cross_attention_heads or max(1, text_config.num_attention_heads // 4)
        if text_config.hidden_size % text_config.num_attention_heads:
            raise ValueError(
                f"text_config: hidden_size {text_config.hidden_size} is not divisible by "
                f"num_attention_heads {text_config.num_attention_heads}")
        self.image_token_id = image_token_id
        self.num_views = num_views
        self.hybrid_layer_interval = hybrid_layer_interval
        self.cross_attention_heads = heads
        self.projector_layer_norm_eps = projector_layer_norm_eps
        kwargs.setdefault("tie_word_embeddings", getattr(text_config, "tie_word_embeddings", False))
        # The base class pushes its (unset) attention implementation down to the sub-configs; keep the LLM's own.
        text_attention = None if "attn_implementation" in kwargs else getattr(text_config, "_attn_implementation", None)
        super().__init__(**kwargs)
        if text_attention is not None:
            self.text_config._attn_implementation = text_attention

    @property
    def hybrid_layer_indices(self) -> list[int]:
        """LLM layers that become hybrid: ``n-1, 2n-1, ...`` for ``n = hybrid_layer_interval``."""
        n = self.hybrid_layer_interval
        return list(range(n - 1, self.text_config.num_hidden_layers, n))

    @property
    def num_image_tokens(self) -> int:
        """Image-token placeholders per study: tokens per view times ``num_views``."""
        return self.vision_config.num_tokens() * self.num_views
