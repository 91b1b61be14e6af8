"""Synthetic sound scenes: 1-3 events over a faint pink-noise floor, drawn deterministically.

A scene is a pure function of ``(seed, split, index)`` and the :class:`SceneConfig`; every event is kept on its
own beside the mixture, so that its support can be computed exactly (:mod:`speechbrain_lmaczs.synthetic.supports`).

Example
-------
>>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
>>> from speechbrain_lmaczs.synthetic.supports import SpectrogramGrid
>>> fe = LogMelFrontend(16000, 512, 160, 64, 20.0, 8000.0, clip_seconds=5.0)
>>> scene = make_scene(seed=0, index=3, config=SceneConfig(sample_rate=16000),
...                    grid=SpectrogramGrid.from_frontend(fe, "mel"))
>>> scene.caption == " and ".join(event.caption for event in scene.events)
True
>>> scene.supports.shape == (len(scene.events), fe.n_frames, fe.n_mels)
True
"""

import zlib
from dataclasses import dataclass, field

import numpy as np

from speechbrain_lmaczs.synthetic.events import (
    CLASS_LABELS,
    EVENT_CLASSES,
    MIN_SAMPLE_RATE,
    class_index,
    pink_noise,
    prompt_for,
    render_event,
)
from speechbrain_lmaczs.synthetic.supports import support_masks

#: Bumped whenever the audio or the masks a given (seed, index, config) produces change, so that
#: :func:`write_synthetic_dataset` regenerates folders written by an older generator.
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. Ranges are ``(low, high)`` and drawn uniformly.

    Parameters
    ----------
    sample_rate : int
        Sampling rate of the waveform, in Hz (at least :data:`MIN_SAMPLE_RATE`).
    clip_seconds : float
        Scene length.
    n_events : tuple of int
        Inclusive range of the number of events; ``(1, 1)`` gives single-event scenes for zero-shot evaluation.
    event_seconds : tuple of float
        Event duration range.
    event_level_db : tuple of float
        Event RMS level range, in dB relative to full scale, measured over the event's own duration.
    background_db : tuple of float
        Background RMS level relative to the loudest event's level, in dB.
    peak : float
        The mixture is scaled down (events, background and recorded levels alike) when its peak exceeds this.
    """

    sample_rate: int = 44100
    clip_seconds: float = 5.0
    n_events: tuple = (1, 3)
    event_seconds: tuple = (0.4, 1.5)
    event_level_db: tuple = (-26.0, -14.0)
    background_db: tuple = (-40.0, -30.0)
    peak: float = 0.9

    def __post_init__(self):
        if self.sample_rate < MIN_SAMPLE_RATE:
            raise ValueError(
                f"sample_rate={self.sample_rate} is too low: the synthetic events need at least {MIN_SAMPLE_RATE} Hz."
            )
        lo, hi = self.n_events
        if not 1 <= lo <= hi <= len(CLASS_LABELS):
            raise ValueError(f"n_events={self.n_events} must satisfy 1 <= low <= high <= {len(CLASS_LABELS)}.")
        if self.event_seconds[1] > self.clip_seconds:
            raise ValueError(
                f"Events of up to {self.event_seconds[1]} s do not fit in clips of {self.clip_seconds} s; "
                "lower event_seconds or raise clip_seconds."
            )
        if not 0.0 < self.peak <= 1.0:
            raise ValueError(f"peak={self.peak} must be in (0, 1].")

    @property
    def clip_samples(self):
        """Samples in one scene."""
        return int(round(self.clip_seconds * self.sample_rate))


@dataclass
class SceneEvent:
    """One event of a scene; times in seconds, level in dB RMS relative to full scale over [onset, offset)."""

    class_index: int
    label: str
    caption: str
    onset: float
    offset: float
    level_db: float

    @property
    def prompt(self):
        """Zero-shot prompt of the event's class (see :func:`prompt_for`)."""
        return prompt_for(self.class_index)

    def to_dict(self):
        """JSON-friendly description, as stored in manifests."""
        return {
            "classID": self.class_index,
            "label": self.label,
            "caption": self.caption,
            "prompt": self.prompt,
            "onset": self.onset,
            "offset": self.offset,
            "level_db": self.level_db,
        }


@dataclass
class Scene:
    """A synthetic scene and everything needed to know where each of its events lives.

    Attributes
    ----------
    waveform : numpy.ndarray
        float32 mixture, (samples,), within [-1, 1]; equal to ``event_waveforms.sum(0) + background``.
    sample_rate : int
    events : list of SceneEvent
        Sorted by onset.
    caption : str
        The events' captions in onset order, joined with ``" and "``.
    event_waveforms : numpy.ndarray
        float32 (n_events, samples): each event alone, as it was mixed (same order as ``events``).
    background : numpy.ndarray
        float32 (samples,): the noise floor alone.
    supports : numpy.ndarray or None
        bool (n_events, time, freq) support masks on the grid given to :func:`make_scene` (see
        :func:`support_masks`); None when no grid was given.
    """

    waveform: np.ndarray
    sample_rate: int
    events: list
    caption: str
    event_waveforms: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)
    supports: np.ndarray = field(default=None, repr=False)

    @property
    def duration(self):
        """Length in seconds."""
        return len(self.waveform) / self.sample_rate


def _split_key(split):
    # crc32 rather than hash(): Python salts str hashes per process, which would break determinism.
    return zlib.crc32(split.encode("utf-8"))


def make_scene(seed, index, config=None, split="train", classes=None, grid=None):
    """Draw scene number ``index`` of a split, deterministically.

    The first drawn event's class is ``index % len(CLASS_LABELS)``, so any run of consecutive indices is
    class-balanced (what a zero-shot evaluation set of single-event scenes needs); further events take other,
    distinct classes, so that each class prompt points at a single event of the scene.

    Parameters
    ----------
    seed : int
        Seed of the whole dataset.
    index : int
        Scene number within the split.
    config : SceneConfig, optional
        Drawing parameters (defaults: ``SceneConfig()``).
    split : str
        Name of the split; different splits draw different scenes from the same seed.
    classes : sequence of (str or int), optional
        Force the events' classes (labels or indices; their number overrides ``config.n_events``); onsets,
        durations, levels and jitter are still drawn.
    grid : SpectrogramGrid, optional
        When given, ``scene.supports`` holds the events' support masks on it.

    Returns
    -------
    Scene

    Example
    -------
    >>> cfg = SceneConfig(sample_rate=16000, clip_seconds=2.0, n_events=(2, 2))
    >>> scene = make_scene(0, 7, cfg)
    >>> scene.waveform.shape, scene.waveform.dtype, len(scene.events)
    ((32000,), dtype('float32'), 2)
    >>> np.array_equal(scene.waveform, make_scene(0, 7, cfg).waveform)
    True
    >>> sorted(event.label for event in make_scene(0, 7, cfg, classes=["hum", "beep"]).events)
    ['beep', 'hum']
    """
    config = SceneConfig() if config is None else config
    rng = np.random.default_rng([int(seed), _split_key(split), int(index)])
    n_classes = len(CLASS_LABELS)
    if classes is None:
        n_events = int(rng.integers(config.n_events[0], config.n_events[1] + 1))
        first = int(index) % n_classes
        others = rng.permutation([c for c in range(n_classes) if c != first])[: n_events - 1]
        chosen = [first] + [int(c) for c in others]
    else:
        chosen = [class_index(c) for c in classes]
        if not chosen:
            raise ValueError("classes must name at least one event class.")

    sr, n_total = config.sample_rate, config.clip_samples
    events, tracks = [], np.zeros((len(chosen), n_total))
    for row, cls in enumerate(chosen):
        duration = rng.uniform(*config.event_seconds)
        n = int(round(duration * sr))
        start = int(rng.integers(0, n_total - n + 1))
        level_db = rng.uniform(*config.event_level_db)
        caption = EVENT_CLASSES[cls].captions[int(rng.integers(len(EVENT_CLASSES[cls].captions)))]
        tracks[row, start : start + n] = render_event(cls, rng, n / sr, sr) * 10.0 ** (level_db / 20.0)
        events.append(SceneEvent(cls, CLASS_LABELS[cls], caption, start / sr, (start + n) / sr, level_db))

    background_db = max(e.level_db for e in events) + rng.uniform(*config.background_db)
    background = pink_noise(rng, n_total, sr) * 10.0 ** (background_db / 20.0)

    mixture = tracks.sum(0) + background
    peak = np.max(np.abs(mixture))
    if peak > config.peak:
        gain = config.peak / peak
        tracks, background, mixture = tracks * gain, background * gain, mixture * gain
        for event in events:
            event.level_db += 20.0 * np.log10(gain)
    for event in events:
        event.level_db = round(float(event.level_db), 3)

    order = sorted(range(len(events)), key=lambda i: events[i].onset)
    events = [events[i] for i in order]
    scene = Scene(
        waveform=mixture.astype(np.float32),
        sample_rate=sr,
        events=events,
        caption=" and ".join(e.caption for e in events),
        event_waveforms=tracks[order].astype(np.float32),
        background=background.astype(np.float32),
    )
    if grid is not None:
        scene.supports = support_masks(scene, grid)
    return scene

