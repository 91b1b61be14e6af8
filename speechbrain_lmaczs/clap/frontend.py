"""Differentiable torch front-end shared by every CLAP backend.

waveform (batch, samples) -> power STFT (batch, time, linear freq) -> log-mel (batch, time, mel)

All spectrogram-like tensors in this package use the layout (batch, time, freq).
"""

import torch
import torchaudio
from torch import nn


class LogMelFrontend(nn.Module):
    """Waveform to log-mel spectrogram, differentiable end to end.

    Parameters
    ----------
    sample_rate : int
        Sampling rate the encoder expects, in Hz.
    n_fft : int
        FFT size (and window length) of the STFT.
    hop_length : int
        Hop between frames, in samples.
    n_mels : int
        Number of mel bands.
    f_min, f_max : float
        Lowest and highest mel band edge, in Hz.
    clip_seconds : float
        Length of the clips the encoder was trained on.
    mel_norm : str or None
        Filterbank normalisation passed to torchaudio (``"slaney"`` or None).
    mel_scale : str
        ``"slaney"`` or ``"htk"``.
    amin : float
        Floor of the power before the log, as in ``10 * log10(max(x, amin))``.
    db_offset : float
        Added to every dB value (0 in the released models). ``-10 * log10(amin)`` (100 for the default ``amin``)
        puts silence at 0 dB and everything else above it, so that a mask multiplying the log-mel (Mel masking)
        attenuates towards silence: with the released models' convention a zero mask sets a bin to 0 dB, which is
        louder than the quiet parts of most clips (about -30 dB for a peak-normalised clip's background).

    Example
    -------
    >>> fe = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=1.0)
    >>> fe(torch.randn(2, 16000)).shape
    torch.Size([2, 101, 40])
    """

    def __init__(
        self,
        sample_rate,
        n_fft,
        hop_length,
        n_mels,
        f_min,
        f_max,
        clip_seconds,
        mel_norm="slaney",
        mel_scale="slaney",
        amin=1e-10,
        db_offset=0.0,
    ):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.f_min = float(f_min)
        self.f_max = float(f_max)
        self.clip_seconds = float(clip_seconds)
        self.amin = float(amin)
        self.db_offset = float(db_offset)
        self.mel_norm = mel_norm
        self.mel_scale = mel_scale
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)
        fbank = torchaudio.functional.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=self.f_min,
            f_max=self.f_max,
            n_mels=self.n_mels,
            sample_rate=self.sample_rate,
            norm=mel_norm,
            mel_scale=mel_scale,
        )
        # (linear freq, mel); not persistent: it is derived from the parameters above.
        self.register_buffer("mel_fbank", fbank, persistent=False)

    @property
    def clip_samples(self):
        """Number of samples in one clip of ``clip_seconds``."""
        return int(round(self.clip_seconds * self.sample_rate))

    @property
    def n_frames(self):
        """Frames of a clip of exactly ``clip_samples`` (centred STFT)."""
        return 1 + self.clip_samples // self.hop_length

    def stft(self, wav):
        """Complex STFT, (batch, time, n_fft // 2 + 1)."""
        spec = torch.stft(
            wav,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        return spec.transpose(-1, -2)

    def istft(self, spec, length):
        """Inverse of :meth:`stft`; ``spec`` is (batch, time, freq) complex."""
        return torch.istft(
            spec.transpose(-1, -2),
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            window=self.window,
            center=True,
            length=length,
        )

    def power(self, wav):
        """Power spectrogram |STFT|^2, (batch, time, n_fft // 2 + 1)."""
        return self.stft(wav).abs().pow(2)

    def mel_from_power(self, power):
        """Log-mel in dB from a linear-frequency power spectrogram."""
        return self.to_db(torch.matmul(power, self.mel_fbank))

    def to_db(self, mel):
        """Mel power -> dB, with this front-end's floor and offset."""
        db = 10.0 * torch.log10(torch.clamp(mel, min=self.amin))
        return db + self.db_offset if self.db_offset else db

    @property
    def silence_db(self):
        """The value of a silent bin of the log-mel (the power floor ``amin`` in dB, plus ``db_offset``)."""
        return float(self.to_db(torch.zeros(())))

    def forward(self, wav):
        """Log-mel spectrogram in dB, (batch, time, n_mels)."""
        return self.mel_from_power(self.power(wav))

    def config(self):
        """The constructor arguments, for saving next to a checkpoint."""
        return {
            "sample_rate": self.sample_rate,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
            "clip_seconds": self.clip_seconds,
            "mel_norm": self.mel_norm,
            "mel_scale": self.mel_scale,
            "amin": self.amin,
            "db_offset": self.db_offset,
        }
