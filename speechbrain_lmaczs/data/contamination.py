"""Out-of-domain contamination at a given SNR (the paper uses 3 dB).

Conditions:

- ``"clean"``: the clip unchanged;
- ``"mixture"``: plus another clip of the same dataset (the pool is the dataset's manifest; never the clip
  itself);
- ``"white_noise"``: plus Gaussian white noise;
- ``"speech"``: plus speech (the pool is a speech manifest, e.g. from ``prepare_ljspeech``, or a folder).

The contaminant ``n`` is scaled by ``g`` so that ``10 log10(||s||^2 / ||g n||^2) = snr_db``, and the sum is
peak-normalised with an epsilon. Every random choice (which pool item, where to crop it, the noise samples)
comes from a generator seeded by a hash of ``seed`` and the clip id, so every process, interpreter and run sees
the same contaminated clip.
"""

import hashlib
import logging
import os

import torch

from speechbrain_lmaczs.data.manifest import AUDIO_EXTENSIONS, DataPrepError, find_audio_files, item_id
from speechbrain_lmaczs.data.pipeline import PEAK_EPS, load_audio, peak_normalize, read_manifest

logger = logging.getLogger(__name__)

CONDITIONS = ("clean", "mixture", "white_noise", "speech")
_POOLED = ("mixture", "speech")


def clip_generator(clip_id, seed=0):
    """A torch generator seeded by ``seed`` and ``clip_id`` (stable across processes, unlike ``hash``).

    >>> a = torch.rand(2, generator=clip_generator("1-100032-A-0"))
    >>> b = torch.rand(2, generator=clip_generator("1-100032-A-0"))
    >>> bool(torch.equal(a, b))
    True
    """
    digest = hashlib.sha256(f"{seed}\0{clip_id}".encode("utf-8")).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def snr_gain(signal, noise, snr_db, eps=PEAK_EPS):
    """Gain ``g`` such that ``10 log10(||signal||^2 / ||g noise||^2) = snr_db``.

    ``eps`` keeps a silent contaminant from dividing by zero (it then adds nothing).

    >>> s, n = torch.ones(4), 2 * torch.ones(4)
    >>> round(float(snr_gain(s, n, 0.0)), 4)
    0.5
    """
    signal_energy = signal.pow(2).sum()
    noise_energy = noise.pow(2).sum()
    return torch.sqrt(signal_energy / (noise_energy * 10.0 ** (snr_db / 10.0) + eps))


def _load_pool(pool, replacements):
    """Sorted (id, path) pairs from a manifest path, a manifest dict or a folder of audio files."""
    if isinstance(pool, (str, os.PathLike)) and os.path.isdir(pool):
        files = find_audio_files(pool, AUDIO_EXTENSIONS)
        items = [(item_id(rel), os.path.join(pool, rel)) for rel in files]
    else:
        items = [(key, entry["wav"]) for key, entry in read_manifest(pool, replacements).items()]
    if not items:
        raise DataPrepError(f"The contamination pool {pool!r} holds no audio.")
    return sorted(items)


class Contaminator:
    """Deterministic per-clip contamination of fixed-length clips at a given SNR.

    Parameters
    ----------
    condition : str
        One of ``"clean"``, ``"mixture"``, ``"white_noise"``, ``"speech"``.
    snr_db : float
        Signal-to-contaminant ratio in dB (paper: 3).
    sample_rate : int
        Rate of the clips (pool audio is resampled to it).
    clip_samples : int
        Length of the clips (pool audio is repeated or cropped to it).
    pool : str or dict, optional
        For ``"mixture"`` and ``"speech"`` only: a manifest path or dict (for ``"mixture"``, the dataset's own
        manifest, so the clip is recognised by its id and never mixed with itself) or a folder of audio files.
    seed : int
        Seed combined with the clip id.
    replacements : dict, optional
        Fills ``{placeholders}`` in the pool manifest's paths.

    Example
    -------
    >>> contaminate = Contaminator("white_noise", 3.0, 16000, 8000, seed=0)
    >>> clean = torch.sin(torch.linspace(0, 100, 8000))
    >>> noisy = contaminate(clean, "clip-1")
    >>> noisy.shape, bool(torch.equal(noisy, contaminate(clean, "clip-1")))
    (torch.Size([8000]), True)
    """

    def __init__(
        self, condition, snr_db, sample_rate, clip_samples, pool=None, seed=0, replacements=None, eps=PEAK_EPS
    ):
        if condition not in CONDITIONS:
            raise ValueError(f"Unknown contamination {condition!r}: use one of {list(CONDITIONS)}.")
        if condition in _POOLED and pool is None:
            raise ValueError(f"Contamination {condition!r} needs a pool (a manifest or a folder of audio files).")
        if condition not in _POOLED and pool is not None:
            raise ValueError(f"Contamination {condition!r} takes no pool; pass pool=None.")
        self.condition = condition
        self.snr_db = float(snr_db)
        self.sample_rate = int(sample_rate)
        self.clip_samples = int(clip_samples)
        self.seed = seed
        self.eps = eps
        self.pool = _load_pool(pool, replacements) if pool is not None else []
        if condition == "mixture" and len(self.pool) < 2:
            raise DataPrepError("Contamination 'mixture' needs a pool with at least two clips (never the clip itself).")

    def _pick(self, clip_id, gen):
        """(id, path) of the pool item mixed into ``clip_id``: the first draw of the clip's generator."""
        candidates = [(key, path) for key, path in self.pool if key != clip_id]
        if not candidates:
            raise DataPrepError(f"The contamination pool holds nothing but {clip_id!r} itself.")
        return candidates[int(torch.randint(len(candidates), (1,), generator=gen))]

    def contaminant_id(self, clip_id):
        """Id of the pool item (for ``"mixture"``: the clip's manifest key) mixed into ``clip_id``; None for the
        conditions without a pool. The same draw as :meth:`contaminant`, without loading any audio."""
        if self.condition not in _POOLED:
            return None
        return self._pick(clip_id, clip_generator(clip_id, self.seed))[0]

    def contaminant(self, clip_id, generator=None):
        """The unscaled contaminant of a clip, (clip_samples,), drawn from the clip's generator."""
        gen = clip_generator(clip_id, self.seed) if generator is None else generator
        if self.condition == "white_noise":
            return torch.randn(self.clip_samples, generator=gen)
        _, path = self._pick(clip_id, gen)
        noise = load_audio(path, self.sample_rate)
        if noise.numel() == 0:
            raise DataPrepError(f"Contamination file {path} is empty: rebuild the pool manifest.")
        if noise.shape[0] < self.clip_samples:
            reps = -(-self.clip_samples // noise.shape[0])
            return noise.repeat(reps)[: self.clip_samples]
        start = int(torch.randint(noise.shape[0] - self.clip_samples + 1, (1,), generator=gen))
        return noise[start : start + self.clip_samples]

    def scaled_contaminant(self, wav, clip_id):
        """``g * n``: the contaminant scaled to ``snr_db`` below ``wav`` (before the final normalisation)."""
        noise = self.contaminant(clip_id).to(dtype=wav.dtype, device=wav.device)
        return snr_gain(wav, noise, self.snr_db, self.eps) * noise

    def __call__(self, wav, clip_id):
        """Contaminate one clip.

        Parameters
        ----------
        wav : torch.Tensor
            (clip_samples,) clean clip.
        clip_id : str
            Its id (seeds the choices; excluded from a ``"mixture"`` pool).

        Returns
        -------
        torch.Tensor
            (clip_samples,) ``peak_normalize(wav + g n)``; ``wav`` itself for ``"clean"``.
        """
        if wav.dim() != 1 or wav.shape[0] != self.clip_samples:
            raise ValueError(f"Expected a ({self.clip_samples},) clip, got shape {tuple(wav.shape)}.")
        if self.condition == "clean":
            return wav
        return peak_normalize(wav + self.scaled_contaminant(wav, clip_id), self.eps)

    def __repr__(self):
        return (
            f"Contaminator({self.condition!r}, snr_db={self.snr_db}, sample_rate={self.sample_rate}, "
            f"clip_samples={self.clip_samples}, pool=<{len(self.pool)} items>, seed={self.seed})"
        )
