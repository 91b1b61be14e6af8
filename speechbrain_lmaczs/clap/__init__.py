"""CLAP backends behind one interface, loaded by name.

>>> sorted(BACKENDS)
['laion', 'msclap']
"""

import logging
import os

from speechbrain_lmaczs.clap.base import CLAPBackend, CLAPLoadError, l2_normalize
from speechbrain_lmaczs.clap.frontend import LogMelFrontend

logger = logging.getLogger(__name__)

#: value of ``clap_source`` that builds a tiny random model instead of loading a checkpoint
TINY_RANDOM = "tiny-random"


def _backend_class(name):
    if name == "msclap":
        from speechbrain_lmaczs.clap.msclap import MSCLAP2022

        return MSCLAP2022
    if name == "laion":
        from speechbrain_lmaczs.clap.laion import LAIONCLAP

        return LAIONCLAP
    raise ValueError(f"Unknown CLAP backend {name!r}: use one of {sorted(BACKENDS)}.")


BACKENDS = ("msclap", "laion")


def load_clap(backend, source, savedir=None, seed=0):
    """Load a CLAP backend, frozen.

    Parameters
    ----------
    backend : str
        ``"msclap"`` (Microsoft CLAP 2022, CNN14 + BERT) or ``"laion"`` (transformers ``ClapModel``).
    source : str
        A local checkpoint file or folder, a hub id, or ``"tiny-random"``.
    savedir : str, optional
        With ``"tiny-random"``: where the tiny model is saved. If the folder already holds one, it is loaded
        (so a recipe's later runs reuse the same weights); otherwise it is built, saved, and loaded back through
        the same loader users call.
    seed : int
        Seed of the tiny random weights.

    Returns
    -------
    CLAPBackend
        In eval mode, with no parameter gradients.
    """
    cls = _backend_class(backend)
    if source == TINY_RANDOM:
        if savedir is None:
            raise ValueError("clap_source: tiny-random needs a folder to save the model in (savedir).")
        if not os.path.isfile(os.path.join(savedir, "clap_config.json")):
            logger.info("Building a tiny random %s CLAP in %s", backend, savedir)
            cls.build_tiny(seed=seed).save_pretrained(savedir)
        source = savedir
    model = cls.from_pretrained(source)
    return model.freeze()


__all__ = ["CLAPBackend", "CLAPLoadError", "LogMelFrontend", "load_clap", "l2_normalize", "BACKENDS", "TINY_RANDOM"]
