"""``make demo``: the synthetic sound-scene benchmark, end to end and offline.

1. trains a small CLAP (the MS-CLAP 2022 architecture, scaled down) contrastively on synthetic scenes and measures
   its zero-shot accuracy on held-out single-event scenes (``accuracy.txt``);
2. writes the LMAC-ZS data: captioned scenes of 1-3 events for training, single-event scenes (zero-shot evaluation)
   and two-event scenes (prompt localization in mixtures), each with the exact time-frequency support of its events;
3. trains LMAC-ZS on it with the normal recipe (``recipes/Synthetic/interpret/train.py``, Mel masking, with the
   configuration's yaml overrides);
4. evaluates the methods (all seven by default) with the eval recipe's code (faithfulness, predicted class) and
   scores their localization against the true supports (top-k% IoU, pointing game, mass in the support, average
   precision; none depends on the order of tied mask values);
5. writes ``results.csv`` / ``results.md`` (a row per method), figures of a few scenes, and an HTML report with
   listenable explanations of the two-event scene of median LMAC-ZS prompt overlap.

The configuration (:mod:`speechbrain_lmaczs.synthetic.configs`: ``default``, ``released``) sets the small CLAP's
front-end and training and LMAC-ZS's masking. Everything goes to ``results/demo`` (``--output``); steps whose
outputs exist with the same options are reused. Over several seeds: :mod:`speechbrain_lmaczs.synthetic.seeds`.

Usage: ``python -m speechbrain_lmaczs.demo [--quick] [--seed N] [--config default] [--output results/demo]``

Step 3 runs the recipe script of a checkout of the repository (``recipes/`` beside the package); an installed
package has none, so point ``--recipes`` at the ``recipes/`` folder of a checkout.
"""

import csv
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from speechbrain_lmaczs.classifier import make_prompts
from speechbrain_lmaczs.evaluation import METHODS, EvalSettings, by_method, evaluate
from speechbrain_lmaczs.export import export_run
from speechbrain_lmaczs.files import BuildStamp, atomic_write, write_json_atomic, write_text_atomic
from speechbrain_lmaczs.lmaczs.pretrained import load_trained
from speechbrain_lmaczs.synthetic.dataset import write_synthetic_dataset
from speechbrain_lmaczs.synthetic.events import EVENT_CLASSES
from speechbrain_lmaczs.synthetic.configs import CONFIGS
from speechbrain_lmaczs.synthetic.localization import localization_scores, median_overlap_scene, scene_figure
from speechbrain_lmaczs.synthetic.scenes import SceneConfig
from speechbrain_lmaczs.synthetic.small_clap_training import train_small_clap

logger = logging.getLogger(__name__)

#: The folder that holds the ``speechbrain_lmaczs`` package (a checkout's root, or site-packages once installed);
#: the recipe runs with it first on PYTHONPATH, so that it imports this very package.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

#: The recipe the demo trains LMAC-ZS with, relative to a checkout's ``recipes/`` folder.
RECIPE = Path("Synthetic", "interpret")

#: Bumped when the demo's results for the same options change (the results.options.json stamps of older versions
#: then no longer match).
DEMO_VERSION = 3

#: sizes of the full and the quick demo
PRESETS = {
    False: {"train": 600, "single": 100, "mix": 40, "epochs": 5, "ig_steps": 32, "sg_samples": 16, "figures": 3},
    True: {"train": 200, "single": 30, "mix": 10, "epochs": 8, "ig_steps": 8, "sg_samples": 4, "figures": 1},
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


def train_lmaczs(data_folder, clap_folder, output_folder, epochs, seed, recipe=None, overrides=None, stamp_options=None):
    """Run the Synthetic training recipe; ``recipe`` defaults to :func:`recipe_folder`.

    ``overrides`` (yaml key -> value) are passed to the recipe. The run is stamped (``demo_options.json``, a
    :class:`~speechbrain_lmaczs.files.BuildStamp` of the options, ``stamp_options`` included: e.g. what the data
    and the CLAP were built with): a folder trained with the same options is reused; one trained with other options
    is emptied first, so that the recipe does not resume another run's checkpoints. Returns ``(folder, reused)``.
    """
    output_folder = Path(output_folder)
    overrides = dict(overrides or {})
    recipe = recipe_folder() if recipe is None else Path(recipe)
    yaml_path = recipe / "hparams" / "lmaczs_mel.yaml"
    # the yaml's own text is part of the stamp: a run trained with other yaml defaults is not reused
    yaml_hash = hashlib.sha256(yaml_path.read_bytes()).hexdigest()[:16] if yaml_path.is_file() else None
    options = {"epochs": int(epochs), "seed": int(seed), "overrides": overrides, "built_from": stamp_options or {},
               "yaml_sha256": yaml_hash}
    stamp = BuildStamp(output_folder / "demo_options.json")
    if stamp.matches(options, output_folder / "train_log.txt") and list(output_folder.glob("save/CKPT+*")):
        logger.info("Reusing the LMAC-ZS run in %s", output_folder)
        return output_folder, True
    if output_folder.exists():
        logger.info("%s holds another or an unfinished LMAC-ZS run: training again from scratch.", output_folder)
        shutil.rmtree(output_folder)
    cmd = [
        sys.executable,
        str(recipe / "train.py"),
        str(recipe / "hparams" / "lmaczs_mel.yaml"),
        f"--data_folder={data_folder}",
        f"--clap_source={clap_folder}",
        f"--output_folder={output_folder}",
        f"--number_of_epochs={epochs}",
        f"--seed={seed}",
    ] + [f"--{key}={value}" for key, value in overrides.items()]
    logger.info("Training LMAC-ZS: %s", " ".join(cmd))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_PARENT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(cmd, check=True, env=env)
    stamp.write(options)
    return output_folder, False


def localization_inputs(data):
    """The class prompts (in classID order) and the single- and two-event scenes of a demo data folder, as
    :func:`~speechbrain_lmaczs.synthetic.localization.localization_scores` takes them."""
    classes = make_prompts([EVENT_CLASSES[i].captions[0] for i in range(len(EVENT_CLASSES))])
    scenes = {}
    for name in ("eval.json", "mix.json"):
        with open(Path(data) / name, encoding="utf-8") as f:
            scenes.update(json.load(f))
    return classes, scenes


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
        "IoU / pointing / mass_in_support / AP: single-event scenes, mask of the true event's prompt vs its exact "
        "support (top-k% IoU, k = the support's share; share of the mask's maxima in the support; share of the "
        "mask's mass in the support; average precision of the mask against the support; tied mask values never "
        "scored by their order). *_mix: each event's prompt explained in two-event scenes; mask_overlap_mix is the "
        "IoU of the two prompts' top-k% regions, to compare with support_overlap_mix (the events' own overlap). "
        "AI ... MM: faithfulness on the single-event scenes for the predicted class (eval recipe, clean condition).",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in COLUMNS) + " |" for row in rows]
    write_text_atomic(out / "results.md", "\n".join(lines) + "\n")


def run(
    output="results/demo",
    quick=False,
    seed=0,
    device="cpu",
    preset=None,
    clap_options=None,
    recipes=None,
    config="default",
    decoder_seed=None,
    methods=None,
    shared=None,
    figures=True,
):
    """Run the whole demo; returns the rows of results.csv.

    Every step reuses what an earlier call built with the same options (the small CLAP, the data splits, the
    LMAC-ZS run, each stamped with :class:`~speechbrain_lmaczs.files.BuildStamp`); a folder whose ``results.csv``
    was written with the same options as this call (``results.options.json``) is read back instead of recomputed.

    Parameters
    ----------
    output : str
        Output folder.
    quick : bool
        The quick preset (and the small CLAP's quick training).
    seed : int
        Seed of the small CLAP, the data, the evaluation and (unless ``decoder_seed``) the LMAC-ZS decoder.
    device : str
        Torch device.
    preset : dict, optional
        Sizes, overriding :data:`PRESETS` (the tests use a tiny one).
    clap_options : dict, optional
        Extra keyword arguments of :func:`train_small_clap` (e.g. a narrower architecture in tests).
    recipes : str, optional
        The ``recipes/`` folder of a checkout (see :func:`recipe_folder`); by default the one beside the package.
    config : str
        A configuration of :data:`~speechbrain_lmaczs.synthetic.configs.CONFIGS`.
    decoder_seed : int, optional
        Seed of the LMAC-ZS training alone (default: ``seed``).
    methods : list of str, optional
        Methods to evaluate (default: all of :data:`~speechbrain_lmaczs.evaluation.METHODS`, in table order).
    shared : str, optional
        Folder holding (or to hold) the small CLAP and the data (``clap/``, ``data/``); default ``output``. Runs
        that differ only by their decoder seed share them.
    figures : bool
        Write the scene figures and the HTML report.
    """
    recipe = recipe_folder(recipes)  # before any work: an installed package without --recipes fails at once
    if config not in CONFIGS:
        raise ValueError(f"config={config!r}: choose one of {sorted(CONFIGS)}.")
    methods = list(METHODS) if methods is None else [m for m in METHODS if m in methods]
    start = time.time()
    preset = dict(PRESETS[bool(quick)], **(preset or {}))
    setting = CONFIGS[config]
    decoder_seed = seed if decoder_seed is None else int(decoder_seed)
    out = Path(output)
    base = out if shared is None else Path(shared)
    out.mkdir(parents=True, exist_ok=True)
    run_options = {
        "version": DEMO_VERSION, "config": setting.options(), "seed": int(seed), "decoder_seed": decoder_seed,
        "quick": bool(quick), "preset": preset, "clap_options": clap_options or {}, "methods": methods,
        "shared": str(base.resolve()), "figures": bool(figures),
    }
    run_stamp = BuildStamp(out / "results.options.json")
    if run_stamp.matches(run_options, out / "results.csv"):
        logger.info("Reusing the results in %s", out)
        return read_rows(out / "results.csv")
    run_stamp.clear()

    logger.info("1/5 small CLAP (%s configuration)", config)
    small = train_small_clap(
        base / "clap", seed=seed, quick=quick, frontend=setting.frontend(), carve_prob=setting.carve_prob,
        **(clap_options or {}),
    )
    write_text_atomic(
        out / "accuracy.txt",
        "zero-shot accuracy of the small CLAP on held-out single-event scenes\n" f"{small.accuracy:.4f}\n",
    )

    logger.info("2/5 synthetic data")
    from speechbrain_lmaczs.clap import load_clap

    clap = load_clap("msclap", str(base / "clap"))
    data = write_data(base / "data", clap, preset, seed)

    logger.info("3/5 LMAC-ZS training")
    built_from = {
        "clap": BuildStamp(base / "clap" / "small_clap_options.json").read(),
        "data": {k: preset[k] for k in ("train", "single", "mix")}, "data_seed": int(seed),
    }
    run_folder, reused = train_lmaczs(
        data, base / "clap", out / "lmaczs", preset["epochs"], decoder_seed, recipe, setting.recipe_overrides,
        built_from,
    )
    model = load_trained(str(run_folder), device=device)

    logger.info("4/5 evaluation")
    options = {
        "ig": {"n_steps": preset["ig_steps"]},
        "smoothgrad": {"n_samples": preset["sg_samples"], "seed": seed},
    }
    # The evaluation resumes a run interrupted with the same settings and decoder; anything else starts over.
    eval_stamp = BuildStamp(out / "eval.options.json")
    eval_options = {"methods": methods, "options": options, "seed": int(seed), "lmaczs": BuildStamp(
        run_folder / "demo_options.json").read()}
    if not (reused and eval_stamp.matches(eval_options)) and (out / "eval").exists():
        shutil.rmtree(out / "eval")
    eval_stamp.write(eval_options)
    settings = EvalSettings(methods=tuple(methods), conditions=("clean",), seed=seed, interpreter_options=options)
    faithfulness = by_method(evaluate(model, str(data / "eval.json"), str(out / "eval"), settings))
    classes, scenes = localization_inputs(data)
    local = localization_scores(model, scenes, classes, methods, options, device=device)

    logger.info("5/5 tables, figures, report")
    rows = []
    for method in methods:
        row = {"method": method}
        row.update(local[method])
        row.update({k: faithfulness[method][k] for k in COLUMNS if k in faithfulness[method]})
        rows.append(row)
    info = (
        f"Configuration {config}, seed {seed} (decoder seed {decoder_seed}), {'quick' if quick else 'full'} preset "
        f"{preset}, {time.time() - start:.0f} s so far. LMAC-ZS masks {_masking(model.domain)}."
    )
    write_tables(rows, out, small.accuracy, info)
    if figures:
        write_figures_and_report(model, run_folder, scenes, classes, methods, options, preset, out)
    run_stamp.write(run_options)
    logger.info("Demo done in %.0f s: %s", time.time() - start, out / "results.csv")
    return rows


def _masking(domain):
    return f"with {domain.describe()}"


def read_rows(path):
    """The rows of a demo's ``results.csv`` (numbers as floats, empty cells as NaN)."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: (v if k == "method" else float(v) if v != "" else float("nan")) for k, v in row.items()} for row in rows]


def write_figures_and_report(model, run_folder, scenes, classes, methods, options, preset, out):
    """Figures of the first two-event scenes, and the HTML report of the one LMAC-ZS is typical on
    (:func:`~speechbrain_lmaczs.synthetic.localization.median_overlap_scene`)."""
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    mix_items = [e for e in scenes.values() if e["n_events"] == 2]
    for i, entry in enumerate(mix_items[: preset["figures"]]):
        scene_figure(model, entry, classes, methods, str(figures / f"scene_{i}.png"), options)
    entry, overlap = median_overlap_scene(model, mix_items, classes)
    logger.info("Report scene: %s (median LMAC-ZS mask overlap of the two prompts, %.3f)", entry["wav"], overlap)
    write_demo_report(run_folder, entry, out / "report")
    # The trained explainer as a hub-ready folder with its small CLAP (load it with LMACZSExplainer.from_hparams).
    export_run(run_folder, out / "explainer", include_clap=True, overwrite=True)


def write_demo_report(run_folder, entry, folder):
    """HTML report (figures + audio players) of one two-event scene, for both events' prompts."""
    from speechbrain_lmaczs.explain import Explainer
    from speechbrain_lmaczs.report import write_report

    explainer = Explainer.from_folder(str(run_folder))
    prompts = [event["prompt"] for event in entry["events"]]
    results = [explainer.explain_file(entry["wav"], prompts=prompts)]
    results.append(explainer.with_method("gradcam++").explain_file(entry["wav"], prompts=prompts))
    return write_report(results, str(folder), overwrite=True)
