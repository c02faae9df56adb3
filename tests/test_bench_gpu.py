"""benchmarks/bench_gpu.py runs end to end at tiny sizes on the CPU (its figures need a GPU; this checks the
script)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"


@pytest.mark.slow
def test_gpu_benchmark_runs_every_section_and_writes_its_json(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--smoke",
            "--device",
            "cpu",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["smoke"] and report["paths"] == ["fused", "reference"]
    sections = {row["section"] for row in report["rows"]}
    assert sections == {"backbone", "rrg", "emrrg", "scan"}
    names = {(row["name"], row["path"]) for row in report["rows"]}
    for path in ("fused", "reference"):
        assert ("X-ray Mamba-B 64px training", path) in names
        assert ("RRG-Mamba training step", path) in names
        assert ("EMRRG training step", path) in names
    assert ("ViT-B/16 96px inference", "-") in names and ("peer training step", "-") in names
    assert all(row["ms"] > 0 for row in report["rows"] if not row["name"].startswith("  of which the rest"))
    assert {goal["goal"].split(" (")[0] for goal in report["goals"]} >= {
        "X-ray Mamba-B training images/s / ViT-B/16's",
        "mixer fwd+bwd / its floor",
        "RRG-Mamba training images/s / the peer's",
    }


@pytest.mark.slow
def test_gpu_benchmark_refuses_a_missing_gpu_in_one_line():
    if __import__("torch").cuda.is_available():
        pytest.skip("a GPU is here")
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cuda"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--device cuda: no CUDA GPU here" in result.stderr
