"""Smoke runs of the benchmark scripts (tiny models, --quick): they run, and their CSVs have the documented columns.

No timing is asserted: on a shared CPU the numbers mean nothing; the scripts' real runs are in docs/performance.md.
"""

import csv
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import eval_memory  # noqa: E402
import explain_speed  # noqa: E402
import loss_options  # noqa: E402
import train_speed  # noqa: E402


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        reader = csv.DictReader(fin)
        return reader.fieldnames, list(reader)


def test_explain_speed_quick(tmp_path):
    out = tmp_path / "explain.csv"
    methods = ["forward", "gradcam", "smoothgrad", "ig", "scorecam", "gscorecam", "lmaczs", "lmaczs_decoder"]
    explain_speed.main(["--quick", "--backends", "msclap", "--batches", "1", "2", "--methods", *methods,
                        "--out", str(out)])
    columns, rows = read_csv(out)
    assert tuple(columns) == explain_speed.COLUMNS
    assert {"method", "backend", "batch", "clips_per_s", "ratio_to_forward", "note"} <= set(columns)
    assert [(r["method"], r["batch"]) for r in rows] == [(m, b) for b in ("1", "2") for m in methods]
    for row in rows:
        assert math.isfinite(float(row["clips_per_s"])) and float(row["clips_per_s"]) > 0, row
        assert row["size"] == "tiny" and row["device"] == "cpu"
    by_key = {(r["method"], r["batch"]): r for r in rows}
    assert float(by_key["forward", "1"]["ratio_to_forward"]) == 1.0
    # reduced work is scaled up and labelled as such
    assert by_key["ig", "2"]["note"].startswith("extrapolated")
    assert by_key["smoothgrad", "2"]["note"].startswith("extrapolated")
    assert by_key["lmaczs", "2"]["note"] == "measured"


def test_explain_speed_uses_the_eval_recipe_settings(tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    yaml_path = ROOT / "recipes" / "ESC50" / "interpret" / "hparams" / "eval.yaml"
    with open(yaml_path, encoding="utf-8") as fin:
        overrides = {"data_folder": str(tmp_path), "checkpoint": str(tmp_path), "output_folder": str(tmp_path)}
        hparams = load_hyperpyyaml(fin, overrides)
    options, expected = hparams["interpreter_options"], explain_speed.EVAL_YAML
    assert options["smoothgrad"]["n_samples"] == expected["smoothgrad_samples"]
    assert options["smoothgrad"]["noise_level"] == expected["noise_level"]
    assert options["smoothgrad"]["batch_size"] == expected["gradient_batch_size"]
    assert options["ig"] == {
        "n_steps": expected["ig_steps"], "batch_size": expected["gradient_batch_size"], "baseline": expected["ig_baseline"]
    }
    assert options["scorecam"] == {"upsample_mode": expected["upsample_mode"],
                                   "batch_size": expected["scorecam_batch_size"]}
    assert options["gscorecam"]["top_fraction"] == expected["gscorecam_top_fraction"]
    assert options["gradcam"]["upsample_mode"] == options["gradcam++"]["upsample_mode"] == expected["upsample_mode"]
    assert set(explain_speed.METHODS) == {"forward", "lmaczs_decoder", *hparams["methods"]}


def test_explain_speed_laion_and_full_cost(tmp_path):
    out = tmp_path / "explain_laion.csv"
    explain_speed.main(["--quick", "--backends", "laion", "--batches", "1", "--methods", "forward", "ig", "scorecam",
                        "lmaczs", "--full-cost", "--out", str(out)])
    columns, rows = read_csv(out)
    assert tuple(columns) == explain_speed.COLUMNS
    assert [r["method"] for r in rows] == ["forward", "ig", "scorecam", "lmaczs"]
    assert all(r["backend"] == "laion" and not r["note"].startswith(("extrapolated", "failed")) for r in rows)


def test_explain_speed_both_precisions(tmp_path):
    out = tmp_path / "explain_bf16.csv"
    explain_speed.main(["--quick", "--backends", "msclap", "--batches", "1", "--methods", "forward", "lmaczs",
                        "--precision", "fp32", "bf16", "--out", str(out)])
    _, rows = read_csv(out)
    assert [(r["precision"], r["method"]) for r in rows] == [
        ("fp32", "forward"), ("fp32", "lmaczs"), ("bf16", "forward"), ("bf16", "lmaczs")]
    assert all(math.isfinite(float(r["ratio_to_forward"])) for r in rows)


def test_train_speed_quick(tmp_path):
    out = tmp_path / "train.csv"
    train_speed.main(["--quick", "--batches", "2", "4", "--pairs", "1", "2", "full", "--max-pairs", "8",
                      "--breakdown", "--out", str(out)])
    columns, rows = read_csv(out)
    assert tuple(columns) == train_speed.COLUMNS
    keys = [(r["batch"], r["pairs_per_clip"], r["pairs"]) for r in rows]
    assert keys == [("2", "1", "2"), ("2", "2", "4"), ("2", "full", "4"),
                    ("4", "1", "4"), ("4", "2", "8"), ("4", "full", "16")]
    for row in rows:
        for name in ("clips_per_s", "ratio_to_forward", "cpu_ratio_to_forward", "fraction_of_bound", "peak_mem_mb"):
            assert math.isfinite(float(row[name])) and float(row[name]) > 0, (name, row)
    # 16 pairs > --max-pairs 8: extrapolated from k=1 and k=2, and labelled
    assert rows[-1]["note"].startswith("extrapolated") and rows[-1]["repeats"] == "0"
    assert all(r["note"].startswith("measured") for r in rows[:-1])
    breakdown = (tmp_path / "train_breakdown.md").read_text()
    assert "caption embeddings" in breakdown and "Adam step" in breakdown


def test_full_grid_extrapolation_is_linear_in_pairs():
    class Setup:  # what the row builder reads
        backend, device, precision_name = "msclap", torch.device("cpu"), "fp32"
        args = type("Args", (), {"size": "full"})

    cost = common.Cost
    rows = [{"backend": "msclap", "batch": 4, "precision": "fp32", "pairs_per_clip": k, "pairs": pairs,
             "step_mem_mb": mem, "peak_mem_mb": 1000 + mem} for k, pairs, mem in ((1, 4, 100.0), (2, 8, 180.0))]
    forwards, fwdbwd = [cost(1.0, 2.0), cost(1.0, 2.0)], cost(2.0, 4.0)
    measured = {1: ([cost(10.0, 20.0)], forwards, fwdbwd), 2: ([cost(18.0, 36.0)], forwards, fwdbwd)}
    full = train_speed.extrapolate_full_grid(Setup, 4, rows, measured)
    # 2 s (4 s CPU) and 20 MB per extra pair: 16 pairs = 10 + 12 * 2 s, 100 + 12 * 20 MB
    assert full["pairs"] == 16 and full["pairs_per_clip"] == "full" and full["repeats"] == 0
    assert full["step_seconds"] == pytest.approx(34.0)
    assert full["ratio_to_forward"] == pytest.approx(34.0)
    assert full["cpu_ratio_to_forward"] == pytest.approx(34.0)
    assert full["step_mem_mb"] == pytest.approx(340.0)
    assert full["peak_mem_mb"] == pytest.approx(1340.0)
    # bound: one forward + 16 / 4 forward-backwards
    assert full["fraction_of_bound"] == pytest.approx(9.0 / 34.0)
    assert full["cpu_fraction_of_bound"] == pytest.approx(18.0 / 68.0)
    assert train_speed.extrapolate_full_grid(Setup, 4, rows, {1: measured[1]}) is None


def test_eval_memory_quick(tmp_path, capsys):
    out = tmp_path / "memory.csv"
    eval_memory.main(["--quick", "--methods", "lmaczs", "--batch", "2", "--out", str(out)])
    columns, rows = read_csv(out)
    assert tuple(columns) == eval_memory.COLUMNS
    assert [r["clips"] for r in rows] == ["4", "40"]
    for row in rows:
        assert float(row["eval_peak_rss_mb"]) > 0 and float(row["python_heap_peak_mb"]) > 0
        assert math.isnan(float(row["eval_peak_cuda_mb"]))
    assert "from 4 to 40 clips" in capsys.readouterr().out


def test_eval_memory_verdict():
    def row(clips, added_mb):
        return {"device": "cpu", "clips": clips, "eval_added_heap_mb": added_mb, "eval_added_rss_mb": 0.0,
                "python_heap_peak_mb": 1.0}

    # 90 more clips: storing their MS-CLAP masks would add 90 * 172.5 KB = 15.2 MB; a tenth of it is allowed
    assert eval_memory.verdict([row(10, 50.0), row(100, 51.4)], "msclap").endswith("FLAT")
    assert eval_memory.verdict([row(10, 50.0), row(100, 65.0)], "msclap").endswith("GROWS")
    # 18 more clips (3.0 MB of masks): 1 % of a 200 MB peak is the larger allowance
    assert eval_memory.verdict([row(2, 200.0), row(20, 201.5)], "msclap").endswith("FLAT")
    assert eval_memory.verdict([row(2, 200.0), row(20, 203.0)], "msclap").endswith("GROWS")


def test_peak_memory_sees_an_allocation():
    with common.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(64, 2**20)  # 256 MiB, written
        time.sleep(0.05)  # the heap is sampled every few ms
        del block
    assert memory.rss_peak_mb >= memory.rss_start_mb
    if memory.exact:  # Linux: the high-water mark was reset at entry
        assert memory.rss_delta_mb > 200
    if not math.isnan(memory.heap_start_mb):  # glibc
        assert 250 < memory.heap_delta_mb < 270 and memory.delta_mb == memory.heap_delta_mb


def test_gpu_script_parses():
    result = subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_loss_options_trains_and_scores_each_seed_pair(tmp_path):
    # A one-seed benchmark folder at test size (small CLAP and scenes), then two decoder seeds with an override.
    from speechbrain_lmaczs.synthetic.seeds import run_seeds

    tiny = {"train": 16, "single": 6, "mix": 2, "epochs": 1, "ig_steps": 2, "sg_samples": 2, "figures": 1}
    tiny_clap = {"n_train": 32, "epochs": 1, "n_valid": 10, "n_eval": 10, "conv_channels": (4, 8, 8, 16, 16, 32),
                 "embedding_dim": 32, "proj_dim": 16, "text_width": 16, "text_layers": 1}
    bench = tmp_path / "bench"
    run_seeds(str(bench), [0], configs=["default"], methods=["lmaczs"], quick=True, preset=tiny,
              clap_options=tiny_clap)
    out = tmp_path / "loss_options.csv"
    loss_options.main(["--bench", str(bench), "--runs", "0:0", "0:1", "--set", "mask_fill=zero", "--name", "zero",
                       "--epochs", "1", "--out", str(out), "--runs_folder", str(tmp_path / "runs")])
    columns, rows = read_csv(out)
    assert [(r["clap_seed"], r["decoder_seed"]) for r in rows] == [("0", "0"), ("0", "1")]
    assert set(loss_options.METRICS) <= set(columns)
    for row in rows:
        assert all(math.isfinite(float(row[m])) for m in loss_options.METRICS), row
    # the override reached the recipe
    hyperparams = (tmp_path / "runs" / "default" / "zero" / "clap0_decoder1" / "hyperparams.yaml").read_text()
    assert "mask_fill: zero" in hyperparams
    with pytest.raises(SystemExit, match="does not exist"):
        loss_options.main(["--bench", str(bench), "--runs", "5:0", "--name", "x"])
