"""A small CLAP trained from scratch on synthetic scenes, for demos where no pretrained CLAP can be downloaded.

An explanation of a zero-shot classifier only means something when the classifier is right, and a randomly
initialised CLAP is not. This module trains a scaled-down Microsoft CLAP 2022 (the project's :class:`MSCLAP2022`:
a narrow CNN14 and a tiny BERT with a word-level tokenizer) contrastively on the scenes of
:mod:`speechbrain_lmaczs.synthetic.scenes`, whose captions name their events, and saves it in the released checkpoint
format, so that ``load_clap("msclap", folder)`` loads it exactly like the real model.

Training runs in stages, shrunk to minutes of CPU:

1. *tagging*: CNN14 learns to tag the events of each scene through its ``fc_audioset`` head (multi-label), as
   the released model's CNN14 was first trained to tag AudioSet (PANNs). Half of the scenes lose one event to
   silence (its exact support, dilated by a bin) and its tag (:func:`carve_events`): trained on whole events
   only, CNN14 recognised an event from the silent hole that removing it leaves (88 % of held-out single-event
   scenes kept their class with the event silenced; 19-39 % with carving, where chance is 10 %), which would make
   every masking explanation's "removing this changes the decision" untrue of the events themselves;
2. *contrastive, audio locked*: the text tower, the audio projection and the temperature learn to match the
   audio tower's embeddings, with CLAP's symmetric InfoNCE loss over the batch and a learnable temperature (as in
   LiT, "locked-image tuning"); the CNN14 embeddings of the training scenes are computed once, so these epochs
   cost little more than the text tower. Each scene also appears with one event silenced and a caption of what is
   left (:data:`BACKGROUND_CAPTION` when nothing is);
3. *contrastive, joint*: both towers trained end to end, as in CLAP itself. Off in the presets: on two CPU cores
   an epoch costs as much as a tagging epoch and did not change the accuracy in our runs.

Contrastive training with both towers free is much slower here: from scratch, every caption starts with nearly the
same embedding and the loss sits on a plateau for about a hundred steps (225 steps reached 47 % zero-shot accuracy
in our runs); even after tagging, 300 joint steps reached 89.5 %, with "a low hum" and "a low rumble" merged in
both towers, where the locked stage reaches 100 % in a few dozen steps.

The front-end is fixed, so the log-mels of the training scenes are computed once. Captions are redrawn at every
epoch (a random caption variant per event, random event order, random prefix), so the text tower sees many
phrasings of the same scene.

Usage: ``train_small_clap("results/small_clap")`` (about ten minutes on two CPU cores; ``quick=True`` for a
minute or two), then ``load_clap("msclap", "results/small_clap")`` anywhere a CLAP is expected. The model itself
is built by :mod:`speechbrain_lmaczs.synthetic.small_clap`, the stages run in
:mod:`speechbrain_lmaczs.synthetic.small_clap_stages`.
"""

import json
import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from speechbrain_lmaczs.clap import load_clap
from speechbrain_lmaczs.clap.msclap import CONFIG_NAME
from speechbrain_lmaczs.files import BuildStamp, write_json_atomic, write_text_atomic
from speechbrain_lmaczs.synthetic.scene_sets import SceneSet, synthetic_logmels, zero_shot_accuracy
from speechbrain_lmaczs.synthetic.scenes import GENERATOR_VERSION, SceneConfig
from speechbrain_lmaczs.synthetic.small_clap import build_small_clap, small_frontend
from speechbrain_lmaczs.synthetic.small_clap_stages import train_contrastive, train_tagging, with_carved_copies

logger = logging.getLogger(__name__)

#: Bumped whenever the training code changes what a given set of options produces, so that folders written by an
#: older version are retrained instead of reused.
SMALL_CLAP_VERSION = 4

OPTIONS_NAME = "small_clap_options.json"
LOG_NAME = "small_clap_log.json"
ACCURACY_NAME = "accuracy.txt"

# Settings of the full run and of quick=True. Each affects the result, so each is recorded in the options file.
_PRESETS = {
    False: {"n_train": 2400, "tagging_epochs": 2, "epochs": 4},
    True: {"n_train": 640, "tagging_epochs": 3, "epochs": 8},
}



@dataclass
class SmallCLAPRun:
    """What :func:`train_small_clap` did.

    Attributes
    ----------
    folder : pathlib.Path
        Where the model is saved (load it with ``load_clap("msclap", folder)``).
    accuracy : float
        Zero-shot accuracy of the saved model on held-out single-event scenes.
    reused : bool
        True when the folder already held a model trained with the same options and training was skipped.
    log : dict
        Losses per epoch, validation accuracies, timings and sizes (also in ``small_clap_log.json``).
    """

    folder: Path
    accuracy: float
    reused: bool
    log: dict = field(repr=False)



def _read_accuracy(folder):
    return float((folder / ACCURACY_NAME).read_text(encoding="utf-8").strip().splitlines()[-1])



def train_small_clap(
    output_folder,
    seed=0,
    n_train=None,
    epochs=None,
    quick=False,
    tagging_epochs=None,
    joint_epochs=0,
    batch_size=32,
    lr=2e-3,
    joint_lr=5e-4,
    n_valid=100,
    n_eval=200,
    conv_channels=(8, 16, 32, 64, 128, 256),
    embedding_dim=256,
    proj_dim=64,
    text_width=64,
    text_layers=2,
    frontend=None,
    num_threads=None,
    carve_prob=0.5,
):
    """Train a small MS-CLAP 2022 on synthetic scenes, save it, and measure its zero-shot accuracy.

    The stages are described in the module docstring. Training scenes hold 1 to 3 events (split ``"train"``).
    The model is saved with :meth:`MSCLAP2022.save_pretrained`, loaded back with ``load_clap("msclap",
    output_folder)`` and scored on ``n_eval`` single-event scenes of another split (``"test"``) with the prompts
    :func:`prompt_for` of all classes. The folder then holds the checkpoint, ``accuracy.txt`` (the accuracy on its
    last line), ``small_clap_log.json`` and, written last, ``small_clap_options.json``. A folder that already holds
    a model trained with the same options is reused as it is.

    Parameters
    ----------
    output_folder : str or path
        Created if missing.
    seed : int
        Seed of the scenes, the weights and the training order (the global RNGs are left untouched).
    n_train : int, optional
        Training scenes; None takes the preset of ``quick``.
    epochs : int, optional
        Contrastive epochs with the audio tower locked; None takes the preset of ``quick``.
    quick : bool
        Presets for a run of a minute or two on two CPU cores (lower accuracy) instead of several minutes.
    tagging_epochs : int, optional
        Epochs of event tagging before the contrastive stages; None takes the preset of ``quick``.
    joint_epochs : int
        Contrastive epochs with both towers trained, after the locked ones (each costs about as much as a tagging
        epoch, and barely changes the accuracy).
    batch_size : int
        Clips per batch.
    lr : float
        Peak Adam learning rate of tagging and of the locked contrastive stage (warm-up, then cosine decay).
    joint_lr : float
        Peak learning rate of the joint stage: lower, so that it refines the aligned towers instead of undoing
        the tagging.
    n_valid : int
        Single-event scenes (split ``"valid"``) scored after each epoch, for the log only.
    n_eval : int
        Single-event scenes of the final zero-shot evaluation.
    conv_channels, embedding_dim, proj_dim, text_width, text_layers
        Architecture, see :func:`build_small_clap`.
    frontend : LogMelFrontend, optional
        Defaults to :func:`small_frontend`.
    carve_prob : float
        Share of tagging scenes that lose one event to silence and its tag (:func:`carve_events`), so that a
        silenced event stops counting as evidence; when > 0, the contrastive stage also sees every scene once with
        one event silenced, captioned by what is left (0: off). The log records ``silenced_accuracy``: how often a
        held-out single-event scene with its event's support silenced is still classified as that event.
    num_threads : int, optional
        torch CPU threads while training (the previous setting is restored afterwards); None keeps the current
        one. On cores shared with other jobs, 1 is several times faster than 2: the text tower's small operations
        then spend most of their time waiting for each other's threads.

    Returns
    -------
    SmallCLAPRun

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    >>> fe = LogMelFrontend(16000, 512, 320, 32, 50.0, 8000.0, clip_seconds=2.0)
    >>> tiny = dict(n_train=8, epochs=1, tagging_epochs=1, batch_size=8, n_valid=2, n_eval=10, frontend=fe,
    ...             conv_channels=(2, 2, 4, 4, 8, 8), embedding_dim=8, proj_dim=8, text_width=16, text_layers=1,
    ...             num_threads=1)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     first, again = train_small_clap(folder, **tiny), train_small_clap(folder, **tiny)
    ...     clap = load_clap("msclap", folder)
    >>> first.reused, again.reused, again.accuracy == first.accuracy, clap.frontend.sample_rate
    (False, True, True, 16000)
    """
    preset = _PRESETS[bool(quick)]
    n_train = preset["n_train"] if n_train is None else int(n_train)
    epochs = preset["epochs"] if epochs is None else int(epochs)
    tagging_epochs = preset["tagging_epochs"] if tagging_epochs is None else int(tagging_epochs)
    if n_train < 2 or min(epochs, tagging_epochs, joint_epochs) < 0 or epochs + joint_epochs < 1:
        raise ValueError(
            f"n_train={n_train}, tagging_epochs={tagging_epochs}, epochs={epochs}, joint_epochs={joint_epochs}: "
            "training needs at least 2 scenes, no negative number of epochs and at least 1 contrastive epoch."
        )
    frontend = frontend if frontend is not None else small_frontend()
    train_config = SceneConfig(sample_rate=frontend.sample_rate, clip_seconds=frontend.clip_seconds)
    eval_config = SceneConfig(sample_rate=frontend.sample_rate, clip_seconds=frontend.clip_seconds, n_events=(1, 1))
    architecture = {
        "conv_channels": [int(c) for c in conv_channels],
        "embedding_dim": int(embedding_dim),
        "proj_dim": int(proj_dim),
        "text_width": int(text_width),
        "text_layers": int(text_layers),
    }
    options = {
        "version": SMALL_CLAP_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "n_train": n_train,
        "tagging_epochs": tagging_epochs,
        "epochs": epochs,
        "joint_epochs": int(joint_epochs),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "joint_lr": float(joint_lr),
        "carve_prob": float(carve_prob),
        "n_valid": int(n_valid),
        "n_eval": int(n_eval),
        "architecture": architecture,
        "frontend": frontend.config(),
        "train_scenes": asdict(train_config),
        "eval_scenes": asdict(eval_config),
    }
    folder = Path(output_folder)
    stamp = BuildStamp(folder / OPTIONS_NAME)
    if stamp.matches(options, folder / CONFIG_NAME, folder / ACCURACY_NAME):
        accuracy = _read_accuracy(folder)
        logger.info("Reusing the small CLAP in %s (zero-shot accuracy %.3f).", folder, accuracy)
        log = json.loads((folder / LOG_NAME).read_text(encoding="utf-8"))
        return SmallCLAPRun(folder, accuracy, True, log)
    if stamp.read() is not None:
        logger.info("%s holds a small CLAP trained with other options: training again.", folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Removed first so that an interrupted run never leaves a stale options file next to new weights.
    stamp.clear()

    with _torch_threads(num_threads):
        wall0, cpu0 = time.time(), time.process_time()
        train = synthetic_logmels(
            frontend, n_train, seed, "train", train_config, desc="small CLAP: train scenes", occupancy=carve_prob > 0
        )
        valid = synthetic_logmels(frontend, n_valid, seed, "valid", eval_config, desc="small CLAP: valid scenes")
        log = {"data_seconds": round(time.time() - wall0, 1)}

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_small_clap(seed, frontend, **architecture)
            generator = torch.Generator().manual_seed(seed)
            rng = np.random.default_rng(seed)
            batch_size = int(batch_size)
            log["tagging"] = train_tagging(
                model, train, valid, tagging_epochs, batch_size, float(lr), generator, float(carve_prob)
            )
            contrastive_set = train
            if carve_prob > 0:
                # Every training scene once more with one event silenced, captioned by what is left.
                contrastive_set = with_carved_copies(train, model.frontend.silence_db, generator)
            log["contrastive"] = train_contrastive(
                model, contrastive_set, valid, epochs, batch_size, float(lr), generator, rng, locked=True
            )
            log["joint"] = train_contrastive(
                model, train, valid, int(joint_epochs), batch_size, float(joint_lr), generator, rng, locked=False
            )
        model.eval().save_pretrained(folder)
        log["train_seconds"] = round(time.time() - wall0, 1)
        log["train_cpu_seconds"] = round(time.process_time() - cpu0, 1)
        log["parameters"] = sum(p.numel() for p in model.parameters())
        log["checkpoint_bytes"] = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

        # Scored on the model read back from disk, through the loader every recipe uses.
        test = synthetic_logmels(
            frontend, n_eval, seed, "test", eval_config, desc="small CLAP: test scenes", occupancy=True
        )
        loaded = load_clap("msclap", str(folder))
        accuracy = zero_shot_accuracy(loaded, test)
        log["accuracy"] = accuracy
        silence = frontend.silence_db
        silenced = test.logmels.masked_fill(test.occupancy > 0, silence)
        log["silenced_accuracy"] = zero_shot_accuracy(loaded, SceneSet(silenced, test.classes))
        log["total_seconds"] = round(time.time() - wall0, 1)
        log["total_cpu_seconds"] = round(time.process_time() - cpu0, 1)
    logger.info(
        "Small CLAP: zero-shot accuracy %.3f on %d held-out single-event scenes (%.3f with the event silenced; "
        "%.0f s, %.0f s CPU).",
        accuracy,
        n_eval,
        log["silenced_accuracy"],
        log["total_seconds"],
        log["total_cpu_seconds"],
    )
    write_text_atomic(
        folder / ACCURACY_NAME,
        f"zero-shot accuracy on {n_eval} single-event synthetic scenes (split 'test', seed {seed})\n{accuracy:.4f}\n",
    )
    write_json_atomic(folder / LOG_NAME, log)
    stamp.write(options)
    return SmallCLAPRun(folder, accuracy, False, log)


@contextmanager
def _torch_threads(num_threads):
    previous = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


