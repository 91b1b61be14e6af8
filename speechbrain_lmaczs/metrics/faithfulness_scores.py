"""Faithfulness metrics of explanation masks for a zero-shot classifier, per clip.

Every metric follows ``shared/reference/metrics.md``. For one clip, ``p`` are the class probabilities of the
original input, ``o`` those of the masked-in input ``M * X`` and ``q`` those of the masked-out input
``(1 - M) * X``; all are ``(batch, n_classes)`` softmax outputs computed with the same temperature. ``target``
is the explained class c^, ``argmax p`` by default. Masks are ``(batch, time, freq)``. Every function returns one
value per clip, shape ``(batch,)``; averaging over a set is the job of :class:`MetricAccumulator`, which never
lets a non-finite value into a mean unnoticed.

Decisions the reference leaves open:

- ``AG`` when ``p_c^ = 1``: no gain is possible (``o_c^ <= 1 = p_c^``), so the clip scores 0 instead of 0/0.
- ``AD`` when ``p_c^ = 0`` (only reachable with a user-given ``target``): nothing can drop, the clip scores 0.
- All-zero mask: ``SPS = 0`` and ``COMP = log(n)``, the values of a constant mask, i.e. the limit of a constant
  mask ``c -> 0``. A map that puts weight nowhere singles out nothing, so it scores as the least sparse and most
  complex map instead of being skipped (SpeechBrain's L-MAC eval skips it). Such clips stay identifiable in
  per-clip tables through ``MM = 0``.
- Non-finite inputs (a NaN probability, a NaN mask) are not hidden: the metric comes out non-finite and
  :class:`MetricAccumulator` counts, logs (and by default excludes) or raises on it.
"""


import torch
import torch.nn.functional as F

from speechbrain_lmaczs.metrics._checks import (
    _at_target,
    _check_masks,
    _check_pair,
    _check_probabilities,
    _float_dtype,
    _nan_where_undefined,
    _resolve_target,
)
from speechbrain_lmaczs.metrics.mask_statistics import complexity, mask_mean, sparseness

#: Column names of :func:`faithfulness_metrics`, in table order.
METRIC_NAMES = ("AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM")


def predicted_class(p):
    """The zero-shot decision c^ = argmax over classes, shape (batch,).

    >>> predicted_class(torch.tensor([[0.2, 0.8], [0.7, 0.3]])).tolist()
    [1, 0]
    """
    return _check_probabilities("p", p).argmax(dim=-1)


def average_increase(p, o, target=None):
    """Average Increase (AI, higher is better): ``100 * [o_c^ > p_c^]`` per clip.

    Parameters
    ----------
    p, o : torch.Tensor
        (batch, n_classes) probabilities of the original and of the masked-in input.
    target : torch.Tensor, optional
        (batch,) explained class indices; ``argmax p`` if None.

    Returns
    -------
    torch.Tensor
        (batch,) values in {0, 100}.

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    >>> o = torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    >>> average_increase(p, o).tolist()
    [100.0, 0.0]
    """
    p, o, target = _check_pair(p, o, "o", target)
    p_c, o_c = _at_target(p, target), _at_target(o, target)
    return _nan_where_undefined((o_c > p_c).to(p.dtype) * 100.0, p_c, o_c)


def average_drop(p, o, target=None, legacy_double_softmax=False):
    """Average Drop (AD, lower is better): ``100 * max(0, p_c^ - o_c^) / p_c^`` per clip.

    Parameters
    ----------
    p, o : torch.Tensor
        (batch, n_classes) probabilities of the original and of the masked-in input.
    target : torch.Tensor, optional
        (batch,) explained class indices; ``argmax p`` if None.
    legacy_double_softmax : bool
        False (the paper's formula) uses ``p`` and ``o`` as given. True reproduces SpeechBrain's L-MAC
        evaluation code, which applies a softmax again to both (already normalised) probability vectors before
        the formula; it flattens them towards uniform and lowers AD. Use it only to compare with numbers from
        that code, and say so in the table.

    Returns
    -------
    torch.Tensor
        (batch,) values in [0, 100]. A clip with ``p_c^ = 0`` (possible only with a given ``target``) scores 0:
        nothing can drop.

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4], [0.8, 0.2]])
    >>> o = torch.tensor([[0.8, 0.2], [0.2, 0.8]])
    >>> average_drop(p, o).tolist()
    [0.0, 75.0]
    """
    p, o, target = _check_pair(p, o, "o", target)
    if legacy_double_softmax:
        p, o = F.softmax(p, dim=-1), F.softmax(o, dim=-1)
    p_c, o_c = _at_target(p, target), _at_target(o, target)
    drop = (p_c - o_c).clamp_min(0)
    ratio = drop / torch.where(p_c > 0, p_c, torch.ones_like(p_c))
    return _nan_where_undefined(100.0 * torch.where(p_c > 0, ratio, torch.zeros_like(ratio)), p_c, o_c)


def average_gain(p, o, target=None):
    """Average Gain (AG, higher is better): ``100 * max(0, o_c^ - p_c^) / (1 - p_c^)`` per clip.

    Parameters
    ----------
    p, o : torch.Tensor
        (batch, n_classes) probabilities of the original and of the masked-in input.
    target : torch.Tensor, optional
        (batch,) explained class indices; ``argmax p`` if None.

    Returns
    -------
    torch.Tensor
        (batch,) values in [0, 100]. A clip with ``p_c^ = 1`` scores 0: the original is already certain, so no
        gain is possible (``o_c^ <= 1``), and the 0/0 of the formula is read as "no gain".

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4], [1.0, 0.0]])
    >>> o = torch.tensor([[0.8, 0.2], [1.0, 0.0]])
    >>> average_gain(p, o).tolist()
    [50.0, 0.0]
    """
    p, o, target = _check_pair(p, o, "o", target)
    p_c, o_c = _at_target(p, target), _at_target(o, target)
    headroom = 1 - p_c
    gain = (o_c - p_c).clamp_min(0)
    ratio = gain / torch.where(headroom > 0, headroom, torch.ones_like(headroom))
    # Rounding can put o_c^ a hair above a p_c^ that is within float eps of 1; a probability cannot gain more
    # than the whole headroom, so the ratio is capped at 1.
    ratio = ratio.clamp(max=1.0)
    return _nan_where_undefined(100.0 * torch.where(headroom > 0, ratio, torch.zeros_like(ratio)), p_c, o_c)


def faithfulness(p, q, target=None):
    """Faithfulness on spectra (FF, higher is better): ``p_c^ - q_c^`` per clip.

    How much the explained class loses when the mask's content is removed (``q`` = probabilities of the
    masked-out input ``(1 - M) * X``).

    Parameters
    ----------
    p, q : torch.Tensor
        (batch, n_classes) probabilities of the original and of the masked-out input.
    target : torch.Tensor, optional
        (batch,) explained class indices; ``argmax p`` if None.

    Returns
    -------
    torch.Tensor
        (batch,) values in [-1, 1].

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4]])
    >>> q = torch.tensor([[0.25, 0.75]])
    >>> [round(v, 4) for v in faithfulness(p, q).tolist()]
    [0.35]
    """
    p, q, target = _check_pair(p, q, "q", target)
    return _at_target(p, target) - _at_target(q, target)


def input_fidelity(p, o):
    """Input Fidelity (Fid-In, higher is better): ``[argmax o == argmax p]`` per clip, a fraction (not x100).

    As defined, it compares the two decisions and does not depend on the explained class: with a ``target``
    other than ``argmax p`` it still asks whether the masked-in input keeps the original decision.

    Parameters
    ----------
    p, o : torch.Tensor
        (batch, n_classes) probabilities of the original and of the masked-in input.

    Returns
    -------
    torch.Tensor
        (batch,) values in {0, 1} (NaN where a row holds a NaN).

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    >>> o = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    >>> input_fidelity(p, o).tolist()
    [1.0, 0.0]
    """
    p, o, _ = _check_pair(p, o, "o")
    same = (p.argmax(dim=-1) == o.argmax(dim=-1)).to(p.dtype)
    # argmax of a row with NaN is arbitrary: report the clip as non-finite rather than as a (mis)match.
    broken = torch.isnan(p).any(dim=-1) | torch.isnan(o).any(dim=-1)
    return torch.where(broken, torch.nan, same)



def faithfulness_metrics(p, o, q, masks, target=None, legacy_double_softmax=False):
    """All eight metrics of a batch, per clip.

    Parameters
    ----------
    p, o, q : torch.Tensor
        (batch, n_classes) probabilities of the original, masked-in and masked-out inputs.
    masks : torch.Tensor
        (batch, time, freq) explanation masks.
    target : torch.Tensor, optional
        (batch,) explained class indices; ``argmax p`` if None.
    legacy_double_softmax : bool
        Passed to :func:`average_drop` (False: the paper's formula).

    Returns
    -------
    dict of str to torch.Tensor
        Keys :data:`METRIC_NAMES` (``"AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM"``), each (batch,),
        on the device of the inputs.

    Examples
    --------
    >>> p = torch.tensor([[0.6, 0.4]])
    >>> o = torch.tensor([[0.8, 0.2]])
    >>> q = torch.tensor([[0.3, 0.7]])
    >>> values = faithfulness_metrics(p, o, q, torch.full((1, 4, 2), 0.25))
    >>> {name: round(v.item(), 4) for name, v in values.items()}
    {'AI': 100.0, 'AD': 0.0, 'AG': 50.0, 'FF': 0.3, 'Fid-In': 1.0, 'SPS': 0.0, 'COMP': 2.0794, 'MM': 0.25}
    """
    masks = _check_masks(masks)
    if masks.shape[0] != p.shape[0]:
        raise ValueError(f"masks hold {masks.shape[0]} clips but p holds {p.shape[0]}.")
    p_checked = _check_probabilities("p", p)
    target = _resolve_target(p_checked, target)
    values = {
        "AI": average_increase(p, o, target),
        "AD": average_drop(p, o, target, legacy_double_softmax=legacy_double_softmax),
        "AG": average_gain(p, o, target),
        "FF": faithfulness(p, q, target),
        "Fid-In": input_fidelity(p, o),
        "SPS": sparseness(masks),
        "COMP": complexity(masks),
        "MM": mask_mean(masks),
    }
    return {name: values[name] for name in METRIC_NAMES}


def zero_shot_accuracy(scores, labels):
    """Per-clip top-1 correctness in percent: ``100 * [argmax scores == label]``.

    Averaged by :class:`MetricAccumulator`, it gives the zero-shot accuracy in percent.

    Parameters
    ----------
    scores : torch.Tensor
        (batch, n_classes) logits or probabilities (only the argmax is used).
    labels : torch.Tensor
        (batch,) true class indices.

    Returns
    -------
    torch.Tensor
        (batch,) values in {0, 100}.

    Examples
    --------
    >>> zero_shot_accuracy(torch.tensor([[2.0, 1.0], [0.0, 3.0]]), torch.tensor([0, 0])).tolist()
    [100.0, 0.0]
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (batch, n_classes), got shape {tuple(scores.shape)}.")
    labels = torch.as_tensor(labels, device=scores.device).reshape(-1)
    if labels.numel() != scores.shape[0]:
        raise ValueError(f"labels has {labels.numel()} entries for a batch of {scores.shape[0]} clips.")
    correct = (scores.argmax(dim=-1) == labels).to(_float_dtype(scores)) * 100.0
    return torch.where(torch.isnan(scores).any(dim=-1), torch.nan, correct)


