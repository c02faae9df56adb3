"""Issue 24: what keeps the image signal from being swamped early in training (mechanisms, not training runs)."""

import pytest
import torch
from conftest import RRG_MAMBA_LABELS as LABELS
from conftest import rrg_mamba_images as images
from conftest import tiny_rrg_mamba as tiny_model

from modeling_rrg_mamba.rrg_mamba.modeling_rrg_mamba import RRGMambaGDLMBlock, consistency_loss, sinusoidal_positions


def _randomise(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


@pytest.mark.parametrize("use_dpb", [True, False])
def test_gdlm_block_branches_do_not_grow_with_the_stream(use_dpb):
    """Every GDLM branch reads a LayerNorm of the stream, so a block's update stays the same size however large the
    stream is (no (1 + K) growth per block under Adam)."""
    block = tiny_model(use_dpb=use_dpb).encoder.gdlm.blocks[0].double()
    assert isinstance(block, RRGMambaGDLMBlock)
    _randomise(block)
    grid = torch.randn(2, 3, 3, block.conv.in_channels, dtype=torch.float64)
    small, large = block(grid) - grid, block(100 * grid) - 100 * grid
    assert small.norm() > 1e-3  # the branches are active
    assert large.norm() < 2 * small.norm()  # an unnormalised linear branch would give 100 times the update


@pytest.mark.parametrize("scale", [0.0, 0.1, 1.0])
def test_visual_position_scale_sets_the_positional_term_of_the_encoder_input(scale):
    model = tiny_model(visual_position_scale=scale)
    pixel_values = images()
    tokens, _ = model.encoder.visual_tokens(pixel_values)
    first = model.encoder(pixel_values, output_hidden_states=True).hidden_states[0]
    positions = sinusoidal_positions(tokens.shape[1], tokens.shape[2])
    torch.testing.assert_close(first - tokens, scale * positions.expand_as(tokens))


def test_visual_tokens_are_not_drowned_by_positions_at_initialisation():
    """The image-dependent part of the encoder input is at least as large as its positional part."""
    model = tiny_model()
    hidden = model.encoder(images(batch=4, seed=3), output_hidden_states=True).hidden_states[0]
    image_part = (hidden - hidden.mean(0, keepdim=True)).pow(2).mean().sqrt()
    positions = sinusoidal_positions(hidden.shape[1], hidden.shape[2]) * model.config.visual_position_scale
    assert image_part >= positions.pow(2).mean().sqrt()


def test_consistency_loss_needs_observation_labels_with_a_positive():
    model = tiny_model()
    without = model(pixel_values=images(), labels=LABELS)
    assert without.consistency_loss is None and without.observation_loss is None
    torch.testing.assert_close(without.loss, without.report_loss)
    negatives = torch.zeros(2, model.config.num_observations)
    only_negative = model(pixel_values=images(), labels=LABELS, observation_labels=negatives)
    assert only_negative.consistency_loss == 0  # no report has an activated class: no target to trust
    assert only_negative.observation_loss > 0  # the observation head is still taught


def test_consistency_loss_keeps_only_the_selected_studies():
    attention = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])
    states = torch.ones(2, 1, 2)
    foreground = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([[4], [5]])
    both = consistency_loss(attention, states, foreground, states[:, 0], labels, 1.0)
    first = consistency_loss(attention, states, foreground, states[:, 0], labels, 1.0, torch.tensor([True, False]))
    second = consistency_loss(attention, states, foreground, states[:, 0], labels, 1.0, torch.tensor([False, True]))
    torch.testing.assert_close(both, torch.tensor(1.0))
    torch.testing.assert_close(first, torch.tensor(2.0))
    torch.testing.assert_close(second, torch.tensor(0.0))


def _first_adam_update(block, grid: torch.Tensor, steps: int = 3) -> float:
    """RMS of the block's update (output minus input) after ``steps`` Adam steps (lr 1e-3) on a random objective."""
    target = torch.randn(grid.shape, generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-3)
    for _ in range(steps):
        loss = (block(grid) * target).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return float((block(grid) - grid).pow(2).mean().sqrt())


def test_gdlm_branches_join_the_stream_by_their_gains_not_their_matrices():
    """A new GDLM block is the identity through zero branch gains. Under Adam a gain moves by lr per step, while a
    zero-initialised last matrix (the issue-13 design) moves every entry by lr, so its branch grows by about
    lr * sqrt(fan_in): the gated block's first updates are several times smaller, and about lr in size."""
    model = tiny_model(gdlm_mlp_ratio=4.0)
    gated = model.encoder.gdlm.blocks[0]
    zero_matrix = tiny_model(gdlm_mlp_ratio=4.0).encoder.gdlm.blocks[0]
    with torch.no_grad():
        for scale in zero_matrix.branch_scales():
            scale.weight.fill_(1.0)
        for last in (
            zero_matrix.conv,
            zero_matrix.ss2d.out_proj,
            zero_matrix.mlp[-1],
            zero_matrix.position_bias.mlp[-1],
        ):
            last.weight.zero_()
            if last.bias is not None:
                last.bias.zero_()
    grid = torch.nn.functional.layer_norm(torch.randn(2, 4, 4, gated.conv.in_channels), (gated.conv.in_channels,))
    torch.testing.assert_close(gated(grid), grid)
    torch.testing.assert_close(zero_matrix(grid), grid)
    gated_update, zero_matrix_update = _first_adam_update(gated, grid), _first_adam_update(zero_matrix, grid)
    assert gated_update < 3 * 4 * 1e-3  # at most a few lr per branch after three steps
    assert zero_matrix_update > 3 * gated_update, (gated_update, zero_matrix_update)


def test_a_gdlm_branch_adds_its_gain_times_a_unit_rms_pattern_whatever_its_matrices_scale():
    """Each branch is scaled to unit RMS over each image's grid before its gain: growing a branch's own matrices
    (what Adam does to SS2D's gate and output matrices, issue 24) does not change the block's output, and the
    update is bounded by the gains."""
    block = tiny_model(gdlm_mlp_ratio=2.0).encoder.gdlm.blocks[0].eval()
    dim = block.conv.in_channels
    noise = torch.randn(3, 4, 5, dim, generator=torch.Generator().manual_seed(0))
    grid = torch.nn.functional.layer_norm(noise, (dim,))
    with torch.no_grad():
        for index, scale in enumerate(block.branch_scales()):
            scale.weight.copy_(torch.linspace(-0.05, 0.05, dim) * (index + 1))
        before = block(grid)
        for layer in (block.conv, block.ss2d.out_proj, block.mlp[-1], block.position_bias.mlp[-1]):
            layer.weight.mul_(40.0)
            if layer.bias is not None:
                layer.bias.mul_(40.0)
        after = block(grid)
        torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
        bound = sum(float(scale.weight.abs().max()) for scale in block.branch_scales())
        update = (after - grid).pow(2).mean(dim=(1, 2, 3)).sqrt()
        assert (update <= bound).all(), (update, bound)
        single = block.branch_scales()[0](torch.randn(2, 4, 5, dim) * torch.tensor([1e-3, 1e3])[:, None, None, None])
        ratio = single.pow(2).mean(dim=(1, 2, 3)).sqrt()
        torch.testing.assert_close(ratio[0], ratio[1], rtol=0.05, atol=0)  # per image: 1e-3 and 1e3 give one size
    for dtype in (torch.float16, torch.bfloat16):  # 1 / RMS of a zero branch is huge: no 0 * inf in half precision
        scale = block.branch_scales()[0].to(dtype)
        assert torch.equal(scale(torch.zeros(1, 2, 2, dim, dtype=dtype)), torch.zeros(1, 2, 2, dim, dtype=dtype))
        assert scale(torch.full((1, 2, 2, dim), 1e-7, dtype=dtype)).isfinite().all()
