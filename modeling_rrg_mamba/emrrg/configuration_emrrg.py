"""Configurations of EMRRG (Zhang et al., 2025): the X-ray Mamba vision backbone and the composite model.

``XrayMambaConfig`` describes the Vim-style backbone (§3.2 of the paper); ``EMRRGConfig`` joins it to any
causal language model known to ``AutoConfig`` (``text_config``) and holds the settings of the projector and of
the hybrid decoder layers (§3.3).
"""

from __future__ import annotations

import math
from typing import Any

from transformers import AutoConfig, PretrainedConfig

XRAY_MAMBA_PRESETS: dict[str, dict[str, int]] = {
    "base": {"hidden_size": 768, "num_hidden_layers": 12},
    "large": {"hidden_size": 1024, "num_hidden_layers": 24},
}

#: Pre-norms an X-ray Mamba may use: ours (RMSNorm) or the authors' (LayerNorm with bias).
XRAY_MAMBA_NORM_TYPES = ("rms_norm", "layer_norm")


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
        norm_type (`str`, defaults to `"rms_norm"`): the blocks' pre-norms and the final norm. `"rms_norm"` (ours:
            RMSNorm without bias) or `"layer_norm"` (LayerNorm with bias, as in the authors' ARM / MambaXray-VL
            backbone; set by :func:`convert_xray_mamba_checkpoint`).
        mlp_bias (`bool`, defaults to `False`): biases on the SwiGLU projections (`True` in the authors' backbone).
        rms_norm_eps (`float`, defaults to 1e-5): epsilon of the pre-norms and the final norm (either ``norm_type``).
        initializer_range (`float`, defaults to 0.02): std of the normal initialisation of linear layers.
        selective_scan_backend (`str`, *optional*): the scan path of the mixers: `"triton"` (this package's kernels,
            the GPU default), `"mamba_ssm"` (mamba-ssm's CUDA kernels, the `cuda` extra), `"fused"` (the C kernel,
            the CPU default), `"reference"` (plain PyTorch) or `"auto"`; unset, the process setting decides
            (``RRG_MAMBA_SELECTIVE_SCAN``, :func:`set_selective_scan_backend`). A path named for another device
            than the model's falls back to that device's default (see :func:`selective_scan_backend`).
    """

    model_type = "xray_mamba"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        intermediate_size: int | None = None,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 1,
        dt_rank: int | str = "auto",
        scan_directions: tuple[str, ...] | list[str] = ("row", "row_reversed", "col", "col_reversed"),
        norm_type: str = "rms_norm",
        mlp_bias: bool = False,
        rms_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        selective_scan_backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        if norm_type not in XRAY_MAMBA_NORM_TYPES:
            raise ValueError(f"norm_type: expected one of {XRAY_MAMBA_NORM_TYPES}, got {norm_type!r}")
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
        self.norm_type = norm_type
        self.mlp_bias = mlp_bias
        self.rms_norm_eps = rms_norm_eps
        self.initializer_range = initializer_range
        self.selective_scan_backend = selective_scan_backend
        super().__init__(**kwargs)

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> XrayMambaConfig:
        """The paper's ``"base"`` (768 x 12) or ``"large"`` (1024 x 24) backbone; ``kwargs`` override fields."""
        if preset not in XRAY_MAMBA_PRESETS:
            raise ValueError(
                f"preset: unknown X-ray Mamba preset {preset!r}; choose from {sorted(XRAY_MAMBA_PRESETS)}"
            )
        return cls(**{**XRAY_MAMBA_PRESETS[preset], **kwargs})

    def num_tokens(self, image_size: int | None = None) -> int:
        """Tokens per view: the patches of an ``image_size`` square plus the middle class token."""
        side = (image_size or self.image_size) // self.patch_size
        return side * side + 1


MULTI_VIEW_FUSIONS = ("mean", "concat")
CROSS_ATTENTION_QUERIES = ("self_attention", "separate")
CROSS_ATTENTION_GATES = ("token", "channel")
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
        num_views (`int`, defaults to 1): images per study (IU X-Ray uses 2).
        multi_view_fusion (`str`, defaults to `"mean"`): how the views of a study become visual tokens.
            `"mean"` (the authors' code, ``encode_img``; the paper is silent): the views' X-ray Mamba tokens are
            averaged, so a study has the tokens of one view. `"concat"` (ours before): the views' tokens are
            concatenated (``num_views`` times as many ``<image>`` placeholders).
        hybrid_layer_interval (`int`, defaults to 8): a hybrid layer every ``n`` LLM layers (paper §3.3, their ``8``).
        hybrid_layer_start (`int`, defaults to 0): index of the first hybrid layer, so the hybrid layers are
            ``start, start + n, ...``. ``0`` gives the authors' 0/8/16/24 on a 32-layer LLM (their
            ``range(0, num_layers, n)``); ``n - 1`` gives our former 7/15/23/31.
        cross_attention_queries (`str`, defaults to `"self_attention"`): where the cross-attention's queries come from.
            `"self_attention"` (the authors' code): the hybrid layer's own self-attention queries (after RoPE) attend
            to keys/values of one new ``kv_proj`` (``2 * num_key_value_heads * head_dim`` outputs, with bias) over the
            visual tokens normalised by the layer's shared pre-attention norm; the gated result goes through the
            layer's own output projection: ``o_proj(ctx_self + g * ctx_cross)``. `"separate"` (ours before): a
            cross-attention with its own q/k/v/o projections and ``cross_attention_heads`` heads on the raw visual
            tokens, added after ``o_proj``.
        cross_attention_heads (`int`, *optional*): heads of the `"separate"` cross-attention, each as wide as one LLM
            head; a quarter of the LLM's heads if unset. Ignored for `"self_attention"` (the LLM's heads are used).
        cross_attention_gate (`str`, defaults to `"token"`): the dynamic gate ``g(h)`` on the cross-attention output,
            zero at initialisation so that the model starts as the bare LLM. `"token"` (the authors' code,
            ``whole-dynamic`` gating): one scalar per token, ``tanh(w^T h + b)``. `"channel"` (ours before): one value
            per token and channel, ``tanh(W_g h + b_g)`` (``hidden_size^2`` parameters per hybrid layer).
        projector_layer_norm_eps (`float`, defaults to 1e-5): epsilon of the projector's LayerNorm.
    """

    model_type = "emrrg"
    sub_configs = {"vision_config": XrayMambaConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: XrayMambaConfig | dict | None = None,
        text_config: PretrainedConfig | dict | None = None,
        image_token_id: int = 32000,
        num_views: int = 1,
        multi_view_fusion: str = "mean",
        hybrid_layer_interval: int = 8,
        hybrid_layer_start: int = 0,
        cross_attention_queries: str = "self_attention",
        cross_attention_heads: int | None = None,
        cross_attention_gate: str = "token",
        projector_layer_norm_eps: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        if isinstance(vision_config, dict):
            vision_config = XrayMambaConfig(**vision_config)
        self.vision_config = vision_config if vision_config is not None else XrayMambaConfig()
        if isinstance(text_config, dict):
            if "model_type" not in text_config:
                raise ValueError(
                    "text_config: a dict text_config needs a 'model_type' (e.g. 'llama', 'qwen2', 'gpt2')"
                )
            text_config = dict(text_config)
            text_config = AutoConfig.for_model(text_config.pop("model_type"), **text_config)
        if text_config is None:
            text_config = AutoConfig.for_model(
                "llama",
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=8,
                num_attention_heads=4,
                num_key_value_heads=2,
                vocab_size=1000,
            )
        missing = [name for name in REQUIRED_TEXT_CONFIG_ATTRIBUTES if getattr(text_config, name, None) is None]
        if missing:
            raise ValueError(
                f"text_config: {type(text_config).__name__} lacks {missing}, needed to build hybrid layers"
            )
        self.text_config = text_config
        if hybrid_layer_interval < 1 or hybrid_layer_interval > text_config.num_hidden_layers:
            raise ValueError(
                f"hybrid_layer_interval: expected 1..{text_config.num_hidden_layers} (the LLM's layers), "
                f"got {hybrid_layer_interval}; no layer would become hybrid"
            )
        if not 0 <= hybrid_layer_start < text_config.num_hidden_layers:
            raise ValueError(
                f"hybrid_layer_start: expected 0..{text_config.num_hidden_layers - 1} (the LLM's layers), got "
                f"{hybrid_layer_start}"
            )
        for name, value, choices in (
            ("multi_view_fusion", multi_view_fusion, MULTI_VIEW_FUSIONS),
            ("cross_attention_queries", cross_attention_queries, CROSS_ATTENTION_QUERIES),
            ("cross_attention_gate", cross_attention_gate, CROSS_ATTENTION_GATES),
        ):
            if value not in choices:
                raise ValueError(f"{name}: expected one of {choices}, got {value!r}")
        heads = cross_attention_heads or max(1, text_config.num_attention_heads // 4)
        if text_config.hidden_size % text_config.num_attention_heads:
            raise ValueError(
                f"text_config: hidden_size {text_config.hidden_size} is not divisible by "
                f"num_attention_heads {text_config.num_attention_heads}"
            )
        self.image_token_id = image_token_id
        self.num_views = num_views
        self.multi_view_fusion = multi_view_fusion
        self.hybrid_layer_interval = hybrid_layer_interval
        self.hybrid_layer_start = hybrid_layer_start
        self.cross_attention_queries = cross_attention_queries
        self.cross_attention_heads = heads
        self.cross_attention_gate = cross_attention_gate
        self.projector_layer_norm_eps = projector_layer_norm_eps
        kwargs.setdefault("tie_word_embeddings", getattr(text_config, "tie_word_embeddings", False))
        # The base class pushes its (unset) attention implementation down to the sub-configs; keep the LLM's own.
        text_attention = (
            None if "attn_implementation" in kwargs else getattr(text_config, "_attn_implementation", None)
        )
        super().__init__(**kwargs)
        if text_attention is not None:
            self.text_config._attn_implementation = text_attention

    @property
    def hybrid_layer_indices(self) -> list[int]:
        """LLM layers that become hybrid: ``start, start + n, ...`` (§3.3; the authors' 0/8/16/24 at n = 8)."""
        return list(range(self.hybrid_layer_start, self.text_config.num_hidden_layers, self.hybrid_layer_interval))

    @property
    def num_image_tokens(self) -> int:
        """Image-token placeholders per study: tokens per view, times ``num_views`` when the views are concatenated."""
        return self.vision_config.num_tokens() * (self.num_views if self.multi_view_fusion == "concat" else 1)
