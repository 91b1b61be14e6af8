"""``make demo``: the synthetic sound-scene benchmark, end to end and offline.

1. trains a small CLAP (the MS-CLAP 2022 architecture, scaled down) contrastively on synthetic scenes and measures
   its zero-shot accuracy on held-out single-event scenes (``accuracy.txt``);
2. writes the LMAC-ZS data: captioned scenes of 1-3 events for training, single-event scenes (zero-shot evaluation)
   and two-event scenes (prompt localization in mixtures), each with the exact time-frequency support of its events;
3. trains LMAC-ZS on it with the normal recipe (``recipes/Synthetic/interpret/train.py``, Mel masking);
4. evaluates all seven methods with the eval recipe's code (faithfulness, predicted class) and scores their
   localization against the true supports (top-k% IoU, pointing game);
5. writes ``results.csv`` / ``results.md`` (a row per method), figures of a few scenes, and an HTML report with
   listenable explanations of one two-event scene.

Everything goes to ``results/demo`` (``--output``); steps whose outputs exist with the same options are reused.

Usage: ``python -m speechbrain_lmaczs.demo [--quick] [--seed N] [--output results/demo]``

Step 3 runs the recipe script of a checkout of the repository (``recipes/`` beside the package); an installed
package has none, so point ``--recipes`` at the ``recipes/`` folder of a checkout.
"""

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.evaluation import METHODS, EvalSettings, evaluate
from speechbrain_lmaczs.files import atomic_write, write_json_atomic, write_text_atomic
from speechbrain_lmaczs.lmaczs.pretrained import load_trained
from speechbrain_lmaczs.synthetic.dataset import write_synthetic_dataset
from speechbrain_lmaczs.synthetic.events import EVENT_CLASSES
from speechbrain_lmaczs.synthetic.localization import localization_scores, scene_figure
from speechbrain_lmaczs.synthetic.scenes import SceneConfig
from speechbrain_lmaczs.synthetic.small_clap import small_frontend
from speechbrain_lmaczs.synthetic.small_clap_training import train_small_clap

logger = logging.getLogger(__name__)

#: The folder that holds the ``speechbrain_lmaczs`` package (a checkout's root, or site-packages once installed);
#: the recipe runs with it first on PYTHONPATH, so that it imports this very package.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

#: The recipe the demo trains LMAC-ZS with, relative to a checkout's ``recipes/`` folder.
RECIPE = Path("Synthetic", "interpret")

#: sizes of the full and the quick demo
PRESETS = {
    False: {"train": 600, "single": 100, "mix": 40, "epochs": 3, "ig_steps": 32, "sg_samples": 16, "figures": 3},
    True: {"train": 120, "single": 30, "mix": 10, "epochs": 1, "ig_steps": 8, "sg_samples": 4, "figures": 1},
}
COLUMNS = (
    "method", "IoU", "pointing", "mass_in_support", "AP", "IoU_mix", "pointing_mix", "mass_in_support_mix", "AP_mix",
    "mask_overlap_mix", "support_overlap_mix",
    "AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM", "accuracy", "seconds_per_clip", "forward_ratio",
)


def canonical_prompt_labels(manifest_path, out_path):
    """Copy a synthetic manifest with each class named by its canonical caption ("a high pitched beep").

    The small CLAP was trained on captions, so its zero-shot prompts are ``"this is the sound of " + caption``
    (:func:`speechbrain_lmaczs.synthetic.events.prompt_for`); naming the classes this way makes the recipes' prompt
    template produce exactly those prompts.
    """
    with open(manifest_path, encoding="utf-8") as f:
        data = json.load(f)
    for entry in data.values():
        entry["class_string"] = EVENT_CLASSES[int(entry["classID"])].captions[0]
    write_json_atomic(out_path, data)
    return out_path


def write_data(folder, clap, preset, seed):
    """The three splits, and train.json / eval.json / scenes.json as the recipes and the benchmark read them."""
    folder = Path(folder)
    fe = clap.frontend
    train = write_synthetic_dataset(folder / "scenes", preset["train"], seed, "train", fe)
    single = write_synthetic_dataset(
        folder / "scenes", preset["single"], seed, "single", fe, config=SceneConfig(n_events=(1, 1))
    )
    mix = write_synthetic_dataset(
        folder / "scenes", preset["mix"], seed, "mix", fe, config=SceneConfig(n_events=(2, 2))
    )
    canonical_prompt_labels(train, folder / "train.json")
    canonical_prompt_labels(single, folder / "eval.json")
    canonical_prompt_labels(mix, folder / "mix.json")
    return folder


def recipe_folder(recipes=None):
    """The Synthetic interpret recipe: under ``recipes`` (a checkout's ``recipes/`` folder) or, by default, under
    the ``recipes/`` beside the package, which exists only in a checkout of the repository.

    Raises
    ------
    FileNotFoundError
        When the folder holds no ``Synthetic/interpret/train.py``; the message says how to fix it.

    Example
    -------
    >>> (recipe_folder() / "train.py").is_file()
    True
    """
    folder = (Path(recipes) if recipes is not None else PACKAGE_PARENT / "recipes") / RECIPE
    if not (folder / "train.py").is_file():
        raise FileNotFoundError(
            f"The demo trains LMAC-ZS with recipes/{RECIPE.as_posix()}/train.py, not found in {folder.parent.parent}: "
            "run it from a checkout of the repository (pip install -e .), or pass --recipes /path/to/checkout/recipes."
        )
    return folder


def train_lmaczs(data_folder, clap_folder, output_folder, epochs, seed, recipe=None):
    """Run the Synthetic training recipe (skipped when its checkpoint exists); ``recipe`` defaults to
    :func:`recipe_folder`."""
    if list(Path(output_folder, "save").glob("CKPT+*")) and Path(output_folder, "train_log.txt").is_file():
        logger.info("Reusing the LMAC-ZS run in %s", output_folder)
        return output_folder
    recipe = recipe_folder() if recipe is None else Path(recipe)
    cmd = [
        sys.executable,
        str(recipe / "train.py"),
        str(recipe / "hparams" / "lmaczs_mel.yaml"),
        f"--data_folder={data_folder}",
        f"--clap_source={clap_folder}",
        f"--output_folder={output_folder}",
        f"--number_of_epochs={epochs}",
        f"--seed={seed}",
    ]
    logger.info("Training LMAC-ZS: %s", " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, check=True, env=env)
    return output_folder


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_tables(rows, out, accuracy, info):
    """results.csv and results.md."""

    def write_csv(f):
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(out / "results.csv", write_csv)
    lines = [
        "# Synthetic sound-scene benchmark",
        "",
        f"Small CLAP zero-shot accuracy on held-out single-event scenes: {accuracy:.3f}. {info}",
        "",
        "IoU / pointing: single-event scenes, mask of the true event's prompt vs its exact support (top-k%, k = the "
        "support's share). *_mix: each event's prompt explained in two-event scenes; mask_overlap_mix is the IoU of "
        "the two prompts' top-k% regions, to compare with support_overlap_mix (the events' own overlap). AI ... MM: "
        "faithfulness on the single-event scenes for the predicted class (eval recipe, clean condition).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in COLUMNS) + " |" for row in rows]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


def run(output="results/demo", quick=False, seed=0, device="cpu", preset=None, clap_options=None, recipes=None):
    """Run the whole demo; returns the rows of results.csv.

    Parameters
    ----------
    output : str
        Output folder.
    quick : bool
        The quick preset (and the small CLAP's quick training).
    seed : int
        Seed of everything.
    device : str
        Torch device.
    preset : dict, optional
        Sizes, overriding :data:`PRESETS` (the tests use a tiny one).
    clap_options : dict, optional
        Extra keyword arguments of :func:`train_small_clap` (e.g. a narrower architecture in tests).
    recipes : str, optional
        The ``recipes/`` folder of a checkout (see :func:`recipe_folder`); by default the one beside the package.
    """
    recipe = recipe_folder(recipes)  # before any work: an installed package without --recipes fails at once
    start = time.time()
    preset = dict(PRESETS[bool(quick)], **(preset or {}))
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)

    logger.info("1/5 small CLAP")
    small = train_small_clap(out / "clap", seed=seed, quick=quick, frontend=small_frontend(), **(clap_options or {}))
    write_text_atomic(
        out / "accuracy.txt",
        "zero-shot accuracy of the small CLAP on held-out single-event scenes\n" f"{small.accuracy:.4f}\n",
    )

    logger.info("2/5 synthetic data")
    from speechbrain_lmaczs.clap import load_clap

    clap = load_clap("msclap", str(out / "clap"))
    data = write_data(out / "data", clap, preset, seed)

    logger.info("3/5 LMAC-ZS training")
    run_folder = train_lmaczs(data, out / "clap", out / "lmaczs", preset["epochs"], seed, recipe)
    model = load_trained(str(run_folder), device=device)

    logger.info("4/5 evaluation")
    options = {
        "ig": {"n_steps": preset["ig_steps"]},
        "smoothgrad": {"n_samples": preset["sg_samples"], "seed": seed},
    }
    settings = EvalSettings(methods=METHODS, conditions=("clean",), seed=seed, interpreter_options=options)
    faithfulness = {row["method"]: row for row in evaluate(model, str(data / "eval.json"), str(out / "eval"), settings)}
    labels = [EVENT_CLASSES[i].captions[0] for i in range(len(EVENT_CLASSES))]
    classes = make_prompts(labels)
    scenes = {}
    for name in ("eval.json", "mix.json"):
        with open(data / name, encoding="utf-8") as f:
            scenes.update(json.load(f))
    local = localization_scores(model, scenes, classes, list(METHODS), options, device=device)

    logger.info("5/5 tables, figures, report")
    rows = []
    for method in METHODS:
        row = {"method": method}
        row.update(local[method])
        row.update({k: faithfulness[method][k] for k in COLUMNS if k in faithfulness[method]})
        rows.append(row)
    info = f"Seed {seed}, {'quick' if quick else 'full'} preset {preset}, {time.time() - start:.0f} s so far."
    write_tables(rows, out, small.accuracy, info)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    mix_items = [e for e in scenes.values() if e["n_events"] == 2][: preset["figures"]]
    for i, entry in enumerate(mix_items):
        scene_figure(model, entry, classes, list(METHODS), str(figures / f"scene_{i}.png"), options)
    write_demo_report(run_folder, mix_items[0], out / "report")
    logger.info("Demo done in %.0f s: %s", time.time() - start, out / "results.csv")
    return rows


def write_demo_report(run_folder, entry, folder):
    """HTML report (figures + audio players) of one two-event scene, for both events' prompts."""
    from speechbrain_lmaczs.explain import Explainer
    from speechbrain_lmaczs.report import write_report

    explainer = Explainer.from_folder(str(run_folder))
    prompts = [event["prompt"] for event in entry["events"]]
    results = [explainer.explain_file(entry["wav"], prompts=prompts)]
    results.append(explainer.with_method("gradcam++").explain_file(entry["wav"], prompts=prompts))
    return write_report(results, str(folder), overwrite=True)


def main(argv=None):
    """Command-line entry point (``python -m speechbrain_lmaczs.demo``)."""
    parser = argparse.ArgumentParser(
        prog="python -m speechbrain_lmaczs.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller data and fewer epochs (about 3 minutes)")
    parser.add_argument("--output", default="results/demo", help="output folder (default: results/demo)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the models and the evaluation")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--recipes", default=None, help="the recipes/ folder of a checkout (default: the one beside the package)"
    )
    args = parser.parse_args(argv)
    try:
        recipe_folder(args.recipes)
    except FileNotFoundError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    run(args.output, args.quick, args.seed, args.device, recipes=args.recipes)


if __name__ == "__main__":
    main()
