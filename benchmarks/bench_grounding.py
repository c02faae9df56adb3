"""Image grounding of RRG-Mamba and its ablations: held-out finding-sentence accuracy against training steps.

A synthetic findings task (issue 13): 128 px films with four independent findings of very different sizes (a
consolidation over half a lung, an effusion band, a thin line, a nodule of a few pixels); each finding owns one
sentence of the report ("there is a X" / "no X"). Every configuration (the default RRG-Mamba with GDLM and the
cross-modal adapter, and the ablations use_gdlm / use_cma off, both off) trains the same tiny backbone with the
paper's optimiser (Adam with AMSGrad, two learning-rate groups 1e-3 / 2e-3, weight decay 5e-5), same seed and
batches, and is evaluated (greedy decoding) on the same held-out films at fixed steps. Chance is 0.50.

The figure of merit is the first evaluated step at which each configuration reaches ``--target`` (0.9) accuracy,
and the ratio default / fastest ablation (goal <= 1).

    python benchmarks/bench_grounding.py --quick        # 4 configurations x 300 steps, evaluated at 50 .. 300
    python benchmarks/bench_grounding.py [--steps 100 200 ... 800] [--batch 16] [--threads 1] [--only NAME ...]

The quick mode costs 4 x 300 optimiser steps of batch 16 (about 0.3 s each on an idle core; measured 0.6-1 s on
a 2-core machine shared with other jobs, 25 minutes in all). One thread is fastest on a shared CPU.

Measured (quick mode, seed 0; issue 13):

    configuration            50   100   150   200   300   steps to 0.9
    before: default        0.47  0.56  0.66  0.70  0.81   > 300
    after:  default        0.61  0.70  0.80  0.95  1.00   200
    use_gdlm=False         0.68  0.64  0.64  0.82  0.98   300    (before: 0.68 0.66 0.67 0.76 1.00)
    use_cma=False          0.52  0.66  0.68  0.68  0.73   > 300  (before: 0.58 0.67 0.72 0.71 0.75)
    both off               0.53  0.68  0.64  0.87  1.00   300
"""

from __future__ import annotations

import argparse
import time

import torch

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration, RRGMambaTokenizer

SIZE = 128
FINDINGS = ("consolidation", "effusion", "line", "nodule")
CONFIGURATIONS = {
    "default (GDLM + CMA)": {},
    "use_gdlm=False": {"use_gdlm": False},
    "use_cma=False": {"use_cma": False},
    "both off": {"use_gdlm": False, "use_cma": False},
}


def draw(present: list[bool], generator: torch.Generator) -> torch.Tensor:
    """One film (3, SIZE, SIZE): noise, two lung fields, and the present findings at jittered positions."""
    image = 0.1 * torch.randn(SIZE, SIZE, generator=generator)
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image[16:112, 12:60] += 0.2  # right lung field (viewer's left)
    image[16:112, 68:116] += 0.2  # left lung field
    jitter = torch.randint(-4, 5, (4, 2), generator=generator).tolist()
    if present[0]:  # consolidation: the lower half of the right lung
        image[64 + jitter[0][0] : 112, 12:60] += 0.35
    if present[1]:  # effusion: a band along the left base
        top = 100 + jitter[1][0]
        image[top : top + 6, 68:116] += 0.6
    if present[2]:  # line: a thin vertical tube in the upper left lung
        col = 92 + jitter[2][1]
        image[20:60, col : col + 2] += 0.8
    if present[3]:  # nodule: a 3 x 3 spot in the upper right lung
        row, col = 36 + jitter[3][0], 36 + jitter[3][1]
        image[((rows - row) ** 2 + (cols - col) ** 2) <= 2] += 1.5
    return image.expand(3, -1, -1)


def sentence(finding: str, present: bool) -> str:
    return f"there is a {finding}" if present else f"no {finding}"


def report(present: list[bool]) -> str:
    return " . ".join(sentence(f, p) for f, p in zip(FINDINGS, present)) + " ."


def batch(size: int, generator: torch.Generator) -> tuple[torch.Tensor, list[list[bool]]]:
    present = (torch.rand(size, len(FINDINGS), generator=generator) < 0.5).tolist()
    return torch.stack([draw(p, generator) for p in present]), present


def findings_accuracy(texts: list[str], present: list[list[bool]]) -> float:
    """Share of (film, finding) pairs whose sentence the generated report states correctly."""
    correct = 0
    for text, truth in zip(texts, present):
        sentences = {part.strip(" .") for part in text.split(" . ")}
        correct += sum(sentence(f, p) in sentences for f, p in zip(FINDINGS, truth))
    return correct / (len(FINDINGS) * len(present))


TOKENIZER = RRGMambaTokenizer.from_reports([report([True] * 4), report([False] * 4)], threshold=1)


def config(**overrides) -> RRGMambaConfig:
    """A tiny RRG-Mamba: stride-32 ResNet (4 x 4 grid at 128 px), two GDLM blocks, 1 + 1 layer encoder-decoder."""
    settings = dict(
        vocab_size=len(TOKENIZER),
        pad_token_id=TOKENIZER.pad_token_id,
        bos_token_id=TOKENIZER.bos_token_id,
        eos_token_id=TOKENIZER.eos_token_id,
        decoder_start_token_id=TOKENIZER.bos_token_id,
        visual_extractor="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
        gdlm_preset=None,
        gdlm_dim=64,
        gdlm_depth=2,
        gdlm_d_state=8,
        gdlm_mlp_ratio=2.0,
        dpb_window=3,
        d_model=64,
        num_attention_heads=4,
        d_ff=128,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.1,
        num_observations=len(FINDINGS),
    )
    settings.update(overrides)
    return RRGMambaConfig(**settings)


def paper_groups(model: RRGMambaForConditionalGeneration) -> list[dict]:
    """Paper Sec. 4.2: visual extractor at 1e-3, everything else at 2e-3, weight decay 5e-5 on all."""
    backbone = {id(p) for p in model.get_vision_backbone().parameters()}
    visual = [p for p in model.parameters() if id(p) in backbone]
    rest = [p for p in model.parameters() if id(p) not in backbone]
    return [{"params": visual, "lr": 1e-3, "weight_decay": 5e-5}, {"params": rest, "lr": 2e-3, "weight_decay": 5e-5}]


def run(name: str, overrides: dict, steps: list[int], batch_size: int, held_out: tuple, seed: int) -> list[float]:
    """Train one configuration with the paper's optimiser; held-out accuracy at each step in ``steps``."""
    torch.manual_seed(seed)
    model = RRGMambaForConditionalGeneration(config(**overrides))
    optimizer = torch.optim.Adam(paper_groups(model), amsgrad=True)
    generator = torch.Generator().manual_seed(seed + 1)
    pixels_out, present_out = held_out
    accuracies, done, start = [], 0, time.perf_counter()
    for checkpoint in steps:
        model.train()
        for _ in range(checkpoint - done):
            pixel_values, present = batch(batch_size, generator)
            encoded = TOKENIZER([report(p) for p in present], padding=True, return_tensors="pt")
            labels = encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)
            loss = model(
                pixel_values=pixel_values, labels=labels, observation_labels=torch.tensor(present).float()
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        done = checkpoint
        model.eval()
        with torch.no_grad():
            ids = model.generate(pixels_out, num_beams=1, max_new_tokens=24)
        accuracies.append(findings_accuracy(TOKENIZER.batch_decode(ids, skip_special_tokens=True), present_out))
        print(
            f"  {name:22s} step {checkpoint:4d}: accuracy {accuracies[-1]:.2f} "
            f"(loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Steps 50..300 (a few minutes on 2 cores).")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 200, 300, 400, 500, 600, 800])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU.")
    parser.add_argument("--only", nargs="*", default=None, help="Run only these configuration names.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = [50, 100, 150, 200, 300] if args.quick else sorted(args.steps)
    held_out = batch(args.held_out, torch.Generator().manual_seed(12345))
    results = {}
    for name, overrides in CONFIGURATIONS.items():
        if args.only and name not in args.only:
            continue
        results[name] = run(name, overrides, steps, args.batch, held_out, args.seed)
    print(f"\nheld-out finding-sentence accuracy (chance 0.50), batch {args.batch}, seed {args.seed}")
    print(f"{'configuration':22s} " + " ".join(f"{s:>5d}" for s in steps) + f"   steps to {args.target}")
    reached = {}
    for name, accuracies in results.items():
        first = next((s for s, a in zip(steps, accuracies) if a >= args.target), None)
        reached[name] = first
        print(
            f"{name:22s} "
            + " ".join(f"{a:5.2f}" for a in accuracies)
            + f"   {first if first else '> ' + str(steps[-1])}"
        )
    default = reached.get("default (GDLM + CMA)")
    ablations = [s for n, s in reached.items() if n != "default (GDLM + CMA)" and s is not None]
    if default is not None and ablations:
        print(f"ratio default / fastest ablation (steps to {args.target}): {default / min(ablations):.2f} (goal <= 1)")
    elif ablations:
        print(f"default did not reach {args.target} within {steps[-1]} steps; fastest ablation: {min(ablations)}")


if __name__ == "__main__":
    main()
