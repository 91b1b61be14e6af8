"""The zero-shot loss of LMAC-ZS (paper, Eq. 6 and 7)."""

import torch


def zero_shot_loss(text, audio, masked_audio, masks, lambda_reg, lambda_div):
    """L_ZS over a batch of B text/audio pairs.

    With t_i the text embeddings, a_j = f_audio(X_j) and a'_ij = f_audio(M_ij * X_j) (mask of text i on audio j),
    all L2-normalised::

        C_ij  = t_i . a_j                                    (no gradient)
        L_sim = sum_ij | C_ij - t_i . a'_ij |
        L_reg = lambda_reg * sum_ij mean(M_ij)              (L1 of the mask, averaged over its elements)
        D_i   = sum_{j != i} | t_i . t_j - a'_ii . a'_ji |
        L_ZS  = L_sim + L_reg + lambda_div * sum_i D_i

    Parameters
    ----------
    text : torch.Tensor
        (B, D) normalised text embeddings.
    audio : torch.Tensor
        (B, D) normalised embeddings of the unmasked audio.
    masked_audio : torch.Tensor
        (B, B, D) normalised embeddings of the masked audio; ``masked_audio[i, j]`` is audio j under the mask of
        text i.
    masks : torch.Tensor
        (B, B, time, freq) masks in [0, 1], indexed like ``masked_audio``.
    lambda_reg, lambda_div : float
        Weights of the mask regularisation and of the prompt-diversity term D.

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
    shapes_ok = text.dim() == 2 and audio.shape == text.shape and masked_audio.dim() == 3 and masks.dim() == 4
    if not shapes_ok or masked_audio.shape[:2] != (b, b) or masks.shape[:2] != (b, b):
        raise ValueError(
            "zero_shot_loss expects text (B,D), audio (B,D), masked_audio (B,B,D) and masks (B,B,T,F); got "
            f"{tuple(text.shape)}, {tuple(audio.shape)}, {tuple(masked_audio.shape)}, {tuple(masks.shape)}."
        )
    with torch.no_grad():
        target = text @ audio.T  # C_ij
    masked_sim = torch.einsum("id,ijd->ij", text, masked_audio)
    sim = (target - masked_sim).abs().sum()
    reg = masks.flatten(2).mean(dim=-1).sum()

    # D_i: for audio i, compare a'_ii (own prompt) with a'_ji (prompt j) against t_i . t_j.
    text_sim = text @ text.T  # (i, j)
    own = masked_audio.diagonal(dim1=0, dim2=1).T  # (B, D): own[i] = a'_ii
    # cross[i, j] = a'_ii . a'_ji  (masked_audio[j, i] is audio i under the mask of text j)
    cross = torch.einsum("id,jid->ij", own, masked_audio)
    off_diag = ~torch.eye(b, dtype=torch.bool, device=text.device)
    div = (text_sim - cross).abs()[off_diag].sum()

    loss = sim + lambda_reg * reg + lambda_div * div
    return {"loss": loss, "sim": sim, "reg": reg, "div": div}
