"""A small CLAP trained from scratch on synthetic scenes, for demos where no pretrained CLAP can be downloaded.

An explanation of a zero-shot classifier only means something when the classifier is right, and a randomly
initialised CLAP is not. This module trains a scaled-down Microsoft CLAP 2022 (the project's :class:`MSCLAP2022`:
a narrow CNN14 and a tiny BERT with a word-level tokenizer) contrastively on the scenes of
:mod:`speechbrain_lmaczs.synthetic`, whose captions name their events, and saves it in the released checkpoint
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
minute or two), then ``load_clap("msclap", "results/small_clap")`` anywhere a CLAP is expected.
"""

import json
import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.clap import l2_normalize, load_clap
from speechbrain_lmaczs.clap.base import cumulative_batch_norm_statistics
from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.clap.msclap import CONFIG_NAME, MSCLAP2022, build_word_tokenizer
from speechbrain_lmaczs.data.pipeline import peak_normalize
from speechbrain_lmaczs.synthetic import (
    CLASS_LABELS,
    EVENT_CLASSES,
    GENERATOR_VERSION,
    SceneConfig,
    SpectrogramGrid,
    make_scene,
    prompt_for,
    support_masks,
)

logger = logging.getLogger(__name__)

#: Bumped whenever the training code changes what a given set of options produces, so that folders written by an
#: older version are retrained instead of reused.
SMALL_CLAP_VERSION = 4

OPTIONS_NAME = "small_clap_options.json"
LOG_NAME = "small_clap_log.json"
ACCURACY_NAME = "accuracy.txt"

#: Prefixes of the training captions. One is the zero-shot prompt's template; the others keep the text tower from
#: depending on it.
CAPTION_TEMPLATES = ("{}", "this is the sound of {}", "the sound of {}", "a recording of {}", "we hear {}")

#: Caption of a scene whose events were all silenced (see :func:`carve_events`), so that the contrastive stage has
#: a text for it. (Measured on the demo's model: emptied scenes still embed at cosine ~0.35 to every event prompt.)
BACKGROUND_CAPTION = "nothing but quiet background noise"

# Training clips over which the BatchNorm statistics of the locked audio tower are measured.
_BATCH_NORM_CLIPS = 256

# CLAP clips its temperature at 100: beyond that the loss can shrink by scaling alone and training turns unstable.
_MAX_LOGIT_SCALE = 100.0

# Settings of the full run and of quick=True. Each affects the result, so each is recorded in the options file.
_PRESETS = {
    False: {"n_train": 2400, "tagging_epochs": 2, "epochs": 4},
    True: {"n_train": 640, "tagging_epochs": 3, "epochs": 8},
}


def small_frontend():
    """The front-end of the small CLAP: 16 kHz, 1024-point STFT with a 20 ms hop, 64 mel bands from 50 Hz to 8 kHz,
    5 s clips (251 frames).

    MS-CLAP 2022's own front-end (44.1 kHz, hop 320: 690 frames) makes every CNN14 step about four times slower,
    which a ten-minute training on two CPU cores cannot afford; the synthetic events all lie below 7 kHz, so
    nothing is lost at 16 kHz. The layout (64 mels, 5 s clips, slaney mel scale, dB) is MS-CLAP's. The dB values
    are measured from the power floor (``db_offset`` 100 for ``amin`` 1e-10): silence is 0 dB, so a Mel mask (which
    multiplies the log-mel) attenuates towards silence, and a zero mask removes an event; with the released
    models' ``10 log10(power)`` the synthetic scenes' background sits near -30 dB and a zero mask would raise it to
    0 dB. The small CLAP is trained with the offset (CNN14's first BatchNorm over the mel bands absorbs it).

    Example
    -------
    >>> fe = small_frontend()
    >>> fe.sample_rate, fe.n_frames, fe.n_mels
    (16000, 251, 64)
    """
    return LogMelFrontend(16000, 1024, 320, 64, 50, 8000, clip_seconds=5.0, db_offset=100.0)


def caption_vocabulary():
    """Every word the training captions and the zero-shot prompts can contain, split as the tokenizer splits.

    Example
    -------
    >>> words = caption_vocabulary()
    >>> {"this", "and", "hum", "-", "frequency"} <= set(words)
    True
    """
    from tokenizers import pre_tokenizers

    texts = [caption for event in EVENT_CLASSES for caption in event.captions]
    texts += [template.format("and") for template in CAPTION_TEMPLATES] + [BACKGROUND_CAPTION]
    splitter = pre_tokenizers.Whitespace()
    return sorted({word.lower() for text in texts for word, _ in splitter.pre_tokenize_str(text)})


def build_small_clap(
    seed=0,
    frontend=None,
    conv_channels=(8, 16, 32, 64, 128, 256),
    embedding_dim=256,
    proj_dim=64,
    text_width=64,
    text_layers=2,
    text_max_length=32,
    text_init=0.2,
):
    """A randomly initialised small MS-CLAP 2022 whose tokenizer knows the synthetic captions' words.

    Parameters
    ----------
    seed : int
        Seed of the weights (the global RNG is left untouched).
    frontend : LogMelFrontend, optional
        Defaults to :func:`small_frontend`.
    conv_channels : sequence of 6 int
        Widths of CNN14's conv blocks.
    embedding_dim : int
        Output size of CNN14's ``fc1``.
    proj_dim : int
        Size of the joint audio-text space.
    text_width, text_layers : int
        Hidden size and number of layers of the BERT text tower (heads of 16 dimensions).
    text_max_length : int
        Prompts are padded to this many tokens (the longest training caption has 28).
    text_init : float
        Standard deviation of BERT's initial weights. Ten times BERT's 0.02: with 0.02, the CLS token of a fresh
        BERT barely depends on the words (cosine ~0.9999 between any two captions), and contrastive training
        then sits on a plateau until that symmetry breaks; with 0.2 it starts near 0.7.

    Returns
    -------
    MSCLAP2022
        In eval mode.

    Example
    -------
    >>> clap = build_small_clap(conv_channels=(2, 2, 4, 4, 8, 8), embedding_dim=8, proj_dim=4, text_width=16)
    >>> clap.encode_text([prompt_for("hum")]).shape
    torch.Size([1, 4])
    """
    tokenizer = build_word_tokenizer(caption_vocabulary())
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": int(text_width),
        "num_hidden_layers": int(text_layers),
        "num_attention_heads": max(1, int(text_width) // 16),
        "intermediate_size": 2 * int(text_width),
        "max_position_embeddings": 2 * int(text_max_length),
        "initializer_range": float(text_init),
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MSCLAP2022(
            tokenizer,
            conv_channels=tuple(conv_channels),
            embedding_dim=int(embedding_dim),
            classes_num=len(CLASS_LABELS),
            proj_dim=int(proj_dim),
            text_config=text_config,
            text_max_length=int(text_max_length),
            frontend=frontend if frontend is not None else small_frontend(),
        )
    return model.eval()


def sample_caption(class_indices, rng):
    """A random caption of a scene: one caption variant per event, events in random order, a random prefix.

    Parameters
    ----------
    class_indices : sequence of int
        Classes of the scene's events (empty: :data:`BACKGROUND_CAPTION`).
    rng : numpy.random.Generator

    Returns
    -------
    str

    Example
    -------
    >>> caption = sample_caption([1, 2], np.random.default_rng(0))
    >>> ("hum" in caption, "and" in caption)
    (True, True)
    """
    parts = [EVENT_CLASSES[c].captions[int(rng.integers(len(EVENT_CLASSES[c].captions)))] for c in class_indices]
    parts = [parts[i] for i in rng.permutation(len(parts))]
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return template.format(" and ".join(parts) if parts else BACKGROUND_CAPTION)


def event_set_id(class_indices):
    """An integer naming the set of classes of a scene (a bit per class), so that equal sets get equal ids.

    Example
    -------
    >>> event_set_id([2, 0]) == event_set_id([0, 2]), event_set_id([1])
    (True, 2)
    """
    return sum(1 << int(c) for c in set(class_indices))


def contrastive_loss(audio, text, logit_scale, groups=None):
    """Symmetric InfoNCE between the audio and text embeddings of a batch, as CLAP is trained.

    Row ``i`` of ``audio`` and of ``text`` describe the same clip. With ``groups``, clips of the same group (the
    same set of events) are all positives of one another, shared evenly: in a batch of synthetic scenes the same
    event set recurs, and pushing apart two clips of one caption would teach the model noise.

    Parameters
    ----------
    audio, text : torch.Tensor
        (batch, dim) L2-normalised embeddings.
    logit_scale : torch.Tensor
        0-d temperature multiplying the cosines (exponentiated, as :attr:`CLAPBackend.logit_scale`).
    groups : torch.Tensor, optional
        (batch,) integer group ids; None makes every clip its own group (plain CLIP/CLAP loss).

    Returns
    -------
    torch.Tensor
        0-d loss: the mean of the audio-to-text and text-to-audio cross-entropies.

    Example
    -------
    >>> a = F.normalize(torch.eye(3), dim=-1)
    >>> float(contrastive_loss(a, a, torch.tensor(50.0))) < 1e-6
    True
    >>> float(contrastive_loss(a, a.flip(0), torch.tensor(50.0))) > 10
    True
    """
    logits = logit_scale * audio @ text.T
    if groups is None:
        targets = torch.eye(len(audio), device=audio.device, dtype=audio.dtype)
    else:
        same = (groups[:, None] == groups[None, :]).to(audio.dtype)
        targets = same / same.sum(dim=1, keepdim=True)
    # The group relation is symmetric, so the text-to-audio targets are the same matrix.
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


@dataclass
class SceneSet:
    """Log-mels of synthetic scenes and the classes of their events (what training and evaluation need)."""

    logmels: torch.Tensor
    classes: list = field(repr=False)
    #: (n, time, mels) int8: 1 + the class of the event whose support covers each bin, 0 where none does (supports
    #: of one scene never overlap); None unless asked for
    occupancy: torch.Tensor = field(default=None, repr=False)

    @property
    def groups(self):
        """(n,) event-set ids, see :func:`event_set_id`."""
        return torch.tensor([event_set_id(c) for c in self.classes])

    @property
    def labels(self):
        """(n,) class of the first drawn event (the only one in single-event scenes)."""
        return torch.tensor([c[0] for c in self.classes])

    def __len__(self):
        return len(self.classes)


@torch.no_grad()
def synthetic_logmels(frontend, n_scenes, seed, split, config, batch_size=32, desc=None, occupancy=False):
    """Draw scenes ``0 .. n_scenes - 1`` of a split, peak-normalise them and compute their log-mels with ``frontend``.

    Parameters
    ----------
    frontend : LogMelFrontend
    n_scenes, seed : int
    split : str
    config : SceneConfig
        Its sampling rate and clip length must be the front-end's.
    batch_size : int
        Waveforms sent through the front-end at once.
    desc : str, optional
        Label of the progress bar (None hides it).
    occupancy : bool
        Also compute :attr:`SceneSet.occupancy` from the events' exact supports on the front-end's mel grid.

    Returns
    -------
    SceneSet
        ``logmels`` is (n_scenes, frames, mels) float32; ``classes`` lists each scene's classes, first drawn first.

    Example
    -------
    >>> fe = LogMelFrontend(16000, 512, 320, 32, 50.0, 8000.0, clip_seconds=2.0)
    >>> scenes = synthetic_logmels(fe, 3, 0, "valid", SceneConfig(16000, 2.0, n_events=(1, 1)))
    >>> tuple(scenes.logmels.shape), scenes.labels.tolist()
    ((3, 101, 32), [0, 1, 2])
    """
    if config.sample_rate != frontend.sample_rate or config.clip_samples != frontend.clip_samples:
        raise ValueError(
            f"Scenes of {config.clip_samples} samples at {config.sample_rate} Hz do not match the front-end "
            f"({frontend.clip_samples} samples at {frontend.sample_rate} Hz)."
        )
    logmels, classes, occupied = [], [], []
    grid = SpectrogramGrid.from_frontend(frontend, "mel") if occupancy else None
    starts = range(0, n_scenes, batch_size)
    for start in tqdm(starts, desc=desc, disable=desc is None, dynamic_ncols=True):
        scenes = [make_scene(seed, i, config, split=split) for i in range(start, min(start + batch_size, n_scenes))]
        for index, scene in zip(range(start, n_scenes), scenes):
            # make_scene sorts events by onset; the first *drawn* one, of class index % n_classes, labels the scene.
            first = index % len(CLASS_LABELS)
            classes.append([first] + [e.class_index for e in scene.events if e.class_index != first])
            if grid is not None:
                owner = torch.zeros(frontend.n_frames, frontend.n_mels, dtype=torch.int8)
                for event, support in zip(scene.events, support_masks(scene, grid)):
                    owner[torch.from_numpy(support)] = event.class_index + 1
                occupied.append(owner)
        # Peak-normalised as the data pipeline (load_clip) does with every clip a recipe reads: the CLAP must
        # be trained on the levels it will be asked about.
        wav = torch.stack([peak_normalize(torch.from_numpy(s.waveform)) for s in scenes])
        logmels.append(frontend(wav))
    return SceneSet(torch.cat(logmels), classes, torch.stack(occupied) if occupied else None)


@torch.no_grad()
def zero_shot_accuracy(clap, scenes, batch_size=64):
    """Accuracy of ``clap`` on single-event scenes with the prompts :func:`prompt_for` of all classes.

    Parameters
    ----------
    clap : CLAPBackend
        Put in eval mode here.
    scenes : SceneSet
        Log-mels on ``clap``'s front-end; the label of a scene is its first class.
    batch_size : int

    Returns
    -------
    float
        In [0, 1].

    Example
    -------
    >>> clap = build_small_clap(conv_channels=(2, 2, 4, 4, 8, 8), embedding_dim=8, proj_dim=4, text_width=16)
    >>> scenes = SceneSet(torch.randn(4, 64, 64), [[0], [1], [2], [3]])
    >>> 0.0 <= zero_shot_accuracy(clap, scenes) <= 1.0
    True
    """
    clap.eval()
    classifier = ZeroShotClassifier(clap, [prompt_for(label) for label in CLASS_LABELS])
    correct = 0
    for start in range(0, len(scenes), batch_size):
        logits = classifier(scenes.logmels[start : start + batch_size])
        correct += int((logits.argmax(-1) == scenes.labels[start : start + batch_size]).sum())
    return correct / len(scenes)


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


def _replace_text(path, text):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _read_accuracy(folder):
    return float((folder / ACCURACY_NAME).read_text(encoding="utf-8").strip().splitlines()[-1])


def _batches(n, batch_size, generator):
    # The last incomplete batch is dropped: BatchNorm and the contrastive loss both need several clips per batch.
    order = torch.randperm(n, generator=generator)
    size = min(batch_size, n)
    return [order[i * size : (i + 1) * size] for i in range(_n_batches(n, batch_size))]


def _n_batches(n, batch_size):
    return n // min(batch_size, n)


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
        "train_scenes": json.loads(json.dumps(asdict(train_config))),
        "eval_scenes": json.loads(json.dumps(asdict(eval_config))),
    }
    folder = Path(output_folder)
    options_path = folder / OPTIONS_NAME
    if options_path.is_file() and (folder / CONFIG_NAME).is_file() and (folder / ACCURACY_NAME).is_file():
        if json.loads(options_path.read_text(encoding="utf-8")) == options:
            accuracy = _read_accuracy(folder)
            logger.info("Reusing the small CLAP in %s (zero-shot accuracy %.3f).", folder, accuracy)
            log = json.loads((folder / LOG_NAME).read_text(encoding="utf-8"))
            return SmallCLAPRun(folder, accuracy, True, log)
        logger.info("%s holds a small CLAP trained with other options: training again.", folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Removed first so that an interrupted run never leaves a stale options file next to new weights.
    options_path.unlink(missing_ok=True)

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
            log["tagging"] = _train_tagging(
                model, train, valid, tagging_epochs, batch_size, float(lr), generator, float(carve_prob)
            )
            contrastive_set = train
            if carve_prob > 0:
                # Every training scene once more with one event silenced, captioned by what is left.
                contrastive_set = _with_carved_copies(train, model.frontend.silence_db, generator)
            log["contrastive"] = _train_contrastive(
                model, contrastive_set, valid, epochs, batch_size, float(lr), generator, rng, locked=True
            )
            log["joint"] = _train_contrastive(
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
    _replace_text(
        folder / ACCURACY_NAME,
        f"zero-shot accuracy on {n_eval} single-event synthetic scenes (split 'test', seed {seed})\n{accuracy:.4f}\n",
    )
    _replace_text(folder / LOG_NAME, json.dumps(log, indent=2))
    _replace_text(options_path, json.dumps(options, indent=2))
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


def _train_batch_norms_only(model):
    # BatchNorms learn the statistics of the training log-mels (batch statistics, running averages updated);
    # dropout stays off: CNN14's 0.5 dropouts slow a few hundred steps far more than they regularise them, and
    # every epoch's captions are new anyway.
    model.eval()
    for module in model.audio_encoder.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.train()


def _schedule(optimizer, total_steps):
    # Linear warm-up over the first 5 % (Adam's first steps on fresh weights are erratic), then cosine decay to 0.
    warmup = max(1, total_steps // 20)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def _tagging_accuracy(model, scenes, batch_size=64):
    """How often ``fc_audioset``'s top class is the class of a single-event scene."""
    model.eval()
    base = model.audio_encoder.base
    correct = 0
    for start in range(0, len(scenes), batch_size):
        logits = base.fc_audioset(_clip_features(model, scenes.logmels[start : start + batch_size]))
        correct += int((logits.argmax(-1) == scenes.labels[start : start + batch_size]).sum())
    return correct / len(scenes)


def _clip_features(model, logmels):
    """CNN14's clip embedding (``fc1`` output): the input of both ``fc_audioset`` and the audio projection."""
    base = model.audio_encoder.base
    return base.embed(model.cam_layer(base.conv_maps(logmels.unsqueeze(1))[-1]))


@torch.no_grad()
def _recompute_batch_norm_statistics(model, logmels, batch_size):
    """Set the audio tower's BatchNorm running statistics to their plain average over ``logmels`` (in batches).

    The running averages of training lag behind the weights (momentum 0.1), so after a short or no tagging stage
    the eval-mode statistics would not match the network, and every clip would get about the same embedding.
    """
    norms = [m for m in model.audio_encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    with cumulative_batch_norm_statistics(norms):
        for start in range(0, len(logmels), batch_size):
            _clip_features(model, logmels[start : start + batch_size])


def carve_events(logmels, targets, occupancy, prob, floor_db, generator):
    """Silence one event of some scenes and drop its tag: the augmentation that keeps a CNN from reading an event
    off the silent hole that removing it leaves.

    A CNN trained only on whole events also recognises the hole, of the event's exact shape, that zeroing its bins
    leaves in the background (measured on the small CLAP: 88 % of single-event scenes were still classified as their
    event with the event's support silenced). Masking explanations remove evidence by silencing bins, so such a
    classifier cannot tell them that an event mattered. Here each scene, with probability ``prob``, loses one of its
    events (chosen uniformly): its support, dilated by one bin, is set to ``floor_db`` (the front-end's silence)
    and its class leaves the targets.

    Parameters
    ----------
    logmels : torch.Tensor
        (batch, time, mels) log-mels (a modified copy is returned).
    targets : torch.Tensor
        (batch, classes) multi-hot tags (a modified copy is returned).
    occupancy : torch.Tensor
        (batch, time, mels) int8, see :attr:`SceneSet.occupancy`.
    prob : float
        Share of scenes carved.
    floor_db : float
        Value of a silent bin.
    generator : torch.Generator

    Returns
    -------
    tuple of torch.Tensor
        The carved log-mels and targets.

    Example
    -------
    >>> occ = torch.zeros(1, 6, 4, dtype=torch.int8); occ[0, 2:4, 1] = 3  # an event of class 2
    >>> x, t = carve_events(torch.ones(1, 6, 4), torch.tensor([[0.0, 0.0, 1.0]]), occ, 1.0, 0.0, torch.Generator())
    >>> t.tolist(), x[0, :, 1].tolist(), x[0, :, 3].tolist()  # support rows 2-3 of band 1, dilated by one bin
    ([[0.0, 0.0, 0.0]], [1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    """
    logmels, targets = logmels.clone(), targets.clone()
    chosen = torch.rand(len(logmels), generator=generator) < prob
    for row in torch.nonzero(chosen).flatten().tolist():
        present = torch.nonzero(targets[row]).flatten()
        if len(present) == 0:
            continue
        cls = int(present[torch.randint(len(present), (1,), generator=generator)])
        region = (occupancy[row] == cls + 1).float()[None, None]
        region = F.max_pool2d(region, 3, stride=1, padding=1)[0, 0].bool()
        logmels[row][region] = floor_db
        targets[row, cls] = 0.0
    return logmels, targets


def _with_carved_copies(scenes, floor_db, generator):
    """``scenes`` followed by a copy of each with one event silenced (:func:`carve_events`) and its class removed."""
    n_classes = len(CLASS_LABELS)
    targets = torch.zeros(len(scenes), n_classes)
    for row, classes in enumerate(scenes.classes):
        targets[row, classes] = 1.0
    logmels, kept = carve_events(scenes.logmels, targets, scenes.occupancy, 1.0, floor_db, generator)
    classes = [[c for c in row if kept[i, c] > 0] for i, row in enumerate(scenes.classes)]
    return SceneSet(torch.cat([scenes.logmels, logmels]), scenes.classes + classes)


def _train_tagging(model, train, valid, epochs, batch_size, lr, generator, carve_prob=0.0):
    """Stage 1: CNN14 and ``fc_audioset`` tag the classes present in each scene (with :func:`carve_events` when
    ``carve_prob`` > 0); returns one log entry per epoch."""
    if epochs == 0:
        return []
    base = model.audio_encoder.base
    targets = torch.zeros(len(train), base.fc_audioset.out_features)
    for row, classes in enumerate(train.classes):
        targets[row, classes] = 1.0
    floor_db = model.frontend.silence_db
    optimizer = torch.optim.Adam(base.parameters(), lr=lr)
    scheduler = _schedule(optimizer, epochs * _n_batches(len(train), batch_size))
    history = []
    for epoch in range(1, epochs + 1):
        _train_batch_norms_only(model)
        losses = []
        batches = _batches(len(train), batch_size, generator)
        for idx in tqdm(batches, desc=f"small CLAP tagging {epoch}/{epochs}", dynamic_ncols=True, leave=False):
            logmels, batch_targets = train.logmels[idx], targets[idx]
            if carve_prob > 0:
                logmels, batch_targets = carve_events(
                    logmels, batch_targets, train.occupancy[idx], carve_prob, floor_db, generator
                )
            logits = base.fc_audioset(_clip_features(model, logmels))
            loss = F.binary_cross_entropy_with_logits(logits, batch_targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        entry = {"epoch": epoch, "loss": float(np.mean(losses))}
        entry["valid_accuracy"] = _tagging_accuracy(model, valid)
        history.append(entry)
        logger.info(
            "Small CLAP tagging epoch %d/%d: loss %.4f, valid tagging accuracy %.3f",
            epoch,
            epochs,
            entry["loss"],
            entry["valid_accuracy"],
        )
    return history


@torch.no_grad()
def _locked_features(model, logmels, batch_size=64):
    """Clip embeddings of a locked (eval-mode) CNN14, computed once for all the epochs that reuse them."""
    model.eval()
    return torch.cat([_clip_features(model, logmels[i : i + batch_size]) for i in range(0, len(logmels), batch_size)])


@torch.no_grad()
def _locked_accuracy(model, features, labels):
    """:func:`zero_shot_accuracy` from cached CNN14 embeddings (same numbers, without running CNN14 again)."""
    model.eval()
    classifier = ZeroShotClassifier(model, [prompt_for(label) for label in CLASS_LABELS])
    logits = classifier.logits_from_embedding(l2_normalize(model.audio_encoder.projection(features)))
    return float((logits.argmax(-1) == labels).float().mean())


def _train_contrastive(model, train, valid, epochs, batch_size, lr, generator, rng, locked):
    """Stages 2 (``locked``: CNN14 fixed) and 3 (everything trained): symmetric InfoNCE between scenes and freshly
    drawn captions; returns one log entry per epoch."""
    if epochs == 0:
        return []
    stage = "contrastive (audio locked)" if locked else "contrastive (joint)"
    if locked:
        # CNN14 is fixed in eval mode, so its clip embeddings are computed once; an epoch then costs little more
        # than the text tower.
        _recompute_batch_norm_statistics(model, train.logmels[:_BATCH_NORM_CLIPS], batch_size)
        features, valid_features = _locked_features(model, train.logmels), _locked_features(model, valid.logmels)
        params = [*model.audio_encoder.projection.parameters(), *model.caption_encoder.parameters()]
        params.append(model.log_logit_scale)
    else:
        params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=lr)
    scheduler = _schedule(optimizer, epochs * _n_batches(len(train), batch_size))
    groups = train.groups
    history = []
    for epoch in range(1, epochs + 1):
        if locked:
            model.eval()
        else:
            _train_batch_norms_only(model)
        losses = []
        batches = _batches(len(train), batch_size, generator)
        for idx in tqdm(batches, desc=f"small CLAP {stage} {epoch}/{epochs}", dynamic_ncols=True, leave=False):
            if locked:
                audio = l2_normalize(model.audio_encoder.projection(features[idx]))
            else:
                audio = model.encode_audio(train.logmels[idx])
            text = model.encode_text([sample_caption(train.classes[i], rng) for i in idx.tolist()])
            loss = contrastive_loss(audio, text, model.logit_scale, groups[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.log_logit_scale.clamp_(max=math.log(_MAX_LOGIT_SCALE))
            losses.append(float(loss.detach()))
        if locked:
            accuracy = _locked_accuracy(model, valid_features, valid.labels)
        else:
            accuracy = zero_shot_accuracy(model, valid)
        entry = {
            "epoch": epoch,
            "loss": float(np.mean(losses)),
            "logit_scale": float(model.logit_scale.detach()),
            "valid_accuracy": accuracy,
        }
        history.append(entry)
        logger.info(
            "Small CLAP %s epoch %d/%d: loss %.4f, logit scale %.1f, zero-shot valid accuracy %.3f",
            stage,
            epoch,
            epochs,
            entry["loss"],
            entry["logit_scale"],
            entry["valid_accuracy"],
        )
    return history
