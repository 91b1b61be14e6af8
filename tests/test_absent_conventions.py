"""Every interpreter's notion of "absent" follows the masking domain (issue 13): IG's baseline, ScoreCAM's masked
inputs and SmoothGrad's noise scale; the paper's log-mel masking keeps the paper's numbers bit for bit."""

import pytest
import torch
from captum import attr as captum_attr

from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.classifier import ZeroShotClassifier
from speechbrain_lmaczs.interpreters import INTERPRETERS, build_interpreter, resolve_targets
from speechbrain_lmaczs.interpreters.gradient import seeded
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking, STFTMasking
from speechbrain_lmaczs.lmaczs.pretrained import TrainedLMACZS

PROMPTS = ["this is the sound of dog", "this is the sound of rain", "this is the sound of car horn"]
FRAMES = 120


@pytest.fixture(scope="module")
def classifier(tiny_msclap):
    return ZeroShotClassifier(tiny_msclap, PROMPTS)


@pytest.fixture(scope="module")
def inputs(tiny_msclap):
    """Log-mels (released convention: dB of the power, silence at -100 dB) of two noise bursts, cropped."""
    fe = tiny_msclap.frontend
    wav = torch.randn(2, fe.clip_samples, generator=torch.Generator().manual_seed(0))
    envelope = torch.linspace(0.3, 1.0, fe.clip_samples) ** torch.tensor([[1.0], [2.0]])
    with torch.no_grad():
        return fe(0.1 * wav * envelope)[:, :FRAMES]


def domains(clap):
    return MelMasking(clap.frontend), MelMasking(clap.frontend, mask_on="power")


def test_absent_is_what_a_zero_mask_leaves_in_each_domain(tiny_msclap, inputs):
    paper, power = domains(tiny_msclap)
    silence = tiny_msclap.frontend.silence_db
    assert silence == -100.0  # the released convention: 0 dB is NOT silence here
    assert float(paper.absent(inputs).abs().max()) == 0.0
    assert bool((power.absent(inputs) == silence).all()) and torch.equal(power.absent(inputs), power.silence(inputs))
    stft = STFTMasking(tiny_msclap.frontend)
    spec = stft.representation(0.1 * torch.randn(1, tiny_msclap.frontend.clip_samples))
    assert float(stft.absent(spec).abs().max()) == 0.0 and torch.equal(stft.silence(spec), torch.zeros_like(spec))
    # a silent magnitude reaches the encoder as the front-end's floor
    assert float(stft.to_logmel(stft.silence(spec)).max()) == pytest.approx(silence)


def test_every_method_gets_the_model_domain_through_the_registry(tiny_msclap, classifier):
    decoder = MaskDecoder(tiny_msclap.hidden_channels, tiny_msclap.joint_dim, width=8, n_final_upsamplings=3)
    power = MelMasking(tiny_msclap.frontend, mask_on="power")
    model = TrainedLMACZS(tiny_msclap, decoder, power)
    for name in INTERPRETERS:
        assert build_interpreter(name, classifier, model=model).domain is power, name
        if not INTERPRETERS[name].needs_model:
            assert build_interpreter(name, classifier, domain=power).domain is power, name
            assert build_interpreter(name, classifier).domain is None, name
    with pytest.raises(ValueError, match="not both"):
        build_interpreter("ig", classifier, model=model, domain=MelMasking(tiny_msclap.frontend))
    with pytest.raises(TypeError, match="Unknown option"):
        build_interpreter("ig", classifier, model=model, **{"options": 1})


@pytest.mark.parametrize("mask_on", ["power", "log_mel"])
def test_ig_with_a_silence_baseline_is_complete_against_silence(mask_on):
    # The toy CLAP of test_interpreters (smooth enough for a 128-point quadrature) on a front-end whose silence is
    # -10 dB: the straight path from silence to x is as long as the one from 0 in the zero-baseline check.
    from test_interpreters import make_toy, toy_inputs

    toy = make_toy()
    frontend = LogMelFrontend(16000, 512, 160, 40, 50.0, 8000.0, clip_seconds=1.0, amin=0.1)
    assert frontend.silence_db == -10.0
    domain = MelMasking(frontend, mask_on=mask_on)
    x = toy_inputs(batch=2).clamp_min(-10.0)
    # power masking: the default ("absent") baseline is silence; log-mel masking: silence is asked for
    options = {"baseline": "silence"} if mask_on == "log_mel" else {}
    ig = build_interpreter("ig", toy, domain=domain, n_steps=128, batch_size=64, **options)
    targets = resolve_targets(toy, x, torch.tensor([2, 0]))
    silence = torch.full_like(x, -10.0)
    assert torch.equal(ig.baselines(x), silence)
    attributions = ig.saliency(x, targets)
    with torch.no_grad():
        gap = targets.scores(x) - targets.scores(silence)
        to_zero = targets.scores(x) - targets.scores(torch.zeros_like(x))
    assert gap.abs().min() > 0.1  # otherwise the check below would prove little
    tolerance = 2e-2 * gap.abs().max().item()
    torch.testing.assert_close(attributions.sum(dim=(1, 2)), gap, atol=tolerance, rtol=0)
    # and it is not the sum a 0 dB baseline would give
    assert (attributions.sum(dim=(1, 2)) - to_zero).abs().max() > 5 * tolerance


def test_paper_masking_keeps_the_paper_numbers_bit_for_bit(tiny_msclap, classifier, inputs):
    paper, power = domains(tiny_msclap)
    target = torch.tensor([1, 0])
    targets = resolve_targets(classifier, inputs, target)

    # IG: captum from a zero baseline, as before the domains
    expected = captum_attr.IntegratedGradients(targets.scorer).attribute(
        inputs, baselines=torch.zeros_like(inputs), target=targets.index, n_steps=6, internal_batch_size=12
    )
    for domain in (paper, None):
        ig = build_interpreter("ig", classifier, domain=domain, n_steps=6, batch_size=12)
        assert torch.equal(ig.saliency(inputs, targets), expected)
    assert not torch.equal(build_interpreter("ig", classifier, domain=power, n_steps=6, batch_size=12)
                           .saliency(inputs, targets), expected)

    # SmoothGrad: noise of 0.15 * (max - min) of each clip (every clip has bins below 0 dB here)
    assert bool((inputs.flatten(1).amin(dim=1) < 0).all())
    tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(targets.scorer))
    maps = []
    for i in range(2):
        clip = inputs[i : i + 1]
        with seeded(0, clip.device):
            maps.append(tunnel.attribute(clip, nt_type="smoothgrad", nt_samples=3, nt_samples_batch_size=3,
                                         stdevs=0.15 * float(clip.max() - clip.min()), target=target[i : i + 1],
                                         abs=False))
    expected = torch.cat(maps)
    smoothgrad = build_interpreter("smoothgrad", classifier, domain=paper, n_samples=3, batch_size=3)
    assert torch.equal(smoothgrad.saliency(inputs, targets), expected)
    # power masking: the range runs from silence (-100 dB), below every clip's minimum
    floors = build_interpreter("smoothgrad", classifier, domain=power).floor(inputs)
    assert floors.tolist() == [-100.0, -100.0] and bool((inputs.flatten(1).amin(dim=1) > -100).all())

    # ScoreCAM: each channel map multiplies the input
    channels = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1))
    scorecam = build_interpreter("scorecam", classifier, domain=paper, batch_size=2)
    scores = scorecam.masked_scores(inputs[0], channels, targets, 0)
    with torch.no_grad():
        maps = torch.nn.functional.interpolate(channels[:, None], size=inputs.shape[1:], mode="bilinear",
                                               align_corners=False)[:, 0]
        low, high = maps.flatten(1).amin(1)[:, None, None], maps.flatten(1).amax(1)[:, None, None]
        maps = (maps - low) / (high - low).clamp_min(1e-12)
        by_hand = torch.cat([targets.scorer(inputs[0][None] * m)[:, 1] for m in maps.split(2)])
        through_power = torch.cat([targets.scorer(power.apply_mask(inputs[0][None], m))[:, 1] for m in maps.split(2)])
    assert torch.equal(scores, by_hand)
    # power masking: the channel maps scale the mel power (a masked-out bin is silence, not 0 dB)
    power_scores = build_interpreter("scorecam", classifier, domain=power, batch_size=2).masked_scores(
        inputs[0], channels, targets, 0
    )
    assert torch.equal(power_scores, through_power) and not torch.equal(power_scores, by_hand)


def test_ig_silence_baseline_needs_a_domain(classifier):
    with pytest.raises(ValueError, match="needs the masking domain"):
        build_interpreter("ig", classifier, baseline="silence")
    with pytest.raises(ValueError, match="baseline must be one of"):
        build_interpreter("ig", classifier, baseline="zero")
