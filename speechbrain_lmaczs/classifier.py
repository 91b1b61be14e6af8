"""The zero-shot classifier that every interpreter explains."""

import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "this is the sound of {label}"


def make_prompts(labels, template=DEFAULT_TEMPLATE):
    """Prompts from class labels; underscores become spaces.

    >>> make_prompts(["dog", "car_horn"])
    ['this is the sound of dog', 'this is the sound of car horn']
    """
    if isinstance(labels, str):
        raise TypeError("labels must be a list of strings, not one string.")
    prompts = []
    for label in labels:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"Every label must be a non-empty string, got {label!r}.")
        prompts.append(template.format(label=label.replace("_", " ")))
    return prompts


class ZeroShotClassifier(nn.Module):
    """Logits over text prompts for an input representation.

    ``forward(x)`` maps the representation ``x`` (batch, time, freq) to ``logit_scale * cos(text, audio)``,
    shape (batch, n_prompts). The representation is the encoder's log-mel unless ``to_logmel`` says otherwise
    (e.g. the STFT masking domain maps a 16 kHz magnitude STFT to the encoder's log-mel).

    Parameters
    ----------
    clap : CLAPBackend
        A (frozen) CLAP backend.
    prompts : list of str
        Class prompts; their embeddings are computed once and cached.
    to_logmel : nn.Module, optional
        Maps the representation to the encoder's log-mel. Identity by default.
    use_logit_scale : bool
        Multiply cosines by the checkpoint's ``exp(logit_scale)`` (as released CLAP models do); False gives raw
        cosines (the paper's formula).
    """

    def __init__(self, clap, prompts, to_logmel=None, use_logit_scale=True):
        super().__init__()
        self.clap = clap
        self.to_logmel = to_logmel if to_logmel is not None else nn.Identity()
        self.use_logit_scale = bool(use_logit_scale)
        logger.debug("Zero-shot logits use %s", "exp(logit_scale) * cosine" if use_logit_scale else "raw cosine")
        self.set_prompts(prompts)

    @torch.no_grad()
    def set_prompts(self, prompts):
        """Replace the class prompts (their text embeddings are computed here, once)."""
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty list of strings.")
        self.prompts = list(prompts)
        text = self.clap.encode_text(self.prompts)
        self.register_buffer("text_embeddings", text.detach(), persistent=False)

    @property
    def scale(self):
        """The temperature applied to cosines."""
        if self.use_logit_scale:
            return self.clap.logit_scale
        return torch.ones((), device=self.text_embeddings.device)

    def embed(self, x, return_hidden=False):
        """Audio embedding (and hidden maps) of the representation ``x``."""
        return self.clap.encode_audio(self.to_logmel(x), return_hidden=return_hidden)

    def logits_from_embedding(self, audio_embedding):
        """(batch, dim) normalised audio embedding -> (batch, n_prompts) logits."""
        return self.scale * audio_embedding @ self.text_embeddings.T

    def forward(self, x):
        """(batch, time, freq) representation -> (batch, n_prompts) logits."""
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() != 3:
            raise ValueError(f"Expected a (batch, time, freq) input, got shape {tuple(x.shape)}.")
        return self.logits_from_embedding(self.embed(x))
