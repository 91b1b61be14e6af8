"""Scores beyond the paper's table, computed in the evaluation loop next to it: each method's reference row (a
constant mask of the same mean) and the prompt selectivity of the ``mixture`` condition.

Every masked input goes through the masking domain (``domain.apply_mask``), as the paper's metrics do, so the
three agree on what masking means (for the paper's log-mel masking: ``M * X``).
"""

import torch

from speechbrain_lmaczs.metrics import constant_mean_mask, faithfulness_metrics, prompt_selectivity


@torch.no_grad()
def masked_probabilities(classifier, domain, x, masks, n_classes=None):
    """Softmax of the classifier on ``x`` masked by ``masks`` as ``domain`` masks, (batch, prompts).

    ``n_classes``: the softmax runs over the first ``n_classes`` prompts only (None: all of them).
    """
    logits = classifier(domain.apply_mask(x, masks))
    return torch.softmax(logits if n_classes is None else logits[:, :n_classes], dim=-1)


@torch.no_grad()
def reference_metrics(classifier, domain, x, masks, p, target, legacy_double_softmax=False):
    """The eight metrics of each clip's reference mask: a constant mask equal to the clip's mask mean.

    Same classifier, domain, probabilities ``p`` of the unmasked input and target as the method's own metrics, so
    the difference between a method's row and its reference row is what the mask's SHAPE adds beyond its size
    (SPS is 0 and COMP is log(T F) for a constant mask; MM is the method's own). Cost: two classifier forwards.

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier explained.
    domain : MaskingDomain
        Applies the masks (the checkpoint's domain).
    x : torch.Tensor
        (batch, time, freq) representations.
    masks : torch.Tensor
        (batch, time, freq) the method's masks.
    p : torch.Tensor
        (batch, prompts) softmax of the classifier on ``x``.
    target : torch.Tensor
        (batch,) explained class indices.
    legacy_double_softmax : bool
        AD variant (see :func:`~speechbrain_lmaczs.metrics.average_drop`).

    Returns
    -------
    dict of str to torch.Tensor
        As :func:`~speechbrain_lmaczs.metrics.faithfulness_metrics`.
    """
    reference = constant_mean_mask(masks)
    o = masked_probabilities(classifier, domain, x, reference)
    q = masked_probabilities(classifier, domain, x, 1.0 - reference)
    return faithfulness_metrics(p, o, q, reference, target, legacy_double_softmax=legacy_double_softmax)


def explain_sources(interpreter, x, masks, target, a, b):
    """Masks of each mixture ``x`` for its own class ``a`` and for its contaminant's class ``b``.

    The evaluation's masks are reused for the clips whose explained ``target`` already is ``a``; every other
    explanation is computed here (so a method costs up to two more explanations per mixture clip).
    """
    masks_a = masks.clone()
    redo = (target.to(a.device) != a).nonzero().flatten()
    if len(redo):
        masks_a[redo] = interpreter.explain(x[redo], a[redo]).to(masks.dtype)
    return masks_a, interpreter.explain(x, b).to(masks.dtype)


@torch.no_grad()
def mixture_selectivity(classifier, domain, x, masks_a, masks_b, a, b, n_classes):
    """Prompt selectivity of the masks of the two sources' prompts, and of their constant references.

    Probabilities are the softmax over the ``n_classes`` class prompts of the classifier on the mixture masked
    (through ``domain``) by a's and by b's mask (:func:`~speechbrain_lmaczs.metrics.prompt_selectivity`).

    Returns
    -------
    tuple of torch.Tensor
        (batch,) selectivity of the masks, and of the constant masks of the same means; NaN where ``a == b``.
    """
    scores = []
    for m_a, m_b in ((masks_a, masks_b), (constant_mean_mask(masks_a), constant_mean_mask(masks_b))):
        o_a = masked_probabilities(classifier, domain, x, m_a, n_classes)
        o_b = masked_probabilities(classifier, domain, x, m_b, n_classes)
        scores.append(prompt_selectivity(o_a, o_b, a, b))
    return tuple(scores)
