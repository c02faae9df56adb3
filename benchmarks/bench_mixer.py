"""Forward+backward time and memory of the Mamba mixers on CPU: fused vs reference selective scan, GEMM floor,
transformers' MambaMixer, all in the same process.

Section 1, default setting (issues 2 and 16): one causal Mamba mixer, B=2, L=196, d_model=384, d_state=16,
expand=2, float32. All mixers share the same weights; the script checks that their outputs and input gradients
agree before it reports any time. Rows: our mixer with the fused CPU scan (``ops/_fused_scan_cpu.py``), with the
reference pure-PyTorch scan (``RRG_MAMBA_SELECTIVE_SCAN=reference``), the mixer's GEMM-only floor (in_proj, x_proj,
dt_proj, out_proj forward+backward and nothing else), transformers' default sequential path, and transformers with
``use_mambapy=True`` (skipped when mambapy is not installed).

Section 2: the same for the places where the models run the scan: EMRRG's four-route X-ray Mamba mixer
(hidden 768, expand 1, L=197 = 14x14 patches + class token) and RRG-Mamba's SS2D (d_model 768, expand 2) on a 7x7
and a 14x14 grid.

Times are the best of ``--repeats`` interleaved runs (the variants take turns, so load from other processes on a
shared machine hits all alike). Memory, two figures per variant, both from one extra fwd+bwd:
  * saved: bytes of the distinct storages that autograd saves for backward (``saved_tensors_hooks``), i.e. the
    activations held between forward and backward;
  * peak: the highest level of CPU memory allocated through PyTorch's allocator during forward+backward, above the
    level before it, replayed from ``torch.profiler``'s memory records (``profile_memory=True``: each operator's
    net allocation at its start, frees as they happen; so at operator granularity; includes the outputs,
    transient buffers and the parameter gradients). The fused kernel's own scratch (``malloc`` in C, not
    seen by the profiler) is ``threads x (2 L N + 3 L + 4 N) x 4`` bytes, printed beside it.

    python benchmarks/bench_mixer.py [--repeats 5] [--lengths 64 256 1024 4096] [--threads N] [--no-sequential]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer

from modeling_rrg_mamba.layers import MambaMixer
from modeling_rrg_mamba.layers.ss2d import SS2D
from modeling_rrg_mamba.ops import selective_scan_backend, set_selective_scan_backend


def load_hf_weights(ours: MambaMixer, theirs: HFMambaMixer) -> None:
    """Copy transformers' mixer weights into ours (single forward direction)."""
    hf = theirs.state_dict()
    ours.load_state_dict(
        {
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
    )


def forward_backward(mixer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, **kwargs):
    x = x.detach().requires_grad_()
    y = mixer(x, **kwargs)
    y.backward(grad)
    return y.detach(), x.grad


def with_scan(backend: str, fn):
    """``fn`` run with the CPU selective scan ``backend`` ("fused" or "reference")."""

    def run():
        set_selective_scan_backend(backend)
        try:
            return fn()
        finally:
            set_selective_scan_backend(None)

    return run


def gemm_floor(mixer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    """Forward+backward of the mixer's GEMMs only: in_proj, the per-direction x_proj and dt_proj, out_proj (with
    the same shapes and weights; no convolution, scan, gate or reordering)."""
    x = x.detach().requires_grad_()
    ssm = mixer.ssm
    tokens = x.reshape(x.shape[0], -1, x.shape[-1])  # (batch, length, d_model), grids flattened
    inner = mixer.in_proj(tokens)[..., : ssm.d_inner]
    k = ssm.num_directions
    xs = inner.unsqueeze(1).expand(-1, k, -1, -1)  # (batch, k, length, d_inner)
    projected = torch.einsum("bkld,kcd->bklc", xs, ssm.x_proj_weight)
    dt = torch.einsum("bklr,kdr->bkld", projected[..., : ssm.dt_rank], ssm.dt_proj_weight)
    out = mixer.out_proj(dt.sum(1) + inner)
    out.reshape(grad.shape).backward(grad)
    return out.detach(), x.grad


def interleaved_best_times(fns: dict, repeats: int) -> dict:
    """Best-of-``repeats`` seconds per function, the functions taking turns so that load spikes on a shared
    machine hit all of them alike (the minimum is the least disturbed run)."""
    for fn in fns.values():
        fn()  # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def memory_of(fn, module: torch.nn.Module) -> tuple[int, int]:
    """(bytes saved for backward, peak bytes allocated during the call) of one forward+backward ``fn``; the
    module's parameters, which backward also keeps, are not counted as saved activations."""
    storages = {}
    parameters = {p.untyped_storage().data_ptr() for p in module.parameters()}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    level = peak = 0
    # each operator's own (self) allocations minus frees, at its start time; frees outside operators are "[memory]"
    for _, change in sorted(
        (e.time_range.start, e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage
    ):
        level += change
        peak = max(peak, level)
    return sum(storages.values()), peak


def report(title: str, fns: dict, repeats: int, memory: dict, scratch: int) -> dict:
    """Time every variant, print times, ratios to the GEMM floor and memory."""
    results = interleaved_best_times(fns, repeats)
    floor = results.get("GEMM-only floor")
    print(title)
    for name, seconds in results.items():
        ratio = f"{seconds / floor:5.2f}x floor" if floor else ""
        mem = ""
        if name in memory:
            saved, peak = memory[name]
            mem = f"   saved {saved / 2**20:6.1f} MiB, peak {peak / 2**20:6.1f} MiB"
            if "fused" in name:
                mem += f" (+{scratch / 2**10:.0f} KiB kernel scratch)"
        print(f"  {name:34s} {seconds * 1e3:9.1f} ms  {ratio}{mem}")
    if "rrg-mamba, fused scan" in results and "rrg-mamba, reference scan" in results:
        print(
            "  fused scan speed-up over the reference scan: "
            f"{results['rrg-mamba, reference scan'] / results['rrg-mamba, fused scan']:.2f}x"
        )
    return results


def scan_variants(module, x, grad, **kwargs) -> tuple[dict, dict]:
    fns = {
        "rrg-mamba, fused scan": with_scan("fused", lambda: forward_backward(module, x, grad, **kwargs)),
        "rrg-mamba, reference scan": with_scan("reference", lambda: forward_backward(module, x, grad, **kwargs)),
        "GEMM-only floor": lambda: gemm_floor(module, x, grad),
    }
    memory = {name: memory_of(fn, module) for name, fn in fns.items()}
    return fns, memory


def check_paths_agree(name: str, module, x, grad, **kwargs) -> None:
    y_f, g_f = with_scan("fused", lambda: forward_backward(module, x, grad, **kwargs))()
    y_r, g_r = with_scan("reference", lambda: forward_backward(module, x, grad, **kwargs))()
    errors = (((y_f - y_r).norm() / y_r.norm()).item(), ((g_f - g_r).norm() / g_r.norm()).item())
    if max(errors) > 1e-4:
        raise SystemExit(f"{name}: fused and reference scans differ (rel. err. output, grad: {errors})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=196)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--d-state", type=int, default=16)
    parser.add_argument("--expand", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="*", default=[64, 128, 256, 512, 1024, 2048, 4096])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sequential", action="store_true", help="leave out transformers' slow sequential path")
    parser.add_argument("--no-models", action="store_true", help="leave out section 2 (EMRRG mixer, SS2D)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(
        f"CPU selective scan by default: {selective_scan_backend()}; {threads} CPU threads, float32, best of "
        f"{args.repeats} interleaved runs (timings on a shared machine are noisy: compare the ratios)\n"
    )

    config = MambaConfig(
        hidden_size=args.d_model,
        state_size=args.d_state,
        expand=args.expand,
        conv_kernel=4,
        use_bias=False,
        use_conv_bias=True,
        num_hidden_layers=1,
    )
    hf_sequential = HFMambaMixer(config, layer_idx=0)
    ours = MambaMixer(args.d_model, d_state=args.d_state, expand=args.expand, d_conv=4, dt_rank=config.time_step_rank)
    load_hf_weights(ours, hf_sequential)
    references = {} if args.no_sequential else {"transformers (sequential)": hf_sequential}
    try:
        import mambapy  # noqa: F401  (only checks availability)

        hf_mambapy = HFMambaMixer(MambaConfig(**{**config.to_dict(), "use_mambapy": True}), layer_idx=0)
        hf_mambapy.load_state_dict(hf_sequential.state_dict())
        references["transformers + mambapy pscan"] = hf_mambapy
    except ImportError:
        print("mambapy not installed: skipping the parallel-scan reference")

    x = torch.randn(args.batch, args.length, args.d_model)
    grad = torch.randn_like(x)
    y_ref, g_ref = forward_backward(hf_sequential, x, grad)
    candidates = {
        "rrg-mamba, fused scan": with_scan("fused", lambda: forward_backward(ours, x, grad)),
        "rrg-mamba, reference scan": with_scan("reference", lambda: forward_backward(ours, x, grad)),
        **{name: (lambda m=m: forward_backward(m, x, grad)) for name, m in references.items()},
    }
    for name, fn in candidates.items():
        y, g = fn()
        errors = (((y - y_ref).norm() / y_ref.norm()).item(), ((g - g_ref).norm() / g_ref.norm()).item())
        print(f"  {name:34s} rel. err. vs transformers: out {errors[0]:.1e}, grad {errors[1]:.1e}")
        if max(errors) > 1e-4:
            raise SystemExit(f"{name}: results differ from transformers")
    fns = {**candidates, "GEMM-only floor": lambda: gemm_floor(ours, x, grad)}
    memory = {
        name: memory_of(fns[name], ours)
        for name in ("rrg-mamba, fused scan", "rrg-mamba, reference scan", "GEMM-only floor")
    }
    scratch = threads * (2 * args.length * args.d_state + 3 * args.length + 4 * args.d_state) * 4
    report(
        f"\n1. Mixer forward+backward, B={args.batch} L={args.length} d_model={args.d_model} d_state={args.d_state} "
        f"expand={args.expand}:",
        fns,
        args.repeats,
        memory,
        scratch,
    )

    # the scan alone at the mixer's shapes (u, delta, B, C as the mixer passes them, D, delta_bias, softplus)
    d_inner, dims = args.expand * args.d_model, (args.batch, args.expand * args.d_model, args.length)
    leaves = [
        torch.randn(*dims),
        torch.randn(*dims),
        -torch.rand(d_inner, args.d_state),
        torch.randn(args.batch, 1, args.d_state, args.length),
        torch.randn(args.batch, 1, args.d_state, args.length),
        torch.randn(d_inner),
        torch.randn(d_inner),
    ]
    leaves = [t.requires_grad_() for t in leaves]

    def scan_alone():
        from modeling_rrg_mamba.ops import selective_scan

        y = selective_scan(*leaves[:6], delta_bias=leaves[6], delta_softplus=True)
        y.backward(torch.ones_like(y))

    line = []
    for backend in ("fused", "reference"):
        saved, peak = memory_of(with_scan(backend, scan_alone), torch.nn.Module())
        line.append(f"{backend}: saved {saved / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    print(
        f"  the scan alone at these shapes (inputs {dims[0]}x{dims[1]}x{dims[2]} = "
        f"{torch.Size(dims).numel() * 4 / 2**20:.1f} MiB each): " + "; ".join(line)
    )

    if not args.no_models:
        emrrg = MambaMixer(
            768,
            d_state=16,
            d_conv=4,
            expand=1,
            dt_rank="auto",
            directions=("row", "row_reversed", "col", "col_reversed"),
        )
        x_e = torch.randn(args.batch, 197, 768)
        kwargs = dict(grid=(14, 14), cls_position=98)
        check_paths_agree("EMRRG mixer", emrrg, x_e, torch.randn_like(x_e), **kwargs)
        fns, memory = scan_variants(emrrg, x_e, torch.randn_like(x_e), **kwargs)
        report(
            f"\n2a. EMRRG X-ray Mamba mixer (four routes, hidden 768, expand 1, d_state 16), B={args.batch} L=197:",
            fns,
            args.repeats,
            memory,
            threads * (2 * 197 * 16 + 3 * 197 + 64) * 4,
        )
        ss2d = SS2D(768, d_state=16, expand=2, d_conv=3, use_rope=True)
        for side in (7, 14):
            x_s = torch.randn(args.batch, side, side, 768)
            check_paths_agree("SS2D", ss2d, x_s, torch.randn_like(x_s))
            fns, memory = scan_variants(ss2d, x_s, torch.randn_like(x_s))
            report(
                f"\n2{'b' if side == 7 else 'c'}. RRG-Mamba SS2D (four routes, d_model 768, expand 2, d_state 16), "
                f"B={args.batch}, {side}x{side} grid (L={side * side}):",
                fns,
                args.repeats,
                memory,
                threads * (2 * side * side * 16 + 3 * side * side + 64) * 4,
            )

    if args.lengths:
        print("\nScaling of rrg-mamba's mixer with L (forward+backward, fused scan):")
        base = None
        for length in args.lengths:
            xl = torch.randn(args.batch, length, args.d_model)
            seconds = interleaved_best_times(
                {"ours": lambda xl=xl: forward_backward(ours, xl, torch.randn_like(xl))}, max(1, args.repeats // 2)
            )["ours"]
            base = base or seconds / length
            print(
                f"  L={length:5d}  {seconds * 1e3:9.1f} ms   ({seconds / length * 1e6:7.1f} us/token, "
                f"{seconds / length / base:4.2f}x the L={args.lengths[0]} cost per token)"
            )


if __name__ == "__main__":
    main()
