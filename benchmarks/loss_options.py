"""LMAC-ZS trained with yaml overrides on the synthetic benchmark, over several (small CLAP, decoder) seed pairs.

How the masking and loss options in the README's "Results of the synthetic benchmark" were compared: each run
trains the Synthetic recipe (``recipes/Synthetic/interpret``, the yaml plus ``--set`` overrides) on the scenes of
the FIRST run's seed, with the small CLAP of run's own CLAP seed, then scores LMAC-ZS alone: localization on 100
single-event and 40 two-event scenes (IoU, pointing, AP, ``*_mix``, ``mask_overlap_mix``) and AI/AD on the
single-event scenes (eval recipe, clean condition). The small CLAPs and scenes are those of a benchmark folder
written by ``python -m speechbrain_lmaczs.demo --seeds ...`` (``<bench>/<config>/seed_<S>/clap`` and ``data``).

Usage::

    python -m speechbrain_lmaczs.demo --seeds 0 1 --methods lmaczs --output results/bench   # small CLAPs, scenes
    python benchmarks/loss_options.py --bench results/bench --config default --runs 0:0 0:1 1:1 \\
        --set mask_fill=zero lambda_div=1.0 --name paper --out results/loss_options.csv

``--runs C:D`` is (small CLAP seed, decoder seed). Rows are appended to ``--out`` (one per run) and the mean,
standard deviation (n - 1) and minimum over the runs are printed. Trainings are deterministic for a given thread
count; another thread count moves single numbers by a few hundredths.
"""

import argparse
import csv
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechbrain_lmaczs.evaluation import EvalSettings, by_method, evaluate  # noqa: E402
from speechbrain_lmaczs.lmaczs.pretrained import load_trained  # noqa: E402
from speechbrain_lmaczs.synthetic.demo import PRESETS, localization_inputs, train_lmaczs  # noqa: E402
from speechbrain_lmaczs.synthetic.localization import localization_scores  # noqa: E402

#: what each run reports, in this order
METRICS = ("IoU", "pointing", "AP", "IoU_mix", "mask_overlap_mix", "AI", "AD", "MM")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", required=True, help="folder written by `demo --seeds` (small CLAPs and scenes)")
    parser.add_argument("--config", default="default", help="benchmark configuration (default, released)")
    parser.add_argument("--runs", nargs="+", required=True, help="CLAP_SEED:DECODER_SEED pairs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="yaml overrides")
    parser.add_argument("--name", required=True, help="label of this setting in the output")
    parser.add_argument("--epochs", type=int, default=PRESETS[False]["epochs"], help="default: the demo's")
    parser.add_argument("--out", default="results/loss_options.csv")
    parser.add_argument("--runs_folder", default="results/loss_options", help="where the trainings go")
    args = parser.parse_args(argv)
    try:
        args.pairs = [tuple(int(v) for v in run.split(":")) for run in args.runs]
        args.overrides = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        parser.error("--runs takes CLAP_SEED:DECODER_SEED pairs and --set KEY=VALUE items")
    return args


def score_run(run_folder, data):
    """LMAC-ZS's localization and AI/AD of one trained run, as a dict of METRICS."""
    model = load_trained(str(run_folder))
    classes, scenes = localization_inputs(data)
    row = dict(localization_scores(model, scenes, classes, ["lmaczs"])["lmaczs"])
    settings = EvalSettings(methods=("lmaczs",), conditions=("clean",), seed=0)
    row.update(by_method(evaluate(model, str(data / "eval.json"), str(run_folder / "eval"), settings))["lmaczs"])
    return {k: float(row[k]) for k in METRICS}


def main(argv=None):
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    base = Path(args.bench) / args.config
    data = base / f"seed_{args.pairs[0][0]}" / "data"
    missing = [p for p in [data] + [base / f"seed_{c}" / "clap" for c, _ in args.pairs] if not p.is_dir()]
    if missing:
        sys.exit(f"loss_options: {missing[0]} does not exist; write it with `python -m speechbrain_lmaczs.demo "
                 f"--seeds ... --output {args.bench}` first.")
    rows = []
    for clap_seed, decoder_seed in args.pairs:
        folder = Path(args.runs_folder) / args.config / args.name / f"clap{clap_seed}_decoder{decoder_seed}"
        start = time.time()
        train_lmaczs(data, base / f"seed_{clap_seed}" / "clap", folder, args.epochs, decoder_seed,
                     overrides=args.overrides)
        row = {"name": args.name, "config": args.config, "clap_seed": clap_seed, "decoder_seed": decoder_seed,
               "overrides": " ".join(args.set), **score_run(folder, data), "seconds": round(time.time() - start)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    new = not out.is_file()
    with open(out, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    for metric in METRICS:
        values = [r[metric] for r in rows]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{args.name} [{args.config}] {metric}: {statistics.mean(values):.3f} +- {std:.3f} "
              f"(min {min(values):.3f}, n {len(values)})")


if __name__ == "__main__":
    main()
