"""EMRRG (Zhang et al., 2025): X-ray Mamba + projector + a pretrained causal LLM with hybrid decoder layers.

    V   = LN(Linear(XrayMamba(images)))                       visual tokens in the LLM's width (§3.2; views averaged)
    e   = Embed(prompt) with the <image> placeholders replaced by V      ("<Img><ImageHere></Img>" of the paper)
    the LLM's layers start, start + n, ... are hybrid (§3.3). With h = the layer's shared pre-attention norm of the
    residual stream and Q the layer's own self-attention queries (after RoPE), their attention output becomes
        a   = o_proj(SelfAttnContext(h) + g(h) * CrossAttnContext(Q, K_v, V_v)),   [K_v | V_v] = kv_proj(norm(V))
        g(h) = tanh(w^T h + b), one scalar per token, w = b = 0 at start (so at step 0 the model is exactly the LLM)
    and the rest of the layer (residual, MLP) is the LLM's own. ``EMRRGConfig`` documents the other forms.

Data flow, top to bottom: :meth:`EMRRGForConditionalGeneration.forward` computes ``V`` and calls the LLM's decoder
stack (``language_model.base_model``) with ``cross_attention_states=V``; the stack passes that keyword to every
decoder layer and each layer to its attention (Llama, Qwen2, Mistral, GPT-2, ... all forward extra keyword arguments),
as transformers' Mllama does. The attention of a hybrid layer is the LLM's own attention module, its class extended
by :class:`HybridAttentionMixin` (``EMRRGHybridLlamaAttention`` for Llama): same object, same weights under the same
names (``...layers.0.self_attn.q_proj``, so a stock LLM checkpoint and the LLM's tensor-parallel plan apply
unchanged), plus one new child ``gated_cross_attn``. The logits are the LLM's output embeddings of the stack's last
hidden state. Non-hybrid layers ignore the keyword.

Cross-attention keys/values of the visual tokens are computed once per prompt and kept in the generation cache,
as extra layers appended after the LLM's own (``num_hidden_layers + j`` for the ``j``-th hybrid layer), so
``generate()`` - which passes ``pixel_values`` only at prefill - keeps conditioning every step, and beam search
reorders them with the rest of the cache. Without visual tokens and without cached ones (a text-only forward) the
hybrid layers skip the cross-attention.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, CausalLMOutputWithPast

from .._compat import (
    ATTENTION_CACHE_KWARGS,
    CACHE_NAME,
    GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP,
    accepts_legacy_cache_name,
    cache_field,
    enable_activation_checkpointing,
    init,
    output_cache,
)
from .._validation import check_token_ids
from ..saving import RemoteCodeModelMixin
from .configuration_emrrg import EMRRGConfig, XrayMambaConfig
from .modeling_xray_mamba import XrayMambaModel

Tensor = torch.Tensor

DECODER_LAYER_LIST_NAMES = ("layers", "h", "blocks", "block")
ATTENTION_CHILD_NAMES = ("self_attn", "attn", "attention", "self_attention")
PRE_ATTENTION_NORM_NAMES = ("input_layernorm", "ln_1", "attention_norm", "ln_attn", "pre_attention_layernorm")


@dataclass
class EMRRGCausalLMOutputWithPast(CausalLMOutputWithPast):
    """Output of :class:`EMRRGForConditionalGeneration`: transformers' `CausalLMOutputWithPast` (its cache field named
    as the installed release names it: ``cache`` from 5.24, ``past_key_values`` before) plus the projected visual
    tokens ``image_hidden_states`` ``(batch, visual tokens, hidden)``."""

    image_hidden_states: Tensor | None = None


class EMRRGMultiModalProjector(nn.Module):
    """Visual tokens to the LLM's width: ``LayerNorm(Linear(v))`` (§3.2; their ``llama_proj`` + ``layer_norm``)."""

    def __init__(self, config: EMRRGConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.text_config.hidden_size, eps=config.projector_layer_norm_eps)

    def forward(self, visual_tokens: Tensor) -> Tensor:
        return self.layer_norm(self.linear(visual_tokens))


def register_partial_lora_with_peft() -> None:
    """Let plain ``PeftModel.from_pretrained`` reload EMRRG's Partial-LoRA adapters as Partial LoRA (EMRRG §3.2)."""
    if importlib.util.find_spec("peft") is not None:
        from .partial_lora import register_partial_lora_config

        register_partial_lora_config()


class DynamicGate(nn.Module):
    """Input-dependent gate ``g(h) = tanh(W_g h + b_g)`` of §3.3, zero at initialisation.

    ``width`` 1 is the authors' one scalar per token; ``hidden_size`` is one value per channel. Deliberately not an
    ``nn.Linear``: the host LLM's ``_init_weights`` re-initialises every ``nn.Linear`` it finds and would lift the
    gate off zero.
    """

    def __init__(self, hidden_size: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(width, hidden_size))
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, hidden_states: Tensor) -> Tensor:
        return torch.tanh(
            F.linear(hidden_states, self.weight.to(hidden_states.dtype), self.bias.to(hidden_states.dtype))
        )


def _text_head_dim(text_config: Any) -> int:
    return getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads


class GatedCrossAttention(nn.Module):
    """``g(h) * CrossAttn(h, V)`` of a hybrid layer (§3.3), in one of the two forms of ``cross_attention_queries``.

    ``"self_attention"`` (the authors'): only ``kv_proj`` and the gate are new; the queries are the self-attention's
    and the output projection is the layer's ``o_proj``. ``"separate"`` (ours): own ``q/k/v/o_proj``.
    """

    def __init__(self, config: EMRRGConfig) -> None:
        super().__init__()
        text = config.text_config
        hidden = text.hidden_size
        self.head_dim = _text_head_dim(text)
        self.shared_queries = config.cross_attention_queries == "self_attention"
        std = getattr(text, "initializer_range", 0.02)
        if self.shared_queries:
            self.num_heads = text.num_attention_heads
            self.num_kv_heads = getattr(text, "num_key_value_heads", None) or self.num_heads
            self.kv_proj = nn.Linear(hidden, 2 * self.num_kv_heads * self.head_dim, bias=True)
        else:
            self.num_heads = self.num_kv_heads = config.cross_attention_heads
            inner = self.num_heads * self.head_dim
            self.q_proj = nn.Linear(hidden, inner, bias=False)
            self.k_proj = nn.Linear(hidden, inner, bias=False)
            self.v_proj = nn.Linear(hidden, inner, bias=False)
            self.o_proj = nn.Linear(inner, hidden, bias=False)
        self.gate = DynamicGate(hidden, 1 if config.cross_attention_gate == "token" else hidden)
        self.reset_parameters(std)

    @torch.no_grad()
    def reset_parameters(self, std: float = 0.02) -> None:
        """Projections ``N(0, std)``, biases and gate zero (the gate closed: the layer is the LLM's own at start).
        Parameters loaded from a checkpoint are left alone."""
        for name, parameter in self.named_parameters():
            if getattr(parameter, "_is_hf_initialized", False):
                continue
            if name.endswith("weight") and not name.startswith("gate."):
                init.normal_(parameter, mean=0.0, std=std)
            else:
                init.zeros_(parameter)

    def _heads(self, states: Tensor, heads: int) -> Tensor:
        return states.unflatten(-1, (heads, self.head_dim)).transpose(1, 2)

    def visual_keys_values(self, visual_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``(batch, kv heads, visual tokens, head_dim)``; ``kv_proj`` lays out ``(head, "
        "k|v, dim)``."""
        if self.shared_queries:
            kv = self.kv_proj(visual_tokens).unflatten(-1, (self.num_kv_heads, 2, self.head_dim))
            return kv[..., 0, :].transpose(1, 2), kv[..., 1, :].transpose(1, 2)
        return self._heads(self.k_proj(visual_tokens), self.num_heads), self._heads(
            self.v_proj(visual_tokens), self.num_heads
        )

    def forward(
        self,
        hidden_states: Tensor,
        keys: Tensor,
        values: Tensor,
        queries: Tensor | None = None,
        output_projection: nn.Module | None = None,
    ) -> Tensor:
        """``hidden_states`` = h; ``queries`` (``(B, heads, L, head_dim)``) and ``output_projection`` (without its
        bias) come from the self-attention in the ``"self_attention"`` form."""
        if queries is None:
            queries = self._heads(self.q_proj(hidden_states), self.num_heads)
        groups = queries.shape[1] // keys.shape[1]
        keys, values = keys.to(queries.dtype), values.to(queries.dtype)
        if groups > 1:
            keys, values = keys.repeat_interleave(groups, dim=1), values.repeat_interleave(groups, dim=1)
        context = F.scaled_dot_product_attention(queries, keys, values).transpose(1, 2).flatten(-2)
        gate = self.gate(hidden_states)
        if self.shared_queries:
            return _without_bias(output_projection, gate * context)
        return gate * self.o_proj(context)


def _without_bias(projection: nn.Module, states: Tensor) -> Tensor:
    """``projection(states)`` minus its bias: the bias is already in the self-attention output."""
    out = projection(states)
    bias = getattr(projection, "bias", None)
    return out if bias is None else out - bias


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _write_cross_cache(cache: DynamicCache, index: int, keys: Tensor, values: Tensor) -> None:
    """Put the visual keys/values in cache layer ``index`` (replacing what was there)."""
    while len(cache.layers) <= index:
        cache.layers.append(DynamicLayer())
    layer = DynamicLayer()
    layer.update(keys, values)
    cache.layers[index] = layer


def _read_cross_cache(cache: Cache | None, index: int) -> tuple[Tensor, Tensor] | None:
    if cache is None or len(cache.layers) <= index or not cache.layers[index].is_initialized:
        return None
    return cache.layers[index].keys, cache.layers[index].values


class HybridAttentionMixin:
    """The attention of a hybrid decoder layer (§3.3): the LLM's self-attention in parallel with gated cross-attention.

    Mixed into the LLM's own attention class (see :func:`hybrid_attention_class`); the module keeps its weights and
    names and gains ``gated_cross_attn``. ``cross_attention_states`` (the visual tokens) arrives as a keyword argument
    that the LLM's decoder stack and layer pass on to their attention.
    """

    gated_cross_attn: GatedCrossAttention
    cross_cache_index: int
    _attention_signature: inspect.Signature  # of the LLM attention's forward, set per hybrid class

    def init_hybrid(self, config: EMRRGConfig, pre_attention_norm: nn.Module | None, cross_cache_index: int) -> None:
        """Add the cross-attention's weights; ``pre_attention_norm`` is the layer's shared norm (``"self_attention"``
        form: the visual tokens pass it too, as in the authors' code)."""
        weight = next(self.parameters())
        self.gated_cross_attn = GatedCrossAttention(config).to(device=weight.device, dtype=weight.dtype)
        self.cross_cache_index = cross_cache_index
        # A reference, not a child: the norm is the decoder layer's (its weights keep their name there).
        object.__setattr__(self, "shared_norm", pre_attention_norm if self.gated_cross_attn.shared_queries else None)

    def _visual_keys_values(self, visual_tokens: Tensor | None, cache: Cache | None) -> tuple[Tensor, Tensor] | None:
        if visual_tokens is None:
            return _read_cross_cache(cache, self.cross_cache_index)
        if self.shared_norm is not None:
            visual_tokens = self.shared_norm(visual_tokens)
        keys, values = self.gated_cross_attn.visual_keys_values(visual_tokens)
        if cache is not None:
            if not isinstance(cache, DynamicCache):
                raise ValueError(
                    f"cache: EMRRG keeps visual keys/values in a DynamicCache, got {type(cache).__name__}"
                )
            _write_cross_cache(cache, self.cross_cache_index, keys, values)
        return keys, values

    def _self_attention_queries(
        self, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """The queries ``(B, heads, L, head_dim)`` this self-attention uses (after its q-norm and RoPE, if any)."""
        head_dim = self.gated_cross_attn.head_dim
        if hasattr(self, "q_proj"):
            queries = self.q_proj(hidden_states).unflatten(-1, (-1, head_dim))
            if getattr(self, "q_norm", None) is not None:
                queries = self.q_norm(queries)
            queries = queries.transpose(1, 2)
            if position_embeddings is not None:
                cos, sin = (t.unsqueeze(1) for t in position_embeddings)
                queries = queries * cos + _rotate_half(queries) * sin
            return queries
        if hasattr(self, "c_attn"):  # GPT-2: fused q|k|v projection, no rotary embedding
            width = self.gated_cross_attn.num_heads * head_dim
            return self.c_attn(hidden_states)[..., :width].unflatten(-1, (-1, head_dim)).transpose(1, 2)
        raise ValueError(f"cross_attention_queries: cannot read the queries of {type(self).__name__}; use 'separate'")

    def _output_projection(self) -> nn.Module:
        for name in ("o_proj", "c_proj", "out_proj", "dense"):
            if isinstance(getattr(self, name, None), nn.Module):
                return getattr(self, name)
        raise ValueError(f"cross_attention_queries: cannot find the output projection of {type(self).__name__}")

    def forward(self, *args: Any, cross_attention_states: Tensor | None = None, **kwargs: Any) -> Any:
        outputs = super().forward(*args, **kwargs)
        bound = _bound_arguments(self._attention_signature, (self, *args), kwargs)
        cache = next((bound[name] for name in ATTENTION_CACHE_KWARGS if bound.get(name) is not None), None)
        keys_values = self._visual_keys_values(cross_attention_states, cache)
        if keys_values is None:  # text only: nothing to attend to
            return outputs
        hidden_states = bound["hidden_states"]
        if self.gated_cross_attn.shared_queries:
            queries = self._self_attention_queries(hidden_states, bound.get("position_embeddings"))
            cross = self.gated_cross_attn(hidden_states, *keys_values, queries, self._output_projection())
        else:
            cross = self.gated_cross_attn(hidden_states, *keys_values)
        if isinstance(outputs, tuple):
            return (outputs[0] + cross,) + tuple(outputs[1:])
        return outputs + cross


def _bound_arguments(signature: inspect.Signature, args: tuple, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments of an attention call by name (however the decoder layer passed them)."""
    bound = signature.bind_partial(*args, **kwargs).arguments
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            bound.update(bound.pop(parameter.name, {}))
    return bound


HybridAttention = HybridAttentionMixin  # the name before the hybrid attention became a mixin (isinstance checks)

_HYBRID_CLASSES: dict[type, type] = {}


def hybrid_attention_class(attention_class: type) -> type:
    """``EMRRGHybrid<Attention>``: the LLM's attention class with :class:`HybridAttentionMixin` (made once, importable
    from this module by name so that modules holding it pickle)."""
    if attention_class not in _HYBRID_CLASSES:
        name = f"EMRRGHybrid{attention_class.__name__}"
        namespace = {"__module__": __name__, "_attention_signature": inspect.signature(attention_class.forward)}
        hybrid = type(name, (HybridAttentionMixin, attention_class), namespace)
        setattr(sys.modules[__name__], name, hybrid)
        _HYBRID_CLASSES[attention_class] = hybrid
    return _HYBRID_CLASSES[attention_class]


def decoder_layers(language_model: PreTrainedModel) -> nn.ModuleList:
    """The LLM's list of decoder layers (``model.layers``, ``transformer.h``, ...)."""
    decoder = language_model.base_model
    num_layers = language_model.config.num_hidden_layers
    for name in DECODER_LAYER_LIST_NAMES:
        layers = getattr(decoder, name, None)
        if isinstance(layers, nn.ModuleList) and len(layers) == num_layers:
            return layers
    raise ValueError(
        f"text_config: cannot find the {num_layers} decoder layers of {type(language_model).__name__} "
        f"(looked for {DECODER_LAYER_LIST_NAMES} on {type(decoder).__name__})"
    )


def attention_child_name(layer: nn.Module) -> str:
    """Name of the self-attention child of one decoder layer."""
    for name in ATTENTION_CHILD_NAMES:
        if isinstance(getattr(layer, name, None), nn.Module):
            return name
    raise ValueError(
        f"text_config: decoder layer {type(layer).__name__} has no attention child named one of "
        f"{ATTENTION_CHILD_NAMES}"
    )


def insert_hybrid_layers(language_model: PreTrainedModel, config: EMRRGConfig) -> None:
    """Make layers ``config.hybrid_layer_indices`` of ``language_model`` hybrid, in place (weights and names kept)."""
    layers = decoder_layers(language_model)
    num_layers = language_model.config.num_hidden_layers
    for j, index in enumerate(config.hybrid_layer_indices):
        attention = getattr(layers[index], attention_child_name(layers[index]))
        if isinstance(attention, HybridAttentionMixin):
            raise ValueError(f"language_model: layer {index} is already hybrid")
        norm = next((getattr(layers[index], n) for n in PRE_ATTENTION_NORM_NAMES if hasattr(layers[index], n)), None)
        if norm is None and config.cross_attention_queries == "self_attention":
            raise ValueError(
                f"text_config: decoder layer {type(layers[index]).__name__} has no pre-attention norm named one of "
                f"{PRE_ATTENTION_NORM_NAMES}; use cross_attention_queries='separate'"
            )
        attention.__class__ = hybrid_attention_class(type(attention))
        attention.init_hybrid(config, norm, cross_cache_index=num_layers + j)


class EMRRGPreTrainedModel(RemoteCodeModelMixin, PreTrainedModel):
    """Base class of the EMRRG models: config class, weight initialisation, save / load hooks.

    ``save_pretrained`` also writes the code and ``auto_map`` that ``trust_remote_code`` loading needs (see
    :mod:`modeling_rrg_mamba.saving`).
    """

    config_class = EMRRGConfig
    base_model_prefix = "language_model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _skip_keys_device_placement = CACHE_NAME
    _no_split_modules = ["XrayMambaBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise what a checkpoint lacks at this level: the projector's Linear / LayerNorm (loaded "
        "tensors kept)."""
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            _init_unloaded(module.weight, lambda t: init.normal_(t, mean=0.0, std=std))
            if module.bias is not None:
                _init_unloaded(module.bias, init.zeros_)
        elif isinstance(module, nn.LayerNorm):
            _init_unloaded(module.weight, init.ones_)
            _init_unloaded(module.bias, init.zeros_)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        """transformers' initialisation, the LLM first under its own rules, then the hybrid layers' cross-attentions
        (gates back to zero): they live inside the LLM, whose ``_init_weights`` handles them as plain modules (and
        not the gate at all).

        The LLM goes first because transformers 5 initialises a model whose class lives outside ``transformers``
        (EMRRG) as custom code, passing that down to every sub-model: modules without parameters of their own are
        then marked initialised without calling ``_init_weights``. A stock LLM may initialise its parameters there
        (GPT-2 scales ``c_proj`` by ``1/sqrt(2 n_layer)`` in ``GPT2Attention`` / ``GPT2MLP``), so a model built on
        the meta device, or loaded without those weights, would differ from a freshly built one."""
        self.language_model.initialize_weights()
        super().initialize_weights()
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        for module in self.modules():
            if isinstance(module, GatedCrossAttention):
                module.reset_parameters(std)

    def gradient_checkpointing_enable(
        self, gradient_checkpointing_kwargs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Non-reentrant checkpointing (transformers 4.57 defaults to reentrant): the visual tokens reach the hybrid
        layers as a keyword argument, which reentrant checkpointing neither differentiates nor can replay, so
        ``use_reentrant=True`` (older recipes pass it) switches to non-reentrant with one warning.

        transformers 5 routes ``activation_checkpointing_enable`` (what its Trainer calls) through this override too.
        """
        gradient_checkpointing_kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        if gradient_checkpointing_kwargs["use_reentrant"]:
            warnings.warn(
                "gradient_checkpointing_kwargs: use_reentrant=True cannot carry the visual tokens to EMRRG's hybrid "
                "layers; using non-reentrant checkpointing (same gradients)",
                UserWarning,
                stacklevel=2,
            )
            gradient_checkpointing_kwargs["use_reentrant"] = False
        enable_activation_checkpointing(super(), gradient_checkpointing_kwargs, **kwargs)


def _init_unloaded(tensor: Tensor, initialise: Any) -> None:
    """Apply ``initialise`` unless ``tensor`` came from a checkpoint (transformers 4.57 does not check this itself)."""
    if not getattr(tensor, "_is_hf_initialized", False):
        initialise(tensor)


class EMRRGForConditionalGeneration(EMRRGPreTrainedModel, GenerationMixin):
    """EMRRG report generator: ``pixel_values`` + a prompt with ``<image>`` placeholders -> report tokens.

    ``vision_model`` and ``language_model`` may be passed already built (e.g. loaded from checkpoints, see
    :meth:`from_vision_text_pretrained`); otherwise they are created from ``config``. The hybrid layers are
    inserted into the language model here.
    """

    def __init__(
        self,
        config: EMRRGConfig,
        vision_model: XrayMambaModel | None = None,
        language_model: PreTrainedModel | None = None,
    ) -> None:
        super().__init__(config)
        if vision_model is not None and vision_model.config.hidden_size != config.vision_config.hidden_size:
            raise ValueError(
                f"vision_model: hidden_size {vision_model.config.hidden_size} does not match "
                f"config.vision_config.hidden_size {config.vision_config.hidden_size}"
            )
        if language_model is not None and language_model.config.hidden_size != config.text_config.hidden_size:
            raise ValueError(
                f"language_model: hidden_size {language_model.config.hidden_size} does not match "
                f"config.text_config.hidden_size {config.text_config.hidden_size}"
            )
        self.vision_model = vision_model if vision_model is not None else XrayMambaModel(config.vision_config)
        self.multi_modal_projector = EMRRGMultiModalProjector(config)
        self.language_model = (
            language_model if language_model is not None else AutoModelForCausalLM.from_config(config.text_config)
        )
        insert_hybrid_layers(self.language_model, config)
        self.post_init()
        self.suppress_image_token()
        register_partial_lora_with_peft()

    @property
    def peft_config(self) -> dict[str, Any]:
        """The configs of the PEFT adapters on this model, by adapter name (PEFT sets them when it wraps the model)."""
        if "_peft_config" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__} has no PEFT adapters (no peft_config)")
        return self.__dict__["_peft_config"]

    @peft_config.setter
    def peft_config(self, configs: dict[str, Any]) -> None:
        """PEFT hands over its adapters' configs once it has put their layers in: an adapter whose Partial LoRA would
        silently run as plain LoRA (a dropped ``partial_lora_modules``) raises here, before any forward or merge."""
        self.__dict__.pop("_checked_peft_configs", None)
        self._check_peft_adapters(configs)
        self.__dict__["_peft_config"] = configs

    @peft_config.deleter
    def peft_config(self) -> None:
        self.__dict__.pop("_peft_config", None)

    def _check_peft_adapters(self, configs: dict[str, Any]) -> None:
        """:func:`~.partial_lora.check_partial_lora_adapters` on the adapters not checked yet (PEFT's ``load_adapter``
        adds later ones to ``peft_config`` in place, so ``forward`` checks those)."""
        checked = self.__dict__.setdefault("_checked_peft_configs", set())
        new = {name: config for name, config in configs.items() if (name, id(config)) not in checked}
        if new:
            from .partial_lora import check_partial_lora_adapters

            check_partial_lora_adapters(self, new)
            checked.update((name, id(config)) for name, config in new.items())

    def suppress_image_token(self) -> None:
        """Never generate ``<image>``: a generated placeholder would ask for visual tokens in mid-report."""
        token = self.config.image_token_id
        suppressed = list(self.generation_config.suppress_tokens or [])
        if token < self.config.text_config.vocab_size and token not in suppressed:
            self.generation_config.suppress_tokens = suppressed + [token]

    @property
    def hybrid_attentions(self) -> list[HybridAttentionMixin]:
        """The attentions of the hybrid layers, in layer order."""
        return [module for module in self.language_model.modules() if isinstance(module, HybridAttentionMixin)]

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: str | XrayMambaModel | XrayMambaConfig,
        text_model_name_or_path: str | PreTrainedModel,
        image_token_id: int,
        **config_kwargs: Any,
    ) -> EMRRGForConditionalGeneration:
        """Build EMRRG from an X-ray Mamba (checkpoint path, model, or config for a fresh one) and a pretrained
        causal LM (checkpoint path or model): the LLM keeps its weights, hybrid layers are inserted, the new
        projector and cross-attentions are initialised (gates at zero). ``config_kwargs`` go to :class:`EMRRGConfig`.
        """
        if isinstance(vision_model_name_or_path, XrayMambaConfig):
            vision_model = XrayMambaModel(vision_model_name_or_path)
        elif isinstance(vision_model_name_or_path, XrayMambaModel):
            vision_model = vision_model_name_or_path
        else:
            vision_model = XrayMambaModel.from_pretrained(vision_model_name_or_path)
        if isinstance(text_model_name_or_path, PreTrainedModel):
            language_model = text_model_name_or_path
        else:
            language_model = AutoModelForCausalLM.from_pretrained(text_model_name_or_path)
        config = EMRRGConfig(
            vision_config=vision_model.config,
            text_config=language_model.config,
            image_token_id=image_token_id,
            **config_kwargs,
        )
        model = cls(config, vision_model=vision_model, language_model=language_model)
        if language_model.generation_config is not None:
            model.generation_config = language_model.generation_config
            model.suppress_image_token()
        return model

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.language_model.set_output_embeddings(new_embeddings)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> nn.Embedding:
        """Resize the LLM's input (and output) embeddings, e.g. after adding ``<image>`` to its tokenizer; keeps
        ``config.text_config.vocab_size`` in step and ``<image>`` out of what ``generate()`` may emit."""
        embeddings = self.language_model.resize_token_embeddings(*args, **kwargs)
        self.config.text_config.vocab_size = embeddings.weight.shape[0]
        self.suppress_image_token()
        return embeddings

    def get_decoder(self) -> PreTrainedModel:
        return self.language_model

    @property
    def vocab_size(self) -> int:
        """The LLM's vocabulary size (``config.text_config.vocab_size``)."""
        return self.config.text_config.vocab_size

    def get_vision_backbone(self) -> nn.Module:
        """The X-ray Mamba image backbone, e.g. for its own learning rate."""
        return self.vision_model

    def get_image_features(
        self,
        pixel_values: Tensor,
        return_dict: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs: Any,
    ) -> BaseModelOutputWithPooling | tuple:
        """``(B, C, H, W)`` or ``(B, views, C, H, W)`` -> visual tokens ``(B, tokens, D_text)``: the views' X-ray Mamba
        tokens averaged (``multi_view_fusion="mean"``, their ``encode_img``) or concatenated, then projected (§3.2).

        Returns, as transformers 5 vision-language models do, a ``BaseModelOutputWithPooling`` (a tuple with
        ``return_dict=False``, or ``config.return_dict=False``) whose ``last_hidden_state`` is the backbone's output
        per view ``(B * views, tokens per view, D_vision)``, ``pooler_output`` the projected visual tokens, and
        ``hidden_states`` the backbone's per-block states when ``output_hidden_states``. The X-ray Mamba backbone
        has no attention maps.
        """
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        if pixel_values.ndim != 5:
            raise ValueError(
                f"pixel_values: expected (batch, [views,] channels, height, width), got {tuple(pixel_values.shape)}"
            )
        batch, views = pixel_values.shape[:2]
        vision = self.vision_model(
            pixel_values.flatten(0, 1), output_hidden_states=output_hidden_states, return_dict=True
        )
        tokens = vision.last_hidden_state.unflatten(0, (batch, views))
        if self.config.multi_view_fusion == "mean":
            tokens = tokens.mean(dim=1)
        else:
            tokens = tokens.flatten(1, 2)
        output = BaseModelOutputWithPooling(
            last_hidden_state=vision.last_hidden_state,
            pooler_output=self.multi_modal_projector(tokens),
            hidden_states=vision.hidden_states,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def _merge_visual_tokens(self, input_ids: Tensor, visual_tokens: Tensor | None) -> Tensor:
        """Embed ``input_ids``, writing the visual tokens over the ``<image>`` placeholders."""
        image_mask = input_ids == self.config.image_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        placeholders = image_mask.sum(dim=1)
        if visual_tokens is None:
            if placeholders.any():
                raise ValueError(
                    f"pixel_values: input_ids contain <image> placeholders (id {self.config.image_token_id}) but no "
                    "pixel_values were given"
                )
            return embeds
        if visual_tokens.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"pixel_values: {visual_tokens.shape[0]} image sets for {input_ids.shape[0]} prompts; give one "
                "per prompt"
            )
        if not bool((placeholders == visual_tokens.shape[1]).all()):
            raise ValueError(
                f"input_ids: every prompt needs {visual_tokens.shape[1]} <image> placeholders "
                f"(id {self.config.image_token_id}) for its visual tokens, found {placeholders.tolist()}; "
                "build prompts with EMRRGProcessor"
            )
        return embeds.masked_scatter(image_mask.unsqueeze(-1), visual_tokens.to(embeds.dtype))

    @accepts_legacy_cache_name
    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | Tensor = 0,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> EMRRGCausalLMOutputWithPast | tuple:
        r"""The LLM's loss and next-token logits for prompts whose ``<image>`` placeholders carry the visual tokens.

        Args:
            pixel_values (`(batch, [views,] channels, height, width)`): the study's images; needed at prefill (and at
                every step without a cache). Later decoding steps read the visual keys/values from ``cache``.
                Without them (and without ``<image>`` placeholders) the forward is text-only: the hybrid layers
                skip cross-attention.
            cache (`DynamicCache`): the LLM's key/value cache, with the hybrid layers' visual keys/values appended
                (`generate()` passes it; also accepted as ``past_key_values``, its name before transformers 5.24).
            labels (`(batch, length)`): next-token targets; ``-100`` (prompt, image placeholders, padding) is
                ignored.
            shift_labels (`(batch, length)`): the targets already shifted (position ``i`` holds the token after ``i``),
                as sequence/context parallelism passes them; used instead of shifting ``labels`` when given.
            inputs_embeds: already-merged embeddings; the visual tokens of ``pixel_values`` then reach the model
                only through the hybrid layers (nothing is written into ``inputs_embeds``).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("input_ids: pass exactly one of input_ids or inputs_embeds")
        if "_peft_config" in self.__dict__:  # wrapped by PEFT: adapters added since wrapping are checked once
            self._check_peft_adapters(self.peft_config)
        shift_labels = kwargs.pop("shift_labels", None)
        self._check_token_ids(input_ids, inputs_embeds, labels)
        self._check_token_ids(input_ids, inputs_embeds, shift_labels, name="shift_labels")
        visual_tokens = None
        if pixel_values is not None:
            visual_tokens = self.get_image_features(pixel_values, return_dict=True).pooler_output
        if inputs_embeds is None:
            inputs_embeds = self._merge_visual_tokens(input_ids, visual_tokens)
            is_image = input_ids == self.config.image_token_id  # the placeholders carry images, never targets
            if labels is not None:
                labels = labels.masked_fill(is_image, -100)
            if shift_labels is not None:
                shift_labels = shift_labels.masked_fill(torch.roll(is_image, -1, dims=1), -100)
        elif visual_tokens is not None and visual_tokens.shape[0] != inputs_embeds.shape[0]:
            raise ValueError(
                f"pixel_values: {visual_tokens.shape[0]} image sets for {inputs_embeds.shape[0]} prompts; give one "
                "per prompt"
            )
        use_cache = use_cache if use_cache is not None else getattr(self.config.text_config, "use_cache", True)
        if use_cache and cache is None:
            # Created here (not by the LLM) so that the cache the visual keys/values go to is the one returned.
            cache = DynamicCache(config=self.config.text_config)
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)  # the Trainer's loss normaliser, not the stack's
        # The LLM's decoder stack passes cross_attention_states on to its layers' attentions (module docstring).
        decoder_outputs = self.language_model.base_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            cross_attention_states=visual_tokens,
            return_dict=True,
            **cache_field(cache),
            **kwargs,
        )
        hidden_states = decoder_outputs.last_hidden_state
        kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.language_model.get_output_embeddings()(hidden_states[:, kept, :])
        softcap = getattr(self.config.text_config, "final_logit_softcapping", None)
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        loss = None
        if labels is not None or shift_labels is not None:
            loss = self.language_model.loss_function(
                logits=logits,
                labels=labels,
                vocab_size=logits.shape[-1],
                num_items_in_batch=num_items_in_batch,
                shift_labels=shift_labels,
            )
        output = EMRRGCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            hidden_states=decoder_outputs.hidden_states,
            attentions=decoder_outputs.attentions,
            image_hidden_states=visual_tokens,
            **cache_field(output_cache(decoder_outputs)),
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def _check_token_ids(
        self, input_ids: Tensor | None, inputs_embeds: Tensor | None, labels: Tensor | None, name: str = "labels"
    ) -> None:
        """Integer ids inside the LLM's vocabulary (the ``<image>`` placeholder may lie outside it), and labels (or
        ``shift_labels``, named by ``name``) of the prompts' shape."""
        vocab_size = self.get_input_embeddings().num_embeddings
        if input_ids is not None:
            check_token_ids("input_ids", input_ids, vocab_size, ignored=(self.config.image_token_id,))
        if labels is not None:
            # labels=input_ids is common: the placeholders become -100 in forward.
            check_token_ids(name, labels, vocab_size, ignored=(-100, self.config.image_token_id))
            expected = tuple(input_ids.shape) if input_ids is not None else tuple(inputs_embeds.shape[:2])
            if tuple(labels.shape) != expected:
                raise ValueError(f"{name}: expected shape {expected} (one per input token), got {tuple(labels.shape)}")

    def prepare_inputs_for_generation(self, input_ids: Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Images enter at prefill (and at every step without a cache); later steps read the visual keys/values from
        the cache. transformers 5 drops ``pixel_values`` after prefill itself."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP and kwargs.get("use_cache", True):
            cache = model_inputs.get(CACHE_NAME)
            if cache is not None and cache.get_seq_length() > 0:
                model_inputs.pop("pixel_values", None)
        return model_inputs
