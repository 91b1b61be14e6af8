"""Targets of an explanation: which score of which clip is explained.

Every interpreter explains a scalar score per clip, ``scale * cos(audio embedding, text embedding)``, where the
text is either one of the classifier's class prompts (a class index, or the predicted class) or any prompt the
user writes. :func:`resolve_targets` turns every accepted form of ``target`` into one :class:`Targets` object, so
that the gradient methods (captum), the library CAMs (pytorch-grad-cam) and the perturbation CAMs all explain the
same number:

- ``targets.scorer`` maps a representation (batch, time, freq) to scores against the K distinct target texts,
  shape (batch, K); for class targets these are exactly the classifier's logits;
- ``targets.index`` (batch,) says which column is each clip's target (captum's ``target=``);
- ``targets.callables()`` gives one callable per clip in the pytorch-grad-cam style (a row of scores -> scalar).
"""

import numbers

import torch
from torch import nn

from speechbrain_lmaczs.classifier import ZeroShotClassifier

TARGET_FORMS = "None (the predicted class), an int, a LongTensor of shape (batch,), a prompt or a list of prompts"


def check_inputs(inputs):
    """Validate a batch of representations and return it detached.

    Parameters
    ----------
    inputs : torch.Tensor
        Floating tensor of shape (batch, time, freq), finite.

    Returns
    -------
    torch.Tensor
        ``inputs`` detached from any graph.

    Example
    -------
    >>> check_inputs(torch.zeros(2, 5, 4)).shape
    torch.Size([2, 5, 4])
    >>> check_inputs(torch.zeros(5, 4))
    Traceback (most recent call last):
    ...
    ValueError: Expected inputs of shape (batch, time, freq), got (5, 4); for one clip use x[None].
    """
    if not torch.is_tensor(inputs):
        raise TypeError(f"inputs must be a torch.Tensor of shape (batch, time, freq), got {type(inputs).__name__}.")
    if inputs.dim() != 3:
        hint = "; for one clip use x[None]" if inputs.dim() == 2 else ""
        hint = "; drop the channel axis with x[:, 0]" if inputs.dim() == 4 and inputs.shape[1] == 1 else hint
        raise ValueError(f"Expected inputs of shape (batch, time, freq), got {tuple(inputs.shape)}{hint}.")
    if inputs.numel() == 0:
        raise ValueError(f"inputs is empty (shape {tuple(inputs.shape)}).")
    if not inputs.is_floating_point():
        raise TypeError(f"inputs must be a floating tensor, got {inputs.dtype}.")
    if not torch.isfinite(inputs).all():
        raise ValueError(
            "inputs contain NaN or infinite values (often the log of a zero power): clamp the power before the log."
        )
    return inputs.detach()


class TargetScorer(nn.Module):
    """Scores of representations against a fixed set of text embeddings.

    ``forward(x)`` returns ``classifier.scale * cos(embed(x), text_k)``, shape (batch, K): the classifier's own
    temperature and audio path (including its ``to_logmel``), with other texts than its class prompts.

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier being explained.
    text_embeddings : torch.Tensor
        L2-normalised text embeddings, (K, dim).
    """

    def __init__(self, classifier, text_embeddings):
        super().__init__()
        self.classifier = classifier
        self.register_buffer("text_embeddings", text_embeddings, persistent=False)

    def forward(self, x):
        """(batch, time, freq) representation -> (batch, K) scores."""
        return self.classifier.scale * self.classifier.embed(x) @ self.text_embeddings.T


class TargetScore:
    """One clip's target as a pytorch-grad-cam style callable: a row of scores -> that target's score.

    Example
    -------
    >>> TargetScore(1)(torch.tensor([0.5, 2.0, -1.0]))
    tensor(2.)
    """

    def __init__(self, column):
        self.column = int(column)

    def __call__(self, scores):
        return scores[..., self.column]


class Targets:
    """A resolved target: the scorer, each clip's column in its output, and each clip's prompt.

    Parameters
    ----------
    scorer : TargetScorer
        Maps a representation to scores against the K distinct target texts.
    index : torch.LongTensor
        (batch,) column of each clip's target in the scorer's output.
    prompts : list of str
        The prompt each clip is explained for (for logging and reports).
    """

    def __init__(self, scorer, index, prompts):
        self.scorer = scorer
        self.index = index
        self.prompts = list(prompts)

    def __len__(self):
        return len(self.index)

    def text_embeddings(self):
        """(batch, dim) text embedding of each clip's target (what a text-conditioned decoder needs)."""
        return self.scorer.text_embeddings[self.index]

    def scores(self, x):
        """(batch,) target score of each clip of ``x`` (same batch as the targets)."""
        return self.scorer(x).gather(1, self.index[:, None].to(x.device))[:, 0]

    def callables(self):
        """One :class:`TargetScore` per clip, for pytorch-grad-cam."""
        return [TargetScore(column) for column in self.index.tolist()]


def resolve_targets(classifier, inputs, target=None):
    """Turn any accepted ``target`` into a :class:`Targets` for the clips ``inputs``.

    Parameters
    ----------
    classifier : ZeroShotClassifier
        The classifier being explained.
    inputs : torch.Tensor
        Checked representations, (batch, time, freq).
    target : None, int, torch.LongTensor, str or list of str
        None: each clip's predicted class (argmax of the classifier's logits). An int: that class prompt for every
        clip. A LongTensor (batch,): one class prompt per clip. A str: that prompt for every clip. A list of str:
        one prompt per clip. Prompts are embedded by the classifier's CLAP text encoder and scored as
        ``scale * cosine``, exactly like the class prompts.

    Returns
    -------
    Targets
    """
    if not isinstance(classifier, ZeroShotClassifier):
        raise TypeError(f"classifier must be a ZeroShotClassifier, got {type(classifier).__name__}.")
    batch = inputs.shape[0]
    device = classifier.text_embeddings.device
    if target is None:
        with torch.no_grad():
            index = classifier(inputs).argmax(dim=-1)
        return _class_targets(classifier, index.to(device))
    if isinstance(target, str) or _is_list_of(target, str):
        prompts = [target] * batch if isinstance(target, str) else list(target)
        if len(prompts) != batch:
            raise ValueError(f"Got {len(prompts)} prompts for {batch} clips: give one prompt per clip, or one str.")
        if any(not prompt.strip() for prompt in prompts):
            raise ValueError("Target prompts must be non-empty strings.")
        distinct = list(dict.fromkeys(prompts))
        with torch.no_grad():
            text = classifier.clap.encode_text(distinct).detach().to(device)
        index = torch.tensor([distinct.index(prompt) for prompt in prompts], device=device)
        return Targets(TargetScorer(classifier, text), index, prompts)
    return _class_targets(classifier, _class_index(target, batch, len(classifier.prompts)).to(device))


def _class_targets(classifier, index):
    prompts = [classifier.prompts[i] for i in index.tolist()]
    return Targets(TargetScorer(classifier, classifier.text_embeddings), index, prompts)


def _is_list_of(value, kind):
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(isinstance(v, kind) for v in value)


def _class_index(target, batch, n_prompts):
    """(batch,) LongTensor of class indices from an int, a sequence of ints or an integer tensor."""
    if isinstance(target, bool) or (torch.is_tensor(target) and target.dtype == torch.bool):
        raise TypeError(f"target must be {TARGET_FORMS}; got a boolean.")
    if isinstance(target, numbers.Integral):
        index = torch.full((batch,), int(target), dtype=torch.long)
    elif _is_list_of(target, numbers.Integral):
        index = torch.tensor([int(t) for t in target], dtype=torch.long)
    elif torch.is_tensor(target):
        if target.is_floating_point() or target.is_complex():
            raise TypeError(f"A target tensor must hold class indices (an integer dtype), got {target.dtype}.")
        index = target.detach().long().reshape(-1)
        if target.dim() == 0:
            index = index.expand(batch)
        elif target.dim() != 1:
            raise ValueError(f"A target tensor must have shape (batch,), got {tuple(target.shape)}.")
    else:
        raise TypeError(f"target must be {TARGET_FORMS}; got {type(target).__name__}.")
    if index.numel() != batch:
        raise ValueError(f"Got {index.numel()} target indices for {batch} clips.")
    if index.min() < 0 or index.max() >= n_prompts:
        raise ValueError(
            f"Target class indices must lie in [0, {n_prompts - 1}] (the classifier has {n_prompts} prompts), "
            f"got {index.tolist()}."
        )
    return index
