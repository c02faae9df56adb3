"""GDLM block vs a Transformer encoder block of the same width over token grids (CPU).

For each grid side (7 .. 64) it times forward + backward of one block on a (batch, H, W, width) grid and measures
the activation memory autograd keeps for the backward pass (bytes of all tensors saved for backward, which is what
grows with the token count). GDLM's selective scan is linear in the number of tokens, self-attention quadratic; the
script prints the ratios and the smallest grid where GDLM is the faster of the two. It also prints the parameter
count of the paper's configuration (DenseNet-121 + GDLM-base) next to the paper's 66.56 M.

    python benchmarks/bench_gdlm.py [--width 128] [--grids 7 14 28 48 64] [--repeats 2] [--skip-params]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration
from modeling_rrg_mamba.rrg_mamba.modeling_rrg_mamba import RRGMambaEncoderLayer, RRGMambaGDLMBlock

PAPER_PARAMETERS_M = 66.56


class SavedTensorBytes:
    """Counts the bytes of every tensor autograd saves for backward inside the context."""

    def __init__(self) -> None:
        self.bytes = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        self.bytes += tensor.numel() * tensor.element_size()
        return tensor

    def __enter__(self) -> SavedTensorBytes:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


class TransformerBlock(nn.Module):
    """A pre-norm Transformer encoder layer (feed-forward 4x width) applied to a grid flattened to tokens: either
    torch's fused-attention nn.TransformerEncoderLayer ("sdpa") or R2Gen's eager layer as RRG-Mamba uses it
    ("eager", which keeps the attention matrix for backward)."""

    def __init__(self, width: int, heads: int, kind: str) -> None:
        super().__init__()
        if kind == "sdpa":
            self.layer = nn.TransformerEncoderLayer(
                width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
            )
        else:
            config = RRGMambaConfig(
                gdlm_preset="tiny", d_model=width, num_attention_heads=heads, d_ff=4 * width, dropout=0.0
            )
            self.layer = RRGMambaEncoderLayer(config)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = grid.shape
        out = self.layer(grid.reshape(batch, height * width, channels))
        return (out[0] if isinstance(out, tuple) else out).reshape(grid.shape)


def measure(block: nn.Module, grid: torch.Tensor, repeats: int) -> tuple[float, int]:
    grid = grid.requires_grad_(True)
    block(grid).sum().backward()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        with SavedTensorBytes() as saved:
            out = block(grid)
        out.sum().backward()
        times.append(time.perf_counter() - start)
    return min(times), saved.bytes


def paper_parameter_count() -> None:
    model = RRGMambaForConditionalGeneration(RRGMambaConfig(visual_extractor="densenet121", gdlm_preset="base"))

    def count(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    print(f"DenseNet-121 + GDLM-base RRG-Mamba: {count(model):.2f} M parameters (paper: {PAPER_PARAMETERS_M} M)")
    print(
        f"  visual extractor {count(model.encoder.visual_extractor):.2f} M, GDLM {count(model.encoder.gdlm):.2f} M, "
        f"encoder layers {count(model.encoder.layers):.2f} M, decoder {count(model.decoder):.2f} M"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--grids", type=int, nargs="+", default=[7, 14, 28, 48, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-params", action="store_true")
    args = parser.parse_args()
    if not args.skip_params:
        paper_parameter_count()
    torch.manual_seed(0)
    config = RRGMambaConfig(gdlm_preset=None, gdlm_dim=args.width, gdlm_depth=1, gdlm_mlp_ratio=4.0)
    blocks = {
        "GDLM": RRGMambaGDLMBlock(config),
        "attn eager": TransformerBlock(args.width, args.heads, "eager"),
        "attn sdpa": TransformerBlock(args.width, args.heads, "sdpa"),
    }
    print(
        f"\nwidth {args.width}, batch {args.batch}, {torch.get_num_threads()} threads; "
        "forward+backward seconds / MiB of activations saved for backward"
    )
    print(
        f"{'grid':>7} {'tokens':>7}"
        + "".join(f" {name + ' s':>13} {name + ' MiB':>14}" for name in blocks)
        + f" {'eager/GDLM s':>13} {'eager/GDLM MiB':>15}"
    )
    crossover = None
    for side in args.grids:
        grid = torch.randn(args.batch, side, side, args.width)
        results = {name: measure(block, grid.clone(), args.repeats) for name, block in blocks.items()}
        (gdlm_time, gdlm_bytes), (eager_time, eager_bytes) = results["GDLM"], results["attn eager"]
        if crossover is None and gdlm_time < min(eager_time, results["attn sdpa"][0]):
            crossover = side
        print(
            f"{side:>4}x{side:<2} {side * side:>7}"
            + "".join(f" {seconds:>13.3f} {size / 2**20:>14.1f}" for seconds, size in results.values())
            + f" {eager_time / gdlm_time:>13.2f} {eager_bytes / gdlm_bytes:>15.2f}"
        )
    print(
        f"GDLM faster than both attention blocks from grid {crossover}x{crossover} on"
        if crossover
        else "GDLM not faster than attention on these grids"
    )


if __name__ == "__main__":
    main()
