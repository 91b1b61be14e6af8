"""The one-command reproduction: the comparison writer on known numbers, resumable steps, and the --smoke chain."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speechbrain_lmaczs.reproduce.chain import main
from speechbrain_lmaczs.reproduce.compare import (
    CSV_COLUMNS,
    claims,
    comparison_rows,
    read_eval_results,
    write_comparison,
)
from speechbrain_lmaczs.reproduce.estimates import evaluation_seconds, explanation_forwards, training_seconds
from speechbrain_lmaczs.reproduce.paper import METRICS, PAPER_NAMES, PAPER_TABLES
from speechbrain_lmaczs.reproduce.steps import Step, StepFailed, StepRunner

ROOT = Path(__file__).resolve().parents[1]
REPRODUCE = ROOT / "recipes" / "ESC50" / "interpret" / "reproduce.py"
RECIPE_NAMES = {paper: recipe for recipe, paper in PAPER_NAMES.items()}
STEPS = ["clap", "esc50", "clotho", "speech", "train_mel", "train_stft", "eval_esc50_mel", "eval_esc50_stft", "compare"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fin:
        return list(csv.DictReader(fin))


# ------------------------------------------------------------------------------------------------ comparison
def paper_results(table_name, accuracy, changes=None, condition="clean"):
    """Rows of 'our' results equal to the paper's table, with {(method, metric): value} changes."""
    table = PAPER_TABLES[table_name]
    rows = []
    for method, values in table.values.items():
        row = {"dataset": table.dataset, "domain": table.domain, "condition": condition}
        row |= {"method": RECIPE_NAMES[method], "accuracy": accuracy, **values}
        for (changed_method, metric), value in (changes or {}).items():
            if changed_method == method:
                row[metric] = value
        rows.append(row)
    return rows


def hand_made_results():
    """Mel: exactly the paper's numbers. STFT: LMAC-ZS's AI 30 (below GradCAM++'s 32.5, above ScoreCAM's 29.97),
    LMAC-ZS's AD 10 (above GradCAM++'s 8.97), ScoreCAM's AD missing; one mixture row (no paper numbers)."""
    mel = paper_results("ESC-50 Mel", 80.0)
    stft = paper_results(
        "ESC-50 STFT", 79.5, {("LMAC-ZS", "AI"): 30.0, ("LMAC-ZS", "AD"): 10.0, ("ScoreCAM", "AD"): ""}
    )
    mixture = [{"dataset": "esc50", "domain": "mel", "condition": "mixture", "method": "lmaczs", "AI": 12.5,
                "accuracy": 40.0}]
    similarity = [
        {"domain": "mel", "method": "lmaczs", "pearson_r": "0.5"},
        {"domain": "mel", "method": "gradcam++", "pearson_r": "0.1"},
    ]
    ssims = {"lmaczs": (0.9, 0.7, 0.4, 0.3, 0.2, 0.1), "gradcam++": (0.9, 0.85, 0.8, 0.8, 0.7, 0.6)}
    randomisation = [
        {"domain": "mel", "method": method, "step": str(step), "blocks": f"conv_block{7 - step}", "ssim": str(ssim)}
        for method, values in ssims.items()
        for step, ssim in enumerate(values, 1)
    ]
    return mel + stft + mixture, similarity, randomisation


def test_comparison_rows_on_known_numbers():
    results, _, _ = hand_made_results()
    rows = comparison_rows(results)
    # every paper number has a row: 5 x 8 (Mel) + 7 x 8 (STFT) + one accuracy row per table
    assert len(rows) == 5 * 8 + 7 * 8 + 2
    by_key = {(r["table"], r["method"], r["metric"]): r for r in rows}
    mel = [r for r in rows if r["table"] == "ESC-50 Mel" and r["metric"] != "accuracy"]
    assert all(r["difference"] == 0 and r["ours"] == r["paper"] for r in mel)
    assert all(r["paper_rank"] == r["our_rank"] for r in mel)

    ai = by_key[("ESC-50 STFT", "LMAC-ZS", "AI")]
    assert ai["paper"] == 43.35 and ai["ours"] == 30.0
    assert ai["difference"] == pytest.approx(-13.35) and ai["relative_difference"] == pytest.approx(-0.308)
    assert (ai["paper_rank"], ai["our_rank"], ai["better"]) == (1, 2, "higher")
    ad = by_key[("ESC-50 STFT", "LMAC-ZS", "AD")]
    assert ad["difference"] == pytest.approx(5.71) and ad["better"] == "lower"
    assert (ad["paper_rank"], ad["our_rank"]) == (1, 3)  # among the 6 measured: GScoreCAM 8.56, GradCAM++ 8.97, 10
    missing = by_key[("ESC-50 STFT", "ScoreCAM", "AD")]
    assert missing["ours"] is None and missing["difference"] is None and missing["our_rank"] == ""
    assert by_key[("ESC-50 STFT", "SmoothGrad", "MM")]["paper_rank"] == ""  # MM is reported, not ranked
    accuracy = by_key[("ESC-50 Mel", "zero-shot classifier", "accuracy")]
    assert (accuracy["paper"], accuracy["ours"], accuracy["difference"]) == (80.7, 80.0, pytest.approx(-0.7))


def test_claims_on_known_numbers():
    results, similarity, randomisation = hand_made_results()
    verdicts = {c["claim"]: c["verdict"] for c in claims(results, similarity, randomisation)}
    # the Mel table is the paper's own: every ordering holds
    mel = {k: v for k, v in verdicts.items() if k.startswith("ESC-50 Mel")}
    assert len(mel) == 7 + 7 and set(mel.values()) == {"held"}
    assert verdicts["ESC-50 STFT: LMAC-ZS above GradCAM++ on AI"] == "not held"
    assert verdicts["ESC-50 STFT: LMAC-ZS best on AI (higher is better)"] == "not held"
    assert verdicts["ESC-50 STFT: LMAC-ZS below GradCAM++ on AD"] == "not held"
    assert verdicts["ESC-50 STFT: LMAC-ZS best on AD (lower is better)"] == "not measured"  # ScoreCAM's AD missing
    assert verdicts["ESC-50 STFT: LMAC-ZS above GradCAM++ on AG"] == "held"
    assert verdicts["ESC-50 STFT: GradCAM++ above LMAC-ZS on FF"] == "held"  # the paper's order, whichever wins
    assert "ESC-50 STFT: GradCAM++ best on FF (higher is better)" not in verdicts  # a three-way tie in the paper
    assert verdicts["ESC-50: zero-shot accuracy of the Mel setup above the STFT setup's"] == "held"
    sanity = {k: v for k, v in verdicts.items() if k.startswith("sanity")}
    assert [sanity[k] for k in sanity if "Mel" in k] == ["held", "held", "held"]
    assert [sanity[k] for k in sanity if "STFT" in k] == ["not measured"] * 3

    # GradCAM++ correlating as much as LMAC-ZS, and LMAC-ZS's masks surviving randomisation: both not held
    similarity[1]["pearson_r"] = "0.6"
    for row in randomisation:
        if row["method"] == "lmaczs":
            row["ssim"] = "0.95"
    verdicts = {c["claim"]: c["verdict"] for c in claims(results, similarity, randomisation)}
    assert [v for k, v in verdicts.items() if k.startswith("sanity, ESC-50 Mel")] == ["held", "not held", "not held"]


def test_write_comparison_files(tmp_path):
    results, similarity, randomisation = hand_made_results()
    rows, claim_rows = write_comparison(tmp_path, results, similarity, randomisation, notes=["a note"])
    written = read_csv(tmp_path / "paper_comparison.csv")
    assert list(written[0])[:5] == ["table", "method", "metric", "paper", "ours"]
    assert tuple(written[0]) == CSV_COLUMNS and len(written) == len(rows)
    row = next(r for r in written if (r["table"], r["method"], r["metric"]) == ("ESC-50 STFT", "LMAC-ZS", "AI"))
    assert (float(row["paper"]), float(row["ours"]), float(row["difference"])) == (43.35, 30.0, pytest.approx(-13.35))
    assert next(r for r in written if r["method"] == "ScoreCAM" and r["metric"] == "AD")["ours"] == ""
    md = (tmp_path / "paper_comparison.md").read_text()
    counts = {v: sum(c["verdict"] == v for c in claim_rows) for v in ("held", "not held", "not measured")}
    held, not_held, not_measured = counts.values()
    assert f"## Claims: {held} held, {not_held} not held, {not_measured} not measured" in md
    assert "- a note" in md and "### ESC-50 Mel" in md and "### ESC-50 STFT" in md
    assert "| LMAC-ZS | 43.35 -> 30 (-13.3) [1/2] |" in md
    assert "## Ours only" in md and "### ESC-50 Mel, mixture; accuracy 40 %" in md


def test_read_eval_results_tags_rows(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "results.csv").write_text("method,condition,AI,accuracy\nlmaczs,clean,20.0,75.0\n")
    (folder / "sanity_similarity.csv").write_text("method,pearson_r,n_points\nlmaczs,0.4,40\n")
    results, similarity, randomisation = read_eval_results({("esc50", "stft"): folder, ("esc50", "mel"): tmp_path})
    assert results == [{"method": "lmaczs", "condition": "clean", "AI": "20.0", "accuracy": "75.0",
                        "dataset": "esc50", "domain": "stft"}]
    assert similarity[0]["domain"] == "stft" and randomisation == []
    by_key = {(r["table"], r["method"], r["metric"]): r for r in comparison_rows(results)}
    assert by_key[("ESC-50 STFT", "LMAC-ZS", "AI")]["ours"] == 20.0
    assert by_key[("ESC-50 STFT", "GradCAM", "AI")]["ours"] is None
    # The evaluation's constant-mean reference rows never stand in for a method's own row.
    (folder / "results.csv").write_text(
        "method,condition,mask,AI,accuracy\nlmaczs,clean,method,20.0,75.0\nlmaczs,clean,constant_mean,5.0,75.0\n"
    )
    results, _, _ = read_eval_results({("esc50", "stft"): folder})
    assert [(r["mask"], r["AI"]) for r in results] == [("method", "20.0")]


# ------------------------------------------------------------------------------------------------ estimates
def test_estimates_by_hand():
    assert explanation_forwards("smoothgrad", {"smoothgrad_n_samples": "25"}) == 57.0
    assert explanation_forwards("gscorecam", {"gscorecam_top_fraction": 0.2}) == 416.0
    # 10 clips x 2 conditions x (1.21 + 3) forwards at 4,330 forwards/s
    assert evaluation_seconds(10, 2, methods=["lmaczs"]) == pytest.approx(10 * 2 * 4.21 / 4330)
    assert training_seconds(19195 // 2, 2) == pytest.approx(3600, rel=1e-3)


# ------------------------------------------------------------------------------------------------ steps
def test_step_runner_resumes_and_moves_aside_other_options(tmp_path):
    runner = StepRunner(tmp_path)
    folder = tmp_path / "work"
    calls = []

    def work(fail):
        def run():
            folder.mkdir(exist_ok=True)
            calls.append(sorted(p.name for p in folder.iterdir()))
            (folder / f"part{len(calls)}").write_text("x")
            if fail:
                raise RuntimeError("interrupted")
            (folder / "out").write_text("done")
        return run

    step = Step("work", "work", {"lr": 1}, work(fail=True), outputs=(folder / "out",), folder=folder)
    with pytest.raises(RuntimeError):
        runner.run(step)
    assert runner.status(step) == "to resume"
    step.run = work(fail=False)
    assert runner.run(step) is True
    assert calls == [[], ["part1"]]  # the resumed run found the interrupted run's work
    assert runner.status(step) == "done" and runner.run(step) is False

    (folder / "out").unlink()  # an output gone: not done any more
    assert runner.status(step) == "to resume"
    changed = Step("work", "work", {"lr": 2}, work(fail=False), outputs=(folder / "out",), folder=folder)
    assert runner.status(changed) == "to run again (options changed)"
    runner.run(changed)
    assert calls[-1] == []  # started from an empty folder
    (aside,) = tmp_path.glob("work.replaced-*")
    assert sorted(p.name for p in aside.iterdir()) == ["part1", "part2"]


def test_step_without_its_outputs_fails(tmp_path):
    step = Step("nothing", "writes nothing", {}, lambda: None, outputs=(tmp_path / "never",))
    with pytest.raises(StepFailed, match="never"):
        StepRunner(tmp_path).run(step)


def test_missing_folders_are_one_clear_error(tmp_path, caplog):
    assert main(["--output_folder", str(tmp_path), "--data_folder", str(tmp_path / "esc")]) == 1
    assert "Pass --clotho_folder, --speech_folder" in caplog.text
    assert main(["--output_folder", str(tmp_path), "--smoke", "--train_override", "lr"]) == 1
    assert "--train_override takes KEY=VALUE" in caplog.text
    assert main(["--output_folder", str(tmp_path), "--smoke", "--plan_only", "--eval_override", "ig_steps=4"]) == 1
    assert "eval.yaml does not take these options" in caplog.text and "ig_steps" in caplog.text


def test_plan_is_logged_before_anything_runs(tmp_path, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        assert main(["--output_folder", str(tmp_path), "--smoke", "--plan_only", "--eval_override", "max_clips=2000",
                     "--eval_override", "sanity_clips=8"]) == 0
    assert "GPU times are ESTIMATES" in caplog.text
    for name in STEPS:
        assert f"  {name} " in caplog.text
    # before the ESC-50 manifest exists, the estimate uses the dataset's nominal size (2,000 clips)
    assert "on 2000 clips" in caplog.text
    assert not (tmp_path / "steps").exists() and not (tmp_path / "train").exists()


# ------------------------------------------------------------------------------------------------ the chain
def run_smoke(output, *extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(REPRODUCE), "--smoke", "--quiet", "--output_folder", str(output), *extra]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stderr


def test_smoke_chain_writes_the_comparison_then_skips_and_resumes(tmp_path):
    out = tmp_path / "reproduce"
    log = run_smoke(out)
    for name in STEPS:
        assert f"[{name}] finished" in log
    rows = read_csv(out / "paper_comparison.csv")
    assert list(rows[0])[:5] == ["table", "method", "metric", "paper", "ours"]
    for table_name, table in PAPER_TABLES.items():
        mine = [r for r in rows if r["table"] == table_name and r["metric"] in METRICS]
        assert {(r["method"], r["metric"]) for r in mine} == {(m, x) for m in table.values for x in METRICS}
        assert all(r["ours"] != "" for r in mine), table_name  # every number measured by the chain
    md = (out / "paper_comparison.md").read_text()
    assert "SMOKE RUN" in md
    claim_lines = [line for line in md.splitlines() if line.startswith("| ESC-50")]
    assert len(claim_lines) == 14 + 13 + 1 + 2  # Mel and STFT orderings, accuracy claim, the two accuracy rows
    assert not [line for line in claim_lines if "not measured" in line]
    assert sum(line.startswith("| sanity, ESC-50") for line in md.splitlines()) == 6
    assert (out / "train" / "mel" / "train_log.txt").is_file() and (out / "train" / "stft" / "save").is_dir()
    for domain in ("mel", "stft"):
        assert (out / "eval" / f"esc50_{domain}" / "sanity_randomisation.csv").is_file()

    # started again: every step is skipped, nothing is rewritten
    watched = [out / "paper_comparison.md", out / "paper_comparison.csv", out / "eval" / "esc50_mel" / "results.csv",
               out / "train" / "stft" / "train_log.txt"]
    before = {path: path.stat().st_mtime_ns for path in watched}
    log = run_smoke(out)
    for name in STEPS:
        assert f"[{name}] done with the same options: skipped." in log
    assert "running:" not in log
    assert {path: path.stat().st_mtime_ns for path in watched} == before

    # an evaluation that did not finish (its done-stamp gone): resumed, its finished pairs kept
    (out / "steps" / "eval_esc50_stft.json").unlink()
    results = (out / "eval" / "esc50_stft" / "results.csv").read_bytes()
    log = run_smoke(out)
    assert "[eval_esc50_stft] resuming" in log and "[train_stft] done with the same options: skipped." in log
    assert "already in results.csv, skipped" in (out / "logs" / "eval_esc50_stft.log").read_text()
    assert (out / "eval" / "esc50_stft" / "results.csv").read_bytes() == results
    assert "[compare] done with the same options: skipped." in log  # same evaluation options: same comparison
