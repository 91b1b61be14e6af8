"""Localization of masks against a known ground-truth support (the synthetic benchmark's exact event supports).

Two kinds of scores:

- *top-k*: the mask's k largest bins (k = the support's size) form the predicted region, so a method is scored on
  where it puts its largest values, not on their scale (:func:`localization_iou`), and the pointing game asks
  whether the mask's maximum lies in the support (:func:`pointing_game`). Neither depends on the order of tied
  values: masks that saturate (LMAC-ZS puts tens of bins exactly at its maximum) would otherwise be scored by the
  position of their bins. Tied values that straddle the k-th place share the remaining places fractionally
  (:func:`top_k_membership`) and the IoU is taken between fractional sets (:func:`fractional_iou`); the pointing
  game counts the share of the tied maxima that lie in the support;
- *threshold-free*: the share of the mask's mass inside the support (:func:`mass_in_support`) and the average
  precision of the mask's ranking of the bins against the support (:func:`average_precision`, ties grouped).
"""

import torch

from speechbrain_lmaczs.metrics._checks import _check_masks, _float_dtype

#: Column names of :func:`localization_metrics`.
LOCALIZATION_NAMES = ("IoU", "pointing", "mass_in_support", "AP")


def _check_supports(masks, supports):
    masks = _check_masks(masks)
    if supports.shape != masks.shape:
        raise ValueError(f"supports {tuple(supports.shape)} must have the masks' shape {tuple(masks.shape)}.")
    return masks, supports.bool()


def top_k_membership(masks, counts):
    """Fractional membership of each bin in the mask's top ``counts[i]`` bins, independent of the order of ties.

    Bins above the k-th largest value count 1, bins below it 0; the bins tied at the k-th value share the places
    left among them equally (places left / number tied), so every row sums to exactly k.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, ...) masks.
    counts : sequence of int
        (batch,) places per mask (0 gives an empty region).

    Returns
    -------
    torch.Tensor
        float64 memberships in [0, 1], shaped like ``masks``.

    Example
    -------
    >>> top_k_membership(torch.tensor([[0.9, 0.5, 0.5, 0.5, 0.1]]), [2]).tolist()  # 1 place left for 3 tied bins
    [[1.0, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333, 0.0]]
    """
    flat = masks.flatten(1).to(torch.float64)
    member = torch.zeros_like(flat)
    for i in range(flat.shape[0]):
        k = min(int(counts[i]), flat.shape[1])
        if k <= 0:
            continue
        kth = torch.topk(flat[i], k).values[-1]
        above = flat[i] > kth
        tied = flat[i] == kth
        member[i] = above.to(torch.float64)
        member[i, tied] = (k - int(above.sum())) / int(tied.sum())
    return member.reshape(masks.shape)


def fractional_iou(a, b):
    """IoU of two fractional (or boolean) (batch, ...) sets: sum of the minima over sum of the maxima, per item.

    Boolean sets give the usual IoU; two empty sets give 0.

    Example
    -------
    >>> fractional_iou(torch.tensor([[1.0, 0.5, 0.5, 0.0]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]])).tolist()  # 1.5 / 2.5
    [0.6]
    >>> fractional_iou(torch.tensor([[True, True, False]]), torch.tensor([[False, True, True]])).tolist()
    [0.3333333333333333]
    """
    a, b = a.flatten(1).to(torch.float64), b.flatten(1).to(torch.float64)
    union = torch.maximum(a, b).sum(-1)
    inter = torch.minimum(a, b).sum(-1)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def localization_iou(masks, supports):
    """IoU between the top-k of each mask and the ground-truth support, k = the support's size.

    The top-k is :func:`top_k_membership` (tied values straddling the k-th place share it), so the score does not
    depend on the order of ties, and a method is not rewarded for its overall scale, only for where it puts its
    largest values. An empty support scores NaN (there is nothing to localize; the accumulator counts it).

    Parameters
    ----------
    masks : torch.Tensor
        (batch, time, freq) masks.
    supports : torch.Tensor
        (batch, time, freq) boolean ground-truth supports.

    Returns
    -------
    torch.Tensor
        (batch,) IoU in [0, 1].

    Examples
    --------
    >>> m = torch.tensor([[[0.9, 0.8], [0.1, 0.0]]])
    >>> localization_iou(m, torch.tensor([[[True, False], [False, False]]])).tolist()
    [1.0]
    >>> localization_iou(m, torch.tensor([[[False, True], [True, False]]])).tolist()  # top-2 = first row
    [0.3333333432674408]
    >>> tied = torch.ones(1, 2, 2)  # a constant mask: every bin holds k / N of a place
    >>> localization_iou(tied, torch.tensor([[[True, False], [False, False]]])).tolist()  # 0.25 / 1.75
    [0.1428571492433548]
    """
    masks, supports = _check_supports(masks, supports)
    counts = supports.flatten(1).sum(-1)
    iou = fractional_iou(top_k_membership(masks, counts), supports)
    iou = torch.where(counts > 0, iou, torch.full_like(iou, float("nan")))
    return iou.to(_float_dtype(masks))


def top_k_region(masks, counts):
    """Boolean region of each mask's ``counts[i]`` largest bins, ties broken by position (0 gives an empty region).

    The scores use :func:`top_k_membership`, which does not depend on the order of ties; this boolean region is
    for drawing.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, ...) masks.
    counts : sequence of int
        (batch,) bins to keep per mask.

    Returns
    -------
    torch.Tensor
        bool, shaped like ``masks``.

    Example
    -------
    >>> top_k_region(torch.tensor([[0.2, 0.9, 0.5], [0.1, 0.0, 0.3]]), [2, 0]).tolist()
    [[False, True, True], [False, False, False]]
    """
    flat = masks.flatten(1)
    region = torch.zeros(flat.shape, dtype=torch.bool, device=masks.device)
    for i in range(flat.shape[0]):
        k = int(counts[i])
        if k > 0:
            region[i, torch.topk(flat[i], k, sorted=False).indices] = True
    return region.reshape(masks.shape)


def pointing_game(masks, supports):
    """The share of the mask's maxima that lie inside the support: 1 or 0 for a single maximum, the fraction of the
    tied bins otherwise (a saturated mask is not scored by the position of its first maximum).

    Examples
    --------
    >>> m = torch.tensor([[[0.2, 0.9], [0.1, 0.0]], [[0.9, 0.2], [0.1, 0.0]], [[0.9, 0.9], [0.9, 0.0]]])
    >>> s = torch.tensor([[[False, True], [False, False]]]).expand(3, 2, 2)
    >>> pointing_game(m, s).tolist()  # third mask: 1 of its 3 maxima is in the support
    [1.0, 0.0, 0.3333333432674408]
    """
    masks, supports = _check_supports(masks, supports)
    flat = masks.flatten(1)
    best = flat == flat.max(dim=-1, keepdim=True).values
    hit = (best & supports.flatten(1)).sum(-1).to(torch.float64) / best.sum(-1).to(torch.float64)
    return hit.to(_float_dtype(masks))


def mass_in_support(masks, supports):
    """The share of the mask's mass that lies inside the support (threshold-free).

    A mask of zeros carries no information and scores like a constant mask: the support's share of the grid. An
    empty support scores NaN.

    Example
    -------
    >>> m = torch.tensor([[[0.6, 0.2], [0.2, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    >>> s = torch.tensor([[[True, False], [False, False]]]).expand(2, 2, 2)
    >>> mass_in_support(m, s).tolist()
    [0.6000000238418579, 0.25]
    """
    masks, supports = _check_supports(masks, supports)
    flat = masks.flatten(1).to(torch.float64)
    flat_s = supports.flatten(1)
    total = flat.sum(-1)
    flat = torch.where(total[:, None] > 0, flat, torch.ones_like(flat))
    share = (flat * flat_s).sum(-1) / flat.sum(-1)
    share = torch.where(flat_s.any(-1), share, torch.full_like(share, float("nan")))
    return share.to(_float_dtype(masks))


def average_precision(masks, supports):
    """Average precision of each mask's ranking of the bins, the support being the positives (threshold-free).

    AP = sum over the distinct mask values v, from the largest, of (recall gained at v) x (precision of the bins
    >= v): tied bins enter together, so the order of ties does not matter (the convention of scikit-learn's
    ``average_precision_score``). A perfect ranking scores 1, a constant mask the support's share of the grid; an
    empty support scores NaN.

    Example
    -------
    >>> m = torch.tensor([[[0.9, 0.5, 0.5, 0.1]]])
    >>> average_precision(m, torch.tensor([[[True, False, True, False]]])).tolist()  # 1/2 x 1 + 1/2 x 2/3
    [0.8333333134651184]
    """
    masks, supports = _check_supports(masks, supports)
    flat = masks.flatten(1).to(torch.float64)
    flat_s = supports.flatten(1)
    out = torch.full((flat.shape[0],), float("nan"), dtype=torch.float64)
    for i in range(flat.shape[0]):
        positives = int(flat_s[i].sum())
        if positives == 0:
            continue
        values, order = torch.sort(flat[i], descending=True)
        hits = torch.cumsum(flat_s[i][order].to(torch.float64), 0)
        # the last bin of each group of equal values: precision and recall are read there
        last = torch.ones_like(values, dtype=torch.bool)
        last[:-1] = values[1:] != values[:-1]
        ends = torch.nonzero(last)[:, 0]
        tp = hits[ends]
        precision = tp / (ends + 1).to(torch.float64)
        recall_gain = torch.diff(tp, prepend=tp.new_zeros(1)) / positives
        out[i] = (recall_gain * precision).sum()
    return out.to(_float_dtype(masks))


def localization_metrics(masks, supports):
    """Every localization metric, as a dict with keys :data:`LOCALIZATION_NAMES`."""
    return {
        "IoU": localization_iou(masks, supports),
        "pointing": pointing_game(masks, supports),
        "mass_in_support": mass_in_support(masks, supports),
        "AP": average_precision(masks, supports),
    }
