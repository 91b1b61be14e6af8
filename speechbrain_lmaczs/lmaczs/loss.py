"""The zero-shot loss of LMAC-ZS (paper, Eq. 6 and 7)."""

import torch


def grid_pairs(batch_size, pairs_per_clip=None, device=None):
    """(text, audio) index pairs the loss is computed on, as a (P, 2) LongTensor.

    ``pairs_per_clip=None`` (or >= B) gives the paper's full B x B grid. A smaller k pairs each audio j with its own
    text and the k - 1 next ones (j+1, ..., j+k-1 modulo B): k masked encoder passes per clip instead of B, which is
    what makes large batches affordable. k = 1 leaves no pair for the diversity term D.

    >>> grid_pairs(3, 2).tolist()
    [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [0, 2]]
    >>> len(grid_pairs(3))
    9
    """
    k = batch_size if pairs_per_clip is None else max(1, min(int(pairs_per_clip), batch_size))
    audio = torch.arange(batch_size, device=device).repeat_interleave(k)
    text = (audio + torch.arange(k, device=device).repeat(batch_size)) % batch_size
    return torch.stack([text, audio], dim=1)


def own_pair_rows(pairs, batch_size):
    """For each clip j, the row of ``pairs`` that pairs it with its own caption (text j, audio j), -1 where none.

    >>> own_pair_rows(grid_pairs(3, 2), 3).tolist()
    [0, 2, 4]
    >>> own_pair_rows(torch.tensor([[1, 0], [0, 1]]), 2).tolist()
    [-1, -1]
    """
    own = torch.full((batch_size,), -1, dtype=torch.long, device=pairs.device)
    is_own = pairs[:, 0] == pairs[:, 1]
    own[pairs[is_own, 1]] = torch.nonzero(is_own).squeeze(1)
    return own


def zero_shot_loss(
    text, audio, masked_audio, masks, lambda_reg, lambda_div, pairs=None, at_least=False, own_embedding=False
):
    """L_ZS over a batch of B text/audio pairs.

    With t_i the text embeddings, a_j = f_audio(X_j) and a'_ij = f_audio(M_ij * X_j) (mask of text i on audio j),
    all L2-normalised::

        C_ij  = t_i . a_j                                    (no gradient)
        L_sim = sum_ij | C_ij - t_i . a'_ij |
        L_reg = lambda_reg * sum_ij mean(M_ij)              (L1 of the mask, averaged over its elements)
        D_i   = sum_{j != i} | t_i . t_j - a'_ii . a'_ji |
        L_ZS  = L_sim + L_reg + lambda_div * sum_i D_i

    The sums run over the full grid (the paper) or over the pairs given in ``pairs`` (see :func:`grid_pairs`);
    D_i then only has the terms whose two masked versions of audio i were computed.

    With ``at_least`` (not the paper) L_sim only charges a masked clip that matches its prompt LESS than the whole
    clip does: ``sum_ij max(0, C_ij - t_i . a'_ij)``. The paper's ``| . |`` also charges a mask that matches its
    prompt better than the clip, which is what a prompt-specific mask does on a clip whose other events dilute the
    prompt's similarity: the paper's L_sim then prefers a mask that keeps every event.

    With ``own_embedding`` (not the paper) an own pair (i = j: a clip and its own caption) is charged
    ``1 - a_j . a'_jj`` instead: the clip masked for its own caption must keep the clip's whole embedding, not
    only its projection on the caption, which an attenuated or partial event already keeps. Cross pairs keep the
    paper's term (or the one-sided one).

    Parameters
    ----------
    text : torch.Tensor
        (B, D) normalised text embeddings.
    audio : torch.Tensor
        (B, D) normalised embeddings of the unmasked audio.
    masked_audio : torch.Tensor
        Normalised embeddings of the masked audio: (B, B, D) with ``masked_audio[i, j]`` = audio j under the mask of
        text i, or (P, D) in the order of ``pairs``.
    masks : torch.Tensor
        Masks in [0, 1] indexed like ``masked_audio``: (B, B, time, freq) or (P, time, freq).
    lambda_reg, lambda_div : float
        Weights of the mask regularisation and of the prompt-diversity term D.
    pairs : torch.LongTensor, optional
        (P, 2) (text index, audio index) of each computed pair; None means the full grid.
    at_least : bool
        One-sided L_sim (see above); False is the paper's.
    own_embedding : bool
        Own pairs match the clip's embedding (see above); False is the paper's.

    Returns
    -------
    dict
        ``loss`` (the total) and its parts ``sim``, ``reg``, ``div`` (unweighted sum of D_i), all 0-d tensors.

    Example
    -------
    >>> t = torch.eye(2)
    >>> a = torch.eye(2)
    >>> out = zero_shot_loss(t, a, a.expand(2, 2, 2), torch.ones(2, 2, 3, 3), 0.5, 1.0)
    >>> [round(float(out[k]), 4) for k in ("sim", "reg", "div", "loss")]
    [0.0, 4.0, 2.0, 4.0]
    """
    b = text.shape[0]
    if text.dim() != 2 or audio.shape != text.shape:
        raise ValueError(f"zero_shot_loss expects text and audio of shape (B, D); got {tuple(text.shape)}, "
                         f"{tuple(audio.shape)}.")
    if pairs is None:
        if masked_audio.dim() != 3 or masked_audio.shape[:2] != (b, b) or masks.dim() != 4 or masks.shape[:2] != (b, b):
            raise ValueError(
                "zero_shot_loss expects masked_audio (B,B,D) and masks (B,B,T,F) for the full grid; got "
                f"{tuple(masked_audio.shape)} and {tuple(masks.shape)}."
            )
        # row-major over (text, audio), as reshape flattens the grid
        idx = torch.arange(b, device=text.device)
        pairs = torch.stack([idx.repeat_interleave(b), idx.repeat(b)], dim=1)
        masked_audio, masks = masked_audio.reshape(b * b, -1), masks.reshape(b * b, *masks.shape[2:])
    elif masked_audio.dim() != 2 or masks.dim() != 3 or not len(pairs) == len(masked_audio) == len(masks):
        raise ValueError(
            "zero_shot_loss expects masked_audio (P,D) and masks (P,T,F) in the order of pairs (P,2); got "
            f"{tuple(masked_audio.shape)}, {tuple(masks.shape)} and {tuple(pairs.shape)}."
        )
    ti, aj = pairs[:, 0], pairs[:, 1]
    with torch.no_grad():
        target = (text[ti] * audio[aj]).sum(-1)  # C_ij
    gap = target - (text[ti] * masked_audio).sum(-1)
    per_pair = gap.clamp_min(0.0) if at_least else gap.abs()
    if own_embedding:
        per_pair = torch.where(ti == aj, 1.0 - (audio[aj].detach() * masked_audio).sum(-1), per_pair)
    sim = per_pair.sum()
    reg = masks.flatten(1).mean(dim=-1).sum()

    # D: a pair (text j, audio i) with j != i meets the own pair (text i, audio i) of the same audio.
    own = own_pair_rows(pairs, b)
    cross = (ti != aj) & (own[aj] >= 0)
    if cross.any():
        other = torch.nonzero(cross).squeeze(1)
        mine = own[aj[other]]
        text_sim = (text[aj[other]] * text[ti[other]]).sum(-1)  # t_i . t_j
        masked_sim = (masked_audio[mine] * masked_audio[other]).sum(-1)  # a'_ii . a'_ji
        div = (text_sim - masked_sim).abs().sum()
    else:
        div = masked_audio.new_zeros(())

    loss = sim + lambda_reg * reg + lambda_div * div
    return {"loss": loss, "sim": sim, "reg": reg, "div": div}


#: what the masked mixture is matched to by :func:`mixture_consistency`
EMBEDDING_TARGETS = ("similarity", "embedding", "both_prompts", "contrast")
#: every ``mix_target``: the embedding targets, and ``mask`` (:func:`mask_transfer`: the mask itself is the target)
MIX_TARGETS = EMBEDDING_TARGETS + ("mask",)

#: temperature of the ``contrast`` target: the term saturates once the own prompt leads by a few tenths of cosine
CONTRAST_TEMPERATURE = 0.1


def mix_pairs(batch_size, device=None):
    """Sources of the mixtures formed from a batch: clip 2k with clip 2k + 1, as a (B // 2, 2) LongTensor.

    Each clip is a source of one mixture (an odd last clip of none), so the mixture terms cost one encoder pass
    per mixture and one masked pass per (mixture, source) pair: B masked passes per batch.

    >>> mix_pairs(5).tolist()
    [[0, 1], [2, 3]]
    """
    first = torch.arange(0, batch_size - 1, 2, device=device)
    return torch.stack([first, first + 1], dim=1)


def mixture_consistency(text, target_audio, masked_audio, target="similarity", other_text=None, at_least=False):
    """Sum over N rows of how far a masked mixture is from a target clip, as seen from a prompt.

    With t the prompt's text embedding, a the (normalised) embedding of the target clip and a' that of the masked
    mixture::

        similarity:  | t . a - t . a' |      (the paper's L_sim, with the clean source as the target)
        embedding:   1 - a . a'               (the whole embedding, not only its projection on t)
        both_prompts: | t . a - t . a' | + | u . a - u . a' |   (u: the other source's prompt, ``other_text``)
        contrast:    tau * softplus(-(t . a' - u . a') / tau)   (tau = CONTRAST_TEMPERATURE; no clean target)

    ``contrast`` is the two-prompt cross-entropy of the masked mixture (scaled by tau): it asks only that the masked
    mixture favour its own source's prompt over the other source's, a target that selecting bins can reach, and
    its gradient fades once it does.

    With ``at_least`` the similarity terms are one-sided: ``max(0, t . a - t . a')`` (the masked mixture matches
    the prompt at least as well as the clean source) and ``max(0, u . a' - u . a)`` (it matches the other source's
    prompt at most as well as the clean source).

    Mix-consistency uses it with the mixture masked by source s's prompt and s's clean clip as the target: a mask
    that keeps the other source too no longer costs nothing. With the mixture masked by the complement of s's mask
    and the OTHER source's clip as the target, it asks that what the mask leaves out is the other source.

    Parameters
    ----------
    text : torch.Tensor
        (N, D) normalised prompt embeddings (used by ``"similarity"``).
    target_audio : torch.Tensor
        (N, D) normalised embeddings of the target clips (no gradient flows to them).
    masked_audio : torch.Tensor
        (N, D) normalised embeddings of the masked mixtures.
    target : str
        ``"similarity"`` or ``"embedding"``.

    Returns
    -------
    torch.Tensor
        0-d sum over the rows.

    Example
    -------
    >>> t = torch.tensor([[1.0, 0.0]])
    >>> clean, masked = torch.tensor([[0.6, 0.8]]), torch.tensor([[0.8, 0.6]])
    >>> round(float(mixture_consistency(t, clean, masked)), 4), round(float(mixture_consistency(t, clean, masked, "embedding")), 4)
    (0.2, 0.04)
    """
    if target not in EMBEDDING_TARGETS:
        raise ValueError(f"mixture_consistency: target must be one of {EMBEDDING_TARGETS}, got {target!r}.")
    target_audio = target_audio.detach()
    if target in ("both_prompts", "contrast") and other_text is None:
        raise ValueError(f"mixture_consistency: target {target!r} needs other_text.")
    if target == "contrast":
        margin = (text * masked_audio).sum(-1) - (other_text * masked_audio).sum(-1)
        return (CONTRAST_TEMPERATURE * torch.nn.functional.softplus(-margin / CONTRAST_TEMPERATURE)).sum()
    if target in ("similarity", "both_prompts"):
        gap = (text * target_audio).sum(-1) - (text * masked_audio).sum(-1)
        out = (gap.clamp_min(0.0) if at_least else gap.abs()).sum()
        if target == "both_prompts":
            gap = (other_text * masked_audio).sum(-1) - (other_text * target_audio).sum(-1)
            out = out + (gap.clamp_min(0.0) if at_least else gap.abs()).sum()
        return out
    return (1.0 - (target_audio * masked_audio).sum(-1)).sum()


def deletion(text, deleted_audio, absent_audio):
    """Sum over N clips of how much a clip with its mask's bins REMOVED still matches the clip's own prompt, beyond
    what the clip with every bin removed does.

    With t the prompt's text embedding, a_del the (normalised) embedding of the clip masked by 1 - M (what the
    mask leaves out) and a_0 that of the clip masked by 0 (the masking domain's "absent" everywhere)::

        term = max(0, t . a_del - t . a_0)

    It is the deletion side of a mask: a mask that keeps only an event's most telling part leaves the rest of the
    event, which still matches the prompt, in its complement. The term is 0 once what is left out matches the
    prompt no better than nothing; the L1 term keeps the mask from growing beyond that.

    >>> t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    >>> left_out = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    >>> nothing = torch.tensor([[0.2, 0.98], [0.2, 0.98]])
    >>> round(float(deletion(t, left_out, nothing)), 4)  # 0.4 for the first clip, 0 for the second
    0.4
    """
    gap = (text * deleted_audio).sum(-1) - (text * absent_audio.detach()).sum(-1)
    return gap.clamp_min(0.0).sum()


def mask_overlap(mask_a, mask_b):
    """Sum over N mask pairs of the mean of their product: the share of the grid both masks keep.

    Two prompts' masks on the same mixture should keep different events; the product is 0 wherever one of them
    removes, and its gradient on each mask is the other mask, which (unlike D) does not vanish when the two masks
    are equal.

    >>> a = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    >>> b = torch.tensor([[[0.5, 0.0, 1.0, 0.0]]])
    >>> float(mask_overlap(a, b))
    0.125
    """
    return (mask_a * mask_b).flatten(1).mean(-1).sum()


def ratio_mask(power, other_power):
    """Each bin's share of one source in the mixture of two, ``P / (P + P_other)`` (the *ideal ratio mask* of source
    separation; 1/2 where both are silent), from the two sources' representations as power.

    >>> ratio_mask(torch.tensor([3.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 1.0])).tolist()
    [0.75, 0.5, 0.5]
    """
    total = power + other_power
    return torch.where(total > 0, power / total.clamp_min(torch.finfo(total.dtype).tiny), torch.full_like(total, 0.5))


def mask_transfer(mix_logits, source_masks, other_masks, share):
    """Sum over N rows of a weighted binary cross-entropy between a mask on a two-source mixture and the mask it
    should be.

    A prompt that matches one source of a mixture should keep, in the mixture, what its mask keeps of that source
    alone, in the bins that source dominates, and nothing of what the other source's own mask keeps. With ``M_s``
    the mask of source s's prompt on s alone, ``M_o`` that of the other source's prompt on the other source alone
    (both without gradient) and ``r_s`` s's share of each bin of the mixture (:func:`ratio_mask`)::

        target  y = M_s * r_s                         (what the prompt keeps of its own source)
        weight  w = M_s * r_s + M_o * (1 - r_s)       (what either prompt keeps of the mixture)
        term      = sum_bins w * BCE(sigmoid(logits), y) / sum_bins w

    The weight puts the term on the bins either source's mask keeps: bins both masks remove (the background of a
    sparse scene, most of the grid) would otherwise drown the other source's event in the average. The gradient on
    the logits, ``w * (sigmoid(logits) - y)``, does not fade where the mask saturates (unlike a term on the masked
    embedding), and the term needs no masked encoder pass.

    Parameters
    ----------
    mix_logits : torch.Tensor
        (N, time, freq) logits of the masks on the mixtures.
    source_masks : torch.Tensor
        (N, time, freq) masks in [0, 1] of the same prompts on their own source alone.
    other_masks : torch.Tensor
        (N, time, freq) masks of the other source's prompt on the other source alone.
    share : torch.Tensor
        (N, time, freq) the prompt's source's share of each bin of the mixture, in [0, 1].

    Returns
    -------
    torch.Tensor
        0-d sum over the rows.

    Example
    -------
    >>> logits = torch.zeros(1, 1, 3)                # masks of 1/2 on the mixture
    >>> own = torch.tensor([[[1.0, 0.0, 0.0]]])      # the source's own mask keeps the first bin
    >>> other = torch.tensor([[[0.0, 1.0, 0.0]]])    # the other source's keeps the second; neither the third
    >>> share = torch.tensor([[[1.0, 0.0, 0.5]]])
    >>> round(float(mask_transfer(logits, own, other, share)), 4)  # log 2 on the two weighted bins
    0.6931
    """
    share = share.detach()
    target = (source_masks.detach() * share).clamp(0.0, 1.0)
    weight = target + other_masks.detach() * (1.0 - share)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(mix_logits, target, reduction="none")
    return ((weight * bce).flatten(1).sum(-1) / weight.flatten(1).sum(-1).clamp_min(1e-6)).sum()
