"""Compile every variant of the package's Triton kernels for an NVIDIA architecture, without a GPU, and report each
one's registers and spills (ptxas -v): a check that the kernels are valid compiled Triton (the interpreter that tests
them on a CPU accepts more), and the numbers that chose their block sizes.

    python scripts/compile_triton_kernels.py [--arch 90] [--json]       # exit code 1 if any variant spills

Run it with ``TRITON_INTERPRET`` unset (or 0): under the interpreter there is nothing to compile.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import triton
from triton.backends.compiler import GPUTarget

from modeling_rrg_mamba.ops.triton import causal_conv1d_routes, selective_scan_routes

#: Pointer arguments compiled as bf16 (the activations under autocast); the rest (parameters, fp32 sums) as fp32.
BF16_POINTERS = {
    "u_ptr",
    "dt_ptr",
    "B_ptr",
    "C_ptr",
    "z_ptr",
    "out_ptr",
    "gout_ptr",
    "du_ptr",
    "ddt_ptr",
    "dz_ptr",
    "x_ptr",
    "dx_ptr",
}
# X-ray Mamba's four grid routes with the middle class token: every index-map branch compiled in
ROUTES = dict(K=4, TRANSPOSE=0b1010, REVERSE=0b1100, MIDDLE_CLS=0b1111)
ONE_ROUTE = dict(K=1, TRANSPOSE=0, REVERSE=0, MIDDLE_CLS=0)


def variants() -> list[tuple[str, object, dict, int]]:
    """(name, kernel, constexprs, warps) of every launch configuration the launchers use."""
    scan, conv = selective_scan_routes, causal_conv1d_routes
    flags = dict(HAS_D=True, HAS_BIAS=True, SOFTPLUS=True, BLOCK_T=scan._BLOCK_T, BLOCK_N=16)
    fwd = dict(flags, BLOCK_D=scan._FWD_BLOCK_D)
    bwd = dict(flags, BLOCK_D=scan._BWD_BLOCK_D)
    conv_flags = dict(ROUTES, WIDTH=4, HAS_BIAS=True, SILU=True, BLOCK_T=conv._BLOCK_T, BLOCK_D=conv._BLOCK_D)
    mixer = dict(ROUTES, TOKEN_ORDER=False, MERGE=True, HAS_Z=True)
    ss2d = dict(ROUTES, TOKEN_ORDER=True, MERGE=True, HAS_Z=False)
    unmerged = dict(ONE_ROUTE, TOKEN_ORDER=False, MERGE=False, HAS_Z=True)
    fwd_warps, bwd_warps, conv_warps = scan._FWD_WARPS, scan._BWD_WARPS, conv._NUM_WARPS
    return [
        ("scan forward, mixer", scan._route_scan_fwd_kernel, dict(fwd, **mixer), fwd_warps),
        ("scan forward, SS2D", scan._route_scan_fwd_kernel, dict(fwd, **ss2d), fwd_warps),
        ("scan forward, unmerged", scan._route_scan_fwd_kernel, dict(fwd, **unmerged), fwd_warps),
        ("scan backward, mixer", scan._route_scan_bwd_kernel, dict(bwd, **mixer, HAS_GRAD_LAST=False), bwd_warps),
        ("scan backward, SS2D", scan._route_scan_bwd_kernel, dict(bwd, **ss2d, HAS_GRAD_LAST=True), bwd_warps),
        ("scan backward, unmerged", scan._route_scan_bwd_kernel, dict(bwd, **unmerged, HAS_GRAD_LAST=True), bwd_warps),
        ("conv forward", conv._route_conv_fwd_kernel, conv_flags, conv_warps),
        ("conv backward", conv._route_conv_bwd_kernel, conv_flags, conv_warps),
    ]


def signature(kernel, constants: dict) -> dict[str, str]:
    types = {}
    for name in kernel.arg_names:
        if name in constants:
            types[name] = "constexpr"
        elif name.endswith("_ptr"):
            types[name] = "*bf16" if name in BF16_POINTERS else "*fp32"
        else:
            types[name] = "fp32" if name == "scale" else "i32"
    return types


def ptxas_report(ptx: str, arch: int) -> tuple[int | None, int | None]:
    """(registers, spill-store bytes) from ptxas -v, or (None, None) when this Triton wheel carries no ptxas."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        return None, None
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "kernel.ptx")
        with open(path, "w") as handle:
            handle.write(ptx)
        stderr = subprocess.run(
            [ptxas, "-v", f"--gpu-name=sm_{arch}a", path, "-o", os.devnull], capture_output=True, text=True, check=True
        ).stderr
    registers = int(re.search(r"Used (\d+) registers", stderr).group(1))
    spills = int(re.search(r"(\d+) bytes spill stores", stderr).group(1))
    return registers, spills


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 90 for H100/H200")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("TRITON_INTERPRET=1: the kernels are interpreted, not compiled; unset it")
    report = {"arch": args.arch, "triton": triton.__version__, "ptxas": True, "variants": []}
    for name, kernel, constants, warps in variants():
        start = time.perf_counter()
        source = triton.compiler.ASTSource(fn=kernel, signature=signature(kernel, constants), constexprs=constants)
        compiled = triton.compile(source, target=GPUTarget("cuda", args.arch, 32), options={"num_warps": warps})
        registers, spills = ptxas_report(compiled.asm["ptx"], args.arch)
        report["ptxas"] = report["ptxas"] and registers is not None
        report["variants"].append(
            dict(
                name=name,
                warps=warps,
                cubin_bytes=len(compiled.asm["cubin"]),
                registers=registers,
                spill_bytes=spills,
                seconds=round(time.perf_counter() - start, 1),
            )
        )
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"Triton {report['triton']}, sm_{args.arch}")
        for v in report["variants"]:
            print(
                f"  {v['name']:<26} {v['warps']} warps  {v['registers']} registers  {v['spill_bytes']} B spilled  "
                f"{v['seconds']} s"
            )
    return int(any(v["spill_bytes"] for v in report["variants"]))


if __name__ == "__main__":
    sys.exit(main())
