"""Log-mels of synthetic scenes with the classes of their events, and the zero-shot accuracy measured on them."""

from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.data.pipeline import peak_normalize
from speechbrain_lmaczs.synthetic.events import CLASS_LABELS, prompt_for
from speechbrain_lmaczs.synthetic.scenes import make_scene
from speechbrain_lmaczs.synthetic.supports import SpectrogramGrid, support_masks


def event_set_id(class_indices):
    """An integer naming the set of classes of a scene (a bit per class), so that equal sets get equal ids.

    Example
    -------
    >>> event_set_id([2, 0]) == event_set_id([0, 2]), event_set_id([1])
    (True, 2)
    """
    return sum(1 << int(c) for c in set(class_indices))



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
    >>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    >>> from speechbrain_lmaczs.synthetic.scenes import SceneConfig
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
    >>> from speechbrain_lmaczs.synthetic.small_clap import build_small_clap
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

