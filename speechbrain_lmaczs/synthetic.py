"""Synthetic sound scenes whose time-frequency ground truth is known exactly.

No pretrained CLAP can be downloaded in every environment this project runs in, so the localisation benchmark is
built on scenes we synthesise ourselves: 1-3 events drawn from :data:`CLASS_LABELS` over a faint pink-noise floor.
Because every event is rendered on its own before mixing, the bins where each event lives in the mixture (its
*support*) can be computed exactly on any spectrogram grid (see :func:`dominant_support`).

Everything is deterministic: a scene is a pure function of ``(seed, split, index)`` and the :class:`SceneConfig`.

Example
-------
>>> fe = LogMelFrontend(16000, 512, 160, 64, 20.0, 8000.0, clip_seconds=5.0)
>>> scene = make_scene(seed=0, index=3, config=SceneConfig(sample_rate=16000),
...                    grid=SpectrogramGrid.from_frontend(fe, "mel"))
>>> scene.caption == " and ".join(event.caption for event in scene.events)
True
>>> scene.supports.shape == (len(scene.events), fe.n_frames, fe.n_mels)
True
"""

import json
import logging
import os
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_lmaczs.clap.frontend import LogMelFrontend

logger = logging.getLogger(__name__)

#: Bumped whenever the audio or the masks a given (seed, index, config) produces change, so that
#: :func:`write_synthetic_dataset` regenerates folders written by an older generator.
GENERATOR_VERSION = 1

#: Lowest sampling rate whose Nyquist frequency sits above every event's highest component (about 7 kHz).
MIN_SAMPLE_RATE = 16000

# Raised-cosine fade at both ends of every event: without it the rectangular cut would splash broadband energy
# over the whole spectrum at onset and offset, and the support of a pure tone would no longer be narrow.
_FADE_SECONDS = 0.005


# --------------------------------------------------------------------------------------------------------------
# Event classes. Each synthesiser returns a raw signal of ``n`` samples; scaling to a level happens afterwards.
# Parameter ranges are the class's identity; the draws inside them are the per-instance jitter.
# --------------------------------------------------------------------------------------------------------------


def _time(n, sr):
    return np.arange(n) / sr


def _band_noise(rng, n, sr, f_lo, f_hi):
    """White noise restricted to [f_lo, f_hi] Hz by zeroing FFT bins (a brick-wall band-pass)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < f_lo) | (freqs > f_hi)] = 0.0
    return np.fft.irfft(spec, n)


def _beep(rng, n, sr):
    return np.sin(2 * np.pi * rng.uniform(3000.0, 4000.0) * _time(n, sr))


def _hum(rng, n, sr):
    t = _time(n, sr)
    f0 = rng.uniform(90.0, 140.0)
    gains = np.array([1.0, 0.5, 0.3, 0.15])
    k = np.arange(1, len(gains) + 1)
    phases = rng.uniform(0, 2 * np.pi, len(gains))
    return (gains[:, None] * np.sin(2 * np.pi * f0 * k[:, None] * t + phases[:, None])).sum(0)


def _sweep(f_start, f_end, n, sr):
    """Exponential sweep: equal time per octave, as heard in a chirp."""
    seconds = n / sr
    t = _time(n, sr)
    ratio = f_end / f_start
    phase = 2 * np.pi * f_start * seconds / np.log(ratio) * (ratio ** (t / seconds) - 1.0)
    return np.sin(phase)


def _rising_chirp(rng, n, sr):
    return _sweep(rng.uniform(300.0, 500.0), rng.uniform(2000.0, 3000.0), n, sr)


def _falling_chirp(rng, n, sr):
    # Not the mirror image of the rising chirp: its range sits an octave higher, so the two also differ in
    # frequency and a model cannot tell them apart only by the direction of the sweep.
    return _sweep(rng.uniform(4000.0, 5000.0), rng.uniform(1000.0, 1500.0), n, sr)


def _hiss(rng, n, sr):
    return _band_noise(rng, n, sr, rng.uniform(4000.0, 4500.0), rng.uniform(6500.0, 7000.0))


def _rumble(rng, n, sr):
    return _band_noise(rng, n, sr, rng.uniform(30.0, 50.0), rng.uniform(200.0, 300.0))


def _clicks(rng, n, sr):
    rate = rng.uniform(15.0, 25.0)
    train = np.zeros(n)
    train[(np.arange(0.0, n / sr, 1.0 / rate) * sr).astype(int)] = 1.0
    # Each click is a 1 ms exponentially decaying noise burst: broadband, but confined to the click instants.
    ir_len = max(8, int(0.006 * sr))
    ir = rng.standard_normal(ir_len) * np.exp(-np.arange(ir_len) / (0.001 * sr))
    return np.convolve(train, ir)[:n]


def _buzz(rng, n, sr):
    t = _time(n, sr)
    f0 = rng.uniform(180.0, 260.0)
    out = np.zeros(n)
    # A band-limited sawtooth (1/k harmonics) stopped at 5 kHz so every sampling rate renders the same sound.
    for k in range(1, int(5000.0 // f0) + 1):
        out += np.sin(2 * np.pi * k * f0 * t) / k
    return out


def _tremolo(rng, n, sr):
    t = _time(n, sr)
    envelope = 1.0 + 0.9 * np.sin(2 * np.pi * rng.uniform(4.0, 8.0) * t + rng.uniform(0, 2 * np.pi))
    return envelope * np.sin(2 * np.pi * rng.uniform(900.0, 1300.0) * t)


def _warble(rng, n, sr):
    t = _time(n, sr)
    rate, depth = rng.uniform(5.0, 9.0), rng.uniform(150.0, 300.0)
    phase = 2 * np.pi * rng.uniform(1800.0, 2400.0) * t - depth / rate * np.cos(2 * np.pi * rate * t)
    return np.sin(phase)


@dataclass(frozen=True)
class EventClass:
    """One sound-event class: a short label, caption variants (the first is the canonical one) and a synthesiser."""

    label: str
    captions: tuple
    synth: object = field(repr=False)


#: The event classes, in class-index order. They differ in frequency range, spectral shape and temporal structure.
EVENT_CLASSES = (
    EventClass("beep", ("a high pitched beep", "a short high beep", "a steady high tone"), _beep),
    EventClass("hum", ("a low hum", "a deep electrical hum", "a low droning hum"), _hum),
    EventClass("rising chirp", ("a rising chirp", "a tone sweeping upward", "an upward pitch sweep"), _rising_chirp),
    EventClass(
        "falling chirp", ("a falling chirp", "a tone sweeping downward", "a downward pitch sweep"), _falling_chirp
    ),
    EventClass("hiss", ("a burst of high-frequency noise", "a sharp hiss", "a short burst of hissing noise"), _hiss),
    EventClass("rumble", ("a burst of low rumbling noise", "a low rumble", "a deep rumbling noise"), _rumble),
    EventClass("clicks", ("a fast click train", "rapid clicking", "a quick series of clicks"), _clicks),
    EventClass("buzz", ("a harmonic buzz", "a buzzing sound", "a bright nasal buzz"), _buzz),
    EventClass(
        "tremolo tone", ("an amplitude modulated tone", "a pulsating tone", "a tone with tremolo"), _tremolo
    ),
    EventClass("warble", ("a frequency modulated warble", "a warbling tone", "a wavering siren-like tone"), _warble),
)

#: Class labels in class-index order (``CLASS_LABELS[classID]``).
CLASS_LABELS = [c.label for c in EVENT_CLASSES]

_CLASS_INDEX = {label: i for i, label in enumerate(CLASS_LABELS)}


def class_index(label):
    """Class index of a label (or of an index, which is checked and returned).

    Example
    -------
    >>> class_index("hum"), class_index(3)
    (1, 3)
    """
    if isinstance(label, (int, np.integer)):
        if not 0 <= label < len(CLASS_LABELS):
            raise ValueError(f"Class index {label} is out of range: there are {len(CLASS_LABELS)} classes.")
        return int(label)
    if label not in _CLASS_INDEX:
        raise ValueError(f"Unknown synthetic class {label!r}; choose one of {CLASS_LABELS}.")
    return _CLASS_INDEX[label]


def prompt_for(label):
    """Zero-shot text prompt of a class: ``"this is the sound of "`` + its canonical caption.

    Parameters
    ----------
    label : str or int
        A label from :data:`CLASS_LABELS`, or its index.

    Returns
    -------
    str

    Example
    -------
    >>> prompt_for("beep")
    'this is the sound of a high pitched beep'
    >>> [prompt_for(label) for label in CLASS_LABELS][-1]
    'this is the sound of a frequency modulated warble'
    """
    return "this is the sound of " + EVENT_CLASSES[class_index(label)].captions[0]


def _fade(n, sr):
    fade = min(int(_FADE_SECONDS * sr), n // 2)
    env = np.ones(n)
    if fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
        env[:fade] = ramp
        env[n - fade :] = ramp[::-1]
    return env


def render_event(label, rng, duration, sample_rate):
    """Render one event alone, faded in and out and scaled to unit RMS.

    Parameters
    ----------
    label : str or int
        Class label or index.
    rng : numpy.random.Generator
        Source of the per-instance jitter (and of the noise, for noisy classes).
    duration : float
        Length in seconds.
    sample_rate : int
        Sampling rate in Hz, at least :data:`MIN_SAMPLE_RATE`.

    Returns
    -------
    numpy.ndarray
        float64, ``round(duration * sample_rate)`` samples, RMS 1.

    Example
    -------
    >>> x = render_event("warble", np.random.default_rng(0), 0.5, 16000)
    >>> x.shape, round(float(np.sqrt(np.mean(x ** 2))), 6)
    ((8000,), 1.0)
    """
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate={sample_rate} is too low: the synthetic events need at least {MIN_SAMPLE_RATE} Hz."
        )
    n = int(round(duration * sample_rate))
    if n < 2:
        raise ValueError(f"duration={duration} s is too short to render an event at {sample_rate} Hz.")
    x = EVENT_CLASSES[class_index(label)].synth(rng, n, sample_rate) * _fade(n, sample_rate)
    return x / np.sqrt(np.mean(x**2))


def pink_noise(rng, n, sample_rate):
    """Unit-RMS pink (1/f power) noise, without energy below 20 Hz.

    Example
    -------
    >>> x = pink_noise(np.random.default_rng(0), 16000, 16000)
    >>> round(float(np.sqrt(np.mean(x ** 2))), 6)
    1.0
    """
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    # 1/sqrt(f) in amplitude is 1/f in power; the 20 Hz floor removes DC and inaudible drift.
    spec *= np.where(freqs >= 20.0, 1.0 / np.sqrt(np.maximum(freqs, 20.0)), 0.0)
    x = np.fft.irfft(spec, n)
    return x / np.sqrt(np.mean(x**2))


# --------------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------------
# Support masks
# --------------------------------------------------------------------------------------------------------------


class SpectrogramGrid:
    """The (time, freq) grid support masks live on: a complex STFT, then an optional frequency projection.

    Parameters
    ----------
    stft : callable
        Float tensor (batch, samples) -> complex tensor (batch, time, linear freq).
    sample_rate : int
        Rate the STFT expects; scenes at another rate are refused.
    projection : torch.Tensor or numpy.ndarray, optional
        (linear freq, out freq) non-negative matrix applied to power spectrograms (e.g. a mel filterbank);
        None keeps the linear STFT bins.
    device : str or torch.device
        Where the STFT and the projection run (the device of the front-end's buffers).

    Example
    -------
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=1.0)
    >>> SpectrogramGrid.from_frontend(fe, "mel").power(np.zeros((1, 16000))).shape
    (1, 101, 40)
    >>> SpectrogramGrid.from_frontend(fe, "linear").power(np.zeros((1, 16000))).shape
    (1, 101, 257)
    """

    def __init__(self, stft, sample_rate, projection=None, device="cpu"):
        self.stft = stft
        self.sample_rate = int(sample_rate)
        self.device = torch.device(device)
        self.projection = None if projection is None else torch.as_tensor(projection, device=self.device)

    @classmethod
    def from_frontend(cls, frontend, scale="mel"):
        """The grid of a :class:`~speechbrain_lmaczs.clap.frontend.LogMelFrontend` (or any object with
        ``.stft``, ``.mel_fbank`` and ``.sample_rate``), on its mel bands (``"mel"``) or its STFT bins
        (``"linear"``)."""
        if scale not in ("mel", "linear"):
            raise ValueError(f"scale={scale!r}: choose 'mel' or 'linear'.")
        fbank = frontend.mel_fbank
        return cls(frontend.stft, frontend.sample_rate, fbank if scale == "mel" else None, device=fbank.device)

    @classmethod
    def from_stft_params(cls, sample_rate, n_fft, hop_length, projection=None):
        """A grid from explicit parameters: the centred, Hann-windowed STFT of :class:`LogMelFrontend`, then
        ``projection`` ((n_fft // 2 + 1, out freq), or None for the STFT bins).

        Example
        -------
        >>> SpectrogramGrid.from_stft_params(16000, 400, 160).power(np.zeros((1, 1600))).shape
        (1, 11, 201)
        """
        # Only the STFT of this front-end is used; its single mel band is never applied.
        frontend = LogMelFrontend(sample_rate, n_fft, hop_length, 1, 0.0, sample_rate / 2, clip_seconds=1.0)
        return cls(frontend.stft, sample_rate, projection)

    def spectrum(self, waveforms):
        """Complex STFT of a (batch, samples) array, as a (batch, time, linear freq) tensor."""
        wav = torch.as_tensor(np.asarray(waveforms, dtype=np.float32), device=self.device)
        with torch.no_grad():
            return self.stft(wav)

    def project(self, power):
        """Linear-frequency power (tensor) -> power on this grid, as a float32 numpy array."""
        with torch.no_grad():
            if self.projection is not None:
                power = torch.matmul(power, self.projection.to(power.dtype))
        return power.cpu().numpy()

    def power(self, waveforms):
        """Power spectrogram on this grid of a (batch, samples) array -> (batch, time, freq) float32."""
        return self.project(_power(self.spectrum(waveforms)))


def _power(spec):
    # |z|^2 without the square root that Tensor.abs() would take first.
    return torch.view_as_real(spec).square().sum(-1)


def dominant_support(event_power, rest_power, rel_db=-30.0, margin_db=0.0):
    """Where an event lives in a mixture, given its power and the power of everything else on one grid.

    A bin (t, f) belongs to the event's support when both hold:

    1. it carries a noticeable part of the event: ``event_power >= max(event_power) * 10**(rel_db / 10)``;
    2. the event dominates it: ``event_power > rest_power * 10**(margin_db / 10)``, where ``rest_power`` is the
       power of the rest of the mixture (background and all other events) in that bin.

    With ``margin_db >= 0`` no bin can be dominated by two events, so the supports of a scene's events are
    disjoint up to phase interactions between the sources.

    Parameters
    ----------
    event_power, rest_power : numpy.ndarray
        Non-negative arrays of the same shape, (time, freq).
    rel_db : float
        Threshold relative to the event's own maximum, in dB (negative).
    margin_db : float
        How much the event must exceed the rest of the mixture, in dB.

    Returns
    -------
    numpy.ndarray
        bool, same shape.

    Example
    -------
    >>> event = np.array([[1.0, 0.5, 1e-4]])
    >>> rest = np.array([[0.1, 1.0, 0.0]])
    >>> dominant_support(event, rest)
    array([[ True, False, False]])
    """
    event_power = np.asarray(event_power)
    peak = event_power.max()
    if peak <= 0:
        return np.zeros(event_power.shape, dtype=bool)
    loud = event_power >= peak * 10.0 ** (rel_db / 10.0)
    dominant = event_power > np.asarray(rest_power) * 10.0 ** (margin_db / 10.0)
    return loud & dominant


def support_masks(scene, grid, rel_db=-30.0, margin_db=0.0):
    """Support mask of every event of a scene on a grid (definition in :func:`dominant_support`).

    Each event and the background are transformed separately; the rest of the mixture for event i is the sum of
    the other complex spectra (the STFT is linear), so the comparison is exact, cross terms included.

    Parameters
    ----------
    scene : Scene
    grid : SpectrogramGrid
    rel_db, margin_db : float
        See :func:`dominant_support`.

    Returns
    -------
    numpy.ndarray
        bool (n_events, time, freq), in the order of ``scene.events``.

    Example
    -------
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=2.0)
    >>> scene = make_scene(1, 0, SceneConfig(sample_rate=16000, clip_seconds=2.0, n_events=(1, 1)))
    >>> masks = support_masks(scene, SpectrogramGrid.from_frontend(fe, "mel"))
    >>> masks.shape, masks.dtype, bool(masks.any())
    ((1, 201, 40), dtype('bool'), True)
    """
    event_power, rest_power = _source_powers(scene, grid)
    return _supports(grid.project(event_power), grid.project(rest_power), rel_db, margin_db)


def _source_powers(scene, grid):
    """Linear-frequency power of each event alone and of the rest of the mixture around it (tensors)."""
    if scene.sample_rate != grid.sample_rate:
        raise ValueError(
            f"The scene is at {scene.sample_rate} Hz but the grid expects {grid.sample_rate} Hz: generate scenes "
            "with SceneConfig(sample_rate=...) equal to the front-end's rate."
        )
    sources = np.concatenate([scene.event_waveforms, scene.background[None]], axis=0)
    spectra = grid.spectrum(sources)
    with torch.no_grad():
        rest = spectra.sum(0, keepdim=True) - spectra[:-1]
        return _power(spectra[:-1]), _power(rest)


def _supports(event_power, rest_power, rel_db, margin_db):
    return np.stack([dominant_support(e, r, rel_db, margin_db) for e, r in zip(event_power, rest_power)])


# --------------------------------------------------------------------------------------------------------------
# Dataset writer
# --------------------------------------------------------------------------------------------------------------


def _replace_json(path, obj):
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def write_synthetic_dataset(
    folder,
    n_scenes,
    seed,
    split,
    frontend,
    config=None,
    rel_db=-30.0,
    margin_db=0.0,
    subtype="PCM_16",
):
    """Write one split of synthetic scenes: WAVs, support masks and a SpeechBrain JSON manifest.

    Layout under ``folder``::

        {split}.json                      manifest (SpeechBrain style: id -> entry)
        {split}.options.json              the options below; written last, it marks a complete split
        {split}/audio/{split}_{i:05d}.wav
        {split}/support/{split}_{i:05d}.npz   "mel": bool (n_events, time, n_mels) and
                                              "linear": bool (n_events, time, n_fft // 2 + 1), events in manifest order

    Manifest entries::

        {"wav": absolute path, "duration": s, "sample_rate": Hz, "caption": "a low hum and a rising chirp",
         "class_string": label of the first event (the only one in single-event scenes), "classID": its index,
         "n_events": ..., "events": [{"classID", "label", "caption", "prompt", "onset", "offset", "level_db"}, ...],
         "support": absolute path of the npz}

    Scenes are generated at the front-end's sampling rate. Calling again with the same options is a no-op; with
    other options the split is rewritten. Every file is written under a temporary name and renamed into place,
    so an interrupted run never leaves a truncated file behind a valid name.

    Parameters
    ----------
    folder : str or path
        Output folder (created if missing).
    n_scenes : int
        Number of scenes.
    seed : int
        Dataset seed (see :func:`make_scene`).
    split : str
        Split name, e.g. ``"train"``, ``"valid"``, ``"test"``.
    frontend : LogMelFrontend
        Defines the sampling rate and the mel and linear grids of the masks.
    config : SceneConfig, optional
        Scene parameters; its ``sample_rate`` is replaced by the front-end's.
    rel_db, margin_db : float
        Support definition, see :func:`dominant_support`.
    subtype : str
        soundfile subtype of the WAVs (``"PCM_16"`` or ``"FLOAT"``).

    Returns
    -------
    pathlib.Path
        Path of the manifest.

    Example
    -------
    >>> import tempfile
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=2.0)
    >>> cfg = SceneConfig(clip_seconds=2.0, n_events=(1, 2))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     manifest = write_synthetic_dataset(d, 2, 0, "valid", fe, cfg)
    ...     sorted(json.loads(manifest.read_text()))
    ['valid_00000', 'valid_00001']
    """
    if n_scenes < 1:
        raise ValueError(f"n_scenes={n_scenes}: ask for at least one scene.")
    config = SceneConfig() if config is None else config
    config = SceneConfig(**{**asdict(config), "sample_rate": frontend.sample_rate})
    folder = Path(folder).resolve()
    manifest_path = folder / f"{split}.json"
    options_path = folder / f"{split}.options.json"
    options = {
        "generator_version": GENERATOR_VERSION,
        "n_scenes": int(n_scenes),
        "seed": int(seed),
        "split": split,
        "scene_config": json.loads(json.dumps(asdict(config))),
        "frontend": frontend.config(),
        "rel_db": float(rel_db),
        "margin_db": float(margin_db),
        "subtype": subtype,
    }
    if manifest_path.exists() and options_path.exists():
        with open(options_path, encoding="utf-8") as f:
            previous = json.load(f)
        if previous == options:
            logger.info("Synthetic split %r already written in %s, skipping.", split, folder)
            return manifest_path
        logger.info("Synthetic split %r in %s was written with other options, rewriting it.", split, folder)
        options_path.unlink()

    audio_dir, support_dir = folder / split / "audio", folder / split / "support"
    audio_dir.mkdir(parents=True, exist_ok=True)
    support_dir.mkdir(parents=True, exist_ok=True)
    mel_grid = SpectrogramGrid.from_frontend(frontend, "mel")
    linear_grid = SpectrogramGrid.from_frontend(frontend, "linear")

    manifest = {}
    for index in tqdm(range(n_scenes), desc=f"synthetic {split}", dynamic_ncols=True):
        scene = make_scene(seed, index, config, split=split)
        scene_id = f"{split}_{index:05d}"
        wav_path, support_path = audio_dir / f"{scene_id}.wav", support_dir / f"{scene_id}.npz"

        tmp = Path(f"{wav_path}.tmp")
        sf.write(tmp, scene.waveform, scene.sample_rate, subtype=subtype, format="WAV")
        os.replace(tmp, wav_path)

        # Both grids share the front-end's STFT: transform once, project twice.
        event_power, rest_power = _source_powers(scene, linear_grid)
        tmp = Path(f"{support_path}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(
                f,
                mel=_supports(mel_grid.project(event_power), mel_grid.project(rest_power), rel_db, margin_db),
                linear=_supports(linear_grid.project(event_power), linear_grid.project(rest_power), rel_db, margin_db),
            )
        os.replace(tmp, support_path)

        first = scene.events[0]
        manifest[scene_id] = {
            "wav": str(wav_path),
            "duration": scene.duration,
            "sample_rate": scene.sample_rate,
            "caption": scene.caption,
            "class_string": first.label,
            "classID": first.class_index,
            "n_events": len(scene.events),
            "events": [e.to_dict() for e in scene.events],
            "support": str(support_path),
        }

    _replace_json(manifest_path, manifest)
    _replace_json(options_path, options)
    logger.info("Wrote %d synthetic scenes of split %r to %s.", n_scenes, split, folder)
    return manifest_path
