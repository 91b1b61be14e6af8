"""Localization of masks against a known ground-truth support (the synthetic benchmark's exact event supports).

The mask's top-k% bins (k = the support's share of the grid) are compared with the support, so a method is scored
on where it puts its largest values, not on their scale.
"""

import torch

from speechbrain_lmaczs.metrics._checks import _check_masks, _float_dtype

#: Column names of :func:`localization_metrics`.
LOCALIZATION_NAMES = ("IoU", "pointing")


def _check_supports(masks, supports):
    masks = _check_masks(masks)
    if supports.shape != masks.shape:
        raise ValueError(f"supports {tuple(supports.shape)} must have the masks' shape {tuple(masks.shape)}.")
    return masks, supports.bool()


def localization_iou(masks, supports):
    """IoU between the top-k% of each mask and the ground-truth support, k = the support's share of the grid.

    The mask's ``n_support`` largest bins (ties broken by position) form the predicted region, so a method is not
    rewarded for its overall scale, only for where it puts its largest values. An empty support scores NaN (there
    is nothing to localize; the accumulator counts it).

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
    """
    masks, supports = _check_supports(masks, supports)
    flat_s = supports.flatten(1)
    counts = flat_s.sum(-1)
    predicted = top_k_region(masks.to(torch.float64), counts).flatten(1)
    inter = (predicted & flat_s).sum(-1).to(torch.float64)
    union = (predicted | flat_s).sum(-1).to(torch.float64)
    iou = torch.where(counts > 0, inter / union.clamp(min=1), torch.full_like(inter, float("nan")))
    return iou.to(_float_dtype(masks))


def top_k_region(masks, counts):
    """Boolean region of each mask's ``counts[i]`` largest bins (ties broken by position; 0 gives an empty region).

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
    """1 when the mask's maximum lies inside the support, else 0 (first maximum on ties).

    Examples
    --------
    >>> m = torch.tensor([[[0.2, 0.9], [0.1, 0.0]], [[0.9, 0.2], [0.1, 0.0]]])
    >>> s = torch.tensor([[[False, True], [False, False]]]).expand(2, 2, 2)
    >>> pointing_game(m, s).tolist()
    [1.0, 0.0]
    """
    masks, supports = _check_supports(masks, supports)
    best = masks.flatten(1).argmax(dim=-1)
    hit = supports.flatten(1).gather(1, best[:, None])[:, 0]
    return hit.to(_float_dtype(masks))


def localization_metrics(masks, supports):
    """Both localization metrics, as a dict with keys :data:`LOCALIZATION_NAMES`."""
    return {"IoU": localization_iou(masks, supports), "pointing": pointing_game(masks, supports)}


