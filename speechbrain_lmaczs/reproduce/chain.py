"""The reproduction as a chain of steps: data and CLAP, two trainings, the evaluations, the comparison.

``recipes/ESC50/interpret/reproduce.py`` calls :func:`main`. The steps, in order:

1. ``clap``: the CLAP checkpoint through the loader (MS-CLAP 2022 from the hub cache, downloaded when missing; a
   local path is checked; ``tiny-random`` builds a tiny model once, shared by both trainings);
2. ``esc50``, ``clotho``, ``speech`` and, when its folder exists, ``urbansound8k``: the data preparations, which
   download ESC-50, Clotho and LJSpeech into empty folders (UrbanSound8K is never downloaded);
3. ``train_mel``, ``train_stft``: the train recipe with ``lmaczs_mel.yaml`` / ``lmaczs_stft.yaml`` (the paper's
   settings: Clotho captions, Adam, lr 1e-5, batch 2, 2 epochs; ``--train_override`` changes them);
4. ``eval_<dataset>_<domain>``: the eval recipe, all seven methods on clean, mixture, white noise and speech at
   3 dB; on ESC-50 also the two sanity checks (mask mean vs similarity, cascading randomisation);
5. ``compare``: ``paper_comparison.md`` and ``paper_comparison.csv`` in the output folder.

The plan, with each step's state and estimated GPU time, is logged before anything runs. Every step is skipped
when it is done with the same options; a step that was interrupted continues where it stopped (see
:mod:`speechbrain_lmaczs.reproduce.steps`). ``--smoke`` runs the same chain offline at test size.
"""

import argparse
import csv
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from speechbrain_lmaczs.reproduce.compare import read_eval_results, write_comparison
from speechbrain_lmaczs.reproduce.estimates import (
    DISK_GB,
    EXPLAIN_FORWARDS,
    NOMINAL_ITEMS,
    evaluation_seconds,
    format_duration,
    sanity_seconds,
    training_seconds,
)
from speechbrain_lmaczs.reproduce.steps import Step, StepFailed, StepRunner, child_environment, run_command

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "ESC50" / "interpret"
SAMPLES = ROOT / "tests" / "samples"
DOMAINS = ("mel", "stft")

#: test-size settings of --smoke (tiny random CLAP, a few clips, few IG/SmoothGrad steps)
SMOKE_TRAIN = {"number_of_epochs": "1", "valid_max_clips": "2", "n_explanations": "1"}
SMOKE_EVAL = {
    "max_clips": "1",
    "batch_size": "1",
    "ig_n_steps": "2",
    "smoothgrad_n_samples": "2",
    "sanity_clips": "1",
    "sanity_prompts": "3",
}
#: the fake Clotho of --smoke: bundled speech clips with hand-written captions
SMOKE_CLOTHO = {
    "LJ050-0131.wav": ("a woman reads a sentence aloud", "a female voice speaks clearly", "someone reads a text",
                       "a woman is talking", "speech of a woman in a quiet room"),
    "spk1_snt1.wav": ("a man says a short sentence", "a male voice speaks", "a person talks briefly",
                      "a man is speaking", "short speech by a man"),
}


class ReproduceError(RuntimeError):
    """Wrong or missing arguments; the message says what to pass."""


# ------------------------------------------------------------------------------------------------ arguments
def build_parser():
    """The ``argparse`` parser of reproduce.py."""
    parser = argparse.ArgumentParser(
        prog="reproduce.py",
        description="Reproduce the LMAC-ZS paper's ESC-50 tables in one command (resumable), and compare with the "
        "paper's numbers (paper_comparison.md / .csv in --output_folder).",
    )
    parser.add_argument("--output_folder", required=True, help="where everything is written")
    parser.add_argument("--data_folder", help="ESC-50 (downloaded into it when empty or missing)")
    parser.add_argument("--clotho_folder", help="Clotho v2.1 (what is missing is downloaded; needs py7zr or 7z)")
    parser.add_argument(
        "--speech_folder",
        help="speech of the 'speech' condition: a folder of speech files, or an empty/missing folder into which "
        "LJSpeech 1.1 is downloaded (2.6 GB)",
    )
    parser.add_argument(
        "--urbansound8k_folder", help="UrbanSound8K (request form, never downloaded): evaluated when it exists"
    )
    parser.add_argument("--device", default="cuda", help="device of the recipes (default: cuda)")
    parser.add_argument("--clap_backend", default="msclap", help="CLAP backend (default: msclap, the paper's)")
    parser.add_argument(
        "--clap_source",
        default="microsoft/msclap",
        help="hub id, local CLAP_weights_2022.pth / folder, or tiny-random (default: microsoft/msclap)",
    )
    parser.add_argument("--domains", nargs="+", choices=DOMAINS, default=list(DOMAINS), help="masking domains")
    parser.add_argument(
        "--train_override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to both train.py runs as --KEY=VALUE (e.g. lr=1e-4, precision=bf16); repeatable",
    )
    parser.add_argument(
        "--eval_override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="passed to every eval.py run as --KEY=VALUE (e.g. max_clips=200, batch_size=16); repeatable",
    )
    parser.add_argument("--smoke", action="store_true", help="the whole chain offline at test size (tiny CLAP)")
    parser.add_argument("--plan_only", action="store_true", help="log the plan and stop")
    parser.add_argument("--quiet", action="store_true", help="do not echo the recipes' output (it stays in logs/)")
    return parser


def _overrides(pairs, what):
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ReproduceError(f"--{what} takes KEY=VALUE (e.g. --{what} lr=1e-4), got {pair!r}.")
        out[key] = value
    return out


def make_smoke_clotho(folder):
    """A Clotho-layout folder of a few captioned clips (bundled speech clips), for --smoke.

    Writes ``clotho_captions_development.csv`` and ``development/*.wav`` (copies of tests/samples/speech).
    """
    folder = Path(folder)
    (folder / "development").mkdir(parents=True, exist_ok=True)
    for name in SMOKE_CLOTHO:
        target = folder / "development" / name
        if not target.exists():
            shutil.copyfile(SAMPLES / "speech" / name, target)
    with open(folder / "clotho_captions_development.csv", "w", encoding="utf-8", newline="") as fout:
        writer = csv.writer(fout)
        writer.writerow(["file_name", *(f"caption_{k}" for k in range(1, 6))])
        writer.writerows([name, *captions] for name, captions in SMOKE_CLOTHO.items())
    return folder


def resolve_arguments(args):
    """Fill the --smoke defaults and check the data folders; returns the arguments to run with."""
    args.train = _overrides(args.train_override, "train_override")
    args.eval = _overrides(args.eval_override, "eval_override")
    if args.smoke:
        if not SAMPLES.is_dir():
            raise ReproduceError(f"--smoke needs the bundled test samples in {SAMPLES} (a source checkout).")
        args.data_folder = args.data_folder or str(SAMPLES / "ESC50")
        args.speech_folder = args.speech_folder or str(SAMPLES / "speech")
        args.clotho_folder = args.clotho_folder or str(
            make_smoke_clotho(Path(args.output_folder) / "smoke_data" / "clotho")
        )
        if args.clap_source == build_parser().get_default("clap_source"):
            args.clap_source = "tiny-random"
        if args.device == build_parser().get_default("device"):
            args.device = "cpu"
        args.train = {**SMOKE_TRAIN, **args.train}
        args.eval = {**SMOKE_EVAL, **args.eval}
    missing = [name for name in ("data_folder", "clotho_folder", "speech_folder") if not getattr(args, name)]
    if missing:
        raise ReproduceError(
            "Pass " + ", ".join(f"--{name}" for name in missing) + " (an empty or missing folder is downloaded "
            "into), or --smoke for the offline test-size run."
        )
    for name in ("output_folder", "data_folder", "clotho_folder", "speech_folder", "urbansound8k_folder"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    return args


# ------------------------------------------------------------------------------------------------ steps
def _is_empty(folder):
    return not os.path.isdir(folder) or not any(name for name in os.listdir(folder) if not name.startswith("."))


def _count(manifest, dataset, limit=None):
    """Items of a manifest once it exists, the dataset's nominal size before; at most ``limit``."""
    if os.path.isfile(manifest):
        with open(manifest, encoding="utf-8") as fin:
            n = len(json.load(fin))
    else:
        n = NOMINAL_ITEMS[dataset]
    return n if limit in (None, "", "null") else min(n, int(limit))


def _normalised_text(path):
    """sha256 of a yaml without its comment lines: what the recipe's settings are, not how they are explained."""
    lines = [line.rstrip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    content = "\n".join(line for line in lines if line and not line.lstrip().startswith("#"))
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _arguments(mapping):
    return [f"--{key}={value}" for key, value in mapping.items()]


def _yaml_overrides(mapping):
    """KEY=VALUE pairs as the yaml text SpeechBrain's command line turns them into (values parsed as yaml)."""
    return "".join(f"{key}: {value}\n" for key, value in mapping.items())


def eval_settings(overrides):
    """eval.yaml's settings with ``overrides`` applied (methods, conditions, step counts: what the estimate needs).

    >>> settings = eval_settings({"ig_n_steps": "4", "methods": "[ig, lmaczs]"})
    >>> settings["ig_n_steps"], settings["methods"], settings["conditions"]
    (4, ['ig', 'lmaczs'], ['clean', 'mixture', 'white_noise', 'speech'])
    """
    from hyperpyyaml import load_hyperpyyaml

    placeholders = {"data_folder": "unused", "checkpoint": "unused"}
    keys = [key for key in overrides if key not in placeholders]
    text = _yaml_overrides({**placeholders, **{key: overrides[key] for key in keys}})
    with open(RECIPE / "hparams" / "eval.yaml", encoding="utf-8") as fin:
        try:
            return load_hyperpyyaml(fin, text)
        except Exception as err:  # hyperpyyaml's errors are many (unknown key, bad yaml): all are the user's options
            raise ReproduceError(f"eval.yaml does not take these options ({type(err).__name__}: {err}).") from err


def training_epochs(yaml, overrides):
    """Epochs a training runs: the override, else the yaml's ``number_of_epochs``."""
    if "number_of_epochs" in overrides:
        return int(overrides["number_of_epochs"])
    match = re.search(r"^number_of_epochs:\s*(\d+)", Path(yaml).read_text(encoding="utf-8"), re.MULTILINE)
    return int(match.group(1))


def _download_note(folder, dataset):
    if not _is_empty(folder):
        return "present"
    disk = DISK_GB[dataset]
    return f"download {disk['download']:g} GB, {disk['unpacked']:g} GB unpacked ({disk['what']})"


def _clap_step(args, out):
    from speechbrain_lmaczs.clap import TINY_RANDOM

    if args.clap_source == TINY_RANDOM:
        folder = out / "clap"

        def build():
            from speechbrain_lmaczs.clap import load_clap

            load_clap(args.clap_backend, TINY_RANDOM, savedir=str(folder))

        options = {"backend": args.clap_backend, "source": TINY_RANDOM}
        step = Step("clap", f"build a tiny random {args.clap_backend} CLAP in {folder}", options, build,
                    outputs=(folder / "clap_config.json",), note="test size")
        return step, str(folder)
    source = os.path.abspath(args.clap_source) if os.path.exists(args.clap_source) else args.clap_source

    def fetch():
        from speechbrain_lmaczs.clap import load_clap

        model = load_clap(args.clap_backend, source)
        logger.info("CLAP %s loads: %d parameters.", source, sum(p.numel() for p in model.parameters()))

    note = "local" if os.path.exists(source) else f"hub cache; download ~{DISK_GB['clap']['download']:g} GB if missing"
    step = Step("clap", f"check/fetch the {args.clap_backend} CLAP {source}", {"backend": args.clap_backend,
                "source": source}, fetch, note=note)
    return step, source


def _data_steps(args, data):
    from speechbrain_lmaczs import data as prep

    steps = [
        Step("esc50", f"prepare ESC-50 from {args.data_folder}", {"folder": args.data_folder},
             lambda: prep.prepare_esc50(args.data_folder, str(data)), outputs=(data / "esc50.json",),
             note=_download_note(args.data_folder, "esc50")),
        Step("clotho", f"prepare Clotho from {args.clotho_folder}", {"folder": args.clotho_folder},
             lambda: prep.prepare_clotho(args.clotho_folder, str(data)), outputs=(data / "clotho.json",),
             note=_download_note(args.clotho_folder, "clotho")),
    ]
    if _is_empty(args.speech_folder):
        speech = Step("speech", f"download LJSpeech into {args.speech_folder}", {"folder": args.speech_folder},
                      lambda: prep.prepare_ljspeech(args.speech_folder, str(data)), outputs=(data / "speech.json",),
                      note=_download_note(args.speech_folder, "ljspeech"))
    else:
        speech = Step("speech", f"list the speech files of {args.speech_folder}", {"folder": args.speech_folder},
                      lambda: prep.prepare_speech(args.speech_folder, str(data)), outputs=(data / "speech.json",),
                      note="present")
    steps.append(speech)
    if args.urbansound8k_folder and os.path.isdir(args.urbansound8k_folder):
        folder = args.urbansound8k_folder
        steps.append(Step("urbansound8k", f"prepare UrbanSound8K from {folder}", {"folder": folder},
                          lambda: prep.prepare_urbansound8k(folder, str(data)),
                          outputs=(data / "urbansound8k.json",), note="present (never downloaded)"))
    elif args.urbansound8k_folder:
        logger.warning("UrbanSound8K folder %s does not exist: UrbanSound8K is left out.", args.urbansound8k_folder)
    return steps


def _train_step(args, out, domain, clap_source, upstream, echo):
    yaml = RECIPE / "hparams" / f"lmaczs_{domain}.yaml"
    folder = out / "train" / domain
    data = out / "data"
    recipe_args = {
        "data_folder": args.data_folder,
        "output_folder": str(folder),
        "eval_dataset": "manifest",
        "eval_manifest": str(data / "esc50.json"),
        "train_data": "manifest",
        "train_manifest": str(data / "clotho.json"),
        "clap_backend": args.clap_backend,
        "clap_source": clap_source,
        **args.train,
    }
    command = [sys.executable, str(RECIPE / "train.py"), str(yaml), *_arguments(recipe_args), f"--device={args.device}"]
    options = {"recipe": yaml.name, "settings": _normalised_text(yaml), "args": recipe_args, "upstream": upstream}
    pairs = _count(str(data / "clotho.json"), "clotho")
    epochs = training_epochs(yaml, args.train)
    return Step(
        f"train_{domain}",
        f"train the {domain.upper() if domain == 'stft' else 'Mel'} decoder ({yaml.name}, {epochs} epochs, "
        f"{pairs} caption pairs)",
        options,
        lambda: run_command(f"train_{domain}", command, out / "logs" / f"train_{domain}.log", child_environment(),
                            echo),
        outputs=(folder / "train_log.txt", folder / "save"),
        folder=folder,
        estimate_s=training_seconds(pairs, epochs),
        note="paper: ~1 h per Clotho epoch on a 24 GB GPU",
    )


def _eval_step(args, out, dataset, domain, train_step, echo):
    folder = out / "eval" / f"{dataset}_{domain}"
    manifest = out / "data" / f"{dataset}.json"
    sanity = dataset == "esc50"
    recipe_args = {
        "data_folder": args.data_folder,
        "checkpoint": str(train_step.folder),
        "output_folder": str(folder),
        "eval_dataset": "manifest",
        "eval_manifest": str(manifest),
        "speech_folder": args.speech_folder,
        # methods, conditions and SNR: eval.yaml's (all seven methods; clean, mixture, white noise, speech; 3 dB)
        "sanity_similarity": str(sanity),
        "sanity_randomisation": str(sanity),
        **args.eval,
    }
    command = [sys.executable, str(RECIPE / "eval.py"), str(RECIPE / "hparams" / "eval.yaml"),
               *_arguments(recipe_args), f"--device={args.device}"]
    options = {
        "settings": _normalised_text(RECIPE / "hparams" / "eval.yaml"),
        "args": recipe_args,
        "checkpoint": train_step.options,
    }
    settings = eval_settings(recipe_args)
    n_clips = _count(str(manifest), dataset, settings["max_clips"])
    # eval.py checks the names; the estimate counts the methods it knows
    methods = [m for m in settings["methods"] if m in EXPLAIN_FORWARDS]
    conditions = settings["conditions"]
    estimate = evaluation_seconds(n_clips, len(conditions), methods=methods, options=settings)
    outputs = [folder / "results.csv", folder / "results.md"]
    what = f"{len(methods)} methods x {len(conditions)} conditions on {n_clips} clips"
    checks = [name for name in ("similarity", "randomisation") if settings[f"sanity_{name}"]]
    if checks:  # an --eval_override may turn one off
        estimate += sanity_seconds(settings["sanity_clips"], settings["sanity_prompts"], options=settings)
        outputs += [folder / f"sanity_{name}.csv" for name in checks]
        what += f" + the sanity check{'s' if len(checks) > 1 else ''} ({', '.join(checks)})"
    return Step(
        f"eval_{dataset}_{domain}",
        f"evaluate the {'STFT' if domain == 'stft' else 'Mel'} decoder on {dataset}: {what}",
        options,
        lambda: run_command(f"eval_{dataset}_{domain}", command, out / "logs" / f"eval_{dataset}_{domain}.log",
                            child_environment(), echo),
        outputs=tuple(outputs),
        folder=folder,
        estimate_s=estimate,
        note="throughput bound (docs/performance.md ratios, 4,330 CNN14 forwards/s)",
    )


def _compare_step(args, out, eval_steps):
    """``eval_steps``: {(dataset, domain): its evaluation step}."""
    runs = {key: str(step.folder) for key, step in eval_steps.items()}
    eval_steps = list(eval_steps.values())
    notes = [
        f"CLAP: `{args.clap_backend}` from `{args.clap_source}`; device `{args.device}`.",
        f"Training overrides: `{json.dumps(args.train)}`; evaluation overrides: `{json.dumps(args.eval)}`.",
        "Evaluation runs: " + ", ".join(f"`{folder}`" for folder in runs.values()) + ".",
    ]
    if args.smoke:
        notes.insert(0, "**SMOKE RUN** (tiny random CLAP, a few bundled clips): the numbers mean nothing; this "
                        "file only proves the chain.")

    def compare():
        results, similarity, randomisation = read_eval_results(runs)
        _, claims = write_comparison(str(out), results, similarity, randomisation, notes)
        verdicts = {v: sum(c["verdict"] == v for c in claims) for v in ("held", "not held", "not measured")}
        logger.info("Claims: %s. See %s.", verdicts, out / "paper_comparison.md")

    options = {"evaluations": {s.name: s.options for s in eval_steps}, "notes": notes}
    return Step("compare", "write paper_comparison.md and paper_comparison.csv", options, compare,
                outputs=(out / "paper_comparison.md", out / "paper_comparison.csv"))


def build_steps(args):
    """The steps of the chain, in order, for resolved arguments."""
    out = Path(args.output_folder)
    echo = not args.quiet
    clap, clap_source = _clap_step(args, out)
    data_steps = _data_steps(args, out / "data")
    by_name = {s.name: s for s in data_steps}
    train_steps = {
        domain: _train_step(
            args, out, domain, clap_source,
            {name: by_name[name].options for name in ("esc50", "clotho")} | {"clap": clap.options},
            echo,
        )
        for domain in args.domains
    }
    datasets = ["esc50"] + (["urbansound8k"] if "urbansound8k" in by_name else [])
    eval_steps = {
        (dataset, domain): _eval_step(args, out, dataset, domain, train_steps[domain], echo)
        for dataset in datasets
        for domain in args.domains
    }
    return [clap, *data_steps, *train_steps.values(), *eval_steps.values(), _compare_step(args, out, eval_steps)]


def log_plan(runner, steps):
    """Log each step with its state and estimated GPU time; returns the estimated seconds still to run."""
    width = max(len(s.name) for s in steps)
    logger.info("Plan (GPU times are ESTIMATES from benchmarks/ and the paper, not measurements):")
    remaining = 0.0
    for step in steps:
        status = runner.status(step)
        if status != "done" and step.estimate_s is not None:
            remaining += step.estimate_s
        note = f" [{step.note}]" if step.note else ""
        logger.info(
            "  %-*s  %-30s  est. %-7s  %s%s", width, step.name, status, format_duration(step.estimate_s),
            step.description, note,
        )
    logger.info("Estimated GPU time still to run: %s (estimate).", format_duration(remaining))
    return remaining


# ------------------------------------------------------------------------------------------------ entry point
def _setup_logging(output_folder):
    """Log to stderr and to ``<output_folder>/reproduce.log`` (appended); returns the handlers added."""
    os.makedirs(output_folder, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers = [logging.StreamHandler(), logging.FileHandler(os.path.join(output_folder, "reproduce.log"))]
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    return handlers


def main(argv=None):
    """Run the reproduction (see the module doc); returns the exit status."""
    from speechbrain_lmaczs.clap import CLAPLoadError
    from speechbrain_lmaczs.data import DataPrepError

    args = build_parser().parse_args(argv)
    handlers = _setup_logging(args.output_folder)
    try:
        args = resolve_arguments(args)
        runner = StepRunner(args.output_folder)
        steps = build_steps(args)
        log_plan(runner, steps)
        if args.plan_only:
            return 0
        for step in steps:
            runner.run(step)
        logger.info("Done: %s and %s", Path(args.output_folder) / "paper_comparison.md",
                    Path(args.output_folder) / "paper_comparison.csv")
        return 0
    except (ReproduceError, StepFailed, DataPrepError, CLAPLoadError) as err:
        logger.error("%s", err)
        return 1
    finally:
        for handler in handlers:
            logging.getLogger().removeHandler(handler)
            handler.close()
