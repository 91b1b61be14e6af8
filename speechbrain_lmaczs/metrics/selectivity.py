"""Prompt selectivity: how much a prompt's mask keeps its own source of a mixture rather than the other one.

It needs no ground-truth support, only the labels of the two mixed clips, so it applies to real data (the eval
recipe's ``mixture`` condition: clip a plus a contaminant clip b at ``snr_db``).
"""

import torch

from speechbrain_lmaczs.metrics._checks import _check_probabilities, _check_same_shape, _float_dtype


def prompt_selectivity(o_a, o_b, a, b):
    """Prompt selectivity (PS, higher is better), per clip, in percent.

    For a mixture x of a clip of class ``a`` and a contaminant clip of class ``b``, let ``M_a`` be the mask that
    explains a's class prompt and ``M_b`` the one that explains b's prompt, and ``o_a``, ``o_b`` the class
    probabilities (softmax over the class prompts) of the classifier on the masked mixtures ``M_a x`` and
    ``M_b x`` (masked as the masking domain masks). Then

        PS = 100 * [ (o_a[a] - o_a[b]) + (o_b[b] - o_b[a]) ] / 2,

    the mean over the two prompts of how much more the prompt's masked audio is classified as the prompt's own
    class than as the other source's class. It lies in [-100, 100]; an all-ones mask (the mixture itself) gives
    exactly 0 (``o_a = o_b``), so PS > 0 means the masks separate the sources in the classifier's eyes, and PS < 0
    that each prompt's mask keeps the OTHER source better. Undefined (NaN) when both clips have the same class.

    Parameters
    ----------
    o_a, o_b : torch.Tensor
        (batch, n_classes) probabilities of the mixture masked for a's prompt and for b's prompt.
    a, b : torch.Tensor
        (batch,) class indices of the clip and of its contaminant.

    Returns
    -------
    torch.Tensor
        (batch,) values in [-100, 100], NaN where ``a == b``.

    Examples
    --------
    >>> o_a = torch.tensor([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    >>> o_b = torch.tensor([[0.2, 0.5, 0.3], [0.2, 0.2, 0.6]])
    >>> [round(v, 4) for v in prompt_selectivity(o_a, o_b, torch.tensor([0, 2]), torch.tensor([1, 2])).tolist()]
    [30.0, nan]
    """
    o_a = _check_probabilities("o_a", o_a)
    o_b = _check_probabilities("o_b", o_b)
    _check_same_shape("o_a", o_a, "o_b", o_b)
    a = torch.as_tensor(a, device=o_a.device).long().reshape(-1)
    b = torch.as_tensor(b, device=o_a.device).long().reshape(-1)
    if a.numel() != o_a.shape[0] or b.numel() != o_a.shape[0]:
        raise ValueError(f"a and b need one class index per clip ({o_a.shape[0]}), got {a.numel()} and {b.numel()}.")
    if min(int(a.min()), int(b.min())) < 0 or max(int(a.max()), int(b.max())) >= o_a.shape[1]:
        raise ValueError(f"Class indices must lie in [0, {o_a.shape[1]}), got a={a.tolist()}, b={b.tolist()}.")

    def at(probs, index):
        return probs.gather(1, index[:, None])[:, 0]

    values = 100.0 * ((at(o_a, a) - at(o_a, b)) + (at(o_b, b) - at(o_b, a))) / 2.0
    return torch.where(a == b, torch.nan, values).to(_float_dtype(o_a))
