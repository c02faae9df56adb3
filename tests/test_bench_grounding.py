"""benchmarks/bench_grounding.py and diagnose_grounding.py (issue 24): the paired comparison, the goal verdict and the
diagnostics, at tiny sizes (the figures themselves come from the scripts' own runs)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_grounding as bench  # noqa: E402
import diagnose_grounding as diagnose  # noqa: E402


def test_paired_configurations_share_their_weights_and_a_new_gdlm_changes_nothing():
    """The default and use_gdlm=False start as the same function (shared weights copied, GDLM the identity);
    use_cma=False shares every weight it has."""
    task = bench.TASKS["mixed"]
    pixels, values = bench.batch(task, 2, torch.Generator().manual_seed(0))
    labels = bench.report_labels(task, values)
    models = {
        name: bench.paired_model(task, "tiny", overrides, 0).eval() for name, overrides in bench.CONFIGURATIONS.items()
    }
    with torch.no_grad():
        logits = {name: model(pixel_values=pixels, labels=labels).logits for name, model in models.items()}
    torch.testing.assert_close(logits["use_gdlm=False"], logits[bench.DEFAULT], rtol=0, atol=1e-4)  # GDLM's LN eps
    torch.testing.assert_close(logits["both off"], logits["use_cma=False"], rtol=0, atol=1e-4)
    default = models[bench.DEFAULT].state_dict()
    for name, tensor in models["both off"].state_dict().items():
        assert torch.equal(tensor, default[name]), name


def _results(default: list[float], best: list[float]) -> dict:
    return {"task": {bench.DEFAULT: {"0": default}, "use_gdlm=False": {"0": best}, "both off": {"0": [0.5] * 3}}}


@pytest.mark.parametrize(
    "default, best, verdict",
    [
        ([0.6, 0.91, 1.0], [0.62, 0.92, 1.0], "ok"),  # within 0.03 from step 100, reaches 0.9 at the same step
        ([0.6, 0.85, 1.0], [0.6, 0.92, 1.0], "MISSES GOAL"),  # 0.07 behind at step 100
        ([0.9, 0.9, 0.9], [0.9, 0.91, 0.92], "ok"),  # reached 0.9 at step 50, within 0.03 after
        ([0.5, 0.88, 0.9], [0.5, 0.9, 0.9], "MISSES GOAL"),  # within 0.03 but reaches 0.9 a checkpoint later
    ],
)
def test_table_gives_the_worst_gap_and_the_goal_verdict(default, best, verdict):
    text = bench.table(_results(default, best), [50, 100, 150], 0.9)
    last = text.splitlines()[-1]
    assert last.endswith(verdict), text
    gap = max(b - d for s, d, b in zip([50, 100, 150], default, best) if s >= 100)
    assert f"{gap:+.2f}" in last


def test_verdict_compares_each_ablation_on_the_seeds_it_shares_with_the_default():
    """A seed that only the ablation ran (here a lucky one) moves no gap; on shared seeds 0.07 behind misses."""
    results = {
        "task": {bench.DEFAULT: {"0": [0.5, 0.8, 1.0]}, "use_cma=False": {"0": [0.5, 0.8, 1.0], "1": [1.0] * 3}}
    }
    assert bench.table(results, [50, 100, 150], 0.9).splitlines()[-1].endswith("+0.00  ok")
    results["task"][bench.DEFAULT]["1"] = [0.5, 0.86, 1.0]
    assert bench.table(results, [50, 100, 150], 0.9).splitlines()[-1].endswith("+0.07  MISSES GOAL")


def test_diagnostics_measure_a_short_paired_run():
    protocol = bench.Protocol("onecycle", observation_labels=True, batch_size=4)
    rows = list(diagnose.diagnose("side", {}, [0, 2], seed=0, protocol=protocol))
    assert [row["step"] for row in rows] == [0, 2]
    for row in rows:
        assert 0 <= row["image share"] <= 1.05 and 0 < row["global mass"] < 1
        assert all(math.isfinite(value) for value in row.values())
        assert "aux / report" in row  # the observation BCE and consistency terms are there with labels
        assert 0 <= row["obs accuracy"] <= 1
    assert rows[0]["gdlm gain"] == 0 and rows[0]["gdlm change"] < 1e-3  # a new GDLM is the identity
    assert rows[1]["gdlm gain"] > 0  # two Adam steps move the gains
    plain = next(diagnose.diagnose("side", {"use_cma": False, "use_gdlm": False}, [0], seed=0, protocol=protocol))
    assert "aux / report" not in plain and "obs accuracy" not in plain and "gdlm gain" not in plain
    assert plain["grad extractor"] > 0


def test_observation_accuracy_ranks_each_slots_values():
    """A slot is right when its stated value has the highest logit among that slot's values only."""
    task = bench.TASKS["mixed"]  # slots of 2, 3, 2, 2 values
    values = [[1, 2, 0, 0], [0, 0, 1, 1]]
    logits = torch.full((2, 9), -5.0)
    for film, row in enumerate(values):
        start = 0
        for (_, options), value in zip(task.slots, row):
            logits[film, start + value] = 5.0
            start += len(options)
    assert diagnose.observation_accuracy(task, logits, values) == 1.0
    logits[0, 0:2] = torch.tensor([9.0, -9.0])  # film 0's side now reads "right", the truth is "left"
    assert diagnose.observation_accuracy(task, logits, values) == 7 / 8


def _record(path, setting: str, results: dict) -> str:
    path.write_text(json.dumps({"setting": setting, "steps": [50, 100, 150], "results": results}))
    return str(path)


def test_merge_tabulates_runs_made_apart_and_refuses_mismatches(tmp_path):
    """Seeds and configurations run in parallel processes tabulate as one run would, in the configurations' order;
    another setting, a repeated seed or a file that is not a record is refused with the file named."""
    default = {bench.DEFAULT: {"1": [0.5, 0.9, 1.0]}}
    ablation = {"use_gdlm=False": {"1": [0.6, 0.8, 0.9], "2": [0.6, 1.0, 1.0]}}
    first = _record(tmp_path / "a.json", "scale tiny", {"side": ablation})
    second = _record(tmp_path / "b.json", "scale tiny", {"side": default})
    merged = bench.merge([first, second])
    assert merged["results"]["side"][bench.DEFAULT] == {"1": [0.5, 0.9, 1.0]}
    rows = bench._in_order(merged["results"])["side"]
    assert list(rows) == [bench.DEFAULT, "use_gdlm=False"]
    text = bench.table({"side": rows}, [50, 100, 150], 0.9)
    row = next(line for line in text.splitlines() if "use_gdlm=False" in line)
    assert "0.60  0.90  0.95" in row  # its row: the mean over both of its seeds
    assert text.splitlines()[-1].endswith("-0.10  ok")  # the verdict: seed 1 only, the one the default ran
    other = _record(tmp_path / "c.json", "scale densenet", {"side": default})
    with pytest.raises(ValueError, match="c.json: setting or steps differ"):
        bench.merge([first, other])
    with pytest.raises(ValueError, match="b.json: side / default .* seed 1 is already"):
        bench.merge([second, second])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ValueError, match="broken.json: not JSON"):
        bench.merge([first, str(tmp_path / "broken.json")])
    (tmp_path / "table.json").write_text(json.dumps({"setting": "scale tiny", "steps": [50]}))
    with pytest.raises(ValueError, match="table.json: not a --json record .*missing results"):
        bench.merge([str(tmp_path / "table.json")])
