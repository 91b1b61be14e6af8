"""`make demo` end to end, at test size: small CLAP, synthetic data, LMAC-ZS training, eval, localization, report."""

import csv
import subprocess
import sys

import pytest

from speechbrain_lmaczs.evaluation import METHODS
from speechbrain_lmaczs.synthetic.demo import COLUMNS, recipe_folder, run

TINY = {"train": 16, "single": 10, "mix": 2, "epochs": 1, "ig_steps": 2, "sg_samples": 2, "figures": 1}
TINY_CLAP = {"n_train": 32, "epochs": 1, "n_valid": 10, "n_eval": 10, "conv_channels": (4, 8, 8, 16, 16, 32),
             "embedding_dim": 32, "proj_dim": 16, "text_width": 16, "text_layers": 1}


def test_demo_writes_results_accuracy_figures_and_report(tmp_path):
    out = tmp_path / "demo"
    rows = run(str(out), quick=True, seed=0, preset=TINY, clap_options=TINY_CLAP)
    assert [row["method"] for row in rows] == list(METHODS)
    with open(out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["method"] for row in table] == list(METHODS)
    assert set(COLUMNS) <= set(table[0])
    for row in table:
        for key in ("IoU", "pointing", "AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM"):
            value = float(row[key])
            assert value == value  # a number, not NaN
        assert 0.0 <= float(row["IoU"]) <= 1.0 and 0.0 <= float(row["pointing"]) <= 1.0
    accuracy = float((out / "accuracy.txt").read_text().strip().splitlines()[-1])
    assert 0.0 <= accuracy <= 1.0
    assert (out / "results.md").read_text().count("| lmaczs |") == 1
    assert list((out / "figures").glob("scene_*.png"))
    report = (out / "report" / "report.html").read_text()
    assert report.count("<audio") >= 3  # the original and one explanation per prompt


def test_demo_without_a_checkout_says_how_to_fix_it(tmp_path):
    # An installed package has no recipes/ beside it: the demo stops at once with one line naming the fix.
    with pytest.raises(FileNotFoundError, match="--recipes"):
        recipe_folder(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "speechbrain_lmaczs.demo", "--recipes", str(tmp_path), "--output", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "pass --recipes" in result.stderr
    assert not (tmp_path / "o").exists()
