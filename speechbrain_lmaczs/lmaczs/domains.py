"""Masking domains: where an explanation mask acts, and how it becomes audio.

A domain turns a waveform at the encoder's rate into the representation ``X`` (batch, time, freq) that masks
multiply, maps any (masked) representation to the encoder's log-mel (``to_logmel``), and turns a mask back into a
listenable waveform that keeps the ORIGINAL phase (``listen``).

- :class:`MelMasking`: ``X`` is the encoder's own log-mel (dB). With ``mask_on="log_mel"`` the mask multiplies it
  (paper, Mel setup); with ``mask_on="power"`` it multiplies the mel POWER before the log (masked dB =
  ``X + 10 log10(M)``, floored at the front-end's silence level, i.e. ``to_db(M * mel power)``), so a mask of 0 is
  silence whatever the dB reference. To listen, the mel mask is mapped to linear frequency (each linear bin takes
  the filterbank-weighted mean of the mel-band values covering it; bins outside [f_min, f_max] take the nearest
  band) and scales the STFT magnitude (log_mel) or the STFT power (power: the magnitude by its square root).
- :class:`STFTMasking`: ``X`` is the linear-frequency magnitude STFT of the clip resampled to 16 kHz; the mask
  multiplies the magnitude (so ``M * X`` with the original phase is exactly what one hears). The masked STFT reaches
  the encoder through a 16 kHz mel filterbank with the encoder's own band edges (bands above 8 kHz stay empty, as
  they would for 16 kHz audio resampled to the encoder's rate), a window of the same duration as the encoder's, a
  hop of the same duration (so a clip gives the same number of frames) and a gain that equalises the energy scale of
  the two STFTs (ratio of n_fft * sum(window^2)). This choice is stateless and differentiable, and needs no phase.

What a removed bin becomes is the domain's ``fill``: ``"zero"`` (the paper: the mask multiplies the bin, so a zero
mask leaves 0 of it) or ``"background"``: the bin is moved towards its band's median over the clip's frames, the
clip's own background level there (masked = ``M * X + (1 - M) * median_t(X)``, in the quantity the mask acts on).
With ``"zero"`` a removal carves a hole (silence, or 0 dB) into the background that the encoder can see as a
structure of its own; with ``"background"`` removing background costs nothing and removing an event leaves the
background it sat on. Listening is the same for both: the mask scales the STFT with the original phase.
"""

import math
import warnings

import torch
import torchaudio
from torch import nn


def check_grid(x, mask):
    """Raise a ValueError unless ``mask`` lies on the (time, freq) grid of ``x``."""
    if mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"Mask grid {tuple(mask.shape[-2:])} does not match the input's {tuple(x.shape[-2:])}.")


def multiply_mask(x, mask):
    """``mask * x`` after checking that the mask lies on the grid of ``x`` (the paper's masking)."""
    check_grid(x, mask)
    return mask * x


class MaskingDomain(nn.Module):
    """Base class; see the module docstring.

    Parameters
    ----------
    frontend : LogMelFrontend
        The encoder's front-end.
    fill : str
        What a removed bin becomes: ``"zero"`` (the paper) or ``"background"`` (its band's median over time).
    """

    #: what a bin the mask removes becomes, see the module docstring
    FILL = ("zero", "background")

    def __init__(self, frontend, fill="zero"):
        super().__init__()
        if fill not in self.FILL:
            raise ValueError(f"{type(self).__name__}: fill must be one of {self.FILL}, got {fill!r}.")
        self.frontend = frontend
        self.fill = fill

    @property
    def output_sample_rate(self):
        """Sampling rate of the waveforms returned by :meth:`listen`."""
        raise NotImplementedError

    #: ``"mel"`` or ``"linear"``: how the representation's frequency rows are spaced
    frequency_scale = None

    @property
    def frame_seconds(self):
        """Seconds between two frames of the representation."""
        raise NotImplementedError

    def frequencies(self):
        """Frequency in Hz of each row of the representation (mel bands: their centre), a 1-d tensor."""
        raise NotImplementedError

    def to_db(self, x):
        """The representation in dB, for display."""
        raise NotImplementedError

    def representation(self, wav):
        """Waveform at the encoder's rate (batch, samples) -> representation (batch, time, freq)."""
        raise NotImplementedError

    def to_logmel(self, x):
        """Representation (possibly masked) -> encoder log-mel (batch, time, mel)."""
        raise NotImplementedError

    def linear_mask(self, mask):
        """Mask on the representation grid -> mask on the listening STFT grid."""
        raise NotImplementedError

    def listening_stft(self, wav):
        """Complex STFT used to listen, (batch, time, freq), and the waveform length it inverts to."""
        raise NotImplementedError

    def listening_istft(self, spec, length):
        """Inverse of :meth:`listening_stft`."""
        raise NotImplementedError

    def power(self, x):
        """The representation as power (up to one factor common to all bins): ``10 ** (to_db(x) / 10)``; what
        compares two sources' share of a bin (:func:`~speechbrain_lmaczs.lmaczs.loss.ratio_mask`)."""
        return torch.pow(10.0, self.to_db(x) / 10.0)

    @staticmethod
    def background(x):
        """Each band's median over the frames of ``x``, (batch, 1, freq), without gradient: the clip's own
        background level in that band (events cover a minority of the frames)."""
        return x.detach().median(dim=-2, keepdim=True).values

    def apply_mask(self, x, mask):
        """Masked representation: ``mask * x`` (fill ``"zero"``, the paper) or
        ``mask * x + (1 - mask) * background(x)`` (fill ``"background"``)."""
        out = multiply_mask(x, mask)
        if self.fill == "background":
            out = out + (1.0 - mask) * self.background(x)
        return out

    def absent(self, x):
        """What this domain's masking leaves of ``x`` where the mask is 0: ``apply_mask(x, 0)``.

        The one notion of "absent" of every interpreter and metric (IG's default baseline, the floor of SmoothGrad's
        noise scale): with fill ``"zero"``, silence under power Mel masking and STFT masking and 0 dB under the
        paper's log-mel masking (silence only when the front-end measures dB above its power floor); with fill
        ``"background"``, each band's background level.
        """
        return self.apply_mask(x, torch.zeros_like(x))

    def silence(self, x):
        """The representation of a silent clip on the grid of ``x`` (the front-end's floor)."""
        raise NotImplementedError

    def describe(self):
        """The domain as results tables print it, e.g. ``MelMasking(mask_on=power)`` or
        ``STFTMasking(fill=background)`` (the fill is named when it is not the paper's)."""
        return type(self).__name__ + (f"(fill={self.fill})" if self.fill != "zero" else "")

    def _fill_suffix(self):
        return "" if self.fill == "zero" else f", fill={self.fill}"

    def listen(self, wav, mask):
        """Listenable explanation: ISTFT(mask * |STFT(wav)| * exp(j * phase(STFT(wav)))).

        Parameters
        ----------
        wav : torch.Tensor
            (batch, samples) at the encoder's rate.
        mask : torch.Tensor
            (batch, time, freq) on this domain's representation grid, values in [0, 1].

        Returns
        -------
        torch.Tensor
            (batch, samples') at :attr:`output_sample_rate`, as long as the input (in seconds).
        """
        spec, length = self.listening_stft(wav)
        lin = self.linear_mask(mask)
        if lin.shape[1] != spec.shape[1]:
            # Inputs longer or shorter than the mask's window: stretch the mask's time axis onto the STFT frames.
            lin = nn.functional.interpolate(lin.transpose(1, 2), size=spec.shape[1], mode="nearest").transpose(1, 2)
        # Multiplying the complex STFT by a real mask scales the magnitude and keeps the phase.
        return self.listening_istft(spec * lin.to(spec.real.dtype), length)


class MelMasking(MaskingDomain):
    """The mask acts on the encoder's log-mel input: on the dB values themselves or on the power they measure.

    Parameters
    ----------
    frontend : LogMelFrontend
        The encoder's front-end.
    mask_on : str
        ``"log_mel"`` (the paper): masked = ``M * X``, so a zero mask sets a bin to 0 dB, which is silence only when
        the front-end measures dB above its power floor. ``"power"``: masked = ``max(X + 10 log10(M), silence)`` =
        ``to_db(M * mel power)``; a zero mask is silence with any dB reference (e.g. the released MS-CLAP's
        ``10 log10(power)``), and a mask of 0.5 lowers a bin by 3.01 dB.
    fill : str
        ``"zero"`` (the paper) or ``"background"``: a removed bin goes to its band's median over time, in dB
        (``log_mel``) or in power (``power``: masked = ``to_db(M * P + (1 - M) * median_t(P))``).

    Example
    -------
    >>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=1.0)
    >>> dom = MelMasking(fe)
    >>> wav = torch.randn(1, 16000)
    >>> x = dom.representation(wav)
    >>> x.shape
    torch.Size([1, 101, 40])
    >>> out = dom.listen(wav, torch.ones_like(x))
    >>> bool(torch.allclose(out, wav, atol=1e-4))
    True
    >>> power = MelMasking(fe, mask_on="power")
    >>> half = power.apply_mask(x, torch.full_like(x, 0.5)) - x
    >>> round(float(half[x > fe.silence_db + 4].mean()), 2)
    -3.01

    "Absent" is what a zero mask leaves: silence under power masking, 0 dB under the paper's masking.

    >>> bool(torch.equal(power.absent(x), power.silence(x))), float(power.silence(x).max()), power.describe()
    (True, -100.0, 'MelMasking(mask_on=power)')
    >>> float(dom.absent(x).abs().max()), dom.describe()
    (0.0, 'MelMasking(mask_on=log_mel)')

    With ``fill="background"`` a zero mask leaves each band at its median level, and a full mask the clip itself.

    >>> filled = MelMasking(fe, mask_on="power", fill="background")
    >>> bool(torch.allclose(filled.absent(x), x.median(dim=1, keepdim=True).values.expand_as(x), atol=1e-4))
    True
    >>> bool(torch.allclose(filled.apply_mask(x, torch.ones_like(x)), x, atol=1e-4)), filled.describe()
    (True, 'MelMasking(mask_on=power, fill=background)')
    """

    #: where the mask acts: ``"log_mel"`` (the paper) or ``"power"``
    MASK_ON = ("log_mel", "power")

    def __init__(self, frontend, mask_on="log_mel", fill="zero"):
        super().__init__(frontend, fill)
        if mask_on not in self.MASK_ON:
            raise ValueError(f"MelMasking: mask_on must be one of {self.MASK_ON}, got {mask_on!r}.")
        self.mask_on = mask_on
        self.register_buffer("mel_to_linear", self._mel_to_linear(frontend.mel_fbank), persistent=False)

    @staticmethod
    def _mel_to_linear(fbank):
        # fbank: (linear, mel). Weighted mean of covering bands; uncovered bins copy the nearest band.
        fbank = fbank.clone()
        weight = fbank.sum(dim=1)
        covered = weight > 0
        idx = torch.nonzero(covered).squeeze(1)
        proj = torch.zeros_like(fbank)
        proj[covered] = fbank[covered] / weight[covered, None]
        n_mels = fbank.shape[1]
        if len(idx) > 0:
            low, high = int(idx.min()), int(idx.max())
            proj[:low, 0] = 1.0
            proj[high + 1 :, n_mels - 1] = 1.0
        return proj.T.contiguous()  # (mel, linear)

    frequency_scale = "mel"

    @property
    def output_sample_rate(self):
        return self.frontend.sample_rate

    @property
    def frame_seconds(self):
        return self.frontend.hop_length / self.frontend.sample_rate

    def frequencies(self):
        fe = self.frontend
        # A mel filter peaks at its centre frequency.
        return (fe.mel_fbank.argmax(dim=0).double() * fe.sample_rate / fe.n_fft).float().cpu()

    def to_db(self, x):
        return x  # already log-mel power in dB

    def representation(self, wav):
        return self.frontend(wav)

    def to_logmel(self, x):
        return x

    def apply_mask(self, x, mask):
        """Masked log-mel: ``mask * x`` (``mask_on="log_mel"``) or ``to_db(mask * mel power)`` (``"power"``), each
        with the domain's fill."""
        if self.mask_on == "log_mel":
            return super().apply_mask(x, mask)
        if self.fill == "background":
            power = multiply_mask(torch.pow(10.0, x / 10.0), mask)
            power = power + (1.0 - mask) * torch.pow(10.0, self.background(x) / 10.0)
            db = 10.0 * torch.log10(power.clamp_min(1e-30))
        else:
            # A mask below 1e-30 (-300 dB) silences any bin; the clamp keeps the log and its gradient finite.
            check_grid(x, mask)
            db = x + 10.0 * torch.log10(mask.clamp_min(1e-30))
        return torch.clamp(db, min=self.frontend.silence_db)

    def silence(self, x):
        return torch.full_like(x, self.frontend.silence_db)

    def describe(self):
        return f"{type(self).__name__}(mask_on={self.mask_on}{self._fill_suffix()})"

    def linear_mask(self, mask):
        lin = mask @ self.mel_to_linear
        # Power masking scales each bin's power by the mask, so its magnitude by the square root.
        return lin.clamp_min(0.0).sqrt() if self.mask_on == "power" else lin

    def listening_stft(self, wav):
        return self.frontend.stft(wav), wav.shape[-1]

    def listening_istft(self, spec, length):
        return self.frontend.istft(spec, length)


class STFTMasking(MaskingDomain):
    """The mask multiplies a linear-frequency magnitude STFT of the clip at 16 kHz.

    Parameters
    ----------
    frontend : LogMelFrontend
        The encoder's front-end (its rate, band edges and frame timing are matched).
    sample_rate : int
        Rate of the masked STFT (16000 in the paper).
    n_fft : int
        FFT size at that rate (the window itself lasts as long as the encoder's).
    fill : str
        ``"zero"`` (the paper) or ``"background"`` (a removed bin goes to its frequency's median magnitude).

    Example
    -------
    >>> from speechbrain_lmaczs.clap.frontend import LogMelFrontend
    >>> fe = LogMelFrontend(44100, 1024, 320, 64, 50.0, 14000.0, clip_seconds=5.0)
    >>> dom = STFTMasking(fe)
    >>> x = dom.representation(torch.randn(1, 220500))
    >>> x.shape, dom.to_logmel(x).shape
    (torch.Size([1, 690, 257]), torch.Size([1, 690, 64]))
    """

    def __init__(self, frontend, sample_rate=16000, n_fft=512, fill="zero"):
        super().__init__(frontend, fill)
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        ratio = self.sample_rate / frontend.sample_rate
        self.win_length = min(self.n_fft, int(round(frontend.n_fft * ratio)))
        self.hop_length = int(round(frontend.hop_length * ratio))
        self.register_buffer("window", torch.hann_window(self.win_length, periodic=True), persistent=False)
        with warnings.catch_warnings():
            # Bands above the Nyquist frequency of 16 kHz audio are empty on purpose.
            warnings.simplefilter("ignore")
            fbank = torchaudio.functional.melscale_fbanks(
                n_freqs=self.n_fft // 2 + 1,
                f_min=frontend.f_min,
                f_max=frontend.f_max,
                n_mels=frontend.n_mels,
                sample_rate=self.sample_rate,
                norm=frontend.mel_norm,
                mel_scale=frontend.mel_scale,
            )
        self.register_buffer("mel_fbank", fbank, persistent=False)
        enc_energy = frontend.n_fft * frontend.window.pow(2).sum()
        own_energy = self.n_fft * self.window.pow(2).sum()
        self.gain = float(enc_energy / own_energy)

    frequency_scale = "linear"

    @property
    def output_sample_rate(self):
        return self.sample_rate

    @property
    def frame_seconds(self):
        return self.hop_length / self.sample_rate

    def frequencies(self):
        return torch.arange(self.n_fft // 2 + 1, dtype=torch.float32) * self.sample_rate / self.n_fft

    def to_db(self, x):
        return 20.0 * torch.log10(x.clamp_min(1e-5))  # magnitude -> dB (floor at -100 dB)

    def resample(self, wav):
        """Encoder-rate waveform -> 16 kHz."""
        if self.frontend.sample_rate == self.sample_rate:
            return wav
        return torchaudio.functional.resample(wav, self.frontend.sample_rate, self.sample_rate)

    def _stft(self, wav16):
        spec = torch.stft(
            wav16,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return spec.transpose(-1, -2)

    def representation(self, wav):
        return self._stft(self.resample(wav)).abs()

    def to_logmel(self, x):
        mel = torch.matmul(self.gain * x.pow(2), self.mel_fbank)
        target = self.frontend.n_frames
        if x.shape[1] != target and x.shape[1] == self.expected_frames:
            # Frame counts differ only when the two hops are not in an exact ratio: resample the time axis.
            mel = nn.functional.interpolate(mel.transpose(1, 2), size=target, mode="linear", align_corners=True)
            mel = mel.transpose(1, 2)
        return self.frontend.to_db(mel)

    @property
    def expected_frames(self):
        """Frames of one full clip at 16 kHz."""
        return 1 + int(math.floor(self.frontend.clip_seconds * self.sample_rate)) // self.hop_length

    def linear_mask(self, mask):
        return mask

    def silence(self, x):
        return torch.zeros_like(x)  # a zero magnitude is silence (the encoder's floor once through to_logmel)

    def listening_stft(self, wav):
        wav16 = self.resample(wav)
        return self._stft(wav16), wav16.shape[-1]

    def listening_istft(self, spec, length):
        return torch.istft(
            spec.transpose(-1, -2),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=self.window,
            center=True,
            length=length,
        )


DOMAINS = {"mel": MelMasking, "stft": STFTMasking}
