"""X-ray Mamba: the Vim-style vision backbone of EMRRG (Zhang et al., 2025, §3.2).

An image is cut into 16x16 patches, embedded by one convolution, and a learnable class token is inserted in the
middle of the patch sequence (Vim). Learned absolute position embeddings are added (interpolated when the image
size differs from the configured one). Every block is pre-norm:

    h = h + Mixer(Norm(h))          four scan routes over the patch grid, per-route conv/S6, shared in/out_proj
    h = h + SwiGLU(Norm(h))

Norm is RMSNorm (ours) or, with ``norm_type="layer_norm"`` and ``mlp_bias=True``, the authors' LayerNorm with biased
SwiGLU (their ARM / MambaXray-VL backbone, which :func:`convert_xray_mamba_checkpoint` loads).

All tokens leave the backbone (no pooling): the report generator attends to every one of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling

from .._compat import init
from ..layers import MambaMixer, SelectiveSSM
from ..saving import RemoteCodeModelMixin
from .configuration_emrrg import XrayMambaConfig

Tensor = torch.Tensor


class XrayMambaPatchEmbeddings(nn.Module):
    """Patch embedding, middle class token and (interpolated) absolute position embeddings."""

    def __init__(self, config: XrayMambaConfig) -> None:
        super().__init__()
        self.patch_size = config.patch_size
        self.grid_size = config.image_size // config.patch_size
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, config.patch_size, stride=config.patch_size
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        # Laid out as [patches of the configured grid ; class token] and reordered per forward.
        self.position_embeddings = nn.Parameter(torch.zeros(1, self.grid_size**2 + 1, config.hidden_size))

    def _patch_positions(self, grid: tuple[int, int]) -> Tensor:
        """Position embeddings of the patches, bicubically resampled to ``grid`` when it differs from the config."""
        table = self.position_embeddings[:, :-1]
        if grid == (self.grid_size, self.grid_size):
            return table
        side = self.grid_size
        table = table.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table.float(), size=grid, mode="bicubic", align_corners=False).to(table.dtype)
        return table.permute(0, 2, 3, 1).flatten(1, 2)

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, tuple[int, int], int]:
        """``(B, C, H, W)`` -> tokens ``(B, h*w + 1, D)``, the patch grid ``(h, w)`` and the class-token index."""
        height, width = pixel_values.shape[-2:]
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"pixel_values: image size {height}x{width} is not a multiple of patch_size {self.patch_size}"
            )
        patches = self.projection(pixel_values).flatten(2).transpose(1, 2)
        grid = (height // self.patch_size, width // self.patch_size)
        patches = patches + self._patch_positions(grid)
        cls = (self.cls_token + self.position_embeddings[:, -1:]).expand(patches.shape[0], -1, -1)
        cls_position = patches.shape[1] // 2
        tokens = torch.cat([patches[:, :cls_position], cls, patches[:, cls_position:]], dim=1)
        return tokens, grid, cls_position


def xray_mamba_norm(config: XrayMambaConfig) -> nn.Module:
    """A pre-norm of the kind ``config.norm_type`` names (RMSNorm, or the authors' LayerNorm with bias)."""
    if config.norm_type == "layer_norm":
        return nn.LayerNorm(config.hidden_size, eps=config.rms_norm_eps)
    return nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class XrayMambaSwiGLU(nn.Module):
    """SwiGLU feed-forward: ``down(SiLU(gate(h)) * up(h))`` (the authors' ``w3(SiLU(w1 h) * w2 h)``)."""

    def __init__(self, config: XrayMambaConfig) -> None:
        super().__init__()
        bias = config.mlp_bias
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden_states)) * self.up_proj(hidden_states))


class XrayMambaBlock(nn.Module):
    """Pre-norm residual block: four-route Mamba mixer, then SwiGLU."""

    def __init__(self, config: XrayMambaConfig, layer_idx: int) -> None:
        super().__init__()
        self.mixer_norm = xray_mamba_norm(config)
        self.mixer = MambaMixer(
            config.hidden_size,
            d_state=config.d_state,
            d_conv=config.d_conv,
            expand=config.expand,
            dt_rank=config.dt_rank,
            directions=tuple(config.scan_directions),
            layer_idx=layer_idx,
            scan_backend=config.selective_scan_backend,
        )
        self.mlp_norm = xray_mamba_norm(config)
        self.mlp = XrayMambaSwiGLU(config)

    def forward(self, hidden_states: Tensor, grid: tuple[int, int], cls_position: int) -> Tensor:
        hidden_states = hidden_states + self.mixer(
            self.mixer_norm(hidden_states), grid=grid, cls_position=cls_position
        )
        return hidden_states + self.mlp(self.mlp_norm(hidden_states))


class XrayMambaPreTrainedModel(RemoteCodeModelMixin, PreTrainedModel):
    config_class = XrayMambaConfig
    #: A backbone on its own loads with ``AutoModel`` (``trust_remote_code`` where the package is not installed).
    remote_code_auto_classes = ("AutoModel",)
    base_model_prefix = "xray_mamba"
    main_input_name = "pixel_values"
    _no_split_modules = ["XrayMambaBlock"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialise what a checkpoint lacks; tensors loaded from it are left alone (a partly loaded module too)."""
        std = self.config.initializer_range
        if isinstance(module, SelectiveSSM):
            module.reset_parameters()
        elif isinstance(module, XrayMambaPatchEmbeddings):
            _unless_loaded(module.position_embeddings, lambda t: init.trunc_normal_(t, std=std))
            _unless_loaded(module.cls_token, lambda t: init.trunc_normal_(t, std=std))
        elif isinstance(module, nn.Conv1d):  # the mixers' depthwise convolutions: PyTorch's default
            module.reset_parameters()
        elif isinstance(module, (nn.Linear, nn.Conv2d)):
            _unless_loaded(module.weight, lambda t: init.trunc_normal_(t, std=std))
            if getattr(module, "bias", None) is not None:
                _unless_loaded(module.bias, init.zeros_)
        elif isinstance(module, (nn.RMSNorm, nn.LayerNorm)):
            _unless_loaded(module.weight, init.ones_)
            if getattr(module, "bias", None) is not None:
                _unless_loaded(module.bias, init.zeros_)


def _unless_loaded(tensor: Tensor, initialise) -> None:
    """Apply ``initialise`` unless ``tensor`` came from a checkpoint (transformers 4.57 does not check this itself)."""
    if not getattr(tensor, "_is_hf_initialized", False):
        initialise(tensor)


class XrayMambaModel(XrayMambaPreTrainedModel):
    """The X-ray Mamba backbone on its own: ``pixel_values (B, C, H, W)`` -> all ``h*w + 1`` tokens.

    ``pooler_output`` is the (normalised) middle class token, for classification heads.
    """

    def __init__(self, config: XrayMambaConfig) -> None:
        super().__init__(config)
        self.embeddings = XrayMambaPatchEmbeddings(config)
        self.layers = nn.ModuleList(XrayMambaBlock(config, i) for i in range(config.num_hidden_layers))
        self.norm = xray_mamba_norm(config)
        self.post_init()

    def forward(
        self,
        pixel_values: Tensor,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPooling | tuple:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values: expected (batch, {self.config.num_channels}, height, width), got "
                f"{tuple(pixel_values.shape)}"
            )
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        hidden_states, grid, cls_position = self.embeddings(pixel_values.to(self.embeddings.projection.weight.dtype))
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for block in self.layers:
            hidden_states = block(hidden_states, grid, cls_position)
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
        hidden_states = self.norm(hidden_states)
        pooled = hidden_states[:, cls_position]
        if not return_dict:
            return tuple(v for v in (hidden_states, pooled, all_hidden_states) if v is not None)
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states, pooler_output=pooled, hidden_states=all_hidden_states
        )
