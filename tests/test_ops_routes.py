"""Scan routes: orders, inverses, the cache, the index-map description kernels use, gather and merge."""

import pytest
import torch

from modeling_rrg_mamba.layers import MambaMixer
from modeling_rrg_mamba.ops import GRID_DIRECTIONS, gather_directions, merge_directions, scan_order, scan_routes


def test_scan_orders_are_permutations_with_the_class_token_in_the_middle():
    for direction in GRID_DIRECTIONS:
        order = scan_order(direction, 13, grid=(3, 4), cls_position=6)
        assert sorted(order.tolist()) == list(range(13))
        assert order[6].item() == 6
    assert scan_order("col", 6, grid=(2, 3)).tolist() == [0, 3, 1, 4, 2, 5]
    assert scan_order("row_reversed", 6, grid=(2, 3)).tolist() == [5, 4, 3, 2, 1, 0]
    with pytest.raises(ValueError, match=r"grid: 3x4 grid \+ 1 class token needs 13 tokens, got sequence length 12"):
        scan_order("col", 12, grid=(3, 4), cls_position=6)
    with pytest.raises(ValueError, match="grid: direction 'col' scans a 2-D grid"):
        scan_order("col", 12)
    with pytest.raises(ValueError, match="direction: unknown scan direction 'diagonal'"):
        scan_order("diagonal", 12)


def test_scan_routes_are_cached_inverse_orders_usable_after_inference_mode():
    with torch.inference_mode():  # first asked for while generating: later training reuses the cached tensors
        routes = scan_routes(GRID_DIRECTIONS, 13, grid=(3, 4), cls_position=6)
    assert scan_routes(list(GRID_DIRECTIONS), 13, grid=[3, 4], cls_position=6) is routes
    assert not routes.order.is_inference()
    for k, direction in enumerate(GRID_DIRECTIONS):
        assert torch.equal(routes.order[k], scan_order(direction, 13, grid=(3, 4), cls_position=6))
        assert torch.equal(routes.inverse[k], torch.argsort(routes.order[k]))
    mixer = MambaMixer(8, directions=GRID_DIRECTIONS)
    mixer(torch.randn(1, 13, 8), grid=(3, 4), cls_position=6).sum().backward()
    assert mixer.in_proj.weight.grad is not None


@pytest.mark.parametrize("scale", [1.0, 1 / 3])
def test_gather_and_merge_of_routes_match_indexing_and_gradcheck(scale):
    routes = scan_routes(("row", "col_reversed", "col"), 7, grid=(2, 3), cls_position=3)
    tokens = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    gathered = gather_directions(tokens, routes)
    expected = torch.stack([tokens[:, order].transpose(1, 2) for order in routes.order], dim=1)
    torch.testing.assert_close(gathered, expected, rtol=0, atol=0)
    outputs = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    merged = sum(outputs[:, k][..., torch.argsort(order)] for k, order in enumerate(routes.order)).transpose(1, 2)
    torch.testing.assert_close(merge_directions(outputs, routes, scale), merged * scale)
    assert torch.autograd.gradcheck(lambda t: gather_directions(t, routes), (tokens,))
    assert torch.autograd.gradcheck(lambda o: merge_directions(o, routes, scale), (outputs,))


def test_route_flags_describe_each_direction():
    routes = scan_routes(("row", "col", "row_reversed", "col_reversed"), 13, grid=(3, 4), cls_position=6)
    assert routes.flags() == (0b1010, 0b1100, 0b1111)
    assert scan_routes(("forward", "backward"), 9).flags() == (0, 0b10, 0)
    # 1-D routes walk the sequence as it is, class token included; only grid routes move it to the middle
    assert scan_routes(("backward", "col"), 7, grid=(2, 3), cls_position=0).flags() == (0b10, 0b01, 0b10)


def test_scan_routes_refuse_unknown_or_gridless_directions():
    with pytest.raises(ValueError, match="direction: unknown scan direction 'zigzag'"):
        scan_routes(("row", "zigzag"), 6, grid=(2, 3))
    with pytest.raises(ValueError, match="grid: direction 'col' scans a 2-D grid"):
        scan_routes(("forward", "col"), 6)
    with pytest.raises(ValueError, match="directions: give at least one scan direction"):
        scan_routes((), 6)
