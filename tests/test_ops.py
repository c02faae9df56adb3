"""Selective scan and causal conv1d: parity with sequential references, step forms, errors."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import make_inputs, reference_scan, relative_error

from modeling_rrg_mamba.ops import causal_conv1d, causal_conv1d_update, selective_scan, selective_state_update

OPTIONS = list(itertools.product([False, True], repeat=4))


@pytest.mark.parametrize("groups", [None, 1, 3])
@pytest.mark.parametrize("use_D,use_z,use_bias,softplus", OPTIONS)
def test_scan_matches_sequential_reference_values_and_gradients(groups, use_D, use_z, use_bias, softplus):
    inputs = make_inputs(groups=groups)
    optional = {"D": use_D, "z": use_z, "delta_bias": use_bias}
    args = {k: v.requires_grad_() for k, v in inputs.items() if optional.get(k, True)}
    y, last = selective_scan(**args, delta_softplus=softplus, return_last_state=True)
    y_ref, last_ref = reference_scan(**args, delta_softplus=softplus)
    assert y.shape == y_ref.shape and last.shape == last_ref.shape
    assert relative_error(y, y_ref) < 1e-5
    assert relative_error(last, last_ref) < 1e-5

    g = torch.Generator().manual_seed(1)
    grad_y, grad_last = (
        torch.randn(y.shape, generator=g, dtype=y.dtype),
        torch.randn(last.shape, generator=g, dtype=last.dtype),
    )
    names = list(args)
    grads = torch.autograd.grad((y * grad_y).sum() + (last * grad_last).sum(), [args[n] for n in names])
    grads_ref = torch.autograd.grad((y_ref * grad_y).sum() + (last_ref * grad_last).sum(), [args[n] for n in names])
    for name, grad, grad_ref in zip(names, grads, grads_ref):
        assert relative_error(grad, grad_ref) < 1e-5, name


def test_scan_without_last_state_returns_only_output():
    inputs = make_inputs()
    y = selective_scan(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])
    assert isinstance(y, torch.Tensor)
    assert (
        relative_error(y, reference_scan(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"])[0])
        < 1e-12
    )


@pytest.mark.parametrize("length", [1, 2, 257])
def test_scan_any_length_float32(length):
    inputs = make_inputs(length=length, dtype=torch.float32, groups=2)
    y = selective_scan(**inputs, delta_softplus=True)
    y_ref, _ = reference_scan(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    assert y.dtype == torch.float32
    assert relative_error(y, y_ref) < 1e-5


def test_scan_gradcheck():
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch=1, dim=2, d_state=2, length=5, groups=2).items()}
    names = list(inputs)
    assert torch.autograd.gradcheck(
        lambda *xs: selective_scan(**dict(zip(names, xs)), delta_softplus=True, return_last_state=True),
        [inputs[n] for n in names],
    )


def test_scan_bfloat16_keeps_dtype_and_backpropagates():
    inputs = make_inputs(dtype=torch.float32)
    bf16 = {k: v.bfloat16().requires_grad_() for k, v in inputs.items()}
    y = selective_scan(**bf16, delta_softplus=True)
    y_ref, _ = reference_scan(**{k: v.double() for k, v in bf16.items()}, delta_softplus=True)
    assert y.dtype == torch.bfloat16
    assert relative_error(y, y_ref) < 2e-2  # bf16 output rounding; the scan itself runs in float32
    y.float().sum().backward()
    assert all(
        t.grad is not None and t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad.float()).all()
        for t in bf16.values()
    )


@pytest.mark.parametrize("groups", [None, 2])
def test_state_update_reproduces_full_scan_token_by_token(groups):
    inputs = make_inputs(groups=groups)
    y_full, last_full = selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    state = torch.zeros_like(last_full)
    steps = []
    for t in range(inputs["u"].shape[-1]):
        steps.append(
            selective_state_update(
                state,
                inputs["u"][..., t],
                inputs["delta"][..., t],
                inputs["A"],
                inputs["B"][..., t],
                inputs["C"][..., t],
                D=inputs["D"],
                z=inputs["z"][..., t],
                dt_bias=inputs["delta_bias"],
                dt_softplus=True,
            )
        )
    assert relative_error(torch.stack(steps, -1), y_full) < 1e-10
    assert relative_error(state, last_full) < 1e-10


def reference_conv(x, weight, bias):
    width = weight.shape[1]
    padded = F.pad(x, (width - 1, 0))
    out = torch.stack([(padded[..., t : t + width] * weight).sum(-1) for t in range(x.shape[-1])], dim=-1)
    return out if bias is None else out + bias[:, None]


@pytest.mark.parametrize(
    "width,length,use_bias,activation", [(4, 9, True, "silu"), (3, 2, False, None), (1, 5, True, "swish")]
)
def test_causal_conv1d_matches_reference_and_steps(width, length, use_bias, activation):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, length, generator=g, dtype=torch.float64)
    weight = torch.randn(5, width, generator=g, dtype=torch.float64)
    bias = torch.randn(5, generator=g, dtype=torch.float64) if use_bias else None
    expected = reference_conv(x, weight, bias)
    if activation:
        expected = F.silu(expected)
    y, final = causal_conv1d(x, weight, bias, activation=activation, return_final_states=True)
    torch.testing.assert_close(y, expected)
    assert final.shape == (2, 5, width - 1)

    state = torch.zeros(2, 5, width - 1, dtype=torch.float64)
    steps = torch.stack([causal_conv1d_update(x[..., t], state, weight, bias, activation) for t in range(length)], -1)
    torch.testing.assert_close(steps, expected)
    torch.testing.assert_close(state, final)


def test_causal_conv1d_final_state_continues_a_prefix():
    g = torch.Generator().manual_seed(2)
    x, weight = torch.randn(1, 3, 10, generator=g), torch.randn(3, 4, generator=g)
    full = causal_conv1d(x, weight)
    _, state = causal_conv1d(x[..., :6], weight, return_final_states=True)
    rest = torch.stack([causal_conv1d_update(x[..., t], state, weight) for t in range(6, 10)], -1)
    torch.testing.assert_close(rest, full[..., 6:])


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(u=torch.randn(2, 6)), r"u: expected 3 dimensions .*got shape \(2, 6\)"),
        (dict(delta=torch.randn(2, 6, 10)), r"delta: expected shape \(2, 6, 11\).*got shape \(2, 6, 10\)"),
        (dict(A=torch.randn(5, 4)), r"A: expected shape \(6, 4\).*got shape \(5, 4\)"),
        (dict(B=torch.randn(2, 4, 12)), r"B: expected shape \(2, 4, 11\).*got shape \(2, 4, 12\)"),
        (dict(C=torch.randn(2, 4, 4, 11)), r"C: 4 groups do not divide dim 6"),
        (
            dict(u=torch.ones(2, 6, 11, dtype=torch.int64)),
            r"u: expected a floating-point tensor, got dtype torch.int64",
        ),
        (dict(D=torch.randn(7)), r"D: expected shape \(6,\).*got shape \(7,\)"),
        (dict(z=torch.randn(2, 6, 3)), r"z: expected shape \(2, 6, 11\)"),
    ],
)
def test_scan_rejects_bad_input_naming_argument_and_shapes(change, message):
    inputs = {**make_inputs(dtype=torch.float32), **change}
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


def test_step_and_conv_reject_bad_input():
    with pytest.raises(ValueError, match=r"x: expected shape \(2, 6\).*got shape \(2, 5\)"):
        selective_state_update(
            torch.zeros(2, 6, 4),
            torch.zeros(2, 5),
            torch.zeros(2, 6),
            torch.zeros(6, 4),
            torch.zeros(2, 4),
            torch.zeros(2, 4),
        )
    with pytest.raises(ValueError, match=r"x: channel dim 4 .*does not match weight \(5, 3\)"):
        causal_conv1d(torch.zeros(1, 4, 8), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"conv_state: expected shape \(1, 5, 2\)"):
        causal_conv1d_update(torch.zeros(1, 5), torch.zeros(1, 5, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"activation: expected one of"):
        causal_conv1d(torch.zeros(1, 5, 8), torch.zeros(5, 3), activation="relu")
    with pytest.raises(ValueError, match=r"weight: expected a floating-point tensor"):
        causal_conv1d(torch.zeros(1, 5, 8), torch.zeros(5, 3, dtype=torch.int32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA kernels need a GPU")
def test_cuda_dispatch_matches_cpu_path():
    from modeling_rrg_mamba.ops import mamba_ssm_kernels

    inputs = make_inputs(dtype=torch.float32, groups=2, length=64)
    cpu = selective_scan(**inputs, delta_softplus=True)
    gpu = selective_scan(**{k: v.cuda() for k, v in inputs.items()}, delta_softplus=True)
    assert relative_error(gpu.cpu(), cpu) < 1e-4
    x, w = torch.randn(2, 8, 32), torch.randn(8, 4)
    torch.testing.assert_close(
        causal_conv1d(x.cuda(), w.cuda(), activation="silu").cpu(),
        causal_conv1d(x, w, activation="silu"),
        rtol=1e-4,
        atol=1e-5,
    )
    if mamba_ssm_kernels() is None:
        pytest.skip("mamba-ssm not installed: only the PyTorch path ran on the GPU")


def test_scan_under_cpu_autocast_matches_float32():
    inputs = {k: v.requires_grad_() for k, v in make_inputs(dtype=torch.float32, groups=2).items()}
    expected = selective_scan(**inputs, delta_softplus=True)
    grads_expected = torch.autograd.grad(expected.sum(), list(inputs.values()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = selective_scan(**inputs, delta_softplus=True)
        grads = torch.autograd.grad(y.sum(), list(inputs.values()))
    torch.testing.assert_close(y, expected)
    for grad, grad_expected in zip(grads, grads_expected):
        torch.testing.assert_close(grad, grad_expected)
