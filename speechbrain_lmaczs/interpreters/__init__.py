"""Interpreters of zero-shot audio classifiers, one API for all.

``build_interpreter(name, classifier, **options).explain(inputs, target=None)`` returns (batch, time, freq)
masks in [0, 1] on the input grid. ``target`` is None (the predicted class), a class index (int or LongTensor of
shape (batch,)), a prompt, or one prompt per clip. Each interpreter records how its raw saliency became a mask in
its ``normalization`` attribute.

:data:`INTERPRETERS` is the one list of methods: the evaluation's methods and table names, the ``lmaczs explain
--method`` choices and the checks of ``eval.yaml`` are read from it. Adding a method is one new module with an
:class:`Interpreter` subclass and one line in the table (see the README, "Extending").

>>> list(INTERPRETERS)
['gradcam', 'gradcam++', 'smoothgrad', 'ig', 'scorecam', 'gscorecam', 'lmaczs']
>>> [cls.display_name for cls in INTERPRETERS.values()][:3]
['GradCAM', 'GradCAM++', 'SmoothGrad']
"""

import inspect

from speechbrain_lmaczs.interpreters.base import Interpreter, saliency_to_mask
from speechbrain_lmaczs.interpreters.cam import CAMInterpreter, GradCAM, GradCAMPlusPlus, GScoreCAM, ScoreCAM
from speechbrain_lmaczs.interpreters.gradient import IntegratedGradients, SmoothGrad
from speechbrain_lmaczs.interpreters.hooks import record_outputs, single_map
from speechbrain_lmaczs.interpreters.lmaczs import LMACZSInterpreter
from speechbrain_lmaczs.interpreters.targets import Targets, check_inputs, resolve_targets

#: name used in hparams and on the command line -> interpreter class, in the order of the results tables
INTERPRETERS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "smoothgrad": SmoothGrad,
    "ig": IntegratedGradients,
    "scorecam": ScoreCAM,
    "gscorecam": GScoreCAM,
    "lmaczs": LMACZSInterpreter,
}


def build_interpreter(name, classifier, model=None, domain=None, **options):
    """Build the interpreter called ``name`` for ``classifier``.

    Parameters
    ----------
    name : str
        A key of :data:`INTERPRETERS`.
    classifier : ZeroShotClassifier
        The classifier to explain.
    model : TrainedLMACZS, optional
        A trained LMAC-ZS model: when given, every method is built by its class's ``from_model``, which hands it
        the model's masking domain (a method that :attr:`~Interpreter.needs_model` takes its other parts from it).
    domain : MaskingDomain, optional
        Without a model: the masking domain of the representation (None: the paper's ``mask * X``). Every method
        receives it the same way; those that perturb the input mask and define "absent" through it.
    **options
        Keyword arguments of that interpreter's constructor (e.g. ``n_steps`` for ``"ig"``).

    Returns
    -------
    Interpreter

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> from speechbrain_lmaczs.clap import load_clap
    >>> from speechbrain_lmaczs.classifier import ZeroShotClassifier
    >>> folder = tempfile.TemporaryDirectory()
    >>> clap = load_clap("laion", "tiny-random", savedir=folder.name)
    >>> classifier = ZeroShotClassifier(clap, ["this is the sound of rain", "this is the sound of a dog"])
    >>> logmel = clap.frontend(0.1 * torch.randn(2, clap.clip_samples))
    >>> gradcam = build_interpreter("gradcam", classifier, upsample_mode="bilinear")
    >>> gradcam.normalization
    'relu -> upsample(bilinear) to (T,F) -> / per-clip max (eps 1e-12)'
    >>> masks = gradcam.explain(logmel, target="a dog barks")
    >>> masks.shape == logmel.shape, bool(masks.min() >= 0.0), bool(masks.max() <= 1.0)
    (True, True, True)
    >>> folder.cleanup()

    Names and options are checked before anything is built:

    >>> build_interpreter("gradcam+", classifier=None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Unknown interpreter 'gradcam+': use one of ['gradcam', 'gradcam++', ...].
    >>> build_interpreter("ig", classifier=None, steps=8)
    Traceback (most recent call last):
    ...
    TypeError: Unknown option(s) ['steps'] for interpreter 'ig'; it accepts ['baseline', 'batch_size', 'n_steps'].
    """
    if name not in INTERPRETERS:
        raise ValueError(f"Unknown interpreter {name!r}: use one of {sorted(INTERPRETERS)}.")
    cls = INTERPRETERS[name]
    if model is not None and domain is not None and domain is not model.domain:
        raise ValueError("Pass a masking domain or a model (whose domain is used), not both.")
    if model is not None and cls.needs_model:
        # Its parts come from the model; from_model says which options, if any, it takes.
        return cls.from_model(classifier, model, **options)
    parameters = inspect.signature(cls).parameters
    variadic = (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    # The classifier and the domain come from the caller and the model, never from the options.
    accepted = sorted(n for n, p in parameters.items() if n not in ("classifier", "domain") and p.kind not in variadic)
    unknown = sorted(set(options) - set(accepted))
    if unknown and not takes_any:
        raise TypeError(f"Unknown option(s) {unknown} for interpreter {name!r}; it accepts {accepted}.")
    if model is not None:
        return cls.from_model(classifier, model, **options)
    return cls(classifier, domain=domain, **options)


__all__ = [
    "INTERPRETERS",
    "build_interpreter",
    "Interpreter",
    "CAMInterpreter",
    "GradCAM",
    "GradCAMPlusPlus",
    "ScoreCAM",
    "GScoreCAM",
    "SmoothGrad",
    "IntegratedGradients",
    "LMACZSInterpreter",
    "Targets",
    "record_outputs",
    "single_map",
    "check_inputs",
    "resolve_targets",
    "saliency_to_mask",
]
