"""Interpreters: one API, masks in [0, 1] on the input grid, known answers on a toy CLAP, both tiny backends."""

import importlib
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.clap.base import CLAPBackend, l2_normalize
from speechbrain_lmaczs.interpreters import (
    INTERPRETERS,
    GradCAM,
    GradCAMPlusPlus,
    GScoreCAM,
    IntegratedGradients,
    ScoreCAM,
    SmoothGrad,
    build_interpreter,
    resolve_targets,
    saliency_to_mask,
)
from speechbrain_lmaczs.interpreters.cam import record_outputs

PROMPTS = ["this is the sound of dog", "this is the sound of rain", "this is the sound of car horn"]

# Small settings so that every method runs in well under a second on the tiny models.
FAST_OPTIONS = {
    "gradcam": {},
    "gradcam++": {},
    "smoothgrad": {"n_samples": 4, "batch_size": 2},
    "ig": {"n_steps": 8, "batch_size": 8},
    "scorecam": {"batch_size": 16},
    "gscorecam": {"batch_size": 16, "top_fraction": 0.15},
}

# LMAC-ZS needs a trained decoder: its contract is tested in test_lmaczs_training.py.
BASELINES = sorted(name for name in INTERPRETERS if name != "lmaczs")


class ToyCLAP(CLAPBackend):
    """Two conv layers, a cam_layer, max+mean pooling (as CNN14) and a projection; hashed text embeddings."""

    name = "toy"

    def __init__(self, channels=6, dim=8):
        super().__init__(frontend=None)
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, channels, 3, padding=1)
        self.proj = nn.Linear(channels, dim)
        self.dim = dim
        self.register_buffer("scale", torch.tensor(10.0))

    @property
    def hidden_channels(self):
        return [self.conv2.out_channels]

    @property
    def logit_scale(self):
        return self.scale

    def encode_audio(self, logmel, return_hidden=False):
        h = F.avg_pool2d(F.relu(self.conv1(logmel[:, None])), 2)
        h = self.cam_layer(F.relu(self.conv2(h)))
        emb = l2_normalize(self.proj(h.amax(dim=(2, 3)) + h.mean(dim=(2, 3))))
        return (emb, [h]) if return_hidden else emb

    def encode_text(self, prompts):
        # A stable hash: the same prompt gets the same embedding in every call and process.
        rows = [torch.randn(self.dim, generator=torch.Generator().manual_seed(zlib.crc32(p.encode()))) for p in prompts]
        return l2_normalize(torch.stack(rows).to(self.scale))

    def save_pretrained(self, folder):
        raise NotImplementedError


class FreqMap(nn.Module):
    """A non-identity to_logmel: 20 linear-frequency magnitudes -> 12 log bands (as the STFT masking domain)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fbank", torch.rand(20, 12, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        return torch.log(x.abs() @ self.fbank + 1e-3)


def make_toy(to_logmel=None, channels=6):
    torch.manual_seed(0)
    return ZeroShotClassifier(ToyCLAP(channels=channels).freeze(), PROMPTS, to_logmel=to_logmel)


@pytest.fixture(scope="module")
def toy():
    return make_toy()


def toy_inputs(batch=3, time=16, freq=12, seed=0):
    return torch.randn(batch, time, freq, generator=torch.Generator().manual_seed(seed)) * 3.0


def backend_classifier(request, name):
    """A classifier on a tiny real backend, or a skip if that backend has not been written yet."""
    try:
        importlib.import_module(f"speechbrain_lmaczs.clap.{name}")
    except ModuleNotFoundError as err:
        if err.name != f"speechbrain_lmaczs.clap.{name}":
            raise
        pytest.skip(f"The {name} CLAP backend (speechbrain_lmaczs/clap/{name}.py) does not exist yet.")
    clap = request.getfixturevalue(f"tiny_{name}")
    return ZeroShotClassifier(clap, PROMPTS)


def backend_inputs(classifier, batch=2, frames=150, seed=0):
    """Real log-mels of noise bursts, cropped to ``frames`` (both encoders take shorter inputs) to keep tests fast.

    150 frames is not a multiple of either encoder's downsampling, so the layer grid maps to the input grid by a
    non-integer factor.
    """
    frontend = classifier.clap.frontend
    wav = torch.randn(batch, frontend.clip_samples, generator=torch.Generator().manual_seed(seed))
    envelope = torch.linspace(0.0, 1.0, frontend.clip_samples) ** (torch.arange(1, batch + 1)[:, None].float())
    with torch.no_grad():
        return frontend(0.1 * wav * envelope)[:, :frames]


@pytest.fixture(scope="module", params=["toy", "msclap", "laion"])
def any_classifier(request):
    if request.param == "toy":
        return "toy", make_toy(), toy_inputs()
    classifier = backend_classifier(request, request.param)
    return request.param, classifier, backend_inputs(classifier)


class FirstChannelsScoreCAM(ScoreCAM):
    """ScoreCAM that scores only the first 12 channels.

    Each channel costs one masked forward per clip; the tiny backends have 64-128 channels at their cam_layer and
    tiny HTSAT resizes every input to 1024 frames, so all channels would take ~10 s per test on two CPU cores.
    The code path is the same for any number of channels (all channels are checked on the toy model).
    """

    def select_channels(self, activations, gradients):
        return super().select_channels(activations, gradients)[:12]


def no_hooks_left(module):
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in module.modules())


# ---------------------------------------------------------------------------------------------------------------
# Every interpreter, every backend


@pytest.mark.parametrize("name", BASELINES)
def test_masks_are_valid_and_batch_independent(name, any_classifier):
    backend, classifier, x = any_classifier
    if name == "scorecam" and backend != "toy":
        interpreter = FirstChannelsScoreCAM(classifier, batch_size=12)
    else:
        interpreter = build_interpreter(name, classifier, **FAST_OPTIONS[name])
    masks = interpreter.explain(x)
    assert masks.shape == x.shape
    assert not masks.requires_grad
    assert torch.isfinite(masks).all()
    assert masks.min() >= 0.0 and masks.max() <= 1.0
    # Division by the per-clip max: each clip peaks at exactly 1 (these fixed inputs give no all-zero saliency, so
    # a layer cut off from the score, which would give all-zero masks, is caught here).
    assert masks.flatten(1).amax(dim=1).tolist() == [1.0] * x.shape[0]
    assert no_hooks_left(classifier)
    # The last clip, explained alone, must not depend on the clips it was batched with (nor on its position).
    alone = interpreter.explain(x[-1:])
    torch.testing.assert_close(masks[-1:], alone, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize("name", BASELINES)
def test_prompt_target_equals_index_target(name, toy):
    x = toy_inputs()
    interpreter = build_interpreter(name, toy, **FAST_OPTIONS[name])
    by_index = interpreter.explain(x, target=torch.tensor([1, 0, 2]))
    by_prompt = interpreter.explain(x, target=[PROMPTS[1], PROMPTS[0], PROMPTS[2]])
    torch.testing.assert_close(by_prompt, by_index, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(interpreter.explain(x, target=PROMPTS[2]), interpreter.explain(x, target=2))


@pytest.mark.parametrize("backend", ["msclap", "laion"])
def test_prompt_target_equals_index_target_on_backends(backend, request):
    classifier = backend_classifier(request, backend)
    x = backend_inputs(classifier)
    one = resolve_targets(classifier, x, PROMPTS[1])
    # The prompt goes through the text encoder alone; it must score like the cached class prompt.
    torch.testing.assert_close(one.scores(x), classifier(x)[:, 1], atol=1e-4, rtol=1e-4)
    gradcam = GradCAM(classifier)
    torch.testing.assert_close(gradcam.explain(x, target=PROMPTS[1]), gradcam.explain(x, target=1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", BASELINES)
def test_grid_of_a_non_identity_to_logmel(name):
    """Inputs on a linear-frequency grid (20 bins) explained through a to_logmel with 12 bands."""
    classifier = make_toy(to_logmel=FreqMap())
    x = toy_inputs(batch=2, time=10, freq=20).abs()
    masks = build_interpreter(name, classifier, **FAST_OPTIONS[name]).explain(x)
    assert masks.shape == (2, 10, 20)
    assert masks.min() >= 0.0 and masks.max() <= 1.0


@pytest.mark.parametrize("name", ["gradcam", "ig"])
def test_stft_masking_domain_on_msclap(name, request):
    """The paper's STFT setup: a 16 kHz magnitude STFT (257 bins) reaches CNN14 through the domain's to_logmel."""
    try:
        from speechbrain_lmaczs.lmaczs.domains import STFTMasking
    except ModuleNotFoundError as err:
        pytest.skip(f"The masking domains are not available yet ({err}).")
    clap = backend_classifier(request, "msclap").clap

    class DomainToLogmel(nn.Module):
        def __init__(self, domain):
            super().__init__()
            self.domain = domain

        def forward(self, x):
            return self.domain.to_logmel(x)

    domain = STFTMasking(clap.frontend)
    classifier = ZeroShotClassifier(clap, PROMPTS, to_logmel=DomainToLogmel(domain))
    wav = 0.1 * torch.randn(1, clap.frontend.clip_samples, generator=torch.Generator().manual_seed(0))
    x = domain.representation(wav)
    masks = build_interpreter(name, classifier, **FAST_OPTIONS[name]).explain(x)
    assert masks.shape == x.shape and x.shape[-1] == 257
    assert masks.min() >= 0.0 and masks.max() == 1.0


def test_default_target_is_the_predicted_class(toy):
    x = toy_inputs()
    predicted = toy(x).argmax(dim=-1)
    assert resolve_targets(toy, x).index.tolist() == predicted.tolist()
    assert resolve_targets(toy, x).prompts == [PROMPTS[i] for i in predicted.tolist()]
    gradcam = GradCAM(toy)
    torch.testing.assert_close(gradcam.explain(x), gradcam.explain(x, target=predicted))


def test_explain_works_under_no_grad(toy):
    x = toy_inputs()
    ig = IntegratedGradients(toy, n_steps=8)
    expected = ig.explain(x)
    with torch.no_grad():
        torch.testing.assert_close(ig.explain(x), expected)


def test_gradcam_plusplus_runs_under_bf16_autocast(toy):
    # numpy has no bfloat16: the hooked activations and gradients must be cast before pytorch-grad-cam sees them.
    x, target = toy_inputs(), torch.tensor([1, 1, 0])
    expected = GradCAMPlusPlus(toy).explain(x, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masks = GradCAMPlusPlus(toy).explain(x, target)
    assert masks.shape == expected.shape and torch.isfinite(masks).all()
    assert float((masks.float() - expected).abs().mean()) < 0.05


# ---------------------------------------------------------------------------------------------------------------
# Known answers on the toy model


def toy_layer_map_and_gradient(classifier, x, target):
    """A and d score / dA computed by hand, without the interpreters' code."""
    with record_outputs(classifier.clap.cam_layer) as outputs:
        logits = classifier(x.clone().requires_grad_(True))
    (acts,) = outputs
    (grads,) = torch.autograd.grad(logits[torch.arange(len(target)), target].sum(), acts)
    return acts.detach(), grads


def test_gradcam_matches_a_hand_computation(toy):
    x, target = toy_inputs(), torch.tensor([0, 2, 1])
    acts, grads = toy_layer_map_and_gradient(toy, x, target)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * acts).sum(dim=1))
    assert cam.shape == (3, 8, 6) and cam.amax() > 0

    gradcam = GradCAM(toy)
    torch.testing.assert_close(gradcam.saliency(x, resolve_targets(toy, x, target)), cam)
    # The toy layer grid is exactly half the input grid: nearest upsampling repeats each cell 2 x 2.
    upsampled = cam.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    expected = upsampled / upsampled.flatten(1).amax(dim=1)[:, None, None]
    torch.testing.assert_close(gradcam.explain(x, target), expected)


def test_gradcam_plusplus_matches_its_formula(toy):
    x, target = toy_inputs(), torch.tensor([1, 1, 0])
    acts, grads = toy_layer_map_and_gradient(toy, x, target)
    # Chattopadhyay et al. (2018), Eq. 19 with exp(score) -> score, as pytorch-grad-cam implements it.
    alpha = grads**2 / (2 * grads**2 + acts.sum(dim=(2, 3), keepdim=True) * grads**3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    weights = (F.relu(grads) * alpha).sum(dim=(2, 3), keepdim=True)
    expected = (weights * acts).sum(dim=1)
    saliency = GradCAMPlusPlus(toy).saliency(x, resolve_targets(toy, x, target))
    torch.testing.assert_close(saliency, expected, atol=1e-5, rtol=1e-4)


def test_integrated_gradients_completeness(toy):
    x = toy_inputs(batch=2)
    targets = resolve_targets(toy, x, torch.tensor([2, 0]))
    attributions = IntegratedGradients(toy, n_steps=128, batch_size=64).saliency(x, targets)
    with torch.no_grad():
        gap = targets.scores(x) - targets.scores(torch.zeros_like(x))
    assert gap.abs().min() > 0.1  # otherwise the check below would prove little
    torch.testing.assert_close(attributions.sum(dim=(1, 2)), gap, atol=2e-2 * gap.abs().max().item(), rtol=0)


def test_scorecam_matches_a_hand_computation(toy):
    x, target = toy_inputs(batch=2), torch.tensor([2, 1])
    targets = resolve_targets(toy, x, target)
    with torch.no_grad(), record_outputs(toy.clap.cam_layer) as outputs:
        toy(x)
    acts = outputs[0]
    expected = []
    for i in range(2):
        scores = []
        for channel in acts[i]:
            up = F.interpolate(channel[None, None], size=x.shape[1:], mode="bilinear", align_corners=False)[0, 0]
            span = up.max() - up.min()
            mask = (up - up.min()) / span if span > 0 else torch.zeros_like(up)
            with torch.no_grad():
                scores.append(toy(x[i : i + 1] * mask)[0, target[i]])
        weights = torch.softmax(torch.stack(scores), dim=0)
        expected.append((weights[:, None, None] * acts[i]).sum(dim=0))
    saliency = ScoreCAM(toy, batch_size=4).saliency(x, targets)
    torch.testing.assert_close(saliency, torch.stack(expected), atol=1e-5, rtol=1e-4)


def test_gscorecam_keeps_the_top_gradient_channels(toy):
    x, target = toy_inputs(), torch.tensor([0, 1, 2])
    targets = resolve_targets(toy, x, target)
    acts, grads = toy_layer_map_and_gradient(toy, x, target)
    # All channels kept: exactly ScoreCAM.
    every_channel = GScoreCAM(toy, top_fraction=1.0).saliency(x, targets)
    torch.testing.assert_close(every_channel, ScoreCAM(toy).saliency(x, targets))
    # One channel kept: the softmax over one score is 1, every other channel has weight 0.
    top = grads.mean(dim=(2, 3)).argmax(dim=1)
    one = GScoreCAM(toy, top_fraction=1 / 6).saliency(x, targets)
    torch.testing.assert_close(one, acts[torch.arange(3), top])


def test_smoothgrad_noise_is_seeded_and_leaves_the_global_rng_alone(toy):
    x = toy_inputs()
    state = torch.get_rng_state()
    first = SmoothGrad(toy, n_samples=4, seed=3).explain(x)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(SmoothGrad(toy, n_samples=4, seed=3).explain(x), first)
    assert not torch.allclose(SmoothGrad(toy, n_samples=4, seed=4).explain(x), first)


def test_smoothgrad_without_noise_is_the_gradient(toy):
    x, target = toy_inputs(), torch.tensor([1, 2, 0])
    xg = x.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(toy(xg)[torch.arange(3), target].sum(), xg)
    saliency = SmoothGrad(toy, n_samples=3, noise_level=0.0).saliency(x, resolve_targets(toy, x, target))
    torch.testing.assert_close(saliency, gradient)


# ---------------------------------------------------------------------------------------------------------------
# Hooks and errors


def test_gradcam_plusplus_removes_its_hooks_after_an_error(toy, monkeypatch):
    x = toy_inputs()
    expected = GradCAMPlusPlus(toy).explain(x)

    def broken(_):
        # pytorch-grad-cam's own __exit__ swallows IndexError: it must reach the caller here.
        raise IndexError("broken projection")

    with monkeypatch.context() as patch:
        patch.setattr(toy.clap.proj, "forward", broken)
        with pytest.raises(IndexError, match="broken projection"):
            GradCAMPlusPlus(toy).explain(x, target=0)
    assert no_hooks_left(toy)
    torch.testing.assert_close(GradCAMPlusPlus(toy).explain(x), expected)


def test_gradcam_plusplus_leaves_the_training_mode_alone():
    classifier = make_toy().train()
    GradCAMPlusPlus(classifier).explain(toy_inputs())
    assert classifier.training and not classifier.clap.training  # the frozen backend stays in eval mode anyway


def test_record_outputs_removes_its_hook_after_an_error():
    layer = nn.Identity()
    with pytest.raises(RuntimeError, match="inside"):
        with record_outputs(layer):
            raise RuntimeError("inside")
    assert not layer._forward_hooks


def test_saliency_to_mask_normalisation():
    saliency = torch.tensor([[[-3.0, 1.0], [2.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    relu = saliency_to_mask(saliency, (4, 2), rectify="relu")
    torch.testing.assert_close(relu[0], torch.tensor([[0.0, 0.5], [0.0, 0.5], [1.0, 0.0], [1.0, 0.0]]))
    assert torch.equal(relu[1], torch.zeros(4, 2))  # all-zero saliency: all-zero mask, no NaN
    torch.testing.assert_close(saliency_to_mask(saliency, (2, 2), rectify="abs")[0], saliency[0].abs() / 3.0)
    bilinear = saliency_to_mask(saliency.abs(), (8, 8), upsample_mode="bilinear")
    assert bilinear.shape == (2, 8, 8) and bilinear[0].max() == 1.0
    with pytest.raises(FloatingPointError, match="NaN"):
        saliency_to_mask(torch.tensor([[[float("nan")]]]), (1, 1))


def test_normalisation_is_recorded():
    classifier = make_toy()
    for name in BASELINES:
        interpreter = build_interpreter(name, classifier)
        expected = "relu" if "cam" in name else "abs"
        assert interpreter.normalization.startswith(expected + " -> ")
        assert interpreter.normalization.endswith("/ per-clip max (eps 1e-12)")
    assert "upsample(bilinear)" in GradCAM(classifier, upsample_mode="bilinear").normalization
    # the former (British) name still answers, for code written against it
    assert GradCAM(classifier).normalisation == GradCAM(classifier).normalization


def test_interpreters_need_a_zero_shot_classifier():
    with pytest.raises(TypeError, match="ZeroShotClassifier"):
        build_interpreter("smoothgrad", nn.Linear(3, 2))


def test_build_interpreter_passes_options(toy):
    ig = build_interpreter("ig", toy, n_steps=7, batch_size=3)
    assert isinstance(ig, IntegratedGradients) and ig.n_steps == 7 and ig.batch_size == 3
    assert build_interpreter("gscorecam", toy, top_fraction=0.5).top_fraction == 0.5
    with pytest.raises(TypeError, match="accepts"):
        build_interpreter("smoothgrad", toy, n_steps=3)
    with pytest.raises(ValueError, match="Unknown interpreter"):
        build_interpreter("lime", toy)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        (torch.zeros(16, 12), ValueError, r"x\[None\]"),
        (torch.zeros(2, 1, 16, 12), ValueError, r"x\[:, 0\]"),
        (torch.zeros(2, 16, 12, dtype=torch.long), TypeError, "floating"),
        (torch.full((2, 16, 12), float("-inf")), ValueError, "NaN or infinite"),
        (np.zeros((2, 16, 12)), TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(toy, inputs, error, message):
    with pytest.raises(error, match=message):
        GradCAM(toy).explain(inputs)


@pytest.mark.parametrize(
    "target, error, message",
    [
        (3, ValueError, r"\[0, 2\]"),
        (torch.tensor([0, 1]), ValueError, "2 target indices for 3 clips"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer dtype"),
        (["a dog", "rain"], ValueError, "2 prompts for 3 clips"),
        ("  ", ValueError, "non-empty"),
        (True, TypeError, "boolean"),
        ({"dog": 1}, TypeError, "target must be"),
    ],
)
def test_bad_targets_raise_clear_errors(toy, target, error, message):
    with pytest.raises(error, match=message):
        GradCAM(toy).explain(toy_inputs(), target=target)


def test_layer_must_belong_to_the_classifier(toy):
    with pytest.raises(ValueError, match="submodule"):
        GradCAM(toy, layer=nn.Identity())
    with pytest.raises(ValueError, match="batch, channels, time, freq"):
        ScoreCAM(toy, layer=toy.clap.proj).explain(toy_inputs())
