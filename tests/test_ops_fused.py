"""The fused CPU selective scan against the reference pure-PyTorch scan and the step-by-step recurrence; backend
selection, fallback and kernel cache."""

import itertools
import sys
import warnings

import pytest
import torch
from conftest import make_inputs, reference_scan, relative_error

from modeling_rrg_mamba.ops import (
    _fused_scan_cpu,
    causal_conv1d,
    selective_scan,
    selective_scan_backend,
    set_selective_scan_backend,
)

scan_module = sys.modules["modeling_rrg_mamba.ops.selective_scan"]
BACKENDS = ["fused", "reference"]


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    set_selective_scan_backend(None)


def fused_available() -> bool:
    return _fused_scan_cpu.load_library()[0] is not None


needs_fused = pytest.mark.skipif(not fused_available(), reason="no C compiler: the fused scan cannot be built here")


def run(backend, inputs, **kwargs):
    set_selective_scan_backend(backend)
    try:
        return selective_scan(**inputs, **kwargs)
    finally:
        set_selective_scan_backend(None)


def values_and_grads(backend, inputs, seed=1, **kwargs):
    """Output, last state and the gradients of a random linear function of both w.r.t. every input."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}
    y, last = run(backend, leaves, return_last_state=True, **kwargs)
    g = torch.Generator().manual_seed(seed)
    loss = (y * torch.randn(y.shape, generator=g, dtype=y.dtype)).sum() + (
        last * torch.randn(last.shape, generator=g, dtype=last.dtype)
    ).sum()
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return y, last, dict(zip(leaves, grads))


def assert_paths_agree(inputs, tol, **kwargs):
    y_f, last_f, grads_f = values_and_grads("fused", inputs, **kwargs)
    y_r, last_r, grads_r = values_and_grads("reference", inputs, **kwargs)
    assert (
        y_f.dtype == y_r.dtype
        and y_f.shape == y_r.shape
        and last_f.shape == last_r.shape
        and last_f.dtype == last_r.dtype
    )
    assert relative_error(y_f, y_r) < tol
    assert relative_error(last_f, last_r) < tol
    for name in grads_r:
        assert grads_f[name].shape == grads_r[name].shape and grads_f[name].dtype == grads_r[name].dtype, name
        assert relative_error(grads_f[name], grads_r[name]) < tol, name


BC_LAYOUTS = {
    "ungrouped": dict(groups=None),
    "one group": dict(groups=1),
    "three groups": dict(groups=3),
}


@needs_fused
@pytest.mark.parametrize("layout", list(BC_LAYOUTS))
@pytest.mark.parametrize("use_D,use_z,use_bias,softplus", list(itertools.product([False, True], repeat=4)))
def test_fused_matches_reference_float64(layout, use_D, use_z, use_bias, softplus):
    inputs = make_inputs(**BC_LAYOUTS[layout])
    optional = {"D": use_D, "z": use_z, "delta_bias": use_bias}
    inputs = {k: v for k, v in inputs.items() if optional.get(k, True)}
    assert_paths_agree(inputs, 1e-12, delta_softplus=softplus)


@needs_fused
@pytest.mark.parametrize("b_groups,c_groups", [(None, 3), (3, None), (None, 1), (1, None)])
def test_fused_mixed_bc_shapes(b_groups, c_groups):
    """B and C may differ in form (the checks accept one 3-D and the other 4-D; two 4-D ones have equal groups)."""
    inputs = make_inputs(groups=3)
    other = make_inputs(groups=None)
    for name, groups in (("B", b_groups), ("C", c_groups)):
        if groups is None:
            inputs[name] = other[name]
        elif groups == 1:
            inputs[name] = other[name][:, None]
    assert_paths_agree(inputs, 1e-12, delta_softplus=True)
    y_ref, last_ref = reference_like(inputs)
    y, last = run("fused", inputs, delta_softplus=True, return_last_state=True)
    assert relative_error(y, y_ref) < 1e-12 and relative_error(last, last_ref) < 1e-12


def reference_like(inputs):
    """The step-by-step recurrence with B and C brought to the same group count first."""
    B, C = inputs["B"], inputs["C"]
    groups = max(t.shape[1] if t.ndim == 4 else 1 for t in (B, C))
    B = (B if B.ndim == 4 else B[:, None]).expand(-1, groups, -1, -1)
    C = (C if C.ndim == 4 else C[:, None]).expand(-1, groups, -1, -1)
    return reference_scan(**{**inputs, "B": B, "C": C}, delta_softplus=True)


@needs_fused
@pytest.mark.parametrize("length", [1, 2, 3, 7, 65, 200])
@pytest.mark.parametrize("d_state", [1, 5, 16, 17])
def test_fused_odd_lengths_and_state_sizes_float32(length, d_state):
    inputs = make_inputs(length=length, d_state=d_state, dtype=torch.float32, groups=2)
    assert_paths_agree(inputs, 2e-5, delta_softplus=True)
    y_ref, last_ref = reference_scan(**{k: v.double() for k, v in inputs.items()}, delta_softplus=True)
    y, last = run("fused", inputs, delta_softplus=True, return_last_state=True)
    assert y.dtype == torch.float32 and last.dtype == torch.float32
    assert relative_error(y, y_ref) < 1e-5 and relative_error(last, last_ref) < 1e-5


@needs_fused
@pytest.mark.parametrize("groups", [None, 2])
def test_fused_gradcheck_float64_all_options(groups):
    inputs = {
        k: v.requires_grad_() for k, v in make_inputs(batch=2, dim=4, d_state=3, length=6, groups=groups).items()
    }
    names = list(inputs)
    set_selective_scan_backend("fused")
    for softplus in (False, True):
        assert torch.autograd.gradcheck(
            lambda *xs, softplus=softplus: selective_scan(
                **dict(zip(names, xs)), delta_softplus=softplus, return_last_state=True
            ),
            [inputs[n] for n in names],
        )


@needs_fused
def test_fused_gradcheck_length_one_and_output_only():
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch=1, dim=2, d_state=2, length=1, groups=1).items()}
    names = list(inputs)
    set_selective_scan_backend("fused")
    assert torch.autograd.gradcheck(
        lambda *xs: selective_scan(**dict(zip(names, xs)), delta_softplus=True), [inputs[n] for n in names]
    )
    # only the last state reaches the loss: the output's gradient is None in backward
    assert torch.autograd.gradcheck(
        lambda *xs: selective_scan(**dict(zip(names, xs)), return_last_state=True)[1], [inputs[n] for n in names]
    )


@needs_fused
def test_fused_non_contiguous_inputs():
    base = make_inputs(dim=6, length=9, groups=3)
    # the same values, laid out as transposed / strided views
    inputs = {}
    for name, tensor in base.items():
        if tensor.ndim >= 2:
            inputs[name] = tensor.transpose(-1, -2).contiguous().transpose(-1, -2)
        else:
            inputs[name] = torch.stack([tensor, tensor], -1)[:, 0]
        assert not inputs[name].is_contiguous()
        assert torch.equal(inputs[name], tensor)
    y_f, last_f, grads_f = values_and_grads("fused", inputs, delta_softplus=True)
    y_r, last_r, grads_r = values_and_grads("reference", base, delta_softplus=True)
    assert relative_error(y_f, y_r) < 1e-12 and relative_error(last_f, last_r) < 1e-12
    for name in grads_r:
        assert relative_error(grads_f[name], grads_r[name]) < 1e-12, name


@needs_fused
def test_fused_bfloat16_like_reference():
    inputs = {k: v.bfloat16() for k, v in make_inputs(dtype=torch.float32, groups=2).items()}
    y_f, last_f, grads_f = values_and_grads("fused", inputs, delta_softplus=True)
    y_r, last_r, grads_r = values_and_grads("reference", inputs, delta_softplus=True)
    assert y_f.dtype == torch.bfloat16 and last_f.dtype == torch.float32
    assert relative_error(y_f, y_r) < 1e-2 and relative_error(last_f, last_r) < 1e-5
    for name in grads_r:
        assert grads_f[name].dtype == torch.bfloat16
        assert relative_error(grads_f[name], grads_r[name]) < 2e-2, name


@needs_fused
def test_fused_result_does_not_depend_on_thread_count():
    inputs = make_inputs(batch=3, dim=12, length=33, groups=2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = values_and_grads("fused", inputs, delta_softplus=True)
        torch.set_num_threads(max(2, threads))
        many = values_and_grads("fused", inputs, delta_softplus=True)
    finally:
        torch.set_num_threads(threads)
    assert relative_error(one[0], many[0]) == 0 and relative_error(one[1], many[1]) == 0
    for name in one[2]:
        assert relative_error(one[2][name], many[2][name]) < 1e-13, name


@needs_fused
def test_fused_is_the_default_on_cpu(monkeypatch):
    monkeypatch.delenv("RRG_MAMBA_SELECTIVE_SCAN", raising=False)
    assert selective_scan_backend() == "fused"
    called = []
    original = _fused_scan_cpu.SelectiveScanFused.apply
    monkeypatch.setattr(_fused_scan_cpu.SelectiveScanFused, "apply", lambda *a: called.append(1) or original(*a))
    selective_scan(**make_inputs())
    assert called


def test_environment_variable_chooses_backend(monkeypatch):
    monkeypatch.setenv("RRG_MAMBA_SELECTIVE_SCAN", "reference")
    assert selective_scan_backend() == "reference"
    called = []
    monkeypatch.setattr(_fused_scan_cpu.SelectiveScanFused, "apply", lambda *a: called.append(1))
    inputs = make_inputs()
    y = selective_scan(**inputs)
    assert not called and relative_error(y, reference_scan(**inputs)[0]) < 1e-12
    monkeypatch.setenv("RRG_MAMBA_SELECTIVE_SCAN", "fastest")
    with pytest.raises(ValueError, match="RRG_MAMBA_SELECTIVE_SCAN: expected one of"):
        selective_scan_backend()
    with pytest.raises(ValueError, match="backend: expected one of"):
        set_selective_scan_backend("numba")


def test_fallback_when_the_fused_kernel_is_unavailable(monkeypatch):
    """A machine without a C compiler: the reference path runs, with a single warning per process."""
    monkeypatch.setattr(_fused_scan_cpu, "_compiler", lambda: None)
    monkeypatch.setattr(_fused_scan_cpu, "_state", {})
    monkeypatch.setattr(scan_module, "_warned_fallback", False)
    monkeypatch.delenv("RRG_MAMBA_SELECTIVE_SCAN", raising=False)
    inputs = make_inputs(groups=3)
    with pytest.warns(RuntimeWarning, match="no C compiler found.*falls back to the slower pure-PyTorch path"):
        y, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = reference_scan(**inputs, delta_softplus=True)
    assert relative_error(y, y_ref) < 1e-12 and relative_error(last, last_ref) < 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the notice is given once per process
        selective_scan(**inputs)
        assert selective_scan_backend() == "reference"
    set_selective_scan_backend("fused")
    with pytest.raises(RuntimeError, match="fused CPU kernel was requested but is unavailable: no C compiler"):
        selective_scan(**inputs)


def test_failed_build_falls_back(monkeypatch, tmp_path):
    monkeypatch.setenv("RRG_MAMBA_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(_fused_scan_cpu, "_compile", lambda *args: "error: simulated compiler failure")
    monkeypatch.setattr(_fused_scan_cpu, "_cpu_fingerprint", lambda: "simulated CPU for a fresh cache key")
    lib, reason = _fused_scan_cpu._build_and_load()
    assert lib is None and "simulated compiler failure" in reason


@needs_fused
def test_kernel_cache_is_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("RRG_MAMBA_KERNEL_CACHE", str(tmp_path))
    lib, reason = _fused_scan_cpu._build_and_load()
    assert lib is not None, reason
    assert len(list(tmp_path.glob("selective_scan_*"))) == 1
    monkeypatch.setattr(
        _fused_scan_cpu, "_compile", lambda *args: pytest.fail("compiled again instead of loading the cache")
    )
    lib, reason = _fused_scan_cpu._build_and_load()
    assert lib is not None, reason


@needs_fused
def test_fused_under_autocast_and_no_grad():
    inputs = make_inputs(dtype=torch.float32, groups=2)
    expected = run("reference", inputs, delta_softplus=True)
    with torch.no_grad():
        assert relative_error(run("fused", inputs, delta_softplus=True), expected) < 1e-6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert relative_error(run("fused", inputs, delta_softplus=True), expected) < 1e-6


@needs_fused
@pytest.mark.parametrize(
    ("width", "length", "use_bias", "activation"),
    [(4, 197, True, "silu"), (4, 2, False, "silu"), (3, 9, True, None), (5, 1, False, None)],
)
def test_fused_causal_conv1d_matches_pytorch(width, length, use_bias, activation):
    """The C convolution (+ SiLU, its derivative fused into the backward) against PyTorch's conv1d, float64."""
    torch.manual_seed(0)
    leaves = [torch.randn(2, 6, length), torch.randn(6, width)] + ([torch.randn(6)] if use_bias else [])
    leaves = [t.double().requires_grad_() for t in leaves]
    grad = torch.randn(2, 6, length, dtype=torch.float64)
    results = []
    for backend in BACKENDS:
        set_selective_scan_backend(backend)
        y = causal_conv1d(leaves[0], leaves[1], leaves[2] if use_bias else None, activation=activation)
        results.append([y, *torch.autograd.grad(y, leaves, grad)])
    for fused, reference in zip(*results):
        torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    set_selective_scan_backend("fused")
    assert torch.autograd.gradcheck(lambda *t: causal_conv1d(*t, activation=activation), leaves)


def test_reference_scan_in_chunks_matches_the_sequential_recurrence(monkeypatch):
    """The reference (the GPU fallback) walks the sequence a chunk at a time; chunk boundaries change nothing."""
    monkeypatch.setattr(scan_module, "_REFERENCE_CHUNK_ELEMENTS", 1)  # the shortest chunks: 16 steps
    inputs = make_inputs(length=40, groups=2)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    y, last = run("reference", leaves, delta_softplus=True, return_last_state=True)
    y_ref, last_ref = reference_scan(**leaves, delta_softplus=True)
    assert relative_error(y, y_ref) < 1e-10 and relative_error(last, last_ref) < 1e-10
    grads = torch.autograd.grad((y * y_ref.detach()).sum() + last.sum(), list(leaves.values()))
    grads_ref = torch.autograd.grad((y_ref * y_ref.detach()).sum() + last_ref.sum(), list(leaves.values()))
    for name, grad, grad_ref in zip(leaves, grads, grads_ref):
        assert relative_error(grad, grad_ref) < 1e-10, name


def test_reference_scan_memory_is_a_chunk_not_the_sequence(monkeypatch):
    """Saved for backward: the inputs and one state per chunk start, nothing of size (L, batch, dim, N)."""
    monkeypatch.setattr(scan_module, "_REFERENCE_CHUNK_ELEMENTS", 1)
    batch, dim, d_state, length = 2, 6, 4, 64
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch, dim, d_state, length).items()}
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        run("reference", inputs, delta_softplus=True)
    assert max(sizes) < length * batch * dim * d_state / 2
    assert max(sizes) == batch * dim * length  # u or delta, time-major
