"""`make demo` end to end, at test size: small CLAP, synthetic data, LMAC-ZS training, eval, localization, report."""
import csv
import json
import subprocess
import sys
from pathlib import Path

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
    config = json.loads((out / "explainer" / "config.json").read_text())  # the exported explainer (issue 17)
    assert config["speechbrain_interface"] == "LMACZSExplainer" and (out / "explainer" / "clap").is_dir()


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


def test_seeds_summary_is_computed_from_the_per_seed_results_and_reruns_reuse_them(tmp_path, monkeypatch):
    # --seeds at test size: two configurations, then a longer seed list that only computes the new seed.
    from speechbrain_lmaczs.synthetic import demo as demo_module
    from speechbrain_lmaczs.synthetic.seeds import SUMMARY_COLUMNS, run_seeds

    out = tmp_path / "bench"
    options = {"quick": True, "preset": TINY, "clap_options": TINY_CLAP}
    methods = ["gradcam", "lmaczs"]
    run_seeds(str(out), [0], methods=methods, **options)
    trained = []
    real_train = demo_module.train_lmaczs
    monkeypatch.setattr(demo_module, "train_lmaczs", lambda *a, **k: trained.append(a[2]) or real_train(*a, **k))
    run_seeds(str(out), [0, 1], methods=methods, **options)
    assert sorted(Path(p).parent.name + "/" + Path(p).parent.parent.name for p in trained) == [
        "seed_1/default", "seed_1/released"
    ]  # seed 0 reused in both configurations

    with open(out / "summary.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == SUMMARY_COLUMNS
        summary = list(reader)
    assert {row["config"] for row in summary} == {"default", "released"}
    assert {row["method"] for row in summary} == set(methods)
    for config in ("default", "released"):
        per_seed = []
        for seed in (0, 1):
            with open(out / config / f"seed_{seed}" / "results.csv", newline="") as f:
                per_seed.append({row["method"]: row for row in csv.DictReader(f)})
        for method in methods:
            for metric in ("IoU", "pointing", "IoU_mix", "mask_overlap_mix", "AI", "AD", "AP", "mass_in_support"):
                (row,) = [r for r in summary if (r["config"], r["method"], r["metric"]) == (config, method, metric)]
                values = [float(per_seed[s][method][metric]) for s in (0, 1)]
                assert int(row["n_seeds"]) == 2
                assert float(row["mean"]) == pytest.approx(sum(values) / 2, abs=1e-6)
                assert float(row["min"]) == pytest.approx(min(values), abs=1e-6)
                assert float(row["std"]) == pytest.approx(abs(values[0] - values[1]) / 2**0.5, abs=1e-6)
    assert "## released" in (out / "summary.md").read_text()
    # the released configuration: no floor offset in the small CLAP; LMAC-ZS with the yaml's background fill
    hyperparams = (out / "released" / "seed_0" / "lmaczs" / "hyperparams.yaml").read_text()
    assert "mask_fill: background" in hyperparams and "mask_on: log_mel" in hyperparams
    clap_config = (out / "released" / "seed_0" / "clap" / "small_clap_options.json").read_text()
    assert '"db_offset": 0.0' in clap_config and '"carve_prob": 0.0' in clap_config


def test_decoder_seeds_retrain_only_the_decoder_on_the_first_seed(tmp_path, monkeypatch):
    # The orchestration of --decoder_seeds, with the demo run replaced by a recorder: the decoder runs share the
    # first seed's folder (small CLAP and data), evaluate only the methods that use the trained decoder, and are
    # summarised apart.
    from speechbrain_lmaczs.synthetic import seeds as seeds_module

    calls = []

    def fake_run(output, seed, config, methods=None, decoder_seed=None, shared=None, figures=True, **options):
        calls.append((Path(output).relative_to(tmp_path).as_posix(), seed, decoder_seed, shared, tuple(methods)))
        value = seed + (decoder_seed or 0) / 10
        return [{"method": m, "IoU": value, "AI": 2 * value} for m in methods]

    monkeypatch.setattr(seeds_module, "run", fake_run)
    summary = seeds_module.run_seeds(str(tmp_path), [3, 4], ["default"], ["ig", "lmaczs"], decoder_seeds=[1, 2])
    assert calls[:2] == [("default/seed_3", 3, None, None, ("ig", "lmaczs")),
                         ("default/seed_4", 4, None, None, ("ig", "lmaczs"))]
    assert calls[2:] == [
        ("default/seed_3/decoder_1", 3, 1, str(tmp_path / "default" / "seed_3"), ("lmaczs",)),
        ("default/seed_3/decoder_2", 3, 2, str(tmp_path / "default" / "seed_3"), ("lmaczs",)),
    ]
    (iou,) = [r for r in summary["decoder_seeds"] if r["metric"] == "IoU"]
    assert (iou["method"], iou["mean"], iou["min"], iou["n_seeds"]) == ("lmaczs", pytest.approx(3.15), 3.1, 2)
    with open(tmp_path / "summary_decoder_seeds.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 2  # IoU and AI of lmaczs
    (ig_ai,) = [r for r in summary["seeds"] if (r["method"], r["metric"]) == ("ig", "AI")]
    assert (ig_ai["mean"], ig_ai["std"], ig_ai["min"]) == (pytest.approx(7.0), pytest.approx(2**0.5), 6.0)


def test_an_lmaczs_run_is_reused_only_with_the_same_yaml(tmp_path):
    # A stand-in recipe whose train.py records each call and leaves a checkpoint folder: the demo reuses a run
    # only when the options AND the yaml's text are those it was trained with.
    from speechbrain_lmaczs.synthetic import demo as demo_module

    recipe = tmp_path / "recipe"
    (recipe / "hparams").mkdir(parents=True)
    (recipe / "train.py").write_text(
        "import sys, pathlib\n"
        "out = pathlib.Path([a.split('=', 1)[1] for a in sys.argv if a.startswith('--output_folder=')][0])\n"
        "(out / 'save' / 'CKPT+1').mkdir(parents=True, exist_ok=True)\n"
        "(out / 'train_log.txt').write_text('epoch: 1')\n"
        "with open(out.parent / 'calls.txt', 'a') as f: f.write('x')\n"
    )
    yaml = recipe / "hparams" / "lmaczs_mel.yaml"
    yaml.write_text("mask_fill: background\n")
    out = tmp_path / "runs" / "lmaczs"
    args = (tmp_path / "data", tmp_path / "clap", out, 1, 0)
    assert demo_module.train_lmaczs(*args, recipe=recipe) == (out, False)
    assert demo_module.train_lmaczs(*args, recipe=recipe) == (out, True)  # same options, same yaml
    yaml.write_text("mask_fill: zero\n")  # new yaml defaults: trained again
    assert demo_module.train_lmaczs(*args, recipe=recipe) == (out, False)
    assert (tmp_path / "runs" / "calls.txt").read_text() == "xx"
