"""A recording as the explainer takes it in and gives it back: reading a file with checks a user can act on, the
model windows it is cut into, stitching window masks onto the whole recording's grid, and the result types.
"""

import logging
import os
from dataclasses import dataclass, field

import soundfile as sf
import torch

logger = logging.getLogger(__name__)


class ExplainError(ValueError):
    """Something the user gave (a file, a prompt, a folder, an option) cannot be explained; the message says why."""


@dataclass
class Explanation:
    """One prompt's explanation of one recording.

    Attributes
    ----------
    prompt : str
        The text explained.
    probability : float
        Zero-shot probability of the prompt among the candidates scored (the given prompts, or the label set),
        averaged over the recording's windows.
    method : str
        The interpreter that made the mask.
    mask : torch.Tensor
        (time, freq) in [0, 1] on the recording's representation grid (see :class:`RecordingExplanation`).
    waveform : torch.Tensor
        (samples,) the listenable explanation at the recording's own rate, as long as the input.
    """

    prompt: str
    probability: float
    method: str
    mask: torch.Tensor
    waveform: torch.Tensor


@dataclass
class RecordingExplanation:
    """Explanations of one recording by one method, with what is needed to plot and play them.

    Attributes
    ----------
    path : str or None
        The file explained (None for an in-memory waveform).
    sample_rate : int
        The input's rate, also the rate of every explanation's waveform.
    waveform : torch.Tensor
        (samples,) the input, downmixed to mono, at its own rate.
    spectrogram : torch.Tensor
        (time, freq) the masking domain's representation of the whole recording, in dB.
    frame_seconds : float
        Time between two frames of ``spectrogram`` and of every mask.
    frequencies : torch.Tensor
        (freq,) centre frequency in Hz of each row of ``spectrogram`` (mel bands or STFT bins).
    frequency_scale : str
        ``"mel"`` or ``"linear"``: how the frequency rows are spaced.
    method : str
        The interpreter used.
    candidates : list of str
        The prompts that were scored (the given prompts, or the label prompts).
    probabilities : torch.Tensor
        (len(candidates),) their zero-shot probabilities, averaged over windows.
    n_windows : int
        Model windows the recording was cut into.
    explanations : list of Explanation
        One per explained prompt, in the order asked (or of decreasing probability for top-k).
    """

    path: str
    sample_rate: int
    waveform: torch.Tensor
    spectrogram: torch.Tensor
    frame_seconds: float
    frequencies: torch.Tensor
    frequency_scale: str
    method: str
    candidates: list
    probabilities: torch.Tensor
    n_windows: int
    explanations: list = field(default_factory=list)

    @property
    def duration(self):
        """Length of the recording in seconds."""
        return self.waveform.shape[-1] / self.sample_rate


def read_recording(path):
    """Read an audio file as a mono float32 waveform at its own rate, with checks a user can act on.

    Parameters
    ----------
    path : str
        Any file libsndfile reads (WAV, FLAC, OGG, ...).

    Returns
    -------
    tuple
        ``(waveform, sample_rate)``: (samples,) float32 tensor (channels averaged) and the file's rate.

    Raises
    ------
    ExplainError
        Missing file, a folder, not audio, no samples, NaN/inf samples, or digital silence.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.TemporaryDirectory()
    >>> path = os.path.join(folder.name, "stereo.wav")
    >>> sf.write(path, [[0.5, 0.1], [0.2, 0.0]], 8000)
    >>> read_recording(path)
    (tensor([0.3000, 0.1000]), 8000)
    >>> sf.write(path, [[0.0, 0.0]], 8000)
    >>> read_recording(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_lmaczs.recording.ExplainError: ...stereo.wav is digital silence (all samples are zero): nothing...
    >>> folder.cleanup()
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ExplainError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise ExplainError(f"{path} is a folder: give an audio file.")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ExplainError(f"{path} is not an audio file this tool reads (WAV, FLAC, OGG, ...): {err}.") from err
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ExplainError(f"{path} holds no audio samples (zero length).")
    wav = torch.from_numpy(data).mean(dim=1)
    bad = ~torch.isfinite(wav)
    if bad.any():
        first = int(torch.nonzero(bad)[0, 0])
        raise ExplainError(
            f"{path} has {int(bad.sum())} NaN or infinite samples (the first at {first / rate:.3f} s): "
            "fix or re-export the file."
        )
    if not wav.abs().max() > 0:
        raise ExplainError(f"{path} is digital silence (all samples are zero): nothing to explain.")
    _warn_beyond_full_scale(path, wav, int(rate))
    return wav, int(rate)


def _warn_beyond_full_scale(path, wav, rate):
    """Warn about samples beyond full scale (a float file's |x| > 1): a click of 1e6 in a quiet recording would
    make every other sample of its window inaudible to the model (each window is scaled by its peak)."""
    beyond = wav.abs() > 1.0
    if beyond.any():
        peak = int(wav.abs().argmax())
        logger.warning(
            "%s has %d samples beyond full scale (|x| > 1), the largest %.3g at %.3f s: each window is scaled by "
            "its peak, so the rest of that window is nearly silent for the model. Check the file.",
            path,
            int(beyond.sum()),
            float(wav[peak]),
            peak / rate,
        )


def window_starts(n_samples, window):
    """Start of each model window over a recording of ``n_samples``.

    Windows follow each other without overlap; when the length is not a multiple of the window, the last one is
    aligned with the end of the recording (so no window holds padding) and overlaps the one before it. A recording
    shorter than one window gets a single window at 0.

    >>> window_starts(12, 5)
    [0, 5, 7]
    >>> window_starts(10, 5), window_starts(3, 5)
    ([0, 5], [0])
    """
    if n_samples <= window:
        return [0]
    starts = list(range(0, n_samples - window + 1, window))
    if starts[-1] + window < n_samples:
        starts.append(n_samples - window)
    return starts


def stitch_masks(window_masks, starts_seconds, window_seconds, frame_seconds, n_frames):
    """Place per-window masks onto the time grid of the whole recording.

    Each frame of the recording takes the value of the nearest frame of the window whose centre is closest to it,
    so the overlap of an end-aligned last window is read from the window where it lies furthest from an edge.

    Parameters
    ----------
    window_masks : torch.Tensor
        (n_windows, batch, window_frames, freq).
    starts_seconds : sequence of float
        Start time of each window.
    window_seconds : float
        Length of a window.
    frame_seconds : float
        Time between frames (the same in a window and in the recording).
    n_frames : int
        Frames of the recording's grid.

    Returns
    -------
    torch.Tensor
        (batch, n_frames, freq).

    Example
    -------
    >>> masks = torch.stack([torch.zeros(1, 3, 1), torch.ones(1, 3, 1)])  # two windows of 3 frames
    >>> stitch_masks(masks, [0.0, 2.0], 2.0, 1.0, 5)[0, :, 0]
    tensor([0., 0., 1., 1., 1.])
    """
    n_windows, _, window_frames, _ = window_masks.shape
    starts = torch.tensor(list(starts_seconds), dtype=torch.float64)
    times = torch.arange(n_frames, dtype=torch.float64) * frame_seconds
    centers = starts + window_seconds / 2
    # A frame half-way between two centres (a window boundary) is read from the later window, where it is a first
    # frame, not a last one.
    which = torch.searchsorted((centers[1:] + centers[:-1]) / 2, times, right=True)
    local = torch.round((times - starts[which]) / frame_seconds).long().clamp(0, window_frames - 1)
    return window_masks[which, :, local, :].permute(1, 0, 2)
