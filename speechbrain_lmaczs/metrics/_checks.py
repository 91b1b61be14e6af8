"""Validation shared by the metrics: probabilities, targets and masks are checked on entry, with clear messages."""

import torch

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



def _check_pair(p, other, other_name, target=None):
    """``p`` and a second probability tensor checked and of one shape, and the explained class per clip."""
    p, other = _check_probabilities("p", p), _check_probabilities(other_name, other)
    _check_same_shape("p", p, other_name, other)
    return p, other, _resolve_target(p, target)
