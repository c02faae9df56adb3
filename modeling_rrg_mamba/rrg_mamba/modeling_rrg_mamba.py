"""RRG-Mamba (Hou et al., "RRG-Mamba: Efficient Radiology Report Generation with State Space Model", IJCAI 2025).

Pipeline (paper Sec. 3, equation numbers as in the paper where it gives them):

    v = VisualExtractor(image)                      per view, an (h, w, C) feature map (DenseNet-121: 7 x 7 x 1024)
    v_G = AvgPool(v);  v_S = LN(Proj(v))            global vector and token grid
    v_M = GDLM(v_S)                                 (DPB -> conv -> SS2D with 2-D RoPE) x depth, Eq. 7-11
    v'_G = Concat(v_G, v_M)                         one global token + h*w grid tokens per view; views concatenated
    memory = TransformerEncoder(v'_G)               R2Gen-size encoder (3 layers, d_model 512)
    h_t = TransformerDecoder(w_<t, memory)          R2Gen-size decoder (3 layers), KV-cached self / cross attention
    CMA: observation head + class activation map -> foreground token f; M_t = Proj([h_t ; f]); logits = W(h_t + M_t)

Encoder token layout (what ``cross_attentions`` index): for each view ``[global, grid row-major (h*w)]``, views in
input order, so one view gives ``1 + h*w`` tokens and ``V`` views give ``V * (1 + h*w)``.

Image signal early in training (issue 24). Measured with ``benchmarks/diagnose_grounding.py`` on the tiny scale of
``benchmarks/bench_grounding.py`` (AdamW 1e-3, one-cycle) and, for the second point, at its DenseNet-121 scale, these
causes held the image back in the first hundreds of steps; each is fixed here within the paper's structure:

* GDLM's zero-initialised branch matrices: under Adam every entry moves by about lr per step, so a branch grows by
  about lr * sqrt(fan_in) of the stream per step. 50 steps in, the DPB branch added 0.45x the stream's RMS, SS2D
  0.17x and the MLP 0.21x, each almost entirely image-independent (DPB positions, the direction all tokens share),
  and the image-dependent share of the grid fell from 0.17 in v_S to 0.05 in v_M. Every branch now has a per-channel
  gain γ that starts at zero (LayerScale) and grows by lr per step: at step 100 the branches are within 0.01x of the
  stream and v_M keeps v_S's image share; they join as the report loss asks for them.
* At the paper's scale (DenseNet-121, a 7 x 7 grid, two blocks; ``--scale densenet`` of the benchmark) the gains
  alone were not enough: Adam also grows each branch's own matrices, and SS2D's gate and output matrices grow
  together. Between steps 50 and 100 SS2D's output went from 0.8x to 7x the stream's RMS, so with gains of 0.05 it
  moved the stream by 0.42x of its RMS in the first block, and GDLM's output differed from its input by 0.56x at step
  100 (0.66x at 150). The observation head read the side of a finding perfectly by step 100 with GDLM and without,
  but the decoder was behind use_gdlm=False on naming it in 4 of 5 seeds (our reading: it had to follow a memory that
  kept moving). Each branch is now divided by its RMS over the image's grid before its gain, so the gain alone sets
  how far the branch moves the stream (``RRGMambaBranchScale``). With that, over ten seeds the default is ahead of
  use_gdlm=False on that task (0.83 / 0.93 against 0.81 / 0.88 at steps 100 / 150; single seeds differ by up to
  0.25 either way), and at both scales it is within 0.03 of the best ablation on all six tasks from step 100 on and
  reaches 0.9 no later; use_cma=False and both off trail it at step 100 (benchmarks/results_grounding_*.txt).
* The DPB and v_con conv branches read the raw stream, so each block scaled it by about (1 + K). Every branch is now
  pre-norm (v_P = v + γ DPB(LN(v)), v_con = v_P + γ DWConv(LN(v_P))): a block's update has the same size whatever
  the stream's scale.
* The consistency loss pulled the decoder's cross-attention towards the map of an untrained observation head (near
  uniform, zero on the global tokens). As in the authors' code it now applies only when observation labels are given
  and only to reports with a positive label; without labels it is not computed.
* Sinusoidal positions added to the visual tokens were about ten times their image-dependent part at
  initialisation. R2Gen adds none to visual tokens; ``visual_position_scale`` (default 0) keeps that, GDLM's DPB,
  conv and 2-D RoPE carry the grid positions.

What the measurements also show: the plain encoder-decoder (``use_cma=False``) reads the image only through the
decoder's cross-attention, which stays near uniform early on; its report-loss gradient at the extractor fell from
0.09 to 0.0005 within 50 steps and swapping the films changed its report log-probabilities by 1e-4 per token. The
adapter's foreground token, fused before the LM head, is a second road from the image to the words (a 0.28 change
per token at step 100), and with observation labels the observation BCE is 10-17x the report loss's gradient on the
encoder: the adapter speeds grounding up rather than holding it back.

This package's reading of the paper: the authors' released code (Eleanorhxd/RRG-Mamba, forked from CAMANet) lacks
the GDLM source and its GDLM output (a whole-image Mamba added to the global vector, which R2Gen's decoder does not
read) never reaches the decoder. Here GDLM runs on the extractor's token grid and its output v_M is the encoder input
(with v_G), and the adapter's fusion M_t = Proj([h_t ; f]) enters before the LM head. Side by side with that code
(CAMANet's): its observation head is a linear layer on the extractor's pooled raw features with CAMs from the raw
patch features (here: on the encoder's input tokens, so that the BCE also teaches GDLM); its foreground token is an
extra encoder input token that the decoder's cross-attention does not see; its visual tokens get Linear + ReLU and
no positions; every matrix is Xavier-initialised (here Normal(0, ``initializer_range``), transformers' convention);
loss weights 1 (observation BCE) and 0.15 (consistency, top 25 % of words, max over classes), with no warm-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import ModelOutput, Seq2SeqLMOutput

from .._compat import LegacyCacheNameForMambaClasses, accepts_legacy_cache_name, cache_field, init
from .._validation import check_token_ids
from ..layers import SS2D, DynamicPositionBias, RotaryEmbedding1D, SelectiveSSM
from ..saving import RemoteCodeModelMixin
from .configuration_rrg_mamba import RRGMambaConfig

Tensor = torch.Tensor


# ----------------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class RRGMambaEncoderOutput(ModelOutput):
    """
    Output of [`RRGMambaEncoder`].

    Args:
        last_hidden_state (`(batch, num_tokens, d_model)`): encoder memory the decoder cross-attends to.
        observation_logits (`(batch, num_observations)`, *optional*): the CMA observation head (use_cma).
        foreground_map (`(batch, num_tokens)`, *optional*): class-activation weights over the encoder tokens
            (zero on the global tokens, summing to one over the grid tokens); the target of the consistency loss.
        foreground_token (`(batch, d_model)`, *optional*): memory pooled with `foreground_map`.
        hidden_states / attentions: per-layer encoder states and self-attention maps when requested.
    """

    last_hidden_state: Tensor | None = None
    observation_logits: Tensor | None = None
    foreground_map: Tensor | None = None
    foreground_token: Tensor | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None


@dataclass
class RRGMambaSeq2SeqLMOutput(Seq2SeqLMOutput):
    """
    Output of [`RRGMambaForConditionalGeneration`]: transformers' `Seq2SeqLMOutput` (its cache field is named as the
    installed release names it: ``cache`` from 5.24, ``past_key_values`` before) plus the cross-modal adapter's terms.

    Args:
        loss: ``report_loss + observation_loss_weight * observation_loss + consistency_loss_weight *
            consistency_loss`` (the auxiliary terms only when they are computed).
        logits (`(batch, length, vocab_size)`): next-word scores.
        cache / past_key_values: the `EncoderDecoderCache` (decoder self-attention and cross-attention K/V).
        cross_attentions: per decoder layer ``(batch, heads, length, num_encoder_tokens)`` when
            ``output_attentions`` (the paper's Fig. 3 word-to-image heatmaps).
        report_loss: token cross-entropy of the report (labels = -100 are ignored).
        observation_loss: BCE of the observation head against ``observation_labels`` (entries < 0 ignored).
        consistency_loss: squared distance between the decoder's cross-attention of the selected words and the
            foreground map (see `consistency_loss`).
        observation_logits (`(batch, num_observations)`): the observation head's scores (use_cma).
    """

    report_loss: Tensor | None = None
    observation_loss: Tensor | None = None
    consistency_loss: Tensor | None = None
    observation_logits: Tensor | None = None


# ----------------------------------------------------------------------------------------------------------------
# Visual side: extractor, GDLM, cross-modal adapter head
# ----------------------------------------------------------------------------------------------------------------


def sinusoidal_positions(length: int, dim: int, offset: int = 0, device=None, dtype=None) -> Tensor:
    """The Transformer's sinusoidal position table ``(length, dim)`` for positions ``offset .. offset+length-1``."""
    positions = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    return table.to(dtype or torch.float32)


def create_backbone(config: RRGMambaConfig) -> nn.Module:
    """The timm backbone named by ``config.visual_extractor`` (ImageNet weights with ``pretrained_backbone``).

    A failed download of the pretrained weights (no network, or ``HF_HUB_OFFLINE=1`` without them in the Hugging Face
    cache) raises one ``OSError`` naming the flag, the backbone and ``HF_HUB_OFFLINE``, instead of a generic hub error.
    """
    import timm

    try:
        return timm.create_model(
            config.visual_extractor,
            pretrained=config.pretrained_backbone,
            num_classes=0,
            global_pool="",
            **config.backbone_kwargs,
        )
    except (OSError, RuntimeError, ValueError) as error:
        if not config.pretrained_backbone:
            raise
        raise OSError(
            f"pretrained_backbone=True: could not get timm's ImageNet weights of {config.visual_extractor!r} "
            f"({type(error).__name__}: {error}). Without network, set pretrained_backbone=False (random initial "
            "weights), or put the weights in the Hugging Face cache and set HF_HUB_OFFLINE=1, which also makes a "
            "missing download fail at once instead of retrying"
        ) from error


class RRGMambaVisualExtractor(nn.Module):
    """A timm backbone returning the last feature map of each image as a grid ``(images, h, w, C)``."""

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.backbone = create_backbone(config)
        self.num_features = self.backbone.num_features
        # ImageNet weights timm loaded must survive PreTrainedModel's weight initialisation. A random backbone is
        # initialised by `_init_weights` (timm's scheme, see `RRGMambaPreTrainedModel._init_weights`) whether it is
        # built here or on the meta device by `from_pretrained` (weights a checkpoint lacks): the same weights.
        built_on_meta = any(parameter.is_meta for parameter in self.backbone.parameters())
        for module in self.backbone.modules():
            module._rrg_mamba_backbone = True
            if config.pretrained_backbone and not built_on_meta:
                module._is_hf_initialized = True

    def forward(self, images: Tensor) -> Tensor:
        features = self.backbone.forward_features(images)
        if features.ndim == 3:  # ViT-style tokens: drop class / register tokens, fold patches back to the grid
            patches = features[:, getattr(self.backbone, "num_prefix_tokens", 0) :]
            patch_h, patch_w = self.backbone.patch_embed.patch_size
            height, width = images.shape[-2] // patch_h, images.shape[-1] // patch_w
            if height * width != patches.shape[1]:
                raise ValueError(
                    f"pixel_values: {tuple(images.shape[-2:])} images give {patches.shape[1]} patch tokens, "
                    f"not a {height}x{width} grid"
                )
            return patches.reshape(patches.shape[0], height, width, patches.shape[-1])
        if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":
            return features
        return features.permute(0, 2, 3, 1)


class RRGMambaBranchScale(nn.Module):
    """Per-channel gain γ on a GDLM residual branch whose output is scaled to unit RMS over its grid,
    v + γ ⊙ b / RMS(b) with b = branch(LN(v)) (LayerScale, Touvron et al. 2021, on an RMS-normalised branch); γ is
    zero at initialisation.

    Under Adam every entry of a matrix moves by about lr per step whatever its gradient's size, so a branch's own
    matrices grow it: a branch whose last matrix starts at zero adds about lr·sqrt(fan_in) of the stream per step,
    and SS2D's gate and output matrices, growing together, took its output from 0.8 to 7x the stream's RMS between
    steps 50 and 100 (DenseNet-121 scale of bench_grounding). Dividing each image's branch output by its RMS over
    the grid (one number per image: the branch's pattern over tokens and channels is kept) leaves its size to γ
    alone, which moves by lr per step: the branch joins the stream as the report loss asks for it (issue 24)."""

    def __init__(self, dim: int, eps: float = 1e-12) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dim))
        self.eps = eps  # far below a new branch's mean square (SS2D's is about 2e-5): only guards an all-zero output

    def forward(self, branch: Tensor) -> Tensor:
        """``branch`` (B, H, W, dim) -> γ ⊙ branch / RMS(branch), the RMS taken per image over (H, W, dim)."""
        wide = branch.float()  # in half precision 1 / RMS of a near-zero branch overflows (0 * inf = NaN)
        normalised = wide * torch.rsqrt(wide.pow(2).mean(dim=tuple(range(1, branch.ndim)), keepdim=True) + self.eps)
        return normalised.to(branch.dtype) * self.weight


class RRGMambaGDLMBlock(GradientCheckpointingLayer):
    """One GDLM block on a grid ``(B, H, W, dim)`` (paper Eq. 7-11), every branch pre-norm, scaled to unit RMS over
    the grid (N) and gated by a `RRGMambaBranchScale` γ (zero at initialisation, so a new block is the identity):

    v_P = v + γ_P N(DPB(LN(v)))  (Eq. 7, ``use_dpb``);  v_con = v_P + γ_C N(DWConv(LN(v_P)));
    v = v_con + γ_S N(SS2D(LN(v_con)))  (SS2D: inner branch SiLU(DWConv(Linear)) with 2-D RoPE (``use_rope``),
    four-route selective scan, LN, gated by SiLU(Linear) and projected, Eq. 9-11);  v = v + γ_M N(MLP(LN(v))).
    """

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        dim = config.gdlm_dim
        self.position_bias = DynamicPositionBias(dim, window=config.dpb_window) if config.use_dpb else None
        # Pre-norm on every branch (issue 24): without it the DPB and conv branches scale the stream by (1 + K) per
        # block under Adam, amplifying the one direction v_S shares across tokens and images over the image signal.
        self.position_bias_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps) if config.use_dpb else None
        self.position_bias_scale = RRGMambaBranchScale(dim) if config.use_dpb else None
        self.conv_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.conv = nn.Conv2d(dim, dim, config.gdlm_d_conv, padding=config.gdlm_d_conv // 2, groups=dim)
        self.conv_scale = RRGMambaBranchScale(dim)
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.ss2d = SS2D(
            dim,
            d_state=config.gdlm_d_state,
            expand=config.gdlm_expand,
            d_conv=config.gdlm_d_conv,
            use_rope=config.use_rope,
            scan_backend=config.selective_scan_backend,
        )
        self.ss2d_scale = RRGMambaBranchScale(dim)
        hidden = int(dim * config.gdlm_mlp_ratio)
        self.mlp = None
        if hidden > 0:
            self.mlp_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            self.mlp_scale = RRGMambaBranchScale(dim)

    def branch_scales(self) -> list[RRGMambaBranchScale]:
        """The gain γ of each residual branch (DPB, v_con conv, SS2D, MLP): zero at initialisation."""
        scales = [self.conv_scale, self.ss2d_scale]
        if self.position_bias is not None:
            scales.append(self.position_bias_scale)
        if self.mlp is not None:
            scales.append(self.mlp_scale)
        return scales

    def forward(self, grid: Tensor) -> Tensor:
        if self.position_bias is not None:
            grid = grid + self.position_bias_scale(self.position_bias(self.position_bias_norm(grid)))
        conv = self.conv(self.conv_norm(grid).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        grid = grid + self.conv_scale(conv)
        grid = grid + self.ss2d_scale(self.ss2d(self.norm(grid)))
        if self.mlp is not None:
            grid = grid + self.mlp_scale(self.mlp(self.mlp_norm(grid)))
        return grid


class RRGMambaGDLM(nn.Module):
    """Global Dependency Learning Module: ``gdlm_depth`` blocks and a closing LayerNorm, v_S -> v_M.

    At initialisation every block is the identity and the closing LayerNorm (gain 1, bias 0) maps v_S, itself a
    LayerNorm output, to itself, so the GDLM model starts as the use_gdlm=False ablation and learns from there."""

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(RRGMambaGDLMBlock(config) for _ in range(config.gdlm_depth))
        self.norm = nn.LayerNorm(config.gdlm_dim, eps=config.layer_norm_eps)

    def forward(self, grid: Tensor) -> Tensor:
        for block in self.blocks:
            grid = block(grid)
        return self.norm(grid)


class RRGMambaObservationHead(nn.Module):
    """The cross-modal adapter's observation classifier with class activation maps (Zhou et al. 2016).

    CAM_c(n) = w_c . x_n on every grid token n; logit_c = mean_n CAM_c(n) + b_c (so the head is a linear classifier
    on the average-pooled tokens). The foreground map weights each token by its class activations, each class
    weighted by its predicted probability: m(n) ∝ sum_c sigmoid(logit_c) ReLU(CAM_c(n)), normalised over the grid
    tokens (uniform when nothing is active).
    """

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.classifier = nn.Linear(config.d_model, config.num_observations)

    def forward(self, tokens: Tensor, grid_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``tokens`` (B, N, d), ``grid_mask`` (N,) bool -> logits (B, classes), foreground map (B, N)."""
        cam = tokens[:, grid_mask] @ self.classifier.weight.t()  # (B, N_grid, classes)
        logits = cam.mean(dim=1) + self.classifier.bias
        activation = (F.relu(cam) * torch.sigmoid(logits)[:, None, :]).sum(-1)  # (B, N_grid)
        total = activation.sum(-1, keepdim=True)
        uniform = torch.full_like(activation, 1.0 / activation.shape[-1])
        grid_map = torch.where(total > 0, activation / total.clamp_min(1e-12), uniform)
        foreground = tokens.new_zeros(tokens.shape[:2])
        foreground[:, grid_mask] = grid_map.to(foreground.dtype)  # differs under autocast
        return logits, foreground


# ----------------------------------------------------------------------------------------------------------------
# Report encoder-decoder (R2Gen size)
# ----------------------------------------------------------------------------------------------------------------


class RRGMambaAttention(nn.Module):
    """Multi-head attention; decoder self- and cross-attention read and write the `EncoderDecoderCache`.

    Computed with `torch.nn.functional.scaled_dot_product_attention` unless the config asks for the eager
    implementation (``config._attn_implementation == "eager"``) or the caller needs the attention probabilities
    (``output_attentions``, the word-to-image heatmaps, the CMA consistency loss): those take the explicit softmax.
    """

    def __init__(self, config: RRGMambaConfig, layer_idx: int | None = None, is_cross_attention: bool = False) -> None:
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.d_model // config.num_attention_heads
        self.layer_idx = layer_idx
        self.is_cross_attention = is_cross_attention
        self.q_proj = nn.Linear(config.d_model, config.d_model)
        self.k_proj = nn.Linear(config.d_model, config.d_model)
        self.v_proj = nn.Linear(config.d_model, config.d_model)
        self.out_proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def _heads(self, x: Tensor) -> Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def _keys_values(self, hidden_states: Tensor, key_value_states: Tensor | None, cache: Cache | None):
        if not self.is_cross_attention:
            keys, values = self._heads(self.k_proj(hidden_states)), self._heads(self.v_proj(hidden_states))
            if isinstance(cache, EncoderDecoderCache):
                keys, values = cache.self_attention_cache.update(keys, values, self.layer_idx)
            return keys, values
        if isinstance(cache, EncoderDecoderCache) and cache.is_updated.get(self.layer_idx):
            layer = cache.cross_attention_cache.layers[self.layer_idx]
            return layer.keys, layer.values
        keys, values = self._heads(self.k_proj(key_value_states)), self._heads(self.v_proj(key_value_states))
        if isinstance(cache, EncoderDecoderCache):
            keys, values = cache.cross_attention_cache.update(keys, values, self.layer_idx)
            cache.is_updated[self.layer_idx] = True
        return keys, values

    def forward(
        self,
        hidden_states: Tensor,
        key_value_states: Tensor | None = None,
        attention_bias: Tensor | None = None,
        cache: Cache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Returns the attended states (B, T, d) and, when ``need_weights`` (or with the eager implementation), the
        attention probabilities (B, heads, T, S); otherwise ``None``."""
        queries = self._heads(self.q_proj(hidden_states))
        keys, values = self._keys_values(hidden_states, key_value_states, cache)
        probabilities = None
        if need_weights or self.config._attn_implementation == "eager":
            scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)
            if attention_bias is not None:
                scores = scores + attention_bias
            probabilities = scores.softmax(dim=-1)
            context = F.dropout(probabilities, p=self.dropout, training=self.training) @ values
        else:
            mask = None if attention_bias is None else attention_bias.to(queries.dtype)
            context = F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
            )
        context = context.transpose(1, 2).reshape(hidden_states.shape[0], hidden_states.shape[1], -1)
        return self.out_proj(context), probabilities


class RRGMambaFeedForward(nn.Module):
    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)
        self.fc2 = nn.Linear(config.d_ff, config.d_model)
        self.dropout = config.dropout

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.dropout(F.relu(self.fc1(x)), p=self.dropout, training=self.training))


class RRGMambaEncoderLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer encoder layer (R2Gen's sublayer connection: x + dropout(f(LN(x))))."""

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.self_attn = RRGMambaAttention(config)
        self.self_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = RRGMambaFeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, hidden_states: Tensor, output_attentions: bool = False) -> tuple[Tensor, Tensor | None]:
        attended, probabilities = self.self_attn(self.self_attn_norm(hidden_states), need_weights=output_attentions)
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))
        return hidden_states, probabilities


class RRGMambaDecoderLayer(GradientCheckpointingLayer):
    """Pre-norm Transformer decoder layer: masked self-attention, cross-attention to the memory, feed-forward."""

    def __init__(self, config: RRGMambaConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = RRGMambaAttention(config, layer_idx=layer_idx)
        self.self_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.cross_attn = RRGMambaAttention(config, layer_idx=layer_idx, is_cross_attention=True)
        self.cross_attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.ffn = RRGMambaFeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        hidden_states: Tensor,
        memory: Tensor,
        self_attention_bias: Tensor,
        cache: Cache | None,
        output_attentions: bool = False,
        output_cross_attention: bool = False,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``output_attentions``: return both attention maps; ``output_cross_attention``: the cross-attention map."""
        attended, self_probabilities = self.self_attn(
            self.self_attn_norm(hidden_states),
            attention_bias=self_attention_bias,
            cache=cache,
            need_weights=output_attentions,
        )
        hidden_states = hidden_states + self.dropout(attended)
        attended, cross_probabilities = self.cross_attn(
            self.cross_attn_norm(hidden_states),
            memory,
            cache=cache,
            need_weights=output_attentions or output_cross_attention,
        )
        hidden_states = hidden_states + self.dropout(attended)
        hidden_states = hidden_states + self.dropout(self.ffn(self.ffn_norm(hidden_states)))
        return hidden_states, self_probabilities, cross_probabilities


# ----------------------------------------------------------------------------------------------------------------
# Pre-trained model base
# ----------------------------------------------------------------------------------------------------------------


class RRGMambaPreTrainedModel(RemoteCodeModelMixin, PreTrainedModel):
    """Base class of the RRG-Mamba models: config class, weight initialisation, save / load hooks.

    ``save_pretrained`` also writes the code and ``auto_map`` that ``trust_remote_code`` loading needs (see
    :mod:`modeling_rrg_mamba.saving`).
    """

    config_class = RRGMambaConfig
    config: RRGMambaConfig
    # No base model: like transformers' VisionEncoderDecoderModel, the prefix names no attribute and no checkpoint
    # key, so `model.base_model` is the model itself and no checkpoint key is ever stripped as a base-model prefix.
    base_model_prefix = "rrg_mamba"
    main_input_name = "pixel_values"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["RRGMambaEncoderLayer", "RRGMambaDecoderLayer", "RRGMambaGDLMBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise one module (a new model, or the weights a checkpoint lacks; tensors loaded from it are kept).

        Encoder-decoder linear / embedding layers: Normal(0, initializer_range); LayerNorms: 1 / 0. GDLM: the gain
        γ of every residual branch zero (a new GDLM is the identity, issues 13 and 24), its convolutions as
        torch initialises it, the state-space parameters Mamba's (A = -(1..N), D = 1, log-uniform Delta).
        Non-persistent position buffers (DPB offsets, RoPE frequencies) are rebuilt. The timm backbone: timm's
        scheme for ResNet / DenseNet / ViT (Kaiming-normal fan-out convolutions, BatchNorm 1 / 0 with fresh
        running statistics, truncated-normal 0.02 for other parameters such as ViT's position embedding).
        """
        if isinstance(module, SelectiveSSM):
            _reset_keeping_loaded(module)
        elif isinstance(module, (DynamicPositionBias, RotaryEmbedding1D)):
            module.reset_buffers()
        if isinstance(module, RRGMambaBranchScale):
            init.zeros_(module.weight)
        elif isinstance(module, nn.Conv2d):
            if getattr(module, "_rrg_mamba_backbone", False):
                init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    init.zeros_(module.bias)
            else:  # torch's default for a convolution
                init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                if module.bias is not None:
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                init.zeros_(module.bias)
            padding = getattr(module, "padding_idx", None)
            if padding is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[padding])
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)):
            if module.weight is not None:
                init.ones_(module.weight)
                init.zeros_(module.bias)
            if isinstance(module, nn.BatchNorm2d) and module.running_mean is not None:
                init.zeros_(module.running_mean)
                init.ones_(module.running_var)
                init.zeros_(module.num_batches_tracked)
        elif getattr(module, "_rrg_mamba_backbone", False):
            for parameter in module.parameters(recurse=False):  # e.g. ViT's cls_token / pos_embed
                init.trunc_normal_(parameter, std=0.02)


def _reset_keeping_loaded(module: nn.Module) -> None:
    """``module.reset_parameters()`` for the tensors a checkpoint did not provide (transformers 5 marks the loaded
    ones ``_is_hf_initialized``; 4.57 initialises before loading, so nothing is marked and everything is reset)."""
    loaded = {
        name: tensor.detach().clone()
        for name, tensor in module.named_parameters(recurse=False)
        if getattr(tensor, "_is_hf_initialized", False)
    }
    module.reset_parameters()
    for name, value in loaded.items():
        getattr(module, name).copy_(value)


# ----------------------------------------------------------------------------------------------------------------
# Encoder and decoder stacks
# ----------------------------------------------------------------------------------------------------------------


def _validate_pixel_values(pixel_values: Tensor | None) -> tuple[Tensor, int, int]:
    """(B, 3, H, W) or (B, V, 3, H, W) -> images (B*V, 3, H, W), B, V."""
    if pixel_values is None:
        raise ValueError("pixel_values: required (or pass encoder_outputs)")
    if pixel_values.ndim == 4:
        batch, views = pixel_values.shape[0], 1
    elif pixel_values.ndim == 5:
        batch, views = pixel_values.shape[:2]
    else:
        raise ValueError(
            "pixel_values: expected (batch, 3, H, W) or (batch, views, 3, H, W), got shape "
            f"{tuple(pixel_values.shape)}"
        )
    if pixel_values.shape[-3] != 3:
        raise ValueError(f"pixel_values: expected 3 channels, got shape {tuple(pixel_values.shape)}")
    if batch == 0 or views == 0:
        raise ValueError(f"pixel_values: empty batch or view axis, shape {tuple(pixel_values.shape)}")
    return pixel_values.reshape(batch * views, *pixel_values.shape[-3:]), batch, views


class RRGMambaEncoder(nn.Module):
    """Images -> memory: visual extractor, v_G / v_S, GDLM, v'_G tokens, observation head, Transformer encoder."""

    main_input_name = "pixel_values"

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.config = config
        self.visual_extractor = RRGMambaVisualExtractor(config)
        # The flag has done its job (timm loaded the weights); a saved config must not download them again.
        config.pretrained_backbone = False
        channels = self.visual_extractor.num_features
        self.grid_projection = nn.Linear(channels, config.gdlm_dim)  # v_S = LN(Proj(Flat(v)))
        self.grid_norm = nn.LayerNorm(config.gdlm_dim, eps=config.layer_norm_eps)
        self.gdlm = RRGMambaGDLM(config) if config.use_gdlm else None
        self.token_projection = nn.Linear(config.gdlm_dim, config.d_model)  # v_M -> d_model
        self.global_projection = nn.Linear(channels, config.d_model)  # v_G -> d_model
        self.observation_head = RRGMambaObservationHead(config) if config.use_cma else None
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(RRGMambaEncoderLayer(config) for _ in range(config.encoder_layers))
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    def visual_tokens(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """v'_G for every study ``(B, V*(1+h*w), d_model)`` and the mask of grid (non-global) tokens."""
        images, batch, views = _validate_pixel_values(pixel_values)
        grid = self.visual_extractor(images)  # (B*V, h, w, C)
        global_vector = grid.mean(dim=(1, 2))  # v_G
        grid_tokens = self.grid_norm(self.grid_projection(grid))  # v_S
        if self.gdlm is not None:
            grid_tokens = self.gdlm(grid_tokens)  # v_M
        height, width = grid.shape[1:3]
        grid_tokens = self.token_projection(grid_tokens).reshape(batch * views, height * width, -1)
        tokens = torch.cat([self.global_projection(global_vector)[:, None], grid_tokens], dim=1)
        grid_mask = torch.ones(1 + height * width, dtype=torch.bool, device=tokens.device)
        grid_mask[0] = False
        return tokens.reshape(batch, views * (1 + height * width), -1), grid_mask.repeat(views)

    def forward(
        self,
        pixel_values: Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> RRGMambaEncoderOutput | tuple[Tensor, ...]:
        """Images -> `RRGMambaEncoderOutput`, or its `to_tuple()` (fields that are None left out) when
        ``return_dict`` is False (default: ``config.return_dict``)."""
        tokens, grid_mask = self.visual_tokens(pixel_values)
        observation_logits = foreground_map = None
        if self.observation_head is not None:
            observation_logits, foreground_map = self.observation_head(tokens, grid_mask)
        positions = sinusoidal_positions(tokens.shape[1], tokens.shape[2], 0, tokens.device, tokens.dtype)
        hidden_states = self.dropout(tokens + self.config.visual_position_scale * positions)
        all_hidden, all_attentions = [], []
        for layer in self.layers:
            all_hidden.append(hidden_states)
            hidden_states, probabilities = layer(hidden_states, bool(output_attentions))
            all_attentions.append(probabilities)
        hidden_states = self.norm(hidden_states)
        all_hidden.append(hidden_states)
        foreground_token = None
        if foreground_map is not None:
            foreground_token = torch.einsum("bn,bnd->bd", foreground_map, hidden_states)
        output = RRGMambaEncoderOutput(
            last_hidden_state=hidden_states,
            observation_logits=observation_logits,
            foreground_map=foreground_map,
            foreground_token=foreground_token,
            hidden_states=tuple(all_hidden) if output_hidden_states else None,
            attentions=tuple(all_attentions) if output_attentions else None,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()

    def output_from_tuple(self, values: tuple | list) -> RRGMambaEncoderOutput:
        """Read back `forward(..., return_dict=False)`: the memory, the three CMA fields when ``use_cma``, then
        hidden states (encoder_layers + 1 entries) and / or attentions (encoder_layers entries), as present."""
        values = list(values)
        fields: dict[str, Any] = {"last_hidden_state": values.pop(0)}
        if self.observation_head is not None and len(values) >= 3:
            fields.update(zip(("observation_logits", "foreground_map", "foreground_token"), values[:3]))
            values = values[3:]
        for value in values:
            name = "hidden_states" if len(value) == len(self.layers) + 1 else "attentions"
            fields[name] = value
        return RRGMambaEncoderOutput(**fields)


class RRGMambaDecoder(nn.Module):
    """Word embedding (scaled by sqrt(d_model)) + sinusoidal positions, pre-norm layers, final LayerNorm."""

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.scale = math.sqrt(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(RRGMambaDecoderLayer(config, i) for i in range(config.decoder_layers))
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)

    @staticmethod
    def attention_bias(length: int, past: int, padding_mask: Tensor | None, dtype: torch.dtype, device) -> Tensor:
        """Additive causal (and key-padding) bias ``(B or 1, 1, length, past + length)``."""
        minimum = torch.finfo(dtype).min
        query = torch.arange(past, past + length, device=device)[:, None]
        key = torch.arange(past + length, device=device)[None, :]
        bias = torch.zeros(length, past + length, dtype=dtype, device=device).masked_fill(key > query, minimum)[
            None, None
        ]
        if padding_mask is not None:
            if padding_mask.shape[-1] != past + length:
                raise ValueError(
                    f"decoder_attention_mask: expected {past + length} positions, got shape "
                    f"{tuple(padding_mask.shape)}"
                )
            bias = bias.masked_fill(padding_mask[:, None, None, :] == 0, minimum)
        return bias

    def forward(
        self,
        input_ids: Tensor,
        memory: Tensor,
        attention_mask: Tensor | None,
        cache: Cache | None,
        output_attentions: bool,
        output_hidden_states: bool,
        output_last_cross_attention: bool = False,
    ) -> tuple[Tensor, tuple, tuple, tuple]:
        """Returns the final states, and (when asked, else empty) the hidden states, self-attention maps and
        cross-attention maps; ``output_last_cross_attention`` adds the last layer's map (None for the others)."""
        past = cache.get_seq_length() if cache is not None else 0
        length = input_ids.shape[1]
        embeddings = self.embed_tokens(input_ids) * self.scale
        hidden_states = self.dropout(
            embeddings + sinusoidal_positions(length, embeddings.shape[-1], past, input_ids.device, embeddings.dtype)
        )
        bias = self.attention_bias(length, past, attention_mask, hidden_states.dtype, input_ids.device)
        all_hidden, self_attentions, cross_attentions = [], [], []
        for index, layer in enumerate(self.layers):
            all_hidden.append(hidden_states)
            last = output_last_cross_attention and index == len(self.layers) - 1
            hidden_states, self_probabilities, cross_probabilities = layer(
                hidden_states, memory, bias, cache, output_attentions, last
            )
            self_attentions.append(self_probabilities)
            cross_attentions.append(cross_probabilities)
        hidden_states = self.norm(hidden_states)
        all_hidden.append(hidden_states)
        return (
            hidden_states,
            tuple(all_hidden) if output_hidden_states else (),
            tuple(self_attentions) if output_attentions else (),
            tuple(cross_attentions) if output_attentions or output_last_cross_attention else (),
        )


# ----------------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------------


def observation_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean binary cross-entropy of the observation head over the labelled entries (labels in {0, 1}; entries < 0
    or NaN, e.g. uncertain or missing CheXpert labels, are ignored)."""
    if labels.shape != logits.shape:
        raise ValueError(f"observation_labels: expected shape {tuple(logits.shape)}, got {tuple(labels.shape)}")
    labels = labels.to(logits.dtype)
    known = (labels >= 0) & ~torch.isnan(labels)
    if not known.any():
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known], labels[known])


def consistency_loss(
    cross_attention: Tensor,
    decoder_states: Tensor,
    foreground_map: Tensor,
    foreground_token: Tensor,
    labels: Tensor,
    word_ratio: float,
    studies: Tensor | None = None,
) -> Tensor:
    """The CMA's word-image consistency term.

    For every report, the ⌈k·T⌉ words (k = ``word_ratio``, T = labelled words incl. ``<eos>``) whose decoder states
    are most cosine-similar to the foreground token are selected; for each, the decoder's last-layer
    cross-attention over the encoder tokens (averaged over heads) is compared with the foreground map (a fixed
    target: no gradient) by the squared error summed over tokens. The loss is the mean over the selected words.
    ``studies`` (B,) bool, when given, keeps only those reports (those with a positive observation label, whose
    map comes from an activated class); none kept gives a zero loss.

    Shapes: cross_attention (B, T, N), decoder_states (B, T, d), foreground_map (B, N), foreground_token (B, d),
    labels (B, T).
    """
    valid = labels != -100
    similarity = F.cosine_similarity(decoder_states, foreground_token[:, None, :], dim=-1)
    similarity = similarity.masked_fill(~valid, float("-inf"))
    keep = torch.ceil(valid.sum(-1).to(similarity.dtype) * word_ratio)  # (B,)
    rank = similarity.argsort(dim=-1, descending=True).argsort(dim=-1)
    selected = (rank < keep[:, None]) & valid
    if studies is not None:
        selected = selected & studies[:, None]
    if not selected.any():
        return cross_attention.sum() * 0.0
    error = (cross_attention - foreground_map.detach()[:, None, :]).pow(2).sum(-1)  # (B, T)
    return error[selected].mean()


def shift_tokens_right(labels: Tensor, pad_token_id: int, decoder_start_token_id: int) -> Tensor:
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


# ----------------------------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------------------------


class RRGMambaForConditionalGeneration(RRGMambaPreTrainedModel, LegacyCacheNameForMambaClasses, GenerationMixin):
    r"""
    RRG-Mamba report generator: images in, report out.

    Train with ``model(pixel_values=..., labels=..., observation_labels=...)``; generate with
    ``model.generate(pixel_values, num_beams=3, max_new_tokens=60)``. ``pixel_values`` is (B, 3, H, W) for one
    view per study or (B, V, 3, H, W) for V views (their tokens are concatenated, as for IU X-Ray's two views).
    """

    # Tied only with config.tie_word_embeddings (R2Gen's default is untied); 4.57 reads the keys of this mapping.
    _tied_weights_keys = {"lm_head.weight": "decoder.embed_tokens.weight"}

    def __init__(self, config: RRGMambaConfig) -> None:
        super().__init__(config)
        self.encoder = RRGMambaEncoder(config)
        self.decoder = RRGMambaDecoder(config)
        self.adapter_projection = nn.Linear(2 * config.d_model, config.d_model) if config.use_cma else None
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        self.post_init()
        if self.generation_config is not None:  # the paper's decoding (Sec. 4.2) travels with every saved model
            self.generation_config.num_beams = config.generation_num_beams
            self.generation_config.max_new_tokens = config.generation_max_length

    def _prepare_generation_config(self, generation_config: GenerationConfig | None = None, *args: Any, **kwargs: Any):
        """transformers' merge of call arguments over the model's generation config, except that a ``max_length``
        given to this call (or in its ``generation_config``) replaces the model's default ``max_new_tokens``
        instead of being overridden by it (transformers lets ``max_new_tokens`` win whatever its origin)."""
        prepared, model_kwargs = super()._prepare_generation_config(generation_config, *args, **kwargs)
        caller = kwargs.get("max_length") is not None or (
            generation_config is not None
            and generation_config is not self.generation_config
            and generation_config.max_new_tokens is None
            and generation_config.max_length is not None
        )
        if caller and kwargs.get("max_new_tokens") is None:
            prepared.max_new_tokens = None
        return prepared, model_kwargs

    def get_encoder(self, modality: str | None = None) -> RRGMambaEncoder:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def get_vision_backbone(self) -> nn.Module:
        """The image backbone (the visual extractor), e.g. for its own learning rate (paper Sec. 4.2)."""
        return self.encoder.visual_extractor

    @staticmethod
    def encoder_token_grids(scores: Tensor, views: int) -> list[Tensor]:
        """Split scores over the encoder tokens ``(..., N)`` into one ``(..., h, w)`` grid per view, dropping each
        view's global token (the token layout in this module's docstring: per view ``[global, h*w grid]``)."""
        per_view = scores.shape[-1] // views
        side = math.isqrt(max(per_view - 1, 0))
        if views < 1 or views * per_view != scores.shape[-1] or side * side != per_view - 1:
            raise ValueError(
                f"scores: {scores.shape[-1]} encoder tokens do not split into {views} views of [global token + "
                "square grid]"
            )
        return [scores[..., v * per_view + 1 : (v + 1) * per_view].unflatten(-1, (side, side)) for v in range(views)]

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        """The word classifier ``W`` of ``logits = W(h_t + M_t)`` (its own weight and bias unless
        ``config.tie_word_embeddings``, then its weight is the decoder's word embedding)."""
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings

    @accepts_legacy_cache_name
    def forward(
        self,
        pixel_values: Tensor | None = None,
        decoder_input_ids: Tensor | None = None,
        decoder_attention_mask: Tensor | None = None,
        encoder_outputs: RRGMambaEncoderOutput | tuple | None = None,
        cache: Cache | None = None,
        labels: Tensor | None = None,
        observation_labels: Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> RRGMambaSeq2SeqLMOutput:
        r"""The report loss (Eq. 18 plus the adapter's terms) and next-word logits of a batch of studies.

        Args:
            labels (`(batch, length)`): report token ids ending with `<eos>`, -100 where padded; the decoder input
                is the labels shifted right behind `<bos>`.
            observation_labels (`(batch, num_observations)`): CheXpert-style pseudo-labels for the observation BCE.
            cache (`EncoderDecoderCache`): decoder key/value cache (`generate()` passes it; also accepted as
                ``past_key_values``, its name before transformers 5.24).
        """
        output_attentions = bool(output_attentions if output_attentions is not None else self.config.output_attentions)
        output_hidden_states = bool(
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(pixel_values, output_attentions, output_hidden_states, return_dict=True)
        elif not isinstance(encoder_outputs, RRGMambaEncoderOutput):
            encoder_outputs = self.encoder.output_from_tuple(encoder_outputs)
        memory = encoder_outputs.last_hidden_state
        if labels is not None:
            check_token_ids("labels", labels, self.config.vocab_size, ignored=(-100,))
        if labels is not None and decoder_input_ids is None:
            if labels.ndim != 2 or labels.shape[1] == 0:
                raise ValueError(f"labels: expected (batch, length) with length > 0, got shape {tuple(labels.shape)}")
            decoder_input_ids = shift_tokens_right(
                labels, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids: required when no labels are given")
        check_token_ids("decoder_input_ids", decoder_input_ids, self.config.vocab_size)
        if decoder_input_ids.shape[0] != memory.shape[0]:
            raise ValueError(
                f"decoder_input_ids: batch {decoder_input_ids.shape[0]} does not match the images' batch "
                f"{memory.shape[0]}"
            )
        use_cache = use_cache if use_cache is not None else (self.config.use_cache and labels is None)
        if use_cache and cache is None:
            cache = EncoderDecoderCache(DynamicCache(config=self.config), DynamicCache(config=self.config))
        elif not use_cache:
            cache = None

        # The consistency target is trustworthy only where the observation head is being taught (issue 24; the
        # authors apply the term only to reports with a positive label): without labels, no consistency loss.
        consistency = labels is not None and self.adapter_projection is not None and observation_labels is not None
        decoder_states, hidden_states, self_attentions, cross_attentions = self.decoder(
            decoder_input_ids,
            memory,
            decoder_attention_mask,
            cache,
            output_attentions,
            output_hidden_states,
            output_last_cross_attention=consistency,
        )
        fused = decoder_states
        if self.adapter_projection is not None:
            foreground = encoder_outputs.foreground_token[:, None, :].expand_as(decoder_states)
            fused = decoder_states + self.adapter_projection(torch.cat([decoder_states, foreground], dim=-1))
        logits = self.lm_head(fused)

        loss = report_loss = obs_loss = cons_loss = None
        if labels is not None:
            report_loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
            loss = report_loss
            if consistency:
                obs_loss = observation_loss(encoder_outputs.observation_logits, observation_labels)
                loss = loss + self.config.observation_loss_weight * obs_loss
                cons_loss = consistency_loss(
                    cross_attentions[-1].mean(dim=1),
                    decoder_states,
                    encoder_outputs.foreground_map,
                    encoder_outputs.foreground_token,
                    labels,
                    self.config.word_ratio,
                    studies=(observation_labels == 1).any(dim=-1),
                )
                loss = loss + self.config.consistency_loss_weight * cons_loss

        output = RRGMambaSeq2SeqLMOutput(
            loss=loss,
            report_loss=report_loss,
            observation_loss=obs_loss,
            consistency_loss=cons_loss,
            logits=logits,
            **cache_field(cache),
            decoder_hidden_states=hidden_states or None,
            decoder_attentions=self_attentions or None,
            cross_attentions=cross_attentions if output_attentions else None,
            encoder_last_hidden_state=memory,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
            observation_logits=encoder_outputs.observation_logits,
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        return output if return_dict else output.to_tuple()


__all__ = [
    "RRGMambaEncoderOutput",
    "RRGMambaForConditionalGeneration",
    "RRGMambaPreTrainedModel",
    "RRGMambaSeq2SeqLMOutput",
]
