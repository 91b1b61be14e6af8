"""Where each event of a synthetic scene lives: exact support masks on a spectrogram grid.

Every event is transformed on its own, so the rest of the mixture around it is known bin by bin (the STFT is
linear) and the comparison of :func:`dominant_support` is exact, cross terms included.
"""

import numpy as np
import torch

from speechbrain_lmaczs.clap.frontend import LogMelFrontend

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
    >>> from speechbrain_lmaczs.synthetic.scenes import SceneConfig, make_scene
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=2.0)
    >>> scene = make_scene(1, 0, SceneConfig(sample_rate=16000, clip_seconds=2.0, n_events=(1, 1)))
    >>> masks = support_masks(scene, SpectrogramGrid.from_frontend(fe, "mel"))
    >>> masks.shape, masks.dtype, bool(masks.any())
    ((1, 201, 40), dtype('bool'), True)
    """
    event_power, rest_power = source_powers(scene, grid)
    return supports_from_powers(grid.project(event_power), grid.project(rest_power), rel_db, margin_db)


def source_powers(scene, grid):
    """Linear-frequency power of each event alone and of the rest of the mixture around it.

    Parameters
    ----------
    scene : Scene
        At the grid's sampling rate.
    grid : SpectrogramGrid

    Returns
    -------
    tuple of torch.Tensor
        Two (n_events, time, linear freq) tensors; :meth:`SpectrogramGrid.project` takes them to the grid.
    """
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


def supports_from_powers(event_power, rest_power, rel_db=-30.0, margin_db=0.0):
    """:func:`dominant_support` of each event, from (n_events, time, freq) powers on one grid -> bool array.

    >>> supports_from_powers(np.array([[[1.0, 0.1]]]), np.array([[[0.5, 0.5]]])).tolist()
    [[[True, False]]]
    """
    return np.stack([dominant_support(e, r, rel_db, margin_db) for e, r in zip(event_power, rest_power)])

