"""Scan routes: the token orders of multi-direction selective scans over a sequence or an (H, W) grid.

A scan direction is a permutation of the token positions: ``"forward"`` / ``"row"`` is the natural (row-major)
order, ``"backward"`` / ``"row_reversed"`` its reverse, ``"col"`` the column-major order of a grid and
``"col_reversed"`` its reverse (VMamba's four SS2D routes, Vim's bidirectional scan). A token outside the grid (Vim's
middle class token, ``cls_position``) keeps its place in the middle of every grid order.

Every order is a closed-form index map (:meth:`Routes.flags` gives the three bits per route that define it), so a
kernel can compute it instead of reading a gathered copy of the sequence (the Triton kernels in :mod:`.triton`); the
PyTorch paths use the same maps as index tensors (:class:`Routes`) and move data with one ``gather`` each way.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
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


def _check_direction(direction: str, grid: tuple[int, int] | None) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: unknown scan direction {direction!r}; choose from {DIRECTIONS}")
    if direction in GRID_DIRECTIONS and grid is None:
        raise ValueError(f"grid: direction {direction!r} scans a 2-D grid; pass grid=(height, width)")


def scan_order(
    direction: str,
    length: int,
    grid: tuple[int, int] | None = None,
    cls_position: int | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Positions visited by ``direction``: ``sequence[:, order]`` is the sequence in scan order."""
    _check_direction(direction, grid)
    if direction in ONE_D_DIRECTIONS:
        order = torch.arange(length, device=device)
        return order if direction == "forward" else order.flip(0)
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
    ``order[r, t]`` at step ``t``, and position ``l`` at step ``inverse[r, l]`` (``inverse[r, order[r, t]] = t``);
    with the routes' description (directions, grid, class token) from which a kernel computes the same maps."""

    order: Tensor
    inverse: Tensor
    directions: tuple[str, ...]
    grid: tuple[int, int] | None
    cls_position: int | None

    @property
    def length(self) -> int:
        return self.order.shape[1]

    def flags(self) -> tuple[int, int, int]:
        """Bit masks over the routes (bit ``r`` for route ``r``): column-major, reversed, and "the class token sits
        in the middle of this route" (grid routes of a sequence with a class token)."""
        transpose = reverse = middle_cls = 0
        for r, direction in enumerate(self.directions):
            transpose |= direction.startswith("col") << r
            reverse |= (direction == "backward" or direction.endswith("reversed")) << r
            middle_cls |= (direction in GRID_DIRECTIONS and self.cls_position is not None) << r
        return transpose, reverse, middle_cls


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
    return Routes(order, inverse, directions, grid, cls_position)


def scan_routes(
    directions: Sequence[str],
    length: int,
    grid: tuple[int, int] | None = None,
    cls_position: int | None = None,
    device: torch.device | str | None = None,
) -> Routes:
    """The :class:`Routes` of ``directions`` (see :func:`scan_order`), built once per (directions, length, grid,
    class token, device) and cached: the returned tensors are shared, never modify them."""
    directions = tuple(directions)
    if not directions:
        raise ValueError("directions: give at least one scan direction")
    grid = None if grid is None else (int(grid[0]), int(grid[1]))
    for direction in directions:
        _check_direction(direction, grid)
    return _cached_routes(directions, length, grid, cls_position, torch.device(device or "cpu"))


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


def merge_directions(outputs: Tensor, routes: Routes, scale: float = 1.0) -> Tensor:
    """Inverse of :func:`gather_directions`: put every direction back in token order and sum, times ``scale``.

    ``outputs`` ``(batch, directions, dim, length)`` -> ``(batch, length, dim)``.
    """
    return _MergeRoutes.apply(outputs, routes, float(scale))
