#!/usr/bin/env python
"""Slow vs fast chest X-ray image processor, same process, same inputs.

    python benchmarks/bench_image_processing.py [--batch 32] [--repeats 5] [--threads 2]

Times ``XrayImageProcessor`` and ``XrayImageProcessorFast`` (evaluation mode, 224 px, and training mode with the
same seed) on the bundled demo films (JPEG files, decoding included) and on the same films already in memory
(NumPy arrays: the arithmetic alone), checks that both give the same ``pixel_values``, and prints the speed-up
(median of ``--repeats`` runs each, interleaved).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from modeling_rrg_mamba.image_processing_xray import XrayImageProcessor, load_xray_image
from modeling_rrg_mamba.image_processing_xray_fast import XrayImageProcessorFast

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "modeling_rrg_mamba" / "demo_data" / "images"


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(label: str, slow: Any, fast: Any, inputs: Sequence[Any], repeats: int) -> float:
    """Check equal outputs, time both (interleaved), print one row; returns the speed-up."""
    difference = (slow(list(inputs))["pixel_values"] - fast(list(inputs))["pixel_values"]).abs().max().item()
    slow_times, fast_times = [], []
    for _ in range(repeats):
        slow_times.append(median_seconds(lambda: slow(list(inputs)), 1))
        fast_times.append(median_seconds(lambda: fast(list(inputs)), 1))
    slow_s, fast_s = statistics.median(slow_times), statistics.median(fast_times)
    print(
        f"{label:<34} {len(inputs):>5}  {1e3 * slow_s / len(inputs):>8.2f}  {1e3 * fast_s / len(inputs):>8.2f}  "
        f"{slow_s / fast_s:>6.2f}x  {difference:.1e}"
    )
    return slow_s / fast_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32, help="images per call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(DEMO_IMAGES.glob("*.jpg"))
    files = (files * (args.batch // len(files) + 1))[: args.batch]
    arrays = [load_xray_image(f) for f in files]
    same_size = [arrays[0]] * args.batch
    print(f"torch {torch.__version__}, {args.threads} thread(s); ms per image, median of {args.repeats}")
    print(f"{'input':<34} {'n':>5}  {'slow ms':>8}  {'fast ms':>8}  {'speedup':>7}  max |diff|")
    for train in (False, True):
        mode = "train" if train else "eval"
        slow = XrayImageProcessor(do_train_augmentation=train, seed=0)
        fast = XrayImageProcessorFast(do_train_augmentation=train, seed=0)
        compare(f"{mode}: JPEG files (decode incl.)", slow, fast, files, args.repeats)
        slow = XrayImageProcessor(do_train_augmentation=train, seed=0)
        fast = XrayImageProcessorFast(do_train_augmentation=train, seed=0)
        compare(f"{mode}: arrays, mixed sizes", slow, fast, arrays, args.repeats)
        if not train:
            compare(f"{mode}: arrays, one size (batched)", slow, fast, same_size, args.repeats)


if __name__ == "__main__":
    main()
