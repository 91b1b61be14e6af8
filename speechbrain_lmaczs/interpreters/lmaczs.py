"""LMAC-ZS behind the same interpreter API as the baselines."""

import torch

from speechbrain_lmaczs.interpreters.base import Interpreter


class LMACZSInterpreter(Interpreter):
    """Masks from a trained LMAC-ZS decoder: one encoder pass and one decoder pass, no backward.

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier explained; its ``to_logmel`` must be the masking domain's (the decoder was trained on it).
    decoder : MaskDecoder
        The trained decoder.
    """

    normalisation = "none: the decoder's sigmoid output is the mask (on the input grid)"

    def __init__(self, classifier, decoder):
        super().__init__(classifier)
        self.decoder = decoder

    @torch.no_grad()
    def masks(self, hidden, text, size):
        """Masks for precomputed hidden maps and target text embeddings (reuse an encoder pass)."""
        return self.decoder(hidden, text, size)

    @torch.no_grad()
    def saliency(self, inputs, targets):
        _, hidden = self.classifier.embed(inputs, return_hidden=True)
        return self.masks(hidden, targets.text_embeddings().to(inputs.device), inputs.shape[1:])

    def to_mask(self, saliency, size):
        if tuple(saliency.shape[1:]) != tuple(size):
            raise ValueError(f"Decoder mask grid {tuple(saliency.shape[1:])} differs from the input's {tuple(size)}.")
        return saliency
