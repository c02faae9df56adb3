"""What reaches RRG-Mamba's decoder from the image in the first hundreds of steps, per configuration (issue 24).

Trains the default model and its ablations exactly as ``bench_grounding.py`` does (same task, seed, batches and
recipe) and, at the given steps, measures on a fixed probe batch:

    image share      of the encoder memory's variance, the part that differs between films (1 - mean within-token
                     variance across films / total variance is the shared part): how much of the memory is image
    logit swap       mean |Δ log-prob| of the reference report's tokens when each study's films are replaced by
                     another study's: how much the decoder's prediction depends on the image
    grad extractor   gradient norm of the report loss at the visual extractor (what the image side is taught)
    aux / report     norm of the auxiliary losses' gradient (observation BCE + consistency, as weighted) over the
                     report loss's at the encoder's parameters after the extractor
    aux cos          cosine between those two gradients (negative: the auxiliary terms pull against the report)
    global mass      share of the decoder's last-layer cross-attention on the per-view global tokens
    obs accuracy     share of (film, slot) pairs whose value the observation head's logits rank first among the
                     slot's values (the adapter's reading of the image, without the decoder)
    gdlm change      RMS of v_M - LN(v_S) over RMS of v_S: how far GDLM has moved the grid from its input
    gdlm gain        mean |γ| of GDLM's branch gains (zero at initialisation)

    python benchmarks/diagnose_grounding.py --task mixed --recipe onecycle --steps 0 25 50 100 200 300
    python benchmarks/diagnose_grounding.py --scale densenet --task side --batch 8 --steps 0 50 100 150
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import torch
from bench_grounding import (
    CONFIGURATIONS,
    SCALES,
    TASKS,
    Protocol,
    Task,
    batch,
    observation_labels,
    optimiser,
    paired_model,
    report_labels,
    resize,
    train_steps,
)


def _gradient(loss: torch.Tensor, parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)])


def _token_log_probs(model, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    logits = model(pixel_values=pixels, labels=labels).logits.log_softmax(-1)
    return logits.gather(-1, labels.clamp_min(0)[..., None])[..., 0].masked_fill(labels == -100, 0.0)


def observation_accuracy(task: Task, logits: torch.Tensor, values: list[list[int]]) -> float:
    """Share of (film, slot) pairs whose value has the highest observation logit among the slot's values."""
    correct, start = 0, 0
    for slot, (_, options) in enumerate(task.slots):
        predicted = logits[:, start : start + len(options)].argmax(-1).tolist()
        correct += sum(p == row[slot] for p, row in zip(predicted, values))
        start += len(options)
    return correct / (len(task.slots) * len(values))


def _gdlm_rows(model, record: dict) -> dict[str, float]:
    """GDLM's change to the grid (from the hook's ``record``) and its mean branch gain."""
    gdlm = model.encoder.gdlm
    if gdlm is None:
        return {}
    grid, moved = record["input"], record["output"]
    normalised = torch.nn.functional.layer_norm(grid, grid.shape[-1:])
    gains = torch.cat([scale.weight.detach().abs() for block in gdlm.blocks for scale in block.branch_scales()])
    return {
        "gdlm change": float((moved - normalised).pow(2).mean().sqrt() / grid.pow(2).mean().sqrt()),
        "gdlm gain": float(gains.mean()),
    }


def measure(model, task, pixels: torch.Tensor, values: list[list[int]], protocol: Protocol) -> dict[str, float]:
    """The table's measures on one probe batch (dropout off)."""
    model.eval()
    labels = report_labels(task, values)
    observations = observation_labels(task, values) if protocol.observation_labels else None
    record: dict = {}
    hook = None
    if model.encoder.gdlm is not None:
        hook = model.encoder.gdlm.register_forward_hook(
            lambda module, inputs, output: record.update(input=inputs[0].detach(), output=output.detach())
        )
    output = model(pixel_values=pixels, labels=labels, observation_labels=observations, output_attentions=True)
    if hook is not None:
        hook.remove()
    memory = output.encoder_last_hidden_state.detach()
    within = memory.var(dim=0).mean()
    total = memory.flatten(0, 1).var(dim=0).mean()
    with torch.no_grad():
        reference = _token_log_probs(model, pixels, labels)
        swapped = _token_log_probs(model, pixels.roll(1, dims=0), labels)
    valid = (labels != -100).sum()
    extractor = list(model.get_vision_backbone().parameters())
    backbone = {id(p) for p in extractor}
    encoder = [p for p in model.encoder.parameters() if id(p) not in backbone]
    report_grad = _gradient(output.report_loss, encoder)
    row = {
        "image share": float(within / total),
        "logit swap": float((reference - swapped).abs().sum() / valid),
        "grad extractor": float(_gradient(output.report_loss, extractor).norm()),
        "global mass": float(
            output.cross_attentions[-1][..., 0].detach().mean()
        ),  # one view: token 0 is its global token
        **_gdlm_rows(model, record),
    }
    if output.observation_logits is not None:
        row["obs accuracy"] = observation_accuracy(task, output.observation_logits.detach(), values)
    if output.observation_loss is not None:  # with the adapter and observation labels
        aux_grad = _gradient(output.loss - output.report_loss, encoder)
        row["aux / report"] = float(aux_grad.norm() / report_grad.norm().clamp_min(1e-12))
        row["aux cos"] = float(torch.nn.functional.cosine_similarity(aux_grad, report_grad, dim=0))
    model.train()
    return row


def diagnose(
    task_name: str,
    overrides: dict,
    steps: list[int],
    seed: int,
    protocol: Protocol,
    scale: str = "tiny",
    probe_size: int = 32,
) -> Iterator[dict]:
    """Train as ``bench_grounding.run`` does (paired weights, same batches); measure at each of ``steps`` (0: new),
    yielding each row as it is measured."""
    task = TASKS[task_name]
    model = paired_model(task, scale, overrides, seed)
    optimizer, scheduler = optimiser(model, protocol.recipe, max(steps[-1], 1))
    generator = torch.Generator().manual_seed(seed + 1)
    probe, probe_values = batch(task, probe_size, torch.Generator().manual_seed(54321))
    probe = resize(probe, scale)
    done = 0
    for checkpoint in steps:
        train_steps(model, task, scale, checkpoint - done, (optimizer, scheduler), generator, protocol)
        done = checkpoint
        yield {"step": checkpoint, **measure(model, task, probe, probe_values, protocol)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mixed", choices=list(TASKS))
    parser.add_argument("--scale", default="tiny", choices=list(SCALES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--probe", type=int, default=32, help="Films in the probe batch the measures are taken on.")
    parser.add_argument("--recipe", default="onecycle", choices=["paper", "onecycle"])
    parser.add_argument("--no-observation-labels", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 25, 50, 100])
    parser.add_argument("--only", nargs="*", default=None, help="Run only these configuration names.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    protocol = Protocol(args.recipe, not args.no_observation_labels, batch_size=args.batch)
    columns = ["image share", "logit swap", "grad extractor", "global mass", "aux / report", "aux cos"]
    columns += ["obs accuracy", "gdlm change", "gdlm gain"]
    print(f"task {args.task}, scale {args.scale}, {protocol}, seed {args.seed}")
    print(f"{'configuration':22s} {'step':>5s} " + " ".join(f"{c:>14s}" for c in columns))
    for name, overrides in CONFIGURATIONS.items():
        if args.only and name not in args.only:
            continue
        for row in diagnose(args.task, overrides, sorted(args.steps), args.seed, protocol, args.scale, args.probe):
            cells = " ".join(f"{row[c]:14.4f}" if c in row else f"{'-':>14s}" for c in columns)
            print(f"{name:22s} {row['step']:5d} {cells}", flush=True)


if __name__ == "__main__":
    main()
