"""Unit tests of the LMAC-ZS parts: zero-shot loss, mask decoder, masking domains and listenable output."""

import math

import pytest
import torch
import torchaudio

from speechbrain_lmaczs.clap.frontend import LogMelFrontend
from speechbrain_lmaczs.lmaczs.decoder import MaskDecoder
from speechbrain_lmaczs.lmaczs.domains import MelMasking, STFTMasking
from speechbrain_lmaczs.lmaczs.loss import (
    CONTRAST_TEMPERATURE,
    grid_pairs,
    mask_overlap,
    mix_pairs,
    mixture_consistency,
    zero_shot_loss,
)


def _msclap_frontend():
    return LogMelFrontend(44100, 1024, 320, 64, 50.0, 14000.0, clip_seconds=5.0)


# ---------------------------------------------------------------------------------------------------------------
# zero_shot_loss


def _hand_case():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    audio = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    # masked[i, j]: audio j under the mask of text i
    masked = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.6, 0.8], [1.0, 0.0]]])
    masks = torch.stack(
        [
            torch.stack([torch.full((3, 4), 0.5), torch.full((3, 4), 0.25)]),
            torch.stack([torch.full((3, 4), 1.0), torch.zeros(3, 4)]),
        ]
    )
    return text, audio, masked, masks


def test_zero_shot_loss_hand_computed():
    text, audio, masked, masks = _hand_case()
    out = zero_shot_loss(text, audio, masked, masks, lambda_reg=0.1, lambda_div=2.0)
    # C = [[.6,.8],[.8,.6]]; t_i.a'_ij = [[1,0],[.8,0]] -> |.| sum = .4+.8+0+.6
    assert float(out["sim"]) == pytest.approx(1.8)
    # mean of each mask: .5 + .25 + 1 + 0
    assert float(out["reg"]) == pytest.approx(1.75)
    # D_0 = |t0.t1 - a'_00.a'_10| = |0 - [1,0].[.6,.8]| = .6 ; D_1 = |0 - a'_11.a'_01| = |0 - [1,0].[0,1]| = 0
    assert float(out["div"]) == pytest.approx(0.6)
    assert float(out["loss"]) == pytest.approx(1.8 + 0.1 * 1.75 + 2.0 * 0.6)
    # one-sided L_sim charges only the pairs that lost similarity: C - t.a' = [[-.4, .8], [0, .6]] -> .8 + .6
    one_sided = zero_shot_loss(text, audio, masked, masks, lambda_reg=0.1, lambda_div=2.0, at_least=True)
    assert float(one_sided["sim"]) == pytest.approx(1.4)
    assert float(one_sided["reg"]) == pytest.approx(1.75) and float(one_sided["div"]) == pytest.approx(0.6)
    # own pairs matched on the whole embedding: 1 - a_0.a'_00 = 1 - .6, 1 - a_1.a'_11 = 1 - .8; cross pairs as the
    # paper: |.8 - 0| + |.8 - .8|
    own = zero_shot_loss(text, audio, masked, masks, lambda_reg=0.1, lambda_div=2.0, own_embedding=True)
    assert float(own["sim"]) == pytest.approx(0.4 + 0.2 + 0.8 + 0.0)
    assert float(own["div"]) == pytest.approx(0.6)


def test_zero_shot_loss_gradients_reach_masked_embeddings_not_targets():
    text, audio, masked, masks = _hand_case()
    audio = audio.clone().requires_grad_(True)
    masked = masked.clone().requires_grad_(True)
    masks = masks.clone().requires_grad_(True)
    zero_shot_loss(text, audio, masked, masks, 0.1, 2.0)["loss"].backward()
    assert audio.grad is None  # C_ij carries no gradient
    assert masked.grad is not None and masked.grad.abs().sum() > 0
    # L1 term: d(lambda * mean)/dM = lambda / n_elements for every element
    assert torch.allclose(masks.grad, torch.full_like(masks, 0.1 / 12))


def test_zero_shot_loss_without_diversity_ignores_cross_prompt_embeddings():
    text, audio, masked, masks = _hand_case()
    base = zero_shot_loss(text, audio, masked, masks, 0.0, 0.0)["loss"]
    moved = masked.clone()
    moved[1, 0] = torch.tensor([0.0, 1.0])  # only changes t_1.a'_10 in L_sim and D_0
    changed = zero_shot_loss(text, audio, moved, masks, 0.0, 0.0)["loss"]
    # L_sim term (1,0): |.8 - 1| instead of |.8 - .8|
    assert float(changed - base) == pytest.approx(0.2)


def test_zero_shot_loss_rejects_bad_shapes():
    text, audio, masked, masks = _hand_case()
    with pytest.raises(ValueError, match="zero_shot_loss expects"):
        zero_shot_loss(text, audio, masked[0], masks, 0.1, 0.1)


# ---------------------------------------------------------------------------------------------------------------
# MaskDecoder


@pytest.mark.parametrize(
    "shapes,out_size",
    [
        # CNN14 maps for a 690x64 log-mel (channels scaled down)
        ([(64, 21, 2), (32, 21, 2), (16, 43, 4), (8, 86, 8)], (690, 64)),
        # the same maps, STFT masking grid (690 frames x 257 bins)
        ([(64, 21, 2), (32, 21, 2), (16, 43, 4), (8, 86, 8)], (690, 257)),
        # HTSAT unfolded maps for a 1001x64 log-mel (2 stages, tiny)
        ([(16, 64, 8), (8, 128, 16)], (1001, 64)),
    ],
)
def test_decoder_shapes_and_range(shapes, out_size):
    torch.manual_seed(0)
    dec = MaskDecoder([s[0] for s in shapes], text_dim=10, width=32, n_final_upsamplings=2)
    hidden = [torch.randn(3, *s) for s in shapes]
    mask = dec(hidden, torch.randn(3, 10), out_size)
    assert mask.shape == (3, *out_size)
    assert mask.min() >= 0 and mask.max() <= 1


def test_decoder_depends_on_text_and_batch_items_are_independent():
    torch.manual_seed(0)
    shapes = [(16, 11, 2), (8, 22, 4)]
    dec = MaskDecoder([s[0] for s in shapes], text_dim=6, width=16, n_final_upsamplings=1).eval()
    # Make the FiLM path active so that text matters through both conditioning routes.
    for att in dec.attentions:
        torch.nn.init.normal_(att.film.weight, std=0.5)
    hidden = [torch.randn(2, *s) for s in shapes]
    text = torch.randn(2, 6)
    both = dec(hidden, text, (44, 8))
    other = dec(hidden, text.flip(0), (44, 8))
    assert (both - other).abs().max() > 1e-3
    single = dec([h[1:] for h in hidden], text[1:], (44, 8))
    assert torch.allclose(both[1:], single, atol=1e-5)


def test_decoder_rejects_wrong_number_of_maps():
    dec = MaskDecoder([8, 4], text_dim=3, width=8)
    with pytest.raises(ValueError, match="built for 2 hidden maps"):
        dec([torch.randn(1, 8, 4, 4)], torch.randn(1, 3), (8, 8))



def test_decoder_input_skip_sees_the_input_at_full_resolution_whatever_its_level():
    torch.manual_seed(0)
    shapes = [(16, 11, 2), (8, 22, 4)]
    dec = MaskDecoder([s[0] for s in shapes], text_dim=6, width=16, n_final_upsamplings=1, input_skip=4).eval()
    hidden = [torch.randn(2, *s) for s in shapes]
    text = torch.randn(2, 6)
    skip = torch.randn(2, 44, 8)
    mask = dec(hidden, text, (44, 8), skip=skip)
    assert mask.shape == (2, 44, 8) and mask.min() >= 0 and mask.max() <= 1
    # one bin of the input changes the mask around that bin, below the resolution of the encoder maps (1/2 here)
    poked = skip.clone()
    poked[:, 20, 3] += 10.0
    change = (dec(hidden, text, (44, 8), skip=poked) - mask).abs()
    # (far bins move a little: the per-clip standardisation and the group norms are global)
    near, far = change[:, 18:23, 1:6].amax(dim=(1, 2)), change[:, :10].amax(dim=(1, 2))
    assert (near > 3 * far).all()
    # standardised per clip: the level (dB offset, gain) of the representation does not change the mask
    assert torch.allclose(dec(hidden, text, (44, 8), skip=3.0 * skip - 40.0), mask, atol=1e-5)
    with pytest.raises(ValueError, match="input_skip"):
        dec(hidden, text, (44, 8))


# ---------------------------------------------------------------------------------------------------------------
# Masking domains and listenable output


def _snr_db(ref, est):
    return 10 * math.log10(float(ref.pow(2).sum()) / float((ref - est).pow(2).sum() + 1e-20))


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_listen_all_ones_reproduces_input_and_zeros_give_silence(domain_cls):
    torch.manual_seed(0)
    dom = domain_cls(_msclap_frontend())
    wav = 0.5 * torch.randn(2, 220500)
    x = dom.representation(wav)
    ones = dom.listen(wav, torch.ones_like(x))
    zeros = dom.listen(wav, torch.zeros_like(x))
    reference = dom.resample(wav) if domain_cls is STFTMasking else wav
    assert ones.shape == reference.shape
    assert _snr_db(reference, ones) > 40
    assert float(zeros.abs().max()) < 1e-6


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_db_offset_puts_silence_at_zero_so_a_zero_mask_is_silence_in_both_domains(domain_cls):
    plain = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0)
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0, db_offset=100.0)
    wav = 0.3 * torch.randn(1, 32000)
    assert torch.allclose(fe(wav), plain(wav) + 100.0)
    assert float(fe(torch.zeros(1, 32000)).abs().max()) == 0.0  # the amin floor (1e-10) is 0 dB
    assert fe.silence_db == 0.0 and plain.silence_db == -100.0
    dom = domain_cls(fe)
    x = dom.representation(wav)
    silent = dom.to_logmel(dom.apply_mask(x, torch.zeros_like(x)))
    assert float(silent.abs().max()) == 0.0
    # without the offset a zero Mel mask gives 0 dB, 100 dB above silence
    if domain_cls is MelMasking:
        assert float(plain(torch.zeros(1, 32000)).max()) == -100.0


@pytest.mark.parametrize("domain_cls", [MelMasking, STFTMasking])
def test_listen_output_length_equals_input_length_for_any_length(domain_cls):
    dom = domain_cls(_msclap_frontend())
    for n in (44100, 220500 + 1234):
        wav = torch.randn(1, n)
        x = dom.representation(wav)
        out = dom.listen(wav, torch.rand_like(x))
        assert out.shape[-1] == math.ceil(n * dom.output_sample_rate / 44100)


def test_mel_mask_maps_to_the_linear_bins_of_its_band():
    fe = _msclap_frontend()
    dom = MelMasking(fe)
    mask = torch.zeros(1, 1, 64)
    mask[..., 20] = 1.0
    lin = dom.linear_mask(mask)[0, 0]
    freqs = torch.linspace(0, 22050, 513)
    # Bins strictly outside the band's filter support get nothing; the band's peak bin gets a positive weight.
    support = fe.mel_fbank[:, 20] > 0
    assert torch.all(lin[~support] == 0)
    assert lin[support].max() > 0.3
    # Bins below f_min copy the lowest band; above f_max, the highest.
    low = dom.linear_mask(torch.nn.functional.one_hot(torch.tensor([[0]]), 64).float())[0, 0]
    assert torch.all(low[freqs < 40] == 1.0)


def test_stft_domain_reaches_the_encoder_log_mel_of_band_limited_audio():
    """to_logmel(|STFT16(x)|) matches the encoder front-end on x resampled 16k -> 44.1k (bands below 6 kHz,
    clear of both resamplers' transition bands)."""
    torch.manual_seed(0)
    fe = _msclap_frontend()
    dom = STFTMasking(fe)
    wav = torch.randn(1, 220500)
    via_domain = dom.to_logmel(dom.representation(wav))
    wav16 = dom.resample(wav)
    back = torchaudio.functional.resample(wav16, 16000, 44100)[:, :220500]
    reference = fe(back)
    assert via_domain.shape == reference.shape == (1, 690, 64)
    centres = torch.argmax(fe.mel_fbank, dim=0).float() * 22050 / 512
    low_bands = centres < 6000
    # Mean over time: per-frame levels of noise fluctuate, their average must agree within 1 dB.
    diff = (via_domain.mean(1) - reference.mean(1))[0, low_bands]
    assert diff.abs().max() < 1.0
    # Bands above 8 kHz are empty, as for real 16 kHz audio.
    assert torch.all(via_domain[0, :, centres > 8500] <= -99)


def test_gradients_reach_a_mask_through_both_domains():
    fe = _msclap_frontend()
    wav = torch.randn(1, 220500)
    for dom in (MelMasking(fe), STFTMasking(fe)):
        x = dom.representation(wav)
        mask = torch.full_like(x, 0.5, requires_grad=True)
        dom.to_logmel(dom.apply_mask(x, mask)).sum().backward()
        assert mask.grad is not None and mask.grad.abs().sum() > 0


def test_zero_shot_loss_on_pairs_equals_the_full_grid():
    text, audio, masked, masks = _hand_case()
    full = zero_shot_loss(text, audio, masked, masks, 0.1, 2.0)
    pairs = grid_pairs(2)  # k = B: every pair, in another order
    flat = zero_shot_loss(
        text, audio, masked[pairs[:, 0], pairs[:, 1]], masks[pairs[:, 0], pairs[:, 1]], 0.1, 2.0, pairs=pairs
    )
    for key in ("loss", "sim", "reg", "div"):
        assert float(flat[key]) == pytest.approx(float(full[key]))


def test_zero_shot_loss_subsampled_pairs_hand_computed():
    text, audio, masked, masks = _hand_case()
    # only audio 0 with both texts: sim = |.6-1| + |.8-.8| ; reg = .5 + 1 ; D_0 = |0 - [1,0].[.6,.8]| = .6
    pairs = torch.tensor([[0, 0], [1, 0]])
    out = zero_shot_loss(text, audio, masked[pairs[:, 0], pairs[:, 1]], masks[pairs[:, 0], pairs[:, 1]], 1.0, 1.0,
                         pairs=pairs)
    assert float(out["sim"]) == pytest.approx(0.4)
    assert float(out["reg"]) == pytest.approx(1.5)
    assert float(out["div"]) == pytest.approx(0.6)
    # one pair per clip: no diversity term
    single = grid_pairs(2, 1)
    out = zero_shot_loss(text, audio, masked[single[:, 0], single[:, 1]], masks[single[:, 0], single[:, 1]], 1.0,
                         1.0, pairs=single)
    assert float(out["div"]) == 0.0


def test_grid_pairs_cover_own_caption_first():
    pairs = grid_pairs(4, 2)
    assert pairs.shape == (8, 2)
    assert torch.equal(pairs[::2, 0], pairs[::2, 1])  # each audio's first pair is its own caption
    assert torch.equal(grid_pairs(3, 10), grid_pairs(3, 3))


# ---------------------------------------------------------------------------------------------------------------
# power-domain Mel masking


def test_power_mel_masking_ones_zeros_and_half_by_hand():
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0)  # 10 log10(power), silence -100 dB
    dom = MelMasking(fe, mask_on="power")
    torch.manual_seed(0)
    x = dom.representation(0.3 * torch.randn(2, 32000))
    assert torch.equal(dom.apply_mask(x, torch.ones_like(x)), x)  # exactly the input
    assert fe.silence_db == -100.0
    assert torch.all(dom.apply_mask(x, torch.zeros_like(x)) == -100.0)
    half = dom.apply_mask(x, torch.full_like(x, 0.5))
    # 10 log10(0.5) = -3.0103 dB wherever that stays above the floor
    assert torch.allclose(half - x, torch.full_like(x, -3.0103), atol=1e-4)
    # a bin 2 dB above silence masked by 0.5 stops at the floor instead of going 1 dB below it
    low = torch.tensor([[[fe.silence_db + 2.0]]])
    assert float(MelMasking(fe, mask_on="power").apply_mask(low, torch.tensor([[[0.5]]]))) == -100.0
    # equal to to_db(M * mel power) on the front-end's own mel power
    mask = torch.rand_like(x)
    power = 10.0 ** (x / 10.0)
    assert torch.allclose(dom.apply_mask(x, mask), fe.to_db(mask * power), atol=1e-3)



def test_power_mel_masking_with_db_offset_and_gradient():
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0, db_offset=100.0)
    dom = MelMasking(fe, mask_on="power")
    x = dom.representation(0.3 * torch.randn(1, 32000))
    assert torch.all(dom.apply_mask(x, torch.zeros_like(x)) == 0.0)  # silence = 0 dB with the offset
    mask = torch.full_like(x, 0.5, requires_grad=True)
    dom.apply_mask(x, mask).sum().backward()
    # d/dM 10 log10(M) = 10 / (M ln 10) = 8.686 at 0.5, in the bins that stay above the floor
    above = (x - 3.0103) > 0
    assert torch.allclose(mask.grad[above], torch.full_like(mask.grad[above], 10.0 / (0.5 * math.log(10.0))), atol=1e-3)
    assert torch.isfinite(mask.grad).all()
    with pytest.raises(ValueError, match="mask_on must be one of"):
        MelMasking(fe, mask_on="db")


# ---------------------------------------------------------------------------------------------------------------
# background fill: a removed bin goes to its band's median over time


def _clip_with_a_tone(seconds=2.0, sr=16000):
    torch.manual_seed(0)
    t = torch.arange(int(seconds * sr)) / sr
    wav = 0.01 * torch.randn(1, t.numel())
    wav[:, int(0.5 * sr) : int(0.9 * sr)] += 0.5 * torch.sin(2 * math.pi * 1000.0 * t[int(0.5 * sr) : int(0.9 * sr)])
    return wav


@pytest.mark.parametrize("mask_on", ["log_mel", "power"])
def test_background_fill_by_hand(mask_on):
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0)
    dom = MelMasking(fe, mask_on=mask_on, fill="background")
    x = dom.representation(_clip_with_a_tone())
    median = x.median(dim=1, keepdim=True).values  # (1, 1, mels): each band's median over the 101 frames
    assert torch.allclose(dom.apply_mask(x, torch.ones_like(x)), x, atol=1e-4)  # a full mask is the clip
    assert torch.allclose(dom.absent(x), median.expand_as(x), atol=1e-4)  # an empty one its background
    assert torch.equal(dom.absent(x), dom.apply_mask(x, torch.zeros_like(x)))
    # half a mask: halfway in dB (log_mel) or in power (power) between the bin and its band's median
    half = dom.apply_mask(x, torch.full_like(x, 0.5))
    if mask_on == "log_mel":
        expected = 0.5 * x + 0.5 * median
    else:
        expected = 10.0 * torch.log10(0.5 * 10.0 ** (x / 10.0) + 0.5 * 10.0 ** (median / 10.0))
    assert torch.allclose(half, expected, atol=1e-3)
    # removing a background bin changes (almost) nothing; removing the tone's bins removes the tone
    tone = x > median + 20.0
    assert tone.any() and (~tone).any()
    assert float((dom.absent(x) - x)[tone].abs().min()) > 20.0
    # the gradient reaches the mask and never the background level (a function of the clip, not of the mask)
    mask = torch.full_like(x, 0.5, requires_grad=True)
    dom.apply_mask(x, mask).sum().backward()
    assert torch.isfinite(mask.grad).all() and float(mask.grad[tone].abs().min()) > 0
    assert dom.describe() == f"MelMasking(mask_on={mask_on}, fill=background)"


def test_background_fill_of_the_stft_domain_and_bad_fill():
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0)
    dom = STFTMasking(fe, fill="background")
    wav = _clip_with_a_tone()
    x = dom.representation(wav)
    assert torch.allclose(dom.absent(x), x.median(dim=1, keepdim=True).values.expand_as(x))
    assert torch.allclose(dom.apply_mask(x, torch.ones_like(x)), x)
    assert dom.describe() == "STFTMasking(fill=background)" and STFTMasking(fe).describe() == "STFTMasking"
    # listening is the same for both fills: the mask scales the STFT with the original phase
    assert torch.allclose(dom.listen(wav, torch.ones_like(x)), STFTMasking(fe).listen(wav, torch.ones_like(x)))
    with pytest.raises(ValueError, match="fill must be one of"):
        MelMasking(fe, fill="noise")


def test_power_mel_masking_listen_scales_the_power_by_the_mask():
    fe = LogMelFrontend(16000, 1024, 320, 64, 50.0, 8000.0, clip_seconds=2.0)
    dom = MelMasking(fe, mask_on="power")
    torch.manual_seed(0)
    wav = 0.3 * torch.randn(1, 32000)
    x = dom.representation(wav)
    assert torch.allclose(dom.listen(wav, torch.ones_like(x)), wav, atol=1e-4)
    assert float(dom.listen(wav, torch.zeros_like(x)).abs().max()) < 1e-6
    # a constant mask 0.25 scales the power by 0.25: half the amplitude, and the log-mel of what one hears is
    # the masked log-mel the classifier sees
    quarter = torch.full_like(x, 0.25)
    heard = dom.listen(wav, quarter)
    assert torch.allclose(heard, 0.5 * wav, atol=1e-4)
    assert torch.allclose(dom.representation(heard), dom.apply_mask(x, quarter), atol=1e-2)
    # the paper's masking listens with the mask on the magnitude
    assert torch.allclose(MelMasking(fe).listen(wav, quarter), 0.25 * wav, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# loss terms beyond the paper


def test_mix_pairs_pair_consecutive_clips_once():
    assert mix_pairs(4).tolist() == [[0, 1], [2, 3]]
    assert mix_pairs(1).shape == (0, 2)


def test_mixture_consistency_hand_computed():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clean = torch.tensor([[0.6, 0.8], [0.8, 0.6]])
    masked = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # similarity: |0.6 - 1.0| + |0.6 - 1.0| = 0.8; embedding: (1 - 0.6) + (1 - 0.6) = 0.8
    assert math.isclose(float(mixture_consistency(text, clean, masked)), 0.8, abs_tol=1e-6)
    assert math.isclose(float(mixture_consistency(text, clean, masked, "embedding")), 0.8, abs_tol=1e-6)
    other = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    # similarity ignores the part of the embedding orthogonal to the prompt; the embedding target does not
    assert math.isclose(float(mixture_consistency(text, clean, other)), 0.2 + 0.2, abs_tol=1e-6)
    assert math.isclose(float(mixture_consistency(text, clean, other, "embedding")), 2 * (1 - 0.96), abs_tol=1e-6)
    assert float(mixture_consistency(text, clean, clean, "embedding")) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="target must be one of"):
        mixture_consistency(text, clean, masked, "logits")
    # both_prompts adds the other source's prompt u: row 0 with u = (0, 1): |0.8 - 0.0| = 0.8, row 1 with
    # u = (1, 0): |0.8 - 0.0| = 0.8; on top of the similarity's 0.8
    swapped = text.flip(0)
    assert math.isclose(float(mixture_consistency(text, clean, masked, "both_prompts", swapped)), 2.4, abs_tol=1e-6)
    # a masked mixture that is the clean source costs nothing under every target
    assert float(mixture_consistency(text, clean, clean, "both_prompts", swapped)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="needs other_text"):
        mixture_consistency(text, clean, masked, "both_prompts")
    # contrast: tau * softplus(-(t.a' - u.a') / tau) with tau 0.1; row 0: margin 1 - 0 = 1 -> 0.1 * log(1 + e^-10)
    tau = CONTRAST_TEMPERATURE
    expected = 2 * tau * math.log1p(math.exp(-1.0 / tau))
    assert math.isclose(float(mixture_consistency(text, clean, masked, "contrast", swapped)), expected, rel_tol=1e-5)
    # a masked mixture that favours the OTHER prompt by 1: tau * log(1 + e^10), about 1 per row
    flipped = mixture_consistency(text, clean, masked.flip(0), "contrast", swapped)
    assert math.isclose(float(flipped), 2 * tau * math.log1p(math.exp(1.0 / tau)), rel_tol=1e-5)
    with pytest.raises(ValueError, match="needs other_text"):
        mixture_consistency(text, clean, masked, "contrast")
    # one-sided: row 0 matches its prompt better than the clean source (1.0 > 0.6) and its other prompt less
    # (0.0 < 0.8): nothing is charged; the same for row 1
    assert float(mixture_consistency(text, clean, masked, "both_prompts", swapped, at_least=True)) == 0.0
    worse = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # each row now matches the OTHER prompt: .6 + .2 per row
    assert math.isclose(float(mixture_consistency(text, clean, worse, "both_prompts", swapped, at_least=True)),
                        2 * (0.6 + 0.2), abs_tol=1e-6)


def test_mixture_consistency_gradient_reaches_the_masked_mixture_only():
    text = torch.tensor([[1.0, 0.0]])
    clean = torch.tensor([[0.6, 0.8]], requires_grad=True)
    masked = torch.tensor([[0.8, 0.6]], requires_grad=True)
    mixture_consistency(text, clean, masked, "embedding").backward()
    assert clean.grad is None or float(clean.grad.abs().sum()) == 0.0
    assert torch.allclose(masked.grad, -clean.detach())


def test_mask_overlap_hand_computed_and_gradient_is_the_other_mask():
    a = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]], requires_grad=True)
    b = torch.tensor([[[0.5, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    value = mask_overlap(a, b)
    # (0.5 + 0 + 0 + 0) / 4 + 4 * 0.25 / 4 = 0.125 + 0.25
    assert math.isclose(float(value), 0.375, abs_tol=1e-6)
    value.backward()
    assert torch.allclose(a.grad, b / 4)  # equal masks still get a gradient (unlike D)
