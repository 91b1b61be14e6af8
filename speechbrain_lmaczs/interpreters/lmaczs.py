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
    domain : MaskingDomain, optional
        The masking domain it was trained on; required when the decoder has an input skip (its ``to_db`` gives the
        decoder the representation in dB).
    """

    display_name = "LMAC-ZS"
    needs_model = True
    normalization = "none: the decoder's sigmoid output is the mask (on the input grid)"

    def __init__(self, classifier, decoder, domain=None):
        super().__init__(classifier, domain=domain)
        if decoder.input_skip and domain is None:
            raise ValueError("This decoder has an input skip: pass the masking domain it was trained on.")
        self.decoder = decoder

    @classmethod
    def from_model(cls, classifier, model, **options):
        """The trained decoder and masking domain of ``model`` (a TrainedLMACZS) explaining ``classifier``."""
        if options:
            raise ValueError(f"lmaczs takes no options (its decoder comes from the checkpoint), got {sorted(options)}.")
        if model is None:
            raise ValueError("lmaczs is built from a trained LMAC-ZS model: pass the loaded checkpoint.")
        return cls(classifier, model.decoder, model.domain)

    @torch.no_grad()
    def masks(self, hidden, text, inputs):
        """Masks for precomputed hidden maps of ``inputs`` (the representation) and target text embeddings (reuse an
        encoder pass)."""
        return self.decoder.for_representation(hidden, text, inputs, self.domain)

    @torch.no_grad()
    def saliency(self, inputs, targets):
        _, hidden = self.classifier.embed(inputs, return_hidden=True)
        return self.masks(hidden, targets.text_embeddings().to(inputs.device), inputs)

    def to_mask(self, saliency, size):
        if tuple(saliency.shape[1:]) != tuple(size):
            raise ValueError(f"Decoder mask grid {tuple(saliency.shape[1:])} differs from the input's {tuple(size)}.")
        return saliency
