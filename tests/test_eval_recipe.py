"""Smoke run of recipes/ESC50/interpret/eval.py on tests/samples: seven interpreters x four conditions, then a rerun."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
EVAL = ROOT / "recipes" / "ESC50" / "interpret" / "eval.py"
HPARAMS = ROOT / "recipes" / "ESC50" / "interpret" / "hparams" / "eval.yaml"

METHODS = ["gradcam", "gradcam++", "smoothgrad", "ig", "scorecam", "gscorecam", "lmaczs"]
CONDITIONS = ["clean", "mixture", "white_noise", "speech"]
METRICS = ["AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM"]
N_CLIPS = 2


def run_eval(checkpoint, output):
    cmd = [
        sys.executable,
        str(EVAL),
        str(HPARAMS),
        f"--data_folder={SAMPLES / 'ESC50'}",
        "--clap_source=tiny-random",
        f"--checkpoint={checkpoint}",
        f"--speech_folder={SAMPLES / 'speech'}",
        f"--output_folder={output}",
        "--device=cpu",
        # Small settings: the whole grid runs in about a minute on two CPU cores.
        f"--max_clips={N_CLIPS}",
        "--batch_size=2",
        "--ig_n_steps=4",
        "--smoothgrad_n_samples=3",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def assert_numbers(rows, columns):
    for row in rows:
        for column in columns:
            assert math.isfinite(float(row[column])), (column, row)


def test_eval_recipe_writes_the_three_files_and_resumes(trained_mel_run, tmp_path):
    out = tmp_path / "eval"
    run_eval(trained_mel_run, out)

    results = read_csv(out / "results.csv")
    assert list(results[0])[:14] == ["method", "condition", "mask", *METRICS, "accuracy", "selectivity", "n_clips"]
    assert sorted((r["method"], r["condition"], r["mask"]) for r in results) == sorted(
        (m, c, k) for m in METHODS for c in CONDITIONS for k in ("method", "constant_mean")
    )
    text = ("method", "condition", "mask", "domain", "selectivity")
    assert_numbers(results, [c for c in results[0] if c not in text])
    # prompt selectivity: every method (and its reference) on the mixture (the two clips of the smoke run are
    # mixed with clips of other classes), nothing elsewhere
    assert all(math.isfinite(float(r["selectivity"])) == (r["condition"] == "mixture") for r in results)
    assert {r["domain"] for r in results} == {"MelMasking(mask_on=log_mel, fill=background)"}
    assert {int(r["n_clips"]) for r in results} == {N_CLIPS}
    assert all(float(r["seconds_per_clip"]) > 0 for r in results)

    per_clip = read_csv(out / "per_clip.csv")
    assert {"method", "condition", "mask", "id", "label", "predicted", "selectivity", *METRICS} <= set(per_clip[0])
    keys = [(r["method"], r["condition"], r["mask"], r["id"]) for r in per_clip]
    assert len(keys) == len(set(keys)) == 2 * N_CLIPS * len(METHODS) * len(CONDITIONS)
    assert_numbers(per_clip, METRICS + ["accuracy"])
    mixture = [r for r in per_clip if r["condition"] == "mixture"]
    assert all(math.isfinite(float(r["selectivity"])) for r in mixture) and {r["method"] for r in mixture} == set(METHODS)

    table = (out / "results.md").read_text()
    assert "- Masking domain: `MelMasking(mask_on=log_mel, fill=background)`" in table and "PS (prompt selectivity" in table
    for name in ("GradCAM", "GradCAM++", "SmoothGrad", "IG", "ScoreCAM", "GScoreCAM", "LMAC-ZS"):
        assert f"| {name} |" in table and f"| *{name} const.* |" in table
    for condition in CONDITIONS:
        assert f"*{condition} (accuracy" in table
    assert "AD: the paper's formula" in table and "## From saliency to mask" in table

    # A second run finds every pair done: nothing is recomputed or appended.
    before = {name: (out / name).read_bytes() for name in ("results.csv", "per_clip.csv")}
    proc = run_eval(trained_mel_run, out)
    assert "already in results.csv, skipped" in proc.stdout + proc.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
