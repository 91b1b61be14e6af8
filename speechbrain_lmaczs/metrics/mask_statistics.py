"""Statistics of a mask alone (no classifier): sparseness, complexity and mean, per clip."""

import math

import torch

from speechbrain_lmaczs.metrics._checks import _check_masks, _float_dtype

#: Added to ``|M|`` before the Gini index, as in the reference definition (keeps an all-zero mask defined).
GINI_EPS = 1e-7


def sparseness(masks):
    """Sparseness (SPS, higher is better): Gini index of ``|M|`` per clip.

    With ``a = sort(|M| + 1e-7)`` ascending over the ``n`` flattened bins and ``k = 1..n``:
    ``SPS = sum((2k - n - 1) a_k) / (n * sum(a))``. Computed in float64 (sums over ~44k bins). It is 0 for a
    constant mask, including an all-zero one (the ``1e-7`` keeps it defined), and tends to ``1 - 1/n`` for a
    single active bin. Scale-invariant up to the ``1e-7``.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, time, freq) masks.

    Returns
    -------
    torch.Tensor
        (batch,) values in [0, 1).

    Examples
    --------
    >>> masks = torch.zeros(2, 2, 2)
    >>> masks[1, 0, 0] = 1.0
    >>> [round(v, 4) for v in sparseness(masks).tolist()]
    [0.0, 0.75]
    """
    masks = _check_masks(masks)
    out_dtype = _float_dtype(masks)
    a = masks.abs().flatten(1).to(torch.float64) + GINI_EPS
    a, _ = torch.sort(a, dim=-1)
    n = a.shape[-1]
    k = torch.arange(1, n + 1, device=a.device, dtype=torch.float64)
    gini = ((2 * k - n - 1) * a).sum(dim=-1) / (n * a.sum(dim=-1))
    return gini.to(out_dtype)


def complexity(masks):
    """Complexity (COMP, lower is better): entropy in nats of ``|M| / sum|M|`` per clip.

    Bins with zero weight contribute 0 (``0 log 0 = 0``). An all-zero mask has no distribution; it scores
    ``log(n)``, the entropy of a constant mask of ``n`` bins (see the module docstring). Computed in float64.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, time, freq) masks.

    Returns
    -------
    torch.Tensor
        (batch,) values in [0, log(n)].

    Examples
    --------
    >>> masks = torch.zeros(3, 2, 2)
    >>> masks[0] = 0.5  # uniform: log(4)
    >>> masks[1, 0, 0] = 1.0  # one bin: 0
    >>> [round(v, 4) for v in complexity(masks).tolist()]  # all-zero: log(4)
    [1.3863, 0.0, 1.3863]
    """
    masks = _check_masks(masks)
    out_dtype = _float_dtype(masks)
    weights = masks.abs().flatten(1).to(torch.float64)
    total = weights.sum(dim=-1, keepdim=True)
    empty = total == 0
    probs = weights / torch.where(empty, torch.ones_like(total), total)
    # "+ 0.0" turns the -0.0 of a one-bin mask into 0.0.
    entropy = -torch.special.xlogy(probs, probs).sum(dim=-1) + 0.0
    entropy = torch.where(empty.squeeze(-1), math.log(weights.shape[-1]), entropy)
    return entropy.to(out_dtype)


def mask_mean(masks):
    """Mask Mean (MM, reported): mean of ``M`` per clip.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, time, freq) masks.

    Returns
    -------
    torch.Tensor
        (batch,) values.

    Examples
    --------
    >>> mask_mean(torch.tensor([[[0.0, 1.0], [0.5, 0.5]]])).tolist()
    [0.5]
    """
    masks = _check_masks(masks)
    return masks.flatten(1).to(torch.float64).mean(dim=-1).to(_float_dtype(masks))




def constant_mean_mask(masks):
    """The reference mask of each clip: constant, equal to that clip's mask mean (same size, no structure).

    Scored with the same metrics as the masks themselves, it shows what a method's masks add beyond their size:
    a mask of mean 0.9 keeps most of any input whatever its shape, so its AI/AD say little until compared with
    this reference. The reference is taken per clip (not one constant over the set) so that it keeps the
    per-clip variation of the mask size (e.g. LMAC-ZS's masks shrink with the audio-prompt similarity) and
    differs from the method only in where the mask puts its mass; it also needs no second pass over the data.

    Parameters
    ----------
    masks : torch.Tensor
        (batch, time, freq) masks.

    Returns
    -------
    torch.Tensor
        (batch, time, freq), each clip's mask mean everywhere.

    Examples
    --------
    >>> constant_mean_mask(torch.tensor([[[0.0, 1.0], [0.5, 0.5]], [[1.0, 1.0], [1.0, 0.6]]]))
    tensor([[[0.5000, 0.5000],
             [0.5000, 0.5000]],
    <BLANKLINE>
            [[0.9000, 0.9000],
             [0.9000, 0.9000]]])
    """
    return mask_mean(masks)[:, None, None].expand_as(masks).clone()
