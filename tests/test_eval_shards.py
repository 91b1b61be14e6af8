"""eval.py split into --shard=i/n processes, then merged by the same command without --shard: same results."""

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechbrain_lmaczs.evaluation.store import (
    MASK_KINDS,
    PER_CLIP_KEYS,
    RESULTS_CSV,
    SELECTIVITY,
    VALUE_NAMES,
    read_results,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "tests" / "samples"
EVAL = ROOT / "recipes" / "ESC50" / "interpret" / "eval.py"
HPARAMS = ROOT / "recipes" / "ESC50" / "interpret" / "hparams" / "eval.yaml"
N_CLIPS = len(list((SAMPLES / "ESC50" / "audio").glob("*.wav")))


def run_eval(checkpoint, output, *extra, check=True, methods="[gradcam, smoothgrad, lmaczs]",
             conditions="[clean, white_noise]"):
    cmd = [
        sys.executable, str(EVAL), str(HPARAMS), f"--data_folder={SAMPLES / 'ESC50'}", "--clap_source=tiny-random",
        f"--checkpoint={checkpoint}", f"--output_folder={output}", "--device=cpu",
        # 5 clips in 3 batches (2 + 2 + 1): shard 1/2 gets batches 1 and 3, shard 2/2 batch 2. SmoothGrad's noise
        # is seeded per batch: equal numbers need the same batches as one process.
        "--batch_size=2", f"--methods={methods}", f"--conditions={conditions}",
        "--smoothgrad_n_samples=3", *extra,
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


def assert_same_numbers(a, b, columns):
    for row_a, row_b in zip(a, b, strict=True):
        for column in columns:
            x, y = float(row_a[column]), float(row_b[column])
            assert (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (column, x, y)


@pytest.fixture(scope="module")
def one_process(trained_mel_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "eval"
    run_eval(trained_mel_run, out)
    return out


def test_two_shards_then_merge_equal_one_process_without_recomputing(trained_mel_run, one_process, tmp_path):
    out = tmp_path / "eval"
    run_eval(trained_mel_run, out, "--shard=1/2")
    # Shard 2 is killed between two pairs: its results.csv lacks the last pair, its per_clip.csv may hold part of it.
    run_eval(trained_mel_run, out, "--shard=2/2")
    shard2 = out / "shards" / "2-of-2" / RESULTS_CSV
    rows = read_results(shard2)
    write_results(shard2, [row for row in rows if (row["method"], row["condition"]) != ("lmaczs", "white_noise")])
    assert not (out / RESULTS_CSV).exists()
    rerun = run_eval(trained_mel_run, out, "--shard=2/2")
    # (progress bars on stderr, one per (method, condition) evaluated)
    assert "lmaczs | white_noise" in rerun.stderr and "gradcam | " not in rerun.stderr

    merge = run_eval(trained_mel_run, out)
    # 6 (method, condition) pairs, each with the method's masks and its constant reference masks
    assert f"Merged 2 shards ({6 * len(MASK_KINDS) * N_CLIPS} per-clip rows)" in (out / "log.txt").read_text()
    assert " | clean" not in merge.stderr and " | white_noise" not in merge.stderr  # nothing evaluated again

    expected, merged = read_csv(one_process / RESULTS_CSV), read_csv(out / RESULTS_CSV)
    assert list(merged[0]) == list(expected[0])
    assert [(r["method"], r["condition"], r["mask"], r["n_clips"], r["domain"]) for r in merged] == [
        (r["method"], r["condition"], r["mask"], r["n_clips"], r["domain"]) for r in expected
    ]
    assert {int(r["n_clips"]) for r in merged} == {N_CLIPS}
    assert_same_numbers(expected, merged, VALUE_NAMES + (SELECTIVITY,))
    # per_clip.csv: the same rows in the same order (one process's batches, conditions, methods).
    expected_clips, merged_clips = read_csv(one_process / "per_clip.csv"), read_csv(out / "per_clip.csv")
    assert [[r[k] for k in PER_CLIP_KEYS] for r in merged_clips] == [[r[k] for k in PER_CLIP_KEYS] for r in expected_clips]
    assert_same_numbers(expected_clips, merged_clips, VALUE_NAMES + (SELECTIVITY,))
    table = (out / "results.md").read_text()
    assert "| GradCAM |" in table and "| LMAC-ZS |" in table

    # Merging with other settings than the shards': refused, in one line, and nothing is overwritten.
    before = (out / RESULTS_CSV).read_text()
    refused = run_eval(trained_mel_run, out, "--snr_db=6.0", check=False)
    assert refused.returncode != 0
    # (SpeechBrain logs the uncaught error to stdout)
    output = refused.stdout + refused.stderr
    message = [line for line in output.splitlines() if "computed with other settings" in line]
    assert len(message) == 1 and "Shard 1/2" in message[0] and "changed: ['snr_db']" in message[0], output[-2000:]
    assert (out / RESULTS_CSV).read_text() == before


def test_merge_refuses_an_unfinished_shard_with_the_command_to_finish_it(trained_mel_run, tmp_path):
    out = tmp_path / "eval"
    run_eval(trained_mel_run, out, "--shard=1/2", methods="[gradcam]", conditions="[clean]")
    proc = run_eval(trained_mel_run, out, methods="[gradcam]", conditions="[clean]", check=False)
    assert proc.returncode != 0
    message = [line for line in (proc.stdout + proc.stderr).splitlines() if "Shard 2/2 has not started" in line]
    assert len(message) == 1 and "--shard=2/2" in message[0]
