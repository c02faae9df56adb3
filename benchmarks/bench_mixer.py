"""Forward+backward time of one Mamba mixer on CPU: rrg-mamba vs transformers' MambaMixer, same process.

Default setting (issue 2): B=2, L=196, d_model=384, d_state=16, expand=2, float32. All mixers share the same
weights; the script checks that their outputs and input gradients agree before it reports any time.
References: transformers' default sequential PyTorch path, and transformers with ``use_mambapy=True``
(mambapy's parallel scan; skipped when mambapy is not installed). Then the scaling of our mixer's time
with the sequence length.

    python benchmarks/bench_mixer.py [--repeats 5] [--lengths 64 256 1024 4096] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import MambaConfig
from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer

from modeling_rrg_mamba.layers import MambaMixer


def load_hf_weights(ours: MambaMixer, theirs: HFMambaMixer) -> None:
    """Copy transformers' mixer weights into ours (single forward direction)."""
    hf = theirs.state_dict()
    ours.load_state_dict({
        "in_proj.weight": hf["in_proj.weight"],
        "conv1d.weight": hf["conv1d.weight"],
        "conv1d.bias": hf["conv1d.bias"],
        "ssm.x_proj_weight": hf["x_proj.weight"][None],
        "ssm.dt_proj_weight": hf["dt_proj.weight"][None],
        "ssm.dt_proj_bias": hf["dt_proj.bias"][None],
        "ssm.A_log": hf["A_log"][None],
        "ssm.D": hf["D"][None],
        "out_proj.weight": hf["out_proj.weight"],
    })


def forward_backward(mixer: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor):
    x = x.detach().requires_grad_()
    y = mixer(x)
    y.backward(grad)
    return y.detach(), x.grad


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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    config = MambaConfig(hidden_size=args.d_model, state_size=args.d_state, expand=args.expand, conv_kernel=4,
                         use_bias=False, use_conv_bias=True, num_hidden_layers=1)
    hf_sequential = HFMambaMixer(config, layer_idx=0)
    ours = MambaMixer(args.d_model, d_state=args.d_state, expand=args.expand, d_conv=4, dt_rank=config.time_step_rank)
    load_hf_weights(ours, hf_sequential)
    candidates = {"transformers (sequential)": hf_sequential, "rrg-mamba": ours}
    try:
        import mambapy  # noqa: F401  (only checks availability)
        hf_mambapy = HFMambaMixer(MambaConfig(**{**config.to_dict(), "use_mambapy": True}), layer_idx=0)
        hf_mambapy.load_state_dict(hf_sequential.state_dict())
        candidates["transformers + mambapy pscan"] = hf_mambapy
    except ImportError:
        print("mambapy not installed: skipping the parallel-scan reference")

    x = torch.randn(args.batch, args.length, args.d_model)
    grad = torch.randn_like(x)
    print(f"Mixer forward+backward, B={args.batch} L={args.length} d_model={args.d_model} d_state={args.d_state} "
          f"expand={args.expand}, float32, {torch.get_num_threads()} CPU threads, best of {args.repeats} interleaved runs")
    y_ref, g_ref = forward_backward(hf_sequential, x, grad)
    errors = {}
    for name, mixer in candidates.items():
        y, g = forward_backward(mixer, x, grad)
        errors[name] = (((y - y_ref).norm() / y_ref.norm()).item(), ((g - g_ref).norm() / g_ref.norm()).item())
        if max(errors[name]) > 1e-4:
            raise SystemExit(f"{name}: results differ from transformers (rel. err. output, grad: {errors[name]})")
    results = interleaved_best_times({name: (lambda m=mixer: forward_backward(m, x, grad)) for name, mixer in candidates.items()}, args.repeats)
    for name, seconds in results.items():
        print(f"  {name:32s} {seconds * 1e3:9.1f} ms   (rel. err. vs transformers: out {errors[name][0]:.1e}, grad {errors[name][1]:.1e})")
    ours_time = results["rrg-mamba"]
    for name, seconds in results.items():
        if name != "rrg-mamba":
            print(f"  speed-up of rrg-mamba over {name}: {seconds / ours_time:.1f}x")

    print("\nScaling of rrg-mamba's mixer with L (forward+backward):")
    base = None
    for length in args.lengths:
        xl = torch.randn(args.batch, length, args.d_model)
        seconds = interleaved_best_times({"ours": lambda: forward_backward(ours, xl, torch.randn_like(xl))}, max(1, args.repeats // 2))["ours"]
        base = base or seconds / length
        print(f"  L={length:5d}  {seconds * 1e3:9.1f} ms   ({seconds / length * 1e6:7.1f} us/token, {seconds / length / base:4.2f}x the L={args.lengths[0]} cost per token)")


if __name__ == "__main__":
    main()
