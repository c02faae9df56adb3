"""The Triton kernels (multi-route selective scan, per-route causal convolution) against their float64 references,
every gradient, every route set; the paths that dispatch to them; and their compilation for a Hopper GPU.

Without a GPU the kernels run under Triton's interpreter (``TRITON_INTERPRET=1``, set by conftest.py before they are
imported): small shapes, the same kernel code. On a GPU machine (scripts/gpu_check.sh) the same tests run compiled,
on CUDA tensors. ``test_kernels_compile_for_hopper`` compiles every kernel variant to a cubin for sm_90 on any
machine (Triton's compiler and ptxas need no GPU), so code that only the interpreter accepts fails here too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import (
    RRG_MAMBA_LABELS,
    make_inputs,
    reference_scan,
    relative_error,
    rrg_mamba_images,
    tiny_rrg_mamba,
)

from modeling_rrg_mamba.layers import SS2D, MambaMixer
from modeling_rrg_mamba.ops import (
    GRID_DIRECTIONS,
    multi_route_selective_scan,
    scan_order,
    scan_routes,
    selective_scan,
    selective_scan_backend,
    set_selective_scan_backend,
    triton_kernels,
)

KERNELS = triton_kernels()
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = pytest.mark.skipif(
    KERNELS is None or not (torch.cuda.is_available() or KERNELS.interpreted),
    reason="needs Triton, on a GPU or under its interpreter (TRITON_INTERPRET=1)",
)
scan_module = sys.modules["modeling_rrg_mamba.ops.selective_scan"]
if KERNELS is not None:
    from modeling_rrg_mamba.ops.triton import route_index
    from modeling_rrg_mamba.ops.triton.causal_conv1d_routes import route_causal_conv1d, route_causal_conv1d_ref
    from modeling_rrg_mamba.ops.triton.selective_scan_routes import route_selective_scan, route_selective_scan_ref

# (directions, grid, class-token position, length): 1-D routes, VMamba's four grid routes, Vim's middle class
# token, a class token elsewhere, a grid that is not square
ROUTE_SETS = {
    "forward": (("forward",), None, None, 11),
    "bidirectional": (("forward", "backward"), None, None, 13),
    "grid": (GRID_DIRECTIONS, (3, 4), None, 12),
    "grid+middle_cls": (GRID_DIRECTIONS, (3, 4), 6, 13),
    "grid+first_cls": (("col", "row_reversed"), (2, 5), 0, 11),
    "tall_grid+cls": (GRID_DIRECTIONS, (5, 2), 5, 11),
}


@pytest.fixture(autouse=True)
def _reset_backend():
    yield
    set_selective_scan_backend(None)


def routes_of(name: str):
    directions, grid, cls_position, length = ROUTE_SETS[name]
    return scan_routes(directions, length, grid, cls_position, device=DEVICE), length


def scan_tensors(routes, length, batch=2, dim=6, d_state=4, dtype=torch.float64, seed=0, token_order=False):
    g = torch.Generator().manual_seed(seed)
    K = len(routes.directions)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(DEVICE, dtype)

    u = randn(1 if token_order else K, batch, length, dim)
    return dict(
        u=u.expand(K, -1, -1, -1) if token_order else u,
        delta=randn(K, batch, length, dim, scale=0.5),
        A=(-torch.rand(K, dim, d_state, generator=g, dtype=torch.float64) * 2 - 0.2).to(DEVICE),
        B=randn(K, batch, length, d_state),
        C=randn(K, batch, length, d_state),
        D=randn(K, dim),
        delta_bias=randn(K, dim, scale=0.1),
    )


def grads_of(function, tensors: dict, weights: list) -> tuple[list, dict]:
    """Outputs of ``function`` and the gradients of ``sum(output * weight)`` w.r.t. every tensor."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in tensors.items()}
    outputs = function(**leaves)
    loss = sum((out.double() * w).sum() for out, w in zip(outputs, weights) if w is not None)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    return [out.detach() for out in outputs], dict(zip(leaves, grads))


def assert_matches_reference(kernel, reference, tensors: dict, tol: float, with_last=True, **settings):
    with torch.no_grad():
        expected = reference(**tensors, **settings)
    g = torch.Generator().manual_seed(7)
    weights = [torch.randn(e.shape, generator=g, dtype=torch.float64).to(DEVICE) for e in expected]
    if not with_last:
        weights[1] = None
    got, grads = grads_of(lambda **t: kernel(**t, **settings), tensors, weights)
    want, grads_ref = grads_of(lambda **t: reference(**t, **settings), tensors, weights)
    for name, a, b in (("out", got[0], want[0]), ("last state", got[1], want[1])):
        assert relative_error(a.double(), b.double()) < tol, name
    for name in grads:
        assert relative_error(grads[name].double(), grads_ref[name].double()) < tol, f"d/d{name}"


# ----------------------------------------------------------------------------------------------------------------
# Index maps
# ----------------------------------------------------------------------------------------------------------------

if KERNELS is not None:
    import triton
    import triton.language as tl

    @triton.jit
    def _index_maps_kernel(
        position_ptr,
        step_ptr,
        length,
        height,
        width,
        cls_position,
        TRANSPOSE: tl.constexpr,
        REVERSE: tl.constexpr,
        MIDDLE_CLS: tl.constexpr,
        BLOCK: tl.constexpr,
    ):
        t = tl.arange(0, BLOCK)
        mask = t < length
        safe = tl.minimum(t, length - 1)
        position = route_index.route_position(
            safe, length, height, width, cls_position, TRANSPOSE, REVERSE, MIDDLE_CLS
        )
        tl.store(position_ptr + t, position, mask=mask)
        tl.store(
            step_ptr + t,
            route_index.route_step(safe, length, height, width, cls_position, TRANSPOSE, REVERSE, MIDDLE_CLS),
            mask=mask,
        )


@pytest.mark.parametrize("name", list(ROUTE_SETS))
def test_index_maps_computed_in_the_kernel_are_the_scan_orders(name):
    routes, length = routes_of(name)
    directions, grid, cls_position, _ = ROUTE_SETS[name]
    height, width = grid if grid is not None else (1, length)
    for k, (transpose, reverse, middle_cls) in enumerate(zip(*(bits_of(f, len(directions)) for f in routes.flags()))):
        position = torch.empty(length, dtype=torch.int32, device=DEVICE)
        step = torch.empty_like(position)
        _index_maps_kernel[(1,)](
            position,
            step,
            length,
            height,
            width,
            -1 if cls_position is None else cls_position,
            transpose,
            reverse,
            middle_cls,
            triton.next_power_of_2(length),
        )
        expected = scan_order(directions[k], length, grid, cls_position)
        assert position.cpu().tolist() == expected.tolist(), directions[k]
        assert step.cpu().tolist() == torch.argsort(expected).tolist(), directions[k]


def bits_of(mask: int, count: int) -> list[int]:
    return [(mask >> k) & 1 for k in range(count)]


# ----------------------------------------------------------------------------------------------------------------
# The multi-route scan kernel
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ROUTE_SETS))
def test_route_scan_matches_reference_all_gradients(name):
    routes, length = routes_of(name)
    tensors = scan_tensors(routes, length)
    tensors["z"] = torch.randn(2, length, 6, dtype=torch.float64, device=DEVICE)
    assert_matches_reference(
        route_selective_scan, route_selective_scan_ref, tensors, 2e-5, routes=routes, scale=1 / len(routes.directions)
    )


@pytest.mark.parametrize(
    "use_z,use_D,use_bias,with_last",
    [(False, False, False, False), (True, False, True, False), (False, True, False, True)],
)
def test_route_scan_optional_inputs(use_z, use_D, use_bias, with_last):
    routes, length = routes_of("grid+middle_cls")
    tensors = scan_tensors(routes, length)
    if use_z:
        tensors["z"] = torch.randn(2, length, 6, dtype=torch.float64, device=DEVICE)
    if not use_D:
        del tensors["D"]
    if not use_bias:
        del tensors["delta_bias"]
    assert_matches_reference(route_selective_scan, route_selective_scan_ref, tensors, 2e-5, with_last, routes=routes)


def test_route_scan_without_softplus_and_longer_than_many_chunks():
    routes = scan_routes(("forward", "backward"), 37, device=DEVICE)
    tensors = scan_tensors(routes, 37, d_state=3)  # d_state not a power of two: a masked state axis
    tensors["delta"] = tensors["delta"].abs()
    assert_matches_reference(
        route_selective_scan, route_selective_scan_ref, tensors, 2e-5, routes=routes, delta_softplus=False
    )


@pytest.mark.parametrize("name", ["grid", "grid+middle_cls"])
def test_route_scan_inputs_in_token_order(name):
    """SS2D's form: one input for all routes, read in each route's order by the kernel's index maps."""
    routes, length = routes_of(name)
    tensors = scan_tensors(routes, length, token_order=True)  # delta, B, C in token order too, as x_proj(x) gives
    assert_matches_reference(
        route_selective_scan, route_selective_scan_ref, tensors, 2e-5, routes=routes, token_order=True
    )


def test_route_scan_unmerged_routes_with_their_own_gates():
    routes = scan_routes(("forward",) * 3, 9, device=DEVICE)
    tensors = scan_tensors(routes, 9)
    tensors["z"] = torch.randn(3, 2, 9, 6, dtype=torch.float64, device=DEVICE)
    assert_matches_reference(route_selective_scan, route_selective_scan_ref, tensors, 2e-5, routes=routes, merge=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_route_scan_half_precision_inputs_fp32_state(dtype):
    routes, length = routes_of("grid+middle_cls")
    tensors = scan_tensors(routes, length, dtype=dtype)
    for key in ("A", "D", "delta_bias"):
        tensors[key] = tensors[key].float()
    tensors["z"] = torch.randn(2, length, 6, device=DEVICE).to(dtype)
    out, last = route_selective_scan(**tensors, routes=routes, scale=0.25)
    assert out.dtype == dtype and last.dtype == torch.float32
    # The reference in float64 on the same rounded values: only the output's rounding to half precision differs.
    ref, ref_last = route_selective_scan_ref(**{k: v.double() for k, v in tensors.items()}, routes=routes, scale=0.25)
    assert relative_error(out.double(), ref) < 1e-2
    assert relative_error(last.double(), ref_last) < 1e-5
    grads = torch.autograd.grad(
        route_selective_scan(**{k: v.requires_grad_() for k, v in tensors.items()}, routes=routes)[0].float().sum(),
        list(tensors.values()),
    )
    assert all(g.dtype == t.dtype and torch.isfinite(g).all() for g, t in zip(grads, tensors.values()))


def test_route_scan_saves_only_its_inputs():
    """Backward by recomputation: nothing of size (routes, batch, L, dim, N) is kept between forward and backward."""
    routes, length = routes_of("grid+middle_cls")
    tensors = {k: v.requires_grad_() for k, v in scan_tensors(routes, length, dtype=torch.float32).items()}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        route_selective_scan(**tensors, routes=routes)
    inputs = {t.data_ptr() for t in tensors.values()}
    assert saved and all(t.data_ptr() in inputs for t in saved)


def test_route_scan_is_bitwise_repeatable():
    routes, length = routes_of("grid+middle_cls")
    tensors = {k: v.requires_grad_() for k, v in scan_tensors(routes, length, dtype=torch.float32).items()}
    first = torch.autograd.grad(route_selective_scan(**tensors, routes=routes)[0].sum(), list(tensors.values()))
    second = torch.autograd.grad(route_selective_scan(**tensors, routes=routes)[0].sum(), list(tensors.values()))
    assert all(torch.equal(a, b) for a, b in zip(first, second))


# ----------------------------------------------------------------------------------------------------------------
# The per-route causal convolution kernel
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,width,use_bias,activation",
    [
        ("forward", 4, True, "silu"),
        ("bidirectional", 3, False, None),
        ("grid", 2, True, "silu"),
        ("grid+middle_cls", 4, True, "silu"),
        ("tall_grid+cls", 4, False, "silu"),
    ],
)
def test_route_conv_matches_reference_all_gradients(name, width, use_bias, activation):
    routes, length = routes_of(name)
    K, dim = len(routes.directions), 5
    g = torch.Generator().manual_seed(3)
    tensors = dict(
        x=torch.randn(2, length, 2 * dim, generator=g, dtype=torch.float64).to(DEVICE)[..., :dim],  # a strided view
        weight=torch.randn(K, dim, width, generator=g, dtype=torch.float64).to(DEVICE),
        bias=torch.randn(K, dim, generator=g, dtype=torch.float64).to(DEVICE) if use_bias else None,
    )
    tensors = {k: v for k, v in tensors.items() if v is not None}

    def run(conv, **t):
        return (conv(t["x"], t["weight"], t.get("bias"), routes, activation),)

    g_out = torch.randn(K, 2, length, dim, dtype=torch.float64, device=DEVICE)
    got, grads = grads_of(lambda **t: run(route_causal_conv1d, **t), tensors, [g_out])
    want, grads_ref = grads_of(lambda **t: run(route_causal_conv1d_ref, **t), tensors, [g_out])
    assert relative_error(got[0], want[0]) < 1e-5
    for name_ in grads:
        assert relative_error(grads[name_], grads_ref[name_]) < 1e-5, f"d/d{name_}"


# ----------------------------------------------------------------------------------------------------------------
# The paths that dispatch to the kernels
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [None, 1, 3])
def test_selective_scan_on_the_triton_path_matches_the_sequential_reference(groups):
    inputs = {k: v.to(DEVICE).requires_grad_() for k, v in make_inputs(groups=groups).items()}
    y, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend="triton")
    y_ref, last_ref = reference_scan(**inputs, delta_softplus=True)
    assert relative_error(y, y_ref) < 2e-5 and relative_error(last.double(), last_ref) < 2e-5
    grads = torch.autograd.grad((y * y_ref.detach()).sum() + last.sum(), list(inputs.values()))
    grads_ref = torch.autograd.grad((y_ref * y_ref.detach()).sum() + last_ref.sum(), list(inputs.values()))
    for name, grad, grad_ref in zip(inputs, grads, grads_ref):
        assert relative_error(grad, grad_ref) < 2e-5, name


def mixer_outputs(module, x, backend, **kwargs):
    set_selective_scan_backend(backend)
    module.zero_grad()
    leaf = x.detach().clone().requires_grad_()
    out = module(leaf, **kwargs)
    (out * torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)).sum().backward()
    return out.detach(), leaf.grad, {n: p.grad.clone() for n, p in module.named_parameters()}


@pytest.mark.parametrize(
    "make_module,shape,kwargs",
    [
        (lambda: MambaMixer(8, d_state=4, directions=GRID_DIRECTIONS), (2, 13, 8), dict(grid=(3, 4), cls_position=6)),
        (lambda: MambaMixer(8, d_state=4, directions=("forward", "backward")), (2, 10, 8), {}),
        (lambda: SS2D(8, d_state=4), (2, 3, 4, 8), {}),
    ],
    ids=["xray_mamba_mixer", "vim_mixer", "ss2d"],
)
def test_layers_give_the_same_values_and_gradients_on_every_path(make_module, shape, kwargs):
    torch.manual_seed(0)
    module = make_module().to(DEVICE)
    x = torch.randn(*shape, device=DEVICE)
    triton_run = mixer_outputs(module, x, "triton", **kwargs)
    for other in ("reference", "fused") if DEVICE == "cpu" else ("reference",):
        expected = mixer_outputs(module, x, other, **kwargs)
        assert relative_error(triton_run[0], expected[0]) < 1e-5, other
        assert relative_error(triton_run[1], expected[1]) < 1e-5, other
        for name, grad in triton_run[2].items():
            assert relative_error(grad, expected[2][name]) < 1e-4, f"{other}: d/d{name}"


def test_xray_mamba_backbone_on_the_triton_path_matches_the_cpu_path():
    from modeling_rrg_mamba.emrrg import XrayMambaConfig, XrayMambaModel

    torch.manual_seed(0)
    config = XrayMambaConfig(
        hidden_size=16, num_hidden_layers=2, intermediate_size=32, image_size=48, patch_size=16, d_state=4
    )
    model = XrayMambaModel(config).to(DEVICE)
    pixels = torch.randn(2, 3, 48, 48, device=DEVICE)
    results = {}
    for backend in ("triton", "reference"):
        set_selective_scan_backend(backend)
        model.zero_grad()
        hidden = model(pixels).last_hidden_state
        hidden.square().mean().backward()
        results[backend] = hidden.detach(), model.embeddings.projection.weight.grad.clone()
    assert relative_error(results["triton"][0], results["reference"][0]) < 1e-5
    assert relative_error(results["triton"][1], results["reference"][1]) < 1e-4


def test_rrg_mamba_gdlm_on_the_triton_path_matches_the_cpu_path():
    """SS2D inside GDLM (four grid routes, token order, z gate) through the kernels: loss and extractor gradient."""
    results = {}
    for backend in ("triton", "reference"):
        model = tiny_rrg_mamba(gdlm_depth=2, selective_scan_backend=backend).train().to(DEVICE)
        randomize_gdlm_branches(model)
        loss = model(pixel_values=rrg_mamba_images().to(DEVICE), labels=RRG_MAMBA_LABELS.to(DEVICE)).loss
        loss.backward()
        stem = next(p for p in model.parameters() if p.grad is not None)
        results[backend] = loss.detach(), stem.grad.clone()
    assert relative_error(results["triton"][0], results["reference"][0]) < 1e-5
    assert relative_error(results["triton"][1], results["reference"][1]) < 1e-4


def randomize_gdlm_branches(model: torch.nn.Module) -> None:
    """GDLM's residual branches start at zero (the identity); give them weights so the scan shapes the output."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".gdlm." in f".{name}" and not parameter.any():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))


def xray_mamba(**overrides):
    from modeling_rrg_mamba.emrrg import XrayMambaConfig, XrayMambaModel

    tiny = dict(hidden_size=8, num_hidden_layers=1, intermediate_size=16, image_size=32, patch_size=16, d_state=2)
    model = XrayMambaModel(XrayMambaConfig(**tiny, **overrides)).to(DEVICE)
    return lambda: model(torch.randn(1, 3, 32, 32, device=DEVICE)).last_hidden_state


def rrg_mamba(**overrides):
    model = tiny_rrg_mamba(**overrides).to(DEVICE)
    return lambda: model(pixel_values=rrg_mamba_images().to(DEVICE), labels=RRG_MAMBA_LABELS.to(DEVICE)).logits


@pytest.mark.parametrize("build", [xray_mamba, rrg_mamba], ids=["xray_mamba", "rrg_mamba"])
def test_a_model_config_chooses_the_path_over_the_process_setting(monkeypatch, build):
    def no_triton(*args, **kwargs):
        raise AssertionError("the Triton path ran")

    monkeypatch.setattr(sys.modules["modeling_rrg_mamba.ops.multi_route_scan"], "_triton_scan", no_triton)
    set_selective_scan_backend("triton")
    assert torch.isfinite(build(selective_scan_backend="reference")()).all()
    with pytest.raises(AssertionError, match="the Triton path ran"):
        build()()
    with pytest.raises(ValueError, match="selective_scan_backend: expected one of"):
        build(selective_scan_backend="cuda")


def test_multi_route_scan_checks_its_inputs():
    routes = scan_routes(GRID_DIRECTIONS, 12, (3, 4))
    x = torch.randn(2, 12, 6)
    weights = dict(
        x_proj_weight=torch.randn(4, 5, 6), dt_proj_weight=torch.randn(4, 6, 1), dt_proj_bias=torch.randn(4, 6)
    )
    with pytest.raises(ValueError, match=r"routes: built for 12 tokens, x has 11"):
        multi_route_selective_scan(x[:, :11], routes, **weights, A=-torch.rand(4, 6, 2))
    with pytest.raises(ValueError, match=r"A: expected \(4, 6, d_state\), got \(3, 6, 2\)"):
        multi_route_selective_scan(x, routes, **weights, A=-torch.rand(3, 6, 2))
    with pytest.raises(ValueError, match=r"conv_weight: expected \(4, 6, width\), got \(4, 5, 3\)"):
        multi_route_selective_scan(x, routes, **weights, A=-torch.rand(4, 6, 2), conv_weight=torch.randn(4, 5, 3))


# ----------------------------------------------------------------------------------------------------------------
# Which path runs where
# ----------------------------------------------------------------------------------------------------------------


def fake_available(monkeypatch, triton: bool, mamba_ssm: bool, interpreted: bool = False):
    namespace = type("Kernels", (), {"interpreted": interpreted})()
    monkeypatch.setattr(scan_module, "triton_kernels", lambda: namespace if triton else None)
    monkeypatch.setattr(scan_module, "mamba_ssm_kernels", lambda: object() if mamba_ssm else None)


@pytest.mark.parametrize(
    "triton,mamba_ssm,requested,expected",
    [
        (True, True, "auto", "triton"),
        (False, True, "auto", "mamba_ssm"),
        (False, False, "auto", "reference"),
        (True, True, "mamba_ssm", "mamba_ssm"),
        (True, False, "reference", "reference"),
        (True, False, "fused", "triton"),  # a CPU kernel: the GPU's auto choice
    ],
)
def test_gpu_backend_choice(monkeypatch, triton, mamba_ssm, requested, expected):
    fake_available(monkeypatch, triton, mamba_ssm)
    assert selective_scan_backend("cuda", requested) == expected


def test_a_named_gpu_path_that_is_not_installed_is_an_error(monkeypatch):
    fake_available(monkeypatch, triton=False, mamba_ssm=False)
    with pytest.raises(RuntimeError, match="the triton path was requested but is unavailable"):
        selective_scan_backend("cuda", "triton")
    with pytest.raises(RuntimeError, match=r"mamba-ssm does not import \(pip install -e \"\.\[cuda\]\"\)"):
        selective_scan_backend("cuda", "mamba_ssm")


def test_cpu_backend_choice_and_precedence(monkeypatch):
    fake_available(monkeypatch, triton=True, mamba_ssm=True, interpreted=False)
    monkeypatch.setattr(scan_module, "load_library", lambda: (object(), ""))
    assert selective_scan_backend("cpu", "mamba_ssm") == "fused"  # a GPU kernel: the CPU's auto choice
    assert selective_scan_backend("cpu", "triton") == "fused"  # compiled Triton runs on GPUs only
    fake_available(monkeypatch, triton=True, mamba_ssm=False, interpreted=True)
    assert selective_scan_backend("cpu", "triton") == "triton"  # the interpreter runs it on the CPU
    monkeypatch.setenv("RRG_MAMBA_SELECTIVE_SCAN", "reference")
    assert selective_scan_backend("cpu") == "reference"
    assert selective_scan_backend("cpu", "auto") == "reference"  # a config's auto follows the process
    assert selective_scan_backend("cpu", "triton") == "triton"  # a config's named path wins over it
    with pytest.raises(ValueError, match="selective_scan_backend: expected one of"):
        selective_scan_backend("cpu", "cuda_graphs")


# ----------------------------------------------------------------------------------------------------------------
# Compilation for a Hopper GPU (no GPU needed)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hopper_build_report() -> dict:
    """scripts/compile_triton_kernels.py's report, run in a process where Triton compiles instead of interpreting."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "compile_triton_kernels.py"
    result = subprocess.run(
        [sys.executable, str(script), "--arch", "90", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "TRITON_INTERPRET": "0"},
        timeout=900,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_spilling(hopper_build_report):
    """Every kernel variant the launchers use compiles to a sm_90 cubin (Triton's compiler and ptxas need no GPU),
    and ptxas reports no register spills: code that only the interpreter accepts fails here."""
    variants = hopper_build_report["variants"]
    assert {v["name"] for v in variants} >= {"scan forward, mixer", "scan backward, SS2D", "conv backward"}
    for variant in variants:
        assert variant["cubin_bytes"] > 0, variant
        if hopper_build_report["ptxas"]:
            assert variant["spill_bytes"] == 0, variant
