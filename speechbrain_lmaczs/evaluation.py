"""Head-to-head evaluation of interpreters of a zero-shot CLAP classifier (the LMAC-ZS paper's tables).

Every method explains the SAME zero-shot classifier on the SAME representation ``X`` (the masking domain of the
trained LMAC-ZS checkpoint), for the same target (the zero-shot decision ``c^``, or one fixed prompt), with the
same temperature (the checkpoint's logit scale). For each clip, ``p``, ``o`` and ``q`` are the softmax outputs of
the classifier on ``X``, ``M * X`` and ``(1 - M) * X``; :func:`~speechbrain_lmaczs.metrics.faithfulness_metrics`
turns them into the paper's metrics. Each contamination condition (clean, mixture, white noise, speech at a given
SNR) is deterministic per clip, so every method sees the same contaminated input.

Files written to the output folder:

- ``results.csv``: one row per (method, condition): the metric means, the zero-shot ``accuracy`` (percent),
  ``n_clips``, ``n_nonfinite`` (clips with a non-finite metric, left out of the means), ``seconds_per_clip``
  (explanation time) and ``forward_ratio`` (explanation time over one classification forward of the same batch);
- ``per_clip.csv``: every metric of every clip, with method, condition, clip id, label, predicted and explained
  class; rows are written as they come, so memory does not grow with the dataset;
- ``results.md``: the table in the paper's layout, with the AD variant, each method's mask normalisation and the
  cost of each method;
- ``eval_state.json``: the settings the results were computed with (a restart with other settings is refused);
- with the sanity checks on: ``sanity_similarity.csv`` / ``_points.csv`` / ``.png`` (mask mean vs audio-prompt
  similarity, Pearson r per method) and ``sanity_randomisation.csv`` / ``.png`` (cascading randomisation of the
  audio encoder, SSIM between the original and the new explanation per randomised block).

Resuming: ``results.csv`` is the record of finished pairs; it is rewritten (atomically) only after a pair's
per-clip rows are on disk. A restarted run skips the pairs it lists and first drops from ``per_clip.csv`` every row
of a pair it does not list (the pair that was interrupted), so no row is ever duplicated.
"""

import csv
import dataclasses
import hashlib
import itertools
import json
import logging
import math
import os
import tempfile
import time

import torch
from tqdm import tqdm

from speechbrain_lmaczs.classifier import DEFAULT_TEMPLATE, make_prompts
from speechbrain_lmaczs.data import (
    CONDITIONS,
    Contaminator,
    class_names,
    make_dataset,
    prepare_ljspeech,
    prepare_speech,
)
from speechbrain_lmaczs.data.contamination import clip_generator
from speechbrain_lmaczs.interpreters import INTERPRETERS, build_interpreter
from speechbrain_lmaczs.metrics import METRIC_NAMES, MetricAccumulator, faithfulness_metrics, zero_shot_accuracy
from speechbrain_lmaczs.recipe import prepare_eval_manifest, subset
from speechbrain_lmaczs.sanity import PearsonAccumulator, cascading_randomization, ssim

logger = logging.getLogger(__name__)

#: every method the evaluation knows, in table order (the paper's, with the appendix CAMs before LMAC-ZS)
METHODS = ("gradcam", "gradcam++", "smoothgrad", "ig", "scorecam", "gscorecam", "lmaczs")
#: names used in results.md
DISPLAY_NAMES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAM++",
    "smoothgrad": "SmoothGrad",
    "ig": "IG",
    "scorecam": "ScoreCAM",
    "gscorecam": "GScoreCAM",
    "lmaczs": "LMAC-ZS",
}
#: per-clip values averaged per (method, condition): the paper's metrics and the zero-shot accuracy
VALUE_NAMES = METRIC_NAMES + ("accuracy",)
#: columns of results.csv
RESULT_COLUMNS = ("method", "condition") + VALUE_NAMES + (
    "n_clips",
    "n_nonfinite",
    "seconds_per_clip",
    "forward_ratio",
)
#: identifying columns of per_clip.csv, followed by :data:`VALUE_NAMES`
PER_CLIP_KEYS = ("method", "condition", "id", "label", "predicted", "target")
PER_CLIP_COLUMNS = PER_CLIP_KEYS + VALUE_NAMES

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
PER_CLIP_CSV = "per_clip.csv"
STATE_JSON = "eval_state.json"

#: AD variants, as results.md states them
AD_VARIANTS = {
    False: "the paper's formula, 100 * max(0, p_c - o_c) / p_c on the probabilities (no second softmax)",
    True: "SpeechBrain L-MAC's legacy variant (a second softmax over the probabilities before the formula)",
}

#: the encoder blocks the cascading randomisation re-initialises, top first, per CLAP backend (relative to the clap)
RANDOMISATION_BLOCKS = {
    # CNN14 of MS-CLAP 2022: conv_block6 (next to the embedding) down to conv_block1.
    "msclap": lambda clap: [f"audio_encoder.base.conv_block{i}" for i in range(6, 0, -1)],
    # HTSAT of transformers' ClapModel: its Swin stages, last first.
    "laion": lambda clap: [
        f"model.audio_model.audio_encoder.layers.{i}" for i in reversed(range(len(clap.audio_encoder.layers)))
    ],
}


@dataclasses.dataclass
class EvalSettings:
    """What an evaluation runs and how.

    Parameters
    ----------
    methods : sequence of str
        Interpreters to compare (:data:`METHODS`).
    conditions : sequence of str
        Contamination conditions (``"clean"``, ``"mixture"``, ``"white_noise"``, ``"speech"``).
    snr_db : float
        Signal-to-contaminant ratio of the contaminated conditions (paper: 3 dB).
    seed : int
        Seeds the contamination of each clip, the choice of clips (``max_clips``) and of the sanity prompts.
    batch_size : int
        Clips per batch.
    max_clips : int, optional
        Evaluate a seeded subset of this many clips (None: all).
    max_batches : int, optional
        Stop each (method, condition) after this many batches (SpeechBrain's ``--debug``); None: no limit.
    num_workers : int
        Data loading workers.
    target_prompt : str, optional
        None explains each clip's zero-shot decision ``c^``. A prompt explains that prompt for every clip; if it
        is not one of the class prompts it is added to them as one more class, so ``p``, ``o`` and ``q`` (and the
        metrics) are over the class prompts plus this prompt, while the accuracy stays over the class prompts.
    interpreter_options : dict
        Method name -> keyword arguments of its constructor (e.g. ``{"ig": {"n_steps": 50}}``).
    legacy_double_softmax : bool
        AD variant (see :func:`~speechbrain_lmaczs.metrics.average_drop`); False is the paper's formula.
    sanity_similarity, sanity_randomisation : bool
        Run the mask-mean-vs-similarity check / the cascading randomisation check after the main table.
    sanity_methods : sequence of str
        Methods the sanity checks explain (the paper shows GradCAM++ and LMAC-ZS).
    sanity_clips : int
        Clean clips the sanity checks use (the first ones of the evaluated set).
    sanity_prompts : int
        Prompts per clip in the similarity check: the predicted class and seeded random others.
    """

    methods: tuple = METHODS
    conditions: tuple = CONDITIONS
    snr_db: float = 3.0
    seed: int = 0
    batch_size: int = 8
    max_clips: int = None
    max_batches: int = None
    num_workers: int = 0
    target_prompt: str = None
    interpreter_options: dict = dataclasses.field(default_factory=dict)
    legacy_double_softmax: bool = False
    sanity_similarity: bool = False
    sanity_randomisation: bool = False
    sanity_methods: tuple = ("gradcam++", "lmaczs")
    sanity_clips: int = 8
    sanity_prompts: int = 5

    def __post_init__(self):
        self.methods = _names(self.methods, METHODS, "methods")
        self.conditions = _names(self.conditions, CONDITIONS, "conditions")
        self.sanity_methods = _names(self.sanity_methods, METHODS, "sanity_methods")
        for name in ("batch_size", "sanity_clips", "sanity_prompts"):
            setattr(self, name, _positive_int(getattr(self, name), name))
        for name in ("max_clips", "max_batches"):
            if getattr(self, name) is not None:
                setattr(self, name, _positive_int(getattr(self, name), name))
        if isinstance(self.num_workers, bool) or int(self.num_workers) != self.num_workers or self.num_workers < 0:
            raise ValueError(f"num_workers must be an int >= 0, got {self.num_workers!r}.")
        if not math.isfinite(float(self.snr_db)):
            raise ValueError(f"snr_db must be a finite number of dB, got {self.snr_db!r}.")
        prompt = self.target_prompt
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise ValueError(f"target_prompt must be null or a non-empty prompt, got {self.target_prompt!r}.")
        options = dict(self.interpreter_options or {})
        unknown = sorted(set(options) - set(METHODS))
        if unknown:
            raise ValueError(f"interpreter_options has entries for unknown methods {unknown}: use {list(METHODS)}.")
        for name, value in options.items():
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"interpreter_options[{name!r}] must be a mapping of options, got {value!r}.")
        if options.get("lmaczs"):
            raise ValueError("lmaczs takes no interpreter options (its decoder comes from the checkpoint).")
        self.interpreter_options = {name: dict(value or {}) for name, value in options.items()}

    def options(self, method):
        """Constructor options of ``method``."""
        return dict(self.interpreter_options.get(method, {}))

    def fingerprint(self):
        """The settings that change the numbers of a finished (method, condition) pair.

        The lists of methods and conditions, the batch size, the workers and the sanity checks are left out: a
        restart may add pairs or checks to an output folder, but never mix numbers computed differently.
        """
        return {
            "snr_db": float(self.snr_db),
            "seed": int(self.seed),
            "max_clips": self.max_clips,
            "max_batches": self.max_batches,
            "target_prompt": self.target_prompt,
            "interpreter_options": {name: self.options(name) for name in sorted(self.interpreter_options)},
            "legacy_double_softmax": bool(self.legacy_double_softmax),
        }

    @classmethod
    def from_hparams(cls, hparams, max_batches=None):
        """Settings from an ``eval.yaml`` (see recipes/ESC50/interpret/hparams/eval.yaml)."""
        return cls(
            methods=hparams["methods"],
            conditions=hparams["conditions"],
            snr_db=hparams["snr_db"],
            seed=hparams["seed"],
            batch_size=hparams["batch_size"],
            max_clips=hparams["max_clips"],
            max_batches=max_batches,
            num_workers=hparams["num_workers"],
            target_prompt=hparams["target_prompt"],
            interpreter_options=hparams["interpreter_options"],
            legacy_double_softmax=hparams["legacy_double_softmax"],
            sanity_similarity=hparams["sanity_similarity"],
            sanity_randomisation=hparams["sanity_randomisation"],
            sanity_methods=hparams["sanity_methods"],
            sanity_clips=hparams["sanity_clips"],
            sanity_prompts=hparams["sanity_prompts"],
        )


def _names(values, known, what):
    if isinstance(values, str):
        raise TypeError(f"{what} must be a list of names, not one string: use [{values}].")
    values = tuple(values)
    unknown = [v for v in values if v not in known]
    if unknown:
        raise ValueError(f"Unknown {what} {unknown}: use some of {list(known)}.")
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a name twice: {list(values)}.")
    return values


def _positive_int(value, name):
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return int(value)


# ------------------------------------------------------------------------------------------------ data preparation
def prepare_evaluation_data(hparams):
    """Manifests of the evaluation set and, when the ``speech`` condition is asked for, of the speech pool.

    The speech pool is every WAV/FLAC/OGG under ``speech_folder`` (searched recursively) or, when that is null,
    LJSpeech in ``ljspeech_folder`` (downloaded there when the folder is empty). Idempotent: call it through
    ``run_on_main`` and again on every process to get the paths.

    Returns
    -------
    dict
        ``{"eval": path, "speech": path or None}``.
    """
    manifests = {"eval": prepare_eval_manifest(hparams), "speech": None}
    if "speech" in hparams["conditions"]:
        save = hparams["manifest_folder"]
        if hparams["speech_folder"] not in (None, ""):
            manifests["speech"] = prepare_speech(hparams["speech_folder"], save)
        else:
            manifests["speech"] = prepare_ljspeech(hparams["ljspeech_folder"], save)
    return manifests


def clap_overrides(hparams):
    """Overrides of the checkpoint's CLAP settings: the non-null ``clap_backend`` / ``clap_source`` of the yaml."""
    overrides = {"clap_backend": hparams["clap_backend"], "clap_source": hparams["clap_source"]}
    return {key: value for key, value in overrides.items() if value not in (None, "")}


def run_evaluation(hparams, manifests, device="cpu", max_batches=None):
    """Load the checkpoint named by ``hparams["checkpoint"]`` and run :func:`evaluate` as the yaml says.

    Parameters
    ----------
    hparams : dict
        The loaded ``eval.yaml``.
    manifests : dict
        Output of :func:`prepare_evaluation_data`.
    device : str
        Where models and data go.
    max_batches : int, optional
        Batches per (method, condition) (``--debug``); None: all.

    Returns
    -------
    list of dict
        The rows of ``results.csv``.
    """
    from speechbrain_lmaczs.lmaczs.pretrained import load_trained

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Every process would write the same result files; the evaluation is sequential by design (resumable).
        raise RuntimeError("eval.py runs as one process: start it with python, not torchrun (use --device=cuda:N).")
    checkpoint = hparams["checkpoint"]
    overrides = clap_overrides(hparams)
    model = load_trained(checkpoint, overrides=overrides, device=device)
    return evaluate(
        model,
        manifests["eval"],
        hparams["output_folder"],
        EvalSettings.from_hparams(hparams, max_batches=max_batches),
        speech_manifest=manifests["speech"],
        template=hparams["prompt_template"],
        device=device,
        provenance={"checkpoint": os.path.abspath(checkpoint), "clap_overrides": overrides},
    )


# ------------------------------------------------------------------------------------------------ building blocks
def make_interpreter(method, classifier, model, options=None):
    """The interpreter ``method`` of ``classifier``; ``"lmaczs"`` uses ``model``'s trained decoder."""
    if method == "lmaczs":
        if options:
            raise ValueError(f"lmaczs takes no options, got {sorted(options)}.")
        return model.interpreter(classifier)
    if method not in INTERPRETERS:
        raise ValueError(f"Unknown method {method!r}: use one of {list(METHODS)}.")
    return build_interpreter(method, classifier, **(options or {}))


def randomisation_blocks(clap):
    """Names of the audio encoder's blocks, top first, as submodules of a classifier (``clap.<...>``).

    >>> from speechbrain_lmaczs.clap import load_clap
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> randomisation_blocks(load_clap("msclap", "tiny-random", savedir=folder.name))[:2]
    ['clap.audio_encoder.base.conv_block6', 'clap.audio_encoder.base.conv_block5']
    >>> folder.cleanup()
    """
    if clap.name not in RANDOMISATION_BLOCKS:
        raise ValueError(
            f"No randomisation blocks known for the CLAP backend {clap.name!r}: add them to RANDOMISATION_BLOCKS."
        )
    return [f"clap.{name}" for name in RANDOMISATION_BLOCKS[clap.name](clap)]


def block_label(name):
    """Short name of a randomised block for tables and plots.

    >>> block_label("clap.audio_encoder.base.conv_block6"), block_label("clap.model.audio_model.audio_encoder.layers.3")
    ('conv_block6', 'layers.3')
    """
    parts = name.split(".")
    return ".".join(parts[-2:]) if parts[-1].isdigit() else parts[-1]


def _sync(device):
    # CUDA kernels run asynchronously: without a sync the clock would stop before the work is done.
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed(start, device):
    _sync(device)
    return time.perf_counter() - start


class _Timing:
    """Explanation and forward seconds of a (method, condition); the first batch is a warm-up when others follow.

    The first batch pays for lazy imports (pytorch-grad-cam), allocator growth and kernel selection, none of which
    is the cost of the method.
    """

    def __init__(self):
        self.first = None
        self.explain = 0.0
        self.forward = 0.0
        self.clips = 0

    def add(self, explain_s, forward_s, n_clips):
        if self.first is None:
            self.first = (explain_s, forward_s, n_clips)
            return
        self.explain += explain_s
        self.forward += forward_s
        self.clips += n_clips

    def result(self):
        """(seconds per clip, explanation time / forward time)."""
        explain, forward, clips = (self.explain, self.forward, self.clips) if self.clips else self.first
        return explain / clips, explain / max(forward, 1e-12)


class _Setup:
    """What every (method, condition) pair shares: the classifier, its prompts and the explained target."""

    def __init__(self, model, manifest, settings, template, device):
        self.model = model
        self.domain = model.domain
        self.labels = class_names(manifest)
        self.n_classes = len(self.labels)
        prompts = make_prompts(self.labels, template)
        self.target_index = None
        self.target_name = None
        if settings.target_prompt is not None:
            if settings.target_prompt not in prompts:
                prompts = prompts + [settings.target_prompt]
            self.target_index = prompts.index(settings.target_prompt)
            self.target_name = settings.target_prompt
        self.classifier = model.classifier(prompts).to(device)
        self.prompts = prompts

    def targets(self, logits):
        """(batch,) explained class: the decision over the class prompts, or the fixed prompt's index."""
        if self.target_index is None:
            return logits[:, : self.n_classes].argmax(dim=-1)
        return torch.full((logits.shape[0],), self.target_index, dtype=torch.long, device=logits.device)

    def target_names(self, targets):
        return [self.labels[i] if i < self.n_classes else self.target_name for i in targets.tolist()]

    def describe(self, settings, device):
        """Facts results.md states about the classifier and protocol."""
        scale = float(self.classifier.scale)
        return {
            "backend": self.model.clap.name,
            "domain": type(self.domain).__name__,
            "n_classes": self.n_classes,
            "template_example": self.prompts[0],
            "temperature": scale,
            "use_logit_scale": bool(self.classifier.use_logit_scale),
            "target": "the zero-shot decision c^ (argmax p)"
            if settings.target_prompt is None
            else f"the fixed prompt {settings.target_prompt!r}",
            "device": str(device),
        }


def _dataset(setup, settings, manifest, condition, speech_manifest):
    clap = setup.model.clap
    contaminator = None
    if condition != "clean":
        pool = {"mixture": manifest, "speech": speech_manifest}.get(condition)
        contaminator = Contaminator(
            condition, settings.snr_db, clap.sample_rate, clap.clip_samples, pool=pool, seed=settings.seed
        )
    return make_dataset(
        subset(manifest, settings.max_clips, settings.seed),
        clap.sample_rate,
        clap.clip_samples,
        labels=setup.labels,
        contaminator=contaminator,
    )


def _batches(dataset, settings):
    from speechbrain.dataio.dataloader import make_dataloader

    loader = make_dataloader(dataset, batch_size=settings.batch_size, num_workers=settings.num_workers)
    total = len(loader) if settings.max_batches is None else min(len(loader), settings.max_batches)
    return itertools.islice(loader, total), total


def _timed(classifier, x, device):
    """Logits of ``x`` and the seconds the forward took."""
    _sync(device)
    start = time.perf_counter()
    logits = classifier(x)
    return logits, _elapsed(start, device)


def evaluate_pair(setup, method, condition, interpreter, dataset, settings, row_writer, device, flush=None):
    """Metrics of one (method, condition) over ``dataset``, streamed.

    Returns
    -------
    dict
        The results.csv row.
    """
    classifier, domain = setup.classifier, setup.domain
    accumulator = MetricAccumulator(VALUE_NAMES, row_writer=row_writer)
    timing = _Timing()
    batches, total = _batches(dataset, settings)
    for batch in tqdm(batches, total=total, desc=f"{method} | {condition}", unit="batch", dynamic_ncols=True):
        with torch.no_grad():
            x = domain.representation(batch.wav.data.to(device))
            logits, forward_p = _timed(classifier, x, device)
        targets = setup.targets(logits)
        _sync(device)
        start = time.perf_counter()
        masks = interpreter.explain(x, targets)
        explain_s = _elapsed(start, device)
        with torch.no_grad():
            p = torch.softmax(logits, dim=-1)
            logits_in, forward_o = _timed(classifier, domain.apply_mask(x, masks), device)
            logits_out, forward_q = _timed(classifier, domain.apply_mask(x, 1.0 - masks), device)
            o, q = torch.softmax(logits_in, dim=-1), torch.softmax(logits_out, dim=-1)
        # The reference is the median of the batch's three classification forwards (X, M*X, (1-M)*X): same cost,
        # and one busy moment of a shared machine does not skew the ratio.
        timing.add(explain_s, sorted((forward_p, forward_o, forward_q))[1], x.shape[0])
        values = faithfulness_metrics(p, o, q, masks, targets, legacy_double_softmax=settings.legacy_double_softmax)
        labels = torch.as_tensor(batch.label).to(device)
        values["accuracy"] = zero_shot_accuracy(logits[:, : setup.n_classes], labels)
        predicted = logits[:, : setup.n_classes].argmax(dim=-1)
        n = x.shape[0]
        accumulator.update(
            values,
            extra={
                "method": [method] * n,
                "condition": [condition] * n,
                "id": list(batch.id),
                "label": list(batch.class_string),
                "predicted": [setup.labels[i] for i in predicted.tolist()],
                "target": setup.target_names(targets),
            },
        )
        if flush is not None:
            flush()
    summary = accumulator.summary()
    seconds_per_clip, forward_ratio = timing.result()
    row = {"method": method, "condition": condition}
    row.update({name: summary[name] for name in VALUE_NAMES})
    row.update(
        n_clips=summary["n"],
        n_nonfinite=summary["n_nonfinite"],
        seconds_per_clip=seconds_per_clip,
        forward_ratio=forward_ratio,
    )
    return row


# ------------------------------------------------------------------------------------------------ files and resume
def _atomic_write(path, write):
    """Write through a temporary file in the same folder and rename it: a crash never leaves half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as fout:
            write(fout)
            fout.flush()
            os.fsync(fout.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_json(path, data):
    _atomic_write(path, lambda f: json.dump(data, f, indent=2, sort_keys=True))


def read_results(path):
    """Rows of a ``results.csv`` (numbers as floats, ``n_clips``/``n_nonfinite`` as ints); [] when absent."""
    if not os.path.isfile(path):
        return []
    with open(path, encoding="utf-8", newline="") as fin:
        reader = csv.DictReader(fin)
        if tuple(reader.fieldnames or ()) != RESULT_COLUMNS:
            raise ValueError(
                f"{path} has columns {reader.fieldnames}, not {list(RESULT_COLUMNS)}: it was not written by this "
                "evaluation. Use another output_folder."
            )
        rows = []
        for row in reader:
            for key in RESULT_COLUMNS[2:]:
                row[key] = int(row[key]) if key in ("n_clips", "n_nonfinite") else float(row[key])
            rows.append(row)
    return rows


def _sort_key(row):
    return (CONDITIONS.index(row["condition"]), METHODS.index(row["method"]))


def _write_results(path, rows):
    def write(fout):
        writer = csv.DictWriter(fout, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        for row in sorted(rows, key=_sort_key):
            writer.writerow({key: row[key] for key in RESULT_COLUMNS})

    _atomic_write(path, write)


def _keep_finished_rows(path, finished):
    """Drop the per-clip rows of every pair not in ``finished`` (an interrupted one), streaming the file."""
    if not os.path.isfile(path):
        return 0
    dropped = 0

    def write(fout):
        nonlocal dropped
        writer = csv.writer(fout)
        with open(path, encoding="utf-8", newline="") as fin:
            reader = csv.reader(fin)
            header = next(reader, None)
            if header is None:
                return
            if tuple(header) != PER_CLIP_COLUMNS:
                raise ValueError(
                    f"{path} has columns {header}, not {list(PER_CLIP_COLUMNS)}: it was not written by this "
                    "evaluation. Use another output_folder."
                )
            writer.writerow(header)
            for row in reader:
                # A row cut short by a crash belongs to the unfinished pair and goes too.
                if len(row) == len(header) and (row[0], row[1]) in finished:
                    writer.writerow(row)
                else:
                    dropped += 1

    _atomic_write(path, write)
    return dropped


def _load_state(output_folder, fingerprint, has_results):
    """The state of a previous run in ``output_folder`` (checked against ``fingerprint``), or a fresh one."""
    state_path = os.path.join(output_folder, STATE_JSON)
    results_path = os.path.join(output_folder, RESULTS_CSV)
    if not has_results:
        # Nothing finished yet: whatever an earlier attempt used, nothing computed with it is kept.
        return {"settings": fingerprint, "normalisation": {}}
    if not os.path.isfile(state_path):
        if os.path.isfile(results_path):
            raise ValueError(
                f"{results_path} exists but {STATE_JSON} does not, so its settings are unknown: use another "
                "output_folder, or delete results.csv and per_clip.csv to start over."
            )
        return {"settings": fingerprint, "normalisation": {}}
    with open(state_path, encoding="utf-8") as fin:
        state = json.load(fin)
    # JSON turns tuples into lists: compare in JSON form.
    wanted, stored = json.loads(json.dumps(fingerprint)), state["settings"]
    if stored != wanted:
        changed = sorted(key for key in set(stored) | set(wanted) if stored.get(key) != wanted.get(key))
        raise ValueError(
            f"{output_folder} holds results computed with other settings (changed: {changed}). Use another "
            f"output_folder, or delete {RESULTS_CSV}, {PER_CLIP_CSV} and {STATE_JSON} there to start over."
        )
    return state


# ------------------------------------------------------------------------------------------------ the evaluation
def evaluate(
    model,
    manifest,
    output_folder,
    settings=None,
    speech_manifest=None,
    template=DEFAULT_TEMPLATE,
    device="cpu",
    provenance=None,
):
    """Evaluate every (method, condition) pair of ``settings`` and write the result files (see the module doc).

    Parameters
    ----------
    model : TrainedLMACZS
        The CLAP, masking domain and trained decoder (:func:`~speechbrain_lmaczs.lmaczs.pretrained.load_trained`);
        its classifier is the one every method explains.
    manifest : str or dict
        Labelled evaluation manifest (also the pool of the ``mixture`` condition).
    output_folder : str
        Where the files go; a previous run's finished pairs there are skipped.
    settings : EvalSettings, optional
        Defaults: every method and condition, paper-like interpreter settings.
    speech_manifest : str or dict, optional
        Pool of the ``speech`` condition.
    template : str
        Prompt template of the class prompts.
    device : str
        Where the data goes (the model must already be there).
    provenance : dict, optional
        Facts that identify the classifier (e.g. the checkpoint path); part of the resume check.

    Returns
    -------
    list of dict
        The rows of ``results.csv`` (finished pairs, this run's and earlier ones).
    """
    settings = settings if settings is not None else EvalSettings()
    if "speech" in settings.conditions and speech_manifest is None:
        raise ValueError(
            "The speech condition needs speech recordings: pass speech_manifest (eval.py: speech_folder, or "
            "ljspeech_folder), or leave speech out of the conditions."
        )
    os.makedirs(output_folder, exist_ok=True)
    model.eval()
    setup = _Setup(model, manifest, settings, template, device)
    fingerprint = dict(
        settings.fingerprint(), provenance=provenance or {}, data=_data_digest(setup, manifest, settings)
    )
    results_path = os.path.join(output_folder, RESULTS_CSV)
    per_clip_path = os.path.join(output_folder, PER_CLIP_CSV)
    rows = read_results(results_path)
    state = _load_state(output_folder, fingerprint, has_results=bool(rows))
    finished = {(row["method"], row["condition"]) for row in rows}
    dropped = _keep_finished_rows(per_clip_path, finished)
    if dropped:
        logger.info("Dropped %d per-clip rows of an interrupted (method, condition) pair.", dropped)
    _write_json(os.path.join(output_folder, STATE_JSON), state)

    info = setup.describe(settings, device)
    # Built once, before any clip: a wrong option fails now, not after hours of other methods.
    interpreters = {
        method: make_interpreter(method, setup.classifier, model, settings.options(method))
        for method in settings.methods
    }
    logger.info(
        "Evaluating %s under %s on %s (temperature %.4g)",
        list(settings.methods),
        list(settings.conditions),
        device,
        info["temperature"],
    )
    new_file = not os.path.isfile(per_clip_path) or os.path.getsize(per_clip_path) == 0
    with open(per_clip_path, "a", encoding="utf-8", newline="") as per_clip:
        writer = csv.DictWriter(per_clip, fieldnames=PER_CLIP_COLUMNS)
        if new_file:
            writer.writeheader()
        for condition in settings.conditions:
            todo = [m for m in settings.methods if (m, condition) not in finished]
            skipped = [m for m in settings.methods if (m, condition) in finished]
            if skipped:
                logger.info("%s: %s already in %s, skipped.", condition, skipped, RESULTS_CSV)
            if not todo:
                continue
            dataset = _dataset(setup, settings, manifest, condition, speech_manifest)
            for method in todo:
                interpreter = interpreters[method]
                row = evaluate_pair(
                    setup, method, condition, interpreter, dataset, settings, writer, device, flush=per_clip.flush
                )
                # Commit order: per-clip rows on disk, then the state, then results.csv (the record of the pair).
                per_clip.flush()
                os.fsync(per_clip.fileno())
                state["normalisation"][method] = interpreter.normalisation
                _write_json(os.path.join(output_folder, STATE_JSON), state)
                rows.append(row)
                finished.add((method, condition))
                _write_results(results_path, rows)
                write_markdown(os.path.join(output_folder, RESULTS_MD), rows, state["normalisation"], info, settings)
                logger.info(
                    "%s | %s: %s", method, condition, {k: round(row[k], 4) for k in VALUE_NAMES + ("seconds_per_clip",)}
                )
    if settings.sanity_similarity:
        similarity_check(setup, manifest, settings, output_folder, device)
    if settings.sanity_randomisation:
        randomisation_check(setup, manifest, settings, output_folder, device)
    write_markdown(os.path.join(output_folder, RESULTS_MD), rows, state["normalisation"], info, settings)
    return sorted(rows, key=_sort_key)


def _data_digest(setup, manifest, settings):
    """Digest of the evaluated clips, their labels and the prompts: another dataset never mixes into old results."""
    clips = subset(manifest, settings.max_clips, settings.seed)
    content = json.dumps(
        {"clips": sorted((key, entry.get("class_string")) for key, entry in clips.items()), "prompts": setup.prompts}
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------ results.md
def _format(name, value):
    if isinstance(value, float) and not math.isfinite(value):
        return "n/a"
    if name in ("AI", "AD", "AG", "COMP", "accuracy"):
        return f"{value:.2f}"
    return f"{value:.3f}"


def write_markdown(path, rows, normalisation, info, settings):
    """results.md: the paper's table layout (one block per condition), normalisations, AD variant and cost."""
    rows = sorted(rows, key=_sort_key)
    lines = [
        "# Faithfulness of explanations of a zero-shot CLAP classifier",
        "",
        f"- Classifier: CLAP `{info['backend']}`, {info['n_classes']} class prompts "
        f"(e.g. \"{info['template_example']}\"), "
        + (
            f"logits = {info['temperature']:.4g} (the checkpoint's exp(logit_scale)) x cosine"
            if info["use_logit_scale"]
            else "logits = raw cosine (temperature 1)"
        )
        + "; the same temperature for every method.",
        f"- Masking domain: `{info['domain']}`; every method explains the same representation X; p, o, q = softmax "
        "of the classifier on X, M * X, (1 - M) * X.",
        f"- Explained class: {info['target']}.",
        f"- Contamination: {settings.snr_db:g} dB SNR, deterministic per clip (seed {settings.seed}).",
        f"- AD: {AD_VARIANTS[bool(settings.legacy_double_softmax)]}.",
        "- Higher is better except AD and COMP (lower) and MM (reported). AI, AD, AG and accuracy are percentages.",
        "",
        "| method | AI | AD | AG | FF | Fid-In | SPS | COMP | MM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for condition in CONDITIONS:
        block = [row for row in rows if row["condition"] == condition]
        if not block:
            continue
        first = block[0]
        lines.append(
            f"| *{condition} (accuracy {_format('accuracy', first['accuracy'])} %, {first['n_clips']} clips)* "
            "| | | | | | | | |"
        )
        for row in block:
            cells = " | ".join(_format(name, row[name]) for name in METRIC_NAMES)
            flag = f" ({row['n_nonfinite']} clips with a non-finite value left out)" if row["n_nonfinite"] else ""
            lines.append(f"| {DISPLAY_NAMES[row['method']]}{flag} | {cells} |")
    methods = [m for m in METHODS if any(row["method"] == m for row in rows)]
    lines += ["", "## From saliency to mask", "", "| method | normalisation |", "|---|---|"]
    lines += [f"| {DISPLAY_NAMES[m]} | {normalisation.get(m, 'n/a')} |" for m in methods]
    lines += [
        "",
        f"## Cost per clip ({info['device']})",
        "",
        "Explanation time per clip, and as a multiple of one classification forward of the same batch (mean over "
        "the conditions evaluated; the first batch of each pair is a warm-up and not counted when others follow).",
        "",
        "| method | seconds per clip | x forward |",
        "|---|---|---|",
    ]
    for method in methods:
        mine = [row for row in rows if row["method"] == method]
        clips = sum(row["n_clips"] for row in mine)
        seconds = sum(row["seconds_per_clip"] * row["n_clips"] for row in mine) / clips
        ratio = sum(row["forward_ratio"] * row["n_clips"] for row in mine) / clips
        lines.append(f"| {DISPLAY_NAMES[method]} | {seconds:.4g} | {ratio:.3g} |")
    options = {m: settings.options(m) for m in methods if settings.options(m)}
    if options:
        lines += ["", f"Interpreter options: `{json.dumps(options, sort_keys=True)}`."]
    lines += _sanity_markdown(os.path.dirname(os.path.abspath(path)))
    _atomic_write(path, lambda f: f.write("\n".join(lines) + "\n"))


def _sanity_markdown(folder):
    """Sections summarising the sanity checks whose CSVs are in ``folder``."""
    lines = []
    similarity = os.path.join(folder, "sanity_similarity.csv")
    if os.path.isfile(similarity):
        with open(similarity, encoding="utf-8", newline="") as fin:
            rows = list(csv.DictReader(fin))
        lines += [
            "",
            "## Sanity check: mask mean vs audio-prompt similarity",
            "",
            "Pearson r between the mask mean and the cosine similarity of the clip and the explained prompt "
            "(sanity_similarity.png).",
            "",
            "| method | Pearson r | points |",
            "|---|---|---|",
        ]
        lines += [f"| {DISPLAY_NAMES[r['method']]} | {float(r['pearson_r']):.3f} | {r['n_points']} |" for r in rows]
    randomisation = os.path.join(folder, "sanity_randomisation.csv")
    if os.path.isfile(randomisation):
        with open(randomisation, encoding="utf-8", newline="") as fin:
            rows = list(csv.DictReader(fin))
        blocks = list(dict.fromkeys(r["blocks"] for r in rows))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        ssim_of = {(r["method"], r["blocks"]): float(r["ssim"]) for r in rows}
        lines += [
            "",
            "## Sanity check: cascading randomisation of the audio encoder",
            "",
            "Mean SSIM between the original mask and the mask after re-initialising the encoder from its top block "
            "down to the named one (sanity_randomisation.png); low is good: the explanation depends on the model.",
            "",
            "| method | " + " | ".join(blocks) + " |",
            "|---|" + "---|" * len(blocks),
        ]
        for method in methods:
            lines.append(
                f"| {DISPLAY_NAMES[method]} | " + " | ".join(f"{ssim_of[(method, b)]:.3f}" for b in blocks) + " |"
            )
    return lines


# ------------------------------------------------------------------------------------------------ sanity checks
def _clean_batches(setup, manifest, settings, device):
    """(ids, representations, predicted class) of the first ``sanity_clips`` clean clips, in batches."""
    dataset = _dataset(setup, settings, manifest, "clean", None)
    batches, _ = _batches(dataset, dataclasses.replace(settings, max_batches=None))
    out, count = [], 0
    for batch in batches:
        if count >= settings.sanity_clips:
            break
        keep = min(settings.sanity_clips - count, len(batch.id))
        with torch.no_grad():
            x = setup.domain.representation(batch.wav.data[:keep].to(device))
            targets = setup.targets(setup.classifier(x))
        out.append((list(batch.id)[:keep], x, targets))
        count += keep
    return out


def _figure(n_panels=1):
    """A matplotlib figure drawn by the Agg canvas (no pyplot, so no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = min(n_panels, 4)
    rows = -(-n_panels // cols)
    figure = Figure(figsize=(max(5.0, 3.6 * cols), max(3.8, 3.2 * rows)), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(rows, cols, i + 1) for i in range(n_panels)]


def _sanity_done(path):
    if os.path.isfile(path):
        logger.info("%s exists: sanity check skipped (delete it to run the check again).", path)
        return True
    return False


def similarity_check(setup, manifest, settings, output_folder, device):
    """Mask mean vs audio-prompt similarity, Pearson r per method (the paper's first sanity check).

    Each of the first ``sanity_clips`` clean clips is explained for ``sanity_prompts`` class prompts: its
    predicted class and seeded random others. The similarity is the cosine between the clip's audio embedding and
    the prompt's text embedding. LMAC-ZS masks are expected to shrink when the similarity is low.

    Writes ``sanity_similarity.csv`` (method, pearson_r, n_points), ``sanity_similarity_points.csv`` (every point)
    and ``sanity_similarity.png`` (one scatter per method).
    """
    summary_path = os.path.join(output_folder, "sanity_similarity.csv")
    if _sanity_done(summary_path):
        return
    classifier = setup.classifier
    batches = _clean_batches(setup, manifest, settings, device)
    points = {method: [] for method in settings.sanity_methods}
    for ids, x, predicted in batches:
        with torch.no_grad():
            cosines = classifier.embed(x) @ classifier.text_embeddings.T
        n_prompts = len(setup.prompts)
        columns = [_sanity_prompts(clip_id, int(c), n_prompts, settings) for clip_id, c in zip(ids, predicted)]
        for method in settings.sanity_methods:
            interpreter = make_interpreter(method, classifier, setup.model, settings.options(method))
            for j in range(len(columns[0])):
                targets = torch.tensor([cols[j] for cols in columns], device=x.device)
                means = interpreter.explain(x, targets).mean(dim=(1, 2))
                for i, clip_id in enumerate(ids):
                    similarity = float(cosines[i, targets[i]])
                    points[method].append((clip_id, setup.prompts[int(targets[i])], similarity, float(means[i])))
    summary = []
    for method, values in points.items():
        accumulator = PearsonAccumulator()
        accumulator.update([v[2] for v in values], [v[3] for v in values])
        summary.append({"method": method, "pearson_r": accumulator.value(), "n_points": accumulator.n})

    def write_points(fout):
        writer = csv.writer(fout)
        writer.writerow(["method", "id", "prompt", "similarity", "mask_mean"])
        for method, values in points.items():
            writer.writerows([method, *value] for value in values)

    _atomic_write(os.path.join(output_folder, "sanity_similarity_points.csv"), write_points)
    figure, axes = _figure(len(points))
    for ax, (method, values), result in zip(axes, points.items(), summary):
        ax.scatter([v[2] for v in values], [v[3] for v in values], s=12, alpha=0.7)
        ax.set_title(f"{DISPLAY_NAMES[method]} (r = {result['pearson_r']:.2f})")
        ax.set_xlabel("audio-prompt cosine similarity")
        ax.set_ylabel("mask mean")
    figure.savefig(os.path.join(output_folder, "sanity_similarity.png"), dpi=120)
    _write_csv(summary_path, ["method", "pearson_r", "n_points"], summary)
    logger.info("Mask mean vs similarity: %s", {r["method"]: round(r["pearson_r"], 3) for r in summary})


def _sanity_prompts(clip_id, predicted, n_prompts, settings):
    """The predicted class first, then seeded random other classes (all of them when there are few)."""
    order = torch.randperm(n_prompts, generator=clip_generator(clip_id, settings.seed)).tolist()
    others = [i for i in order if i != predicted]
    return [predicted] + others[: min(settings.sanity_prompts, n_prompts) - 1]


def _write_csv(path, columns, rows):
    def write(fout):
        writer = csv.DictWriter(fout, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    _atomic_write(path, write)


def randomisation_check(setup, manifest, settings, output_folder, device):
    """Cascading model randomisation (Adebayo et al., 2018), the paper's second sanity check.

    The audio encoder's blocks are re-initialised one more at a time from the top (:func:`randomisation_blocks`);
    after each step every method explains the first ``sanity_clips`` clean clips again, for the class the ORIGINAL
    model predicted, and the SSIM between the original and the new mask is averaged over the clips. LMAC-ZS keeps
    its trained decoder (it explains the randomised encoder's features). An explanation that does not change when
    the model does is not explaining the model.

    Writes ``sanity_randomisation.csv`` (method, step, blocks, ssim, n_clips) and ``sanity_randomisation.png``.
    """
    summary_path = os.path.join(output_folder, "sanity_randomisation.csv")
    if _sanity_done(summary_path):
        return
    classifier = setup.classifier
    blocks = randomisation_blocks(classifier.clap)
    batches = _clean_batches(setup, manifest, settings, device)
    original = {}
    for method in settings.sanity_methods:
        interpreter = make_interpreter(method, classifier, setup.model, settings.options(method))
        original[method] = [interpreter.explain(x, targets).cpu() for _, x, targets in batches]
    size = min(batches[0][1].shape[1:])
    window = min(11, size if size % 2 else size - 1)
    results = []
    cascade = cascading_randomization(classifier, blocks, settings.seed)
    for step, (randomised_blocks, randomised) in enumerate(cascade, 1):
        randomised.eval()
        for method in settings.sanity_methods:
            interpreter = make_interpreter(method, randomised, setup.model, settings.options(method))
            values = [
                ssim(reference, interpreter.explain(x, targets).cpu(), window_size=window)
                for (_, x, targets), reference in zip(batches, original[method])
            ]
            values = torch.cat(values)
            results.append(
                {
                    "method": method,
                    "step": step,
                    "blocks": block_label(randomised_blocks[-1]),
                    "ssim": float(values.mean()),
                    "n_clips": int(values.numel()),
                }
            )
        del randomised  # one randomised copy of the model at a time
        latest = results[-len(settings.sanity_methods) :]
        ssims = {r["method"]: round(r["ssim"], 3) for r in latest}
        logger.info("Randomised down to %s: SSIM %s", randomised_blocks[-1], ssims)
    figure, (ax,) = _figure(1)
    for method in settings.sanity_methods:
        mine = [r for r in results if r["method"] == method]
        ax.plot([r["step"] for r in mine], [r["ssim"] for r in mine], marker="o", label=DISPLAY_NAMES[method])
    ax.set_xticks(range(1, len(blocks) + 1))
    ax.set_xticklabels([block_label(b) for b in blocks], rotation=45, ha="right")
    ax.set_xlabel("randomised down to")
    ax.set_ylabel("SSIM with the original mask")
    ax.legend(loc="best")
    figure.savefig(os.path.join(output_folder, "sanity_randomisation.png"), dpi=120)
    _write_csv(summary_path, ["method", "step", "blocks", "ssim", "n_clips"], results)
