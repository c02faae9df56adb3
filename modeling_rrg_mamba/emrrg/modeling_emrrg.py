"""EMRRG (Zhang et al., 2025): X-ray Mamba + projector + a pretrained causal LLM with hybrid decoder layers.

    V   = LN(Linear(XrayMamba(images)))                       visual tokens in the LLM's width (§3.2)
    e   = Embed(prompt) with the <image> placeholders replaced by V      ("<Img><ImageHere></Img>" of the paper)
    every n-th LLM layer is hybrid (§3.3): with h = its (shared) attention pre-norm of the residual stream,
        a   = SelfAttn(h) + g(h) ⊙ CrossAttn(h, V),      g(h) = tanh(W_g h + b_g),  W_g = b_g = 0 at start
    and the rest of the layer (residual, MLP) is the LLM's own, so at step 0 the model is exactly the LLM.

Any causal LM of ``transformers`` whose decoder layers call an attention child named ``self_attn`` / ``attn`` /
``attention`` / ``self_attention`` and whose decoder stack forwards extra keyword arguments down to it (Llama, Qwen2,
Mistral, GPT-2, ...) can be used. The visual tokens enter at that stack (``language_model.base_model``, through a
forward pre-hook), not at the causal-LM class's ``forward``, which some LLMs (GPT-2 on transformers 4.57) do not
pass extra arguments on from. The hybrid layer wraps that attention child: the LLM's weights stay where they were,
one level deeper (``...layers.7.self_attn.self_attn.q_proj``), and the new trainable weights sit next to them
(``...layers.7.self_attn.gated_cross_attn``).

Cross-attention keys/values of the visual tokens are computed once per prompt and kept in the generation cache,
as extra layers appended after the LLM's own (``num_hidden_layers + j`` for the ``j``-th hybrid layer), so
``generate()`` - which passes ``pixel_values`` only at prefill - keeps conditioning every step, and beam search
reorders them with the rest of the cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from .._compat import (
    CACHE_NAME,
    GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP,
    accepts_legacy_cache_name,
    cache_field,
    enable_activation_checkpointing,
    output_cache,
)
from .configuration_emrrg import EMRRGConfig, XrayMambaConfig
from .modeling_xray_mamba import XrayMambaModel

Tensor = torch.Tensor

DECODER_LAYER_LIST_NAMES = ("layers", "h", "blocks", "block")
ATTENTION_CHILD_NAMES = ("self_attn", "attn", "attention", "self_attention")
PENDING_VISUAL_TOKENS = "_emrrg_pending_visual_tokens"


@dataclass
class EMRRGCausalLMOutputWithPast(CausalLMOutputWithPast):
    """Output of :class:`EMRRGForConditionalGeneration`: transformers' `CausalLMOutputWithPast` (its cache field named
    as the installed release names it: ``cache`` from 5.24, ``past_key_values`` before) plus the projected visual
    tokens ``image_hidden_states`` ``(batch, visual tokens, hidden)``."""

    image_hidden_states: Optional[Tensor] = None


class EMRRGMultiModalProjector(nn.Module):
    """Visual tokens to the LLM's width: ``LayerNorm(Linear(v))``."""

    def __init__(self, config: EMRRGConfig) -> None:
        super().__init__()
        self.linear = nn.Linear(config.vision_config.hidden_size, config.text_config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.text_config.hidden_size, eps=config.projector_layer_norm_eps)

    def forward(self, visual_tokens: Tensor) -> Tensor:
        return self.layer_norm(self.linear(visual_tokens))


class DynamicGate(nn.Module):
    """Input-dependent gate ``g(h) = tanh(W_g h + b_g)``, per token and channel, zero at initialisation.

    Deliberately not an ``nn.Linear``: the host LLM's ``_init_weights`` re-initialises every ``nn.Linear`` it finds
    uninitialised and would lift the gate off zero.
    """

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, hidden_states: Tensor) -> Tensor:
        return torch.tanh(F.linear(hidden_states, self.weight, self.bias))


class GatedCrossAttention(nn.Module):
    """``g(h) ⊙ CrossAttn(h, V)``: multi-head attention from text states to visual tokens, times a dynamic gate.

    With the gate at zero the whole term is exactly zero, so the pretrained LLM is unchanged at step 0 while the
    gate still receives gradients. ``cross_attention_heads`` heads, each as wide as one LLM head.
    """

    def __init__(self, config: EMRRGConfig) -> None:
        super().__init__()
        hidden = config.text_config.hidden_size
        self.num_heads = config.cross_attention_heads
        self.head_dim = hidden // config.text_config.num_attention_heads
        inner = self.num_heads * self.head_dim
        self.to_q = nn.Linear(hidden, inner, bias=False)
        self.to_k = nn.Linear(hidden, inner, bias=False)
        self.to_v = nn.Linear(hidden, inner, bias=False)
        self.to_out = nn.Linear(inner, hidden, bias=False)
        self.gate = DynamicGate(hidden)
        std = getattr(config.text_config, "initializer_range", 0.02)
        for projection in (self.to_q, self.to_k, self.to_v, self.to_out):
            nn.init.normal_(projection.weight, std=std)

    def _heads(self, states: Tensor) -> Tensor:
        return states.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def visual_keys_values(self, visual_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``(batch, heads, visual tokens, head_dim)`` of the visual tokens."""
        return self._heads(self.to_k(visual_tokens)), self._heads(self.to_v(visual_tokens))

    def forward(self, hidden_states: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        query = self._heads(self.to_q(hidden_states))
        attended = F.scaled_dot_product_attention(query, keys.to(query.dtype), values.to(query.dtype))
        cross = self.to_out(attended.transpose(1, 2).flatten(-2))
        return self.gate(hidden_states) * cross


def _write_cross_cache(cache: DynamicCache, index: int, keys: Tensor, values: Tensor) -> None:
    """Put the visual keys/values in cache layer ``index`` (replacing what was there)."""
    while len(cache.layers) <= index:
        cache.layers.append(DynamicLayer())
    layer = DynamicLayer()
    layer.update(keys, values)
    cache.layers[index] = layer


def _read_cross_cache(cache: Optional[Cache], index: int) -> Optional[tuple[Tensor, Tensor]]:
    if cache is None or len(cache.layers) <= index or not cache.layers[index].is_initialized:
        return None
    return cache.layers[index].keys, cache.layers[index].values


class HybridAttention(nn.Module):
    """The attention of a hybrid decoder layer: the LLM's self-attention in parallel with gated cross-attention.

    Both read the same pre-normed states ``h`` (the layer's shared LayerNorm); their sum replaces the
    self-attention output inside the LLM's own decoder layer, whose residual and MLP are untouched.
    ``visual_tokens`` arrives as a keyword argument the LLM's decoder stack forwards to its attention modules.
    """

    def __init__(self, self_attn: nn.Module, config: EMRRGConfig, cross_cache_index: int) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.gated_cross_attn = GatedCrossAttention(config)
        self.cross_cache_index = cross_cache_index

    def _visual_keys_values(self, visual_tokens: Optional[Tensor], cache: Optional[Cache]) -> tuple[Tensor, Tensor]:
        if visual_tokens is None:
            cached = _read_cross_cache(cache, self.cross_cache_index)
            if cached is None:
                raise ValueError(
                    "pixel_values: a hybrid layer got neither visual tokens nor cached visual keys/values; "
                    "pass pixel_values (or a cache filled by a previous call with them)")
            return cached
        keys, values = self.gated_cross_attn.visual_keys_values(visual_tokens)
        if cache is not None:
            if not isinstance(cache, DynamicCache):
                raise ValueError(f"cache: EMRRG keeps visual keys/values in a DynamicCache, got {type(cache).__name__}")
            _write_cross_cache(cache, self.cross_cache_index, keys, values)
        return keys, values

    def forward(self, hidden_states: Tensor, *args: Any, visual_tokens: Optional[Tensor] = None, **kwargs: Any):
        outputs = self.self_attn(hidden_states, *args, **kwargs)
        keys, values = self._visual_keys_values(visual_tokens, kwargs.get(CACHE_NAME))
        cross = self.gated_cross_attn(hidden_states, keys, values)
        if isinstance(outputs, tuple):
            return (outputs[0] + cross,) + outputs[1:]
        return outputs + cross


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
        f"(looked for {DECODER_LAYER_LIST_NAMES} on {type(decoder).__name__})")


def attention_child_name(layer: nn.Module) -> str:
    """Name of the self-attention child of one decoder layer."""
    for name in ATTENTION_CHILD_NAMES:
        if isinstance(getattr(layer, name, None), nn.Module):
            return name
    raise ValueError(f"text_config: decoder layer {type(layer).__name__} has no attention child named one of {ATTENTION_CHILD_NAMES}")


def _pass_visual_tokens_to_layers(decoder: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """Forward pre-hook of the LLM's decoder stack: hand the visual tokens EMRRG left on it to its layers as a kwarg."""
    visual_tokens = decoder.__dict__.pop(PENDING_VISUAL_TOKENS, None)
    if visual_tokens is not None:
        kwargs["visual_tokens"] = visual_tokens
    return args, kwargs


def insert_hybrid_layers(language_model: PreTrainedModel, config: EMRRGConfig) -> None:
    """Make layers ``config.hybrid_layer_indices`` of ``language_model`` hybrid, in place."""
    language_model.base_model.register_forward_pre_hook(_pass_visual_tokens_to_layers, with_kwargs=True)
    layers = decoder_layers(language_model)
    num_layers = language_model.config.num_hidden_layers
    for j, index in enumerate(config.hybrid_layer_indices):
        name = attention_child_name(layers[index])
        attention = getattr(layers[index], name)
        if isinstance(attention, HybridAttention):
            raise ValueError(f"language_model: layer {index} is already hybrid")
        hybrid = HybridAttention(attention, config, cross_cache_index=num_layers + j)
        hybrid.to(device=next(attention.parameters()).device, dtype=next(attention.parameters()).dtype)
        setattr(layers[index], name, hybrid)


class EMRRGPreTrainedModel(PreTrainedModel):
    config_class = EMRRGConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _skip_keys_device_placement = CACHE_NAME
    _no_split_modules = ["XrayMambaBlock", "HybridAttention"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = getattr(self.config.text_config, "initializer_range", 0.02)
        if isinstance(module, EMRRGMultiModalProjector):
            nn.init.normal_(module.linear.weight, std=std)
            nn.init.zeros_(module.linear.bias)
            nn.init.ones_(module.layer_norm.weight)
            nn.init.zeros_(module.layer_norm.bias)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[dict[str, Any]] = None, **kwargs: Any) -> None:
        """Non-reentrant checkpointing (transformers 4.57 defaults to reentrant): the visual tokens reach the hybrid
        layers as a keyword argument, which reentrant checkpointing neither differentiates nor can replay.

        transformers 5 routes ``activation_checkpointing_enable`` (what its Trainer calls) through this override too.
        """
        gradient_checkpointing_kwargs = {"use_reentrant": False, **(gradient_checkpointing_kwargs or {})}
        if gradient_checkpointing_kwargs["use_reentrant"]:
            raise ValueError("gradient_checkpointing_kwargs: use_reentrant=True cannot carry the visual tokens to the "
                             "hybrid layers; leave it unset or False")
        enable_activation_checkpointing(super(), gradient_checkpointing_kwargs, **kwargs)


class EMRRGForConditionalGeneration(EMRRGPreTrainedModel, GenerationMixin):
    """EMRRG report generator: ``pixel_values`` + a prompt with ``<image>`` placeholders -> report tokens.

    ``vision_model`` and ``language_model`` may be passed already built (e.g. loaded from checkpoints, see
    :meth:`from_vision_text_pretrained`); otherwise they are created from ``config``. The hybrid layers are
    inserted into the language model here.
    """

    def __init__(
        self,
        config: EMRRGConfig,
        vision_model: Optional[XrayMambaModel] = None,
        language_model: Optional[PreTrainedModel] = None,
    ) -> None:
        super().__init__(config)
        if vision_model is not None and vision_model.config.hidden_size != config.vision_config.hidden_size:
            raise ValueError(
                f"vision_model: hidden_size {vision_model.config.hidden_size} does not match "
                f"config.vision_config.hidden_size {config.vision_config.hidden_size}")
        if language_model is not None and language_model.config.hidden_size != config.text_config.hidden_size:
            raise ValueError(
                f"language_model: hidden_size {language_model.config.hidden_size} does not match "
                f"config.text_config.hidden_size {config.text_config.hidden_size}")
        self.vision_model = vision_model if vision_model is not None else XrayMambaModel(config.vision_config)
        self.multi_modal_projector = EMRRGMultiModalProjector(config)
        self.language_model = language_model if language_model is not None else AutoModelForCausalLM.from_config(config.text_config)
        insert_hybrid_layers(self.language_model, config)
        self.post_init()
        self.suppress_image_token()

    def suppress_image_token(self) -> None:
        """Never generate ``<image>``: a generated placeholder would ask for visual tokens in mid-report."""
        token = self.config.image_token_id
        suppressed = list(self.generation_config.suppress_tokens or [])
        if token < self.config.text_config.vocab_size and token not in suppressed:
            self.generation_config.suppress_tokens = suppressed + [token]

    @property
    def hybrid_attentions(self) -> list[HybridAttention]:
        """The attentions of the hybrid layers, in layer order."""
        return [module for module in self.language_model.modules() if isinstance(module, HybridAttention)]

    @classmethod
    def from_vision_text_pretrained(
        cls,
        vision_model_name_or_path: Union[str, XrayMambaModel, XrayMambaConfig],
        text_model_name_or_path: Union[str, PreTrainedModel],
        image_token_id: int,
        **config_kwargs: Any,
    ) -> "EMRRGForConditionalGeneration":
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
            vision_config=vision_model.config, text_config=language_model.config, image_token_id=image_token_id,
            **config_kwargs)
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

    def get_decoder(self) -> PreTrainedModel:
        return self.language_model

    def get_vision_backbone(self) -> nn.Module:
        """The X-ray Mamba image backbone, e.g. for its own learning rate."""
        return self.vision_model

    def get_image_features(self, pixel_values: Tensor) -> Tensor:
        """``(B, C, H, W)`` or ``(B, views, C, H, W)`` -> visual tokens ``(B, views * tokens per view, D_text)``."""
        if pixel_values.ndim == 4:
            pixel_values = pixel_values.unsqueeze(1)
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values: expected (batch, [views,] channels, height, width), got {tuple(pixel_values.shape)}")
        batch, views = pixel_values.shape[:2]
        tokens = self.vision_model(pixel_values.flatten(0, 1)).last_hidden_state
        return self.multi_modal_projector(tokens).reshape(batch, views * tokens.shape[1], -1)

    def _merge_visual_tokens(self, input_ids: Tensor, visual_tokens: Optional[Tensor]) -> Tensor:
        """Embed ``input_ids``, writing the visual tokens over the ``<image>`` placeholders."""
        image_mask = input_ids == self.config.image_token_id
        embeds = self.get_input_embeddings()(input_ids.masked_fill(image_mask, 0))
        placeholders = image_mask.sum(dim=1)
        if visual_tokens is None:
            if placeholders.any():
                raise ValueError(
                    f"pixel_values: input_ids contain <image> placeholders (id {self.config.image_token_id}) but no "
                    "pixel_values were given")
            return embeds
        if visual_tokens.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"pixel_values: {visual_tokens.shape[0]} image sets for {input_ids.shape[0]} prompts; give one per prompt")
        if not bool((placeholders == visual_tokens.shape[1]).all()):
            raise ValueError(
                f"input_ids: every prompt needs {visual_tokens.shape[1]} <image> placeholders "
                f"(id {self.config.image_token_id}) for its visual tokens, found {placeholders.tolist()}; "
                "build prompts with EMRRGProcessor")
        return embeds.masked_scatter(image_mask.unsqueeze(-1), visual_tokens.to(embeds.dtype))

    @accepts_legacy_cache_name
    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        pixel_values: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        cache: Optional[Cache] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        use_cache: Optional[bool] = None,
        logits_to_keep: Union[int, Tensor] = 0,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[EMRRGCausalLMOutputWithPast, tuple]:
        r"""
        pixel_values (`(batch, [views,] channels, height, width)`): the study's images; needed at prefill (and at
            every step without a cache). Later decoding steps read the visual keys/values from ``cache``.
        cache (`DynamicCache`): the LLM's key/value cache, with the hybrid layers' visual keys/values appended
            (`generate()` passes it; also accepted as ``past_key_values``, its name before transformers 5.24).
        labels (`(batch, length)`): next-token targets; ``-100`` (prompt, image placeholders, padding) is ignored.
        inputs_embeds: already-merged embeddings; the visual tokens of ``pixel_values`` then reach the model only
            through the hybrid layers (nothing is written into ``inputs_embeds``).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("input_ids: pass exactly one of input_ids or inputs_embeds")
        visual_tokens = self.get_image_features(pixel_values) if pixel_values is not None else None
        if inputs_embeds is None:
            inputs_embeds = self._merge_visual_tokens(input_ids, visual_tokens)
            if labels is not None:  # the placeholders carry images, never targets
                labels = labels.masked_fill(input_ids == self.config.image_token_id, -100)
        elif visual_tokens is not None and visual_tokens.shape[0] != inputs_embeds.shape[0]:
            raise ValueError(
                f"pixel_values: {visual_tokens.shape[0]} image sets for {inputs_embeds.shape[0]} prompts; give one per prompt")
        use_cache = use_cache if use_cache is not None else getattr(self.config.text_config, "use_cache", True)
        if use_cache and cache is None:
            # Created here (not by the LLM) so that the cache the visual keys/values are written to is the one returned.
            cache = DynamicCache(config=self.config.text_config)
        decoder = self.language_model.base_model
        decoder.__dict__[PENDING_VISUAL_TOKENS] = visual_tokens  # picked up by _pass_visual_tokens_to_layers
        try:
            outputs = self.language_model(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                labels=labels,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                return_dict=True,
                **cache_field(cache),
                **kwargs,
            )
        finally:
            decoder.__dict__.pop(PENDING_VISUAL_TOKENS, None)
        output = EMRRGCausalLMOutputWithPast(
            loss=outputs.loss,
            logits=outputs.logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_hidden_states=visual_tokens,
            **cache_field(output_cache(outputs)),
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def prepare_inputs_for_generation(self, input_ids: Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Images enter at prefill (and at every step without a cache); later steps read the visual keys/values from
        the cache. transformers 5 drops ``pixel_values`` after prefill itself."""
        model_inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if GENERATE_PASSES_PIXEL_VALUES_EVERY_STEP and kwargs.get("use_cache", True):
            cache = model_inputs.get(CACHE_NAME)
            if cache is not None and cache.get_seq_length() > 0:
                model_inputs.pop("pixel_values", None)
        return model_inputs
