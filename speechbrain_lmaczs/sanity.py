"""Sanity checks of explanations, as reported in the LMAC-ZS paper.

- :func:`pearson_r` / :class:`PearsonAccumulator`: correlation between mask means and audio-prompt similarities
  (LMAC-ZS masks shrink when the prompt does not match the audio).
- :func:`ssim`: structural similarity between two explanation maps, to compare the explanations of a model with
  those of its randomised copies.
- :func:`cascading_randomization`: the cascading model-parameter randomisation test (Adebayo et al., 2018):
  copies of a model whose top ``k`` blocks are re-initialised.
"""

import copy
import logging
import math

import torch

logger = logging.getLogger(__name__)

#: SSIM stabilising constants of Wang et al. (2004): C1 = (K1 L)^2, C2 = (K2 L)^2 with L the data range.
SSIM_K1 = 0.01
SSIM_K2 = 0.03


class PearsonAccumulator:
    """Pearson correlation of paired scalars, streamed in constant memory.

    Batches are merged with the pairwise update of Chan et al. (means, sums of squared deviations and the
    co-moment), which stays accurate where the naive ``sum(xy) - n mean_x mean_y`` cancels.

    Examples
    --------
    >>> acc = PearsonAccumulator()
    >>> acc.update(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0]))
    >>> acc.update(torch.tensor([3.0]), torch.tensor([6.5]))
    >>> round(acc.value(), 4)
    0.9979
    """

    def __init__(self):
        self.n = 0
        self.mean_x = 0.0
        self.mean_y = 0.0
        self.m2_x = 0.0
        self.m2_y = 0.0
        self.co_moment = 0.0

    def update(self, x, y):
        """Add paired values ``x`` and ``y`` (any shape, same number of elements, all finite)."""
        x = torch.as_tensor(x).detach().reshape(-1).to("cpu", torch.float64)
        y = torch.as_tensor(y).detach().reshape(-1).to("cpu", torch.float64)
        if x.numel() != y.numel():
            raise ValueError(f"x and y must pair up: got {x.numel()} and {y.numel()} values.")
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            # A correlation over partly broken clips would mean something else than it says.
            raise ValueError("x and y must be finite; drop or fix the clips whose mask mean or similarity is NaN.")
        n_b = x.numel()
        if n_b == 0:
            return
        mean_xb, mean_yb = float(x.mean()), float(y.mean())
        m2_xb = float(((x - mean_xb) ** 2).sum())
        m2_yb = float(((y - mean_yb) ** 2).sum())
        co_b = float(((x - mean_xb) * (y - mean_yb)).sum())
        n_new = self.n + n_b
        dx, dy = mean_xb - self.mean_x, mean_yb - self.mean_y
        weight = self.n * n_b / n_new
        self.mean_x += dx * n_b / n_new
        self.mean_y += dy * n_b / n_new
        self.m2_x += m2_xb + dx * dx * weight
        self.m2_y += m2_yb + dy * dy * weight
        self.co_moment += co_b + dx * dy * weight
        self.n = n_new

    def value(self):
        """Pearson's r; NaN (with a logged warning) when fewer than 2 pairs or one side is constant."""
        if self.n < 2 or self.m2_x <= 0 or self.m2_y <= 0:
            logger.warning(
                "Pearson r is undefined over %d pairs with variances %.3g and %.3g; returning NaN.",
                self.n,
                self.m2_x,
                self.m2_y,
            )
            return math.nan
        r = self.co_moment / math.sqrt(self.m2_x * self.m2_y)
        # Rounding can push |r| a hair above 1.
        return max(-1.0, min(1.0, r))


def pearson_r(x, y):
    """Pearson correlation coefficient of paired values, e.g. mask means vs. audio-prompt similarities.

    Parameters
    ----------
    x, y : torch.Tensor or sequence of float
        Paired values, the same number of each, all finite.

    Returns
    -------
    float
        r in [-1, 1]; NaN (with a logged warning) when fewer than two pairs or one side is constant.

    Examples
    --------
    >>> pearson_r([1.0, 2.0, 3.0], [1.0, 3.0, 5.0])
    1.0
    >>> pearson_r([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    -1.0
    """
    acc = PearsonAccumulator()
    acc.update(x, y)
    return acc.value()


def _ssim_window(window_size, sigma):
    """Separable 1-D window of ``window_size`` weights summing to 1 (Gaussian, or uniform if sigma is None)."""
    if sigma is None:
        return torch.full((window_size,), 1.0 / window_size, dtype=torch.float64)
    offsets = torch.arange(window_size, dtype=torch.float64) - (window_size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _filter_valid(x, window):
    """Separable weighted average over every full window position of (batch, T, F) maps."""
    # unfold + matmul: a view and one small product per axis, far cheaper on CPU than float64 conv2d.
    size = window.numel()
    x = x.unfold(1, size, 1) @ window
    return x.unfold(2, size, 1) @ window


def ssim(a, b, window_size=11, sigma=1.5, data_range=1.0):
    """Mean structural similarity (SSIM) of two batches of explanation maps, per clip.

    SSIM of Wang et al. (2004) with ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, ``L = data_range``. Local
    statistics use a separable window of ``window_size`` bins along time and frequency: Gaussian with standard
    deviation ``sigma`` (the default 11 / 1.5 are Wang et al.'s, and scikit-image's ``gaussian_weights=True``),
    or uniform with ``sigma=None``, in which case (co)variances get the sample correction ``N / (N - 1)`` like
    scikit-image's default. The SSIM map is averaged over the window positions that fit entirely inside the map,
    which is scikit-image's border crop, so no padding convention is involved. Not differentiable on purpose
    (``torch.no_grad``): it is an evaluation measure.

    Parameters
    ----------
    a, b : torch.Tensor
        (batch, time, freq) maps on the same scale, e.g. masks in [0, 1].
    window_size : int
        Odd window length; time and frequency must both be at least this long.
    sigma : float or None
        Gaussian window standard deviation; None for a uniform window.
    data_range : float
        Value range L of the maps (1 for masks in [0, 1]).

    Returns
    -------
    torch.Tensor
        (batch,) SSIM values, 1 for identical maps, at most 1.

    Examples
    --------
    >>> x = torch.rand(2, 20, 16, generator=torch.Generator().manual_seed(0))
    >>> ssim(x, x).tolist()
    [1.0, 1.0]
    >>> bool((ssim(x, 1 - x) < 0).all())
    True
    """
    for name, maps in (("a", a), ("b", b)):
        if not torch.is_tensor(maps) or maps.dim() != 3:
            raise ValueError(f"{name} must be a (batch, time, freq) tensor, got {getattr(maps, 'shape', maps)}.")
    if a.shape != b.shape:
        raise ValueError(f"Maps to compare must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}.")
    if window_size < 2 or window_size % 2 == 0:
        raise ValueError(f"window_size must be odd and at least 3, got {window_size}.")
    if min(a.shape[1:]) < window_size:
        raise ValueError(
            f"Maps of shape {tuple(a.shape[1:])} are smaller than the {window_size}-bin SSIM window: "
            "pass a smaller odd window_size."
        )
    if sigma is not None and sigma <= 0:
        raise ValueError(f"sigma must be positive (or None for a uniform window), got {sigma}.")
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}.")
    out_dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    with torch.no_grad():
        window = _ssim_window(window_size, sigma).to(a.device)
        x = a.detach().to(torch.float64)
        y = b.detach().to(torch.float64)
        mu_x, mu_y = _filter_valid(x, window), _filter_valid(y, window)
        # Sample (co)variance correction of a uniform window of N = window_size^2 bins.
        correction = 1.0 if sigma is not None else window_size**2 / (window_size**2 - 1)
        var_x = correction * (_filter_valid(x * x, window) - mu_x * mu_x)
        var_y = correction * (_filter_valid(y * y, window) - mu_y * mu_y)
        cov_xy = correction * (_filter_valid(x * y, window) - mu_x * mu_y)
        c1 = (SSIM_K1 * data_range) ** 2
        c2 = (SSIM_K2 * data_range) ** 2
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        return ssim_map.flatten(1).mean(dim=-1).to(out_dtype)


def _reinitialize_block(block, block_name, seed, keep_buffers):
    """Re-initialise every layer of ``block`` in place, reproducibly, without touching the global RNG."""
    saved = {name: buf.clone() for name, buf in block.named_buffers()} if keep_buffers else {}
    covered = set()
    cuda_devices = sorted({p.device.index for p in block.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
        torch.manual_seed(seed)
        for module in block.modules():
            # reset_parameters is torch's own re-initialisation hook (Linear, ConvNd, norms, embeddings...).
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for name, buf in block.named_buffers():
            if name in saved:
                buf.copy_(saved[name])
    missed = [name for name, p in block.named_parameters() if id(p) not in covered]
    if missed:
        logger.warning("Block %s: no reset_parameters() covers %s; they keep their trained values.", block_name, missed)


def cascading_randomization(model, block_names, seed=0, reset_running_stats=True):
    """Copies of ``model`` with its blocks re-initialised one more at a time, top block first.

    The k-th copy (k = 1..len(block_names)) has blocks ``block_names[:k]`` re-initialised and every other
    weight as in ``model``; ``model`` itself is never modified. Each block is re-initialised by calling
    ``reset_parameters()`` on all its layers under the seed ``seed + index of the block``, so block j gets the
    same random weights in every copy that randomises it (the cascade is cumulative) and runs are reproducible;
    the global random state is left as it was. Parameters that no ``reset_parameters()`` covers keep their
    values, with a logged warning. Norm layers get their initial affine parameters (weight 1, bias 0).

    Copies are made lazily (one ``deepcopy`` per step): drop a copy before asking for the next one to keep at
    most one extra model in memory.

    Parameters
    ----------
    model : torch.nn.Module
        The model to explain (e.g. the CLAP audio encoder, or the whole classifier).
    block_names : sequence of str
        Dotted submodule names as in ``model.named_modules()``, ordered from the output side (top) down, e.g.
        ``["conv_block6", "conv_block5", ...]`` for CNN14.
    seed : int
        Base seed of the re-initialisation.
    reset_running_stats : bool
        True: buffers of a randomised block (BatchNorm running mean/variance, batch counter) are reset too, as
        ``reset_parameters()`` does, so the block is exactly as freshly constructed. False: its buffers keep the
        trained values and only the learnable parameters are re-initialised.

    Yields
    ------
    tuple of (tuple of str, torch.nn.Module)
        The names of the blocks randomised so far, and the randomised copy.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> for blocks, copy_k in cascading_randomization(net, ["1", "0"]):
    ...     print(blocks, torch.equal(copy_k[0].weight, net[0].weight))
    ('1',) True
    ('1', '0') False
    """
    if isinstance(block_names, str):
        raise TypeError("block_names must be a list of submodule names, not one string.")
    block_names = list(block_names)
    if not block_names:
        raise ValueError("block_names is empty: give at least one submodule name.")
    if len(set(block_names)) != len(block_names):
        raise ValueError(f"block_names has duplicates: {block_names}.")
    available = dict(model.named_modules())
    unknown = [name for name in block_names if name not in available or not name]
    if unknown:
        top_level = [name for name, _ in model.named_children()]
        raise ValueError(f"Unknown submodules {unknown}; top-level children of the model are {top_level}.")
    for name in block_names:
        if not any(True for _ in available[name].parameters()):
            raise ValueError(f"Submodule {name!r} has no parameters to randomise.")
    return _cascade(model, block_names, seed, reset_running_stats)


def _cascade(model, block_names, seed, reset_running_stats):
    for k in range(1, len(block_names) + 1):
        randomized = copy.deepcopy(model)
        for index, name in enumerate(block_names[:k]):
            block = randomized.get_submodule(name)
            _reinitialize_block(block, name, seed + index, keep_buffers=not reset_running_stats)
        yield tuple(block_names[:k]), randomized
