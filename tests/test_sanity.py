"""Sanity-check helpers: Pearson r, SSIM and cascading model randomisation."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from speechbrain_lmaczs.sanity import (
    SSIM_K1,
    SSIM_K2,
    PearsonAccumulator,
    cascading_randomization,
    pearson_r,
    ssim,
)

# --- Pearson ----------------------------------------------------------------------------------------------------------


def test_pearson_hand_value():
    # x = [1, 2, 3], y = [2, 4, 6.5]: cov = 4.5, sxx = 2, syy = 61/6
    r = pearson_r([1.0, 2.0, 3.0], [2.0, 4.0, 6.5])
    assert r == pytest.approx(4.5 / math.sqrt(2 * 61 / 6), abs=1e-12)


def test_pearson_matches_numpy_and_is_invariant_to_affine_maps():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(50, generator=gen, dtype=torch.float64)
    y = 0.5 * x + 0.3 * torch.rand(50, generator=gen, dtype=torch.float64)
    expected = np.corrcoef(x.numpy(), y.numpy())[0, 1]
    assert pearson_r(x, y) == pytest.approx(expected, abs=1e-12)
    assert pearson_r(3 * x + 7, y) == pytest.approx(expected, abs=1e-12)
    assert pearson_r(-x, y) == pytest.approx(-expected, abs=1e-12)
    assert pearson_r(y, x) == pytest.approx(expected, abs=1e-12)


def test_streaming_pearson_equals_one_shot():
    gen = torch.Generator().manual_seed(1)
    # a large offset makes the naive sum-of-products formula lose digits; the streamed merge must not
    x = 1e4 + torch.rand(37, generator=gen, dtype=torch.float64)
    y = -2 * x + torch.rand(37, generator=gen, dtype=torch.float64)
    acc = PearsonAccumulator()
    for start, stop in ((0, 1), (1, 10), (10, 10), (10, 37)):
        acc.update(x[start:stop], y[start:stop])
    assert acc.n == 37
    assert acc.value() == pytest.approx(np.corrcoef(x.numpy(), y.numpy())[0, 1], abs=1e-9)


def test_pearson_undefined_cases_are_nan_and_logged(caplog):
    with caplog.at_level("WARNING"):
        assert math.isnan(pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
        assert math.isnan(pearson_r([1.0], [2.0]))
    assert "undefined" in caplog.text


def test_pearson_rejects_bad_input():
    with pytest.raises(ValueError, match="pair up"):
        pearson_r([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        pearson_r([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])


# --- SSIM -------------------------------------------------------------------------------------------------------------


def _maps(batch=3, time=24, freq=16, seed=0):
    return torch.rand(batch, time, freq, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_ssim_of_identical_maps_is_one():
    x = _maps()
    assert ssim(x, x).tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    assert ssim(x, x, window_size=7, sigma=None).tolist() == pytest.approx([1.0] * 3, abs=1e-12)
    constant = torch.full((1, 12, 12), 0.4)
    assert ssim(constant, constant).item() == pytest.approx(1.0, abs=1e-6)


def test_ssim_is_symmetric():
    x, y = _maps(seed=0), _maps(seed=1)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-12)


def test_ssim_decreases_with_noise():
    x = _maps()
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    slightly = ssim(x, (x + 0.05 * noise).clamp(0, 1))
    heavily = ssim(x, (x + 0.5 * noise).clamp(0, 1))
    assert (slightly < 1).all()
    assert (heavily < slightly).all()


def test_ssim_whole_map_uniform_window_hand_formula():
    # With a uniform window as large as the map, SSIM is one value from the global statistics (sample variances).
    x = _maps(batch=2, time=5, freq=5, seed=3)
    y = _maps(batch=2, time=5, freq=5, seed=4)
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2
    expected = []
    for a, b in zip(x.flatten(1).numpy(), y.flatten(1).numpy(), strict=True):
        mx, my = a.mean(), b.mean()
        vx, vy = a.var(ddof=1), b.var(ddof=1)
        cxy = ((a - mx) * (b - my)).sum() / (a.size - 1)
        expected.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    assert ssim(x, y, window_size=5, sigma=None).tolist() == pytest.approx(expected, abs=1e-12)


def test_ssim_batch_equals_single():
    x, y = _maps(seed=5), _maps(seed=6)
    batched = ssim(x, y)
    for i in range(x.shape[0]):
        assert ssim(x[i : i + 1], y[i : i + 1]).item() == pytest.approx(batched[i].item(), abs=1e-12)


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    x, y = _maps(seed=7), _maps(seed=8)
    y = (0.6 * x + 0.4 * y).clamp(0, 1)
    for i in range(x.shape[0]):
        a, b = x[i].numpy(), y[i].numpy()
        gaussian = metrics.structural_similarity(
            a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        uniform = metrics.structural_similarity(a, b, data_range=1.0, win_size=7)
        assert ssim(x[i : i + 1], y[i : i + 1]).item() == pytest.approx(gaussian, abs=1e-9)
        assert ssim(x[i : i + 1], y[i : i + 1], window_size=7, sigma=None).item() == pytest.approx(uniform, abs=1e-9)


def test_ssim_rejects_bad_input():
    x = _maps()
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, x[:, :-1])
    with pytest.raises(ValueError, match="smaller"):
        ssim(x[:, :8, :8], x[:, :8, :8])
    with pytest.raises(ValueError, match="odd"):
        ssim(x, x, window_size=4)
    with pytest.raises(ValueError, match="batch, time, freq"):
        ssim(x[0], x[0])


# --- cascading randomisation --------------------------------------------------------------------------------------


class _TinyNet(nn.Module):
    """Three named blocks, input side first, with a BatchNorm whose state differs from a fresh one."""

    def __init__(self):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
        self.block2 = nn.Sequential(nn.Conv2d(2, 2, 3), nn.ReLU())
        self.block3 = nn.Linear(2, 3)
        with torch.no_grad():
            for bn in (self.block1[1],):
                bn.weight.fill_(2.0)
                bn.bias.fill_(-1.0)
                bn.running_mean.fill_(0.5)
                bn.running_var.fill_(3.0)
                bn.num_batches_tracked.fill_(7)


def _state(module):
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def _blocks_differing(reference, other, blocks):
    return [
        block
        for block in blocks
        if any(
            not torch.equal(reference[name], tensor)
            for name, tensor in other.items()
            if name.startswith(block + ".") and not name.endswith("num_batches_tracked")
        )
    ]


@pytest.mark.parametrize("reset_running_stats", [True, False])
def test_cascade_randomises_exactly_the_first_k_blocks(reset_running_stats):
    torch.manual_seed(0)
    net = _TinyNet()
    original = _state(net)
    order = ["block3", "block2", "block1"]  # top block first
    copies = list(cascading_randomization(net, order, seed=5, reset_running_stats=reset_running_stats))
    assert [blocks for blocks, _ in copies] == [("block3",), ("block3", "block2"), ("block3", "block2", "block1")]
    for k, (_, model_k) in enumerate(copies, start=1):
        assert model_k is not net
        assert _blocks_differing(original, _state(model_k), order) == order[:k]
    # the original is untouched
    for name, tensor in _state(net).items():
        assert torch.equal(tensor, original[name]), name


def test_cascade_is_cumulative_and_reproducible():
    net = _TinyNet()
    first = [_state(m) for _, m in cascading_randomization(net, ["block3", "block2"], seed=1)]
    again = [_state(m) for _, m in cascading_randomization(net, ["block3", "block2"], seed=1)]
    other = [_state(m) for _, m in cascading_randomization(net, ["block3", "block2"], seed=2)]
    for a, b in zip(first, again, strict=True):
        assert all(torch.equal(a[name], b[name]) for name in a)
    # block3 gets the same random weights in copy 1 and copy 2
    assert torch.equal(first[0]["block3.weight"], first[1]["block3.weight"])
    assert not torch.equal(first[0]["block3.weight"], other[0]["block3.weight"])


def test_cascade_leaves_global_rng_alone():
    net = _TinyNet()
    torch.manual_seed(123)
    list(cascading_randomization(net, ["block3", "block1"]))
    after = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(3), after)


def test_batchnorm_running_stats_policy():
    net = _TinyNet()
    ((_, reset),) = cascading_randomization(net, ["block1"], reset_running_stats=True)
    ((_, kept),) = cascading_randomization(net, ["block1"], reset_running_stats=False)
    bn_reset, bn_kept = reset.block1[1], kept.block1[1]
    assert torch.equal(bn_reset.running_mean, torch.zeros(2))
    assert torch.equal(bn_reset.running_var, torch.ones(2))
    assert torch.equal(bn_kept.running_mean, torch.full((2,), 0.5))
    assert torch.equal(bn_kept.running_var, torch.full((2,), 3.0))
    # the affine parameters are re-initialised either way
    for bn in (bn_reset, bn_kept):
        assert torch.equal(bn.weight, torch.ones(2)) and torch.equal(bn.bias, torch.zeros(2))


def test_cascade_warns_about_parameters_without_reset(caplog):
    class WithRawParameter(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.full((2,), 4.0))
            self.linear = nn.Linear(2, 2)

    net = nn.Sequential(WithRawParameter())
    with caplog.at_level("WARNING"):
        ((_, copy_1),) = cascading_randomization(net, ["0"])
    assert "scale" in caplog.text
    assert torch.equal(copy_1[0].scale, net[0].scale)
    assert not torch.equal(copy_1[0].linear.weight, net[0].linear.weight)


def test_cascade_rejects_bad_block_names():
    net = _TinyNet()
    with pytest.raises(ValueError, match="Unknown submodules.*block1"):
        cascading_randomization(net, ["block9"])
    with pytest.raises(ValueError, match="duplicates"):
        cascading_randomization(net, ["block1", "block1"])
    with pytest.raises(TypeError, match="list"):
        cascading_randomization(net, "block1")
    with pytest.raises(ValueError, match="no parameters"):
        cascading_randomization(net, ["block2.1"])
