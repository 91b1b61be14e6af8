"""speechbrain-lmaczs: LMAC-ZS explanations for zero-shot CLAP audio classifiers.

The SpeechBrain interface of a trained explainer is importable from the package itself (loaded on first use, so
that importing a submodule does not import SpeechBrain's inference machinery):

>>> from speechbrain_lmaczs import LMACZSExplainer
>>> LMACZSExplainer.__name__
'LMACZSExplainer'
"""

__all__ = ["LMACZSExplainer"]


def __getattr__(name):
    if name == "LMACZSExplainer":
        from speechbrain_lmaczs.inference import LMACZSExplainer

        return LMACZSExplainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
