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
from speechbrain_lmaczs.lmaczs.run_folder import check_clap_source, run_yaml_text

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
        Extra hyperparameter overrides (``clap_source`` / ``clap_backend`` replace the run's CLAP). The paths the
        run recorded under its ``output_folder`` are read under ``folder`` (see
        :mod:`~speechbrain_lmaczs.lmaczs.run_folder`), so a moved or copied run works from any working directory.
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
    overrides = dict(overrides or {})
    # Before anything is built: a missing CLAP is an error, never a new random one (nor folders at the old place).
    check_clap_source(folder, overrides)
    hparams = load_hyperpyyaml(run_yaml_text(folder, overrides), overrides)
    checkpointer = Checkpointer(os.path.join(folder, "save"), recoverables={"decoder": hparams["decoder"]})
    set_aside_incomplete_checkpoints(checkpointer)
    ckpt = checkpointer.recover_if_possible(min_key=min_key)
    if ckpt is None:
        raise FileNotFoundError(f"No checkpoint under {os.path.join(folder, 'save')}: has train.py finished an epoch?")
    logger.info("Loaded the LMAC-ZS decoder from %s", ckpt.path)
    model = TrainedLMACZS(hparams["clap"], hparams["decoder"], hparams["domain"], hparams["use_logit_scale"])
    model.checkpoint = ckpt
    return model.to(device).eval()
