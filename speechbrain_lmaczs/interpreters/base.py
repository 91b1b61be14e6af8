"""The interface shared by every interpreter, and the one saliency-to-mask normalization of the baselines."""

import logging
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.interpreters.targets import check_inputs, resolve_targets
from speechbrain_lmaczs.lmaczs.domains import multiply_mask

logger = logging.getLogger(__name__)

RECTIFIERS = ("abs", "relu")
UPSAMPLE_MODES = ("nearest", "nearest-exact", "bilinear")
#: guards the per-clip division by the maximum: an all-zero saliency becomes an all-zero mask
MASK_EPS = 1e-12


def saliency_to_mask(saliency, size, rectify="abs", upsample_mode="nearest", eps=MASK_EPS):
    """Turn raw saliency into a mask in [0, 1] on the input grid.

    ``rectify`` -> upsample to ``size`` (skipped when the grid already matches) -> divide by the per-clip maximum
    (floored at ``eps``, so an all-zero saliency gives an all-zero mask, never NaN).

    Parameters
    ----------
    saliency : torch.Tensor
        (batch, t, f) raw saliency on any grid (the input's, or a CAM layer's).
    size : tuple of int
        (time, freq) of the input grid.
    rectify : str
        ``"abs"`` (gradient maps: both signs matter) or ``"relu"`` (CAMs: only positive evidence).
    upsample_mode : str
        ``"nearest"``, ``"nearest-exact"`` or ``"bilinear"`` (``align_corners=False``).
    eps : float
        Floor of the per-clip maximum.

    Returns
    -------
    torch.Tensor
        (batch, time, freq) mask in [0, 1]; each clip's maximum is 1 unless its saliency is all zero.

    Example
    -------
    >>> s = torch.tensor([[[-2.0, 1.0], [0.0, 4.0]]])
    >>> saliency_to_mask(s, (2, 4), rectify="relu")
    tensor([[[0.0000, 0.0000, 0.2500, 0.2500],
             [0.0000, 0.0000, 1.0000, 1.0000]]])
    >>> saliency_to_mask(s, (2, 2), rectify="abs")
    tensor([[[0.5000, 0.2500],
             [0.0000, 1.0000]]])
    >>> saliency_to_mask(torch.zeros(1, 2, 2), (4, 4)).sum()
    tensor(0.)
    """
    if rectify not in RECTIFIERS:
        raise ValueError(f"rectify must be one of {RECTIFIERS}, got {rectify!r}.")
    if upsample_mode not in UPSAMPLE_MODES:
        raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}.")
    if saliency.dim() != 3:
        raise ValueError(f"saliency must be (batch, t, f), got shape {tuple(saliency.shape)}.")
    if not torch.isfinite(saliency).all():
        raise FloatingPointError(
            "The saliency contains NaN or infinite values: the classifier's score or its gradient is not finite "
            "for these inputs (check the inputs' range and dtype)."
        )
    saliency = saliency.abs() if rectify == "abs" else saliency.clamp_min(0)
    size = tuple(int(s) for s in size)
    if tuple(saliency.shape[1:]) != size:
        extra = {"align_corners": False} if upsample_mode == "bilinear" else {}
        saliency = F.interpolate(saliency[:, None], size=size, mode=upsample_mode, **extra)[:, 0]
    peak = saliency.flatten(1).amax(dim=1).clamp_min(eps)
    # Interpolation keeps values within their neighbours' range; the clamp only absorbs rounding.
    return (saliency / peak[:, None, None]).clamp(0.0, 1.0)


class Interpreter(ABC):
    """Base class: explains a :class:`~speechbrain_lmaczs.classifier.ZeroShotClassifier` with one call.

    ``explain(inputs, target)`` validates the inputs, resolves the target into per-clip scores
    (:func:`~speechbrain_lmaczs.interpreters.targets.resolve_targets`), calls :meth:`saliency` (the one method a
    subclass writes) and turns its raw output into a mask with :meth:`to_mask`. An interpreter whose output
    already is a mask (a trained decoder) overrides :meth:`to_mask` and :attr:`normalization` as well.

    A method is registered by one line in :data:`speechbrain_lmaczs.interpreters.INTERPRETERS`; its class states
    its :attr:`display_name` and whether it is built from a trained model (:attr:`needs_model`,
    :meth:`from_model`).

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier to explain; it is not modified.
    upsample_mode : str
        How saliency on a coarser grid is brought to the input grid (see :func:`saliency_to_mask`).
    domain : MaskingDomain, optional
        The masking domain of the representation explained (the one the metrics mask with). Methods that perturb
        the input ask it how to mask (:meth:`apply_mask`) and what "absent" is (:meth:`absent`), so IG's baseline,
        ScoreCAM's masked inputs and SmoothGrad's noise scale follow the same convention as the metrics.
        :func:`~speechbrain_lmaczs.interpreters.build_interpreter` passes the model's domain to every method; None
        keeps the paper's convention (the mask multiplies the representation, a masked-out bin is 0).
    """

    #: ``"abs"`` for gradient maps, ``"relu"`` for CAMs
    rectify = "abs"
    #: name in results tables and figures (a registered method must set it)
    display_name = None
    #: True when the method's parts come from a trained model (:meth:`from_model` needs it)
    needs_model = False

    def __init__(self, classifier, upsample_mode="nearest", domain=None):
        if not isinstance(classifier, ZeroShotClassifier):
            raise TypeError(f"classifier must be a ZeroShotClassifier, got {type(classifier).__name__}.")
        if upsample_mode not in UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {UPSAMPLE_MODES}, got {upsample_mode!r}.")
        self.classifier = classifier
        self.upsample_mode = upsample_mode
        self.domain = domain

    @classmethod
    def from_model(cls, classifier, model, **options):
        """Build the interpreter of ``classifier`` with the masking domain of ``model`` (a trained LMAC-ZS); a
        method that :attr:`needs_model` takes its other parts from it too.

        Parameters
        ----------
        classifier : ZeroShotClassifier
            The classifier to explain.
        model : TrainedLMACZS
            The trained model the evaluation or the explainer loaded.
        **options
            Keyword arguments of the constructor.
        """
        return cls(classifier, domain=model.domain, **options)

    def apply_mask(self, x, mask):
        """``x`` masked as the domain masks (the paper's ``mask * x`` without a domain)."""
        if self.domain is None:
            return multiply_mask(x, mask)
        return self.domain.apply_mask(x, mask)

    def absent(self, x):
        """What masking leaves of ``x`` where the mask is 0 (:meth:`MaskingDomain.absent`)."""
        return self.apply_mask(x, torch.zeros_like(x))

    @property
    def normalization(self):
        """How raw saliency becomes a mask, as recorded next to results."""
        return f"{self.rectify} -> upsample({self.upsample_mode}) to (T,F) -> / per-clip max (eps {MASK_EPS:g})"

    @property
    def normalisation(self):
        """Former name of :attr:`normalization`."""
        return self.normalization

    def explain(self, inputs, target=None):
        """Masks explaining the classifier's target score for each clip.

        Parameters
        ----------
        inputs : torch.Tensor
            (batch, time, freq) representations, as the classifier takes them.
        target : None, int, torch.LongTensor, str or list of str
            What to explain (see :func:`~speechbrain_lmaczs.interpreters.targets.resolve_targets`); None explains
            each clip's predicted class.

        Returns
        -------
        torch.Tensor
            (batch, time, freq) masks in [0, 1] on the input grid, detached.
        """
        inputs = check_inputs(inputs)
        targets = resolve_targets(self.classifier, inputs, target)
        logger.debug("%s explains %d clips for %s", type(self).__name__, len(targets), targets.prompts)
        # Explanations are often computed inside an evaluation loop under no_grad; the methods need gradients.
        with torch.enable_grad():
            saliency = self.saliency(inputs, targets)
        return self.to_mask(saliency.detach(), inputs.shape[1:]).to(inputs.device)

    @abstractmethod
    def saliency(self, inputs, targets):
        """Raw saliency (batch, t, f) for checked ``inputs`` and resolved ``targets``, on any (t, f) grid."""

    def to_mask(self, saliency, size):
        """The shared normalization (:func:`saliency_to_mask`) with this interpreter's settings."""
        return saliency_to_mask(saliency, size, rectify=self.rectify, upsample_mode=self.upsample_mode)

    def __repr__(self):
        return f"{type(self).__name__}(normalization={self.normalization!r})"
