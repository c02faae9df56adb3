"""Token orders for multi-direction scans over a sequence or an (H, W) grid.

A scan direction is a permutation of the token positions: ``"forward"`` / ``"row"`` is the natural
(row-major) order, ``"backward"`` / ``"row_reversed"`` its reverse, ``"col"`` the column-major order of a grid
and ``"col_reversed"`` its reverse (VMamba's four SS2D routes, Vim's bidirectional scan). A token outside the
grid (Vim's middle class token, ``cls_position``) keeps its place in the middle of every order.
"""

from __future__ import annotations

from collections.abc import Callable

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


def gather_directions(tokens: Tensor, orders: list[Tensor]) -> Tensor:
    """``(batch, length, dim)`` tokens -> ``(batch, directions, dim, length)``, each direction in its scan order."""
    return torch.stack([tokens[:, order] for order in orders], dim=1).transpose(2, 3)


def merge_directions(outputs: Tensor, orders: list[Tensor], reduce: str = "sum") -> Tensor:
    """Inverse of :func:`gather_directions`: put every direction back in token order and sum (or average).

    ``outputs`` ``(batch, directions, dim, length)`` -> ``(batch, length, dim)``.
    """
    merged = sum(outputs[:, k][..., torch.argsort(order)] for k, order in enumerate(orders))
    if reduce == "mean":
        merged = merged / len(orders)
    elif reduce != "sum":
        raise ValueError(f"reduce: expected 'sum' or 'mean', got {reduce!r}")
    return merged.transpose(1, 2)


def multi_route_scan(
    scan: Callable[[Tensor], Tensor],
    tokens: Tensor,
    orders: list[Tensor],
    reduce: str,
    prepare: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """The multi-route selective scan that the Mamba mixer and SS2D share: gather ``tokens`` ``(batch, length, dim)``
    into every route's order, optionally ``prepare`` the routes (per-route convolution), run ``scan`` (a
    :class:`~.selective_ssm.SelectiveSSM`, one parameter set per route) and merge back into token order."""
    routes = gather_directions(tokens, orders)
    if prepare is not None:
        routes = prepare(routes)
    return merge_directions(scan(routes), orders, reduce=reduce)
