"""Token orders for multi-direction scans over a sequence or an (H, W) grid.

A scan direction is a permutation of the token positions: ``"forward"`` / ``"row"`` is the natural
(row-major) order, ``"backward"`` / ``"row_reversed"`` its reverse, ``"col"`` the column-major order of a grid
and ``"col_reversed"`` its reverse (VMamba's four SS2D routes, Vim's bidirectional scan). A token outside the
grid (Vim's middle class token, ``cls_position``) keeps its place in the middle of every order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Tensor = torch.Tensor

ONE_D_DIRECTIONS = ("forward", "backward")
#: The four routes over an (H, W) grid, in VMamba's SS2D order: row-major, column-major and their reverses.
GRID_DIRECTIONS = ("row", "col", "row_reversed", "col_reversed")  # VMamba's order of the four routes
#: Every scan direction a mixer accepts: the 1-D ``"forward"`` / ``"backward"`` and the grid routes.
DIRECTIONS = ONE_D_DIRECTIONS + GRID_DIRECTIONS


def _grid_tokens(length: int, grid: tuple[int, int] | None, cls_position: int | None) -> int:
    expected = grid[0] * grid[1] + (cls_position is not None)
    if length != expected:
        raise ValueError(
            f"grid: {grid[0]}x{grid[1]} grid{' + 1 class token' if cls_position is not None else ''} "
            f"needs {expected} tokens, got sequence length {length}"
        )
    return grid[0] * grid[1]


def scan_order(
    direction: str,
    length: int,
    grid: tuple[int, int] | None = None,
    cls_position: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Positions visited by ``direction``: ``sequence[:, order]`` is the sequence in scan order."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: unknown scan direction {direction!r}; choose from {DIRECTIONS}")
    if direction in ONE_D_DIRECTIONS:
        order = torch.arange(length, device=device)
        return order if direction == "forward" else order.flip(0)
    if grid is None:
        raise ValueError(f"grid: direction {direction!r} scans a 2-D grid; pass grid=(height, width)")
    patches = _grid_tokens(length, grid, cls_position)
    order = torch.arange(patches, device=device)
    if direction.startswith("col"):
        order = order.view(grid).t().reshape(-1)
    if cls_position is not None:
        # Positions in the full sequence: patches after the class token shift by one.
        order = order + (order >= cls_position).long()
        middle = patches // 2
        order = torch.cat([order[:middle], order.new_tensor([cls_position]), order[middle:]])
    return order.flip(0) if direction.endswith("reversed") else order


@dataclass(frozen=True)
class Routes:
    """The token orders of ``k`` scan routes over ``L`` tokens, both ``(k, L)`` int64: route ``r`` visits position
    ``order[r, t]`` at step ``t``, and position ``l`` at step ``inverse[r, l]`` (``inverse[r, order[r, t]] = t``)."""

    order: Tensor
    inverse: Tensor


@functools.lru_cache(maxsize=64)
def _cached_routes(
    directions: tuple[str, ...],
    length: int,
    grid: tuple[int, int] | None,
    cls_position: int | None,
    device: torch.device,
) -> Routes:
    # Normal tensors even when first asked for under inference_mode: later training steps reuse them.
    with torch.inference_mode(False):
        order = torch.stack([scan_order(d, length, grid, cls_position, device) for d in directions])
        inverse = torch.empty_like(order).scatter_(1, order, torch.arange(length, device=device).expand_as(order))
    return Routes(order, inverse)


def scan_routes(
    directions: Sequence[str],
    length: int,
    grid: tuple[int, int] | None = None,
    cls_position: int | None = None,
    device: torch.device | str | None = None,
) -> Routes:
    """The :class:`Routes` of ``directions`` (see :func:`scan_order`), built once per (directions, length, grid,
    class token, device) and cached: the returned tensors are shared, never modify them."""
    grid = None if grid is None else (int(grid[0]), int(grid[1]))
    return _cached_routes(tuple(directions), length, grid, cls_position, torch.device(device or "cpu"))


def _to_routes(tokens: Tensor, order: Tensor) -> Tensor:
    """``(batch, dim, L)`` in token order -> ``(batch, k, dim, L)``, ``out[b, r, d, t] = tokens[b, d, order[r, t]]``
    (one gather, written route-major and contiguous)."""
    batch, dim, length = tokens.shape
    shape = (batch, order.shape[0], dim, length)
    return torch.gather(tokens.unsqueeze(1).expand(shape), 3, order[None, :, None].expand(shape))


def _from_routes(routes: Tensor, inverse: Tensor, scale: float) -> Tensor:
    """``(batch, k, dim, L)`` -> ``(batch, dim, L)`` in token order: ``scale * sum_r routes[b, r, d, inverse[r, l]]``,
    the adjoint of :func:`_to_routes` (for a permutation, the gather by the inverse is the scatter by the order)."""
    merged = torch.gather(routes, 3, inverse[None, :, None].expand(routes.shape)).sum(1)
    return merged if scale == 1 else merged.mul_(scale)


class _GatherRoutes(torch.autograd.Function):
    """``(batch, L, dim)`` tokens -> ``(batch, k, dim, L)`` routes; backward: the merge (sum over routes)."""

    @staticmethod
    def forward(ctx, tokens: Tensor, routes: Routes) -> Tensor:
        ctx.routes = routes  # index tensors, kept as attributes: they need no saved-tensor bookkeeping
        return _to_routes(tokens.transpose(1, 2), routes.order)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return _from_routes(grad, ctx.routes.inverse, 1.0).transpose(1, 2), None


class _MergeRoutes(torch.autograd.Function):
    """``(batch, k, dim, L)`` routes -> ``(batch, L, dim)`` tokens, ``scale`` times the sum; backward: the gather."""

    @staticmethod
    def forward(ctx, outputs: Tensor, routes: Routes, scale: float) -> Tensor:
        ctx.routes, ctx.scale = routes, scale
        return _from_routes(outputs, routes.inverse, scale).transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad if ctx.scale == 1 else grad * ctx.scale
        return _to_routes(grad.transpose(1, 2), ctx.routes.order), None, None


def gather_directions(tokens: Tensor, routes: Routes) -> Tensor:
    """``(batch, length, dim)`` tokens -> ``(batch, directions, dim, length)``, each direction in its scan order."""
    return _GatherRoutes.apply(tokens, routes)


def merge_directions(outputs: Tensor, routes: Routes, reduce: str = "sum") -> Tensor:
    """Inverse of :func:`gather_directions`: put every direction back in token order and sum (or average).

    ``outputs`` ``(batch, directions, dim, length)`` -> ``(batch, length, dim)``.
    """
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce: expected 'sum' or 'mean', got {reduce!r}")
    return _MergeRoutes.apply(outputs, routes, 1.0 / outputs.shape[1] if reduce == "mean" else 1.0)


def multi_route_scan(
    scan: Callable[[Tensor], Tensor],
    tokens: Tensor,
    routes: Routes,
    reduce: str,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The multi-route selective scan that the Mamba mixer and SS2D share: gather ``tokens`` ``(batch, length, dim)``
    into every route's order, optionally ``prepare`` the routes (per-route convolution), run ``scan`` (a
    :class:`~.selective_ssm.SelectiveSSM`, one parameter set per route) and merge back into token order."""
    gathered = gather_directions(tokens, routes)
    if prepare is not None:
        gathered = prepare(gathered)
    return merge_directions(scan(gathered), routes, reduce=reduce)
