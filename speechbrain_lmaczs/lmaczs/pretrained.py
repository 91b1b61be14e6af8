"""Load a trained LMAC-ZS (CLAP + decoder + masking domain) from a training recipe's output folder."""

import logging
import os

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import Checkpointer
from torch import nn

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.interpreters.lmaczs import LMACZSInterpreter
from speechbrain_lmaczs.lmaczs.checkpoints import set_aside_incomplete_checkpoints

logger = logging.getLogger(__name__)


class TrainedLMACZS(nn.Module):
    """A frozen CLAP, a trained mask decoder and the masking domain it was trained on.

    Parameters
    ----------
    clap : CLAPBackend
    decoder : MaskDecoder
    domain : MaskingDomain
    use_logit_scale : bool
        Temperature convention of the zero-shot classifier (as in training).

    Attributes
    ----------
    checkpoint : speechbrain.utils.checkpoints.Checkpoint or None
        The checkpoint the decoder was loaded from (set by :func:`load_trained`).
    """

    def __init__(self, clap, decoder, domain, use_logit_scale=True):
        super().__init__()
        self.clap = clap
        self.decoder = decoder.eval()
        self.domain = domain
        self.use_logit_scale = use_logit_scale
        self.checkpoint = None

    def classifier(self, prompts):
        """Zero-shot classifier over ``prompts`` on this domain's representation."""
        return ZeroShotClassifier(
            self.clap, prompts, to_logmel=self.domain.to_logmel, use_logit_scale=self.use_logit_scale
        )

    def interpreter(self, classifier):
        """The LMAC-ZS interpreter (same API as the baselines) for ``classifier``."""
        return LMACZSInterpreter(classifier, self.decoder, self.domain)


def load_trained(folder, overrides=None, device="cpu", min_key="loss"):
    """Load the best checkpoint of a ``train.py`` output folder.

    Parameters
    ----------
    folder : str
        The training run's ``output_folder`` (it holds ``hyperparams.yaml`` and ``save/``).
    overrides : dict, optional
        Extra hyperparameter overrides (``output_folder`` is always set to ``folder``, so a moved folder works).
    device : str
        Where the models go.
    min_key : str
        Checkpoint meta key that selects the best checkpoint (lower is better).

    Returns
    -------
    TrainedLMACZS
    """
    hparams_file = os.path.join(folder, "hyperparams.yaml")
    if not os.path.isfile(hparams_file):
        raise FileNotFoundError(
            f"{folder!r} is not a training output folder (no hyperparams.yaml): pass the --output_folder of train.py."
        )
    all_overrides = {"output_folder": os.path.abspath(folder)}
    all_overrides.update(overrides or {})
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, all_overrides)
    checkpointer = Checkpointer(os.path.join(folder, "save"), recoverables={"decoder": hparams["decoder"]})
    set_aside_incomplete_checkpoints(checkpointer)
    ckpt = checkpointer.recover_if_possible(min_key=min_key)
    if ckpt is None:
        raise FileNotFoundError(f"No checkpoint under {os.path.join(folder, 'save')}: has train.py finished an epoch?")
    logger.info("Loaded the LMAC-ZS decoder from %s", ckpt.path)
    model = TrainedLMACZS(hparams["clap"], hparams["decoder"], hparams["domain"], hparams["use_logit_scale"])
    model.checkpoint = ckpt
    return model.to(device).eval()
