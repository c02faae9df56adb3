"""Mamba mixer (parity with transformers, directions), SS2D, RoPE, DPB."""

import pytest
import torch
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer

from modeling_rrg_mamba.layers import SS2D, DynamicPositionBias, MambaMixer, RotaryEmbedding1D, RotaryEmbedding2D
from modeling_rrg_mamba.ops import GRID_DIRECTIONS, selective_scan


def hf_mixer_and_ours(d_model=16, d_state=4, expand=2, d_conv=4, dt_rank=3, bias=False):
    torch.manual_seed(0)
    config = MambaConfig(
        hidden_size=d_model,
        state_size=d_state,
        expand=expand,
        conv_kernel=d_conv,
        time_step_rank=dt_rank,
        use_bias=bias,
        use_conv_bias=True,
        num_hidden_layers=1,
    )
    theirs = HFMambaMixer(config, layer_idx=0).eval()
    ours = MambaMixer(d_model, d_state=d_state, expand=expand, d_conv=d_conv, dt_rank=dt_rank, bias=bias)
    hf = theirs.state_dict()
    mapping = {
        "in_proj.weight": hf["in_proj.weight"],
        "conv1d.weight": hf["conv1d.weight"],
        "conv1d.bias": hf["conv1d.bias"],
        "ssm.x_proj_weight": hf["x_proj.weight"][None],
        "ssm.dt_proj_weight": hf["dt_proj.weight"][None],
        "ssm.dt_proj_bias": hf["dt_proj.bias"][None],
        "ssm.A_log": hf["A_log"][None],
        "ssm.D": hf["D"][None],
        "out_proj.weight": hf["out_proj.weight"],
    }
    if bias:
        mapping.update({"in_proj.bias": hf["in_proj.bias"], "out_proj.bias": hf["out_proj.bias"]})
    ours.load_state_dict(mapping)
    return theirs, ours


@pytest.mark.parametrize("bias", [False, True])
def test_mixer_equals_transformers_mamba_mixer(bias):
    theirs, ours = hf_mixer_and_ours(bias=bias)
    x = torch.randn(3, 23, 16)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_theirs, y_ours = theirs(x1), ours(x2)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-5, atol=1e-6)
    grad = torch.randn_like(y_ours)
    y_theirs.backward(grad)
    y_ours.backward(grad)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-6)
    # Parameter gradients agree too (same names after the mapping above).
    torch.testing.assert_close(ours.ssm.A_log.grad[0], theirs.A_log.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.ssm.x_proj_weight.grad[0], theirs.x_proj.weight.grad, rtol=1e-4, atol=1e-6)


def test_forward_mixer_is_causal_and_bidirectional_is_not():
    torch.manual_seed(2)
    x = torch.randn(1, 12, 16)
    x_changed = x.clone()
    x_changed[:, -1] += 1.0
    causal = MambaMixer(16, directions=("forward",))
    both = MambaMixer(16, directions=("forward", "backward"))
    torch.testing.assert_close(causal(x)[:, :-1], causal(x_changed)[:, :-1])
    assert not torch.allclose(both(x)[:, 0], both(x_changed)[:, 0])


def test_backward_direction_equals_forward_on_reversed_sequence():
    torch.manual_seed(3)
    forward = MambaMixer(16, directions=("forward",))
    backward = MambaMixer(16, directions=("backward",))
    backward.load_state_dict(forward.state_dict())
    x = torch.randn(2, 10, 16)
    torch.testing.assert_close(backward(x), forward(x.flip(1)).flip(1), rtol=1e-5, atol=1e-6)


def test_four_direction_mixer_averages_its_directions():
    """A 4-direction mixer equals the mean of single-direction mixers that share in/out projections."""
    torch.manual_seed(4)
    grid, cls = (3, 4), 6
    x = torch.randn(2, 13, 16)
    multi = MambaMixer(16, directions=GRID_DIRECTIONS)
    d_inner = multi.d_inner
    outputs = []
    for k, direction in enumerate(GRID_DIRECTIONS):
        single = MambaMixer(16, directions=(direction,))
        state = {name: value for name, value in multi.state_dict().items() if name.startswith(("in_proj", "out_proj"))}
        state["conv1d.weight"] = multi.conv1d.weight[k * d_inner : (k + 1) * d_inner]
        state["conv1d.bias"] = multi.conv1d.bias[k * d_inner : (k + 1) * d_inner]
        for name in ("x_proj_weight", "dt_proj_weight", "dt_proj_bias", "A_log", "D"):
            state[f"ssm.{name}"] = getattr(multi.ssm, name)[k : k + 1]
        single.load_state_dict(state)
        # out_proj is linear and bias-free: the mean of outputs is out_proj of the mean.
        outputs.append(single(x, grid=grid, cls_position=cls))
    torch.testing.assert_close(
        multi(x, grid=grid, cls_position=cls), torch.stack(outputs).mean(0), rtol=1e-5, atol=1e-6
    )


def reference_ss2d_scan(layer: SS2D, x: torch.Tensor) -> torch.Tensor:
    """SS2D's scan written route by route: flatten, scan with that route's parameters, map back, sum."""
    batch, height, width, dim = x.shape
    row = x.permute(0, 3, 1, 2).reshape(batch, dim, -1)
    col = x.permute(0, 3, 2, 1).reshape(batch, dim, -1)
    routes = [row, col, row.flip(-1), col.flip(-1)]
    ssm = layer.ssm
    outs = []
    for k, u in enumerate(routes):
        dbl = torch.einsum("bdl,cd->bcl", u, ssm.x_proj_weight[k])
        dt, B, C = dbl.split([ssm.dt_rank, ssm.d_state, ssm.d_state], dim=1)
        outs.append(
            selective_scan(
                u,
                torch.einsum("brl,dr->bdl", dt, ssm.dt_proj_weight[k]),
                -ssm.A_log[k].exp(),
                B,
                C,
                ssm.D[k],
                delta_bias=ssm.dt_proj_bias[k],
                delta_softplus=True,
            )
        )

    def from_col(y):
        return y.reshape(batch, dim, width, height).transpose(2, 3).reshape(batch, dim, -1)

    total = outs[0] + from_col(outs[1]) + outs[2].flip(-1) + from_col(outs[3].flip(-1))
    return total.reshape(batch, dim, height, width).permute(0, 2, 3, 1)


def test_ss2d_scan_equals_route_by_route_reference():
    torch.manual_seed(5)
    layer = SS2D(8, d_state=4).double()
    x = torch.randn(2, 3, 5, layer.d_inner, dtype=torch.float64)
    torch.testing.assert_close(layer.scan(x), reference_ss2d_scan(layer, x))


def test_ss2d_forward_shapes_gradients_and_rope_effect():
    torch.manual_seed(6)
    with_rope, without = SS2D(8, use_rope=True), SS2D(8, use_rope=False)
    without.load_state_dict(with_rope.state_dict())
    x = torch.randn(2, 4, 6, 8, requires_grad=True)
    y = with_rope(x)
    assert y.shape == x.shape
    y.square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in with_rope.parameters())
    assert not torch.allclose(y, without(x))
    with pytest.raises(ValueError, match=r"x: expected a token grid \(batch, H, W, 8\), got shape \(2, 24, 8\)"):
        with_rope(torch.randn(2, 24, 8))


def test_ss2d_sees_the_whole_grid():
    """Every output token depends on every input token (the four routes together cover the grid)."""
    torch.manual_seed(7)
    layer = SS2D(8, use_rope=False).double()
    x = torch.randn(1, 4, 4, 8, dtype=torch.float64, requires_grad=True)
    layer(x)[0, 0, 0].sum().backward()
    assert (x.grad[0].abs().sum(-1) > 0).all()


def test_rope_depends_only_on_relative_offsets():
    torch.manual_seed(8)
    q, k = torch.randn(1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 8, dtype=torch.float64)
    rope = RotaryEmbedding1D(8).double()

    def dot(p, r):
        return (rope(q, torch.tensor([p])) * rope(k, torch.tensor([r]))).sum().item()

    assert dot(3, 1) == pytest.approx(dot(10, 8)) and dot(3, 1) != pytest.approx(dot(3, 2))
    rope2 = RotaryEmbedding2D(8).double()

    def dot2(a, b):
        rotated_q = rope2(q, torch.tensor([a[0]]), torch.tensor([a[1]]))
        rotated_k = rope2(k, torch.tensor([b[0]]), torch.tensor([b[1]]))
        return (rotated_q * rotated_k).sum().item()

    assert dot2((2, 5), (1, 1)) == pytest.approx(dot2((4, 7), (3, 3)))
    assert dot2((2, 5), (1, 1)) != pytest.approx(dot2((2, 5), (1, 2)))
    grid = torch.randn(2, 3, 4, 8, dtype=torch.float64)
    rows, cols = torch.arange(3).repeat_interleave(4), torch.arange(4).repeat(3)
    torch.testing.assert_close(rope2(grid).reshape(2, 12, 8), rope2(grid.reshape(2, 12, 8), rows, cols))
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        RotaryEmbedding2D(6)


def test_dynamic_position_bias_is_translation_equivariant_and_size_free():
    torch.manual_seed(9)
    dpb = DynamicPositionBias(8, window=3).double()
    x = torch.randn(1, 9, 9, 8, dtype=torch.float64)
    shifted = torch.roll(x, shifts=(2, 1), dims=(1, 2))
    # Away from the borders, shifting the input shifts the bias.
    torch.testing.assert_close(
        torch.roll(dpb(x), shifts=(2, 1), dims=(1, 2))[:, 3:-1, 2:-1], dpb(shifted)[:, 3:-1, 2:-1]
    )
    assert dpb(torch.randn(2, 5, 17, 8, dtype=torch.float64)).shape == (2, 5, 17, 8)
    with pytest.raises(ValueError, match="odd positive window, got 4"):
        DynamicPositionBias(8, window=4)
    with pytest.raises(ValueError, match=r"x: expected a token grid \(batch, H, W, 8\), got shape \(2, 5, 7\)"):
        dpb(torch.randn(2, 5, 7, dtype=torch.float64))


def test_mixer_rejects_bad_input():
    mixer = MambaMixer(16, directions=("forward", "backward"))
    with pytest.raises(ValueError, match=r"hidden_states: expected \(batch, length, 16\), got shape \(2, 5, 8\)"):
        mixer(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="directions: expected a non-empty subset"):
        MambaMixer(16, directions=("sideways",))
    with pytest.raises(ValueError, match="dt_rank: expected a positive int or 'auto'"):
        MambaMixer(16, dt_rank=0)


def test_dynamic_position_bias_runs_in_half_precision_with_a_float32_offsets_buffer():
    """from_pretrained(dtype=float16) rebuilds the non-persistent offsets in float32 while the MLP is in half."""
    dpb = DynamicPositionBias(8, window=3).to(torch.bfloat16)
    dpb.offsets = dpb.offsets.float()
    x = torch.randn(1, 4, 4, 8, dtype=torch.bfloat16)
    assert dpb(x).dtype == torch.bfloat16
