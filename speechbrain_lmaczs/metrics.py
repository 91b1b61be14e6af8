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

import logging
import math

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

#: Column names of :func:`faithfulness_metrics`, in table order.
METRIC_NAMES = ("AI", "AD", "AG", "FF", "Fid-In", "SPS", "COMP", "MM")

#: Added to ``|M|`` before the Gini index, as in the reference definition (keeps an all-zero mask defined).
GINI_EPS = 1e-7

# Tolerances of the "these are probabilities" check: loose enough for float16 softmax outputs, tight enough to
# catch logits passed by mistake.
_PROB_RANGE_TOL = 1e-4
_PROB_SUM_TOL = 1e-2


def _float_dtype(tensor):
    """float64 stays float64; every other dtype is computed in float32 (float16 loses too much for COMP)."""
    return torch.float64 if tensor.dtype == torch.float64 else torch.float32


def _check_probabilities(name, probs):
    """Probabilities as (batch, n_classes); raises on logits passed by mistake. NaNs pass (see module doc)."""
    if not torch.is_tensor(probs):
        raise TypeError(f"{name} must be a torch.Tensor of probabilities, got {type(probs).__name__}.")
    if probs.dim() != 2:
        raise ValueError(f"{name} must be (batch, n_classes) probabilities, got shape {tuple(probs.shape)}.")
    probs = probs.detach().to(_float_dtype(probs))
    finite = torch.isfinite(probs)
    values = probs[finite]
    if values.numel() and (values.min() < -_PROB_RANGE_TOL or values.max() > 1 + _PROB_RANGE_TOL):
        raise ValueError(
            f"{name} holds values outside [0, 1]: pass softmax probabilities, not logits "
            "(apply torch.softmax(logits, dim=-1) first)."
        )
    sums = probs.sum(dim=-1)
    if (finite.all(dim=-1) & ((sums - 1).abs() > _PROB_SUM_TOL)).any():
        raise ValueError(f"{name} rows must sum to 1 (softmax over the class prompts); got sums {sums.tolist()}.")
    return probs


def _check_same_shape(reference_name, reference, name, other):
    if other.shape != reference.shape:
        raise ValueError(
            f"{name} has shape {tuple(other.shape)} but {reference_name} has {tuple(reference.shape)}: "
            "both must be (batch, n_classes) over the same prompts."
        )


def _resolve_target(p, target):
    """The explained class per clip: ``argmax p`` when ``target`` is None, else the validated ``target``."""
    if target is None:
        return p.argmax(dim=-1)
    target = torch.as_tensor(target, device=p.device)
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}.")
    target = target.reshape(-1).long()
    if target.numel() != p.shape[0]:
        raise ValueError(f"target has {target.numel()} entries for a batch of {p.shape[0]} clips.")
    if target.numel() and (target.min() < 0 or target.max() >= p.shape[-1]):
        raise ValueError(f"target indices must lie in [0, {p.shape[-1]}), got {target.tolist()}.")
    return target


def _at_target(probs, target):
    return probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)


def _nan_where_undefined(values, *inputs):
    """NaN wherever an input is NaN: comparisons and guarded divisions would otherwise turn it into a score."""
    broken = torch.zeros_like(values, dtype=torch.bool)
    for tensor in inputs:
        broken |= torch.isnan(tensor)
    return torch.where(broken, torch.nan, values)


def _check_masks(masks):
    if not torch.is_tensor(masks):
        raise TypeError(f"masks must be a torch.Tensor, got {type(masks).__name__}.")
    if masks.dim() != 3:
        raise ValueError(f"masks must be (batch, time, freq), got shape {tuple(masks.shape)}.")
    if masks.shape[1] * masks.shape[2] == 0:
        raise ValueError(f"masks must have at least one time-frequency bin, got shape {tuple(masks.shape)}.")
    return masks.detach()


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
    p, o = _check_probabilities("p", p), _check_probabilities("o", o)
    _check_same_shape("p", p, "o", o)
    target = _resolve_target(p, target)
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
    p, o = _check_probabilities("p", p), _check_probabilities("o", o)
    _check_same_shape("p", p, "o", o)
    target = _resolve_target(p, target)
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
    p, o = _check_probabilities("p", p), _check_probabilities("o", o)
    _check_same_shape("p", p, "o", o)
    target = _resolve_target(p, target)
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
    p, q = _check_probabilities("p", p), _check_probabilities("q", q)
    _check_same_shape("p", p, "q", q)
    target = _resolve_target(p, target)
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
    p, o = _check_probabilities("p", p), _check_probabilities("o", o)
    _check_same_shape("p", p, "o", o)
    same = (p.argmax(dim=-1) == o.argmax(dim=-1)).to(p.dtype)
    # argmax of a row with NaN is arbitrary: report the clip as non-finite rather than as a (mis)match.
    broken = torch.isnan(p).any(dim=-1) | torch.isnan(o).any(dim=-1)
    return torch.where(broken, torch.nan, same)


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


#: Column names of :func:`localisation_metrics`.
LOCALISATION_NAMES = ("IoU", "pointing")


def _check_supports(masks, supports):
    masks = _check_masks(masks)
    if supports.shape != masks.shape:
        raise ValueError(f"supports {tuple(supports.shape)} must have the masks' shape {tuple(masks.shape)}.")
    return masks, supports.bool()


def localisation_iou(masks, supports):
    """IoU between the top-k% of each mask and the ground-truth support, k = the support's share of the grid.

    The mask's ``n_support`` largest bins (ties broken by position) form the predicted region, so a method is not
    rewarded for its overall scale, only for where it puts its largest values. An empty support scores NaN (there
    is nothing to localise; the accumulator counts it).

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
    >>> localisation_iou(m, torch.tensor([[[True, False], [False, False]]])).tolist()
    [1.0]
    >>> localisation_iou(m, torch.tensor([[[False, True], [True, False]]])).tolist()  # top-2 = first row
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


def localisation_metrics(masks, supports):
    """Both localisation metrics, as a dict with keys :data:`LOCALISATION_NAMES`."""
    return {"IoU": localisation_iou(masks, supports), "pointing": pointing_game(masks, supports)}


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


class MetricAccumulator:
    """Streaming per-clip means in constant memory, with explicit handling of non-finite values.

    Running sums are kept in float64 per metric, so memory does not grow with the number of clips. Per-clip
    rows can be written as they arrive (e.g. to a ``csv.DictWriter`` for ``per_clip.csv``), so masks never need
    to be stored.

    Non-finite values (NaN, +-inf) never enter a mean silently. With ``on_nonfinite="count"`` (default) they are
    left out of that metric's mean, counted per metric (:attr:`nonfinite_counts`, and ``"n_nonfinite"`` in the
    summary: the clips with at least one non-finite metric) and logged as a warning; per-clip rows keep them
    (written as ``nan``/``inf``). With ``on_nonfinite="raise"`` the update raises ``FloatingPointError`` before
    anything of that batch is accumulated.

    Parameters
    ----------
    names : sequence of str, optional
        Metric names to accumulate; taken from the first update if None. Every update must give exactly these.
    on_nonfinite : {"count", "raise"}
        Policy for non-finite per-clip values (see above).
    row_writer : object, optional
        Anything with ``writerow(dict)`` (e.g. ``csv.DictWriter`` whose fieldnames are the ``extra`` columns
        followed by the metric names); one row per clip is written at each update.

    Examples
    --------
    >>> acc = MetricAccumulator()
    >>> acc.update({"AI": torch.tensor([100.0, 0.0]), "MM": torch.tensor([0.2, 0.4])})
    >>> acc.update({"AI": torch.tensor([100.0]), "MM": torch.tensor([float("nan")])})
    >>> summary = acc.summary()
    >>> round(summary["AI"], 3), round(summary["MM"], 3), summary["n"], summary["n_nonfinite"]
    (66.667, 0.3, 3, 1)
    """

    POLICIES = ("count", "raise")

    def __init__(self, names=None, on_nonfinite="count", row_writer=None):
        if on_nonfinite not in self.POLICIES:
            raise ValueError(f"on_nonfinite must be one of {self.POLICIES}, got {on_nonfinite!r}.")
        self.names = tuple(names) if names is not None else None
        self.on_nonfinite = on_nonfinite
        self.row_writer = row_writer
        self.n = 0
        self.n_nonfinite = 0
        self._sums = {}
        self._finite_counts = {}
        self.nonfinite_counts = {}
        if self.names is not None:
            self._init_names(self.names)

    def _init_names(self, names):
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"Metric names must be unique and non-empty, got {names}.")
        self.names = tuple(names)
        self._sums = {name: 0.0 for name in self.names}
        self._finite_counts = {name: 0 for name in self.names}
        self.nonfinite_counts = {name: 0 for name in self.names}

    def _as_columns(self, values):
        if self.names is None:
            self._init_names(tuple(values))
        if set(values) != set(self.names):
            raise KeyError(f"update() got metrics {sorted(values)} but this accumulator holds {list(self.names)}.")
        columns = {}
        size = None
        for name in self.names:
            column = torch.as_tensor(values[name]).detach().reshape(-1).to("cpu", torch.float64)
            if size is not None and column.numel() != size:
                raise ValueError(f"Metric {name!r} has {column.numel()} clips, others have {size}.")
            size = column.numel()
            columns[name] = column
        return columns, size

    def update(self, values, extra=None):
        """Add one batch of per-clip values.

        Parameters
        ----------
        values : dict of str to torch.Tensor
            Metric name -> (batch,) per-clip values (e.g. the output of :func:`faithfulness_metrics`).
        extra : dict of str to sequence, optional
            Per-clip columns written to ``row_writer`` before the metrics (e.g. clip id, label); not averaged.
        """
        columns, size = self._as_columns(values)
        extra_columns = {}
        for key, column in (extra or {}).items():
            column = column.tolist() if torch.is_tensor(column) else list(column)
            if len(column) != size:
                raise ValueError(f"extra column {key!r} has {len(column)} entries for {size} clips.")
            extra_columns[key] = column
        finite = {name: torch.isfinite(column) for name, column in columns.items()}
        bad_clips = ~torch.stack(list(finite.values())).all(dim=0) if size else torch.zeros(0, dtype=torch.bool)
        if bad_clips.any():
            bad = {name: int((~mask).sum()) for name, mask in finite.items() if not mask.all()}
            if self.on_nonfinite == "raise":
                raise FloatingPointError(
                    f"Non-finite metric values in clips {bad_clips.nonzero().flatten().tolist()} of this batch: "
                    f"{bad}. Check the masks and probabilities of those clips."
                )
            logger.warning("Non-finite metric values left out of the means (per metric, this batch): %s", bad)
        for name, column in columns.items():
            ok = finite[name]
            self._sums[name] += float(column[ok].sum())
            self._finite_counts[name] += int(ok.sum())
            self.nonfinite_counts[name] += int((~ok).sum())
        self.n += size
        self.n_nonfinite += int(bad_clips.sum())
        if self.row_writer is not None:
            for i in range(size):
                row = {key: column[i] for key, column in extra_columns.items()}
                row.update({name: float(columns[name][i]) for name in self.names})
                self.row_writer.writerow(row)

    def summary(self):
        """Means over the finite values of each metric, plus ``"n"`` (clips) and ``"n_nonfinite"``.

        A metric with no finite value at all has mean NaN, with a logged warning.

        Returns
        -------
        dict
            Metric name -> mean (float), ``"n"`` -> int, ``"n_nonfinite"`` -> int.
        """
        if self.n == 0:
            raise ValueError("summary() called before any clip was added with update().")
        if self.n_nonfinite:
            logger.warning(
                "%d of %d clips had non-finite metric values, left out of the means: %s",
                self.n_nonfinite,
                self.n,
                {name: count for name, count in self.nonfinite_counts.items() if count},
            )
        means = {}
        for name in self.names:
            count = self._finite_counts[name]
            if count == 0:
                logger.warning("Metric %s has no finite value over %d clips; its mean is NaN.", name, self.n)
            means[name] = self._sums[name] / count if count else math.nan
        means["n"] = self.n
        means["n_nonfinite"] = self.n_nonfinite
        return means
