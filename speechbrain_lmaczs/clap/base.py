"""The one interface every CLAP backend implements.

A backend is a frozen-able ``nn.Module`` that owns
- ``frontend``: a :class:`LogMelFrontend` (waveform -> log-mel, differentiable);
- ``encode_audio(logmel, return_hidden=False)``: log-mel (batch, time, mel) -> L2-normalised audio embedding
  (batch, dim), and optionally the encoder's hidden maps as (batch, channels, time, freq) tensors, deepest first;
- ``encode_text(prompts)``: list of strings -> L2-normalised text embeddings (n_prompts, dim);
- ``logit_scale``: the checkpoint's temperature, already exponentiated (a 0-d tensor);
- ``cam_layer``: an ``nn.Identity`` through which the deepest hidden map passes in (batch, channels, time, freq)
  layout, so that layer attribution methods (GradCAM & co.) can hook the same place on every backend;
- ``save_pretrained(folder)``: writes the backend in its real checkpoint format plus ``clap_config.json`` so that
  :func:`speechbrain_lmaczs.clap.load_clap` can load it back.
"""

from abc import ABC, abstractmethod
from contextlib import contextmanager

import torch
from torch import nn


class CLAPLoadError(RuntimeError):
    """A CLAP checkpoint could not be found or read; the message says what to do."""


class CLAPBackend(nn.Module, ABC):
    """Base class of CLAP backends (see the module docstring for the contract)."""

    #: name used in hparams (``clap_backend: msclap`` or ``laion``)
    name = None

    def __init__(self, frontend):
        super().__init__()
        self.frontend = frontend
        self.cam_layer = nn.Identity()

    @property
    def sample_rate(self):
        """Sampling rate of the waveforms the backend expects."""
        return self.frontend.sample_rate

    @property
    def clip_samples(self):
        """Samples in one model window."""
        return self.frontend.clip_samples

    @property
    def joint_dim(self):
        """Size of the joint audio-text embedding space."""
        with torch.no_grad():
            return int(self.encode_text(["a"]).shape[-1])

    @property
    @abstractmethod
    def hidden_channels(self):
        """Channels of the hidden maps returned by ``encode_audio``, deepest first (a list of int)."""

    @property
    @abstractmethod
    def logit_scale(self):
        """exp(logit_scale) of the checkpoint, a 0-d tensor."""

    @abstractmethod
    def encode_audio(self, logmel, return_hidden=False):
        """Log-mel (batch, time, mel) -> normalised embedding, or (embedding, hidden maps) when asked."""

    @abstractmethod
    def encode_text(self, prompts):
        """List of prompts -> normalised text embeddings (n_prompts, dim)."""

    @abstractmethod
    def save_pretrained(self, folder):
        """Write the backend to ``folder`` in a form :func:`load_clap` reads back."""

    def embed_waveform(self, wav):
        """Convenience: waveform (batch, samples) -> normalised audio embedding."""
        return self.encode_audio(self.frontend(wav))

    def freeze(self):
        """Eval mode and no parameter gradients (gradients still flow to the inputs)."""
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode=True):
        # A frozen backend stays in eval mode whatever the surrounding Brain asks (dropout, BatchNorm stats).
        frozen = all(not p.requires_grad for p in self.parameters())
        return super().train(False if frozen else mode)


def l2_normalize(x, eps=1e-12):
    """Unit-norm rows (last dimension)."""
    return torch.nn.functional.normalize(x, dim=-1, eps=eps)


@contextmanager
def cumulative_batch_norm_statistics(norms):
    """Re-measure the running statistics of the BatchNorm layers ``norms`` over the batches run inside the block.

    On entry each layer forgets its statistics and switches to train mode with ``momentum=None`` (a plain
    cumulative average over the batches that pass); on exit its momentum is restored and it is back in eval mode.
    Used to calibrate random tiny models and to re-measure a trained tower's statistics.

    Example
    -------
    >>> bn = nn.BatchNorm1d(1)
    >>> with cumulative_batch_norm_statistics([bn]):
    ...     _ = bn(torch.tensor([[1.0], [3.0]])); _ = bn(torch.tensor([[5.0], [7.0]]))
    >>> float(bn.running_mean[0]), bn.momentum, bn.training
    (4.0, 0.1, False)
    """
    norms = list(norms)
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        yield
    finally:
        for bn, momentum in zip(norms, momenta):
            bn.momentum = momentum
            bn.eval()
