"""Image grounding of RRG-Mamba and its ablations: held-out finding-slot accuracy against training steps.

A family of synthetic findings tasks (issues 13 and 24) on 128 px films with two lung fields; each film has
several finding slots, each stated by one report sentence "<slot> <value>":

    presence   whether each of four findings of very different sizes is there (consolidation, effusion, line, nodule)
    side       which lung holds the nodule, and which the effusion
    size       whether each lung's opacity is small or large
    count      how many nodules (one to three), and whether a line is there
    where      whether each lung's opacity is in the upper or the lower zone
    mixed      one opacity's side, zone (three) and size, and whether a line is there (chance about 0.46)

Every configuration (the default RRG-Mamba with GDLM and the cross-modal adapter, and the ablations use_gdlm /
use_cma off, both off) starts from the same weights where they share them (a paired comparison, see
`paired_model`), trains on the same batches with the same recipe (``--recipe paper``: Adam with AMSGrad, learning
rates 1e-3 extractor / 2e-3 rest, weight decay 5e-5; ``onecycle``: issue 24's AdamW 1e-3 with a one-cycle
schedule), with observation labels one per (slot, value) unless ``--no-observation-labels``, and is evaluated
(``--beams``) on the same held-out films at fixed steps. Two scales: ``tiny`` (issue 24's ResNet-18-like
extractor at 128 px, d_model 128, one GDLM block, 1 + 1 layers) and ``densenet`` (DenseNet-121 at 224 px, two GDLM
blocks). The goal: from step 100 on the default is within 0.03 of the best ablation and reaches ``--target`` (0.9)
no later than the fastest one; the table prints the worst gap per task and the verdict.

    python benchmarks/bench_grounding.py --tasks side size count where --steps 50 100 150 \
        --output benchmarks/results_grounding_tiny.txt          # table there, plot beside it (needs matplotlib)
    python benchmarks/bench_grounding.py --scale densenet --tasks where --seeds 0 1 --steps 100 200
    python benchmarks/bench_grounding.py ... --seeds 1 --json s1.json &       # seeds (or tasks, configurations)
    python benchmarks/bench_grounding.py ... --seeds 2 --json s2.json &       # in parallel processes, then
    python benchmarks/bench_grounding.py --merge s1.json s2.json --output results.txt   # one table and plot

One optimiser step of the tiny scale costs about 0.2 s on one shared core; one thread is fastest on a shared CPU.
Results measured with this file are in benchmarks/results_grounding_*.txt (plots: results_grounding_*.png).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from modeling_rrg_mamba.rrg_mamba import RRGMambaConfig, RRGMambaForConditionalGeneration, RRGMambaTokenizer

SIZE = 128
CONFIGURATIONS = {
    "default (GDLM + CMA)": {},
    "use_gdlm=False": {"use_gdlm": False},
    "use_cma=False": {"use_cma": False},
    "both off": {"use_gdlm": False, "use_cma": False},
}
RIGHT, LEFT = (12, 60), (68, 116)  # column ranges of the two lung fields (viewer's left / right)


@dataclass(frozen=True)
class Task:
    """A synthetic findings task: slots, each stated by one sentence "<slot> <value>", drawn onto a film."""

    slots: tuple[tuple[str, tuple[str, ...]], ...]
    paint: Callable[[torch.Tensor, list[int], torch.Generator], None]


def _jitter(generator: torch.Generator, low: int = -4, high: int = 5) -> int:
    return int(torch.randint(low, high, (1,), generator=generator))


def _spot(image: torch.Tensor, row: int, col: int, radius: float, value: float) -> None:
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    image[((rows - row) ** 2 + (cols - col) ** 2) <= radius**2] += value


def _paint_presence(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """Whether it is there: consolidation (half a lung), effusion band, thin line, 3 px nodule (value 0 = present)."""
    if values[0] == 0:
        image[64 + _jitter(generator) : 112, RIGHT[0] : RIGHT[1]] += 0.35
    if values[1] == 0:
        top = 100 + _jitter(generator)
        image[top : top + 6, LEFT[0] : LEFT[1]] += 0.6
    if values[2] == 0:
        col = 92 + _jitter(generator)
        image[20:60, col : col + 2] += 0.8
    if values[3] == 0:
        _spot(image, 36 + _jitter(generator), 36 + _jitter(generator), 1.5, 1.5)


def _paint_side(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """Which side: a nodule in the upper zone and an effusion band at the base, each in the right or left lung."""
    lung = (RIGHT, LEFT)[values[0]]
    _spot(image, 40 + _jitter(generator), (lung[0] + lung[1]) // 2 + _jitter(generator), 3, 1.0)
    lung = (RIGHT, LEFT)[values[1]]
    top = 100 + _jitter(generator)
    image[top : top + 6, lung[0] : lung[1]] += 0.6


def _paint_size(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """How large: an opacity in each lung, small (radius 3) or large (radius 9)."""
    for lung, value in zip((RIGHT, LEFT), values):
        _spot(image, 64 + _jitter(generator), (lung[0] + lung[1]) // 2 + _jitter(generator), (3, 9)[value], 0.8)


def _paint_count(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """How many: one to three nodules anywhere in the lungs, and whether a line is there."""
    for index in range(values[0] + 1):
        lung = (RIGHT, LEFT)[index % 2]
        row = 28 + 28 * index + _jitter(generator)
        _spot(image, row, (lung[0] + lung[1]) // 2 + _jitter(generator, -12, 13), 3, 1.0)
    if values[1] == 0:
        col = 92 + _jitter(generator)
        image[20:60, col : col + 2] += 0.8


def _paint_where(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """Where: an opacity in each lung, in its upper or lower zone."""
    for lung, value in zip((RIGHT, LEFT), values):
        _spot(image, (36, 92)[value] + _jitter(generator), (lung[0] + lung[1]) // 2 + _jitter(generator), 6, 0.8)


def _paint_mixed(image: torch.Tensor, values: list[int], generator: torch.Generator) -> None:
    """Several kinds at once (issue 24's task): one opacity whose side, zone and size vary, and whether a thin line
    is there."""
    lung = (RIGHT, LEFT)[values[0]]
    row = (36, 64, 92)[values[1]] + _jitter(generator)
    _spot(image, row, (lung[0] + lung[1]) // 2 + _jitter(generator), (3, 8)[values[2]], 0.8)
    if values[3] == 0:
        col = (lung[0] + lung[1]) // 2 + 56 * (1 - 2 * values[0]) // 2 + _jitter(generator)
        image[20:60, col : col + 2] += 0.8


PRESENCE = ("present", "absent")
TASKS = {
    "presence": Task(
        tuple((name, PRESENCE) for name in ("consolidation", "effusion", "line", "nodule")), _paint_presence
    ),
    "side": Task((("nodule", ("right", "left")), ("effusion", ("right", "left"))), _paint_side),
    "size": Task((("right opacity", ("small", "large")), ("left opacity", ("small", "large"))), _paint_size),
    "count": Task((("nodules", ("one", "two", "three")), ("line", PRESENCE)), _paint_count),
    "where": Task((("right opacity", ("upper", "lower")), ("left opacity", ("upper", "lower"))), _paint_where),
    "mixed": Task(
        (
            ("opacity side", ("right", "left")),
            ("opacity zone", ("upper", "middle", "lower")),
            ("opacity size", ("small", "large")),
            ("line", PRESENCE),
        ),
        _paint_mixed,
    ),
}


def draw(task: Task, values: list[int], generator: torch.Generator) -> torch.Tensor:
    """One film (3, SIZE, SIZE): noise, two lung fields, and the task's findings at jittered positions."""
    image = 0.1 * torch.randn(SIZE, SIZE, generator=generator)
    image[16:112, RIGHT[0] : RIGHT[1]] += 0.2
    image[16:112, LEFT[0] : LEFT[1]] += 0.2
    task.paint(image, values, generator)
    return image.expand(3, -1, -1)


def report(task: Task, values: list[int]) -> str:
    return " . ".join(f"{name} {options[v]}" for (name, options), v in zip(task.slots, values)) + " ."


def observation_labels(task: Task, values: list[list[int]]) -> torch.Tensor:
    """One observation per (slot, value): 1 for the stated value, 0 for the others."""
    labels = []
    for row in values:
        labels.append([float(v == i) for (_, options), v in zip(task.slots, row) for i in range(len(options))])
    return torch.tensor(labels)


def batch(task: Task, size: int, generator: torch.Generator) -> tuple[torch.Tensor, list[list[int]]]:
    values = [[int(torch.randint(len(o), (1,), generator=generator)) for _, o in task.slots] for _ in range(size)]
    return torch.stack([draw(task, v, generator) for v in values]), values


def findings_accuracy(task: Task, texts: list[str], values: list[list[int]]) -> float:
    """Share of (film, slot) pairs whose sentence the generated report states correctly."""
    correct = 0
    for text, truth in zip(texts, values):
        sentences = {part.strip(" .") for part in text.split(" . ")}
        correct += sum(f"{name} {options[v]}" in sentences for (name, options), v in zip(task.slots, truth))
    return correct / (len(task.slots) * len(values))


TOKENIZER = RRGMambaTokenizer.from_reports(
    [report(t, [i % len(o) for _, o in t.slots]) for t in TASKS.values() for i in range(3)], threshold=1
)


SCALES = {
    # issue 24's tiny scale: a ResNet-18-like stride-32 extractor (4 x 4 grid at 128 px), d_model 128, 1 + 1 layers
    "tiny": dict(
        image_size=128,
        visual_extractor="resnet18",
        backbone_kwargs={"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8},
        gdlm_dim=128,
        gdlm_depth=1,
        d_model=128,
        d_ff=256,
    ),
    # the paper's extractor: DenseNet-121 at 224 px (7 x 7 grid), two GDLM blocks
    "densenet": dict(
        image_size=224, visual_extractor="densenet121", gdlm_dim=128, gdlm_depth=2, d_model=128, d_ff=256
    ),
}


def config(task: Task, scale: str, **overrides) -> RRGMambaConfig:
    """A small RRG-Mamba at ``scale`` with one observation per (slot, value) of ``task``."""
    settings = dict(
        vocab_size=len(TOKENIZER),
        pad_token_id=TOKENIZER.pad_token_id,
        bos_token_id=TOKENIZER.bos_token_id,
        eos_token_id=TOKENIZER.eos_token_id,
        decoder_start_token_id=TOKENIZER.bos_token_id,
        gdlm_preset=None,
        gdlm_d_state=8,
        gdlm_mlp_ratio=2.0,
        dpb_window=3,
        num_attention_heads=4,
        encoder_layers=1,
        decoder_layers=1,
        dropout=0.1,
        num_observations=sum(len(options) for _, options in task.slots),
    )
    settings.update({k: v for k, v in SCALES[scale].items() if k != "image_size"})
    settings.update(overrides)
    return RRGMambaConfig(**settings)


def paper_groups(model: RRGMambaForConditionalGeneration) -> list[dict]:
    """Paper Sec. 4.2: visual extractor at 1e-3, everything else at 2e-3, weight decay 5e-5 on all."""
    backbone = {id(p) for p in model.get_vision_backbone().parameters()}
    visual = [p for p in model.parameters() if id(p) in backbone]
    rest = [p for p in model.parameters() if id(p) not in backbone]
    return [{"params": visual, "lr": 1e-3, "weight_decay": 5e-5}, {"params": rest, "lr": 2e-3, "weight_decay": 5e-5}]


def resize(pixels: torch.Tensor, scale: str) -> torch.Tensor:
    size = SCALES[scale]["image_size"]
    return pixels if size == SIZE else torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear")


def optimiser(model: RRGMambaForConditionalGeneration, recipe: str, total: int):
    """``paper``: Adam (AMSGrad) at 1e-3 / 2e-3, constant; ``onecycle``: AdamW 1e-3 with a one-cycle schedule (issue
    24's protocol) over ``total`` steps. Returns the optimiser and the scheduler (None for a constant rate)."""
    if recipe == "paper":
        return torch.optim.Adam(paper_groups(model), amsgrad=True), None
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=total)


@dataclass(frozen=True)
class Protocol:
    """How every configuration is trained and evaluated."""

    recipe: str = "paper"
    observation_labels: bool = True
    beams: int = 1
    batch_size: int = 16
    held_out: int = 64


def paired_model(task: Task, scale: str, overrides: dict, seed: int) -> RRGMambaForConditionalGeneration:
    """The configuration ``overrides`` with every weight it shares with the default model copied from the default
    model of this seed, and the same dropout stream: a paired comparison, so that the configurations differ by their
    components alone and not by their random draws (a new GDLM is the identity, so the default and use_gdlm=False
    start as the same function)."""
    torch.manual_seed(seed)
    reference = RRGMambaForConditionalGeneration(config(task, scale)).state_dict()
    model = RRGMambaForConditionalGeneration(config(task, scale, **overrides))
    shared = {name: tensor for name, tensor in reference.items() if name in model.state_dict()}
    model.load_state_dict(shared, strict=False)
    torch.manual_seed(seed + 2)
    return model


def report_labels(task: Task, values: list[list[int]]) -> torch.Tensor:
    """The reports of ``values`` as decoder labels (-100 where padded)."""
    encoded = TOKENIZER([report(task, v) for v in values], padding=True, return_tensors="pt")
    return encoded["input_ids"].masked_fill(encoded["attention_mask"] == 0, -100)


def train_steps(model, task: Task, scale: str, count: int, optimisation: tuple, generator, protocol: Protocol):
    """``count`` optimiser steps (``optimisation``: optimiser, scheduler or None) on fresh batches; the last loss."""
    optimizer, scheduler = optimisation
    model.train()
    loss = None
    for _ in range(count):
        pixel_values, values = batch(task, protocol.batch_size, generator)
        loss = model(
            pixel_values=resize(pixel_values, scale),
            labels=report_labels(task, values),
            observation_labels=observation_labels(task, values) if protocol.observation_labels else None,
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return loss


def run(task: str, scale: str, overrides: dict, steps: list[int], seed: int, protocol: Protocol) -> list:
    """Train one configuration; held-out accuracy at each step in ``steps``."""
    kind = TASKS[task]
    model = paired_model(kind, scale, overrides, seed)
    optimizer, scheduler = optimiser(model, protocol.recipe, steps[-1])
    held_out = protocol.held_out
    generator = torch.Generator().manual_seed(seed + 1)
    pixels_out, values_out = batch(kind, held_out, torch.Generator().manual_seed(12345))
    pixels_out = resize(pixels_out, scale)
    accuracies, done, start = [], 0, time.perf_counter()
    for checkpoint in steps:
        loss = train_steps(model, kind, scale, checkpoint - done, (optimizer, scheduler), generator, protocol)
        done = checkpoint
        model.eval()
        with torch.no_grad():
            ids = model.generate(pixels_out, num_beams=protocol.beams, max_new_tokens=24)
        texts = TOKENIZER.batch_decode(ids, skip_special_tokens=True)
        accuracies.append(findings_accuracy(kind, texts, values_out))
        print(
            f"  {task:8s} seed {seed} {overrides!s:40s} step {checkpoint:4d}: accuracy {accuracies[-1]:.2f} "
            f"(loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    return accuracies


def _mean(runs: list[list[float]]) -> list[float]:
    """Mean accuracy over runs (seeds) at each checkpoint."""
    return [sum(column) / len(column) for column in zip(*runs)]


def _first_reaching(steps: list[int], row: list[float], target: float) -> int | None:
    """The first checkpoint at which ``row`` reaches ``target`` (None: never)."""
    return next((step for step, accuracy in zip(steps, row) if accuracy >= target), None)


def table(results: dict, steps: list[int], target: float) -> str:
    """Mean accuracy over seeds per (task, configuration) and checkpoint, the first step reaching ``target``, and the
    goal's verdict. ``results[task][configuration][seed]`` = accuracy per checkpoint. The verdict is paired: each
    ablation is compared with the default on the seeds both ran, so a seed that only one of them ran moves no gap."""
    lines = [f"{'task':8s} {'configuration':22s} " + " ".join(f"{s:>5d}" for s in steps) + f"  to {target}"]
    for task, by_name in results.items():
        for name, runs in by_name.items():
            row = _mean(list(runs.values()))
            reached = _first_reaching(steps, row, target)
            first = f">{steps[-1]}" if reached is None else reached
            accuracies = " ".join(f"{a:5.2f}" for a in row)
            lines.append(f"{task:8s} {name:22s} {accuracies}  {first!s:>6s}  ({len(runs)} seeds)")
        gaps, late, default_runs = [], False, by_name.get(DEFAULT, {})
        for name, runs in by_name.items():
            shared = [seed for seed in runs if seed in default_runs]
            if name == DEFAULT or not shared:
                continue
            default = _mean([default_runs[seed] for seed in shared])
            ablation = _mean([runs[seed] for seed in shared])
            gaps += [a - d for step, d, a in zip(steps, default, ablation) if step >= 100]
            reached, fastest = _first_reaching(steps, default, target), _first_reaching(steps, ablation, target)
            late |= fastest is not None and (reached is None or reached > fastest)
        if gaps:
            verdict = "ok" if max(gaps) <= 0.03 and not late else "MISSES GOAL"
            worst = round(max(gaps), 2) + 0.0  # + 0.0 turns -0.0 into 0.0: no "-0.00"
            lines.append(f"{task:8s} worst gap to best ablation from step 100 (paired seeds): {worst:+.2f}  {verdict}")
    return "\n".join(lines)


def plot(results: dict, steps: list[int], path: str) -> str:
    """Accuracy against steps, one panel per task (mean over seeds); returns what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot"
    figure, axes = plt.subplots(1, len(results), figsize=(4 * len(results), 3.2), squeeze=False)
    for axis, (task, by_name) in zip(axes[0], results.items()):
        for name, runs in by_name.items():
            axis.plot(steps, _mean(list(runs.values())), marker="o", label=name)
        axis.set_title(task)
        axis.set_xlabel("steps")
        axis.set_ylim(0.3, 1.02)
    axes[0][0].set_ylabel("held-out slot accuracy")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return f"plot written to {path}"


DEFAULT = "default (GDLM + CMA)"


def measure(args: argparse.Namespace, steps: list[int], protocol: Protocol) -> dict:
    """Train every (task, configuration, seed) that ``args`` asks for; the record that ``--json`` writes: the
    setting, the checkpoints and ``results[task][configuration][seed]`` = accuracy per checkpoint."""
    results: dict = {}
    for task in args.tasks:
        for name, overrides in CONFIGURATIONS.items():
            if args.only and name not in args.only:
                continue
            runs = {str(seed): run(task, args.scale, overrides, steps, seed, protocol) for seed in args.seeds}
            results.setdefault(task, {})[name] = runs
    setting = f"scale {args.scale}, {protocol}"
    return {"setting": setting, "steps": steps, "results": results}


def merge(paths: list[str]) -> dict:
    """One record from the ``--json`` records of runs made apart (other seeds, tasks or configurations in parallel
    processes); they must share the setting and the checkpoints, and no (task, configuration, seed) may repeat."""
    records = [_read_record(path) for path in paths]
    first = records[0]
    results: dict = {}
    for path, record in zip(paths, records):
        if (record["setting"], record["steps"]) != (first["setting"], first["steps"]):
            raise ValueError(f"{path}: setting or steps differ from {paths[0]}'s; these runs cannot be tabulated")
        for task, by_name in record["results"].items():
            for name, runs in by_name.items():
                merged = results.setdefault(task, {}).setdefault(name, {})
                for seed, accuracies in runs.items():
                    if seed in merged:
                        raise ValueError(f"{path}: {task} / {name} / seed {seed} is already in an earlier file")
                    merged[seed] = accuracies
    return {"setting": first["setting"], "steps": first["steps"], "results": results}


def _read_record(path: str) -> dict:
    """One ``--json`` record; a file that is not one is refused with its name."""
    try:
        with open(path) as handle:
            record = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    missing = [key for key in ("setting", "steps", "results") if not isinstance(record, dict) or key not in record]
    if missing:
        raise ValueError(f"{path}: not a --json record of this script (missing {', '.join(missing)})")
    return record


def _in_order(results: dict) -> dict:
    """``results[task][configuration][seed]`` with the configurations in the order of ``CONFIGURATIONS``."""
    return {
        task: {name: by_name[name] for name in CONFIGURATIONS if name in by_name} for task, by_name in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--scale", default="tiny", choices=list(SCALES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 100, 150, 200, 300])
    parser.add_argument("--recipe", default="paper", choices=["paper", "onecycle"])
    parser.add_argument("--no-observation-labels", action="store_true", help="Train without observation labels.")
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--target", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=1, help="1 is fastest on a shared CPU.")
    parser.add_argument("--only", nargs="*", default=None, help="Run only these configuration names.")
    parser.add_argument("--output", default=None, help="Write the table here (and the plot beside it as .png).")
    parser.add_argument("--json", default=None, help="Also write every seed's accuracies here (for --merge).")
    parser.add_argument("--merge", nargs="+", default=None, help="Tabulate these --json files together; no training.")
    args = parser.parse_args()
    if args.merge:
        record = merge(args.merge)
    else:
        torch.set_num_threads(args.threads)
        protocol = Protocol(args.recipe, not args.no_observation_labels, args.beams, args.batch, args.held_out)
        record = measure(args, sorted(args.steps), protocol)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=1)
    steps, results = record["steps"], record["results"]
    seeds = sorted({seed for by_name in results.values() for runs in by_name.values() for seed in runs}, key=int)
    header = f"held-out slot accuracy, {record['setting']}, seeds {', '.join(seeds)} (a row: mean over its seeds)"
    rows = _in_order(results)
    text = header + "\n" + table(rows, steps, args.target)
    print("\n" + text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")
        print(plot(rows, steps, args.output.rsplit(".", 1)[0] + ".png"))


if __name__ == "__main__":
    main()
