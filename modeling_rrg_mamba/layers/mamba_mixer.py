"""The Mamba mixer with configurable scan directions and an optional RoPE on the scanned branch.

    [x | z] = in_proj(h);   x_k = SiLU(DWConv_k(order_k(x)))  (+ RoPE);   y_k = S6_k(x_k)
    out = out_proj( mean_k order_k^{-1}(y_k)  *  SiLU(z) )

With ``directions=("forward",)`` this is exactly Mamba's block mixer (Gu & Dao 2023, Fig. 3), parameter for
parameter the same computation as transformers' ``MambaMixer``. With several directions it is the Vim /
EMRRG mixer: ``in_proj`` and ``out_proj`` shared, each direction with its own convolution and S6 parameters,
outputs averaged. ``use_rope`` rotates the scanned branch after the convolution (RRG-Mamba Eq. 9), by the
token's 1-D index, or by its (row, column) on a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import causal_conv1d, causal_conv1d_update
from .rotary import RotaryEmbedding1D, RotaryEmbedding2D, apply_rotary
from .scan_orders import DIRECTIONS, gather_directions, grid_coordinates, merge_directions, scan_order
from .selective_ssm import SelectiveSSM, resolve_dt_rank

Tensor = torch.Tensor


@dataclass
class MambaState:
    """Recurrent state of one causal mixer during token-by-token decoding."""

    conv_state: Tensor  # (batch, d_inner, d_conv - 1): the last inputs of the causal convolution
    ssm_state: Tensor  # (batch, d_inner, d_state): h_t of the selective scan
    offset: int = 0  # tokens consumed so far (the RoPE position of the next one)


class MambaMixer(nn.Module):
    """Mamba mixer over ``(batch, length, d_model)`` tokens, in one or several scan directions."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: Union[int, str] = "auto",
        directions: Sequence[str] = ("forward",),
        use_rope: bool = False,
        bias: bool = False,
        conv_bias: bool = True,
        rope_base: float = 10000.0,
        layer_idx: Optional[int] = None,
    ) -> None:
        super().__init__()
        directions = tuple(directions)
        unknown = [d for d in directions if d not in DIRECTIONS]
        if not directions or unknown:
            raise ValueError(f"directions: expected a non-empty subset of {DIRECTIONS}, got {directions}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.directions, self.layer_idx, self.use_rope = directions, layer_idx, use_rope
        k = len(directions)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        # One depthwise causal convolution per direction, stored as a single grouped convolution.
        self.conv1d = nn.Conv1d(k * self.d_inner, k * self.d_inner, d_conv, groups=k * self.d_inner, padding=d_conv - 1, bias=conv_bias)
        self.ssm = SelectiveSSM(self.d_inner, d_state, resolve_dt_rank(dt_rank, d_model), num_directions=k)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.rope_1d = RotaryEmbedding1D(self.d_inner, rope_base) if use_rope else None
        self.rope_2d = RotaryEmbedding2D(self.d_inner, rope_base) if use_rope and self.d_inner % 4 == 0 else None

    @property
    def is_causal(self) -> bool:
        """Only a forward-only mixer can decode token by token."""
        return self.directions == ("forward",)

    def _rope_angles(self, orders: list[Tensor], grid: Optional[Tuple[int, int]], cls_position: Optional[int]) -> Tensor:
        """Rotation angles ``(directions, length, d_inner / 2)`` of every token in each scan order."""
        if grid is None:
            return torch.stack([self.rope_1d.angles(order) for order in orders])
        if self.rope_2d is None:
            raise ValueError(f"use_rope: 2-D RoPE needs d_inner divisible by 4, got {self.d_inner}")
        rows, cols = grid_coordinates(orders[0].numel(), grid, cls_position, orders[0].device)
        return torch.stack([self.rope_2d.angles(rows[order], cols[order]) for order in orders])

    def forward(
        self,
        hidden_states: Tensor,
        grid: Optional[Tuple[int, int]] = None,
        cls_position: Optional[int] = None,
        state: Optional[MambaState] = None,
    ) -> Tensor:
        """Mix ``hidden_states`` ``(batch, length, d_model)``.

        ``grid=(H, W)`` is needed by the 2-D directions and the 2-D RoPE; ``cls_position`` marks a token outside
        the grid. Passing ``state`` (from :meth:`init_state`) fills it for continuing with :meth:`step`.
        """
        if hidden_states.ndim != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"hidden_states: expected (batch, length, {self.d_model}), got shape {tuple(hidden_states.shape)}")
        if state is not None and not self.is_causal:
            raise ValueError(f"state: only a ('forward',) mixer keeps a decoding state, this one scans {self.directions}")
        batch, length, _ = hidden_states.shape
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        orders = [scan_order(d, length, grid, cls_position, hidden_states.device) for d in self.directions]
        k = len(orders)
        xs = gather_directions(x, orders).reshape(batch, k * self.d_inner, length)
        conv = causal_conv1d(xs, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu", return_final_states=state is not None)
        if state is not None:
            conv, state.conv_state = conv
        xs = conv.view(batch, k, self.d_inner, length)
        if self.use_rope:
            xs = apply_rotary(xs.transpose(2, 3), self._rope_angles(orders, grid, cls_position)).transpose(2, 3)
        ys = self.ssm(xs, return_last_state=state is not None)
        if state is not None:
            ys, state.ssm_state = ys
            state.offset = length
        y = merge_directions(ys, orders, reduce="mean")
        return self.out_proj(y * F.silu(z))

    def init_state(self, batch_size: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> MambaState:
        """Zero state for :meth:`step` (conv state in ``dtype``, SSM state in float32, or float64 for float64)."""
        if not self.is_causal:
            raise ValueError(f"init_state: only a ('forward',) mixer can decode token by token, this one scans {self.directions}")
        device = device or self.in_proj.weight.device
        dtype = dtype or self.in_proj.weight.dtype
        return MambaState(
            conv_state=torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype),
            ssm_state=torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=torch.promote_types(dtype, torch.float32)),
        )

    def step(self, hidden_state: Tensor, state: MambaState) -> Tensor:
        """Mix one token ``(batch, d_model)`` given the state of the tokens before it; updates ``state``."""
        if hidden_state.ndim != 2 or hidden_state.shape[-1] != self.d_model:
            raise ValueError(f"hidden_state: expected (batch, {self.d_model}), got shape {tuple(hidden_state.shape)}")
        if not self.is_causal:
            raise ValueError(f"step: only a ('forward',) mixer can decode token by token, this one scans {self.directions}")
        x, z = self.in_proj(hidden_state).chunk(2, dim=-1)
        x = causal_conv1d_update(x, state.conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu")
        if self.use_rope:
            x = apply_rotary(x, self.rope_1d.angles(torch.tensor([state.offset], device=x.device))[0])
        y = self.ssm.step(x, state.ssm_state)
        state.offset += 1
        return self.out_proj(y * F.silu(z))
