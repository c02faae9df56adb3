"""CUDA paths: the Triton kernels (the default), mamba-ssm / causal-conv1d when installed, and the chunked PyTorch
scan, against the CPU path; both tiny models on a GPU.

Skipped without a GPU (CI has none); ``scripts/gpu_check.sh`` runs this file (and tests/test_ops_triton.py, whose
kernel tests then run compiled on the GPU) and, with ``--with-mamba-ssm``, builds the ``cuda`` extra first.
"""

from __future__ import annotations

import os

import pytest
import torch

from modeling_rrg_mamba.layers import MambaMixer
from modeling_rrg_mamba.ops import (
    GRID_DIRECTIONS,
    causal_conv1d,
    causal_conv1d_kernels,
    causal_conv1d_update,
    mamba_ssm_kernels,
    scan_routes,
    selective_scan,
    selective_state_update,
    set_selective_scan_backend,
    triton_kernels,
)

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)"),
]


def scan_inputs(batch=2, dim=16, state=8, length=96, groups=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(batch, dim, length, generator=generator),
        delta=torch.rand(batch, dim, length, generator=generator) * 0.5,
        A=-torch.rand(dim, state, generator=generator) - 0.5,
        B=torch.randn(batch, groups, state, length, generator=generator),
        C=torch.randn(batch, groups, state, length, generator=generator),
        D=torch.randn(dim, generator=generator),
        z=torch.randn(batch, dim, length, generator=generator),
        delta_bias=torch.randn(dim, generator=generator) * 0.1,
    )


@pytest.mark.skipif(
    os.environ.get("RRG_MAMBA_REQUIRE_CUDA_KERNELS") != "1", reason="only where the cuda extra is installed"
)
def test_cuda_kernels_are_the_ones_dispatched_to():
    """scripts/gpu_check.sh installs the cuda extra: then the tests below must exercise the kernels, not the
    PyTorch path on the GPU."""
    assert mamba_ssm_kernels() is not None, "mamba-ssm does not import: the GPU tests would only run the PyTorch path"
    assert causal_conv1d_kernels() is not None, "causal-conv1d does not import"


def test_selective_scan_cuda_matches_cpu_forward_and_backward():
    cpu_inputs = {name: value.requires_grad_() for name, value in scan_inputs().items()}
    gpu_inputs = {name: value.detach().cuda().requires_grad_() for name, value in cpu_inputs.items()}
    y_cpu, last_cpu = selective_scan(**cpu_inputs, delta_softplus=True, return_last_state=True)
    y_gpu, last_gpu = selective_scan(**gpu_inputs, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(y_gpu.cpu(), y_cpu, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(last_gpu.cpu(), last_cpu, rtol=1e-3, atol=1e-3)
    weights = torch.randn_like(y_cpu)
    grads_cpu = torch.autograd.grad((y_cpu * weights).sum(), list(cpu_inputs.values()))
    grads_gpu = torch.autograd.grad((y_gpu * weights.cuda()).sum(), list(gpu_inputs.values()))
    for name, grad_gpu, grad_cpu in zip(cpu_inputs, grads_gpu, grads_cpu):
        torch.testing.assert_close(
            grad_gpu.cpu(), grad_cpu, rtol=2e-3, atol=2e-3, msg=lambda m, name=name: f"d/d{name}: {m}"
        )


def test_selective_state_update_cuda_matches_cpu():
    generator = torch.Generator().manual_seed(1)
    batch, dim, state = 2, 16, 8
    tensors = dict(
        x=torch.randn(batch, dim, generator=generator),
        dt=torch.rand(batch, dim, generator=generator),
        A=-torch.rand(dim, state, generator=generator),
        B=torch.randn(batch, state, generator=generator),
        C=torch.randn(batch, state, generator=generator),
        D=torch.randn(dim, generator=generator),
        z=torch.randn(batch, dim, generator=generator),
        dt_bias=torch.randn(dim, generator=generator) * 0.1,
    )
    state_cpu = torch.randn(batch, dim, state, generator=generator)
    state_gpu = state_cpu.cuda()
    out_cpu = selective_state_update(state_cpu, **tensors, dt_softplus=True)
    out_gpu = selective_state_update(state_gpu, **{k: v.cuda() for k, v in tensors.items()}, dt_softplus=True)
    torch.testing.assert_close(out_gpu.cpu(), out_cpu, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(state_gpu.cpu(), state_cpu, rtol=1e-3, atol=1e-3)


def test_causal_conv1d_and_update_cuda_match_cpu():
    generator = torch.Generator().manual_seed(2)
    x, weight, bias = (
        torch.randn(2, 8, 40, generator=generator),
        torch.randn(8, 4, generator=generator),
        torch.randn(8),
    )
    torch.testing.assert_close(
        causal_conv1d(x.cuda(), weight.cuda(), bias.cuda(), activation="silu").cpu(),
        causal_conv1d(x, weight, bias, activation="silu"),
        rtol=1e-4,
        atol=1e-4,
    )
    conv_state = torch.randn(2, 8, 3, generator=generator)
    gpu_state = conv_state.cuda()
    step = torch.randn(2, 8, generator=generator)
    expected = causal_conv1d_update(step, conv_state, weight, bias, activation="silu")
    actual = causal_conv1d_update(step.cuda(), gpu_state, weight.cuda(), bias.cuda(), activation="silu")
    torch.testing.assert_close(actual.cpu(), expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu_state.cpu(), conv_state, rtol=1e-4, atol=1e-4)


def test_rrg_mamba_bf16_training_step_and_generate_on_gpu():
    from conftest import RRG_MAMBA_LABELS as LABELS
    from conftest import rrg_mamba_images as images
    from conftest import tiny_rrg_mamba as tiny_model

    model = tiny_model().cuda().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(pixel_values=images().cuda(), labels=LABELS.cuda()).loss
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    model.eval()
    cpu_model = tiny_model()
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    generated = model.generate(pixel_values=images().cuda(), num_beams=3, max_new_tokens=6)
    assert torch.equal(
        generated.cpu(), cpu_model.eval().generate(pixel_values=images(), num_beams=3, max_new_tokens=6)
    )


def test_emrrg_bf16_training_step_and_generate_on_gpu():
    from conftest import prompt_ids, randomize_gates
    from conftest import tiny_emrrg_config as tiny_config

    from modeling_rrg_mamba.emrrg import EMRRGForConditionalGeneration

    torch.manual_seed(0)
    config = tiny_config("llama")
    model = EMRRGForConditionalGeneration(config)
    randomize_gates(model)
    ids, pixels = prompt_ids(2, config.num_image_tokens), torch.randn(2, 3, 32, 32)
    cpu_ids = model.eval().generate(
        input_ids=ids, pixel_values=pixels, max_new_tokens=5, do_sample=False, pad_token_id=0
    )
    model = model.cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids.cuda(), pixel_values=pixels.cuda(), labels=ids.cuda()).loss
    loss.backward()
    assert torch.isfinite(loss)
    model.eval()
    gpu_ids = model.generate(
        input_ids=ids.cuda(), pixel_values=pixels.cuda(), max_new_tokens=5, do_sample=False, pad_token_id=0
    )
    assert torch.equal(gpu_ids.cpu(), cpu_ids)


def test_triton_route_scan_at_x_ray_mamba_size_matches_float64():
    """X-ray Mamba's four routes over 14x14 patches + the middle class token, bf16 inputs, many chunks and channel
    blocks: the compiled kernel against the float64 reference on the CPU, values and every gradient."""
    from modeling_rrg_mamba.ops.triton.selective_scan_routes import route_selective_scan, route_selective_scan_ref

    assert triton_kernels() is not None, "Triton does not import on this GPU machine"
    generator = torch.Generator().manual_seed(3)
    routes, length, batch, dim, state = scan_routes(GRID_DIRECTIONS, 197, (14, 14), 98), 197, 3, 96, 16
    cpu = dict(
        u=torch.randn(4, batch, length, dim, generator=generator),
        delta=torch.randn(4, batch, length, dim, generator=generator) * 0.5,
        A=-torch.rand(4, dim, state, generator=generator) * 4 - 0.1,
        B=torch.randn(4, batch, length, state, generator=generator),
        C=torch.randn(4, batch, length, state, generator=generator),
        D=torch.randn(4, dim, generator=generator),
        delta_bias=torch.randn(4, dim, generator=generator) * 0.1,
        z=torch.randn(batch, length, dim, generator=generator),
    )
    low = {k: (v if k in ("A", "D", "delta_bias") else v.bfloat16()) for k, v in cpu.items()}
    gpu = {k: v.cuda().requires_grad_() for k, v in low.items()}
    ref = {k: v.double().requires_grad_() for k, v in low.items()}
    out, last = route_selective_scan(**gpu, routes=scan_routes(GRID_DIRECTIONS, 197, (14, 14), 98, "cuda"), scale=0.25)
    out_ref, last_ref = route_selective_scan_ref(**ref, routes=routes, scale=0.25)
    torch.testing.assert_close(out.double().cpu(), out_ref, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(last.double().cpu(), last_ref, rtol=1e-4, atol=1e-4)
    weight = torch.randn(out_ref.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((out.double() * weight.cuda()).sum(), list(gpu.values()))
    grads_ref = torch.autograd.grad((out_ref * weight).sum(), list(ref.values()))
    for name, grad, grad_ref in zip(gpu, grads, grads_ref):
        scale = grad_ref.abs().max().item()
        assert (grad.double().cpu() - grad_ref).abs().max().item() <= 2e-2 * scale, name


def test_pytorch_fallback_on_the_gpu_keeps_memory_to_a_chunk():
    """Without Triton and mamba-ssm the GPU runs the chunked PyTorch scan: an X-ray-Mamba-size mixer at batch 32
    peaks far below one (L, batch, routes x dim, N) float32 buffer, which the old path allocated several times."""
    torch.manual_seed(0)
    mixer = MambaMixer(384, d_state=16, expand=1, directions=GRID_DIRECTIONS).cuda()
    x = torch.randn(32, 197, 384, device="cuda")
    full_buffer = 197 * 32 * 4 * 384 * 16 * 4
    set_selective_scan_backend("reference")
    try:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            mixer(x, grid=(14, 14), cls_position=98)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - start
    finally:
        set_selective_scan_backend(None)
    assert peak < full_buffer / 2, f"peak {peak / 2**20:.0f} MiB vs one full buffer {full_buffer / 2**20:.0f} MiB"
