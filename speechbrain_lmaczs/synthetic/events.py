"""The sound-event classes of the synthetic benchmark, and how one event of a class is rendered.

Each class is a synthesiser whose parameter ranges are the class's identity; the draws inside them are the
per-instance jitter. Events are rendered alone (faded in and out, unit RMS) and mixed by
:func:`speechbrain_lmaczs.synthetic.scenes.make_scene`.
"""

from dataclasses import dataclass, field

import numpy as np

#: Lowest sampling rate whose Nyquist frequency sits above every event's highest component (about 7 kHz).
MIN_SAMPLE_RATE = 16000

# Raised-cosine fade at both ends of every event: without it the rectangular cut would splash broadband energy
# over the whole spectrum at onset and offset, and the support of a pure tone would no longer be narrow.
_FADE_SECONDS = 0.005


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

